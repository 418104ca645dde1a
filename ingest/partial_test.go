package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/store"
)

// shortRetention returns a database of a real InfluxDB whose readings go
// to a retention policy of 1 h: older points are dropped, the rest of a
// write kept (a partial write).
func shortRetention(t *testing.T) (*testenv.InfluxDB, *store.Influx) {
	t.Helper()
	srv := testenv.NewInflux(t)
	db := srv.Database(t)
	if _, err := db.Query(fmt.Sprintf(`CREATE RETENTION POLICY "short" ON %q DURATION 1h REPLICATION 1`, db.Database)); err != nil {
		t.Fatal(err)
	}
	db.Bucket = db.Database + "/short"
	return db, openInflux(t, db)
}

// TestPartialWrite: InfluxDB keeps part of a message and refuses the rest
// (a partial write: a reading older than the retention policy is dropped,
// HTTP 400). The readings it kept are handed to the scorer and the message
// is acknowledged; only the dropped reading is dead-lettered, on its own.
// Before, the whole message was dead-lettered while part of it sat in the
// store, never observed.
func TestPartialWrite(t *testing.T) {
	db, st := shortRetention(t)

	var mu sync.Mutex
	var observed []store.Reading
	var letters []DeadLetter
	acked := make(chan struct{}, 1)
	p := NewPipeline(testRegistry(t), PipelineConfig{Normaliser: testConfig, BatchSize: 100, BatchInterval: time.Millisecond, RetryMin: time.Millisecond}, st,
		func(_ context.Context, topic string, payload []byte) error {
			var dl DeadLetter
			if err := json.Unmarshal(payload, &dl); err != nil {
				return err
			}
			mu.Lock()
			letters = append(letters, dl)
			mu.Unlock()
			return nil
		},
		func(rs []store.Reading) { mu.Lock(); observed = append(observed, rs...); mu.Unlock() },
		NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	runPipeline(t, p)

	now := time.Now().UTC().Truncate(time.Second)
	old, recent := now.Add(-5*time.Hour), now.Add(-time.Minute)
	p.Submit(Delivery{Topic: "cp/v1/ent-a/gw-1/telemetry", Received: time.Now(), Ack: func() { acked <- struct{}{} },
		Payload: fmt.Appendf(nil, `{"gateway":"gw-1","seq":1,"readings":[{"meter":"COD-OUT","ts":%q,"value":50},{"meter":"COD-OUT","ts":%q,"value":60},{"meter":"HW","ts":%q,"value":0.5}]}`,
			old.Format(time.RFC3339), recent.Format(time.RFC3339), recent.Format(time.RFC3339))})
	select {
	case <-acked:
	case <-time.After(30 * time.Second):
		t.Fatal("the message was not acknowledged")
	}
	// The fault happened: the store dropped the old reading and kept the rest.
	rows := db.QueryInfluxQL(t, `SELECT * FROM "short".reading`)
	if len(rows) != 2 {
		t.Fatalf("stored %v, want the two recent readings (the old one beyond the 1 h retention)", rows)
	}
	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, r := range observed {
		got = append(got, fmt.Sprintf("%s@%s=%g", r.Meter, r.Time.Format(time.RFC3339), r.Value))
	}
	want := []string{"COD-OUT@" + recent.Format(time.RFC3339) + "=60", "HW@" + recent.Format(time.RFC3339) + "=500"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("observed %v, want %v: what the store kept", got, want)
	}
	if len(letters) != 1 || letters[0].Reason != ReasonStoreRejected || len(letters[0].Readings) != 1 ||
		!strings.Contains(letters[0].Readings[0].Detail, old.Format(time.RFC3339)) || letters[0].Payload != "" {
		t.Errorf("dead-letters %+v, want the old reading alone, store_rejected", letters)
	}
}

// TestRefusedCounterReadingForgotten: InfluxDB drops a counter's register
// (older than the retention policy) and keeps the next one, which the
// normaliser had counted from the dropped one. The dropped register never
// was: the next reading is rewritten to count from what was stored before
// it (nothing: it becomes the meter's first, counting 0), so the stored
// deltas add up to the last stored register less the first, and the
// scorer's amounts to the same. Before, 50 kWh counted from a register the
// store never held stayed in store and scorer.
func TestRefusedCounterReadingForgotten(t *testing.T) {
	_, st := shortRetention(t)

	var mu sync.Mutex
	var observed float64
	acked := make(chan int, 4)
	m := NewMetrics(prometheus.NewRegistry())
	p := NewPipeline(testRegistry(t), PipelineConfig{Normaliser: testConfig, BatchSize: 100, BatchInterval: time.Millisecond, RetryMin: time.Millisecond}, st,
		func(context.Context, string, []byte) error { return nil },
		func(rs []store.Reading) {
			mu.Lock()
			for _, r := range rs {
				if r.Meter == "E-1" {
					observed += r.Delta
				}
			}
			mu.Unlock()
		}, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	runPipeline(t, p)

	now := time.Now().UTC().Truncate(time.Second)
	submit := func(seq int, readings string) {
		p.Submit(Delivery{Topic: "cp/v1/ent-a/gw-1/telemetry", Received: time.Now(), Ack: func() { acked <- seq },
			Payload: fmt.Appendf(nil, `{"gateway":"gw-1","seq":%d,"readings":[%s]}`, seq, readings)})
		select {
		case <-acked:
		case <-time.After(30 * time.Second):
			t.Fatalf("message %d not acknowledged", seq)
		}
	}
	at := func(d time.Duration) string { return now.Add(-d).Format(time.RFC3339) }
	submit(1, fmt.Sprintf(`{"meter":"E-1","ts":%q,"value":100},{"meter":"E-1","ts":%q,"value":150}`, at(5*time.Hour), at(30*time.Minute)))
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(m.refusedRewrites) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no rewrite after the refusal")
		}
		time.Sleep(5 * time.Millisecond)
	}
	submit(2, fmt.Sprintf(`{"meter":"E-1","ts":%q,"value":170}`, at(10*time.Minute)))
	// The fault happened: the old register is not in the store.
	rs, err := st.Readings(context.Background(), "ent-a", "E-1", now.Add(-24*time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var stored float64
	for _, r := range rs {
		got = append(got, fmt.Sprintf("%v+%v", r.Value, r.Delta))
		stored += r.Delta
	}
	if want := []string{"150+0", "170+20"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("stored E-1 %v, want %v", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if stored != 20 || observed != 20 {
		t.Errorf("stored total %g, observed %g; want 20 (170 less 150, the first register stored)", stored, observed)
	}
}
