package web

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/cleanprod/cleanprod/scoring"
)

// entII is the fixture's Level II plant (the simulator's "average"
// profile), whose restrictive voc_per_m2 is at Level II.
const entII = "cq-lj-jiahe-motors"

// TestEnterpriseNextLevel reads "what gets us to the next level" from the
// enterprise detail: restrictive steps first, then the others by gain,
// each with the target level's benchmark, and the fewest steps.
func TestEnterpriseNextLevel(t *testing.T) {
	f := newFixture(t)
	d := decode[detailJSON](t, f.do(t, "GET", "/api/v1/enterprises/"+entII, supervisorToken, ""))
	n := d.NextLevel
	if n == nil {
		t.Fatal("no next_level")
	}
	if n.Window != f.pol.Window || deref(n.Level) != "II" || deref(n.Target) != "I" || !n.Reachable || n.Reason != "" {
		t.Fatalf("got window %s level %v target %v reachable %v (%s), want live, II to I, reachable", n.Window, deref(n.Level), deref(n.Target), n.Reachable, n.Reason)
	}
	if len(n.Steps) < 3 {
		t.Fatalf("got %d steps", len(n.Steps))
	}
	// By hand from the standard: voc_per_m2* (0.25 x 0.35) must reach its
	// Level I benchmark, at most 20 g/m2, adding 8.75 points to Y_I; then
	// the heaviest non-restrictive ones at II or worse: energy per vehicle
	// (0.25 x 0.3: 7.5, at most 120 kgce/vehicle) and CO2 per vehicle
	// (0.1 x 0.6: 6, at most 300 kgCO2/vehicle).
	want := []struct {
		id, unit, direction string
		needed, gain        float64
		restrictive         bool
	}{
		{"voc_per_m2", "g/m2", "lower_better", 20, 8.75, true},
		{"energy_per_vehicle", "kgce/vehicle", "lower_better", 120, 7.5, false},
		{"co2_per_vehicle", "kgCO2/vehicle", "lower_better", 300, 6, false},
	}
	for i, w := range want {
		s := n.Steps[i]
		if s.Indicator != w.id || s.Unit != w.unit || s.Direction != w.direction || deref(s.Target) != "I" || s.Needed == nil || *s.Needed != w.needed ||
			math.Abs(s.Gain-w.gain) > 1e-6 || s.Restrictive != w.restrictive || s.Mandatory != w.restrictive || s.Status != "graded" ||
			s.Value == nil || s.Level == nil || len(s.Solutions) == 0 || s.NameEN == "" {
			t.Errorf("step %d: got %+v, want %s needing %v %s for +%v", i, s, w.id, w.needed, w.unit, w.gain)
		}
	}
	sum, restrictiveDone := n.Y, false
	for i, s := range n.Steps {
		ind, ok := f.std.Indicator(s.Indicator)
		if !ok {
			t.Fatalf("step %d: unknown indicator %s", i, s.Indicator)
		}
		if s.Restrictive && restrictiveDone {
			t.Errorf("step %d: restrictive %s after a non-restrictive step", i, s.Indicator)
		}
		restrictiveDone = restrictiveDone || !s.Restrictive
		if i > 0 && !s.Restrictive && !n.Steps[i-1].Restrictive && s.Gain > n.Steps[i-1].Gain {
			t.Errorf("step %d: gain %v after %v, want largest first", i, s.Gain, n.Steps[i-1].Gain)
		}
		if ind.Kind == scoring.Quantitative && (s.Needed == nil || *s.Needed != ind.Benchmark(scoring.LevelI)) {
			t.Errorf("%s: needed %v, want the Level I benchmark %v", s.Indicator, s.Needed, ind.Benchmark(scoring.LevelI))
		}
		if ind.Kind == scoring.Qualitative && s.NeededText != ind.Descriptions[0] {
			t.Errorf("%s: needed %q, want the Level I description", s.Indicator, s.NeededText)
		}
		sum += s.Gain
	}
	// The steps reach 85, and one fewer would not: the last is the smallest.
	last := n.Steps[len(n.Steps)-1]
	if math.Abs(sum-n.YAfter) > 1e-4 || n.YAfter < 85 || n.YAfter-last.Gain >= 85 {
		t.Errorf("Y_I %v + gains = %v, after %v (last gain %v): want >= 85 with the fewest steps", n.Y, sum, n.YAfter, last.Gain)
	}

	// At Level I there is no next level.
	top := decode[detailJSON](t, f.do(t, "GET", "/api/v1/enterprises/"+entA, enterpriseToken, ""))
	if top.NextLevel == nil || top.NextLevel.Target != nil || top.NextLevel.Reason != "Level I is the top level" || len(top.NextLevel.Steps) != 0 {
		t.Errorf("%s: got %+v, want no target at Level I", entA, top.NextLevel)
	}
	// Below III, every indicator below III is a step; one without a valid
	// declaration makes Level III unreachable until it is declared.
	low := decode[detailJSON](t, f.do(t, "GET", "/api/v1/enterprises/"+entB, supervisorToken, ""))
	if n := low.NextLevel; n == nil || deref(n.Target) != "III" || n.Reachable || !strings.Contains(n.Reason, "needs data first") {
		t.Errorf("%s: got %+v, want Level III not reachable until data", entB, low.NextLevel)
	}

	// The report shows the same plan, as "To reach Level I".
	w := f.do(t, "GET", "/api/v1/enterprises/"+entII+"/report", supervisorToken, "")
	for _, s := range []string{"To reach Level I", "≤ 20 g/m²", "+8.75", "晋级 next level"} {
		if !bytes.Contains(w.Body.Bytes(), []byte(s)) {
			t.Errorf("the report lacks %q", s)
		}
	}
}
