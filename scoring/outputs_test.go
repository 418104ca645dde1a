package scoring

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

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

// flakyOutbox takes events only while open is set.
type flakyOutbox struct {
	open  bool
	calls int
	taken []Event
}

func (o *flakyOutbox) Append(evs []Event) error {
	o.calls++
	if !o.open {
		return errors.New("outbox: full")
	}
	o.taken = append(o.taken, evs...)
	return nil
}

// TestOutboxRefusalHoldsEvents: events the outbox does not take are held,
// not announced and not dropped; once it takes them they are announced
// in order, ahead of later ones. With an outbox, event points no longer
// go through the point queue.
func TestOutboxRefusalHoldsEvents(t *testing.T) {
	fx := newFixture(t)
	reg := fleetRegistry(t, 3)
	ob := &flakyOutbox{}
	var log eventLog
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	eng, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: reg, Sink: &requestSink{}, Outbox: ob, OnEvent: log.add,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	eng.step(ctx, now)
	queued(t, eng)
	// Every meter silent for longer than stale.after: one event each.
	now = now.Add(fx.pol.StaleAfter + time.Hour)
	eng.step(ctx, now)
	if ob.calls == 0 {
		t.Fatal("the outbox was never offered the stale events: the test did not test")
	}
	if len(log.evs) != 0 {
		t.Fatalf("%d events announced while the outbox refused them", len(log.evs))
	}
	held := len(eng.events)
	if held != 3*len(reg.Enterprises[0].Meters) {
		t.Fatalf("%d events held, want one per meter (%d)", held, 3*len(reg.Enterprises[0].Meters))
	}
	for _, p := range queued(t, eng) {
		if p.Measurement == MeasurementEvent {
			t.Fatal("an event point went to the point queue")
		}
	}
	// A tick with nothing new still offers them again.
	calls := ob.calls
	eng.step(ctx, now)
	if ob.calls == calls {
		t.Error("held events were not offered again on the next tick")
	}
	// Open: the held events go first, then the next ones (the meters
	// reporting again).
	ob.open = true
	now = now.Add(time.Minute)
	var rs []store.Reading
	for _, ent := range reg.Enterprises {
		for _, m := range ent.Meters {
			rs = append(rs, store.Reading{Enterprise: ent.ID, Meter: m.ID, Quantity: m.Quantity.Name, Kind: string(m.Kind), Time: now})
		}
	}
	eng.Observe(rs)
	eng.step(ctx, now)
	if len(log.evs) != 2*held {
		t.Fatalf("%d events announced, want %d held and %d resolved", len(log.evs), held, held)
	}
	for i, ev := range log.evs {
		if ev.Kind != EventStale || ev.Resolved != (i >= held) {
			t.Fatalf("event %d is %s: the held ones must come first", i, ev)
		}
	}
	if len(ob.taken) != len(log.evs) || len(eng.events) != 0 {
		t.Errorf("outbox took %d, announced %d, still held %d", len(ob.taken), len(log.evs), len(eng.events))
	}
	if got := testutil.ToFloat64(eng.m.eventsHeld); got != 0 {
		t.Errorf("events held gauge %g after the outbox took them, want 0", got)
	}
}

// failingSink refuses every write.
type failingSink struct{}

func (failingSink) WritePoints(context.Context, []store.Point) error { return errors.New("store down") }

// TestPointsAtShutdown: points still queued when the engine stops are
// written, or counted dropped when the store refuses them: none goes
// uncounted.
func TestPointsAtShutdown(t *testing.T) {
	fx := newFixture(t)
	reg := fleetRegistry(t, 2)
	for _, tc := range []struct {
		name   string
		sink   Sink
		result string
	}{
		{"store up", &requestSink{}, "written"},
		{"store down", failingSink{}, "dropped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
			eng, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: reg, Sink: tc.sink, WriteTimeout: time.Second,
				Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			eng.step(t.Context(), now)
			if len(eng.writes) == 0 {
				t.Fatal("nothing queued: the test did not test")
			}
			n := len(eng.writes)
			if n != 1 {
				t.Fatalf("%d requests queued, want 1", n)
			}
			ps := <-eng.writes
			n = len(ps)
			eng.writes <- ps
			ctx, cancel := context.WithCancel(t.Context())
			cancel() // the shutdown, with the points still queued
			eng.writeLoop(ctx)
			if got := testutil.ToFloat64(eng.m.points.WithLabelValues(tc.result)); got != float64(n) {
				t.Errorf("%s points %g, want the %d queued", tc.result, got, n)
			}
		})
	}
}
