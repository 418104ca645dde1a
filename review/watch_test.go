package review_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanprod/cleanprod/review"
	"github.com/cleanprod/cleanprod/scoring"
)

// TestCaseWatcher: a red code and a failed restrictive indicator open
// cases through the watcher, other events none; a passed deadline is
// announced once and counted in the gauges.
func TestCaseWatcher(t *testing.T) {
	std := standard(t)
	db := boltStore(t)
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex // the watcher's sweeps announce on their goroutine
		var overdueEvents []scoring.Event
		overdue := func() []scoring.Event { mu.Lock(); defer mu.Unlock(); return slices.Clone(overdueEvents) }
		book := review.NewBook(db, std, nil, func(e scoring.Event) {
			if e.Kind == scoring.EventCaseOverdue {
				mu.Lock()
				overdueEvents = append(overdueEvents, e)
				mu.Unlock()
			}
		})
		reg := prometheus.NewRegistry()
		w := review.NewWatcher(book, time.Minute, reg, nil)
		done := make(chan struct{})
		go func() { w.Run(ctx); close(done) }()
		defer func() { cancel(); <-done }()

		now := time.Now()
		w.Notify(scoring.Event{Time: now, Enterprise: "ent-a", Kind: scoring.EventCodeChange, OldCode: "yellow", NewCode: "red"})
		w.Notify(scoring.Event{Time: now, Enterprise: "ent-b", Kind: scoring.EventRestrictiveFail, Indicator: "voc_per_m2"})
		w.Notify(scoring.Event{Time: now, Enterprise: "ent-c", Kind: scoring.EventCodeChange, OldCode: "green", NewCode: "yellow"})
		w.Notify(scoring.Event{Time: now, Enterprise: "ent-c", Kind: scoring.EventRestrictiveFail, Indicator: "voc_per_m2", Resolved: true})
		synctest.Wait()
		cs, err := book.Cases(ctx, review.CaseFilter{Active: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != 2 {
			t.Fatalf("cases: %+v, want ent-a's and ent-b's", cs)
		}
		if got := testutil.ToFloat64(w.Active(review.CaseOpen)); got != 2 {
			t.Errorf("open cases gauge: got %v, want 2", got)
		}
		if _, err := book.Acknowledge(ctx, cs[0].ID, reviewer, "li", now.Add(2*time.Hour), ""); err != nil {
			t.Fatal(err)
		}
		time.Sleep(90 * time.Minute) // fake time: sweeps before the deadline
		synctest.Wait()
		if len(overdue()) != 0 || testutil.ToFloat64(w.Active(review.CaseAcknowledged)) != 1 {
			t.Errorf("before the deadline: overdue %v, acknowledged gauge %v", overdue(), testutil.ToFloat64(w.Active(review.CaseAcknowledged)))
		}
		time.Sleep(3 * time.Hour) // past it: several sweeps, one announcement
		synctest.Wait()
		if len(overdue()) != 1 {
			t.Errorf("overdue events: %v, want one", overdue())
		}
		if got := testutil.ToFloat64(w.Overdue(cs[0].Enterprise)); got != 1 {
			t.Errorf("overdue gauge: got %v, want 1", got)
		}
	})
}

// TestCaseWatcherResume: at a start, the events announced before it open
// the cases still called for (a red code, an unresolved restrictive
// failure) once, and never again once opened, even closed.
func TestCaseWatcherResume(t *testing.T) {
	std := standard(t)
	db := boltStore(t)
	t1, t2 := day0, day0.Add(time.Hour)
	past := []scoring.Event{
		{Time: t2, Enterprise: "ent-a", Kind: scoring.EventCodeChange, OldCode: "yellow", NewCode: "red"},
		{Time: t1, Enterprise: "ent-a", Kind: scoring.EventCodeChange, OldCode: "green", NewCode: "yellow"},
		{Time: t1, Enterprise: "ent-b", Kind: scoring.EventCodeChange, OldCode: "yellow", NewCode: "red"},
		{Time: t2, Enterprise: "ent-b", Kind: scoring.EventCodeChange, OldCode: "red", NewCode: "yellow"},
		{Time: t1, Enterprise: "ent-c", Kind: scoring.EventRestrictiveFail, Indicator: "voc_per_m2"},
		{Time: t1, Enterprise: "ent-d", Kind: scoring.EventRestrictiveFail, Indicator: "voc_per_m2"},
		{Time: t2, Enterprise: "ent-d", Kind: scoring.EventRestrictiveFail, Indicator: "voc_per_m2", Resolved: true},
		{Time: t2, Enterprise: "ent-e", Kind: scoring.EventStale, Meter: "E-1"},
	}
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		book := review.NewBook(db, std, nil, nil)
		w := review.NewWatcher(book, time.Minute, nil, nil)
		done := make(chan struct{})
		go func() { w.Run(ctx); close(done) }()
		defer func() { cancel(); <-done }()
		ents := func() []string {
			t.Helper()
			cs, err := book.Cases(ctx, review.CaseFilter{})
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, c := range cs {
				out = append(out, c.Enterprise+"/"+c.Cause)
			}
			slices.Sort(out)
			return out
		}
		w.Resume(past)
		synctest.Wait()
		want := []string{"ent-a/red_code", "ent-c/restrictive_fail"}
		if got := ents(); !slices.Equal(got, want) {
			t.Fatalf("cases after resuming: %v, want %v", got, want)
		}
		// Closed, ent-a's case is not opened again by the next start.
		cs, _ := book.Cases(ctx, review.CaseFilter{Enterprise: "ent-a"})
		if _, err := book.Close(ctx, cs[0].ID, reviewer, "rectified"); err != nil {
			t.Fatal(err)
		}
		w.Resume(past)
		synctest.Wait()
		if got := ents(); !slices.Equal(got, want) {
			t.Errorf("cases after a second start: %v, want still %v", got, want)
		}
	})
}
