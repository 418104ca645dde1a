package ingest

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanprod/cleanprod/internal/testenv"
)

// TestStoreOutageLosesNothing kills InfluxDB while readings flow, keeps it
// down (30 s, or CLEANPROD_OUTAGE_SECONDS), starts it again, and checks
// that every reading sent is stored once and counted once: while the store
// is down nothing is acknowledged, the in-flight window stays bounded and
// the broker holds the rest.
func TestStoreOutageLosesNothing(t *testing.T) {
	outage := 30 * time.Second
	if s := os.Getenv("CLEANPROD_OUTAGE_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		outage = time.Duration(n) * time.Second
	}
	broker := testenv.Mosquitto(t)
	srv := testenv.NewInflux(t)
	db := srv.Database(t)
	reg := testRegistry(t)
	h := startIngest(t, broker.URL(), "cleanprod-outage", reg, openInflux(t, db))
	waitFor(t, 10*time.Second, "subscriber connected", h.sub.Connected)
	gw := connect(t, broker.URL(), "gw-1-outage")

	meters := outageMeters
	t0 := time.Now().UTC().Truncate(time.Hour).Add(-3 * 24 * time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sent := make(chan int, 1)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		seq := 0
		deadline := time.Now().Add(outage + 10*time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				sent <- seq
				return
			case <-tick.C:
			}
			seq++
			tok := gw.Publish(TelemetryTopic("ent-a", "gw-1"), 1, false, outageMessage(seq, t0))
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Errorf("publish seq %d: %v", seq, tok.Error())
			}
		}
		sent <- seq
	}()

	time.Sleep(3 * time.Second)
	srv.Kill()
	down := time.Now()
	peak := 0.0
	for time.Since(down) < outage {
		peak = max(peak, testutil.ToFloat64(h.metrics.inflight))
		time.Sleep(100 * time.Millisecond)
	}
	written := testutil.ToFloat64(h.metrics.readings)
	srv.Start()
	restarted := time.Now()
	n := <-sent
	total := float64(n * len(meters))
	waitFor(t, 60*time.Second, fmt.Sprintf("all %g readings written", total), func() bool {
		return testutil.ToFloat64(h.metrics.readings) == total
	})
	t.Logf("sent %d messages (%g readings); %g written before the outage; peak in-flight %g; caught up %s after the restart",
		n, total, written, peak, time.Since(restarted).Round(time.Millisecond))
	// mosquitto's in-flight window (max_inflight_messages 1000 in the test
	// broker) bounds what waits unacknowledged in memory.
	if peak > 1000 {
		t.Errorf("peak in-flight %g exceeds the broker's in-flight window of 1000", peak)
	}
	checkStoredOnce(t, h, db, n)
}

// checkStoredOnce checks that messages 1..n of outageMessage are stored
// once, and counted once by the store's deltas and by the scorer.
func checkStoredOnce(t *testing.T, h *ingestHarness, db *testenv.InfluxDB, n int) {
	t.Helper()
	total := float64(n * len(outageMeters))
	if got := db.MustCountReadings(t, ""); float64(got) != total {
		t.Errorf("stored readings: got %d, want %g", got, total)
	}
	// Counters advance 10 units of their raw unit per step; the first
	// reading is the baseline. W-FRESH reports litres (canonical m3),
	// E-MWH reports MWh divided so that it too rises 10 kWh per step.
	steps := float64(n - 1)
	for m, want := range map[string]float64{"E-1": steps * 10, "E-MWH": steps * 10, "W-FRESH": steps * 0.01, "WW-OUT": steps * 10} {
		if got := sumDelta(t, db, m); !near(got, want) {
			t.Errorf("%s: stored sum of deltas %g, want %g", m, got, want)
		}
		if got := h.observedSum(m); !near(got, want) {
			t.Errorf("%s: scorer's sum %g, want %g", m, got, want)
		}
	}
	if got, want := sumDelta(t, db, "HW"), float64(n)*10; got != want {
		t.Errorf("HW: stored %g kg, want %g", got, want)
	}
}

// near compares sums of float deltas, which may differ in the last bits.
func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// outageMeters are the meters of outageMessage.
var outageMeters = []string{"E-1", "E-MWH", "W-FRESH", "WW-OUT", "HW", "COD-OUT"}

// outageMessage is gw-1's message number seq, a minute after t0 per seq:
// counters rise by 10 units of their raw unit per step (E-MWH 10 kWh, HW
// reports 10 kg each time), COD-OUT a concentration.
func outageMessage(seq int, t0 time.Time) string {
	ts := t0.Add(time.Duration(seq) * time.Minute).Format(time.RFC3339)
	var rs string
	for i, m := range outageMeters {
		if i > 0 {
			rs += ","
		}
		v := float64(seq) * 10
		if m == "E-MWH" {
			v /= 1000 // MWh register: 10 kWh per step
		}
		if m == "HW" {
			v = 0.01 // 10 kg per step in t
		}
		if m == "COD-OUT" {
			v = 50 + float64(seq%7)
		}
		rs += fmt.Sprintf(`{"meter":%q,"ts":%q,"value":%g}`, m, ts, v)
	}
	return fmt.Sprintf(`{"gateway":"gw-1","seq":%d,"readings":[%s]}`, seq, rs)
}
