package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanprod/cleanprod/ingest"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/review"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/shard"
	"github.com/cleanprod/cleanprod/web"
)

// reloader applies SIGHUP: it reads the gateway registry, the standard,
// policy, solution library and declarations, and the API tokens file again
// from the paths configured at start, checks them all, and switches the
// running service to them only if every file is good. A bad file keeps
// the whole configuration in force and logs every problem. The service
// settings themselves (addresses, URLs, ...) need a restart.
type reloader struct {
	cfg    *Config
	log    *slog.Logger
	pipe   *ingest.Pipeline
	eng    *scoring.Engine
	seen   *ingest.LastSeen
	tokens *web.Tokens // nil: no tokens file
	book   *review.Book
	sub    *ingest.Subscriber
	shard  shard.Set // this replica's: pipeline and scorer get its enterprises
	// wait bounds how long a reload waits for the store: for the
	// batches in flight to be stored and a refill of the scoring windows
	// to end (0: reloadWait). Past it, or at once while store writes
	// fail, the reload gives up with the configuration in force kept and
	// run tries it again later: a reload never holds its lock, nor ingest,
	// for as long as a store outage lasts.
	wait time.Duration
	mu   sync.Mutex         // serialises reloads
	reg  *registry.Registry // in force
	// fleetReg is reg for the web's fleet views, which read it without mu.
	fleetReg *atomic.Pointer[registry.Registry]
	sd       *scoringData // in force
	m        reloadMetrics
	// describe writes a reloaded registry's meters to the store (nil:
	// not at all); it must not block.
	describe func(*registry.Registry)
}

type reloadMetrics struct {
	total       *prometheus.CounterVec
	ok          prometheus.Gauge
	lastSuccess prometheus.Gauge
}

func newReloadMetrics(r prometheus.Registerer) reloadMetrics {
	m := reloadMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanprod_config_reloads_total", Help: "Configuration reloads (SIGHUP) by result: success; failure (a bad file: the configuration in force was kept); postponed (good files, but the store was not accepting writes or refilling the scoring windows: tried again later).",
		}, []string{"result"}),
		ok: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanprod_config_last_reload_successful", Help: "1 if the last configuration reload succeeded (or none was asked for), 0 if it failed.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanprod_config_last_reload_success_timestamp_seconds", Help: "Unix time the configuration in force was loaded (at start or by a reload).",
		}),
	}
	r.MustRegister(m.total, m.ok, m.lastSuccess)
	m.total.WithLabelValues("success")
	m.total.WithLabelValues("failure")
	m.total.WithLabelValues("postponed")
	m.ok.Set(1)
	m.lastSuccess.SetToCurrentTime()
	return m
}

// reloadWait is how long a reload waits for the store by default.
const reloadWait = 30 * time.Second

// waitFor is how long a reload waits for the store.
func (r *reloader) waitFor() time.Duration {
	if r.wait > 0 {
		return r.wait
	}
	return reloadWait
}

// errStoreBusy says a reload gave up waiting for the store.
var errStoreBusy = errors.New("the store is not accepting writes or still refilling the scoring windows")

// run reloads on every signal until ctx ends. A reload that gave up
// waiting for the store is tried again, with back-off, until it passes or
// another signal asks for a new one.
func (r *reloader) run(ctx context.Context, signals <-chan os.Signal) {
	const retryMin, retryMax = 2 * time.Second, time.Minute
	backoff := retryMin
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-signals:
		case <-retry:
		}
		retry = nil
		if err := r.reload(ctx); errors.Is(err, errStoreBusy) && ctx.Err() == nil {
			r.log.Info("configuration reload tried again later", "retry_in", backoff)
			retry = time.After(backoff)
			backoff = min(2*backoff, retryMax)
			continue
		}
		backoff = retryMin
	}
}

// reload switches the service to the configuration files' current
// content, or keeps the configuration in force and returns why not.
func (r *reloader) reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	r.log.Info("configuration reload asked for", "gateway_config", registryName(r.cfg))
	wctx, cancel := context.WithTimeoutCause(ctx, r.waitFor(), errStoreBusy)
	defer cancel()
	err := r.apply(ctx, wctx)
	switch {
	case errors.Is(err, errStoreBusy) && ctx.Err() == nil:
		// The files are good; the store decides when they can be
		// switched to. Not a failure: the alert on failed reloads says
		// a file needs fixing.
		r.m.total.WithLabelValues("postponed").Inc()
		r.log.Warn("configuration reload postponed; the configuration in force is kept", "err", err)
		return err
	case err != nil:
		r.m.total.WithLabelValues("failure").Inc()
		r.m.ok.Set(0)
		r.log.Error("configuration reload failed; the configuration in force is kept", "err", err)
		return err
	}
	r.m.total.WithLabelValues("success").Inc()
	r.m.ok.Set(1)
	r.m.lastSuccess.SetToCurrentTime()
	r.log.Info("configuration reloaded", "enterprises", len(r.reg.Enterprises), "gateways", r.reg.GatewayCount(), "meters", r.reg.MeterCount(),
		"standard", r.sd.std.ID, "policy", r.sd.pol.ID, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// waitRefilled returns once the scorer refills no windows.
func (r *reloader) waitRefilled(ctx context.Context) error {
	logged := false
	for {
		select {
		case <-r.eng.Ready():
			if r.eng.Loading() == "" {
				return nil
			}
		default:
		}
		if !logged {
			r.log.Info("configuration reload waits until the scoring windows are refilled", "loading", r.eng.Loading())
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// apply checks the files and switches to them. wctx bounds the waits on
// the store; ctx the switch itself, which is in memory and never left
// half done.
func (r *reloader) apply(ctx, wctx context.Context) error {
	// Read and check everything before changing anything, and report every
	// file's problems, not only the first file's.
	var errs []error
	reg, err := loadRegistry(r.cfg)
	if err != nil {
		errs = append(errs, err)
	}
	sd, err := reloadScoring(r.cfg, r.sd)
	if err != nil {
		errs = append(errs, err)
	}
	var tokens *web.Tokens
	if r.tokens != nil && reg != nil {
		if tokens, err = web.LoadTokens(r.cfg.HTTP.TokensFile, reg); err != nil {
			errs = append(errs, fmt.Errorf("http.tokens_file: %w", err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// A reload holds ingest while the scorer switches, after the batches
	// in flight are stored; a refill of the scorer's windows (at start, or
	// after the last reload) holds ingest too when it finishes, so the two
	// must not overlap: the reload waits until the windows are refilled.
	// Both wait on the store: for as long as wctx allows, and not at all
	// while its writes fail.
	if !r.pipe.StoreHealthy() {
		return fmt.Errorf("%w (its last write failed)", errStoreBusy)
	}
	if err := r.waitRefilled(wctx); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("waited for the scoring windows to be refilled: %w", context.Cause(wctx))
	}
	// Ingest is held while the scorer switches, so that windows refilled
	// from the store cannot also receive a reading in flight.
	ownReg := reg
	if !r.shard.Single() {
		ownReg = reg.Only(r.shard.Owns)
	}
	err = r.pipe.Reconfigure(wctx, ownReg, func() error {
		return r.eng.Reload(ctx, scoring.Update{Standard: sd.std, Policy: sd.pol, Registry: ownReg, Solutions: sd.lib, Declarations: r.book})
	})
	if err != nil {
		return err
	}
	// The shard's enterprises added are subscribed to from now on (their
	// meters are in the pipeline's registry already); those removed are
	// unsubscribed from. A single replica's wildcard filters stay.
	if r.sub != nil {
		r.sub.SetEnterprises(shardEnterprises(reg, r.shard))
	}
	r.seen.SetRegistry(reg)
	if tokens != nil {
		r.tokens.Replace(tokens)
	}
	r.book.SetStandard(sd.std)
	// The folder's declarations go to the store, for as long again as
	// the switch could wait: a store gone meanwhile costs the seeding
	// (logged), not a hanging reload.
	sctx, cancel := context.WithTimeout(ctx, r.waitFor())
	seedDeclarations(sctx, r.book, sd, r.log, nil)
	cancel()
	r.eng.ReloadDeclarations()
	r.reg, r.sd = reg, sd
	if r.fleetReg != nil {
		r.fleetReg.Store(reg)
	}
	if r.describe != nil {
		r.describe(ownReg) // each shard describes its own meters
	}
	return nil
}
