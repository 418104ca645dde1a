package ingest

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// BenchmarkDecode decodes contract-v1 payloads of 49 readings with the
// scanner (Decode) and, for comparison, with the encoding/json version it
// replaced (decodeRef). "batch" is a gateway catching up: 7 meters at 7
// times; "distinct" is 49 meters at one time, the contract's usual shape.
func BenchmarkDecode(b *testing.B) {
	const perMsg = 49
	t0 := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	shapes := []struct {
		name  string
		meter func(i int) string
		ts    func(i int) time.Time
	}{
		{"batch", func(i int) string { return fmt.Sprintf("E-PAINT-%02d", i%7) }, func(i int) time.Time { return t0.Add(time.Duration(i/7) * time.Minute) }},
		{"distinct", func(i int) string { return fmt.Sprintf("E-PAINT-%02d", i) }, func(int) time.Time { return t0 }},
	}
	impls := []struct {
		name   string
		decode func([]byte, int) (*Message, error)
	}{
		{"scanner", Decode},
		{"encoding_json", decodeRef},
	}
	for _, shape := range shapes {
		rs := make([]string, perMsg)
		for i := range rs {
			rs[i] = fmt.Sprintf(`{"meter":%q,"ts":%q,"value":%g}`, shape.meter(i), shape.ts(i).Format(time.RFC3339), 182734.5+float64(i))
		}
		payload := []byte(`{"gateway":"gw-paint-01","seq":1042,"sent":"2026-11-29T06:00:05Z","readings":[` + strings.Join(rs, ",") + `]}`)
		for _, impl := range impls {
			b.Run(shape.name+"/"+impl.name, func(b *testing.B) {
				b.ReportAllocs()
				var ms0, ms1 runtime.MemStats
				runtime.ReadMemStats(&ms0)
				for b.Loop() {
					m, err := impl.decode(payload, 0)
					if err != nil || len(m.Readings) != perMsg {
						b.Fatal(err)
					}
				}
				runtime.ReadMemStats(&ms1)
				readings := float64(b.N * perMsg)
				b.ReportMetric(readings/b.Elapsed().Seconds(), "readings/s")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/readings, "ns/reading")
				b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/readings, "allocs/reading")
			})
		}
	}
}
