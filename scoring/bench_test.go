package scoring

import (
	"context"
	"flag"
	"slices"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/store"
)

var (
	fleetSize = flag.Int("fleet", 10000, "enterprises in the recompute benchmark")
	workers   = flag.Int("workers", 0, "evaluation workers in the recompute benchmark (0: GOMAXPROCS)")
)

// cloneWindow copies a window's buffers.
func cloneWindow(w *window) *window {
	c := *w
	c.data = slices.Clone(w.data)
	for i := range c.data {
		t := &c.data[i]
		t.vals = append(make([]float64, 0, cap(t.vals)), t.vals[:cap(t.vals)]...)[:len(t.vals)]
		if t.counts != nil {
			t.counts = &gaugeCounts{n16: slices.Clone(t.counts.n16), n32: slices.Clone(t.counts.n32)}
		}
	}
	c.total = slices.Clone(w.total)
	c.seen, c.seenN = slices.Clone(w.seen), slices.Clone(w.seenN)
	return &c
}

// benchEngine builds an engine over n copies of lj-alpha, each with 60
// days of hourly data of the "good" profile in its windows and Level II
// declarations.
func benchEngine(b *testing.B, n int) (*Engine, time.Time) {
	b.Helper()
	fx := newFixture(b)
	reg := fleetRegistry(b, n)
	now := time.Date(2026, 6, 1, 0, 30, 0, 0, time.UTC)
	eng, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: reg, Solutions: fx.lib, Workers: *workers, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	first := eng.order[0]
	for h := 60 * 24; h > 0; h-- {
		eng.Observe(hourly(first.ent, now.Add(-time.Duration(h)*time.Hour), goodRates))
	}
	eng.apply(now)
	for _, es := range eng.order {
		if es != first {
			es.wins = es.wins[:0]
			for _, w := range first.wins {
				es.wins = append(es.wins, cloneWindow(w))
			}
		}
		es.decls = indexDeclarations(levelIIDeclarations(fx.std, es.id, LevelI))[es.id]
	}
	return eng, now
}

// BenchmarkRecompute measures a tick that evaluates every enterprise
// (both windows, 28 indicators each, code, regressions, lagging with
// solutions, metrics), as on a full sweep.
func BenchmarkRecompute(b *testing.B) {
	eng, now := benchEngine(b, *fleetSize)
	ctx := context.Background()
	eng.step(ctx, now)
	perEnt := float64(eng.StateBytes()) / float64(len(eng.order))
	b.ReportAllocs()
	for b.Loop() {
		eng.lastFull = time.Time{} // every enterprise is due
		eng.step(ctx, now)
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/tick")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(len(eng.order)), "µs/enterprise")
	b.ReportMetric(perEnt, "window-bytes/enterprise")
}

// BenchmarkObserve measures applying readings to the windows.
func BenchmarkObserve(b *testing.B) {
	eng, now := benchEngine(b, 100)
	var batch []store.Reading
	for _, es := range eng.order {
		batch = append(batch, hourly(es.ent, now, goodRates)...)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		eng.Observe(batch)
		eng.apply(now)
	}
	b.ReportMetric(float64(len(batch))*float64(b.N)/b.Elapsed().Seconds(), "readings/s")
}
