package scoring

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/store"
)

// requestSink records the size of every WritePoints request.
type requestSink struct {
	mu    sync.Mutex
	sizes []int
	total int
}

func (s *requestSink) WritePoints(_ context.Context, ps []store.Point) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sizes = append(s.sizes, len(ps))
	s.total += len(ps)
	return nil
}

// queued takes the points a step queued for the sink (none: nil).
func queued(t *testing.T, eng *Engine) []store.Point {
	select {
	case ps := <-eng.writes:
		return ps
	default:
		return nil
	}
}

// TestOutputsChunkedAndSpread: a large fleet's points reach the sink in
// requests of at most pointChunk, and after their first write the
// enterprises' point writes are spread over PointEvery instead of all
// falling on the same tick.
func TestOutputsChunkedAndSpread(t *testing.T) {
	fx := newFixture(t)
	const n = 1000
	reg := fleetRegistry(t, n)
	sink := &requestSink{}
	now := time.Date(2026, 6, 1, 0, 30, 0, 0, time.UTC)
	eng, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: reg, Sink: sink, PointEvery: time.Minute,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	eng.step(ctx, now)
	first := queued(t, eng)
	if len(first) <= pointChunk {
		t.Fatalf("the first tick made %d points: too few to need chunks of %d", len(first), pointChunk)
	}
	eng.writes <- first
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { eng.writeLoop(wctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sink.mu.Lock()
		total := sink.total
		sink.mu.Unlock()
		if total == len(first) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sink got %d of %d points", total, len(first))
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	<-done
	for _, size := range sink.sizes {
		if size > pointChunk {
			t.Errorf("a request of %d points, want at most %d", size, pointChunk)
		}
	}
	if want := (len(first) + pointChunk - 1) / pointChunk; len(sink.sizes) != want {
		t.Errorf("%d requests for %d points, want %d", len(sink.sizes), len(first), want)
	}

	// Half a PointEvery later, every enterprise is evaluated again; only
	// those whose offset has come round write points.
	now = now.Add(30 * time.Second)
	eng.lastFull = time.Time{}
	eng.step(ctx, now)
	second := queued(t, eng)
	writers := map[string]bool{}
	for _, p := range second {
		if p.Measurement != MeasurementEvent {
			writers[p.Tags["enterprise"]] = true
		}
	}
	if len(writers) < n/4 || len(writers) > 3*n/4 {
		t.Errorf("%d of %d enterprises wrote points half a minute after the first write, want about half", len(writers), n)
	}
}
