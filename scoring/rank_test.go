package scoring

import (
	"fmt"
	"slices"
	"testing"
)

// snapshotOf builds a snapshot of one window from (enterprise, level,
// score, energy value or NaN-like status) rows.
func snapshotOf(std *Standard, rows []rankRow) *Snapshot {
	s := &Snapshot{Standard: std, results: map[string]*Result{}}
	ind, _ := std.Indicator("energy_per_vehicle")
	for _, r := range rows {
		a := Assessment{Window: "live", Level: r.level, Score: r.score, Indicators: make([]IndicatorResult, len(std.Indicators))}
		ir := &a.Indicators[ind.Index]
		ir.Status, ir.Reason = r.status, r.reason
		if r.status == Graded {
			ir.Value, ir.valued, ir.Level = r.value, true, ind.LevelOf(r.value)
		}
		s.results[r.ent] = &Result{Enterprise: r.ent, Assessments: []Assessment{a}}
	}
	return s
}

type rankRow struct {
	ent    string
	level  Level
	score  float64
	status Status
	value  float64
	reason string
}

func entries(es []RankEntry) string {
	var out []string
	for _, e := range es {
		out = append(out, fmt.Sprintf("%d:%s", e.Rank, e.Enterprise))
	}
	return fmt.Sprint(out)
}

func TestRanking(t *testing.T) {
	std := mustStandard(t, "standards/auto-manufacturing.yaml")
	snap := snapshotOf(std, []rankRow{
		{"a", LevelII, 90, Graded, 140, ""},
		{"b", LevelI, 80, Graded, 118, ""},
		{"c", LevelII, 95, Graded, 140, ""},
		{"d", LevelII, 90, Graded, 150, ""},
		{"e", NoLevel, 0, Insufficient, 0, "vehicles has data in 10% of the window, needs 80%"},
		{"f", BelowIII, 99, NotApplicable, 0, ""},
	})
	tests := []struct {
		name      string
		indicator string
		want      string
		unranked  []string
	}{
		// The level comes first: b at I beats c's higher score at II; a and
		// d tie at II with 90, and f (below III) comes last.
		{"overall", "", "[1:b 2:c 3:a 3:d 5:f]", []string{"e"}},
		// Lower is better; a and c tie at 140; e and f are unranked.
		{"energy per vehicle", "energy_per_vehicle", "[1:b 2:a 2:c 4:d]", []string{"e", "f"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rk Ranking
			if tt.indicator == "" {
				rk = snap.Ranking("live")
			} else {
				var ok bool
				if rk, ok = snap.IndicatorRanking("live", tt.indicator); !ok {
					t.Fatal("unknown indicator")
				}
			}
			if got := entries(rk.Entries); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			var un []string
			for _, e := range rk.Unranked {
				un = append(un, e.Enterprise)
				if e.Reason == "" {
					t.Errorf("unranked %s: got no reason, want one", e.Enterprise)
				}
			}
			if !slices.Equal(un, tt.unranked) {
				t.Errorf("unranked: got %v, want %v", un, tt.unranked)
			}
		})
	}
	// Higher is better for rates.
	hi := snapshotOf(std, nil)
	if _, ok := hi.IndicatorRanking("live", "no_such"); ok {
		t.Errorf("unknown indicator: got ok, want not")
	}
}
