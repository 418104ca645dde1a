package web

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanprod/cleanprod/scoring"
)

// Broadcaster fans scoring events out to the server-sent event streams.
// Publish never blocks: each subscriber has a bounded buffer, and a
// subscriber that falls behind loses events (counted) rather than slow the
// engine. Safe for concurrent use.
type Broadcaster struct {
	mu      sync.Mutex // guards subs, closed
	subs    map[*subscription]struct{}
	closed  bool
	dropped prometheus.Counter
	streams prometheus.Gauge
}

type subscription struct {
	ch chan scoring.Event
}

// NewBroadcaster returns a broadcaster whose metrics are registered with
// reg (nil: not registered).
func NewBroadcaster(reg prometheus.Registerer) *Broadcaster {
	b := &Broadcaster{
		subs: make(map[*subscription]struct{}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_web_events_dropped_total",
			Help: "Scoring events not delivered to a server-sent event stream because it fell behind.",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanprod_web_event_streams",
			Help: "Open server-sent event streams.",
		}),
	}
	if reg != nil {
		reg.MustRegister(b.dropped, b.streams)
	}
	return b
}

// Publish hands ev to every subscriber without blocking; use it as (part
// of) the engine's OnEvent.
func (b *Broadcaster) Publish(ev scoring.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.ch <- ev:
		default:
			b.dropped.Inc()
		}
	}
}

// Subscribe returns a channel of the events published from now on, with
// room for buffer of them, and a function that ends the subscription. The
// channel is closed when the subscription ends or the broadcaster is
// closed; ok is false if it already is.
func (b *Broadcaster) Subscribe(buffer int) (events <-chan scoring.Event, cancel func(), ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, func() {}, false
	}
	s := &subscription{ch: make(chan scoring.Event, buffer)}
	b.subs[s] = struct{}{}
	b.streams.Inc()
	var once sync.Once
	return s.ch, func() { once.Do(func() { b.remove(s) }) }, true
}

func (b *Broadcaster) remove(s *subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[s]; ok {
		delete(b.subs, s)
		close(s.ch)
		b.streams.Dec()
	}
}

// Close ends every subscription and refuses new ones, so open streams
// finish when the HTTP server shuts down.
func (b *Broadcaster) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		delete(b.subs, s)
		close(s.ch)
		b.streams.Dec()
	}
}
