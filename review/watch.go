package review

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanprod/cleanprod/scoring"
)

// Watcher opens cases from the scorer's events and announces the cases
// whose deadline passed, keeping the case gauges current. Run owns the
// work; Notify only queues, so the scorer never waits on the store.
//
// The scorer does not announce an event twice across a restart, so a
// red-code or restrictive-fail event the process held when it stopped is
// given again by Resume, from the events stored before the start. With
// several replicas, each replica's watcher sees its own shard's events; deadlines
// are swept by every replica, and two sweeping at the same moment may
// both announce one case overdue.
type Watcher struct {
	book  *Book
	every time.Duration
	log   *slog.Logger
	owns  func(enterprise string) bool // nil: every enterprise

	mu      sync.Mutex
	queue   []scoring.Event // guarded by mu
	hasWork chan struct{}

	active   *prometheus.GaugeVec
	overdue  *prometheus.GaugeVec
	failures prometheus.Counter
}

// maxQueued bounds the events waiting for Run: the events that open cases
// are rare, so a full queue means the store has been refusing writes for
// long; further events are dropped and logged.
const maxQueued = 10000

// NewWatcher returns a watcher of book that sweeps deadlines every
// every (at least a second), registering its metrics with reg (nil: not
// registered).
func NewWatcher(book *Book, every time.Duration, reg prometheus.Registerer, log *slog.Logger) *Watcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{book: book, every: max(every, time.Second), log: log, hasWork: make(chan struct{}, 1),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cleanprod_cases",
			Help: "Rectification cases not closed, by state (open, acknowledged, plan_submitted)."}, []string{"state"}),
		overdue: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cleanprod_cases_overdue",
			Help: "Rectification cases whose deadline passed without a close, by enterprise (only enterprises with one)."}, []string{"enterprise"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "cleanprod_case_watch_failures_total",
			Help: "Failed attempts to open a case from an event or to sweep deadlines (the store refused); retried."}),
	}
	for _, s := range []CaseState{CaseOpen, CaseAcknowledged, CasePlanSubmitted} {
		w.active.WithLabelValues(string(s))
	}
	if reg != nil {
		reg.MustRegister(w.active, w.overdue, w.failures)
	}
	return w
}

// Resume queues, from the events announced before a start (of one time,
// the later in events counts as the later), those that still call for a case: each
// enterprise's last code change if it was to red, and each restrictive
// indicator's last failure if it has not been resolved since. A case's id
// derives from its event, so an event whose case exists (even closed)
// opens nothing again; one the process held when it stopped opens its
// case now.
func (w *Watcher) Resume(events []scoring.Event) {
	type key struct {
		ent       string
		kind      scoring.EventKind
		indicator string
	}
	last := map[key]scoring.Event{}
	for _, e := range events {
		if e.Kind != scoring.EventCodeChange && e.Kind != scoring.EventRestrictiveFail {
			continue
		}
		k := key{e.Enterprise, e.Kind, e.Indicator}
		if e.Kind == scoring.EventCodeChange {
			k.indicator = ""
		}
		if l, ok := last[k]; !ok || !e.Time.Before(l.Time) {
			last[k] = e
		}
	}
	for _, e := range last {
		w.Notify(e)
	}
}

// Notify queues e if it may open a case. It does not block; it may be
// called from any goroutine.
func (w *Watcher) Notify(e scoring.Event) {
	if e.Resolved || !(e.Kind == scoring.EventCodeChange && e.NewCode == redCode || e.Kind == scoring.EventRestrictiveFail) {
		return
	}
	w.mu.Lock()
	if len(w.queue) >= maxQueued {
		w.mu.Unlock()
		w.log.Error("case watcher: queue full, an event that calls for a case is dropped; open the case by hand", "event", e.String())
		return
	}
	w.queue = append(w.queue, e)
	w.mu.Unlock()
	select {
	case w.hasWork <- struct{}{}:
	default:
	}
}

// Run opens the queued events' cases and sweeps deadlines until ctx
// ends; a failed step is retried at the next sweep.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	w.sweep(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.hasWork:
			w.open(ctx)
		case <-t.C:
			w.open(ctx)
			w.sweep(ctx)
		}
	}
}

func (w *Watcher) open(ctx context.Context) {
	w.mu.Lock()
	q := w.queue
	w.queue = nil
	w.mu.Unlock()
	for i, e := range q {
		c, opened, err := w.book.OpenFromEvent(ctx, e)
		if err != nil {
			w.failures.Inc()
			w.log.Warn("case watcher: could not open a case; retried at the next sweep", "event", e.String(), "err", err)
			w.mu.Lock()
			w.queue = append(q[i:len(q):len(q)], w.queue...)
			w.mu.Unlock()
			return
		}
		if opened {
			w.log.Info("case opened", "case", c.ID, "enterprise", c.Enterprise, "cause", c.Cause, "indicator", c.Indicator)
		}
	}
	if len(q) > 0 {
		w.sweep(ctx) // the gauges count the new cases at once
	}
}

func (w *Watcher) sweep(ctx context.Context) {
	cs, err := w.book.MarkOverdueOf(ctx, w.owns)
	if err != nil {
		if ctx.Err() == nil {
			w.failures.Inc()
			w.log.Warn("case watcher: could not sweep deadlines; retried", "err", err)
		}
		return
	}
	now := w.book.now()
	n := map[CaseState]int{}
	overdue := map[string]int{}
	for i := range cs {
		n[cs[i].State]++
		if cs[i].Overdue(now) {
			overdue[cs[i].Enterprise]++
		}
	}
	for _, s := range []CaseState{CaseOpen, CaseAcknowledged, CasePlanSubmitted} {
		w.active.WithLabelValues(string(s)).Set(float64(n[s]))
	}
	w.overdue.Reset() // an enterprise no longer overdue leaves the metric
	for ent, k := range overdue {
		w.overdue.WithLabelValues(ent).Set(float64(k))
	}
}

// Only makes w sweep and count only the cases of the enterprises owns
// accepts (a shard's, when replicas split the fleet); call it before Run.
// Cases are opened from the events of the replica's own scorer already.
func (w *Watcher) Only(owns func(enterprise string) bool) { w.owns = owns }

// Active is the gauge of the cases in state s (for tests and dashboards).
func (w *Watcher) Active(s CaseState) prometheus.Gauge { return w.active.WithLabelValues(string(s)) }

// Overdue is the gauge of the overdue cases of enterprise ent.
func (w *Watcher) Overdue(ent string) prometheus.Gauge { return w.overdue.WithLabelValues(ent) }
