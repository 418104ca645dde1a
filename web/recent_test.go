package web

import (
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/scoring"
)

func TestRecentEvents(t *testing.T) {
	r := NewRecentEvents(3)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		r.Add(scoring.Event{Enterprise: "a", Kind: scoring.EventStale, Time: t0.Add(time.Duration(i) * time.Hour), Meter: string(rune('0' + i))})
	}
	r.Add(scoring.Event{Enterprise: "b", Kind: scoring.EventCodeChange, Time: t0})
	got := r.Enterprise("a", t0, t0.Add(24*time.Hour), 10)
	if len(got) != 3 || got[0].Meter != "4" || got[2].Meter != "2" {
		t.Errorf("a's events: %+v, want the last 3 (meters 4, 3, 2), newest first", got)
	}
	if got := r.Enterprise("a", t0, t0.Add(4*time.Hour), 1); len(got) != 1 || got[0].Meter != "3" {
		t.Errorf("a's events before 04:00, at most 1: %+v, want meter 3", got)
	}
	if got := r.Enterprise("c", t0, t0.Add(time.Hour), 5); got == nil || len(got) != 0 {
		t.Errorf("an enterprise without events: %#v, want an empty, non-nil list", got)
	}
	if got := r.Enterprise("b", t0, t0.Add(time.Hour), 5); len(got) != 1 {
		t.Errorf("b's events: %+v, want 1", got)
	}
}
