package main

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/internal/testenv"
)

// TestCounterGlitchThroughServers sends, through mosquitto into InfluxDB,
// a register that reads 0 once and comes back, and one that is reset and
// stays down, with a restart while each drop is still held. Expected by
// hand: E-PAINT-01 576.65, 0, 576.67, 576.70 MWh counts 0.05 MWh (50 kWh),
// the zero nothing; WW-OUT 100, 5, 7 m3 counts 5 since the reset, then 2:
// 7 m3, the held reading rewritten in place.
func TestCounterGlitchThroughServers(t *testing.T) {
	testenv.NeedServers(t)
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	env := map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token}
	args := []string{"-mqtt.url", broker.URL(), "-influx.url", db.URL, "-influx.bucket", db.Bucket,
		"-gateway_config", "testdata/gateway-config", "-data_dir", filepath.Join(t.TempDir(), "data")}
	t0 := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	msg := func(seq int, at time.Duration, paint, ww float64) string {
		ts := t0.Add(at).Format(time.RFC3339)
		return fmt.Sprintf(`{"gateway":"gw-paint-01","seq":%d,"readings":[{"meter":"E-PAINT-01","ts":%q,"value":%g},{"meter":"WW-OUT","ts":%q,"value":%g}]}`,
			seq, ts, paint, ts, ww)
	}
	points := func() int { return len(db.QueryInfluxQL(t, `SELECT "delta" FROM "reading"`)) }

	s := startServe(t, env, args...)
	gw := mqttClient(t, broker.URL(), "glitch-gateway")
	pub(t, gw, sampleTopic, msg(1, 0, 576.65, 100))
	pub(t, gw, sampleTopic, msg(2, 15*time.Minute, 0, 5)) // both drops held
	waitFor(t, 20*time.Second, "4 points stored", func() bool { return points() == 4 })
	if got := s.metric(t, `cleanprod_ingest_counter_events_total{event="reset"}`); got != 0 {
		t.Errorf("a held drop counted %g resets before the next reading", got)
	}
	s.stop(t)

	s = startServe(t, env, args...)
	pub(t, gw, sampleTopic, msg(3, 30*time.Minute, 576.67, 7))
	pub(t, gw, sampleTopic, msg(4, 45*time.Minute, 576.70, 7))
	waitFor(t, 20*time.Second, "4 readings written after the restart", func() bool {
		return s.metric(t, "cleanprod_ingest_readings_written_total") == 4
	})
	want := map[string]struct {
		sum    float64
		points int
	}{"E-PAINT-01": {50, 4}, "WW-OUT": {7, 4}}
	for meter, w := range want {
		rows := db.QueryInfluxQL(t, fmt.Sprintf(`SELECT "delta" FROM "reading" WHERE "meter" = '%s'`, meter))
		var sum float64
		for _, r := range rows {
			sum += r[1].(float64)
		}
		if math.Abs(sum-w.sum) > 1e-6 || len(rows) != w.points {
			t.Errorf("%s: stored %d points adding up to %g, want %d adding up to %g: %v", meter, len(rows), sum, w.points, w.sum, rows)
		}
	}
	for event, n := range map[string]float64{"glitch": 1, "reset": 1} {
		if got := s.metric(t, `cleanprod_ingest_counter_events_total{event="`+event+`"}`); got != n {
			t.Errorf("counter events %s: %g, want %g", event, got, n)
		}
	}
}
