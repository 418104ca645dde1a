package web

import (
	"sync"
	"time"

	"github.com/cleanprod/cleanprod/scoring"
)

// RecentEvents keeps the latest scoring events of each enterprise in
// memory, so that an enterprise's page shows them without a store query:
// under heavy ingest the store answers queries slowly, and the page is
// what a supervisor opens most. Seed it with the events read back at start
// and Add every live one. Safe for concurrent use.
type RecentEvents struct {
	mu    sync.RWMutex
	keep  int
	byEnt map[string][]scoring.Event // oldest first, at most keep
}

// NewRecentEvents keeps the last keep events of each enterprise.
func NewRecentEvents(keep int) *RecentEvents {
	return &RecentEvents{keep: max(keep, 1), byEnt: make(map[string][]scoring.Event)}
}

// Add records an event (events arrive in time order).
func (r *RecentEvents) Add(ev scoring.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := append(r.byEnt[ev.Enterprise], ev)
	if len(evs) > r.keep {
		evs = append(evs[:0:0], evs[len(evs)-r.keep:]...)
	}
	r.byEnt[ev.Enterprise] = evs
}

// Enterprise returns an enterprise's kept events in [from, to), newest
// first, at most limit.
func (r *RecentEvents) Enterprise(id string, from, to time.Time, limit int) []scoring.Event {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := []scoring.Event{}
	evs := r.byEnt[id]
	for i := len(evs) - 1; i >= 0 && len(out) < limit; i-- {
		if t := evs[i].Time; !t.Before(from) && t.Before(to) {
			out = append(out, evs[i])
		}
	}
	return out
}

// Since returns the kept events of enterprise ("": every enterprise) at or
// after from, in no particular order.
func (r *RecentEvents) Since(enterprise string, from time.Time) []scoring.Event {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []scoring.Event
	for id, evs := range r.byEnt {
		if enterprise != "" && id != enterprise {
			continue
		}
		for _, ev := range evs {
			if !ev.Time.Before(from) {
				out = append(out, ev)
			}
		}
	}
	return out
}
