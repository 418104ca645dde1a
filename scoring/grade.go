package scoring

import (
	"fmt"
	"math"
	"math/big"
	"slices"
	"strings"
)

// The method of the 清洁生产评价指标体系编制通则 (2013 trial), as used by the
// current national indicator systems:
//
//	Y_g(x_ij) = 100 if x_ij meets the level-g benchmark or better, else 0
//	            (cumulative: an indicator at Level I counts for II and III)
//	Y_g = Σ_i w_i Σ_j ω_ij Y_g(x_ij)
//	Level I:   Y_I >= 85 and every restrictive indicator at Level I
//	Level II:  Y_II >= 85 and every restrictive indicator at Level II or better
//	Level III: Y_III = 100
//	otherwise below Level III
//
// Not-applicable indicators are renormalised out of their group
// (ω'_ij = ω_ij / Σ applicable ω_ij); a group with no applicable indicator
// is renormalised out of the index the same way. Weights are integer basis
// points, so Y_III = 100 is an exact test (every applicable indicator meets
// Level III) and Y >= 85 is decided exactly too (with rational arithmetic
// when the floating-point value is within 1e-6 of 85).

// InsufficientPolicy says what an indicator with insufficient data means
// for the level.
type InsufficientPolicy string

// Insufficient-data policies.
const (
	// InsufficientFails scores an indicator without enough data like one
	// below Level III: membership 0 at every level, continuous score 0.
	InsufficientFails InsufficientPolicy = "fail"
	// InsufficientExcluded renormalises it out of its group like a
	// not-applicable indicator for Y, the score and the weights. The level
	// is never better than with the indicator failing (see Standard.Grade),
	// and a restrictive indicator without data never shows that it meets
	// Level I or II. Pair it with a data-completeness rule in the code
	// policy so that a poorly metered enterprise is not graded at all.
	InsufficientExcluded InsufficientPolicy = "exclude"
)

// DataPolicy says what insufficient data means for metered indicators
// (meters silent, too few readings) and for declared ones (no valid
// declaration: the enterprise did not declare, or its evidence expired).
type DataPolicy struct {
	Metered  InsufficientPolicy
	Declared InsufficientPolicy
}

func (p DataPolicy) of(ind *Indicator) InsufficientPolicy {
	if ind.Metered() {
		return p.Metered
	}
	return p.Declared
}

// applicable reports whether m takes part in the index under policy.
func applicable(m *Mark, policy InsufficientPolicy) bool {
	return m.Status == Graded || (m.Status == Insufficient && policy == InsufficientFails)
}

// Mark is the input of Grade for one indicator.
type Mark struct {
	Status Status
	Level  Level   // Graded only
	Score  float64 // Graded only: continuous 0-100 (IndicatorScore)
	// Parts, when set, weight sub-results by output share (the method's
	// multi-product rule: a plant making M1 cars and N1 vans against
	// separate benchmarks); Level and Score are then ignored.
	Parts []ProductPart
}

// ProductPart is one product's result within an indicator.
type ProductPart struct {
	Output float64 // e.g. vehicles of this product in the window
	Level  Level
	Score  float64
}

// meets returns the membership of m in level g as a fraction in [0, 1].
func (m *Mark) meets(g Level) float64 {
	if len(m.Parts) == 0 {
		if m.Level.Meets(g) {
			return 1
		}
		return 0
	}
	var in, total float64
	for _, p := range m.Parts {
		total += p.Output
		if p.Level.Meets(g) {
			in += p.Output
		}
	}
	if total <= 0 {
		return 0
	}
	return in / total
}

// meetsAll reports whether m meets g entirely (every part).
func (m *Mark) meetsAll(g Level) bool {
	if len(m.Parts) == 0 {
		return m.Level.Meets(g)
	}
	total := 0.0
	for _, p := range m.Parts {
		if p.Output > 0 && !p.Level.Meets(g) {
			return false
		}
		total += p.Output
	}
	return total > 0
}

func (m *Mark) score() float64 {
	if len(m.Parts) == 0 {
		return m.Score
	}
	var s, total float64
	for _, p := range m.Parts {
		s += p.Output * p.Score
		total += p.Output
	}
	if total <= 0 {
		return 0
	}
	return s / total
}

// Grade is the result of grading one enterprise over one window.
type Grade struct {
	// Y holds Y_I, Y_II and Y_III (0-100, rounded to 1e-9 for display; the
	// level is decided exactly).
	Y     [3]float64
	Level Level // NoLevel when no indicator is applicable
	// Score is the continuous 0-100 score that orders enterprises within a
	// level: the same weighted sum as Y_g with each indicator's membership
	// replaced by its continuous score (IndicatorScore).
	Score float64
	// Weights are each indicator's effective share of the index after
	// renormalisation (0 for those left out); they sum to 1.
	Weights []float64
	// Restrictive is the worst level among applicable restrictive
	// indicators (NoLevel if one has insufficient data, or there are none).
	Restrictive Level
	// RestrictiveMissing reports a restrictive indicator without data.
	RestrictiveMissing bool
	// Capped explains why the level is below what Y alone would give, e.g.
	// "restrictive voc_per_m2 at II", or "insufficient: energy_per_vehicle
	// count as failing (Level II if left out)".
	Capped string
}

// Grade applies the method to one mark per indicator (indexed like
// s.Indicators).
//
// Missing data never improves the level: when the policy leaves
// insufficient indicators out of the index, the level is also computed
// with every insufficient indicator failing (membership 0 at every level,
// its weight kept), and the worse of the two levels is the result; Capped
// then names the indicators that count as failing. Y, Score and Weights
// stay those of the policy (the index over the indicators with data), so
// that enterprises are still ordered by what was measured.
func (s *Standard) Grade(marks []Mark, policy DataPolicy) Grade {
	if len(marks) != len(s.Indicators) {
		panic(fmt.Sprintf("scoring: Grade got %d marks for %d indicators", len(marks), len(s.Indicators)))
	}
	g := s.grade(marks, policy, true)
	if g.Level == NoLevel {
		return g
	}
	leftOut := func(ind *Indicator) bool { // an insufficient indicator the policy leaves out
		return marks[ind.Index].Status == Insufficient && policy.of(ind) == InsufficientExcluded
	}
	if !slices.ContainsFunc(s.Indicators, leftOut) {
		return g
	}
	failing := s.grade(marks, DataPolicy{Metered: InsufficientFails, Declared: InsufficientFails}, false)
	if failing.Level > g.Level { // both graded: a larger level is worse
		var ids []string
		for _, ind := range s.Indicators {
			if leftOut(ind) {
				ids = append(ids, ind.ID)
			}
		}
		g.Capped = fmt.Sprintf("insufficient: %s count as failing (%s if left out)", strings.Join(ids, ", "), levelText(g.Level))
		g.Level = failing.Level
	}
	return g
}

func levelText(l Level) string {
	if l == BelowIII {
		return "below Level III"
	}
	return "Level " + l.String()
}

// grade applies the method under policy, without the cap of Grade; it
// sets Weights only if weights.
func (s *Standard) grade(marks []Mark, policy DataPolicy, weights bool) Grade {
	g := Grade{}
	if weights {
		g.Weights = make([]float64, len(marks))
	}
	type groupSum struct {
		appl int64      // Σ applicable ω_ij, basis points
		in   [3]float64 // Σ ω_ij * membership at I, II, III
		all3 bool       // every applicable indicator meets III entirely
		sc   float64    // Σ ω_ij * score
	}
	sums := make([]groupSum, len(s.Groups))
	var topW int64
	restrictiveOK := [3]bool{true, true, true} // every restrictive meets I / II / III
	nonRestrictiveII := true
	var capReason [2]string
	worst := NoLevel
	for gi, grp := range s.Groups {
		gs := &sums[gi]
		gs.all3 = true
		for _, ind := range grp.Indicators {
			m := &marks[ind.Index]
			inIndex := applicable(m, policy.of(ind))
			if ind.Restrictive && m.Status != NotApplicable {
				for k, lv := range gradedLevels {
					if m.Status != Graded || !m.meetsAll(lv) {
						if restrictiveOK[k] && k < 2 {
							capReason[k] = fmt.Sprintf("restrictive %s %s", ind.ID, describe(m))
						}
						restrictiveOK[k] = false
					}
				}
				if m.Status == Graded {
					lv := m.Level
					if len(m.Parts) > 0 {
						lv = worstPart(m.Parts)
					}
					if worst == NoLevel || lv > worst {
						worst = lv
					}
				} else {
					g.RestrictiveMissing = true
				}
			}
			if !ind.Restrictive && m.Status == Graded && !m.meetsAll(LevelII) {
				if nonRestrictiveII {
					capReason[0] = fmt.Sprintf("non-restrictive %s %s", ind.ID, describe(m))
				}
				nonRestrictiveII = false
			}
			if !inIndex {
				continue
			}
			gs.appl += ind.weightBP
			w := float64(ind.weightBP)
			if m.Status == Graded {
				for k, lv := range gradedLevels {
					gs.in[k] += w * m.meets(lv)
				}
				gs.sc += w * m.score()
				gs.all3 = gs.all3 && m.meetsAll(LevelIII)
			} else {
				gs.all3 = false
			}
		}
		if gs.appl > 0 {
			topW += grp.weightBP
		}
	}
	if !g.RestrictiveMissing {
		g.Restrictive = worst
	}
	if topW == 0 {
		return g
	}
	all3 := true
	for gi, grp := range s.Groups {
		gs := &sums[gi]
		if gs.appl == 0 {
			continue
		}
		share := float64(grp.weightBP) / float64(topW)
		for k := range gradedLevels {
			g.Y[k] += 100 * share * gs.in[k] / float64(gs.appl)
		}
		g.Score += share * gs.sc / float64(gs.appl)
		all3 = all3 && gs.all3
		for _, ind := range grp.Indicators {
			if weights && applicable(&marks[ind.Index], policy.of(ind)) {
				g.Weights[ind.Index] = share * float64(ind.weightBP) / float64(gs.appl)
			}
		}
	}
	for k := range g.Y {
		g.Y[k] = math.Round(g.Y[k]*1e9) / 1e9
	}
	g.Score = math.Round(g.Score*1e9) / 1e9
	if all3 {
		g.Y[2] = 100 // exact: every applicable indicator meets Level III
	} else if g.Y[2] >= 100 {
		g.Y[2] = math.Nextafter(100, 0)
	}
	reach := func(k int) bool { return s.atLeast85(k, g.Y[k], marks, policy, topW) }
	switch {
	case reach(0) && restrictiveOK[0] && (!s.LevelIRequiresNonRestrictiveII || nonRestrictiveII):
		g.Level = LevelI
	case reach(1) && restrictiveOK[1]:
		g.Level = LevelII
		if reach(0) {
			g.Capped = capReason[0]
		}
	case all3:
		g.Level = LevelIII
		if reach(1) {
			g.Capped = capReason[1]
		} else if reach(0) {
			g.Capped = capReason[0]
		}
	default:
		g.Level = BelowIII
	}
	return g
}

func describe(m *Mark) string {
	switch m.Status {
	case NotApplicable:
		return "not applicable"
	case Insufficient:
		return "has insufficient data"
	}
	lv := m.Level
	if len(m.Parts) > 0 {
		lv = worstPart(m.Parts)
	}
	return "at " + lv.String()
}

func worstPart(ps []ProductPart) Level {
	w := NoLevel
	for _, p := range ps {
		if p.Output > 0 && (w == NoLevel || p.Level > w) {
			w = p.Level
		}
	}
	return w
}

// atLeast85 decides Y_k >= 85 exactly. Far from 85 the float is decisive;
// within 1e-6 the index is recomputed with rational arithmetic.
func (s *Standard) atLeast85(k int, y float64, marks []Mark, policy DataPolicy, topW int64) bool {
	if math.Abs(y-85) > 1e-6 {
		return y > 85
	}
	lv := gradedLevels[k]
	total := new(big.Rat)
	for _, grp := range s.Groups {
		var appl int64
		in := new(big.Rat)
		for _, ind := range grp.Indicators {
			m := &marks[ind.Index]
			if !applicable(m, policy.of(ind)) {
				continue
			}
			appl += ind.weightBP
			if m.Status != Graded {
				continue
			}
			in.Add(in, new(big.Rat).Mul(big.NewRat(ind.weightBP, 1), exactMembership(m, lv)))
		}
		if appl == 0 {
			continue
		}
		// w_i/topW * in/appl
		in.Mul(in, big.NewRat(grp.weightBP, topW*appl))
		total.Add(total, in)
	}
	return total.Cmp(big.NewRat(85, 100)) >= 0
}

func exactMembership(m *Mark, lv Level) *big.Rat {
	if len(m.Parts) == 0 {
		if m.Level.Meets(lv) {
			return big.NewRat(1, 1)
		}
		return new(big.Rat)
	}
	in, total := new(big.Rat), new(big.Rat)
	for _, p := range m.Parts {
		o := new(big.Rat)
		if o.SetFloat64(p.Output) == nil {
			continue
		}
		total.Add(total, o)
		if p.Level.Meets(lv) {
			in.Add(in, o)
		}
	}
	if total.Sign() <= 0 {
		return new(big.Rat)
	}
	return in.Quo(in, total)
}

// IndicatorScore returns the continuous 0-100 score of value v of a
// quantitative indicator (domain research §2.6): 100 at Level I or better;
// linear from 100 to 85 between the Level I and II benchmarks; from 85 to
// 60 between II and III; from 60 to 0 between the Level III benchmark and
// 1.5 times it (lower is better) or half of it (higher is better); 0
// beyond. The score is consistent with LevelOf: >= 85 exactly when the
// value meets Level II, and so on.
func (ind *Indicator) IndicatorScore(v float64) float64 {
	b := ind.Benchmarks
	lv := ind.LevelOf(v)
	// frac is how far v has gone from the better benchmark a towards the
	// worse one c, clamped to [0, 1).
	frac := func(a, c float64) float64 {
		if a == c {
			return 0
		}
		f := (v - a) / (c - a)
		return math.Max(0, math.Min(f, math.Nextafter(1, 0)))
	}
	switch lv {
	case LevelI:
		return 100
	case LevelII:
		return 100 - 15*frac(b[0], b[1])
	case LevelIII:
		return 85 - 25*frac(b[1], b[2])
	}
	end := b[2] * 1.5
	if ind.Direction == HigherBetter {
		end = b[2] * 0.5
	}
	if end == b[2] {
		return 0
	}
	f := (v - b[2]) / (end - b[2])
	if f >= 1 {
		return 0
	}
	return math.Min(60*(1-math.Max(f, 0)), math.Nextafter(60, 0))
}

// LevelScore is the continuous score of a declared level: 100, 85, 60 and
// 0 for Levels I, II, III and below III (the left end of each level's range
// of IndicatorScore).
func LevelScore(l Level) float64 {
	switch l {
	case LevelI:
		return 100
	case LevelII:
		return 85
	case LevelIII:
		return 60
	}
	return 0
}
