package scoring

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"strconv"
	"time"
)

// The wire form of a Result is JSON, for replicas that each score a
// shard of the fleet and merge their results into one Snapshot (package
// web asks its peers for theirs). It carries every field a Snapshot's
// reader uses, including whether an indicator has a value, and names a
// matched solution by its id: Snapshot.Merge finds it again in the
// snapshot's library. Non-finite numbers travel as "NaN", "+Inf" and
// "-Inf", which JSON numbers cannot say.

// wireNum is a float64 that survives JSON when it is not finite.
type wireNum float64

func (n wireNum) MarshalJSON() ([]byte, error) {
	f := float64(n)
	switch {
	case math.IsNaN(f):
		return []byte(`"NaN"`), nil
	case math.IsInf(f, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(f, -1):
		return []byte(`"-Inf"`), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

func (n *wireNum) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		switch s {
		case "NaN":
			*n = wireNum(math.NaN())
		case "+Inf":
			*n = wireNum(math.Inf(1))
		case "-Inf":
			*n = wireNum(math.Inf(-1))
		default:
			return fmt.Errorf("scoring: number %q is not NaN, +Inf or -Inf", s)
		}
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("scoring: number %s: %w", b, err)
	}
	*n = wireNum(f)
	return nil
}

func wireNumPtr(p *float64) *wireNum {
	if p == nil {
		return nil
	}
	n := wireNum(*p)
	return &n
}

func floatPtr(p *wireNum) *float64 {
	if p == nil {
		return nil
	}
	f := float64(*p)
	return &f
}

type resultWire struct {
	Enterprise     string           `json:"enterprise"`
	Time           time.Time        `json:"time"`
	DataThrough    time.Time        `json:"data_through"`
	Assessments    []assessmentWire `json:"assessments"`
	DataTime       time.Time        `json:"data_time"`
	CatchingUp     bool             `json:"catching_up,omitempty"`
	CodeHeld       bool             `json:"code_held,omitempty"`
	Code           Code             `json:"code,omitempty"`
	CodeSince      time.Time        `json:"code_since"`
	CodeReasons    []reasonWire     `json:"code_reasons,omitempty"`
	PendingCode    Code             `json:"pending_code,omitempty"`
	PendingSince   time.Time        `json:"pending_since"`
	PendingDue     time.Time        `json:"pending_due"`
	PendingReasons []reasonWire     `json:"pending_reasons,omitempty"`
	LastAudit      time.Time        `json:"last_audit"`
	NextAuditDue   time.Time        `json:"next_audit_due"`
	Lagging        []laggingWire    `json:"lagging,omitempty"`
	StaleMeters    []string         `json:"stale_meters,omitempty"`
}

type assessmentWire struct {
	Window             string          `json:"window"`
	From               time.Time       `json:"from"`
	To                 time.Time       `json:"to"`
	Indicators         []indicatorWire `json:"indicators"`
	Y                  [3]wireNum      `json:"y"`
	Level              Level           `json:"level"`
	Score              wireNum         `json:"score"`
	Capped             string          `json:"capped,omitempty"`
	Completeness       wireNum         `json:"completeness"`
	Restrictive        Level           `json:"restrictive"`
	RestrictiveMissing bool            `json:"restrictive_missing,omitempty"`
	Exceedance         []string        `json:"exceedance,omitempty"`
	Totals             []totalWire     `json:"totals,omitempty"`
}

type indicatorWire struct {
	ID       string   `json:"id"`
	Unit     string   `json:"unit,omitempty"`
	Status   Status   `json:"status"`
	Value    wireNum  `json:"value"`
	Valued   bool     `json:"valued,omitempty"`
	Level    Level    `json:"level"`
	Score    wireNum  `json:"score"`
	Weight   wireNum  `json:"weight"`
	Coverage wireNum  `json:"coverage"`
	Short    []string `json:"short,omitempty"`
	Source   string   `json:"source,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	Evidence string   `json:"evidence,omitempty"`
	Notes    []string `json:"notes,omitempty"`
}

type totalWire struct {
	ID       string  `json:"id"`
	Quantity string  `json:"quantity,omitempty"`
	Unit     string  `json:"unit,omitempty"`
	Value    wireNum `json:"value"`
	Coverage wireNum `json:"coverage"`
}

type reasonWire struct {
	Kind      Condition `json:"kind"`
	Indicator string    `json:"indicator,omitempty"`
	Level     Level     `json:"level"`
	Value     *wireNum  `json:"value,omitempty"`
	Benchmark *wireNum  `json:"benchmark,omitempty"`
	Unit      string    `json:"unit,omitempty"`
	TextZH    string    `json:"text_zh"`
	TextEN    string    `json:"text_en"`
}

type laggingWire struct {
	Indicator   string      `json:"indicator"`
	Restrictive bool        `json:"restrictive,omitempty"`
	Level       Level       `json:"level"`
	Target      Level       `json:"target"`
	Value       wireNum     `json:"value"`
	Needed      wireNum     `json:"needed"`
	Gap         wireNum     `json:"gap"`
	Solutions   []matchWire `json:"solutions,omitempty"`
}

type matchWire struct {
	Solution       string  `json:"solution"`
	Projected      wireNum `json:"projected"`
	ProjectedLevel Level   `json:"projected_level"`
	Benefit        wireNum `json:"benefit"`
	ReachesTarget  bool    `json:"reaches_target,omitempty"`
}

func reasonsWire(rs []Reason) []reasonWire {
	if rs == nil {
		return nil
	}
	out := make([]reasonWire, len(rs))
	for i, r := range rs {
		out[i] = reasonWire{Kind: r.Kind, Indicator: r.Indicator, Level: r.Level, Value: wireNumPtr(r.Value),
			Benchmark: wireNumPtr(r.Benchmark), Unit: r.Unit, TextZH: r.TextZH, TextEN: r.TextEN}
	}
	return out
}

func reasonsFromWire(ws []reasonWire) []Reason {
	if ws == nil {
		return nil
	}
	out := make([]Reason, len(ws))
	for i, w := range ws {
		out[i] = Reason{Kind: w.Kind, Indicator: w.Indicator, Level: w.Level, Value: floatPtr(w.Value),
			Benchmark: floatPtr(w.Benchmark), Unit: w.Unit, TextZH: w.TextZH, TextEN: w.TextEN}
	}
	return out
}

// MarshalJSON encodes the result in its wire form (see Snapshot.Merge).
func (r *Result) MarshalJSON() ([]byte, error) {
	w := resultWire{Enterprise: r.Enterprise, Time: r.Time, DataThrough: r.DataThrough, DataTime: r.DataTime,
		CatchingUp: r.CatchingUp, CodeHeld: r.CodeHeld, Code: r.Code, CodeSince: r.CodeSince, CodeReasons: reasonsWire(r.CodeReasons),
		PendingCode: r.PendingCode, PendingSince: r.PendingSince, PendingDue: r.PendingDue, PendingReasons: reasonsWire(r.PendingReasons),
		LastAudit: r.LastAudit, NextAuditDue: r.NextAuditDue, StaleMeters: r.StaleMeters}
	w.Assessments = make([]assessmentWire, len(r.Assessments))
	for i := range r.Assessments {
		a := &r.Assessments[i]
		aw := assessmentWire{Window: a.Window, From: a.From, To: a.To, Level: a.Level, Score: wireNum(a.Score), Capped: a.Capped,
			Completeness: wireNum(a.Completeness), Restrictive: a.Restrictive, RestrictiveMissing: a.RestrictiveMissing, Exceedance: a.Exceedance,
			Y: [3]wireNum{wireNum(a.Y[0]), wireNum(a.Y[1]), wireNum(a.Y[2])}}
		aw.Indicators = make([]indicatorWire, len(a.Indicators))
		for j := range a.Indicators {
			ir := &a.Indicators[j]
			aw.Indicators[j] = indicatorWire{ID: ir.ID, Unit: ir.Unit, Status: ir.Status, Value: wireNum(ir.Value), Valued: ir.valued,
				Level: ir.Level, Score: wireNum(ir.Score), Weight: wireNum(ir.Weight), Coverage: wireNum(ir.Coverage), Short: ir.Short,
				Source: ir.Source, Reason: ir.Reason, Evidence: ir.Evidence, Notes: ir.Notes}
		}
		for _, t := range a.Totals {
			aw.Totals = append(aw.Totals, totalWire{ID: t.ID, Quantity: t.Quantity, Unit: t.Unit, Value: wireNum(t.Value), Coverage: wireNum(t.Coverage)})
		}
		w.Assessments[i] = aw
	}
	for _, l := range r.Lagging {
		lw := laggingWire{Indicator: l.Indicator, Restrictive: l.Restrictive, Level: l.Level, Target: l.Target,
			Value: wireNum(l.Value), Needed: wireNum(l.Needed), Gap: wireNum(l.Gap)}
		for _, m := range l.Solutions {
			id := ""
			if m.Solution != nil {
				id = m.Solution.ID
			}
			lw.Solutions = append(lw.Solutions, matchWire{Solution: id, Projected: wireNum(m.Projected), ProjectedLevel: m.ProjectedLevel,
				Benefit: wireNum(m.Benefit), ReachesTarget: m.ReachesTarget})
		}
		w.Lagging = append(w.Lagging, lw)
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes what MarshalJSON writes. A matched solution is
// only named (a Solution holding its ID alone) until Snapshot.Merge finds
// it in the library.
func (r *Result) UnmarshalJSON(b []byte) error {
	var w resultWire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("scoring: decode result: %w", err)
	}
	if w.Enterprise == "" {
		return fmt.Errorf("scoring: decode result: no enterprise")
	}
	*r = Result{Enterprise: w.Enterprise, Time: w.Time, DataThrough: w.DataThrough, DataTime: w.DataTime,
		CatchingUp: w.CatchingUp, CodeHeld: w.CodeHeld, Code: w.Code, CodeSince: w.CodeSince, CodeReasons: reasonsFromWire(w.CodeReasons),
		PendingCode: w.PendingCode, PendingSince: w.PendingSince, PendingDue: w.PendingDue, PendingReasons: reasonsFromWire(w.PendingReasons),
		LastAudit: w.LastAudit, NextAuditDue: w.NextAuditDue, StaleMeters: w.StaleMeters}
	r.Assessments = make([]Assessment, len(w.Assessments))
	for i, aw := range w.Assessments {
		a := Assessment{Window: aw.Window, From: aw.From, To: aw.To, Level: aw.Level, Score: float64(aw.Score), Capped: aw.Capped,
			Completeness: float64(aw.Completeness), Restrictive: aw.Restrictive, RestrictiveMissing: aw.RestrictiveMissing, Exceedance: aw.Exceedance,
			Y: [3]float64{float64(aw.Y[0]), float64(aw.Y[1]), float64(aw.Y[2])}}
		a.Indicators = make([]IndicatorResult, len(aw.Indicators))
		for j, iw := range aw.Indicators {
			a.Indicators[j] = IndicatorResult{ID: iw.ID, Unit: iw.Unit, Status: iw.Status, Value: float64(iw.Value), valued: iw.Valued,
				Level: iw.Level, Score: float64(iw.Score), Weight: float64(iw.Weight), Coverage: float64(iw.Coverage), Short: iw.Short,
				Source: iw.Source, Reason: iw.Reason, Evidence: iw.Evidence, Notes: iw.Notes}
		}
		for _, t := range aw.Totals {
			a.Totals = append(a.Totals, Total{ID: t.ID, Quantity: t.Quantity, Unit: t.Unit, Value: float64(t.Value), Coverage: float64(t.Coverage)})
		}
		r.Assessments[i] = a
	}
	for _, lw := range w.Lagging {
		l := Lagging{Indicator: lw.Indicator, Restrictive: lw.Restrictive, Level: lw.Level, Target: lw.Target,
			Value: float64(lw.Value), Needed: float64(lw.Needed), Gap: float64(lw.Gap)}
		for _, mw := range lw.Solutions {
			l.Solutions = append(l.Solutions, Match{Solution: &Solution{ID: mw.Solution}, Projected: float64(mw.Projected),
				ProjectedLevel: mw.ProjectedLevel, Benefit: float64(mw.Benefit), ReachesTarget: mw.ReachesTarget})
		}
		r.Lagging = append(r.Lagging, l)
	}
	return nil
}

// Merge returns a snapshot with s's time, standard, policy, registry and
// solutions, and the results of s and then those given, a later result
// of an enterprise replacing an earlier one: the fleet as one replica
// would score it, from the shards' snapshots. Solutions named by decoded
// results (UnmarshalJSON) are found in s.Solutions by id, which changes
// the results: pass results that no other goroutine reads yet.
func (s *Snapshot) Merge(results ...[]*Result) *Snapshot {
	out := *s
	out.results = maps.Clone(s.results)
	if out.results == nil {
		out.results = map[string]*Result{}
	}
	for _, rs := range results {
		for _, r := range rs {
			s.resolveSolutions(r)
			out.results[r.Enterprise] = r
		}
	}
	return &out
}

// Only returns a snapshot like s with the results of the enterprises keep
// accepts.
func (s *Snapshot) Only(keep func(enterprise string) bool) *Snapshot {
	out := *s
	out.results = make(map[string]*Result, len(s.results))
	for id, r := range s.results {
		if keep(id) {
			out.results[id] = r
		}
	}
	return &out
}

// resolveSolutions replaces the named-only solutions of r's matches by
// those of the library with the same id (kept as named when the library
// has none).
func (s *Snapshot) resolveSolutions(r *Result) {
	if s.Solutions == nil {
		return
	}
	for i := range r.Lagging {
		for j := range r.Lagging[i].Solutions {
			m := &r.Lagging[i].Solutions[j]
			if m.Solution == nil || m.Solution.NameEN != "" || m.Solution.NameZH != "" {
				continue
			}
			for _, sol := range s.Solutions.Solutions {
				if sol.ID == m.Solution.ID {
					m.Solution = sol
					break
				}
			}
		}
	}
}
