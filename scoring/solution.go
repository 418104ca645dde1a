package scoring

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cleanprod/cleanprod/internal/yamlfile"
)

// Cost is the cost class of a cleaner-production measure, as the audit
// method classifies them (无/低费, 中费, 高费).
type Cost string

// Cost classes, cheapest first.
const (
	CostNo     Cost = "no"
	CostLow    Cost = "low"
	CostMedium Cost = "medium"
	CostHigh   Cost = "high"
)

var costOrder = []Cost{CostNo, CostLow, CostMedium, CostHigh}

// Solution is a proven cleaner-production measure and what it typically
// does to indicators.
type Solution struct {
	ID          string
	NameZH      string
	NameEN      string
	Description string
	Cost        Cost
	// PaybackYears is the typical payback range (0, 0 when there is no
	// investment to pay back).
	PaybackYears [2]float64
	Effects      []Effect
	Src          []string
	File         string
}

// Effect is a measure's typical effect on one indicator: a relative change
// of the value (-0.2: 20 % less), an absolute change (+10 percentage
// points), or, for a qualitative indicator, the level it brings.
type Effect struct {
	Indicator string
	Relative  float64
	Absolute  float64
	Level     Level
}

// project returns the indicator's value (or level) after the effect.
func (ef Effect) project(ind *Indicator, v float64) (float64, Level) {
	if ind.Kind == Qualitative {
		return 0, ef.Level
	}
	p := v*(1+ef.Relative) + ef.Absolute
	if ind.Unit == "%" {
		p = math.Max(0, math.Min(100, p))
	}
	return p, ind.LevelOf(p)
}

// Library is a loaded solution library. It is immutable and safe for
// concurrent use.
type Library struct {
	Solutions []*Solution
	byInd     map[string][]int // indicator -> solution indexes with an effect on it
	// amounts and prices are the basis of the measures' benefits in
	// physical units and yuan (benefit.go).
	amounts []AmountBasis
	prices  map[string]Price
}

type solutionFile struct {
	Solutions []struct {
		ID           string `yaml:"id"`
		NameZH       string `yaml:"name_zh"`
		NameEN       string `yaml:"name_en"`
		Description  string `yaml:"description"`
		Cost         string `yaml:"cost"`
		PaybackYears *struct {
			Min float64 `yaml:"min"`
			Max float64 `yaml:"max"`
		} `yaml:"payback_years"`
		Effects []struct {
			Indicator string   `yaml:"indicator"`
			Relative  *float64 `yaml:"relative"`
			Absolute  *float64 `yaml:"absolute"`
			ToLevel   string   `yaml:"to_level"`
		} `yaml:"effects"`
		Src  any    `yaml:"src"`
		Note string `yaml:"note"`
	} `yaml:"solutions"`
	// Benefits and Prices may stand in any file of the library (the
	// shipped one keeps them in prices.yaml).
	Benefits benefitsFile `yaml:"benefits"`
	Prices   []priceFile  `yaml:"prices"`
}

// LoadLibrary reads every *.yaml file in dir and validates it against std.
// Every problem is returned at once.
func LoadLibrary(dir string, std *Standard) (*Library, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, fmt.Errorf("load solutions: %w", err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("load solutions: no *.yaml files in %s", dir)
	}
	files := make(map[string][]byte, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("load solutions: %w", err)
		}
		files[p] = data
	}
	return ParseLibrary(files, std)
}

// ParseLibrary validates solution files keyed by name.
func ParseLibrary(files map[string][]byte, std *Standard) (*Library, error) {
	lib := &Library{byInd: make(map[string][]int)}
	var errs []error
	ids := map[string]string{}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		var f solutionFile
		doc, err := yamlfile.Decode(name, files[name], &f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		problem := func(path []any, format string, args ...any) {
			errs = append(errs, doc.Errorf(path, format, args...))
		}
		lib.parseBenefits(name, &f.Benefits, f.Prices, std, problem)
		for i, sf := range f.Solutions {
			at := func(k string) []any { return yamlfile.P("solutions", i, k) }
			s := &Solution{ID: sf.ID, NameZH: sf.NameZH, NameEN: sf.NameEN, Description: sf.Description, Cost: Cost(sf.Cost), File: name}
			if !idRE.MatchString(s.ID) {
				problem(at("id"), "solution id %q: want lower-case letters, digits and '_'", s.ID)
			}
			if prev, dup := ids[s.ID]; dup {
				problem(at("id"), "solution %q is already defined in %s", s.ID, prev)
			}
			ids[s.ID] = name
			if s.NameZH == "" || s.NameEN == "" {
				problem(at("id"), "solution %q: name_zh and name_en are required", s.ID)
			}
			if !slices.Contains(costOrder, s.Cost) {
				problem(at("cost"), "solution %q: cost %q: want no, low, medium or high", s.ID, sf.Cost)
			}
			if sf.PaybackYears != nil {
				s.PaybackYears = [2]float64{sf.PaybackYears.Min, sf.PaybackYears.Max}
				if !(sf.PaybackYears.Min >= 0 && sf.PaybackYears.Min <= sf.PaybackYears.Max) {
					problem(at("payback_years"), "solution %q: payback_years: want 0 <= min <= max", s.ID)
				}
			} else if s.Cost != CostNo {
				problem(at("payback_years"), "solution %q: payback_years is required unless cost is no", s.ID)
			}
			var err error
			if s.Src, err = parseSrc(sf.Src); err != nil || len(s.Src) == 0 {
				problem(at("id"), "solution %q: src is missing (a source tag, estimate or unverified)", s.ID)
			}
			if len(sf.Effects) == 0 {
				problem(at("effects"), "solution %q: no effects", s.ID)
			}
			for j, ef := range sf.Effects {
				eat := func(k string) []any { return yamlfile.P("solutions", i, "effects", j, k) }
				e := Effect{Indicator: ef.Indicator}
				ind, ok := std.Indicator(ef.Indicator)
				if !ok {
					problem(eat("indicator"), "solution %q: unknown indicator %q", s.ID, ef.Indicator)
					continue
				}
				switch ind.Kind {
				case Qualitative:
					l, err := ParseLevel(ef.ToLevel)
					if err != nil || ef.Relative != nil || ef.Absolute != nil {
						problem(eat("indicator"), "solution %q: %s is qualitative: give to_level (I, II or III) only", s.ID, ind.ID)
					}
					e.Level = l
				default:
					if ef.ToLevel != "" || (ef.Relative == nil) == (ef.Absolute == nil) {
						problem(eat("indicator"), "solution %q: %s is quantitative: give either relative or absolute", s.ID, ind.ID)
						continue
					}
					if ef.Relative != nil {
						e.Relative = *ef.Relative
						if e.Relative <= -1 || e.Relative == 0 || math.IsNaN(e.Relative) {
							problem(eat("relative"), "solution %q: relative %v: want a non-zero change above -1", s.ID, e.Relative)
						}
					} else {
						e.Absolute = *ef.Absolute
					}
					// The effect must improve the indicator.
					better := e.Relative+e.Absolute < 0
					if ind.Direction == HigherBetter {
						better = e.Relative+e.Absolute > 0
					}
					if !better {
						problem(eat("indicator"), "solution %q: the effect on %s (%s) makes it worse", s.ID, ind.ID, ind.Direction)
					}
				}
				s.Effects = append(s.Effects, e)
			}
			lib.Solutions = append(lib.Solutions, s)
			for _, e := range s.Effects {
				lib.byInd[e.Indicator] = append(lib.byInd[e.Indicator], len(lib.Solutions)-1)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return lib, nil
}

// Lagging is an indicator that holds an enterprise below its next level.
type Lagging struct {
	Indicator   string
	Restrictive bool
	Level       Level // current level
	Target      Level // the level it must reach
	Value       float64
	// Needed is the value the indicator must reach (the Target benchmark;
	// quantitative indicators only).
	Needed float64
	// Gap is the weighted gap in index points: the indicator's effective
	// weight x (score at Target - current score).
	Gap       float64
	Solutions []Match
}

// Match is a solution for a lagging indicator, with its projected effect.
type Match struct {
	Solution       *Solution
	Projected      float64 // projected value (quantitative)
	ProjectedLevel Level
	// Benefit is the gain in index points on this indicator (effective
	// weight x score gain); ReachesTarget says whether the projected level
	// meets the target.
	Benefit       float64
	ReachesTarget bool
}

// target returns the level an enterprise at l aims for next.
func target(l Level) Level {
	switch l {
	case LevelI, LevelII:
		return LevelI
	case LevelIII:
		return LevelII
	}
	return LevelIII
}

// LaggingIndicators returns the graded indicators of a whose level is worse
// than the enterprise's next level (Level I for an enterprise at I or II),
// ordered by weighted gap, largest first (restrictive ones first on
// equal gaps), each with the matching solutions of lib (may be nil) ranked
// by benefit, then by reaching the target, then cheapest, then quickest
// payback. The order is by size of gap, not by what it takes to reach the
// next level: NextLevel answers that.
func LaggingIndicators(std *Standard, a *Assessment, lib *Library) []Lagging {
	tgt := target(a.Level)
	var out []Lagging
	for _, ind := range std.Indicators {
		r := &a.Indicators[ind.Index]
		if r.Status != Graded || r.Level.Meets(tgt) {
			continue
		}
		lg := Lagging{Indicator: ind.ID, Restrictive: ind.Restrictive, Level: r.Level, Target: tgt, Value: r.Value}
		w := r.Weight
		if w == 0 {
			w = ind.EffectiveWeight()
		}
		lg.Gap = w * (LevelScore(tgt) - r.Score)
		if ind.Kind == Quantitative {
			lg.Needed = ind.Benchmark(tgt)
		}
		lg.Solutions = lib.matches(ind, r, tgt)
		out = append(out, lg)
	}
	slices.SortStableFunc(out, func(a, b Lagging) int {
		if c := cmp.Compare(b.Gap, a.Gap); c != 0 {
			return c
		}
		if a.Restrictive != b.Restrictive {
			return map[bool]int{true: -1, false: 1}[a.Restrictive]
		}
		return 0
	})
	return out
}

// matches returns the measures of lib (nil: none) for ind with their
// projected effect on r, ranked by benefit, then by reaching tgt, then
// cheapest, then quickest payback. A quantitative indicator without a
// value has nothing to project from: none.
func (lib *Library) matches(ind *Indicator, r *IndicatorResult, tgt Level) []Match {
	if lib == nil || (ind.Kind == Quantitative && !r.HasValue() && r.Status != Graded) {
		return nil
	}
	w := r.Weight
	if w == 0 {
		w = ind.EffectiveWeight()
	}
	var out []Match
	for _, si := range lib.byInd[ind.ID] {
		s := lib.Solutions[si]
		for _, ef := range s.Effects {
			if ef.Indicator != ind.ID {
				continue
			}
			m := Match{Solution: s}
			m.Projected, m.ProjectedLevel = ef.project(ind, r.Value)
			score := LevelScore(m.ProjectedLevel)
			if ind.Kind == Quantitative {
				score = ind.IndicatorScore(m.Projected)
			}
			m.Benefit = w * math.Max(0, score-r.Score)
			m.ReachesTarget = m.ProjectedLevel.Meets(tgt)
			out = append(out, m)
		}
	}
	slices.SortStableFunc(out, func(a, b Match) int {
		if c := cmp.Compare(b.Benefit, a.Benefit); c != 0 {
			return c
		}
		if a.ReachesTarget != b.ReachesTarget {
			return map[bool]int{true: -1, false: 1}[a.ReachesTarget]
		}
		if c := cmp.Compare(slices.Index(costOrder, a.Solution.Cost), slices.Index(costOrder, b.Solution.Cost)); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Solution.PaybackYears[0], b.Solution.PaybackYears[0]); c != 0 {
			return c
		}
		return strings.Compare(a.Solution.ID, b.Solution.ID)
	})
	return out
}
