package sim_test

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/hj212"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/sim"
)

// refIngest is an independent reading of the simulator's bytes, the way
// the service is meant to read them: it classifies every message and
// reading like ingest does and computes counter consumption from the
// emitted registers (rollover, reset to zero, declared replacement).
type refIngest struct {
	reg      *registry.Registry
	horizon  time.Time // a reading later than this is in the future
	seen     map[string]bool
	maxSeq   map[string]uint64
	points   map[meterKey][]point
	rejected map[string]int
	flagged  int // HJ 212 values with an invalid flag: stored apart
	dups     int
	delayed  int
	events   map[string]int // wrap, reset, replacement
}

type meterKey struct{ ent, meter string }

type point struct {
	ts    time.Time
	v     float64 // raw value
	reset bool    // amounts: a counter's drop counted from zero
}

func newRefIngest(reg *registry.Registry, horizon time.Time) *refIngest {
	return &refIngest{
		reg: reg, horizon: horizon,
		seen: map[string]bool{}, maxSeq: map[string]uint64{}, points: map[meterKey][]point{},
		rejected: map[string]int{}, events: map[string]int{},
	}
}

func (r *refIngest) handle(t *testing.T, topic string, payload []byte) {
	t.Helper()
	lv := strings.Split(topic, "/")
	if len(lv) == 5 && lv[0] == "cp" && lv[1] == "v1" && lv[4] == "hj212" {
		r.handleHJ212(t, lv, payload)
		return
	}
	if len(lv) != 5 || lv[0] != "cp" || lv[1] != "v1" || lv[4] != "telemetry" {
		t.Fatalf("bad topic %q", topic)
	}
	var msg struct {
		Gateway  string
		Seq      uint64
		Sent     string
		Readings []struct {
			Meter string
			Ts    string
			Value json.RawMessage
		}
	}
	if err := json.Unmarshal(payload, &msg); err != nil {
		r.rejected["malformed_json"]++
		return
	}
	k := topic + "\x00" + string(payload)
	if r.seen[k] {
		r.dups++
		return
	}
	r.seen[k] = true
	g, ok := r.reg.Gateway(lv[2], lv[3])
	if !ok {
		r.rejected["unknown_gateway"]++
		return
	}
	if msg.Gateway != lv[3] || len(msg.Readings) == 0 {
		t.Fatalf("message on %s: gateway %q, %d readings", topic, msg.Gateway, len(msg.Readings))
	}
	if _, err := time.Parse(time.RFC3339, msg.Sent); err != nil {
		t.Fatalf("message on %s: sent %q: %v", topic, msg.Sent, err)
	}
	if msg.Seq < r.maxSeq[topic] {
		r.delayed++
	} else {
		r.maxSeq[topic] = msg.Seq
	}
	for _, rd := range msg.Readings {
		m, ok := g.Meter(rd.Meter)
		if !ok {
			if len(r.reg.MetersNamed(rd.Meter)) > 0 {
				r.rejected["spoofed"]++
			} else {
				r.rejected["unknown_meter"]++
			}
			continue
		}
		var v float64
		if err := json.Unmarshal(rd.Value, &v); err != nil {
			r.rejected["invalid_value"]++
			continue
		}
		ts, err := time.Parse(time.RFC3339, rd.Ts)
		if err != nil || !strings.HasSuffix(rd.Ts, "Z") {
			t.Fatalf("reading %s on %s: ts %q", rd.Meter, topic, rd.Ts)
		}
		if ts.After(r.horizon) {
			r.rejected["future_timestamp"]++
			continue
		}
		if v < 0 || math.IsNaN(v) {
			t.Fatalf("reading %s on %s: value %v", rd.Meter, topic, v)
		}
		key := meterKey{lv[2], m.ID}
		r.points[key] = append(r.points[key], point{ts: ts, v: v})
	}
}

// handleHJ212 reads a station's frame as ingest does: a frame that fails
// its checks is rejected whole; a value goes to the meter that takes its
// code, field and command, if its flag says it is valid data.
func (r *refIngest) handleHJ212(t *testing.T, lv []string, payload []byte) {
	t.Helper()
	g, ok := r.reg.Gateway(lv[2], lv[3])
	if !ok || g.Station == nil {
		t.Fatalf("frame on %s: no such station", strings.Join(lv, "/"))
	}
	codec := hj212.Codec{Location: g.Station.Location}
	p, err := codec.Decode(payload)
	if err != nil {
		var e *hj212.Error
		if !errors.As(err, &e) {
			t.Fatalf("frame %q: %v", payload, err)
		}
		r.rejected["hj212_"+string(e.Reason)]++
		return
	}
	d, err := codec.ParseData(p.CP)
	cn, _ := strconv.Atoi(p.CN)
	if err != nil || p.MN != g.Station.MN || p.PW != g.Station.Password || len(d.Rejects) > 0 {
		t.Fatalf("frame %q: %v", payload, err)
	}
	for _, v := range d.Values {
		m, ok := g.Station.Meter(registry.HJ212Source{Code: v.Code, Field: v.Field, CN: cn})
		switch {
		case !ok:
			if !g.Station.Maps(v.Code) {
				t.Fatalf("frame %q: code %s goes to no meter", payload, v.Code)
			}
		case v.Flag != "N":
			r.flagged++
		default:
			key := meterKey{lv[2], m.ID}
			r.points[key] = append(r.points[key], point{ts: d.Time.UTC(), v: v.Value})
		}
	}
}

// total returns the readings and the canonical consumption (counters,
// deltas) or value sum (gauges) of one meter.
func (r *refIngest) total(m *registry.Meter) (n int, sum float64) {
	for _, a := range r.amounts(m) {
		sum += a.v
	}
	return len(r.points[meterKey{m.Enterprise.ID, m.ID}]), sum
}

// held returns the amount of a counter's last reading when amounts
// counted it from zero (a reset): the service holds such a drop at delta
// 0 until a later reading.
func (r *refIngest) held(m *registry.Meter) float64 {
	as := r.amounts(m)
	if m.Kind != registry.Counter || len(as) == 0 || !as[len(as)-1].reset {
		return 0
	}
	return as[len(as)-1].v
}

// between sums the amounts of one meter at times in (from, to].
func (r *refIngest) between(m *registry.Meter, from, to time.Time) float64 {
	sum := 0.0
	for _, a := range r.amounts(m) {
		if a.ts.After(from) && !a.ts.After(to) {
			sum += a.v
		}
	}
	return sum
}

// amounts returns one meter's readings in time order as canonical amounts:
// for a counter the consumption since its previous reading (none for the
// first), for a delta meter its amount, for a gauge its value.
func (r *refIngest) amounts(m *registry.Meter) []point {
	ps := slices.Clone(r.points[meterKey{m.Enterprise.ID, m.ID}])
	slices.SortFunc(ps, func(a, b point) int { return a.ts.Compare(b.ts) })
	for i, p := range ps {
		if i > 0 && p.ts.Equal(ps[i-1].ts) {
			panic("two readings of " + m.ID + " at " + p.ts.String())
		}
	}
	f := m.Factor
	var out []point
	switch m.Kind {
	case registry.Counter:
		for i := 1; i < len(ps); i++ {
			prev, cur := ps[i-1], ps[i]
			var d float64
			replaced, reset := false, false
			for _, rp := range m.Replacements {
				if rp.At.After(prev.ts) && !rp.At.After(cur.ts) {
					d = (rp.OldFinal - prev.v*f) + (cur.v*f - rp.NewInitial)
					replaced = true
					r.events["replacement"]++
				}
			}
			switch {
			case replaced:
			case cur.v < prev.v && m.Rollover > 0:
				// Up to the largest value, one step to 0, then up to cur.
				d = (m.Rollover - prev.v*f) + m.Resolution + cur.v*f
				r.events["wrap"]++
			case cur.v < prev.v:
				d, reset = cur.v*f, true // counted from zero
				r.events["reset"]++
			default:
				d = (cur.v - prev.v) * f
			}
			out = append(out, point{ts: cur.ts, v: d, reset: reset})
		}
	default:
		for _, p := range ps {
			out = append(out, point{ts: p.ts, v: p.v * f})
		}
	}
	return out
}

// checkLedger compares the ledger with the reference reading of the bytes.
func checkLedger(t *testing.T, r *refIngest, l sim.Ledger) {
	t.Helper()
	readings := 0
	for _, mt := range l.Meters {
		e, _ := r.reg.Enterprise(mt.Enterprise)
		var m *registry.Meter
		for _, x := range e.Meters {
			if x.ID == mt.Meter {
				m = x
			}
		}
		n, sum := r.total(m)
		readings += n
		got := mt.Sum
		if m.Kind == registry.Gauge {
			got = mt.ValueSum
		}
		if mt.Readings != n {
			t.Errorf("%s/%s: ledger has %d readings, the bytes %d", mt.Enterprise, mt.Meter, mt.Readings, n)
		}
		if math.Abs(got-sum) > 1e-9*math.Max(1, math.Abs(sum)) {
			t.Errorf("%s/%s (%s): ledger total %.6f, computed from the bytes %.6f", mt.Enterprise, mt.Meter, m.Kind, got, sum)
		}
		if h := r.held(m); math.Abs(mt.Held-h) > 1e-9*math.Max(1, h) {
			t.Errorf("%s/%s: ledger holds %.6f after a last reset, the bytes %.6f", mt.Enterprise, mt.Meter, mt.Held, h)
		}
	}
	if l.Readings != readings {
		t.Errorf("ledger readings %d, the bytes %d", l.Readings, readings)
	}
	for _, reason := range []string{"malformed_json", "unknown_gateway", "spoofed", "unknown_meter", "invalid_value", "future_timestamp"} {
		if got, want := l.Rejected[reason], r.rejected[reason]; got != want {
			t.Errorf("rejected %s: ledger %d, the bytes %d", reason, got, want)
		}
	}
	if l.Duplicates != r.dups {
		t.Errorf("duplicates: ledger %d, the bytes %d", l.Duplicates, r.dups)
	}
	if l.Delayed != r.delayed {
		t.Errorf("delayed: ledger %d, the bytes %d", l.Delayed, r.delayed)
	}
	if l.Flagged != r.flagged {
		t.Errorf("flagged: ledger %d, the bytes %d", l.Flagged, r.flagged)
	}
}
