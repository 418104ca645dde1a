package scoring

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Plan answers "what gets us to the next level" for one assessment: the
// smallest set of indicator improvements that makes Standard.Grade give
// the next level, with the value each indicator must reach and what it
// adds to the index.
//
// The next level is II for an enterprise at III, I for one at II, and III
// for one below III or not graded; Level I has none. A step brings one
// indicator to its step target: the next level, or, for Level I under the
// newer variant of the method, Level II for a non-restrictive indicator
// that only has to meet II.
//
// How the set is chosen (method of the 通则 as Grade implements it):
//
//   - Level III needs Y_III = 100: every indicator in the index must meet
//     III, so every one below it is a step.
//   - Levels I and II need every restrictive indicator at that level (and,
//     for Level I under the variant, every graded non-restrictive one at
//     II): those are steps whatever Y is (Mandatory).
//   - Then Y_target >= 85: with the mandatory steps done, bringing one
//     more indicator to the target adds a fixed amount to Y_target (its
//     effective weight x 100, as membership is 0 or 1 and the indicators in
//     the index no longer change), so the fewest indicators that close the
//     gap are the ones with the largest gains. Taking them largest first
//     is therefore exact for the number of indicators, not a heuristic;
//     among equally small sets the plan prefers indicators that already
//     have a graded value over ones that need data first, then the largest
//     gains. Every candidate set is checked with Grade itself, so the
//     exact Y >= 85 rule and the restrictive rules are Grade's own.
//
// Under the Level I variant, an indicator that must reach II anyway and is
// also chosen for Y_I is counted like any other step (its step target is
// then I).
type Plan struct {
	// Level is the assessment's level (NoLevel: not graded).
	Level Level
	// Target is the next level; NoLevel at Level I, the top.
	Target Level
	// Reachable reports whether doing Steps reaches Target on the data the
	// assessment had. When it is false, Reason says why: a step is on an
	// indicator without a graded value (it needs data or a declaration
	// first), no indicator is graded, or the code policy withholds the
	// level. Reason also says when Level I is the top.
	Reachable bool
	Reason    string
	// Y is Y_Target now and After Y_Target once every step is done, in
	// index points (0-100).
	Y, After float64
	// Steps are restrictive indicators first, then the others, each group
	// by gain, largest first.
	Steps []Step
}

// Step is one indicator improvement of a Plan.
type Step struct {
	Indicator   string
	Restrictive bool
	// Mandatory is set when a level condition other than Y >= 85 requires
	// the step (a restrictive indicator, every indicator for Level III,
	// the Level I variant's non-restrictive floor at II); other steps are
	// chosen to lift Y_Target to 85.
	Mandatory bool
	// Status is Graded, or Insufficient when the indicator has no graded
	// value: it must be metered or declared first (Reason says why it is
	// not graded).
	Status Status
	Reason string
	Level  Level // current level (NoLevel unless Graded)
	// Value is the current value of a quantitative indicator when HasValue.
	Value    float64
	HasValue bool
	// Target is the level the indicator must reach.
	Target Level
	// Needed is Target's benchmark of a quantitative indicator, in its
	// unit: the value must be at most Needed (lower_better) or at least
	// Needed (higher_better). NeededText is Target's description of a
	// qualitative indicator (e.g. "yes").
	Needed     float64
	NeededText string
	// Gain is what the step adds to Y_Target (index points, rounded to
	// 1e-6) after the steps before it; the gains add up to After - Y.
	Gain float64
	// Solutions are the library's measures for the indicator, ranked as in
	// LaggingIndicators.
	Solutions []Match
}

// NextLevel plans the smallest set of improvements that takes the
// enterprise of a from its level to the next one (see Plan). lib may be
// nil (no solutions). The data policy a was graded under is read from a
// itself: an indicator with insufficient data carries a weight exactly
// when the policy keeps it in the index. NextLevel does not modify a and
// is safe for concurrent use.
func NextLevel(std *Standard, a *Assessment, lib *Library) Plan {
	p := Plan{Level: a.Level}
	if len(a.Indicators) != len(std.Indicators) {
		p.Reason = "the assessment does not match the standard in force"
		return p
	}
	switch a.Level {
	case LevelI:
		p.Reason = "Level I is the top level"
		return p
	case LevelII:
		p.Target = LevelI
	case LevelIII:
		p.Target = LevelII
	default:
		p.Target = LevelIII
	}
	k := int(p.Target) - 1
	marks, policy := gradeInput(std, a)
	base := std.Grade(marks, policy)
	p.Y = base.Y[k]

	// Mandatory steps.
	stepTo := make([]Level, len(marks)) // NoLevel: not a step
	mandatory := make([]bool, len(marks))
	for _, ind := range std.Indicators {
		m := &marks[ind.Index]
		if m.Status == NotApplicable {
			continue
		}
		meets := func(l Level) bool { return m.Status == Graded && m.meetsAll(l) }
		switch {
		case p.Target == LevelIII:
			if counts(m) && !meets(LevelIII) {
				stepTo[ind.Index] = LevelIII
			}
		case ind.Restrictive:
			if !meets(p.Target) {
				stepTo[ind.Index] = p.Target
			}
		case p.Target == LevelI && std.LevelIRequiresNonRestrictiveII && m.Status == Graded && !meets(LevelII):
			stepTo[ind.Index] = LevelII
		}
		mandatory[ind.Index] = stepTo[ind.Index] != NoLevel
	}
	work := improved(marks, stepTo)
	reaches := func(ms []Mark) bool { return std.Grade(ms, policy).Level.Meets(p.Target) }

	// Y_target >= 85: candidates with their gains after the mandatory steps.
	if !reaches(work) && p.Target != LevelIII {
		type cand struct {
			i    int
			gain float64
			data bool // no graded value yet
		}
		y0 := std.Grade(work, policy).Y[k]
		var cands []cand
		for _, ind := range std.Indicators {
			i := ind.Index
			m := &work[i]
			if stepTo[i] == p.Target || !counts(m) || (m.Status == Graded && m.meetsAll(p.Target)) {
				continue
			}
			one := slices.Clone(work)
			one[i] = Mark{Status: Graded, Level: p.Target, Score: LevelScore(p.Target)}
			cands = append(cands, cand{i: i, gain: gain(std.Grade(one, policy).Y[k], y0), data: marks[i].Status != Graded})
		}
		byGain := func(a, b cand) int {
			if c := cmp.Compare(b.gain, a.gain); c != 0 {
				return c
			}
			return cmp.Compare(a.i, b.i)
		}
		var graded, data []cand
		for _, c := range cands {
			if c.data {
				data = append(data, c)
			} else {
				graded = append(graded, c)
			}
		}
		slices.SortFunc(graded, byGain)
		slices.SortFunc(data, byGain)
		// try takes the g best graded candidates and the d best without data.
		try := func(g, d int) ([]Mark, bool) {
			to := slices.Clone(stepTo)
			for _, c := range graded[:g] {
				to[c.i] = p.Target
			}
			for _, c := range data[:d] {
				to[c.i] = p.Target
			}
			ms := improved(marks, to)
			if !reaches(ms) {
				return nil, false
			}
			copy(stepTo, to)
			return ms, true
		}
		all := slices.Clone(cands)
		slices.SortFunc(all, func(a, b cand) int {
			if c := cmp.Compare(b.gain, a.gain); c != 0 {
				return c
			}
			if a.data != b.data { // graded first on equal gains
				return map[bool]int{false: -1, true: 1}[a.data]
			}
			return cmp.Compare(a.i, b.i)
		})
		// The fewest candidates: largest gains first (exact, see Plan).
		n := -1
		for c := 1; c <= len(all) && n < 0; c++ {
			to := slices.Clone(stepTo)
			for _, x := range all[:c] {
				to[x.i] = p.Target
			}
			if reaches(improved(marks, to)) {
				n = c
			}
		}
		if n < 0 {
			p.Reason = fmt.Sprintf("Y_%s stays below 85 even with every indicator at Level %s", p.Target, p.Target)
			return p
		}
		// Of the sets of n, the one with the fewest steps needing data.
		found := false
		for d := 0; d <= min(n, len(data)) && !found; d++ {
			if n-d <= len(graded) {
				work, found = try(n-d, d)
			}
		}
		if !found { // cannot happen: the greedy set is one of those tried
			p.Reason = fmt.Sprintf("no set of %d improvements reaches Level %s", n, p.Target)
			return p
		}
	}
	final := std.Grade(work, policy)
	p.After = final.Y[k]

	// Steps: restrictive first, then by gain (standalone, from the current
	// marks), then in file order; then the gain of each after the previous.
	type ordered struct {
		i    int
		gain float64
	}
	var order []ordered
	for i, to := range stepTo {
		if to == NoLevel {
			continue
		}
		one := slices.Clone(marks)
		one[i] = Mark{Status: Graded, Level: to, Score: LevelScore(to)}
		order = append(order, ordered{i, gain(std.Grade(one, policy).Y[k], base.Y[k])})
	}
	slices.SortFunc(order, func(a, b ordered) int {
		ra, rb := std.Indicators[a.i].Restrictive, std.Indicators[b.i].Restrictive
		if ra != rb {
			return map[bool]int{true: -1, false: 1}[ra]
		}
		if c := cmp.Compare(b.gain, a.gain); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	cur, y := slices.Clone(marks), base.Y[k]
	var needData []string
	for _, o := range order {
		ind, r, to := std.Indicators[o.i], &a.Indicators[o.i], stepTo[o.i]
		cur[o.i] = Mark{Status: Graded, Level: to, Score: LevelScore(to)}
		ny := std.Grade(cur, policy).Y[k]
		st := Step{Indicator: ind.ID, Restrictive: ind.Restrictive, Mandatory: mandatory[o.i], Status: marks[o.i].Status,
			Target: to, Gain: gain(ny, y)}
		y = ny
		if st.Status == Graded {
			st.Level = r.Level
		} else {
			st.Reason = r.Reason
			why := ind.ID + " has no graded value"
			if r.Reason != "" {
				why += " (" + r.Reason + ")"
			}
			needData = append(needData, why)
		}
		if ind.Kind == Quantitative {
			st.Needed = ind.Benchmark(to)
			st.Value, st.HasValue = r.Value, r.HasValue() || r.Status == Graded
		} else {
			st.NeededText = ind.Descriptions[to-1]
		}
		st.Solutions = lib.matches(ind, r, to)
		p.Steps = append(p.Steps, st)
	}

	switch {
	case a.Level == NoLevel && base.Level != NoLevel:
		p.Reason = "the code policy withholds the level"
		if a.Capped != "" {
			p.Reason = a.Capped
		}
	case final.Level == NoLevel:
		p.Reason = "no indicator has a graded value: meter or declare them first"
	case len(needData) > 0:
		p.Reason = fmt.Sprintf("Level %s needs data first: %s", p.Target, strings.Join(needData, "; "))
	case !final.Level.Meets(p.Target):
		p.Reason = fmt.Sprintf("the improvements do not reach Level %s", p.Target)
	default:
		p.Reachable = true
	}
	return p
}

// gradeInput rebuilds Grade's input from an assessment, with the data
// policy it was graded under: an indicator with insufficient data carries
// a weight exactly when the policy keeps it in the index (fail). An
// unknown status (a point stored by another version) counts as
// insufficient.
func gradeInput(std *Standard, a *Assessment) ([]Mark, DataPolicy) {
	policy := DataPolicy{Metered: InsufficientExcluded, Declared: InsufficientExcluded}
	marks := make([]Mark, len(std.Indicators))
	for i, ind := range std.Indicators {
		r := &a.Indicators[i]
		m := Mark{Status: r.Status, Level: r.Level, Score: r.Score}
		switch r.Status {
		case Graded:
			if m.Level < LevelI || m.Level > BelowIII {
				m = Mark{Status: Insufficient}
			}
		case NotApplicable:
		default:
			m = Mark{Status: Insufficient}
		}
		if m.Status == Insufficient && r.Weight > 0 {
			if ind.Metered() {
				policy.Metered = InsufficientFails
			} else {
				policy.Declared = InsufficientFails
			}
		}
		marks[i] = m
	}
	return marks, policy
}

// gain returns y1 - y0 rounded to 1e-6 points: Grade rounds Y to 1e-9, so
// the plain difference of two indices carries noise that would order
// equal gains at random.
func gain(y1, y0 float64) float64 { return math.Round((y1-y0)*1e6) / 1e6 }

// improved returns marks with each indicator i with to[i] set brought to
// that level.
func improved(marks []Mark, to []Level) []Mark {
	out := slices.Clone(marks)
	for i, l := range to {
		if l != NoLevel {
			out[i] = Mark{Status: Graded, Level: l, Score: LevelScore(l)}
		}
	}
	return out
}

// counts reports whether an indicator weighs on the level: graded, or
// without enough data, which counts as failing for the level whatever the
// data policy (Grade's cap), so that data is a step towards any level.
func counts(m *Mark) bool { return m.Status == Graded || m.Status == Insufficient }
