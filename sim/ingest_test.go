package sim_test

import (
	"maps"
	"math"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/ingest"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/sim"
	"github.com/cleanprod/cleanprod/store"
)

// TestIngestAgrees feeds a run with every fault, resets, rollovers and the
// declared replacement through ingest's Normaliser (the service's
// validation and counter arithmetic, without I/O) and checks that what it
// would store and reject is what the ledger says.
func TestIngestAgrees(t *testing.T) {
	reg := loadFleet(t)
	start := time.Date(2026, 11, 14, 0, 0, 0, 0, time.UTC)
	week := start.Add(7 * 24 * time.Hour)
	t.Run("a week", func(t *testing.T) {
		testIngestAgrees(t, reg, sim.Config{Seed: 3, Start: start, Duration: 7 * 24 * time.Hour, Faults: allFaults, Resets: 0.5,
			Now: func() time.Time { return week }})
	})
	// Counters whose last reading comes right after a reset: the service
	// holds that drop at delta 0, and the ledger says so (Held).
	t.Run("ending on resets", func(t *testing.T) {
		l := testIngestAgrees(t, reg, endingOnResets(start))
		if held, _ := heldCounters(l); held == 0 {
			t.Fatal("no counter ends on a reset: the case no longer covers a held drop")
		}
	})
}

// testIngestAgrees runs cfg through the Normaliser and compares with the
// ledger, which it returns.
func testIngestAgrees(t *testing.T, reg *registry.Registry, cfg sim.Config) sim.Ledger {
	t.Helper()
	s, err := sim.New(reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := cfg.Now()
	n := ingest.NewNormaliser(reg, ingest.NormaliserConfig{FutureHorizon: 10 * time.Minute, PastHorizon: 30 * 24 * time.Hour, History: 64})
	type key struct{ ent, meter string }
	sums := map[key]float64{}
	stored := map[key]map[time.Time]bool{}
	rejected := map[string]int{}
	for m := range s.Messages() {
		var write, observe []store.Reading
		out, derr := n.Process(m.Topic, m.Payload, false, now, &write, &observe)
		if derr != nil {
			rejected[string(derr.Reason)]++
			continue
		}
		for _, r := range out.Rejects {
			rejected[string(r.Reason)]++
		}
		for _, o := range observe {
			k := key{o.Enterprise, o.Meter}
			if o.Kind == string(registry.Gauge) {
				sums[k] += o.Value
			} else {
				sums[k] += o.Delta
			}
		}
		for _, w := range write {
			k := key{w.Enterprise, w.Meter}
			if stored[k] == nil {
				stored[k] = map[time.Time]bool{}
			}
			stored[k][w.Time] = true
		}
	}
	l := s.Ledger()
	for _, mt := range l.Meters {
		k := key{mt.Enterprise, mt.Meter}
		want := mt.Stored()
		if got := sums[k]; math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
			t.Errorf("%s/%s: ingest observed %.6f, ledger %.6f", mt.Enterprise, mt.Meter, got, want)
		}
		if got := len(stored[k]); got != mt.Readings {
			t.Errorf("%s/%s: ingest stored %d readings, ledger %d", mt.Enterprise, mt.Meter, got, mt.Readings)
		}
	}
	if !maps.Equal(rejected, l.Rejected) {
		t.Errorf("ingest rejected %v, ledger expects %v", rejected, l.Rejected)
	}
	return l
}
