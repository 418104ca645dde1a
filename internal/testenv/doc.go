// Package testenv starts real servers for integration tests: a mosquitto
// MQTT broker and InfluxDB 1.8.
//
// Servers run as child processes of the test binary, bound to free ports on
// 127.0.0.1, with their state in temporary directories, so tests never touch
// a developer's own servers or each other's data:
//
//   - Mosquitto starts a fresh broker per call; the test owns it and can
//     Stop, Kill and Start it again on the same port and state.
//   - Influx returns a fresh, uniquely named database on one influxd shared
//     by the whole test binary (started on first use, stopped by Main).
//   - NewInflux starts a dedicated influxd the test owns, for fault tests
//     that Kill the database and Start it again.
//
// A package whose tests call Influx must stop the shared server when the
// binary ends:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// Programs that are not tests (the end-to-end benchmark, cmd/bench-e2e)
// start the same servers with StartMosquitto and StartInflux, which take a
// state directory instead of a testing.TB and return errors; they stop
// them with Close. A test driving such a program calls NeedServers first,
// so a missing binary skips or fails it like the other tests.
//
// Binaries come from CLEANPROD_MOSQUITTO and CLEANPROD_INFLUXD, else from
// PATH (mosquitto also from /usr/sbin, influxd also from .cache/bin in the
// module root, where scripts/test builds it). A missing binary skips the
// test, unless CLEANPROD_REQUIRE_SERVERS=1 (set by scripts/test), which
// fails it instead, so CI never skips silently.
//
// Children run in their own process group with a parent-death signal of
// SIGKILL, so they die with the test binary even if it crashes. Their output
// goes to log files in their state directory; when a start fails, the tail
// of the log is part of the failure message.
//
// Functions taking a testing.TB must be called from the test's goroutine
// (they may call t.Fatal). The handles are safe for concurrent use, but
// Stop, Kill and Start on the same server should not race each other.
package testenv
