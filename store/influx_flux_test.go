package store

import (
	"strings"
	"testing"
	"time"
)

// TestFluxTimeFilterLast: the _time filter of every Flux query comes after
// the measurement, tag and field filters, which InfluxDB 1.8 then pushes
// down to its series index; before them, it reads every series in range.
func TestFluxTimeFilterLast(t *testing.T) {
	s := &Influx{cfg: InfluxConfig{Bucket: "telemetry"}}
	q := s.fluxFrom(time.Unix(0, 0), time.Unix(3600, 0), `r._measurement == "declaration"`, `r.id == "d-1"`)
	m, id, tm := strings.Index(q, "_measurement"), strings.Index(q, "r.id"), strings.Index(q, "r._time <")
	if m < 0 || id < 0 || tm < 0 || !(m < tm && id < tm) {
		t.Errorf("the _time filter is not last:\n%s", q)
	}
}
