package review_test

import (
	"context"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanprod/cleanprod/review"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/store"
)

// TestCaseWatcher: a red code and a failed restrictive indicator open
// cases through the watcher, other events none; a passed deadline is
// announced once and counted in the gauges.
func TestCaseWatcher(t *testing.T) {
	std := standard(t)
	db, err := store.OpenBolt(filepath.Join(t.TempDir(), "cp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var overdue []scoring.Event
		book := review.NewBook(db, std, nil, func(e scoring.Event) {
			if e.Kind == scoring.EventCaseOverdue {
				overdue = append(overdue, e)
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
		if len(overdue) != 0 || testutil.ToFloat64(w.Active(review.CaseAcknowledged)) != 1 {
			t.Errorf("before the deadline: overdue %v, acknowledged gauge %v", overdue, testutil.ToFloat64(w.Active(review.CaseAcknowledged)))
		}
		time.Sleep(3 * time.Hour) // past it: several sweeps, one announcement
		synctest.Wait()
		if len(overdue) != 1 {
			t.Errorf("overdue events: %v, want one", overdue)
		}
		if got := testutil.ToFloat64(w.Overdue(cs[0].Enterprise)); got != 1 {
			t.Errorf("overdue gauge: got %v, want 1", got)
		}
	})
}
