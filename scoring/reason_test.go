package scoring

import (
	"slices"
	"testing"
)

// TestReasons: the facts behind every condition that holds on an
// assessment, whichever rule uses them, in the order the pages show
// them: the level, the restrictive indicators, exceedances, a shortage
// of data.
func TestReasons(t *testing.T) {
	std, err := DefaultStandard()
	if err != nil {
		t.Fatal(err)
	}
	pol, err := DefaultPolicy(std)
	if err != nil {
		t.Fatal(err)
	}
	var restrictive []*Indicator
	for _, ind := range std.Indicators {
		if ind.Restrictive && ind.Kind != Qualitative {
			restrictive = append(restrictive, ind)
		}
	}
	if len(restrictive) < 2 {
		t.Fatalf("the shipped standard has %d quantitative restrictive indicators, the test needs 2", len(restrictive))
	}
	a := &Assessment{Level: BelowIII, Y: [3]float64{10, 20, 40}, Completeness: pol.MinCompleteness / 2,
		Indicators: make([]IndicatorResult, len(std.Indicators))}
	for i := range a.Indicators {
		a.Indicators[i] = IndicatorResult{Status: Graded, Level: LevelI}
	}
	a.Indicators[restrictive[0].Index] = IndicatorResult{Status: Graded, Level: BelowIII, Value: 99}
	a.Indicators[restrictive[1].Index] = IndicatorResult{Status: Insufficient, Reason: "meter silent"}

	var got []string
	for _, r := range Reasons(std, pol, a) {
		got = append(got, string(r.Kind)+":"+r.Indicator)
	}
	want := []string{"below_iii:", "restrictive_fail:" + restrictive[0].ID, "restrictive_below_ii:" + restrictive[0].ID,
		"restrictive_missing:" + restrictive[1].ID, "insufficient_data:"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
