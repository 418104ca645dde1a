package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the README's first command as a newcomer would (on other
// ports) and checks that readings flow within a minute and Ctrl-C stops it
// cleanly.
func TestDemo(t *testing.T) {
	httpAddr, brokerAddr, stations := freeAddr(t), freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"demo", "-http.listen", httpAddr, "-embedded_broker.listen", brokerAddr, "-hj212.listen", stations,
			"-gateway_config", "../../gateway-config", "-scoring.declarations", "../../scoring/declarations", "-log.level", "warn"}, func(string) string { return "" }, out, out)
	}()
	s := &service{http: httpAddr, logs: out}
	deadline := time.Now().Add(60 * time.Second)
	for s.metricOrZero("cleanprod_ingest_readings_written_total") < 1000 {
		select {
		case err := <-done:
			t.Fatalf("demo exited: %v\n%s", err, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 1000 readings written within a minute\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "simulated car plants are publishing") {
		t.Errorf("the demo did not say what it runs:\n%s", out)
	}
	if !strings.Contains(out.String(), "HJ 212 receiver tcp://"+stations) || !strings.Contains(out.String(), "cleanprod hj212 frame -mn ") {
		t.Errorf("the demo did not name its HJ 212 receiver with a frame to try:\n%s", out)
	}
	// The stations' loggers deliver over TCP: their data is stored and acknowledged.
	deadline = time.Now().Add(60 * time.Second)
	for s.metricOrZero("cleanprod_hj212_acks_total") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no HJ 212 frame stored and acknowledged within a minute\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The case watcher is wired: its gauges are on /metrics.
	if !regexp.MustCompile(`(?m)^cleanprod_cases\{state="open"\} \d`).MatchString(s.metricsText()) {
		t.Errorf("no rectification case gauge on /metrics")
	}
	// A clean start logs no error, and no warning but the rejections of
	// the faults the simulator injects (the log level is warn: every
	// record in the output would be one).
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") && !strings.Contains(line, `msg="rejected input"`) {
			t.Errorf("the demo's clean start logs: %s", line)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("demo returned %v after Ctrl-C", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30s of Ctrl-C")
	}
}

// metricsText is the service's /metrics page ("" when it does not answer).
func (s *service) metricsText() string {
	resp, err := http.Get("http://" + s.http + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// TestDemoFleet checks which fleet and declarations the demo runs: the
// built-in example unless a folder is named.
func TestDemoFleet(t *testing.T) {
	def := defaultConfig()
	for _, tc := range []struct {
		name                   string
		fleet, decl            string
		exists                 bool
		wantFleet, wantBuiltin bool // built-in fleet, built-in declarations
		wantDecl               string
	}{
		{name: "defaults", fleet: def.GatewayConfig, decl: def.Scoring.Declarations, wantFleet: true, wantBuiltin: true, wantDecl: def.Scoring.Declarations},
		{name: "own declarations", fleet: def.GatewayConfig, decl: "my-decl", wantFleet: true, wantDecl: "my-decl"},
		{name: "own fleet, no declarations folder", fleet: "my-fleet", decl: def.Scoring.Declarations, wantDecl: ""},
		{name: "own fleet, declarations folder here", fleet: "my-fleet", decl: def.Scoring.Declarations, exists: true, wantDecl: def.Scoring.Declarations},
		{name: "own fleet and declarations", fleet: "my-fleet", decl: "my-decl", wantDecl: "my-decl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaultConfig()
			cfg.GatewayConfig, cfg.Scoring.Declarations = tc.fleet, tc.decl
			demoFleet(&cfg, func(string) bool { return tc.exists })
			if got := cfg.builtinFleet != nil; got != tc.wantFleet {
				t.Errorf("built-in fleet: got %v, want %v", got, tc.wantFleet)
			}
			if got := cfg.builtinDeclarations != nil; got != tc.wantBuiltin {
				t.Errorf("built-in declarations: got %v, want %v", got, tc.wantBuiltin)
			}
			if cfg.Scoring.Declarations != tc.wantDecl {
				t.Errorf("scoring.declarations: got %q, want %q", cfg.Scoring.Declarations, tc.wantDecl)
			}
		})
	}
}

// TestLoadRegistry checks where serve and the demo read the fleet from:
// the built-in example when set, else the folder, whose absence names
// the demo's built-in fleet.
func TestLoadRegistry(t *testing.T) {
	cfg := defaultConfig()
	cfg.GatewayConfig = filepath.Join(t.TempDir(), "gateway-config")
	if _, err := loadRegistry(&cfg); err == nil || !strings.Contains(err.Error(), "cleanprod demo runs the example fleet built into the binary") {
		t.Errorf("missing folder: got %v, want a hint at the demo's built-in fleet", err)
	}
	cfg.GatewayConfig = defaultConfig().GatewayConfig
	demoFleet(&cfg, func(string) bool { return false })
	reg, err := loadRegistry(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.Gateway("cq-lj-yuntai-auto", "gw-boiler-01"); !ok || len(reg.Enterprises) != 4 {
		t.Errorf("built-in fleet: %d enterprises, want the 4 of gateway-config/ with gw-boiler-01", len(reg.Enterprises))
	}
}
