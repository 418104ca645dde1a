package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the ingest pipeline's Prometheus metrics. Create them once
// per registry with NewMetrics and share them between Pipeline and
// Subscriber.
type Metrics struct {
	messages   prometheus.Counter
	readings   prometheus.Counter
	duplicates prometheus.Counter
	flagged    *prometheus.CounterVec

	refusedRewrites    prometheus.Counter
	lateWaiting        prometheus.Gauge
	lateLookups        prometheus.Counter
	lateLookupFailures prometheus.Counter
	lateLookupSeconds  prometheus.Histogram
	rejected           *prometheus.CounterVec
	deadLettered       prometheus.Counter
	deadLetterErrs     prometheus.Counter
	batchReadings      prometheus.Histogram
	writeSeconds       prometheus.Histogram
	storeErrors        *prometheus.CounterVec
	inflight           prometheus.Gauge
	lastMessage        *prometheus.GaugeVec
	seqGaps            *prometheus.CounterVec
	seqRepeats         prometheus.Counter
	seqBackwards       prometheus.Counter
	seqRenumbered      *prometheus.CounterVec
	counterEvents      *prometheus.CounterVec
	ackLatency         prometheus.Histogram
	connected          prometheus.Gauge
	connects           prometheus.Counter
	connLost           prometheus.Counter
	watchdogResets     prometheus.Counter

	unackedBytes      prometheus.Gauge
	deferred          prometheus.Counter
	redelivered       prometheus.Counter
	qos0Dropped       prometheus.Counter
	backlogReconnects prometheus.Counter
	restoreRetries    prometheus.Counter
	notOwned          *prometheus.CounterVec
	statusHeld        prometheus.Counter
}

// NewMetrics registers the ingest metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		statusHeld: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_ingest_held_for_replicas_total",
			Help: "Messages left unacknowledged (the broker sends them again) while this replica waited for the replicas' statuses or for a live replica of another shard count to stop.",
		}),
		notOwned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanprod_ingest_not_owned_total",
			Help: "Messages of an enterprise another shard owns, not processed: source mqtt (queued in this replica's session before a reshard; acknowledged, the owner's session has its copy) or hj212_tcp (a data logger connected to the wrong replica; refused with a 9011 QnRtn=2, the logger sends it again).",
		}, []string{"source"}),
		restoreRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_ingest_restore_retries_total", Help: "Store queries for the meters' recent readings at start that failed and were retried in smaller pieces.",
		}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_ingest_messages_total", Help: "Telemetry messages received from the broker.",
		}),
		readings: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_ingest_readings_written_total", Help: "Readings written to the store and acknowledged.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_ingest_duplicates_total", Help: "Readings received again with the same value (redeliveries), absorbed without counting twice.",
		}),
		refusedRewrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_ingest_refused_rewrites_total", Help: "Readings rewritten because the store refused, for good, a reading they had counted from: they count again from the reading stored before it.",
		}),
		lateWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanprod_ingest_late_waiting_messages", Help: "Messages with readings older than their meters' kept history waiting, unacknowledged, for the store's answer about them.",
		}),
		lateLookups: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_ingest_late_lookups_total", Help: "Rounds of store look-ups for late readings (one per group of waiting messages).",
		}),
		lateLookupFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_ingest_late_lookup_failures_total", Help: "Store look-ups for late readings that failed; they are retried with back-off while their messages wait unacknowledged.",
		}),
		lateLookupSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cleanprod_ingest_late_lookup_seconds", Help: "Duration of one round of store look-ups for late readings.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 8),
		}),
		flagged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanprod_ingest_flagged_values_total", Help: "Analyser values whose data flag marks them not valid (HJ 212 F, M, D, C, T, B; S unless the station allows it): stored apart in reading_flagged with their flag, counted toward no sum, mean or compliance, and missing from the data availability.",
		}, []string{"flag"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanprod_ingest_rejected_total", Help: "Rejected messages (message-level reasons) and readings (reading-level reasons), by reason.",
		}, []string{"reason"}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_ingest_deadletters_total", Help: "Dead-letter envelopes published to cp/v1/deadletter/{reason}.",
		}),
		deadLetterErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_ingest_deadletter_errors_total", Help: "Failed dead-letter publishes (retried; the message stays unacknowledged).",
		}),
		batchReadings: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cleanprod_ingest_batch_readings", Help: "Readings per store write.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cleanprod_store_write_duration_seconds", Help: "Duration of successful store writes.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10),
		}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanprod_store_write_errors_total", Help: "Failed store writes by kind (temporary: retried; permanent: dead-lettered).",
		}, []string{"kind"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanprod_ingest_inflight_messages", Help: "Messages received and not yet acknowledged.",
		}),
		lastMessage: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleanprod_ingest_last_message_timestamp_seconds", Help: "Unix time of the last accepted message per registered gateway.",
		}, []string{"enterprise", "gateway"}),
		seqGaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanprod_ingest_seq_gaps_total", Help: "Messages lost at the edge per gateway: seq numbers skipped and still missing 5 minutes after the gap (or 4096 numbers later); a late message fills its gap instead.",
		}, []string{"enterprise", "gateway"}),
		seqRepeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_ingest_seq_repeats_total", Help: "Messages whose seq was seen before (redeliveries).",
		}),
		seqRenumbered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanprod_ingest_seq_renumbered_total", Help: "Times a gateway's seq jumped more than 4096 up or down (a gateway numbering anew after a restart, or a hostile value): a new numbering, not lost messages.",
		}, []string{"enterprise", "gateway"}),
		seqBackwards: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_ingest_seq_backwards_total", Help: "Messages out of order (a late message filling its gap) or numbered anew (a gateway restart).",
		}),
		counterEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanprod_ingest_counter_events_total", Help: "Counter resets, rollovers and declared meter replacements crossed.",
		}, []string{"event"}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cleanprod_ingest_ack_latency_seconds", Help: "Time from receiving a message to acknowledging it after the store accepted it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanprod_mqtt_connected", Help: "1 while connected to the broker.",
		}),
		connects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_mqtt_connects_total", Help: "Successful (re)connections to the broker.",
		}),
		connLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_mqtt_connection_lost_total", Help: "Connections to the broker lost.",
		}),
		watchdogResets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleanprod_mqtt_watchdog_reconnects_total", Help: "Reconnects forced because the heartbeat stopped arriving on a connection that looked alive.",
		}),
	}
	reg.MustRegister(m.restoreRetries, m.messages, m.readings, m.duplicates, m.flagged, m.refusedRewrites, m.lateWaiting, m.lateLookups, m.lateLookupFailures, m.lateLookupSeconds, m.rejected, m.deadLettered, m.deadLetterErrs,
		m.batchReadings, m.writeSeconds, m.storeErrors, m.inflight, m.lastMessage, m.seqGaps, m.seqRepeats,
		m.seqBackwards, m.seqRenumbered, m.counterEvents, m.ackLatency, m.connected, m.connects, m.connLost, m.watchdogResets, m.notOwned, m.statusHeld)
	// Both sources exist from the start, at 0, so that increase() sees the first.
	m.notOwned.WithLabelValues("mqtt")
	m.notOwned.WithLabelValues("hj212_tcp")
	newBacklogMetrics(reg, m)
	return m
}
