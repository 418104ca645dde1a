package scoring

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's Prometheus metrics. Enterprise and indicator
// labels are bounded by the registry and the standard.
type metrics struct {
	readings    *prometheus.CounterVec // result: applied, unknown_meter, too_old, dropped
	evaluations prometheus.Counter
	tickSeconds prometheus.Histogram
	pending     prometheus.Gauge
	events      *prometheus.CounterVec // kind
	eventsHeld  prometheus.Gauge
	points      *prometheus.CounterVec // result: written, dropped, failed
	declInvalid prometheus.Counter
	stateBytes  prometheus.Gauge
	enterprises prometheus.Gauge

	rebuildRemaining  prometheus.Gauge
	rebuildRetries    prometheus.Counter
	rebuildAggregates prometheus.Counter
	rebuildSeconds    prometheus.Gauge

	checkpointSeconds  prometheus.Gauge
	checkpointBytes    prometheus.Gauge
	checkpointTime     prometheus.Gauge
	checkpointFailures prometheus.Counter
	resumed            prometheus.Gauge

	level     *prometheus.GaugeVec // enterprise, window
	score     *prometheus.GaugeVec // enterprise, window
	y         *prometheus.GaugeVec // enterprise, window, level
	complete  *prometheus.GaugeVec // enterprise, window
	code      *prometheus.GaugeVec // enterprise, code
	auditDue  *prometheus.GaugeVec // enterprise
	indValue  *prometheus.GaugeVec // enterprise, indicator (policy window)
	indLevel  *prometheus.GaugeVec // enterprise, indicator (policy window)
	staleMtrs *prometheus.GaugeVec // enterprise
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		readings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanprod_scoring_readings_total", Help: "Readings offered to the scorer, by result (applied, unknown_meter, too_old, dropped).",
		}, []string{"result"}),
		evaluations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_scoring_evaluations_total", Help: "Enterprise evaluations.",
		}),
		tickSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cleanprod_scoring_tick_duration_seconds", Help: "Duration of scoring ticks that evaluated at least one enterprise.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 3, 10),
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_pending_readings", Help: "Readings observed but not yet applied to the windows.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanprod_scoring_events_total", Help: "Events raised, by kind.",
		}, []string{"kind"}),
		eventsHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_events_held", Help: "Events raised but not yet announced because the outbox did not take them (full, or its file failing); offered again every tick.",
		}),
		points: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanprod_scoring_points_total", Help: "Output points, by result (written; dropped when the write queue was full or still queued at shutdown; failed). Events go through the outbox instead when it is configured.",
		}, []string{"result"}),
		declInvalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_scoring_declarations_invalid_total", Help: "Declarations skipped because they do not fit the standard or the registry.",
		}),
		stateBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_window_state_bytes", Help: "Bytes held by the rolling windows of all enterprises.",
		}),
		enterprises: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_enterprises", Help: "Enterprises scored.",
		}),
		rebuildRemaining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_refill_remaining_enterprises", Help: "Enterprises whose windows are still being refilled from the store (not graded meanwhile).",
		}),
		rebuildRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_scoring_refill_retries_total", Help: "Pieces of a window refill that failed (a timeout, the store unreachable) and were retried in smaller pieces.",
		}),
		rebuildAggregates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_scoring_refill_aggregates_total", Help: "Per-meter bucket aggregates read from the store to refill windows.",
		}),
		rebuildSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_refill_duration_seconds", Help: "Duration of the last complete window refill, including the time ingest was held at its end.",
		}),
		checkpointSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_checkpoint_duration_seconds", Help: "Duration of the last write of the windows' checkpoint (scoring is paused meanwhile).",
		}),
		checkpointBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_checkpoint_bytes", Help: "Size of the last checkpoint of the windows.",
		}),
		checkpointTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_checkpoint_timestamp_seconds", Help: "When the windows were last checkpointed (Unix time; 0: not yet).",
		}),
		checkpointFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_scoring_checkpoint_failures_total", Help: "Checkpoint or journal writes that failed (the next start then refills more from the store).",
		}),
		resumed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_resumed_enterprises", Help: "Enterprises whose windows this start loaded from the checkpoint rather than refilled from the store.",
		}),
		level: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_level", Help: "Cleaner-production level per window: 1 = I, 2 = II, 3 = III, 4 = below III, 0 = not graded.",
		}, []string{"enterprise", "window"}),
		score: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_score", Help: "Continuous 0-100 score per window.",
		}, []string{"enterprise", "window"}),
		y: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_index", Help: "Comprehensive evaluation index Y_I, Y_II, Y_III (0-100) per window.",
		}, []string{"enterprise", "window", "level"}),
		complete: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_data_completeness_ratio", Help: "Share of metered indicators with enough data, per window.",
		}, []string{"enterprise", "window"}),
		code: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_code", Help: "Dynamic code: 1 for the enterprise's current code, 0 for the others (all 0: no code yet).",
		}, []string{"enterprise", "code"}),
		auditDue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_next_audit_due_timestamp_seconds", Help: "When the next cleaner-production audit is due (NaN while the enterprise has no code).",
		}, []string{"enterprise"}),
		indValue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_indicator_value", Help: "Indicator value on the policy's window (in the indicator's unit); NaN when not graded.",
		}, []string{"enterprise", "indicator"}),
		indLevel: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_indicator_level", Help: "Indicator level on the policy's window: 1-4, 0 = not graded.",
		}, []string{"enterprise", "indicator"}),
		staleMtrs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleanprod_scoring_stale_meters", Help: "Meters silent for longer than the policy's stale.after.",
		}, []string{"enterprise"}),
	}
	// Every kind's series exists from the start at 0, so that increase()
	// in the alert rules sees an enterprise's first event of a kind (a
	// series that appears at 1 has no increase).
	for _, k := range []EventKind{EventCodeChange, EventLevelDrop, EventWorsening, EventRestrictiveFail, EventStale,
		EventDeclarationSubmitted, EventDeclarationAccepted, EventDeclarationRejected} {
		m.events.WithLabelValues(string(k))
	}
	if reg != nil {
		reg.MustRegister(m.readings, m.evaluations, m.tickSeconds, m.pending, m.events, m.eventsHeld, m.points,
			m.declInvalid, m.stateBytes, m.enterprises, m.rebuildRemaining, m.rebuildRetries, m.rebuildAggregates, m.rebuildSeconds,
			m.checkpointSeconds, m.checkpointBytes, m.checkpointTime, m.checkpointFailures, m.resumed, m.level, m.score, m.y, m.complete, m.code,
			m.auditDue, m.indValue, m.indLevel, m.staleMtrs)
	}
	return m
}

// entGauges are one enterprise's gauges, looked up once so that an
// evaluation does not hash labels.
type entGauges struct {
	level, score, complete []prometheus.Gauge    // per window
	y                      [][3]prometheus.Gauge // per window
	code                   []prometheus.Gauge    // per policy code
	auditDue, stale        prometheus.Gauge
	indValue, indLevel     []prometheus.Gauge // per indicator
}

// dropEnterprise removes an enterprise's series, when it leaves the
// registry or its standard or policy changes shape.
func (m *metrics) dropEnterprise(id string) {
	l := prometheus.Labels{"enterprise": id}
	for _, v := range []*prometheus.GaugeVec{m.level, m.score, m.y, m.complete, m.code, m.auditDue, m.indValue, m.indLevel, m.staleMtrs} {
		v.DeletePartialMatch(l)
	}
}

func (m *metrics) forEnterprise(id string, std *Standard, pol *Policy) *entGauges {
	g := &entGauges{auditDue: m.auditDue.WithLabelValues(id), stale: m.staleMtrs.WithLabelValues(id)}
	for _, w := range std.Windows {
		g.level = append(g.level, m.level.WithLabelValues(id, w.Name))
		g.score = append(g.score, m.score.WithLabelValues(id, w.Name))
		g.complete = append(g.complete, m.complete.WithLabelValues(id, w.Name))
		g.y = append(g.y, [3]prometheus.Gauge{
			m.y.WithLabelValues(id, w.Name, "I"), m.y.WithLabelValues(id, w.Name, "II"), m.y.WithLabelValues(id, w.Name, "III"),
		})
	}
	for _, c := range pol.Codes {
		g.code = append(g.code, m.code.WithLabelValues(id, string(c.Code)))
	}
	for _, ind := range std.Indicators {
		g.indValue = append(g.indValue, m.indValue.WithLabelValues(id, ind.ID))
		g.indLevel = append(g.indLevel, m.indLevel.WithLabelValues(id, ind.ID))
	}
	return g
}
