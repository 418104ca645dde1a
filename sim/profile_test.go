package sim_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/sim"
)

func TestParseProfiles(t *testing.T) {
	files, err := filepath.Glob("testdata/profiles/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = sim.ParseProfiles(f, data)
			if strings.HasSuffix(f, ".good.yaml") {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatal("a bad fixture needs a first line '# want: substring|substring'")
			}
			if err == nil {
				t.Fatalf("got no error, want %q", want)
			}
			for _, w := range strings.Split(want, "|") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestProfilesFor(t *testing.T) {
	p, err := sim.LoadProfiles("testdata/profiles/ok.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"a.yaml": []byte("enterprise: {id: a, name: A}\ngateways:\n  - id: g\n    meters:\n      - {id: V, quantity: vehicles, unit: vehicle, kind: counter}\n"),
		"b.yaml": []byte("enterprise: {id: b, name: B}\ngateways:\n  - id: g\n    meters:\n      - {id: E, quantity: electricity, unit: kWh, kind: counter}\n"),
	}
	reg, err := registry.Parse(files)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := reg.Enterprise("a")
	b, _ := reg.Enterprise("b")
	tests := []struct {
		name      string
		got       sim.Profile
		jph       float64
		family    string
		elec, cod float64
		drift     float64
	}{
		{"assigned preset over defaults", p.For(a), 40, sim.FamilyVehicle, 600, 50, 0.05},
		{"unassigned parts plant", p.For(b), 50, sim.FamilyParts, 700, 100, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := tt.got
			if g.JPH != tt.jph || g.Family != tt.family || g.Amounts["electricity"].PerJob != tt.elec ||
				g.Gauges["cod"].Outlet != tt.cod || g.Drift != tt.drift {
				t.Errorf("got jph %v, family %s, electricity %v, cod %v, drift %v; want %v, %s, %v, %v, %v",
					g.JPH, g.Family, g.Amounts["electricity"].PerJob, g.Gauges["cod"].Outlet, g.Drift, tt.jph, tt.family, tt.elec, tt.cod, tt.drift)
			}
			if g.Gauges["cod"].Inlet != 800 {
				t.Errorf("cod inlet: got %v, want 800 from the defaults", g.Gauges["cod"].Inlet)
			}
		})
	}
	// A profile that lacks a metered quantity is a configuration error.
	files["c.yaml"] = []byte("enterprise: {id: c, name: C}\ngateways:\n  - id: g\n    meters:\n      - {id: S, quantity: steam, unit: t, kind: counter}\n")
	reg, err = registry.Parse(files)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.New(reg, sim.Config{Profiles: p}); err == nil || !strings.Contains(err.Error(), "c/S: the profile has no amount for steam") {
		t.Errorf("New with a profile lacking steam: got %v, want an error naming c/S and steam", err)
	}
}

// TestSilentGateway checks that a gateway the profiles leave silent (the
// example fleet's gw-boiler-01, for readings sent by hand) sends nothing
// while the enterprise's other gateways run.
func TestSilentGateway(t *testing.T) {
	reg := loadFleet(t)
	g, ok := reg.Gateway("cq-lj-yuntai-auto", "gw-boiler-01")
	if !ok || !sim.DefaultProfiles().Silent(g) {
		t.Fatal("the example fleet's gw-boiler-01 is not a silent gateway")
	}
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	s, err := sim.New(reg, sim.Config{Seed: 1, Start: start, Duration: 2 * time.Hour, Now: fixedNow(start)})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range s.Messages() {
		if strings.Contains(m.Topic, "/gw-boiler-01/") {
			t.Fatalf("the silent gateway sent on %s", m.Topic)
		}
		if strings.HasPrefix(m.Topic, "cp/v1/cq-lj-yuntai-auto/") {
			n++
		}
	}
	if n == 0 {
		t.Error("the silent gateway's enterprise sent nothing")
	}
}
