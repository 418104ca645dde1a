// Package registry is the gateway registry: which enterprises exist, which
// gateways publish for them, and what every meter measures.
//
// It is loaded from the YAML files of a gateway-config folder (one enterprise
// per file) and is read-only once loaded, so any goroutine may call its
// methods concurrently. It also owns the table of canonical quantities and
// the units each may be reported in: a unit that is not declared for a
// quantity is a configuration error, never a guess. An enterprise's
// optional identifiers for reports are checked as well: its unified social
// credit code by the check character of GB 32100-2015 (CheckUSCC) and its
// discharge permit number by the layout of HJ 608-2017
// (CheckDischargePermit).
//
// Register values in a file (rollover, resolution, a replacement's
// old_final and new_initial) are in what the gateway sends, before scale;
// a Meter holds them in canonical units. A counter's rollover is the
// largest value its register shows (99999, not 100000): one resolution
// step later it reads 0 (see Meter.Rollover).
//
// In: gateway-config/*.yaml. Out: *Registry, used by ingest (look up and
// normalise readings), the simulator (what to publish) and scoring (which
// quantities an enterprise measures).
package registry
