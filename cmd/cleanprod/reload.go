package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanprod/cleanprod/ingest"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/review"
	"github.com/cleanprod/cleanprod/scoring"
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
	mu     sync.Mutex         // serialises reloads
	reg    *registry.Registry // in force
	sd     *scoringData       // in force
	m      reloadMetrics
}

type reloadMetrics struct {
	total       *prometheus.CounterVec
	ok          prometheus.Gauge
	lastSuccess prometheus.Gauge
}

func newReloadMetrics(r prometheus.Registerer) reloadMetrics {
	m := reloadMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanprod_config_reloads_total", Help: "Configuration reloads (SIGHUP) by result: success, or failure (the configuration in force was kept).",
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
	m.ok.Set(1)
	m.lastSuccess.SetToCurrentTime()
	return m
}

// run reloads on every signal until ctx ends.
func (r *reloader) run(ctx context.Context, signals <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-signals:
			_ = r.reload(ctx)
		}
	}
}

// reload switches the service to the configuration files' current
// content, or keeps the configuration in force and returns why not.
func (r *reloader) reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	r.log.Info("configuration reload asked for", "gateway_config", r.cfg.GatewayConfig)
	// A reload holds ingest while the scorer switches; a refill of the
	// scorer's windows (at start, or after the last reload) holds ingest
	// too when it finishes, so the two must not overlap: the reload waits
	// until the windows are refilled.
	if err := r.waitRefilled(ctx); err != nil {
		return err
	}
	err := r.apply(ctx)
	if err != nil {
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

func (r *reloader) apply(ctx context.Context) error {
	// Read and check everything before changing anything, and report every
	// file's problems, not only the first file's.
	var errs []error
	reg, err := registry.Load(r.cfg.GatewayConfig)
	if err != nil {
		errs = append(errs, fmt.Errorf("gateway registry: %w", err))
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
	// Ingest is held while the scorer switches, so that windows refilled
	// from the store cannot also receive a reading in flight.
	err = r.pipe.Reconfigure(ctx, reg, func() error {
		return r.eng.Reload(ctx, scoring.Update{Standard: sd.std, Policy: sd.pol, Registry: reg, Solutions: sd.lib, Declarations: r.book})
	})
	if err != nil {
		return err
	}
	r.seen.SetRegistry(reg)
	if tokens != nil {
		r.tokens.Replace(tokens)
	}
	r.book.SetStandard(sd.std)
	seedDeclarations(ctx, r.book, sd, r.log, nil)
	r.eng.ReloadDeclarations()
	r.reg, r.sd = reg, sd
	return nil
}
