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

// recJournal records Intend and Observed; its store checks each write
// against it.
type recJournal struct {
	mu       sync.Mutex
	intended map[int64]uint64 // reading time -> write that named it
	observed []uint64
	seenObs  int // readings observed when the last Observed came
	obsCount *int
}

func (j *recJournal) Intend(seq uint64, rs []store.Reading) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, r := range rs {
		j.intended[r.Time.UnixNano()] = seq
	}
}

func (j *recJournal) Observed(seq uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.observed = append(j.observed, seq)
	j.seenObs = *j.obsCount
}

type journalCheckedStore struct {
	j      *recJournal
	mu     sync.Mutex
	unsaid int // readings written that no Intend named first
	n      int
}

func (w *journalCheckedStore) WriteReadings(_ context.Context, rs []store.Reading) error {
	w.j.mu.Lock()
	for _, r := range rs {
		if _, ok := w.j.intended[r.Time.UnixNano()]; !ok {
			w.mu.Lock()
			w.unsaid++
			w.mu.Unlock()
		}
	}
	w.j.mu.Unlock()
	time.Sleep(time.Millisecond)
	w.mu.Lock()
	w.n += len(rs)
	w.mu.Unlock()
	return nil
}

// TestJournalNamesWritesFirst: with two writers, every reading reaches the
// store only after the Journal was told of it, and writes are told
// observed in order, 1, 2, ..., each after its readings were observed.
func TestJournalNamesWritesFirst(t *testing.T) {
	observed := 0
	j := &recJournal{intended: map[int64]uint64{}, obsCount: &observed}
	w := &journalCheckedStore{j: j}
	p := NewPipeline(testRegistry(t), PipelineConfig{Normaliser: testConfig, BatchSize: 3, Writers: 2, BatchInterval: time.Millisecond, Journal: j}, w,
		func(context.Context, string, []byte) error { return nil },
		func(rs []store.Reading) {
			j.mu.Lock() // Observed reads the count under the journal's lock
			observed += len(rs)
			j.mu.Unlock()
		}, NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t0 := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Hour)
	var acked atomic.Int32
	const msgs = 200
	for i := range msgs {
		p.Submit(Delivery{Topic: "cp/v1/ent-a/gw-1/telemetry", Received: time.Now(),
			Payload: fmt.Appendf(nil, `{"gateway":"gw-1","seq":%d,"readings":[{"meter":"W-FRESH","ts":%q,"value":%d}]}`,
				i+1, t0.Add(time.Duration(i)*time.Minute).Format(time.RFC3339), 100000+i*10),
			Ack: func() { acked.Add(1) }})
	}
	deadline := time.Now().Add(10 * time.Second)
	for acked.Load() < msgs && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	j.mu.Lock()
	defer j.mu.Unlock()
	if acked.Load() != msgs || w.n != msgs {
		t.Fatalf("acknowledged %d, stored %d of %d", acked.Load(), w.n, msgs)
	}
	if w.unsaid != 0 {
		t.Errorf("%d readings reached the store before the journal named them", w.unsaid)
	}
	if len(j.observed) < 2 {
		t.Fatalf("observed writes %v: the batches did not split", j.observed)
	}
	for i, seq := range j.observed {
		if seq != uint64(i+1) {
			t.Fatalf("writes told observed in the order %v, want 1, 2, ...", j.observed)
		}
	}
	if j.seenObs != msgs {
		t.Errorf("the last write was told observed with %d readings observed, want %d", j.seenObs, msgs)
	}
}
