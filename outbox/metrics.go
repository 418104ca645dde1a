package outbox

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the outbox's Prometheus metrics. The gauges are read from
// the outbox under its lock when scraped.
type metrics struct {
	failures  *prometheus.CounterVec // target: store, mqtt, file
	delivered *prometheus.CounterVec // target: store, mqtt
	refusals  *prometheus.CounterVec // reason: full, file
	refused   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, o *Outbox) *metrics {
	m := &metrics{
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanprod_events_outbox_failures_total",
			Help: "Failed attempts to deliver scoring events (retried until they succeed), or to record their delivery in the outbox file, by target (store, mqtt, file).",
		}, []string{"target"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanprod_events_outbox_delivered_total",
			Help: "Scoring events delivered from the outbox, by target (store, mqtt).",
		}, []string{"target"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanprod_events_outbox_append_refusals_total",
			Help: "Batches of scoring events the outbox could not take, by reason (full, file); the scorer holds them and tries again on its next tick.",
		}, []string{"reason"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_events_outbox_refused_total",
			Help: "Scoring events the store refused for good, kept in data_dir/outbox/refused.jsonl.",
		}),
	}
	for _, target := range []string{"store", "mqtt", "file"} {
		m.failures.WithLabelValues(target)
	}
	for _, target := range []string{"store", "mqtt"} {
		m.delivered.WithLabelValues(target)
	}
	for _, reason := range []string{"full", "file"} {
		m.refusals.WithLabelValues(reason)
	}
	if reg == nil {
		return m
	}
	waiting := func(stage string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "cleanprod_events_outbox_events",
			Help:        "Scoring events in the outbox, by stage: waiting for the store (store), stored and waiting for MQTT (mqtt).",
			ConstLabels: prometheus.Labels{"stage": stage},
		}, f)
	}
	reg.MustRegister(m.failures, m.delivered, m.refusals, m.refused,
		waiting("store", func() float64 {
			o.mu.Lock()
			defer o.mu.Unlock()
			return float64(o.countAbove(o.stored))
		}),
		waiting("mqtt", func() float64 {
			o.mu.Lock()
			defer o.mu.Unlock()
			return float64(o.countBetween(o.published, o.stored))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cleanprod_events_outbox_oldest_age_seconds",
			Help: "How long the oldest undelivered scoring event has waited in the outbox (0: none waits).",
		}, func() float64 {
			o.mu.Lock()
			defer o.mu.Unlock()
			if len(o.entries) == 0 {
				return 0
			}
			return o.cfg.Now().Sub(o.entries[0].at).Seconds()
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cleanprod_events_outbox_bytes",
			Help: "Size of the outbox file (undelivered events and not yet compacted delivered ones).",
		}, func() float64 {
			o.mu.Lock()
			defer o.mu.Unlock()
			return float64(o.size)
		}),
	)
	return m
}
