package registry

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds Parse one or two registry files. Invariant: it returns
// an error naming a file, or a registry every part of which is usable:
// valid ids, reachable through the look-ups, and meters whose conversion
// factor, rollover, resolution, max_rate and replacements are finite
// numbers of the right sign (ingest multiplies every reading by Factor and
// subtracts registers from rollovers and replacement values).
//
// Without -fuzz it runs the seeds: every file under testdata and the
// shipped gateway-config.
func FuzzParse(f *testing.F) {
	var seeds [][]byte
	for _, pattern := range []string{"testdata/*/*.yaml", "../gateway-config/*.yaml", "../ingest/testdata/registry/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			seeds = append(seeds, data)
		}
	}
	if len(seeds) == 0 {
		f.Fatal("no seed files")
	}
	for i, s := range seeds {
		f.Add(s, []byte(nil))
		f.Add(s, seeds[(i+1)%len(seeds)])
	}
	// Numbers fine on their own whose products are not (found by FuzzParse).
	for _, m := range []string{"unit: MWh, kind: counter, scale: 1e307", "unit: MWh, kind: counter, rollover: 1e307", "unit: MWh, kind: counter, rollover: 9.99e306, resolution: 1e303", "unit: Wh, kind: counter, scale: 1e-322"} {
		f.Add([]byte("enterprise: {id: e, name: E}\ngateways:\n  - id: g\n    meters:\n      - {id: m, quantity: electricity, "+m+"}\n"), []byte(nil))
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		files := map[string][]byte{"a.yaml": a}
		if len(b) > 0 { // the fuzzing engine passes nil as empty
			files["b.yaml"] = b
		}
		r, err := Parse(files)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "a.yaml") && !strings.HasPrefix(line, "b.yaml") {
					t.Fatalf("error line %q names no file (in %q)", line, err)
				}
			}
			return
		}
		checkRegistry(t, r)
	})
}

func checkRegistry(t *testing.T, r *Registry) {
	t.Helper()
	if len(r.Enterprises) == 0 {
		t.Fatal("a registry without enterprises")
	}
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	for _, e := range r.Enterprises {
		if !ValidID(e.ID) || e.Name == "" || len(e.Gateways) == 0 {
			t.Fatalf("enterprise %q: name %q, %d gateways", e.ID, e.Name, len(e.Gateways))
		}
		if got, ok := r.Enterprise(e.ID); !ok || got != e {
			t.Fatalf("enterprise %q is not found by id", e.ID)
		}
		for _, g := range e.Gateways {
			if !ValidID(g.ID) || g.Enterprise != e || len(g.Meters) == 0 {
				t.Fatalf("gateway %q of %q: %d meters", g.ID, e.ID, len(g.Meters))
			}
			if got, ok := r.Gateway(e.ID, g.ID); !ok || got != g {
				t.Fatalf("gateway %s/%s is not found by id", e.ID, g.ID)
			}
			for _, m := range g.Meters {
				if got, ok := g.Meter(m.ID); !ok || got != m || m.Gateway != g || m.Enterprise != e {
					t.Fatalf("meter %s of %s/%s is not found on its gateway", m.ID, e.ID, g.ID)
				}
				if !ValidID(m.ID) || m.Quantity == nil {
					t.Fatalf("meter %q: quantity %v", m.ID, m.Quantity)
				}
				switch m.Kind {
				case Counter, Delta, Gauge:
				default:
					t.Fatalf("meter %s: kind %q", m.ID, m.Kind)
				}
				if !(m.Factor > 0) || !finite(m.Factor) || !(m.Scale > 0) || !finite(m.Scale) {
					t.Fatalf("meter %s: scale %g, factor %g: want positive finite numbers", m.ID, m.Scale, m.Factor)
				}
				if !(m.Rollover >= 0) || !finite(m.Rollover) || !(m.MaxRate >= 0) || !finite(m.MaxRate) {
					t.Fatalf("meter %s: rollover %g, max_rate %g: want finite, not negative", m.ID, m.Rollover, m.MaxRate)
				}
				if (m.Rollover > 0) != (m.Resolution > 0) || !finite(m.Resolution) || m.Resolution > m.Rollover {
					t.Fatalf("meter %s: rollover %g, resolution %g: want both or neither, finite, the resolution not above the rollover", m.ID, m.Rollover, m.Resolution)
				}
				for i, rep := range m.Replacements {
					if !(rep.OldFinal >= 0) || !finite(rep.OldFinal) || !(rep.NewInitial >= 0) || !finite(rep.NewInitial) {
						t.Fatalf("meter %s: replacement %d: old_final %g, new_initial %g: want finite, not negative", m.ID, i, rep.OldFinal, rep.NewInitial)
					}
					if i > 0 && !rep.At.After(m.Replacements[i-1].At) {
						t.Fatalf("meter %s: replacements out of order", m.ID)
					}
				}
				if m.FlowMeter != nil && m.FlowMeter.Enterprise != e {
					t.Fatalf("meter %s: flow meter of another enterprise", m.ID)
				}
				found := false
				for _, h := range r.MetersNamed(m.ID) {
					found = found || h == m
				}
				if !found {
					t.Fatalf("meter %s is missing from MetersNamed", m.ID)
				}
			}
		}
	}
}

// Numbers each within its own bounds whose canonical values are not:
// Parse accepted them, and ingest then stored +Inf, 0 or NaN.
func TestParseOutOfRangeProducts(t *testing.T) {
	for _, tt := range []struct{ meter, want string }{
		{"{id: m, quantity: electricity, unit: MWh, kind: counter, scale: 1e307}", `a.yaml:5: meter "m": scale 1e+307 with unit MWh gives a factor of +Inf`},
		{"{id: m, quantity: electricity, unit: Wh, kind: counter, scale: 1e-322}", `a.yaml:5: meter "m": scale 1e-322 with unit Wh gives a factor of 0`},
		{"{id: m, quantity: electricity, unit: MWh, kind: counter, rollover: 9.99e306, resolution: 1e303}", `a.yaml:5: meter "m": rollover 9.99e+306 MWh with resolution 1e+303 is out of range`},
		{"{id: m, quantity: electricity, unit: kWh, kind: counter, replacements: [{at: 2026-01-01T00:00:00Z, old_final: .nan, new_initial: 1}]}", `a.yaml:5: meter "m": old_final NaN and new_initial 1 must be registers`},
		{"{id: m, quantity: electricity, unit: kWh, kind: counter, replacements: [{at: 2026-01-01T00:00:00Z, old_final: 10, new_initial: -5}]}", `a.yaml:5: meter "m": old_final 10 and new_initial -5 must be registers`},
		{"{id: m, quantity: electricity, unit: MWh, kind: counter, replacements: [{at: 2026-01-01T00:00:00Z, old_final: 1e307, new_initial: 0}]}", `must be registers`},
	} {
		_, err := Parse(map[string][]byte{"a.yaml": []byte("enterprise: {id: e, name: E}\ngateways:\n  - id: g\n    meters:\n      - " + tt.meter + "\n")})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.meter, err, tt.want)
		}
	}
}
