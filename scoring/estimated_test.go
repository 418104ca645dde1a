package scoring

import (
	"slices"
	"testing"
)

// Estimated lists the indicators whose src is "estimate": in the shipped
// standard every one except cp_audit (S9) and the unverified
// recyclability indicator; none once their sources are given.
func TestEstimated(t *testing.T) {
	std := mustStandard(t, "standards/auto-manufacturing.yaml")
	est := std.Estimated()
	if len(est) != len(std.Indicators)-2 || !slices.Contains(est, "voc_per_m2") || slices.Contains(est, "cp_audit") ||
		slices.Contains(est, "recyclability_and_restricted_substances") {
		t.Errorf("shipped: got %d of %d: %v", len(est), len(std.Indicators), est)
	}
	sourced := treeStandard(t, "A:1[a1:1]", false)
	sourced.Indicators[0].Src = []string{"S1"}
	if est := sourced.Estimated(); len(est) != 0 {
		t.Errorf("sourced: got %v, want none", est)
	}
	if est := treeStandard(t, "A:1[a1:1]", false).Estimated(); !slices.Equal(est, []string{"a1"}) {
		t.Errorf("tree: got %v, want [a1]", est)
	}
}
