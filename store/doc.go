// Package store keeps normalised meter readings and scoring outputs.
//
// Two stores implement the same methods: Influx (InfluxDB 1.8+ or 2.x
// through influxdb-client-go, for production and Grafana) and Bolt (an
// embedded bbolt file, the default when no InfluxDB is configured). Every
// reading is keyed by (enterprise, meter, time), so writing the same
// reading twice leaves one copy: the at-least-once MQTT delivery above the
// store becomes exactly-once in effect.
//
// Consumers declare the small interfaces they need (ingest its writer,
// scoring its reader); this package only provides concrete types.
package store
