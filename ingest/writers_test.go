package ingest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanprod/cleanprod/store"
)

// lastWriteWins is a store where a key written twice keeps the value of
// the write that finished last, as InfluxDB does; the first write is slow.
type lastWriteWins struct {
	mu     sync.Mutex
	writes int
	deltas map[int64]float64
}

func (w *lastWriteWins) WriteReadings(_ context.Context, rs []store.Reading) error {
	w.mu.Lock()
	w.writes++
	first := w.writes == 1
	w.mu.Unlock()
	if first {
		time.Sleep(150 * time.Millisecond)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range rs {
		w.deltas[r.Time.UnixNano()] = r.Delta
	}
	return nil
}

// TestConcurrentWritersKeepRewritesInOrder: with two writers, a batch that
// rewrites a counter reading of a batch still being written waits for it,
// so the store ends with the corrected delta; messages are acknowledged in
// arrival order and the scorer's sum is exact.
func TestConcurrentWritersKeepRewritesInOrder(t *testing.T) {
	w := &lastWriteWins{deltas: map[int64]float64{}}
	var mu sync.Mutex
	var acks []int
	var observed float64
	p := NewPipeline(testRegistry(t), PipelineConfig{Normaliser: testConfig, BatchSize: 2, Writers: 2, BatchInterval: time.Millisecond}, w,
		func(context.Context, string, []byte) error { return nil },
		func(rs []store.Reading) {
			mu.Lock()
			for _, r := range rs {
				observed += r.Delta
			}
			mu.Unlock()
		}, NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	runPipeline(t, p)

	t0 := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	var nAcked atomic.Int32
	submit := func(seq int, readings string) {
		p.Submit(Delivery{Topic: "cp/v1/ent-a/gw-1/telemetry", Received: time.Now(),
			Payload: fmt.Appendf(nil, `{"gateway":"gw-1","seq":%d,"readings":[%s]}`, seq, readings),
			Ack:     func() { mu.Lock(); acks = append(acks, seq); mu.Unlock(); nAcked.Add(1) }})
	}
	at := func(m int) string { return t0.Add(time.Duration(m) * time.Minute).Format(time.RFC3339) }
	// Batch 1: registers 100 at t0 and 130 at t0+20m (delta 30), slow to write.
	submit(1, fmt.Sprintf(`{"meter":"W-FRESH","ts":%q,"value":100000},{"meter":"W-FRESH","ts":%q,"value":130000}`, at(0), at(20)))
	time.Sleep(20 * time.Millisecond) // batch 1 is with a writer
	// Batch 2: 110 at t0+10m arrives late: t0+20m's delta becomes 20.
	submit(2, fmt.Sprintf(`{"meter":"W-FRESH","ts":%q,"value":110000}`, at(10)))
	deadline := time.Now().Add(10 * time.Second)
	for nAcked.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("messages not acknowledged within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	w.mu.Lock()
	got := w.deltas[t0.Add(20*time.Minute).UnixNano()]
	w.mu.Unlock()
	if got != 20 {
		t.Errorf("stored delta at t0+20m = %g, want 20: the rewrite was overtaken by the write it corrects", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acks) != 2 || acks[0] != 1 || acks[1] != 2 {
		t.Errorf("acknowledged %v, want [1 2]", acks)
	}
	if observed != 30 {
		t.Errorf("scorer's sum %g m3, want 30", observed)
	}
}
