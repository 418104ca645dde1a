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
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

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
