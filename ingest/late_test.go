package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanprod/cleanprod/store"
)

// gatedLookup asks the real store, but only once the test opens the gate,
// and fails while failures remain.
type gatedLookup struct {
	st       *store.Bolt
	mu       sync.Mutex
	closed   bool
	failures int
	asked    int
	open     chan struct{}
}

func (g *gatedLookup) lookup(ctx context.Context, enterprise string, meters []string, from, to time.Time) ([]store.Reading, error) {
	g.mu.Lock()
	closed, open := g.closed, g.open
	g.asked++
	g.mu.Unlock()
	if closed {
		select {
		case <-open:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	g.mu.Lock()
	fail := g.failures > 0
	if fail {
		g.failures--
	}
	g.mu.Unlock()
	if fail {
		return nil, errors.New("store unavailable")
	}
	return g.st.ReadingsOf(ctx, enterprise, meters, from, to)
}

// TestLateReadingsWaitForTheStore: a counter reading older than the
// history kept waits, unacknowledged, while the store is asked off the
// pipeline's goroutine: another gateway's fresh reading is stored and
// acknowledged meanwhile; a store that fails is asked again rather than
// the reading dead-lettered; once it answers, the reading is placed
// between its stored neighbours (its delta from the register before it,
// the next one's rewritten), so the meter's total is unchanged.
func TestLateReadingsWaitForTheStore(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "readings.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	g := &gatedLookup{st: st, open: make(chan struct{})}
	cfg := testConfig
	cfg.Lookup = g.lookup
	var (
		mu       sync.Mutex
		acked    = map[int]bool{}
		observed float64
		letters  []string
	)
	m := NewMetrics(prometheus.NewRegistry())
	p := NewPipeline(testRegistry(t), PipelineConfig{Normaliser: cfg, BatchSize: 50, BatchInterval: 5 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}, st,
		func(_ context.Context, topic string, _ []byte) error {
			mu.Lock()
			letters = append(letters, topic)
			mu.Unlock()
			return nil
		},
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

	t0 := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	at := func(sec int) string { return t0.Add(time.Duration(sec) * time.Second).Format(time.RFC3339) }
	submit := func(topic, gw string, seq int, readings string) {
		p.Submit(Delivery{Topic: topic, Received: time.Now(),
			Payload: fmt.Appendf(nil, `{"gateway":%q,"seq":%d,"readings":[%s]}`, gw, seq, readings),
			Ack:     func() { mu.Lock(); acked[seq] = true; mu.Unlock() }})
	}
	isAcked := func(seq int) bool { mu.Lock(); defer mu.Unlock(); return acked[seq] }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10s", what)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	// 20 registers a minute apart, 100 kWh each: the history keeps the
	// last 8, the store all.
	for i := range 20 {
		submit("cp/v1/ent-a/gw-1/telemetry", "gw-1", i+1, fmt.Sprintf(`{"meter":"E-1","ts":%q,"value":%d}`, at(60*i), 100*i))
	}
	waitFor("the registers stored", func() bool { return isAcked(20) })

	// A late register at 2m30s (250) while the store does not answer.
	g.mu.Lock()
	g.closed, g.failures = true, 2
	g.mu.Unlock()
	submit("cp/v1/ent-a/gw-1/telemetry", "gw-1", 21, fmt.Sprintf(`{"meter":"E-1","ts":%q,"value":250}`, at(150)))
	waitFor("the late message set aside", func() bool { return testutil.ToFloat64(m.lateWaiting) == 1 })
	// Another gateway's fresh reading does not wait behind it.
	submit("cp/v1/ent-a/gw-2/telemetry", "gw-2", 1000, fmt.Sprintf(`{"meter":"V-1","ts":%q,"value":7}`, at(3000)))
	waitFor("the other gateway's reading stored", func() bool { return isAcked(1000) })
	if isAcked(21) {
		t.Fatal("the late message was acknowledged before the store answered about it")
	}
	// The store answers, after failing twice: asked again, not dead-lettered.
	close(g.open)
	waitFor("the late message stored", func() bool { return isAcked(21) })
	if f := testutil.ToFloat64(m.lateLookupFailures); f < 2 {
		t.Errorf("%g failed look-ups counted, want 2", f)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(letters) != 0 {
		t.Errorf("dead-letters %v: nothing here is wrong", letters)
	}
	rs, err := st.Readings(context.Background(), "ent-a", "E-1", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	got := map[int]float64{}
	for _, r := range rs {
		total += r.Delta
		got[int(r.Time.Sub(t0).Seconds())] = r.Delta
	}
	if len(rs) != 21 || got[150] != 50 || got[180] != 50 || got[120] != 100 {
		t.Errorf("%d readings, deltas at 2m %g, 2m30s %g, 3m %g; want 21 readings, 100, 50 and 50", len(rs), got[120], got[150], got[180])
	}
	if total != 1900 || observed != 1900 {
		t.Errorf("stored total %g, observed %g; want 1900 (the last register less the first), once", total, observed)
	}
	if testutil.ToFloat64(m.lateWaiting) != 0 || p.norm.Extended() != 0 {
		t.Errorf("%g messages still waiting, %d histories still extended", testutil.ToFloat64(m.lateWaiting), p.norm.Extended())
	}
}
