package web

import (
	"fmt"
	"math"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/scoring"
)

// The API's JSON shapes. They translate scoring's types field by field;
// nothing here computes a score. Levels are "I", "II", "III",
// "below III", or null when not graded.

// EnterpriseSummary is one enterprise in the list.
type EnterpriseSummary struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	NameZH   string `json:"name_zh,omitempty"`
	Industry string `json:"industry,omitempty"`
	Region   string `json:"region,omitempty"`
	// USCC is the unified social credit code (统一社会信用代码) and
	// DischargePermit the discharge permit number (排污许可证编号), when
	// the registry has them.
	USCC            string `json:"uscc,omitempty"`
	DischargePermit string `json:"discharge_permit,omitempty"`
	Evaluated       bool   `json:"evaluated"` // false until the scorer has evaluated it (or when the standard does not grade its industry)
	// EvaluatedAt is the time of the result.
	EvaluatedAt *time.Time `json:"evaluated_at"`
	// DataThrough is the time of the newest reading the result includes.
	DataThrough *time.Time `json:"data_through"`
	// DataTime is the time the code and its holds are at: the evaluation
	// time, or while the enterprise catches up (a gateway delivering a
	// backlog) the time through which its data has arrived.
	DataTime   *time.Time `json:"data_time"`
	CatchingUp bool       `json:"catching_up"`
	// CodeHeld: the code waits for the catch-up to fill the window.
	CodeHeld bool `json:"code_held,omitempty"`
	// Code is green, yellow or red; null until the first assessment with
	// enough data (CodeText says "no code yet").
	Code      *string    `json:"code"`
	CodeText  Text       `json:"code_text"`
	CodeSince *time.Time `json:"code_since"` // data time
	// CodeReasons are the facts behind the code in force.
	CodeReasons []ReasonDTO `json:"code_reasons"`
	// PendingCode and PendingSince repeat PendingChange's code and since.
	PendingCode   *string        `json:"pending_code"`
	PendingSince  *time.Time     `json:"pending_since"`
	PendingChange *PendingChange `json:"pending_change"` // null: none
	// Window is the policy's window (the live code follows it); Level,
	// Score, Y and Completeness are on it.
	Window       string   `json:"window"`
	Level        *string  `json:"level"`
	Score        *float64 `json:"score"`
	YI           *float64 `json:"y_i"`
	YII          *float64 `json:"y_ii"`
	YIII         *float64 `json:"y_iii"`
	Completeness *float64 `json:"completeness"`
	// LevelNote says why Level is null once evaluated (null when graded);
	// ScoreNote that Score rests on less data than the policy's
	// min_completeness (null when it does not): such a score is indicative.
	LevelNote *Text     `json:"level_note"`
	ScoreNote *Text     `json:"score_note"`
	Official  *LevelRef `json:"official"` // the level on the standard's other (rolling 12-month) window
	// LastAudit is the date of the last accepted audit and NextAuditDue
	// the date the next one is due, in the platform's zone.
	LastAudit    *Date `json:"last_audit"`
	NextAuditDue *Date `json:"next_audit_due"`
	// AuditOverdue: the next audit was due before now; AuditNote says so
	// (null when not overdue).
	AuditOverdue bool  `json:"audit_overdue"`
	AuditNote    *Text `json:"audit_note"`
	// AuditIntervalMonths is the audit cycle the code implies.
	AuditIntervalMonths int           `json:"audit_interval_months,omitempty"`
	Freshness           DataFreshness `json:"data_freshness"`
	Links               Links         `json:"links"`
}

// Text is a sentence in Chinese and English.
type Text struct {
	ZH string `json:"zh"`
	EN string `json:"en"`
}

// ReasonDTO is one fact a code rests on.
type ReasonDTO struct {
	// Kind is the policy condition that holds: level_i, level_ii,
	// level_iii, below_iii, not_graded, restrictive_fail,
	// restrictive_below_ii, restrictive_missing, exceedance,
	// insufficient_data or stale.
	Kind      string   `json:"kind"`
	Indicator *string  `json:"indicator"`
	Level     *string  `json:"level"`
	Value     *float64 `json:"value"`
	// Benchmark is the benchmark or threshold Value is held against.
	Benchmark *float64 `json:"benchmark"`
	Unit      string   `json:"unit,omitempty"`
	TextZH    string   `json:"text_zh"`
	TextEN    string   `json:"text_en"`
	// ReasonText says the same in plain words, from the structured fields
	// and the standard's names (Kind stays the id to key on).
	ReasonText Text `json:"reason_text"`
}

// PendingChange is a code change waiting for its hold.
type PendingChange struct {
	Code  string    `json:"code"`
	Since time.Time `json:"since"` // data time its candidate first appeared
	// TakesEffect is when the code changes if the candidate keeps holding
	// (data time: later than this while the enterprise's data lags).
	TakesEffect *time.Time `json:"takes_effect"`
	// TakesEffectOn is the date of TakesEffect in the platform's zone.
	TakesEffectOn *Date       `json:"takes_effect_on"`
	Reasons       []ReasonDTO `json:"reasons"`
	// Note says it in words: since when, the date it takes effect and the
	// hold behind that date.
	Note Text `json:"note"`
}

// LevelRef is a level and score on a named window.
type LevelRef struct {
	Window       string   `json:"window"`
	Level        *string  `json:"level"`
	Score        *float64 `json:"score"`
	Completeness *float64 `json:"completeness"`
	// LevelNote says why Level is null (null when graded); ScoreNote that
	// the score rests on too little data (null when it does not).
	LevelNote *Text `json:"level_note"`
	ScoreNote *Text `json:"score_note"`
}

// DataFreshness says how current an enterprise's data is.
type DataFreshness struct {
	Meters int `json:"meters"` // registered meters
	// LastReading is the newest reading stored since the server started
	// (or found in the store at start).
	LastReading *time.Time `json:"last_reading"`
	AgeSeconds  *float64   `json:"age_seconds"`
	StaleMeters []string   `json:"stale_meters"` // silent longer than the policy's stale.after
}

// Links are the related resources of an enterprise.
type Links struct {
	Self string `json:"self"`
	// Page is the enterprise's own page (HTML), for its officer.
	Page         string `json:"page"`
	Report       string `json:"report"`
	ReportPDF    string `json:"report_pdf"`
	Meters       string `json:"meters"`
	Declarations string `json:"declarations"`
}

// EnterpriseDetail is one enterprise with every indicator.
type EnterpriseDetail struct {
	EnterpriseSummary
	Assessments []AssessmentDTO `json:"assessments"`
	// Lagging lists every indicator below the next level, largest
	// weighted gap first; NextLevel is what it takes to reach that level.
	Lagging      []LaggingDTO  `json:"lagging"`
	NextLevel    *NextLevelDTO `json:"next_level"` // on the policy's window; null before the first evaluation
	RecentEvents []EventDTO    `json:"recent_events"`
	// Benefits are the yearly benefits of the measures recommended in
	// next_level and lagging (each once), estimated from the enterprise's
	// own totals on the policy's window; BenefitPrices the unit prices
	// the yuan figures use.
	Benefits      []BenefitDTO `json:"benefits"`
	BenefitPrices []PriceDTO   `json:"benefit_prices"`
	// EstimatedBenchmarks are the indicators of the standard in force whose
	// benchmarks are engineering estimates (src: estimate): while there
	// are any, levels are provisional.
	EstimatedBenchmarks []string `json:"estimated_benchmarks"`
}

// AssessmentDTO is an enterprise graded over one window.
type AssessmentDTO struct {
	Window             string         `json:"window"`
	From               time.Time      `json:"from"`
	To                 time.Time      `json:"to"`
	YI                 float64        `json:"y_i"`
	YII                float64        `json:"y_ii"`
	YIII               float64        `json:"y_iii"`
	Level              *string        `json:"level"`
	Score              float64        `json:"score"`
	Completeness       float64        `json:"completeness"`
	Capped             string         `json:"capped,omitempty"`
	RestrictiveLevel   *string        `json:"restrictive_level"`
	RestrictiveMissing bool           `json:"restrictive_missing"`
	Exceedance         []string       `json:"exceedance"`
	Indicators         []IndicatorDTO `json:"indicators"`
	// Totals are the window totals of the quantities the enterprise
	// meters (energy in kgce first, then amounts, then loads in kg).
	Totals []TotalDTO `json:"totals"`
}

// TotalDTO is the total of one quantity over a window.
type TotalDTO struct {
	ID       string  `json:"id"`                 // quantity, load_<quantity>[_<flow>] or energy_kgce
	Quantity string  `json:"quantity,omitempty"` // registry quantity
	Unit     string  `json:"unit"`
	Value    float64 `json:"value"`
	// Coverage is the worst share of the window with data among the
	// meters behind the total (null when rebuilt from stored points).
	Coverage *float64 `json:"coverage"`
}

// IndicatorDTO is one indicator's result with its definition.
type IndicatorDTO struct {
	ID          string   `json:"id"`
	NameZH      string   `json:"name_zh"`
	NameEN      string   `json:"name_en"`
	Group       string   `json:"group"`
	Unit        string   `json:"unit,omitempty"`
	Kind        string   `json:"kind"`
	Direction   string   `json:"direction,omitempty"`
	Restrictive bool     `json:"restrictive"`
	Status      string   `json:"status"` // graded, not_applicable or insufficient
	Value       *float64 `json:"value"`
	Level       *string  `json:"level"`
	Score       *float64 `json:"score"`
	Weight      float64  `json:"weight"`   // effective share of the index
	Coverage    *float64 `json:"coverage"` // metered: share of buckets with data of the worst input meter
	// Short names the meters whose coverage keeps the indicator from being
	// graded (below its min_coverage, or silent), worst first.
	Short    []string `json:"short_meters,omitempty"`
	Source   string   `json:"source"` // metered or declared
	Reason   string   `json:"reason,omitempty"`
	Evidence string   `json:"evidence,omitempty"`
	Notes    []string `json:"notes,omitempty"`
	// Benchmarks are the Level I, II, III values (quantitative);
	// Descriptions the level texts (qualitative).
	Benchmarks   *Benchmarks `json:"benchmarks,omitempty"`
	Descriptions *Benchmarks `json:"descriptions,omitempty"`
	Src          []string    `json:"src"`
}

// Benchmarks holds a value or text per level.
type Benchmarks struct {
	I   any `json:"I"`
	II  any `json:"II"`
	III any `json:"III"`
}

// LaggingDTO is an indicator holding the enterprise below its next level.
type LaggingDTO struct {
	Indicator   string     `json:"indicator"`
	NameZH      string     `json:"name_zh"`
	NameEN      string     `json:"name_en"`
	Unit        string     `json:"unit,omitempty"`
	Restrictive bool       `json:"restrictive"`
	Level       *string    `json:"level"`
	Target      *string    `json:"target"`
	Value       *float64   `json:"value"`  // quantitative
	Needed      *float64   `json:"needed"` // the target's benchmark (quantitative)
	Gap         float64    `json:"gap"`    // weighted gap in index points
	Solutions   []MatchDTO `json:"solutions"`
}

// NextLevelDTO answers "what gets us to the next level" on the policy's
// window: the fewest indicator improvements that reach it under the
// method's rules (scoring.NextLevel), restrictive ones first, then by gain.
type NextLevelDTO struct {
	Window string  `json:"window"`
	Level  *string `json:"level"`  // the current level (null: not graded)
	Target *string `json:"target"` // the next level (null at Level I, the top)
	// Reachable says whether the steps reach Target on the data so far;
	// Reason says why not (or that Level I is the top).
	Reachable bool   `json:"reachable"`
	Reason    string `json:"reason,omitempty"`
	// Y is Y_target now, YAfter once every step is done (Levels I and II
	// need 85, Level III 100).
	Y      float64   `json:"y"`
	YAfter float64   `json:"y_after"`
	Steps  []StepDTO `json:"steps"`
}

// StepDTO is one indicator improvement towards the next level.
type StepDTO struct {
	Indicator   string `json:"indicator"`
	NameZH      string `json:"name_zh"`
	NameEN      string `json:"name_en"`
	Unit        string `json:"unit,omitempty"`
	Kind        string `json:"kind"`                // quantitative or qualitative
	Direction   string `json:"direction,omitempty"` // lower_better: needed is a maximum; higher_better: a minimum
	Restrictive bool   `json:"restrictive"`
	// Mandatory: a level condition besides Y >= 85 requires it (restrictive
	// indicators; every indicator for Level III).
	Mandatory bool     `json:"mandatory"`
	Status    string   `json:"status"`           // graded, or insufficient: it needs data or a declaration first
	Reason    string   `json:"reason,omitempty"` // why it is not graded
	Level     *string  `json:"level"`            // current level
	Value     *float64 `json:"value"`            // current value (quantitative)
	Target    *string  `json:"target"`           // the level it must reach
	// Needed is the target level's benchmark (quantitative), NeededText
	// its description (qualitative, e.g. "yes").
	Needed     *float64   `json:"needed"`
	NeededText string     `json:"needed_text,omitempty"`
	Gain       float64    `json:"gain"` // Y_target points the step adds after the ones before it
	Solutions  []MatchDTO `json:"solutions"`
}

// MatchDTO is a measure from the solution library for a lagging indicator.
type MatchDTO struct {
	ID             string     `json:"id"`
	NameZH         string     `json:"name_zh"`
	NameEN         string     `json:"name_en"`
	Description    string     `json:"description,omitempty"`
	Cost           string     `json:"cost"` // no, low, medium, high
	PaybackYears   [2]float64 `json:"payback_years"`
	ProjectedValue *float64   `json:"projected_value"`
	ProjectedLevel *string    `json:"projected_level"`
	Benefit        float64    `json:"benefit"` // index points gained on this indicator
	ReachesTarget  bool       `json:"reaches_target"`
	Src            []string   `json:"src"`
}

func reasonsOf(rs []scoring.Reason) []ReasonDTO {
	out := make([]ReasonDTO, 0, len(rs))
	for _, r := range rs {
		d := ReasonDTO{Kind: string(r.Kind), Level: levelPtr(r.Level), Unit: r.Unit, TextZH: r.TextZH, TextEN: r.TextEN}
		if r.Indicator != "" {
			d.Indicator = &r.Indicator
		}
		if r.Value != nil {
			d.Value = f64(*r.Value)
		}
		if r.Benchmark != nil {
			d.Benchmark = f64(*r.Benchmark)
		}
		out = append(out, d)
	}
	return out
}

// codeText names a code ("" none) in Chinese and English.
func codeText(c scoring.Code) Text {
	if c == "" {
		return Text{"未赋码", "no code yet"}
	}
	return Text{codeZH(string(c)), string(c)}
}

// auditNote says that an audit due at due is overdue at now (nil when
// not), with dates in loc.
func auditNote(due, now time.Time, loc *time.Location) *Text {
	if due.IsZero() || !due.Before(now) {
		return nil
	}
	days := int(now.Sub(due).Hours() / 24)
	return &Text{
		ZH: fmt.Sprintf("审核已逾期 %d 天（应于 %s 前完成）", days, due.In(loc).Format(time.DateOnly)),
		EN: fmt.Sprintf("audit overdue by %d days (due %s)", days, due.In(loc).Format(time.DateOnly)),
	}
}

func levelPtr(l scoring.Level) *string {
	if l == scoring.NoLevel {
		return nil
	}
	s := l.String()
	return &s
}

func codePtr(c scoring.Code) *string {
	if c == "" {
		return nil
	}
	s := string(c)
	return &s
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func f64(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// resultView is a result to present: live from the engine, or rebuilt
// from stored points (then only the fields points keep are set, and
// valued says which indicators had a value).
type resultView struct {
	res    *scoring.Result
	valued [][]bool // per assessment and indicator; nil: use HasValue
	asOf   bool     // rebuilt from stored points
}

func (v resultView) hasValue(wi, ii int) bool {
	if v.valued != nil {
		return v.valued[wi][ii]
	}
	return v.res.Assessments[wi].Indicators[ii].HasValue()
}

func enterpriseLinks(id string) Links {
	base := "/api/v1/enterprises/" + id
	return Links{Self: base, Page: "/enterprises/" + id, Report: base + "/report", ReportPDF: base + "/report?format=pdf", Meters: base + "/meters", Declarations: base + "/declarations"}
}

// summaryOf builds an enterprise's summary at now (for the audit's
// overdue flag); v.res may be nil (not evaluated yet).
func summaryOf(ent *registry.Enterprise, std *scoring.Standard, pol *scoring.Policy, v resultView, fresh DataFreshness, now time.Time) EnterpriseSummary {
	s := EnterpriseSummary{ID: ent.ID, Name: ent.Name, NameZH: ent.NameZH, Industry: ent.Industry, Region: ent.Region,
		USCC: ent.USCC, DischargePermit: ent.DischargePermit, Window: pol.Window, Freshness: fresh, Links: enterpriseLinks(ent.ID),
		CodeText: codeText(""), CodeReasons: []ReasonDTO{}}
	s.Freshness.Meters = len(ent.Meters)
	if s.Freshness.StaleMeters == nil {
		s.Freshness.StaleMeters = []string{}
	}
	r := v.res
	if r == nil {
		return s
	}
	s.Evaluated = true
	s.EvaluatedAt, s.DataThrough, s.DataTime = timePtr(r.Time), timePtr(r.DataThrough), timePtr(r.DataTime)
	s.CatchingUp, s.CodeHeld = r.CatchingUp, r.CodeHeld
	s.Code, s.CodeText, s.CodeSince = codePtr(r.Code), codeText(r.Code), timePtr(r.CodeSince)
	x := explainer{std, pol}
	loc := localZone(std.UTCOffset)
	s.CodeReasons = x.reasons(reasonsOf(r.CodeReasons))
	s.PendingCode, s.PendingSince = codePtr(r.PendingCode), timePtr(r.PendingSince)
	if r.PendingCode != "" {
		s.PendingChange = &PendingChange{Code: string(r.PendingCode), Since: r.PendingSince.UTC(), TakesEffect: timePtr(r.PendingDue),
			TakesEffectOn: datePtr(r.PendingDue, loc), Reasons: x.reasons(reasonsOf(r.PendingReasons))}
		s.PendingChange.Note = x.pendingNote(string(r.Code), s.PendingChange, loc)
	}
	s.LastAudit, s.NextAuditDue = datePtr(r.LastAudit, loc), datePtr(r.NextAuditDue, loc)
	s.AuditNote = auditNote(r.NextAuditDue, now, loc)
	s.AuditOverdue = s.AuditNote != nil
	s.AuditIntervalMonths = pol.AuditInterval(r.Code)
	if len(r.StaleMeters) > 0 {
		s.Freshness.StaleMeters = r.StaleMeters
	}
	if a, ok := r.Assessment(pol.Window); ok {
		s.Level, s.Score = levelPtr(a.Level), f64(a.Score)
		s.YI, s.YII, s.YIII = f64(a.Y[0]), f64(a.Y[1]), f64(a.Y[2])
		s.Completeness = f64(a.Completeness)
		s.ScoreNote = x.scoreNote(a.Completeness)
		if a.Level == scoring.NoLevel {
			n := x.notGraded(a)
			s.LevelNote = &n
		}
	}
	for _, w := range std.Windows {
		if w.Name == pol.Window {
			continue
		}
		if a, ok := r.Assessment(w.Name); ok {
			s.Official = &LevelRef{Window: w.Name, Level: levelPtr(a.Level), Score: f64(a.Score), Completeness: f64(a.Completeness),
				ScoreNote: x.scoreNote(a.Completeness)}
			if a.Level == scoring.NoLevel {
				n := x.notGraded(a)
				s.Official.LevelNote = &n
			}
			break
		}
	}
	return s
}

func assessmentsOf(std *scoring.Standard, v resultView) []AssessmentDTO {
	out := make([]AssessmentDTO, 0, len(v.res.Assessments))
	for wi := range v.res.Assessments {
		a := &v.res.Assessments[wi]
		d := AssessmentDTO{Window: a.Window, From: a.From.UTC(), To: a.To.UTC(), YI: a.Y[0], YII: a.Y[1], YIII: a.Y[2],
			Level: levelPtr(a.Level), Score: a.Score, Completeness: a.Completeness, Capped: a.Capped,
			RestrictiveLevel: levelPtr(a.Restrictive), RestrictiveMissing: a.RestrictiveMissing,
			Exceedance: nonNil(a.Exceedance), Indicators: make([]IndicatorDTO, 0, len(a.Indicators)), Totals: make([]TotalDTO, 0, len(a.Totals))}
		for ii := range a.Indicators {
			d.Indicators = append(d.Indicators, indicatorOf(std.Indicators[ii], &a.Indicators[ii], v.hasValue(wi, ii)))
		}
		for _, t := range a.Totals {
			td := TotalDTO{ID: t.ID, Quantity: t.Quantity, Unit: t.Unit, Value: t.Value}
			if !v.asOf {
				td.Coverage = f64(t.Coverage)
			}
			d.Totals = append(d.Totals, td)
		}
		out = append(out, d)
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// definitionOf returns an indicator's definition without a result.
func definitionOf(ind *scoring.Indicator) IndicatorDTO {
	d := IndicatorDTO{ID: ind.ID, NameZH: ind.NameZH, NameEN: ind.NameEN, Group: ind.Group.ID, Unit: ind.Unit,
		Kind: string(ind.Kind), Direction: string(ind.Direction), Restrictive: ind.Restrictive,
		Weight: ind.EffectiveWeight(), Src: nonNil(ind.Src)}
	if ind.Kind == scoring.Qualitative {
		d.Direction = ""
		d.Descriptions = &Benchmarks{ind.Descriptions[0], ind.Descriptions[1], ind.Descriptions[2]}
	} else {
		d.Benchmarks = &Benchmarks{ind.Benchmarks[0], ind.Benchmarks[1], ind.Benchmarks[2]}
	}
	if ind.Metered() {
		d.Source = "metered"
	} else {
		d.Source = "declared"
	}
	return d
}

func indicatorOf(ind *scoring.Indicator, r *scoring.IndicatorResult, valued bool) IndicatorDTO {
	d := definitionOf(ind)
	d.Status, d.Weight, d.Reason, d.Evidence, d.Notes = string(r.Status), r.Weight, r.Reason, r.Evidence, r.Notes
	if r.Source != "" {
		d.Source = r.Source
	}
	if valued && ind.Kind == scoring.Quantitative {
		d.Value = f64(r.Value)
	}
	if r.Status == scoring.Graded {
		d.Level, d.Score = levelPtr(r.Level), f64(r.Score)
	}
	if ind.Metered() {
		d.Coverage = f64(r.Coverage)
		d.Short = r.Short
	}
	return d
}

func laggingOf(std *scoring.Standard, ls []scoring.Lagging) []LaggingDTO {
	out := make([]LaggingDTO, 0, len(ls))
	for _, l := range ls {
		ind, ok := std.Indicator(l.Indicator)
		if !ok {
			continue
		}
		d := LaggingDTO{Indicator: l.Indicator, NameZH: ind.NameZH, NameEN: ind.NameEN, Unit: ind.Unit, Restrictive: l.Restrictive,
			Level: levelPtr(l.Level), Target: levelPtr(l.Target), Gap: l.Gap}
		if ind.Kind == scoring.Quantitative {
			d.Value, d.Needed = f64(l.Value), f64(l.Needed)
		}
		d.Solutions = matchesOf(ind, l.Solutions)
		out = append(out, d)
	}
	return out
}

func matchesOf(ind *scoring.Indicator, ms []scoring.Match) []MatchDTO {
	out := make([]MatchDTO, 0, len(ms))
	for _, m := range ms {
		md := MatchDTO{ID: m.Solution.ID, NameZH: m.Solution.NameZH, NameEN: m.Solution.NameEN, Description: m.Solution.Description,
			Cost: string(m.Solution.Cost), PaybackYears: m.Solution.PaybackYears, ProjectedLevel: levelPtr(m.ProjectedLevel),
			Benefit: m.Benefit, ReachesTarget: m.ReachesTarget, Src: nonNil(m.Solution.Src)}
		if ind.Kind == scoring.Quantitative {
			md.ProjectedValue = f64(m.Projected)
		}
		out = append(out, md)
	}
	return out
}

// nextLevelOf plans the next level on the policy's window of v (nil when
// there is no assessment on it).
func nextLevelOf(std *scoring.Standard, pol *scoring.Policy, v resultView, lib *scoring.Library) *NextLevelDTO {
	if v.res == nil {
		return nil
	}
	a, ok := v.res.Assessment(pol.Window)
	if !ok {
		return nil
	}
	p := scoring.NextLevel(std, a, lib)
	d := &NextLevelDTO{Window: a.Window, Level: levelPtr(p.Level), Target: levelPtr(p.Target), Reachable: p.Reachable, Reason: p.Reason,
		Y: p.Y, YAfter: p.After, Steps: make([]StepDTO, 0, len(p.Steps))}
	for _, s := range p.Steps {
		ind, ok := std.Indicator(s.Indicator)
		if !ok {
			continue
		}
		sd := StepDTO{Indicator: s.Indicator, NameZH: ind.NameZH, NameEN: ind.NameEN, Unit: ind.Unit, Kind: string(ind.Kind),
			Direction: string(ind.Direction), Restrictive: s.Restrictive, Mandatory: s.Mandatory, Status: string(s.Status), Reason: s.Reason,
			Level: levelPtr(s.Level), Target: levelPtr(s.Target), NeededText: s.NeededText, Gain: s.Gain, Solutions: matchesOf(ind, s.Solutions)}
		if ind.Kind == scoring.Quantitative {
			sd.Needed = f64(s.Needed)
			if s.HasValue {
				sd.Value = f64(s.Value)
			}
		}
		d.Steps = append(d.Steps, sd)
	}
	return d
}
