package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cleanprod/cleanprod/sim"
)

// demoBackfill is how much history the demo replays before running live:
// enough to fill the 30-day scoring window.
const demoBackfill = 45 * 24 * time.Hour

// demo runs "cleanprod demo": serve on its embedded broker and store in a
// fresh temporary folder, fed by the simulated fleet of gateway_config,
// until interrupted. It accepts serve's settings (-http.listen,
// -embedded_broker.listen, -gateway_config, ...).
func demo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, _, err := loadConfig("demo", args, getenv, stderr)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "cleanprod-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.DataDir = dir
	cfg.MQTT.URL, cfg.Influx.URL = "", "" // everything embedded
	cfg.Ingest.PastHorizon = demoBackfill + 48*time.Hour

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serve(gctx, cfg, io.Discard, stderr) })
	g.Go(func() error {
		if err := waitHTTPReady(gctx, cfg.HTTP.Listen); err != nil {
			return nil // serve failed or we are stopping; its error is reported
		}
		f := simFlags{gatewayConfig: cfg.GatewayConfig}
		f.cfg = sim.Config{
			Seed: 1, Backfill: demoBackfill, Interval: 5 * time.Minute, Workers: 4, DriftScale: 1,
			Faults:   sim.Faults{Malformed: 0.2, Spoofed: 0.2, UnknownMeter: 0.2, NaN: 0.2, Future: 0.2, Duplicate: 0.5, OutOfOrder: 0.5},
			Progress: stdout, ProgressEvery: 15 * time.Second,
		}
		s, err := f.build(io.Discard)
		if err != nil {
			return err
		}
		broker := "tcp://" + cfg.EmbeddedBroker.Listen
		client, err := sim.Dial(gctx, broker, "cleanprod-demo-simulator")
		if err != nil {
			return fmt.Errorf("demo simulator: %w", err)
		}
		defer client.Disconnect(250)
		base := "http://" + cfg.HTTP.Listen
		fmt.Fprintf(stdout, `
cleanprod demo: %d simulated car plants are publishing to the embedded broker %s
(%s of history first, then live). Data lives in %s until you press Ctrl-C.

  metrics    %s/metrics   (cleanprod_ingest_readings_written_total, ..._rejected_total by reason)
  ready      %s/readyz
  dead-letters: mosquitto_sub -h %s -p %s -v -t 'cp/v1/deadletter/#'

`, len(s.Registry().Enterprises), broker, demoBackfill, dir, base, base, hostOf(cfg.EmbeddedBroker.Listen), portOf(cfg.EmbeddedBroker.Listen))
		return s.Run(gctx, sim.NewMQTTPublisher(client, 30*time.Second))
	})
	return g.Wait()
}

// waitHTTPReady polls /readyz until it answers 200 or ctx ends.
func waitHTTPReady(ctx context.Context, addr string) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func hostOf(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
func portOf(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
