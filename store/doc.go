// Package store keeps normalised meter readings and scoring outputs.
//
// Two stores implement the same methods: Influx (InfluxDB 1.8+ or 2.x
// through influxdb-client-go, for production and Grafana) and Bolt (an
// embedded bbolt file, the default when no InfluxDB is configured). Every
// reading is keyed by (enterprise, meter, time), so writing the same
// reading twice leaves one copy: the at-least-once MQTT delivery above the
// store becomes exactly-once in effect.
//
// History comes out in pieces: EachAggregate and EachLatestReading take
// a span of time and a group of enterprises and stream rows to a callback,
// so that memory is bounded by a chunk, not by the fleet. Influx reads
// InfluxQL's chunked JSON answer row by row; Bolt walks only the asked
// enterprises' keys, in read transactions of about 4096 rows.
//
// Consumers declare the small interfaces they need (ingest its writer,
// scoring its reader); this package only provides concrete types.
package store
