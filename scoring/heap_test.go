package scoring

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

var heapFleet = flag.Int("heapfleet", 200, "enterprises in BenchmarkFleetHeap")

// fleetRegistry returns a registry of n copies of lj-alpha, every quantity
// the standard reads on 24 meters.
func fleetRegistry(tb testing.TB, n int) *registry.Registry {
	tb.Helper()
	tmpl, err := os.ReadFile("testdata/registry/lj-alpha.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	files := make(map[string][]byte, n)
	for i := range n {
		id := fmt.Sprintf("lj-%05d", i)
		files[id+".yaml"] = bytes.ReplaceAll(tmpl, []byte("lj-alpha"), []byte(id))
	}
	reg, err := registry.Parse(files)
	if err != nil {
		tb.Fatal(err)
	}
	return reg
}

// heapAlloc returns the live heap after a collection.
func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkFleetHeap measures the heap the windows of -heapfleet
// enterprises hold after a burst (their first hours), 30 days and 365
// days of hourly readings of every meter. Run it with -benchtime 1x.
func BenchmarkFleetHeap(b *testing.B) {
	fx := newFixture(b)
	reg := fleetRegistry(b, *heapFleet)
	now := time.Date(2026, 6, 1, 0, 30, 0, 0, time.UTC)
	for _, c := range []struct {
		name  string
		hours int
	}{
		{"burst", 3},
		{"30d", 30 * 24},
		{"365d", 365 * 24},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				eng, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: reg, Solutions: fx.lib, Now: func() time.Time { return now }})
				if err != nil {
					b.Fatal(err)
				}
				before := heapAlloc()
				var batch []store.Reading
				for h := c.hours; h > 0; h-- {
					at := now.Add(-time.Duration(h) * time.Hour)
					batch = batch[:0]
					for _, es := range eng.order {
						batch = append(batch, hourly(es.ent, at, goodRates)...)
					}
					eng.Observe(batch)
					eng.apply(at)
				}
				for _, es := range eng.order {
					for _, w := range es.wins {
						w.sync(now)
					}
				}
				batch = nil
				after := heapAlloc()
				n := float64(len(eng.order))
				b.ReportMetric((float64(after)-float64(before))/n, "heap-B/enterprise")
				b.ReportMetric(float64(eng.StateBytes())/n, "window-B/enterprise")
				b.ReportMetric(float64(after)/n, "total-heap-B/enterprise")
				runtime.KeepAlive(eng)
			}
		})
	}
}
