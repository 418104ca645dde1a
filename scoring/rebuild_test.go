package scoring

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/store"
)

// sameWindows reports where two engines' windows of one enterprise differ:
// every track's sum and coverage, every presence row's coverage.
func sameWindows(t *testing.T, a, b *Engine, id string, now time.Time) {
	t.Helper()
	a.apply(now)
	b.apply(now)
	ea, eb := a.ents[id], b.ents[id]
	for wi := range ea.wins {
		wa, wb := ea.wins[wi], eb.wins[wi]
		wa.sync(now)
		wb.sync(now)
		for tr := 0; tr < wa.tracks; tr++ {
			sa, sb := wa.sum(tr), wb.sum(tr)
			if math.Abs(sa-sb) > 1e-9*math.Max(1, math.Abs(sa)) || wa.coverage(tr) != wb.coverage(tr) {
				t.Errorf("window %d track %s: sum %v coverage %v, want %v %v", wi, ea.lay.names[tr], sb, wb.coverage(tr), sa, wa.coverage(tr))
			}
			if tr < wa.gauges {
				_, na := wa.gaugeSums(tr)
				_, nb := wb.gaugeSums(tr)
				if na != nb {
					t.Errorf("window %d gauge %s: %d readings, want %d", wi, ea.lay.names[tr], nb, na)
				}
			}
		}
		for r := 0; r < wa.rows; r++ {
			ca, _ := wa.rowCoverage(r)
			cb, _ := wb.rowCoverage(r)
			if ca != cb {
				t.Errorf("window %d presence row %d: coverage %v, want %v", wi, r, cb, ca)
			}
		}
	}
}

// TestRefillWhileIngesting refills the windows from a store that ingest
// keeps writing to, late readings and fresh ones, while some answers break
// off mid-stream: every reading counts once, as in an engine that saw them
// all live.
func TestRefillWhileIngesting(t *testing.T) {
	// gap: the store holds nothing of the last hours, whose readings come
	// during the refill (a backlog after an outage): their buckets are
	// empty in the store's answer and take the readings observed.
	for _, gap := range []time.Duration{0, 6 * time.Hour} {
		t.Run(fmt.Sprintf("gap %s", gap), func(t *testing.T) { refillWhileIngesting(t, gap) })
	}
}

func refillWhileIngesting(t *testing.T, gap time.Duration) {
	fx := newFixture(t)
	now := time.Date(2026, 6, 1, 3, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	ent, _ := fx.reg.Enterprise("lj-alpha")
	quarter := func(at time.Time) []store.Reading {
		rs := hourly(ent, at, goodRates)
		for i := range rs {
			if rs[i].Kind != "gauge" {
				rs[i].Delta /= 4
			}
		}
		return rs
	}
	hist := &memHistory{}
	live, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: fx.reg, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	var during [][]store.Reading
	for m := 40 * 24 * 4; m > 0; m-- { // every 15 min for 40 days
		at := now.Add(-time.Duration(m) * 15 * time.Minute)
		rs := quarter(at)
		if gap > 0 && !at.Before(now.Add(-gap)) {
			during = append(during, rs)
			continue
		}
		hist.add(rs)
		live.Observe(rs)
	}
	// While refilling: readings of the last minutes (a backlog), late ones
	// from days and weeks ago, and new ones.
	for i := range 60 {
		at := now.Add(-time.Duration(i)*time.Minute - 7*time.Second)
		during = append(during, quarter(at))
		during = append(during, quarter(now.Add(-time.Duration(i*9+1)*time.Hour-11*time.Second)))
		during = append(during, quarter(now.Add(-time.Duration(i*5+30)*24*time.Hour-13*time.Second)))
	}
	for _, rs := range during {
		live.Observe(rs)
	}

	// Answers break off now and then, and are slow enough for ingest to
	// run alongside.
	var rows atomic.Int64
	hist.fail = func(int) error {
		switch n := rows.Add(1); {
		case n == 500 || n == 20000:
			return errors.New("store: read timed out")
		case n%500 == 0:
			time.Sleep(time.Millisecond)
		}
		return nil
	}
	var storeMu sync.Mutex // what a write and its observation hold; Hold takes it
	var held atomic.Int64
	logged := &heldQueries{memHistory: hist}
	eng, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: fx.reg, Now: clock, History: logged,
		Interval: time.Hour, FullEvery: time.Hour,
		Hold: func(ctx context.Context, f func() error) error {
			storeMu.Lock()
			defer storeMu.Unlock()
			held.Add(1)
			logged.holding.Store(true)
			defer logged.holding.Store(false)
			return f()
		}})
	if err != nil {
		t.Fatal(err)
	}
	eng.rbGroup = 1
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	for i, rs := range during {
		storeMu.Lock()
		hist.add(rs)
		eng.Observe(rs)
		storeMu.Unlock()
		if i%10 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	select {
	case <-eng.Ready():
	case err := <-done:
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("not ready after a minute")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if held.Load() != 1 {
		t.Errorf("ingest held %d times, want once", held.Load())
	}
	// Under the hold, the store is asked again only for hours, and for
	// the days the hourly window does not span: the days it spans are
	// made of its hours.
	fineFrom := now.Add(-30 * 24 * time.Hour)
	hours := 0
	for _, q := range logged.held {
		switch {
		case q.Every == time.Hour:
			hours++
		case q.From.After(fineFrom):
			t.Errorf("under the hold, read %s..%s every %v again: the hourly window spans it", q.From, q.To, q.Every)
		}
	}
	if gap == 0 && hours == 0 {
		t.Error("no hour read again under the hold: the test no longer covers it")
	}
	if len(logged.held) < 2 {
		t.Errorf("%d queries under the hold, want the broken one read again", len(logged.held))
	}
	if got := eng.m.rebuildRetries; got == nil {
		t.Fatal("no retry metric")
	}
	sameWindows(t, live, eng, "lj-alpha", now)
	live.step(context.Background(), now)
	eng.step(context.Background(), now)
	a, _ := live.Snapshot().Result("lj-alpha")
	b, ok := eng.Snapshot().Result("lj-alpha")
	if !ok {
		t.Fatal("no result after the refill")
	}
	if a.DataThrough != b.DataThrough {
		t.Errorf("data through %v, want %v", b.DataThrough, a.DataThrough)
	}
	for wi := range a.Assessments {
		wa, wb := &a.Assessments[wi], &b.Assessments[wi]
		if wa.Y != wb.Y || wa.Level != wb.Level || wa.Completeness != wb.Completeness {
			t.Errorf("%s: refilled Y %v level %q completeness %v, want %v %q %v", wa.Window, wb.Y, wb.Level, wb.Completeness, wa.Y, wa.Level, wa.Completeness)
		}
	}
}

// TestRefillNotGradedMeanwhile checks that no enterprise is graded from
// half-filled windows: until the refill ends the snapshot has no result
// and Loading says what is loading.
func TestRefillNotGradedMeanwhile(t *testing.T) {
	fx := newFixture(t)
	now := time.Date(2026, 6, 1, 3, 0, 0, 0, time.UTC)
	ent, _ := fx.reg.Enterprise("lj-alpha")
	hist := &memHistory{}
	for h := 10 * 24; h > 0; h-- {
		hist.add(hourly(ent, now.Add(-time.Duration(h)*time.Hour), goodRates))
	}
	gate := make(chan struct{})
	hist.fail = func(int) error { <-gate; return nil }
	eng, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: fx.reg, Now: func() time.Time { return now }, History: hist, Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if got := eng.Loading(); got == "" {
		t.Error("Loading before the refill: empty, want what loads")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	if _, ok := eng.Snapshot().Result("lj-alpha"); ok {
		t.Error("a result while the windows are refilled")
	}
	close(gate)
	<-eng.Ready()
	if got := eng.Loading(); got != "" {
		t.Errorf("Loading after the refill: %q, want empty", got)
	}
	if _, ok := eng.Snapshot().Result("lj-alpha"); !ok {
		t.Error("no result once ready")
	}
	cancel()
	<-done
}

// TestRebuildPlan checks the queries of a refill: the live window's hours
// also fill the official window's whole local days they cover, and the
// official window's older days are asked for per local day.
func TestRebuildPlan(t *testing.T) {
	fx := newFixture(t)
	now := time.Date(2026, 6, 1, 3, 30, 0, 0, time.UTC) // 11:30 at UTC+8
	plan := rebuildPlan(fx.std, now)
	if len(plan) != 2 {
		t.Fatalf("plan: %d queries, want 2: %+v", len(plan), plan)
	}
	h, d := plan[0], plan[1]
	if h.every != time.Hour || h.offset != 0 || !h.to.Equal(time.Date(2026, 6, 1, 4, 0, 0, 0, time.UTC)) || !h.from.Equal(h.to.Add(-30*24*time.Hour)) {
		t.Errorf("hourly query %v..%v every %v offset %v", h.from, h.to, h.every, h.offset)
	}
	// Local midnight is 16:00 UTC.
	if d.every != 24*time.Hour || d.offset != 16*time.Hour {
		t.Errorf("daily query every %v offset %v, want 24h offset 16h", d.every, d.offset)
	}
	if len(h.feeds) != 2 || !h.feeds[1].from.Equal(d.to) || d.to.UTC().Hour() != 16 || d.to.Before(h.from) {
		t.Errorf("official window fed by the hourly rows from %v, daily rows until %v (hourly from %v)", h.feeds[1].from, d.to, h.from)
	}
	if !d.from.Equal(time.Date(2025, 6, 1, 16, 0, 0, 0, time.UTC)) {
		t.Errorf("daily query from %v, want the local day 364 days before today's", d.from)
	}
}

// heldQueries records the queries asked of a memHistory while holding,
// and breaks the first of them off after its first row (a store timing
// out under the hold), so that its buckets are cleared and read again.
type heldQueries struct {
	*memHistory
	holding atomic.Bool
	mu      sync.Mutex
	held    []store.AggregateQuery
	broken  bool
}

func (h *heldQueries) EachAggregate(ctx context.Context, q store.AggregateQuery, fn func(*store.Aggregate) error) error {
	if !h.holding.Load() {
		return h.memHistory.EachAggregate(ctx, q, fn)
	}
	h.mu.Lock()
	h.held = append(h.held, q)
	breakOff := !h.broken
	h.broken = true
	h.mu.Unlock()
	if !breakOff {
		return h.memHistory.EachAggregate(ctx, q, fn)
	}
	rows := 0
	return h.memHistory.EachAggregate(ctx, q, func(a *store.Aggregate) error {
		if rows++; rows > 1 {
			return errors.New("store: read timed out")
		}
		return fn(a)
	})
}
