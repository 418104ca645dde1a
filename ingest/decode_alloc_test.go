//go:build !race

package ingest

import (
	"fmt"
	"strings"
	"testing"
)

// TestDecodeAllocs holds Decode to its allocation budget: the Message,
// its Readings slice and the gateway string per message, plus one string
// per distinct meter (repeats share one). The race detector changes
// allocation counts, hence the build tag.
func TestDecodeAllocs(t *testing.T) {
	tests := []struct {
		name   string
		meters int // distinct meters among 49 readings
		want   float64
	}{
		{"batch", 7, 3 + 7},
		{"distinct", 49, 3 + 49},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := make([]string, 49)
			for i := range rs {
				rs[i] = fmt.Sprintf(`{"meter":"E-PAINT-%02d","ts":"2026-11-29T06:%02d:00Z","value":%d.5}`, i%tt.meters, i/tt.meters, 1000+i)
			}
			payload := []byte(`{"gateway":"gw-paint-01","seq":1042,"sent":"2026-11-29T06:00:05.250Z","readings":[` + strings.Join(rs, ",") + `]}`)
			got := testing.AllocsPerRun(100, func() {
				if m, err := Decode(payload, 0); err != nil || len(m.Readings) != 49 {
					t.Fatal(err)
				}
			})
			if got > tt.want {
				t.Errorf("got %v allocations per message, want at most %v", got, tt.want)
			}
		})
	}
}
