package scoring

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadPolicyBad(t *testing.T) {
	std := mustStandard(t, "standards/auto-manufacturing.yaml")
	_, err := LoadPolicy("testdata/policy/rules.bad.yaml", std)
	if err == nil {
		t.Fatal("got no error, want one")
	}
	for _, want := range []string{
		`rules.bad.yaml:5: baseline "yearly": not a window of standard auto-manufacturing (it has live, official)`,
		`rules.bad.yaml:6: insufficient_data.metered "ignore": want fail or exclude`,
		`rules.bad.yaml:7: min_completeness 1.2: want a fraction in [0, 1]`,
		`rules.bad.yaml:8: last_audit_indicator "energy_per_vehicle": want a declared indicator`,
		`rules.bad.yaml:11: code "green" is listed twice`,
		`rules.bad.yaml:11: code "green": audit_interval_months 0: want 1-120`,
		`rules.bad.yaml:13: rule 1: code "red" is not listed under codes`,
		`rules.bad.yaml:13: unknown condition "exceedence"`,
		`the last rule must include "always"`,
		`rules.bad.yaml:16: hysteresis.upgrade.for: duration "30 days"`,
		`rules.bad.yaml:19: worsening: want fraction > 0 and 0 <= clear_fraction <= fraction`,
		`regressions.stale.after is required`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got error:\n%v\nwant it to contain %q", err, want)
		}
	}
}

func TestLoadLibrary(t *testing.T) {
	std := mustStandard(t, "standards/auto-manufacturing.yaml")
	lib, err := LoadLibrary("solutions", std)
	if err != nil {
		t.Fatalf("shipped library: got error:\n%v\nwant none", err)
	}
	for _, id := range []string{"dry_overspray_separation", "rto_heat_recovery", "counter_current_rinsing", "waterborne_paint", "uf_ro_ecoat_recovery", "rooftop_pv", "compressed_air_leaks", "heat_pumps"} {
		if !strings.Contains(strings.Join(solutionIDs(lib), " "), id) {
			t.Errorf("shipped library: got no %s, want it", id)
		}
	}
	_, err = LoadLibrary(filepath.Join("testdata", "solutions"), std)
	if err == nil {
		t.Fatal("bad library: got no error, want one")
	}
	for _, want := range []string{
		`effects.bad.yaml:5: solution "worse_energy": cost "cheap": want no, low, medium or high`,
		`effects.bad.yaml:7: solution "worse_energy": the effect on energy_per_vehicle (lower_better) makes it worse`,
		`effects.bad.yaml:8: solution "worse_energy": cp_audit is qualitative: give to_level`,
		`effects.bad.yaml:9: solution "worse_energy": unknown indicator "no_such_indicator"`,
		`effects.bad.yaml:10: solution "worse_energy": water_reuse_rate is quantitative: give either relative or absolute`,
		`effects.bad.yaml:12: solution "worse_energy" is already defined`,
		`solution "worse_energy": no effects`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got error:\n%v\nwant it to contain %q", err, want)
		}
	}
}

func solutionIDs(lib *Library) []string {
	var ids []string
	for _, s := range lib.Solutions {
		ids = append(ids, s.ID)
	}
	return ids
}

// TestNotGradedIsNeverGreen: an enterprise below the policy's minimum
// completeness is not graded, and the shipped policy gives it yellow,
// whatever else holds, or red when a limit is exceeded or a restrictive
// indicator fails; never green. A policy that could is refused.
func TestNotGradedIsNeverGreen(t *testing.T) {
	std := mustStandard(t, "standards/auto-manufacturing.yaml")
	pol, err := LoadPolicy("policy/default.yaml", std)
	if err != nil {
		t.Fatal(err)
	}
	// Every condition that can hold without a level, in every combination.
	var free []Condition
	for _, c := range conditions {
		if c != CondNotGraded && c != CondAlways && holdsWithoutLevel(c) {
			free = append(free, c)
		}
	}
	for mask := range 1 << len(free) {
		holds := map[Condition]bool{CondNotGraded: true, CondInsufficientData: true, CondAlways: true}
		var on []Condition
		for i, c := range free {
			if mask&(1<<i) != 0 {
				holds[c] = true
				on = append(on, c)
			}
		}
		want := Code("yellow")
		if holds[CondRestrictiveFail] || holds[CondExceedance] {
			want = "red"
		}
		if got, _ := pol.Classify(holds); got != want {
			t.Errorf("not graded with %v: got %s, want %s", on, got, want)
		}
	}

	_, err = LoadPolicy("testdata/policy/green-ungraded.bad.yaml", std)
	want := "green-ungraded.bad.yaml:15: rule 2 gives green, the best code, to an enterprise that is not graded"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got error %v, want it to contain %q", err, want)
	}
}
