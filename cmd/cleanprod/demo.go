package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cleanprod/cleanprod"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/sim"
	"github.com/cleanprod/cleanprod/web"
)

// demoHJ212 is where the demo's HJ 212 receiver listens unless
// -hj212.listen says otherwise: the port loggers are often pointed at in
// examples, on the loopback only.
const demoHJ212 = "127.0.0.1:9212"

// demoBackfill is how much history the demo replays before running live:
// enough to fill the 30-day scoring window.
const demoBackfill = 45 * 24 * time.Hour

// demo runs "cleanprod demo": serve on its embedded broker and store in a
// fresh temporary folder, fed by the simulated fleet of gateway_config,
// until interrupted. It accepts serve's settings (-http.listen,
// -embedded_broker.listen, -gateway_config, ...).
func demo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, rest, err := loadConfig("demo", args, getenv, stderr)
	if err != nil {
		return err
	}
	if err := noArguments("demo", rest); err != nil {
		return err
	}
	demoFleet(cfg, func(dir string) bool { _, err := os.Stat(dir); return err == nil })
	dir, err := os.MkdirTemp("", "cleanprod-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.DataDir = dir
	cfg.MQTT.URL, cfg.Influx.URL = "", "" // everything embedded
	cfg.Ingest.PastHorizon = demoBackfill + 48*time.Hour
	if cfg.HJ212.Listen == "" {
		cfg.HJ212.Listen = demoHJ212
	}
	// Say plainly when the receiver's port is taken (another demo?).
	if ln, err := net.Listen("tcp", cfg.HJ212.Listen); err != nil {
		return fmt.Errorf("demo: the HJ 212 receiver cannot listen on %s (another demo running? choose a free address with -hj212.listen): %w", cfg.HJ212.Listen, err)
	} else {
		ln.Close()
	}
	// The API's tokens live in the demo's folder, and declarations in its
	// store, so the demo never writes into the checkout.
	tokens, err := demoAPI(cfg, dir)
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serve(gctx, cfg, io.Discard, stderr) })
	g.Go(func() error {
		if err := waitHTTPReady(gctx, cfg.HTTP.Listen); err != nil {
			return nil // serve failed or we are stopping; its error is reported
		}
		f := simFlags{gatewayConfig: cfg.GatewayConfig, fleet: cfg.builtinFleet}
		f.cfg = sim.Config{
			Seed: 1, Backfill: demoBackfill, Interval: 5 * time.Minute, Workers: 4, DriftScale: 1,
			Faults:   sim.Faults{Malformed: 0.2, Spoofed: 0.2, UnknownMeter: 0.2, NaN: 0.2, Future: 0.2, Duplicate: 0.5, OutOfOrder: 0.5},
			Stations: sim.Stations{BadCRC: 0.5, DataFlag: 1, Offline: 0.5, OfflineFor: 2 * time.Hour},
			Progress: stdout, ProgressEvery: 15 * time.Second,
		}
		f.hj212Addr = cfg.HJ212.Listen
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
(%d days of history first, then live). Data lives in %s until you press Ctrl-C.

  overview   %s/?token=%s
  metrics    %s/metrics   (cleanprod_ingest_readings_written_total, ..._rejected_total by reason)
  ready      %s/readyz
  API        curl -H 'Authorization: Bearer %s' %s/api/v1/enterprises
  OpenAPI    %s/api/v1/openapi.json
  dead-letters: mosquitto_sub -h %s -p %s -v -t 'cp/v1/deadletter/#'

`, len(s.Registry().Enterprises), broker, int(demoBackfill.Hours()/24), dir, base, tokens[0].token, base, base, tokens[0].token, base, base,
			hostOf(cfg.EmbeddedBroker.Listen), portOf(cfg.EmbeddedBroker.Listen))
		fmt.Fprintf(stdout, "Demo API tokens (new each run; the server keeps their SHA-256 in %s):\n", cfg.HTTP.TokensFile)
		for _, t := range tokens {
			fmt.Fprintf(stdout, "  %-24s %s\n", t.name, t.token)
		}
		if len(tokens) > 1 {
			fmt.Fprintf(stdout, "  report     %s/api/v1/enterprises/%s/report?token=%s   (&format=pdf for the PDF)\n", base, tokens[1].name, tokens[0].token)
		}
		demoStations(stdout, s.Registry(), cfg.HJ212.Listen)
		fmt.Fprintln(stdout)
		// The loggers may each have 32 frames unacknowledged, so that the
		// backfill does not wait for every 9014.
		pub, link := f.publisher(sim.NewMQTTPublisher(client, 30*time.Second), 32)
		defer link.Close()
		return s.Run(gctx, pub)
	})
	return g.Wait()
}

// demoStations names the HJ 212 receiver and its stations, with a frame
// to send by hand.
func demoStations(w io.Writer, reg *registry.Registry, addr string) {
	var first *registry.Gateway
	n := 0
	for _, e := range reg.Enterprises {
		for _, g := range e.Gateways {
			if g.Station != nil {
				n++
				if first == nil && strings.HasPrefix(g.ID, "st-ww") {
					first = g
				}
			}
		}
	}
	if n == 0 {
		return
	}
	fmt.Fprintf(w, "HJ 212 receiver tcp://%s: the loggers of %d stations (wastewater outlets, stacks) connect there.\n", addr, n)
	if first != nil {
		fmt.Fprintf(w, "  try one   cleanprod hj212 frame -mn %s -pw %s w01018-Avg=42.1 w01018-Flag=N | nc -q 3 %s %s\n",
			first.Station.MN, first.Station.Password, hostOf(addr), portOf(addr))
		fmt.Fprintf(w, "            (%s of %s; the 9014 comes back once the value is stored)\n", first.ID, first.Enterprise.ID)
	}
}

// demoFleet chooses the demo's fleet: the example fleet and declarations
// built into the binary, so that the demo runs in any folder, unless
// gateway_config names another folder (flag, environment or file). That
// fleet's declarations are scoring.declarations's folder if it was named
// or exists (exists reports whether a folder does), else none.
func demoFleet(cfg *Config, exists func(dir string) bool) {
	def := defaultConfig()
	if cfg.GatewayConfig == def.GatewayConfig {
		cfg.builtinFleet = cleanprod.ExampleFleet()
		if cfg.Scoring.Declarations == def.Scoring.Declarations {
			cfg.builtinDeclarations = cleanprod.ExampleDeclarations()
		}
		return
	}
	if cfg.Scoring.Declarations == def.Scoring.Declarations && !exists(cfg.Scoring.Declarations) {
		cfg.Scoring.Declarations = ""
	}
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

// demoToken is a bearer token the demo made and prints.
type demoToken struct{ name, token string }

// demoAPI prepares the demo's API in its folder (declarations and their
// review live in the demo's store; the checkout's folder only seeds it):
// a fresh token set: one supervisor token, then one per enterprise, written as
// hashes to a tokens file. It returns the tokens, supervisor first.
func demoAPI(cfg *Config, dir string) ([]demoToken, error) {
	reg, err := loadRegistry(cfg)
	if err != nil {
		return nil, err
	}
	cfg.HTTP.TokensFile = filepath.Join(dir, "tokens.yaml")
	var out []demoToken
	add := func(name string, role web.Role, enterprise string) error {
		tok, err := web.GenerateToken()
		if err != nil {
			return err
		}
		out = append(out, demoToken{name, tok})
		return web.AppendTokenFile(cfg.HTTP.TokensFile, web.Token{Name: name, SHA256: web.HashToken(tok), Role: role, Enterprise: enterprise}, reg)
	}
	if err := add("supervisor", web.RoleSupervisor, ""); err != nil {
		return nil, err
	}
	for _, e := range reg.Enterprises {
		if err := add(e.ID, web.RoleEnterprise, e.ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}
