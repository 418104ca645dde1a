// Package ingest turns gateway MQTT messages into stored, normalised
// readings, and never drops one silently.
//
// Flow: the Subscriber (paho, QoS 1, persistent session, manual acks)
// hands every telemetry message to the Pipeline. One goroutine of the
// Pipeline owns all per-gateway and per-meter state: it decodes the payload
// (gateway contract v1), checks topic, gateway and meters against the
// registry, validates values and timestamps, converts units to canonical
// ones and turns counter registers into deltas (resets, rollovers and meter
// replacements handled; duplicates and out-of-order readings never counted
// twice; a drop is held at delta 0 until the next reading says whether it
// was a reset or a glitch, see counter.go). Readings are batched; a second goroutine writes each batch to the
// store, publishes the batch's rejects to the dead-letter topic, and only
// then acknowledges the batch's MQTT messages and tells the scorer. While
// the store is down nothing is acknowledged: the Subscriber's window
// (window.go; mqtt.max_unacked_messages and _bytes) fills, and the
// broker's persistent session holds the rest, without the MQTT handler
// ever blocking.
//
// Rejected messages and readings are counted by Reason
// (cleanprod_ingest_rejected_total), logged at a bounded rate, and
// published with their reason to cp/v1/deadletter/{reason}.
package ingest
