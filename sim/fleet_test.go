package sim_test

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/sim"
)

func loadFleet(t testing.TB) *registry.Registry {
	t.Helper()
	reg, err := registry.Load("../gateway-config")
	if err != nil {
		t.Fatalf("load ../gateway-config: %v", err)
	}
	return reg
}

// TestShippedFleet loads the example gateway registry and checks that it
// exercises what normalisation must handle.
func TestShippedFleet(t *testing.T) {
	reg := loadFleet(t)
	want := map[string]string{
		"cq-lj-yuntai-auto":    "efficient",
		"cq-lj-jiahe-motors":   "average",
		"cq-lj-hengrun-parts":  "parts",
		"cq-lj-shanchuan-auto": "lagging",
	}
	var ids []string
	for _, e := range reg.Enterprises {
		ids = append(ids, e.ID)
		if e.Region != "chongqing" {
			t.Errorf("%s: region %q, want chongqing", e.ID, e.Region)
		}
	}
	if got := slices.Sorted(maps.Keys(want)); !slices.Equal(ids, got) {
		t.Fatalf("enterprises %v, want %v", ids, got)
	}
	profiles := sim.DefaultProfiles()
	for id, preset := range want {
		if got := profiles.Enterprises[id].Preset; got != preset {
			t.Errorf("%s: preset %q, want %q", id, got, preset)
		}
	}

	units := map[string]bool{}
	var rollovers, replacements, scaled, paired, deltas, maxRates int
	for _, e := range reg.Enterprises {
		for _, m := range e.Meters {
			units[m.Unit] = true
			if m.Rollover > 0 {
				rollovers++
			}
			replacements += len(m.Replacements)
			if m.Scale != 1 {
				scaled++
			}
			if m.FlowMeter != nil {
				paired++
			}
			if m.Kind == registry.Delta {
				deltas++
			}
			if m.MaxRate > 0 {
				maxRates++
			}
		}
	}
	for _, u := range []string{"kWh", "MWh", "m3", "Nm3", "km3", "L", "t", "kg", "mg/L", "g/m3", "mg/m3", "pH", "vehicle", "body", "m2"} {
		if !units[u] {
			t.Errorf("no meter reports in %s", u)
		}
	}
	if rollovers < 5 || replacements != 1 || scaled < 3 || paired < 10 || deltas < 8 || maxRates < 2 {
		t.Errorf("got %d rollovers, %d replacements, %d scaled, %d paired, %d deltas, %d max rates; want >= 5, 1, >= 3, >= 10, >= 8, >= 2",
			rollovers, replacements, scaled, paired, deltas, maxRates)
	}
	if _, err := sim.New(reg, sim.Config{}); err != nil {
		t.Fatalf("New with the zero Config: %v", err)
	}
}

func TestSyntheticFleet(t *testing.T) {
	files, err := sim.SyntheticFleet(40, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 40 {
		t.Fatalf("got %d files, want 40", len(files))
	}
	again, _ := sim.SyntheticFleet(40, 7)
	for name, b := range files {
		if !bytes.Equal(b, again[name]) {
			t.Fatalf("%s differs between two calls with the same seed", name)
		}
	}
	dir := t.TempDir()
	if err := sim.WriteFleet(dir, files); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Load(dir)
	if err != nil {
		t.Fatalf("load the written fleet: %v", err)
	}
	parts := 0
	for _, e := range reg.Enterprises {
		if strings.Contains(e.Industry, "parts") {
			parts++
		}
	}
	if parts == 0 || parts == 40 {
		t.Errorf("got %d parts plants of 40, want a mix", parts)
	}

	// The synthetic fleet joins the shipped one and simulates.
	all := map[string][]byte{}
	for _, e := range loadFleet(t).Enterprises {
		all[e.File] = mustRead(t, e.File)
	}
	maps.Copy(all, files)
	reg, err = registry.Parse(all)
	if err != nil {
		t.Fatalf("parse shipped + synthetic: %v", err)
	}
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	s, err := sim.New(reg, sim.Config{Seed: 3, Start: start, Duration: 6 * time.Hour, Faults: sim.Faults{Spoofed: 10, UnknownMeter: 10}, Now: fixedNow(start)})
	if err != nil {
		t.Fatal(err)
	}
	ref := newRefIngest(reg, start.Add(12*time.Hour))
	for m := range s.Messages() {
		ref.handle(t, m.Topic, m.Payload)
	}
	checkLedger(t, ref, s.Ledger())

	if err := sim.WriteFleet(dir, map[string][]byte{"../x.yaml": nil}); err == nil {
		t.Error("WriteFleet accepted a file name with a path")
	}
	if _, err := sim.SyntheticFleet(-1, 0); err == nil {
		t.Error("SyntheticFleet(-1) returned no error")
	}
}

// A fleet sized by meters: every plant has at least the meters asked
// for, its sub-meters simulate, and every plant is of an industry the
// shipped standard grades.
func TestSyntheticFleetMeters(t *testing.T) {
	files, err := sim.SyntheticFleetMeters(20, 50, 5)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Parse(files)
	if err != nil {
		t.Fatal(err)
	}
	std, err := scoring.DefaultStandard()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range reg.Enterprises {
		if len(e.Meters) < 50 {
			t.Errorf("%s has %d meters, want at least 50", e.ID, len(e.Meters))
		}
		if !slices.Contains(std.Industries, e.Industry) {
			t.Errorf("%s: industry %q is not graded by the standard (%v)", e.ID, e.Industry, std.Industries)
		}
	}
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	s, err := sim.New(reg, sim.Config{Seed: 3, Start: start, Duration: 2 * time.Hour, Now: fixedNow(start)})
	if err != nil {
		t.Fatal(err)
	}
	ref := newRefIngest(reg, start.Add(12*time.Hour))
	for m := range s.Messages() {
		ref.handle(t, m.Topic, m.Payload)
	}
	checkLedger(t, ref, s.Ledger())
	if _, err := sim.SyntheticFleetMeters(1, 5000, 0); err == nil {
		t.Error("SyntheticFleetMeters with 5000 meters returned no error")
	}
}
