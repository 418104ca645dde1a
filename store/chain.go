package store

import "time"

// A counter reading marked Chained is kept in InfluxDB as its delta alone:
// its register is the previous stored reading's plus the delta, and that
// reading is of the same UTC hour, so a read that starts at the hour's
// beginning finds the register every chained reading counts from. The
// first reading of an hour, and any reading whose delta is not the step
// between the registers (a reset, a rollover, a replacement, a held drop
// or a glitch, a meter's first reading), keeps its register.

// Chains reports whether a counter reading at t (Unix nanoseconds) with
// register value and delta may be stored chained to the meter's previous
// stored reading, at pt with register pv: the same UTC hour, and pv +
// delta == value exactly, so that a read rebuilds the register bit for
// bit.
func Chains(pt int64, pv float64, t int64, value, delta float64) bool {
	return pt < t && SameHour(pt, t) && pv+delta == value
}

// SameHour reports whether the times a and b (Unix ns) fall in one UTC
// hour, the span a chain of stored registers keeps to.
func SameHour(a, b int64) bool {
	const hour = int64(time.Hour)
	return floorMultiple(a, hour) == floorMultiple(b, hour)
}

// sameHour reports whether a and b fall in one UTC hour.
func sameHour(a, b time.Time) bool {
	return hourStart(a).Equal(hourStart(b))
}

// hourStart returns the start of t's UTC hour.
func hourStart(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// chainRegisters rebuilds the registers of chained counter readings in
// rs, one meter's readings in time order: a reading with a delta alone
// (read as a delta meter's) that follows a counter reading of the same
// UTC hour is a counter's, its register the one before plus its delta. It
// reports whether rs starts with a reading that may be chained to one
// before rs (a delta alone): only a read from the start of its hour tells.
func chainRegisters(rs []Reading) (openStart bool) {
	for k := range rs {
		r := &rs[k]
		if r.Kind != "delta" {
			continue
		}
		if k == 0 {
			openStart = true
			continue
		}
		if p := &rs[k-1]; p.Kind == "counter" && sameHour(p.Time, r.Time) {
			r.Kind, r.Value = "counter", p.Value+r.Delta
		}
	}
	return openStart
}
