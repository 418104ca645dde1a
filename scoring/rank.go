package scoring

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/cleanprod/cleanprod/registry"
)

// Snapshot is the set of results published by one engine tick. It is
// immutable: any goroutine may read it while the engine publishes newer
// ones.
type Snapshot struct {
	Time     time.Time
	Standard *Standard
	Policy   *Policy
	// Registry and Solutions are those the results were computed with
	// (they change on a Reload).
	Registry  *registry.Registry
	Solutions *Library
	results   map[string]*Result
}

// Result returns the latest result of an enterprise.
func (s *Snapshot) Result(enterprise string) (*Result, bool) {
	r, ok := s.results[enterprise]
	return r, ok
}

// Results returns every result, sorted by enterprise id.
func (s *Snapshot) Results() []*Result {
	out := make([]*Result, 0, len(s.results))
	for _, id := range slices.Sorted(maps.Keys(s.results)) {
		out = append(out, s.results[id])
	}
	return out
}

// Ranking orders enterprises, overall or on one indicator.
type Ranking struct {
	Window    string
	Indicator string // "" for the overall ranking
	// Entries are the ranked enterprises, best first. Equal entries share
	// a rank and the next rank skips ("1, 1, 3").
	Entries []RankEntry
	// Unranked are the enterprises without enough data (or to which the
	// indicator does not apply), with the reason, sorted by id.
	Unranked []RankEntry
}

// RankEntry is one enterprise in a ranking.
type RankEntry struct {
	Enterprise string
	Rank       int // 1-based; 0 for unranked
	Level      Level
	Score      float64
	Value      float64 // indicator rankings
	Reason     string  // unranked only
}

// Ranking ranks the enterprises on window overall: by level (I first),
// then by continuous score. Enterprises that are not graded (insufficient
// data) are listed as unranked. Scores equal to 1e-6 tie.
func (s *Snapshot) Ranking(window string) Ranking {
	rk := Ranking{Window: window}
	for _, r := range s.Results() {
		a, ok := r.Assessment(window)
		if !ok {
			continue
		}
		e := RankEntry{Enterprise: r.Enterprise, Level: a.Level, Score: a.Score}
		if a.Level == NoLevel {
			e.Reason = a.Capped
			if e.Reason == "" {
				e.Reason = "not graded"
			}
			rk.Unranked = append(rk.Unranked, e)
			continue
		}
		rk.Entries = append(rk.Entries, e)
	}
	same := func(a, b RankEntry) bool { return a.Level == b.Level && math.Abs(a.Score-b.Score) < 1e-6 }
	slices.SortStableFunc(rk.Entries, func(a, b RankEntry) int {
		if c := cmp.Compare(a.Level, b.Level); c != 0 {
			return c
		}
		if !same(a, b) {
			return cmp.Compare(b.Score, a.Score)
		}
		return strings.Compare(a.Enterprise, b.Enterprise)
	})
	assignRanks(rk.Entries, same)
	return rk
}

// IndicatorRanking ranks the enterprises on one indicator of window by
// value, best first in the indicator's direction (by level, then score,
// for a qualitative indicator). Enterprises where it is not graded are
// unranked. Values equal to a relative 1e-9 tie.
func (s *Snapshot) IndicatorRanking(window, indicator string) (Ranking, bool) {
	ind, ok := s.Standard.Indicator(indicator)
	if !ok {
		return Ranking{}, false
	}
	rk := Ranking{Window: window, Indicator: indicator}
	for _, r := range s.Results() {
		a, ok := r.Assessment(window)
		if !ok {
			continue
		}
		ir := &a.Indicators[ind.Index]
		e := RankEntry{Enterprise: r.Enterprise, Level: ir.Level, Score: ir.Score, Value: ir.Value}
		if ir.Status != Graded {
			e.Reason = ir.Reason
			if ir.Status == NotApplicable {
				e.Reason = "not applicable"
			}
			rk.Unranked = append(rk.Unranked, e)
			continue
		}
		rk.Entries = append(rk.Entries, e)
	}
	same := func(a, b RankEntry) bool {
		if ind.Kind == Qualitative {
			return a.Level == b.Level
		}
		return math.Abs(a.Value-b.Value) <= 1e-9*math.Max(1, math.Max(math.Abs(a.Value), math.Abs(b.Value)))
	}
	slices.SortStableFunc(rk.Entries, func(a, b RankEntry) int {
		if !same(a, b) {
			if ind.Kind == Qualitative {
				return cmp.Compare(a.Level, b.Level)
			}
			if ind.Direction == HigherBetter {
				return cmp.Compare(b.Value, a.Value)
			}
			return cmp.Compare(a.Value, b.Value)
		}
		return strings.Compare(a.Enterprise, b.Enterprise)
	})
	assignRanks(rk.Entries, same)
	return rk, true
}

func assignRanks(es []RankEntry, same func(a, b RankEntry) bool) {
	for i := range es {
		if i > 0 && same(es[i-1], es[i]) {
			es[i].Rank = es[i-1].Rank
		} else {
			es[i].Rank = i + 1
		}
	}
}
