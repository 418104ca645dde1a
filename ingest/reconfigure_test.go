package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

// runPipeline runs p until the test ends and returns the context it runs
// with.
func runPipeline(t *testing.T, p *Pipeline) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return ctx
}

// memWriter is a Writer that keeps what it was given.
type memWriter struct {
	mu sync.Mutex
	rs []store.Reading
}

func (w *memWriter) WriteReadings(_ context.Context, rs []store.Reading) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rs = append(w.rs, rs...)
	return nil
}

func (w *memWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.rs)
}

// TestReconfigure switches a running pipeline to a registry with one more
// gateway: the messages submitted while it is held wait and are written
// after, nothing written is in flight while held runs, a failing held keeps
// the old registry, and counter state of a meter that stays carries over.
func TestReconfigure(t *testing.T) {
	plant, err := os.ReadFile("testdata/registry/plant.yaml")
	if err != nil {
		t.Fatal(err)
	}
	other, err := os.ReadFile("testdata/registry/other.yaml")
	if err != nil {
		t.Fatal(err)
	}
	regA, err := registry.Parse(map[string][]byte{"plant.yaml": plant})
	if err != nil {
		t.Fatal(err)
	}
	regAB, err := registry.Parse(map[string][]byte{"plant.yaml": plant, "other.yaml": other})
	if err != nil {
		t.Fatal(err)
	}
	w := &memWriter{}
	var observed atomic.Int64
	m := NewMetrics(prometheus.NewRegistry())
	p := NewPipeline(regA, PipelineConfig{Normaliser: testConfig, BatchInterval: 10 * time.Millisecond}, w,
		func(context.Context, string, []byte) error { return nil },
		func(rs []store.Reading) { observed.Add(int64(len(rs))) }, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := runPipeline(t, p)

	var acked atomic.Int64
	now := time.Now().UTC().Truncate(time.Minute)
	submit := func(ent, gw, meter string, seq int, at time.Time, v float64) {
		payload := fmt.Sprintf(`{"v":1,"gateway":%q,"seq":%d,"readings":[{"meter":%q,"ts":%q,"value":%g}]}`, gw, seq, meter, at.Format(time.RFC3339), v)
		p.Submit(Delivery{Topic: "cp/v1/" + ent + "/" + gw + "/telemetry", Payload: []byte(payload), Received: time.Now(), Ack: func() { acked.Add(1) }})
	}
	waitAcked := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for acked.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("acked %d messages, want %d", acked.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	submit("ent-a", "gw-1", "E-1", 1, now.Add(-3*time.Minute), 100)
	submit("ent-a", "gw-1", "E-1", 2, now.Add(-2*time.Minute), 110)
	submit("ent-b", "gw-b", "E-B", 1, now.Add(-2*time.Minute), 5) // not registered yet
	waitAcked(3)
	if got := w.count(); got != 2 {
		t.Fatalf("stored %d readings before the reload, want 2 (ent-b is unknown)", got)
	}

	// A failing reload keeps the old registry.
	if err := p.Reconfigure(ctx, regAB, func() error { return errors.New("scorer refused") }); err == nil {
		t.Fatal("Reconfigure with a failing held: got nil error")
	}
	submit("ent-b", "gw-b", "E-B", 2, now.Add(-time.Minute), 6)
	waitAcked(4)
	if got := w.count(); got != 2 {
		t.Fatalf("stored %d readings after a refused reload, want 2 (ent-b still unknown)", got)
	}

	// While held, nothing is written or observed; what arrives waits.
	err = p.Reconfigure(ctx, regAB, func() error {
		before, obs := w.count(), observed.Load()
		submit("ent-a", "gw-1", "E-1", 3, now.Add(-time.Minute), 125)
		submit("ent-b", "gw-b", "E-B", 3, now.Add(-time.Minute), 7)
		time.Sleep(50 * time.Millisecond) // several batch intervals
		if w.count() != before || observed.Load() != obs {
			return errors.New("readings written while ingest was held")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitAcked(6)
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.rs) != 4 {
		t.Fatalf("stored %d readings, want 4: %+v", len(w.rs), w.rs)
	}
	// E-1's counter continued from its register before the reload.
	if r := w.rs[2]; r.Meter != "E-1" || r.Delta != 15 {
		t.Errorf("E-1 after the reload: %+v, want delta 15 from the register kept across the reload", r)
	}
	if r := w.rs[3]; r.Enterprise != "ent-b" || r.Meter != "E-B" {
		t.Errorf("after the reload: %+v, want ent-b's E-B accepted", r)
	}
}

// failingWriter refuses every write (temporarily) while down is set.
type failingWriter struct {
	memWriter
	down    atomic.Bool
	refused atomic.Int64
}

func (w *failingWriter) WriteReadings(ctx context.Context, rs []store.Reading) error {
	if w.down.Load() {
		w.refused.Add(1)
		return &store.WriteError{Err: errors.New("disk full")}
	}
	return w.memWriter.WriteReadings(ctx, rs)
}

// While the store refuses writes, Reconfigure waits for the batches in
// flight only as long as its ctx: then it returns, held has not run and
// the registry is unchanged; once the store is back, the held messages
// are stored and a reconfigure passes.
func TestReconfigureDuringStoreOutage(t *testing.T) {
	reg := testRegistry(t)
	w := &failingWriter{}
	w.down.Store(true)
	p := NewPipeline(reg, PipelineConfig{Normaliser: testConfig, BatchInterval: 10 * time.Millisecond, RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond}, w,
		func(context.Context, string, []byte) error { return nil }, nil, NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := runPipeline(t, p)
	var acked atomic.Int64
	now := time.Now().UTC().Truncate(time.Minute)
	p.Submit(Delivery{Topic: topicA, Payload: payload(1, reading("E-1", now.Add(-time.Minute), 100)), Received: time.Now(), Ack: func() { acked.Add(1) }})
	deadline := time.Now().Add(10 * time.Second)
	for w.refused.Load() == 0 || p.StoreHealthy() {
		if time.Now().After(deadline) {
			t.Fatal("no write refused")
		}
		time.Sleep(time.Millisecond)
	}

	rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer rcancel()
	var abandoned atomic.Bool
	start := time.Now()
	err := p.Reconfigure(rctx, reg, func() error { abandoned.Store(true); return nil })
	if took := time.Since(start); err == nil || abandoned.Load() || took > 5*time.Second {
		t.Fatalf("Reconfigure during an outage: err %v, held ran %v, took %s; want an error within the ctx, held not run", err, abandoned.Load(), took)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Reconfigure's error %v does not wrap its ctx's", err)
	}
	if acked.Load() != 0 {
		t.Fatalf("%d messages acknowledged while the store refused writes", acked.Load())
	}

	w.down.Store(false)
	ran := false
	if err := p.Reconfigure(ctx, reg, func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("Reconfigure once the store is back: err %v, held ran %v", err, ran)
	}
	if acked.Load() != 1 || w.count() != 1 {
		t.Errorf("after the outage: %d acknowledged, %d stored; want 1 and 1", acked.Load(), w.count())
	}
	if abandoned.Load() {
		t.Error("the reconfigure given up during the outage ran its held after all")
	}
}
