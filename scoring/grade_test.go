package scoring

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// treeStandard builds a standard of qualitative indicators from a compact
// tree: "A:0.5[a1:0.6 a2:0.4] B:0.5[b1*:1]" ("*" marks restrictive).
func treeStandard(t testing.TB, tree string, variant bool) *Standard {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, `schema_version: 1
id: tree
name_zh: 树
name_en: Tree
src: estimate
method: {src: estimate, level_i_requires_nonrestrictive_ii: %v}
data: {src: estimate}
windows: [{name: live, length: 30d, bucket: 1h, src: estimate}]
groups:
`, variant)
	for _, grp := range strings.Fields(strings.NewReplacer("[", " [ ", "]", " ] ").Replace(tree)) {
		switch {
		case grp == "[" || grp == "]":
		case strings.Contains(grp, ":") && grp[0] >= 'A' && grp[0] <= 'Z':
			id, w, _ := strings.Cut(grp, ":")
			fmt.Fprintf(&b, "  - {id: %s, name_zh: 组, name_en: %s, weight: %s, src: estimate, indicators: []}\n", strings.ToLower(id), id, w)
		default:
			id, w, _ := strings.Cut(grp, ":")
			restrictive := strings.HasSuffix(id, "*")
			id = strings.TrimSuffix(id, "*")
			// Append to the last group's list by rewriting "indicators: []".
			s := b.String()
			i := strings.LastIndex(s, "indicators: [")
			j := strings.Index(s[i:], "]") + i
			entry := fmt.Sprintf("{id: %s, name_zh: 指标, name_en: %s, type: qualitative, restrictive: %v, weight: %s, benchmarks: {I: a, II: b, III: c}, src: estimate}", id, id, restrictive, w)
			if s[j-1] != '[' {
				entry = ", " + entry
			}
			b.Reset()
			b.WriteString(s[:j] + entry + s[j:])
		}
	}
	std, err := ParseStandard("tree.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("tree %q:\n%s\n%v", tree, b.String(), err)
	}
	return std
}

// marksOf parses "a1=I a2=III b1=II c=na d=insufficient e=M1:700:I,N1:300:III".
func marksOf(t testing.TB, std *Standard, spec string) []Mark {
	t.Helper()
	marks := make([]Mark, len(std.Indicators))
	for i := range marks {
		marks[i] = Mark{Status: Graded, Level: LevelI, Score: 100}
	}
	for _, f := range strings.Fields(spec) {
		id, v, _ := strings.Cut(f, "=")
		ind, ok := std.Indicator(id)
		if !ok {
			t.Fatalf("no indicator %q", id)
		}
		m := &marks[ind.Index]
		switch {
		case v == "na":
			*m = Mark{Status: NotApplicable}
		case v == "insufficient":
			*m = Mark{Status: Insufficient}
		case strings.Contains(v, ":"):
			*m = Mark{Status: Graded}
			for _, p := range strings.Split(v, ",") {
				parts := strings.Split(p, ":")
				var out float64
				fmt.Sscan(parts[1], &out)
				l, err := ParseLevel(parts[2])
				if err != nil {
					t.Fatal(err)
				}
				m.Parts = append(m.Parts, ProductPart{Output: out, Level: l, Score: LevelScore(l)})
			}
		default:
			l, err := ParseLevel(v)
			if err != nil {
				t.Fatal(err)
			}
			*m = Mark{Status: Graded, Level: l, Score: LevelScore(l)}
		}
	}
	return marks
}

func TestGrade(t *testing.T) {
	const worked = "A:0.5[a1:0.6 a2:0.4] B:0.5[b1*:1]"
	const heavyA = "A:0.9[a1:0.6 a2:0.4] B:0.1[b1*:1]"
	tests := []struct {
		name    string
		tree    string
		variant bool
		marks   string
		policy  InsufficientPolicy
		wantY   [3]float64
		want    Level
		capped  string
	}{
		{name: "worked example §7.1: cumulative membership gives Level III", tree: worked,
			marks: "a1=I a2=III b1=II", wantY: [3]float64{30, 80, 100}, want: LevelIII},
		{name: "all at Level I", tree: worked, marks: "", wantY: [3]float64{100, 100, 100}, want: LevelI},
		{name: "restrictive at II caps Level I to II", tree: heavyA,
			marks: "b1=II", wantY: [3]float64{90, 100, 100}, want: LevelII, capped: "restrictive b1 at II"},
		{name: "restrictive at III caps to III", tree: heavyA,
			marks: "b1=III", wantY: [3]float64{90, 90, 100}, want: LevelIII, capped: "restrictive b1 at III"},
		{name: "restrictive below III fails Level III", tree: heavyA,
			marks: "b1=below_III", wantY: [3]float64{90, 90, 90}, want: BelowIII},
		{name: "non-restrictive below III fails Level III", tree: worked,
			marks: "a2=below_III", wantY: [3]float64{80, 80, 80}, want: BelowIII},
		{name: "not applicable renormalises its group", tree: worked,
			marks: "a2=na b1=II", wantY: [3]float64{50, 100, 100}, want: LevelII},
		{name: "a group with nothing applicable leaves the index", tree: worked,
			marks: "b1=na", wantY: [3]float64{100, 100, 100}, want: LevelI},
		{name: "nothing applicable is not graded", tree: worked,
			marks: "a1=na a2=na b1=na", want: NoLevel},
		{name: "insufficient data fails under fail", tree: worked, policy: InsufficientFails,
			marks: "a2=insufficient b1=II", wantY: [3]float64{30, 80, 80}, want: BelowIII},
		// Under exclude, Y leaves an insufficient indicator out, but the
		// level is that of it failing when that is worse: with a2 at 0,
		// Y = 30/80/80, below III (Level II if a2 were left out).
		{name: "insufficient data is left out of Y under exclude but counts as failing for the level", tree: worked, policy: InsufficientExcluded,
			marks: "a2=insufficient b1=II", wantY: [3]float64{50, 100, 100}, want: BelowIII,
			capped: "insufficient: a2 count as failing (Level II if left out)"},
		// With b2 failing, Y_I = 90 + 5 = 95: still Level I, no cap.
		{name: "insufficient data that cannot change the level", tree: "A:0.9[a1:1] B:0.1[b1:0.5 b2:0.5]", policy: InsufficientExcluded,
			marks: "b2=insufficient", wantY: [3]float64{100, 100, 100}, want: LevelI},
		// Left out, b1 would cap the level at III; failing, it leaves
		// Y_III = 50: below III.
		{name: "restrictive without data is below III under exclude", tree: worked, policy: InsufficientExcluded,
			marks: "b1=insufficient", wantY: [3]float64{100, 100, 100}, want: BelowIII, capped: "insufficient: b1 count as failing (Level III if left out)"},
		// Y_I = 90 >= 85 even with b1 failing, yet a restrictive
		// indicator without data blocks Levels I and II; Y_III = 90.
		{name: "restrictive without data blocks Levels I and II under exclude", tree: heavyA, policy: InsufficientExcluded,
			marks: "b1=insufficient", wantY: [3]float64{100, 100, 100}, want: BelowIII, capped: "insufficient: b1 count as failing (Level III if left out)"},
		{name: "restrictive without data blocks Levels I and II under fail", tree: heavyA, policy: InsufficientFails,
			marks: "b1=insufficient", wantY: [3]float64{90, 90, 90}, want: BelowIII},
		{name: "multi-product output shares", tree: worked,
			marks: "a1=M1:700:I,N1:300:III", wantY: [3]float64{91, 91, 100}, want: LevelI},
		{name: "multi-product restrictive needs every product", tree: heavyA,
			marks: "b1=M1:900:I,N1:100:II", wantY: [3]float64{99, 100, 100}, want: LevelII, capped: "restrictive b1 at II"},
		{name: "newer variant: non-restrictive must meet II for Level I", tree: "A:1[a1:0.9 a2:0.1]", variant: true,
			marks: "a2=III", wantY: [3]float64{90, 90, 100}, want: LevelII, capped: "non-restrictive a2 at III"},
		{name: "classic rule ignores non-restrictive at III", tree: "A:1[a1:0.9 a2:0.1]",
			marks: "a2=III", wantY: [3]float64{90, 90, 100}, want: LevelI},
		{name: "Y_II = 85 exactly reaches Level II (the method does not need Y_III = 100 for II)", tree: "A:0.85[a1:1] B:0.15[b1:1]",
			marks: "a1=II b1=below_III", wantY: [3]float64{0, 85, 85}, want: LevelII},
		{name: "Y_II = 85 exactly after renormalisation", tree: "A:1[a1:0.34 a2:0.06 a3:0.6]",
			marks: "a1=II a2=III a3=na", wantY: [3]float64{0, 85, 100}, want: LevelII},
		{name: "Y_II just below 85 after renormalisation", tree: "A:1[a1:0.3399 a2:0.0601 a3:0.6]",
			marks: "a1=II a2=III a3=na", wantY: [3]float64{0, 84.975, 100}, want: LevelIII},
		{name: "Y_III = 100 exactly with awkward weights", tree: "A:0.1[a1:0.3 a2:0.3 a3:0.4] B:0.2[b1:1] C:0.7[c1:0.7 c2:0.2 c3:0.1]",
			marks: "a1=III a2=III a3=na b1=III c1=III c2=II c3=I", wantY: [3]float64{7, 21, 100}, want: LevelIII},
		{name: "Y_III one indicator short is below III", tree: "A:0.1[a1:0.3 a2:0.3 a3:0.4] B:0.2[b1:1] C:0.7[c1:0.7 c2:0.2 c3:0.1]",
			marks: "a1=III a2=below_III a3=na b1=III c1=III c2=II c3=I", wantY: [3]float64{7, 21, 100 - 10*3.0/6}, want: BelowIII},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			std := treeStandard(t, tt.tree, tt.variant)
			if tt.policy == "" {
				tt.policy = InsufficientExcluded
			}
			g := std.Grade(marksOf(t, std, tt.marks), DataPolicy{tt.policy, tt.policy})
			for k := range g.Y {
				if math.Abs(g.Y[k]-tt.wantY[k]) > 1e-9 {
					t.Errorf("Y_%s: got %v, want %v", gradedLevels[k], g.Y[k], tt.wantY[k])
				}
			}
			if g.Level != tt.want {
				t.Errorf("level: got %q, want %q", g.Level, tt.want)
			}
			if g.Capped != tt.capped {
				t.Errorf("capped: got %q, want %q", g.Capped, tt.capped)
			}
			if g.Level != NoLevel {
				var sum float64
				for _, w := range g.Weights {
					sum += w
				}
				if math.Abs(sum-1) > 1e-12 {
					t.Errorf("effective weights: got sum %v, want 1", sum)
				}
			}
		})
	}
}

// TestGradeExclusiveMembershipBug guards against the bug found in public
// code: with exclusive membership, the §7.1 example reads Y_III = 20.
func TestGradeExclusiveMembershipBug(t *testing.T) {
	std := treeStandard(t, "A:0.5[a1:0.6 a2:0.4] B:0.5[b1*:1]", false)
	g := std.Grade(marksOf(t, std, "a1=I a2=III b1=II"), DataPolicy{InsufficientExcluded, InsufficientExcluded})
	if g.Y[2] != 100 {
		t.Errorf("Y_III: got %v, want exactly 100", g.Y[2])
	}
}

func TestGradeShippedStandardExactBoundary(t *testing.T) {
	std := mustStandard(t, "standards/auto-manufacturing.yaml")
	marks := make([]Mark, len(std.Indicators))
	for i := range marks {
		marks[i] = Mark{Status: Graded, Level: LevelIII, Score: 60}
	}
	g := std.Grade(marks, DataPolicy{InsufficientExcluded, InsufficientExcluded})
	if g.Y[2] != 100 || g.Level != LevelIII {
		t.Errorf("all at III: got Y_III=%v level %q, want exactly 100 and III", g.Y[2], g.Level)
	}
	ind, _ := std.Indicator("nev_output_share") // product 0.05 x 0.5
	marks[ind.Index] = Mark{Status: Graded, Level: BelowIII}
	g = std.Grade(marks, DataPolicy{InsufficientExcluded, InsufficientExcluded})
	if g.Y[2] != 97.5 || g.Level != BelowIII {
		t.Errorf("one below III: got Y_III=%v level %q, want 97.5 and below III", g.Y[2], g.Level)
	}
}

func TestIndicatorScore(t *testing.T) {
	lower := &Indicator{Direction: LowerBetter, Benchmarks: [3]float64{120, 160, 220}}
	higher := &Indicator{Direction: HigherBetter, Benchmarks: [3]float64{95, 90, 85}}
	gate := &Indicator{Direction: HigherBetter, Benchmarks: [3]float64{100, 100, 100}}
	tests := []struct {
		name  string
		ind   *Indicator
		v     float64
		level Level
		score float64
	}{
		{"lower: better than I", lower, 100, LevelI, 100},
		{"lower: at I", lower, 120, LevelI, 100},
		{"lower: between I and II", lower, 140, LevelII, 92.5},
		{"lower: at II", lower, 160, LevelII, 85},
		{"lower: between II and III", lower, 190, LevelIII, 72.5},
		{"lower: at III", lower, 220, LevelIII, 60},
		{"lower: float noise still meets III", lower, 220 * (1 + 1e-12), LevelIII, 60},
		{"lower: below III", lower, 275, BelowIII, 30},
		{"lower: 1.5 x III", lower, 330, BelowIII, 0},
		{"lower: far off", lower, 1000, BelowIII, 0},
		{"higher: at I", higher, 95, LevelI, 100},
		{"higher: between I and II", higher, 92.5, LevelII, 92.5},
		{"higher: between II and III", higher, 87.5, LevelIII, 72.5},
		{"higher: below III", higher, 63.75, BelowIII, 30},
		{"higher: half of III", higher, 42.5, BelowIII, 0},
		{"gate: 100 %", gate, 100, LevelI, 100},
		{"gate: 99 %", gate, 99, BelowIII, 58.8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ind.LevelOf(tt.v); got != tt.level {
				t.Errorf("level: got %q, want %q", got, tt.level)
			}
			if got := tt.ind.IndicatorScore(tt.v); math.Abs(got-tt.score) > 1e-9 {
				t.Errorf("score: got %v, want %v", got, tt.score)
			}
		})
	}
}

// TestIndicatorScoreConsistent checks that the score never disagrees with
// the level: >= 85 exactly when the value meets II, and so on.
func TestIndicatorScoreConsistent(t *testing.T) {
	for _, ind := range []*Indicator{
		{Direction: LowerBetter, Benchmarks: [3]float64{120, 160, 220}},
		{Direction: LowerBetter, Benchmarks: [3]float64{5, 5, 8.5}},
		{Direction: HigherBetter, Benchmarks: [3]float64{95, 90, 85}},
		{Direction: HigherBetter, Benchmarks: [3]float64{30, 15, 5}},
	} {
		for v := 0.0; v < 400; v += 0.25 {
			lv, s := ind.LevelOf(v), ind.IndicatorScore(v)
			floor := map[Level]float64{LevelI: 100, LevelII: 85, LevelIII: 60, BelowIII: 0}[lv]
			ceil := map[Level]float64{LevelI: 100, LevelII: 100, LevelIII: 85, BelowIII: 60}[lv]
			if s < floor || s > ceil || (lv != LevelI && s == ceil) {
				t.Fatalf("%v %v: value %v: got level %q score %v, want score in [%v, %v)", ind.Direction, ind.Benchmarks, v, lv, s, floor, ceil)
			}
		}
	}
}
