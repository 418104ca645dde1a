package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// backlogHold is how long phase 8 keeps InfluxDB down after the last
// message was published, sampling what cleanprod holds.
const backlogHold = 10 * time.Second

// backlogResult is phase 8: cleanprod on mosquitto with InfluxDB killed,
// fed the whole workload, which the broker must keep; then InfluxDB
// again, until every reading is stored.
type backlogResult struct {
	Readings int `json:"readings"`
	Messages int `json:"messages"`
	// What cleanprod held unacknowledged at most while the store was down
	// (cleanprod_ingest_inflight_messages and _bytes, sampled every
	// second), and its bounds (mqtt.max_unacked_messages and _bytes, as
	// serve reports them).
	PeakHeldMessages float64 `json:"peak_held_messages"`
	PeakHeldBytes    float64 `json:"peak_held_bytes"`
	// Peak RSS (VmHWM) when the store came back, and at the end of the
	// catch-up; phase 3's peak RSS is the figure without a backlog.
	PeakRSSHoldingBytes int64   `json:"peak_rss_holding_bytes"`
	PeakRSSBytes        int64   `json:"peak_rss_bytes"`
	CatchUpSeconds      float64 `json:"catch_up_seconds"`
	Deferred            float64 `json:"deferred_messages"`
	Redelivered         float64 `json:"redeliveries_absorbed"`
	BacklogReconnects   float64 `json:"backlog_reconnects"`
	Stored              int     `json:"stored"`
	Lost                int     `json:"lost"`
	Rejected            int     `json:"rejected"`
	// Error says why the catch-up did not finish (the run's -timeout, or
	// no progress); the figures are those measured until then.
	Error string `json:"error,omitempty"`
}

// backlog is phase 8.
func (b *bench) backlog(ctx context.Context) (*backlogResult, error) {
	const clientID = "cleanprod-backlog"
	srv, db, err := b.startExternalServe(ctx, "backlog", clientID, false)
	if err != nil {
		return nil, err
	}
	defer b.forget(db, clientID)
	r := &backlogResult{Readings: b.work.readings, Messages: len(b.work.msgs)}
	sample := func() error {
		m, _, err := srv.metrics(ctx)
		if err != nil {
			return err
		}
		r.PeakHeldMessages = max(r.PeakHeldMessages, m["cleanprod_ingest_inflight_messages"])
		r.PeakHeldBytes = max(r.PeakHeldBytes, m["cleanprod_ingest_inflight_bytes"])
		r.Deferred, r.Redelivered = m["cleanprod_ingest_deferred_messages_total"], m["cleanprod_ingest_redeliveries_absorbed_total"]
		r.BacklogReconnects = m["cleanprod_mqtt_backlog_reconnects_total"]
		r.Rejected = int(m["cleanprod_ingest_rejected_total"])
		return nil
	}

	b.progress("phase 8: killing influxd, publishing %d messages", len(b.work.msgs))
	b.srv.influx.Kill()
	resumed := false
	defer func() {
		if !resumed {
			b.srv.influx.Resume()
		}
	}()
	published := make(chan error, 1)
	go func() { published <- publishAll(ctx, b.srv.broker.URL(), b.work.msgs, b.shards, b.cfg.window) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var holdUntil <-chan time.Time
wait:
	for {
		select {
		case err := <-published:
			if err != nil {
				return nil, errors.Join(err, srv.stop())
			}
			published, holdUntil = nil, time.After(backlogHold)
		case <-holdUntil:
			break wait
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), srv.stop())
		case <-tick.C:
		}
		if err := sample(); err != nil {
			return nil, errors.Join(err, srv.stop())
		}
	}
	if r.PeakRSSHoldingBytes, err = srv.peakRSS(); err != nil {
		return nil, errors.Join(err, srv.stop())
	}
	b.progress("phase 8: held at most %.0f messages, %.1f MB; peak RSS %s; starting influxd", r.PeakHeldMessages, r.PeakHeldBytes/1e6, mib(r.PeakRSSHoldingBytes))
	if err := b.srv.influx.Resume(); err != nil {
		return nil, errors.Join(err, srv.stop())
	}
	resumed = true
	start, last, lastChange := time.Now(), -1, time.Now()
	// unfinished returns what was measured with why the catch-up ended.
	unfinished := func(why error) (*backlogResult, error) {
		r.CatchUpSeconds = time.Since(start).Seconds()
		r.PeakRSSBytes, _ = srv.peakRSS()
		r.Lost = r.Readings - r.Stored
		return r, errors.Join(why, srv.stop())
	}
	for r.Stored < r.Readings {
		select {
		case <-ctx.Done():
			return unfinished(fmt.Errorf("phase 8: catch-up at %d of %d readings: %w", r.Stored, r.Readings, ctx.Err()))
		case <-tick.C:
		}
		if err := sample(); err != nil {
			return nil, errors.Join(err, srv.stop())
		}
		if r.Stored, err = countInflux(db); err != nil {
			b.progress("phase 8: counting: %v", err) // InfluxDB may still be opening its shards
			continue
		}
		if r.Stored != last {
			last, lastChange = r.Stored, time.Now()
		}
		if time.Since(lastChange) > stallTimeout {
			return unfinished(fmt.Errorf("phase 8: no progress for %v at %d of %d readings", stallTimeout, r.Stored, r.Readings))
		}
	}
	r.CatchUpSeconds = time.Since(start).Seconds()
	if r.PeakRSSBytes, err = srv.peakRSS(); err != nil {
		return nil, errors.Join(err, srv.stop())
	}
	r.Lost = r.Readings - r.Stored
	return r, srv.stop()
}

// writeMarkdown adds phase 8's rows to the results table; steady is phase
// 3's peak RSS (0: not measured in this run).
func (r *backlogResult) writeMarkdown(w io.Writer, steady int64) {
	vs := "phase 3 not run: no figure without a backlog"
	if steady > 0 {
		vs = fmt.Sprintf("%.2fx phase 3's %s", float64(r.PeakRSSBytes)/float64(steady), mib(steady))
	}
	fmt.Fprintf(w, "| 8 | backlog: InfluxDB down while %s readings (%s messages) arrive, then back | peak RSS %s holding, %s after the catch-up (%s) | held at most %s messages, %.1f MB unacknowledged; %s deferred to the broker, %s copies absorbed, %s reconnects; caught up in %.1f s; stored %s, lost %s, rejected %d |\n",
		num(float64(r.Readings)), num(float64(r.Messages)), mib(r.PeakRSSHoldingBytes), mib(r.PeakRSSBytes), vs,
		num(r.PeakHeldMessages), r.PeakHeldBytes/1e6, num(r.Deferred), num(r.Redelivered), num(r.BacklogReconnects),
		r.CatchUpSeconds, num(float64(r.Stored)), num(float64(r.Lost)), r.Rejected)
	if r.Error != "" {
		fmt.Fprintf(w, "\n**Phase 8 stopped early:** %s; its figures are those measured until then.\n", r.Error)
	}
}
