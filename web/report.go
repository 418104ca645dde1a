package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/review"
	"github.com/cleanprod/cleanprod/scoring"
)

// Report is the cleaner-production audit report of one enterprise: what
// the report templates (HTML) and the built-in PDF writer render.
type Report struct {
	clock     // formats times in the standard's local time
	Generated time.Time
	From, To  time.Time // the period of trends, events and coverage
	// AsOf is set when the assessment was rebuilt from the points stored
	// at Enterprise.EvaluatedAt rather than taken live from the engine.
	AsOf       bool
	Enterprise EnterpriseDetail
	Profile    Profile
	Coverage   Coverage
	// Totals are the absolute window totals, one row per quantity with a
	// value per assessment of Enterprise.Assessments.
	Totals []TotalRow
	// Window and Other name the policy's window and the other one, whose
	// values the indicator table shows side by side.
	Window, Other string
	Live          *AssessmentDTO
	Official      *AssessmentDTO
	Groups        []TableGroup
	// Plan is the action plan: the solution library's measures for the
	// steps to the next level and the other lagging indicators, grouped
	// by measure in the 无/低费 and 中/高费 tiers.
	Plan   []PlanTier
	Trends []Trend
	// EventRows are the events of the period as the report lists them
	// (stale meters and hourly exceedances summarised per day);
	// EventsOmitted counts the rows left out beyond maxEventRows.
	EventRows     []EventRow
	EventsOmitted int
	// Declarations are the enterprise's declarations with their review
	// (superseded ones left out), newest valid_from first by indicator.
	Declarations []DeclarationDTO
	Codes        []CodeSpecDTO
	Standard     StandardRef
	// Provisional is set while the standard has estimated benchmarks.
	Provisional Provisional

	explain explainer
}

// Profile describes the enterprise's metering.
type Profile struct {
	Gateways   []GatewayProfile
	Quantities []QuantityProfile
	Workshops  []string
	Meters     int
}

// GatewayProfile is one gateway.
type GatewayProfile struct {
	ID, Description string
	Meters          int
}

// QuantityProfile counts the meters of one quantity.
type QuantityProfile struct {
	Quantity, Unit string
	Meters         int
}

// Coverage says how much data stands behind the assessment.
type Coverage struct {
	Windows         []WindowCoverage
	Meters          int
	MetersReporting int // with a reading in the period (since the server started)
	StaleMeters     []string
	// StaleByGateway are StaleMeters by gateway, as the report lists them.
	StaleByGateway []StaleGroup
	Evaluations    int // stored evaluations in the period
	First, Last    *time.Time
}

// WindowCoverage is the data completeness of one window.
type WindowCoverage struct {
	Window               string
	From, To             time.Time
	Completeness         float64
	Graded, Metered      int // metered indicators graded / applicable
	Insufficient         []string
	MinCompleteness      float64
	BelowMinCompleteness bool
}

// TableGroup is an indicator group of the indicator table.
type TableGroup struct {
	ID, NameZH, NameEN string
	Weight             float64
	Rows               []TableRow
}

// TableRow is one indicator on the policy's window and the other one.
type TableRow struct {
	Live     IndicatorDTO
	Official *IndicatorDTO
}

// TotalRow is one quantity's totals on the report's windows.
type TotalRow struct {
	ID, NameZH, NameEN, Unit string
	// Values and Coverage are per assessment (nil: not metered on that
	// window; Coverage also nil when rebuilt from stored points).
	Values   []*float64
	Coverage []*float64
}

// Partial reports whether the total of assessment i misses part of its
// window (coverage below 99.5 %, shown as a percentage).
func (r TotalRow) Partial(i int) bool {
	return i < len(r.Coverage) && r.Coverage[i] != nil && *r.Coverage[i] < 0.995
}

// Trend is the chart of one key indicator.
type Trend struct {
	Indicator IndicatorDTO
	Why       string // next (a step to the next level), lagging, restrictive or weight
	Points    int
	SVG       template.HTML

	series []chartPoint // for the built-in PDF writer
	def    *scoring.Indicator
}

// Provisional says whether the standard in force has estimated benchmarks:
// while it has, every page that shows levels carries a banner saying they
// are provisional.
type Provisional struct {
	Estimated  []string // ids of the indicators with src: estimate
	Indicators int      // indicators of the standard
}

func provisionalOf(std *scoring.Standard) Provisional {
	return Provisional{Estimated: std.Estimated(), Indicators: len(std.Indicators)}
}

// StandardRef is the provenance of the standard in force.
type StandardRef struct {
	ID, NameZH, NameEN, File string
	Src                      []string
	Sources                  []SourceRef
	PolicyID                 string
	PolicySrc                []string
	Method                   string
}

// SourceRef is one source tag and its citation.
type SourceRef struct{ Tag, Citation string }

// reportInput is everything a report is built from.
type reportInput struct {
	ent      *registry.Enterprise
	std      *scoring.Standard
	pol      *scoring.Policy
	view     resultView
	lib      *scoring.Library // matches the steps to the next level (nil: none)
	points   PointReader
	meters   MeterStatus
	from, to time.Time
	now      time.Time
}

// maxTrends bounds the charts of a report.
const maxTrends = 6

// buildReport shapes a result into a report; it reads the stored points
// for trends, events and coverage.
func buildReport(ctx context.Context, in reportInput) (*Report, error) {
	std, pol, res := in.std, in.pol, in.view.res
	rep := &Report{clock: clock{localZone(std.UTCOffset)}, Generated: in.now.UTC(), From: in.from.UTC(), To: in.to.UTC(), AsOf: in.view.asOf, Window: pol.Window,
		Standard: StandardRef{ID: std.ID, NameZH: std.NameZH, NameEN: std.NameEN, File: std.File, Src: std.Src,
			PolicyID: pol.ID, PolicySrc: pol.Src, Method: methodText}, Provisional: provisionalOf(std)}
	for _, c := range pol.Codes {
		rep.Codes = append(rep.Codes, CodeSpecDTO{Code: string(c.Code), AuditIntervalMonths: c.AuditIntervalMonths})
	}
	for tag, cite := range std.Sources {
		rep.Standard.Sources = append(rep.Standard.Sources, SourceRef{tag, cite})
	}
	slices.SortFunc(rep.Standard.Sources, func(a, b SourceRef) int { return compareTags(a.Tag, b.Tag) })

	// Profile.
	ent := in.ent
	rep.Profile.Meters = len(ent.Meters)
	qs := map[string]*QuantityProfile{}
	for _, g := range ent.Gateways {
		rep.Profile.Gateways = append(rep.Profile.Gateways, GatewayProfile{ID: g.ID, Description: g.Description, Meters: len(g.Meters)})
	}
	for _, m := range ent.Meters {
		q := qs[m.Quantity.Name]
		if q == nil {
			q = &QuantityProfile{Quantity: m.Quantity.Name, Unit: m.Quantity.Unit}
			qs[m.Quantity.Name] = q
		}
		q.Meters++
		if m.Workshop != "" && !slices.Contains(rep.Profile.Workshops, m.Workshop) {
			rep.Profile.Workshops = append(rep.Profile.Workshops, m.Workshop)
		}
	}
	for _, q := range qs {
		rep.Profile.Quantities = append(rep.Profile.Quantities, *q)
	}
	slices.SortFunc(rep.Profile.Quantities, func(a, b QuantityProfile) int { return strings.Compare(a.Quantity, b.Quantity) })
	slices.Sort(rep.Profile.Workshops)

	// The enterprise, its assessments and lagging indicators.
	fresh := DataFreshness{}
	if in.meters != nil {
		var last time.Time
		for _, m := range ent.Meters {
			if ms, ok := in.meters.Meter(ent.ID, m.ID); ok {
				if ms.Time.After(last) {
					last = ms.Time
				}
				if !ms.Time.Before(in.from) {
					rep.Coverage.MetersReporting++
				}
			}
		}
		fresh.LastReading = timePtr(last)
	}
	rep.explain = explainer{std, pol}
	rep.Enterprise = EnterpriseDetail{EnterpriseSummary: summaryOf(ent, std, pol, in.view, fresh, in.now),
		Assessments: assessmentsOf(std, in.view), Lagging: laggingOf(std, res.Lagging)}
	rep.Enterprise.NextLevel = nextLevelOf(std, pol, in.view, in.lib)
	rep.Enterprise.EstimatedBenchmarks = nonNil(std.Estimated())
	rep.Plan = actionPlan(rep.planIndicators())
	rep.addTotals()
	for i := range rep.Enterprise.Assessments {
		a := &rep.Enterprise.Assessments[i]
		if a.Window == pol.Window {
			rep.Live = a
		} else if rep.Official == nil {
			rep.Official, rep.Other = a, a.Window
		}
	}
	if rep.Live == nil {
		return nil, fmt.Errorf("report of %s: no assessment on window %s", ent.ID, pol.Window)
	}
	rep.addSavings(std)

	// Indicator table by group.
	for _, g := range std.Groups {
		tg := TableGroup{ID: g.ID, NameZH: g.NameZH, NameEN: g.NameEN, Weight: g.Weight}
		for _, ind := range g.Indicators {
			row := TableRow{Live: rep.Live.Indicators[ind.Index]}
			if rep.Official != nil {
				row.Official = &rep.Official.Indicators[ind.Index]
			}
			tg.Rows = append(tg.Rows, row)
		}
		rep.Groups = append(rep.Groups, tg)
	}

	// Coverage.
	rep.Coverage.Meters = len(ent.Meters)
	rep.Coverage.StaleMeters = nonNil(res.StaleMeters)
	rep.Coverage.StaleByGateway = staleByGateway(ent, rep.Coverage.StaleMeters)
	for _, a := range rep.Enterprise.Assessments {
		wc := WindowCoverage{Window: a.Window, From: a.From, To: a.To, Completeness: a.Completeness, MinCompleteness: pol.MinCompleteness,
			BelowMinCompleteness: a.Completeness < pol.MinCompleteness}
		for _, r := range a.Indicators {
			if r.Coverage == nil || r.Status == string(scoring.NotApplicable) {
				continue
			}
			wc.Metered++
			if r.Status == string(scoring.Graded) {
				wc.Graded++
			} else {
				wc.Insufficient = append(wc.Insufficient, r.ID)
			}
		}
		rep.Coverage.Windows = append(rep.Coverage.Windows, wc)
	}
	if in.points != nil {
		scores, err := in.points.Points(ctx, scoring.MeasurementScore, map[string]string{"enterprise": ent.ID, "window": pol.Window}, in.from, in.to.Add(time.Nanosecond))
		if err != nil {
			return nil, fmt.Errorf("report of %s: read scores: %w", ent.ID, err)
		}
		rep.Coverage.Evaluations = len(scores)
		if len(scores) > 0 {
			rep.Coverage.First, rep.Coverage.Last = timePtr(scores[0].Time), timePtr(scores[len(scores)-1].Time)
		}
		evs, err := in.points.Points(ctx, scoring.MeasurementEvent, map[string]string{"enterprise": ent.ID}, in.from, in.to.Add(time.Nanosecond))
		if err != nil {
			return nil, fmt.Errorf("report of %s: read events: %w", ent.ID, err)
		}
		var all []scoring.Event
		for _, p := range evs {
			if ev, ok := scoring.EventFromPoint(p); ok {
				all = append(all, ev)
			}
		}
		gateways := map[string]string{}
		for _, m := range ent.Meters {
			if m.Gateway != nil {
				gateways[m.ID] = m.Gateway.ID
			}
		}
		gateway := func(meter string) string { return gateways[meter] }
		rep.EventRows, rep.EventsOmitted = groupEvents(all, gateway, rep.loc, rep.explain)
		if err := rep.addTrends(ctx, in); err != nil {
			return nil, err
		}
		recs, err := review.Records(ctx, in.points, review.Filter{Enterprise: ent.ID})
		if err != nil {
			return nil, fmt.Errorf("report of %s: read declarations: %w", ent.ID, err)
		}
		recs = slices.DeleteFunc(recs, func(r review.Record) bool { return r.State == review.Superseded })
		rep.Declarations = declarationDTOs(std, recs, in.to)
	}
	return rep, nil
}

// addTotals tabulates the window totals of the assessments.
func (rep *Report) addTotals() {
	as := rep.Enterprise.Assessments
	row := map[string]int{}
	for ai, a := range as {
		for _, t := range a.Totals {
			i, ok := row[t.ID]
			if !ok {
				zh, en := totalName(t)
				i = len(rep.Totals)
				row[t.ID] = i
				rep.Totals = append(rep.Totals, TotalRow{ID: t.ID, NameZH: zh, NameEN: en, Unit: t.Unit,
					Values: make([]*float64, len(as)), Coverage: make([]*float64, len(as))})
			}
			rep.Totals[i].Values[ai], rep.Totals[i].Coverage[ai] = f64(t.Value), t.Coverage
		}
	}
	rank := func(id string) int {
		if i := slices.Index(totalOrder, id); i >= 0 {
			return i
		}
		return len(totalOrder)
	}
	slices.SortStableFunc(rep.Totals, func(a, b TotalRow) int { return rank(a.ID) - rank(b.ID) })
}

// totalOrder is the order of the usual totals in the report: output,
// energy, water, materials, waste, then masses of pollutants; others follow
// in the order of the assessment.
var totalOrder = []string{"vehicles", "bodies", "ecoat_area", scoring.EnergyTotal, "electricity", "pv_electricity", "green_electricity",
	"natural_gas", "steam", "purchased_heat", "diesel", "fresh_water", "recycled_water", "reclaimed_water", "raw_wastewater", "wastewater",
	"paint_used", "low_voc_paint", "hazardous_waste", "solid_waste", "solid_waste_reused", "load_voc", "load_cod_raw_wastewater", "load_cod"}

// totalNames are the report's names of the usual totals.
var totalNames = map[string][2]string{
	scoring.EnergyTotal:       {"综合能耗", "Comprehensive energy"},
	"vehicles":                {"整车产量", "Vehicles produced"},
	"bodies":                  {"车身数", "Bodies through e-coat"},
	"ecoat_area":              {"电泳涂装面积", "E-coated area"},
	"electricity":             {"用电量", "Electricity"},
	"pv_electricity":          {"自发可再生电力", "On-site renewable electricity"},
	"green_electricity":       {"外购绿电", "Purchased green electricity"},
	"natural_gas":             {"天然气", "Natural gas"},
	"steam":                   {"外购蒸汽", "Purchased steam"},
	"purchased_heat":          {"外购热力", "Purchased heat"},
	"diesel":                  {"柴油", "Diesel"},
	"fresh_water":             {"新鲜水用量", "Fresh water"},
	"recycled_water":          {"重复利用水量", "Water reused"},
	"reclaimed_water":         {"中水/雨水回用量", "Reclaimed water and rainwater used"},
	"wastewater":              {"废水排放量", "Wastewater discharged"},
	"raw_wastewater":          {"废水产生量(处理前)", "Wastewater generated (before treatment)"},
	"paint_used":              {"涂料用量", "Coatings used"},
	"low_voc_paint":           {"低VOCs涂料用量", "Low-VOC coatings used"},
	"hazardous_waste":         {"危险废物产生量", "Hazardous waste generated"},
	"solid_waste":             {"一般工业固体废物产生量", "General solid waste generated"},
	"solid_waste_reused":      {"一般工业固体废物利用量", "General solid waste utilised"},
	"load_voc":                {"VOCs排放量(排气筒)", "VOC emitted (stacks)"},
	"load_cod_raw_wastewater": {"COD产生量(处理前)", "COD generated (before treatment)"},
	"load_cod":                {"COD排放量", "COD discharged"},
}

// totalName returns the Chinese and English names of a total: the usual
// ones by id, else the quantity's description.
func totalName(t TotalDTO) (zh, en string) {
	if n, ok := totalNames[t.ID]; ok {
		return n[0], n[1]
	}
	en = t.ID
	if q, ok := registry.LookupQuantity(t.Quantity); ok {
		en = q.Description
		if strings.HasPrefix(t.ID, "load_") {
			en += " (mass)"
		}
	}
	return "", en
}

// addTrends charts the key indicators: the metered steps to the next level
// first, then the other lagging ones, then restrictive ones, then the
// heaviest.
func (rep *Report) addTrends(ctx context.Context, in reportInput) error {
	type cand struct {
		ind *scoring.Indicator
		why string
	}
	var cands []cand
	seen := map[string]bool{}
	add := func(ind *scoring.Indicator, why string) {
		if ind.Metered() && !seen[ind.ID] && rep.Live.Indicators[ind.Index].Status != string(scoring.NotApplicable) {
			seen[ind.ID] = true
			cands = append(cands, cand{ind, why})
		}
	}
	if n := rep.Enterprise.NextLevel; n != nil {
		for _, s := range n.Steps {
			if ind, ok := in.std.Indicator(s.Indicator); ok {
				add(ind, "next")
			}
		}
	}
	for _, l := range rep.Enterprise.Lagging {
		if ind, ok := in.std.Indicator(l.Indicator); ok {
			add(ind, "lagging")
		}
	}
	for _, ind := range in.std.Indicators {
		if ind.Restrictive {
			add(ind, "restrictive")
		}
	}
	byWeight := slices.Clone(in.std.Indicators)
	slices.SortStableFunc(byWeight, func(a, b *scoring.Indicator) int {
		return -cmpFloat(a.EffectiveWeight(), b.EffectiveWeight())
	})
	for _, ind := range byWeight {
		add(ind, "weight")
	}
	for _, c := range cands {
		if len(rep.Trends) == maxTrends {
			break
		}
		ps, err := in.points.Points(ctx, scoring.MeasurementIndicator,
			map[string]string{"enterprise": in.ent.ID, "window": in.pol.Window, "indicator": c.ind.ID}, in.from, in.to.Add(time.Nanosecond))
		if err != nil {
			return fmt.Errorf("report of %s: read %s: %w", in.ent.ID, c.ind.ID, err)
		}
		var series []chartPoint
		for _, p := range ps {
			if v, ok := p.Fields["value"]; ok {
				if x := toFloat(v); !math.IsNaN(x) && !math.IsInf(x, 0) {
					series = append(series, chartPoint{p.Time, x})
				}
			}
		}
		series = thin(series, 240)
		rep.Trends = append(rep.Trends, Trend{Indicator: rep.Live.Indicators[c.ind.Index], Why: c.why, Points: len(ps),
			SVG: trendSVG(series, c.ind, in.from, in.to, rep.loc), series: series, def: c.ind})
	}
	return nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compareTags orders source tags S1, S2, ..., S10 naturally, others after.
func compareTags(a, b string) int {
	na, oka := tagNumber(a)
	nb, okb := tagNumber(b)
	switch {
	case oka && okb && na != nb:
		return na - nb
	case oka != okb:
		if oka {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

func tagNumber(s string) (int, bool) {
	if len(s) < 2 || s[0] != 'S' {
		return 0, false
	}
	n := 0
	for _, r := range s[1:] {
		if r < '0' || r > '9' {
			return 0, false
		}
		n = n*10 + int(r-'0')
	}
	return n, true
}

// report serves GET /api/v1/enterprises/{id}/report.
func (s *server) report(c *gin.Context) {
	id := c.Param("id")
	ent, _ := s.registry(c).Enterprise(id)
	format, err := enumParam(c, "format", "html", "html", "pdf")
	if err != nil {
		s.fail(c, err)
		return
	}
	now := s.now()
	from, to, err := period(c, now, 30*24*time.Hour, 400*24*time.Hour, s.loc(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	var at time.Time
	if _, given := c.GetQuery("to"); given {
		at = to
	}
	v, err := s.view(c, id, at)
	if err != nil {
		s.fail(c, err)
		return
	}
	if v.res == nil {
		c.Header("Retry-After", "10")
		s.fail(c, errorf(http.StatusServiceUnavailable, codeNotEvaluated, "%s has not been evaluated yet; the scorer evaluates every enterprise within a minute of starting", id))
		return
	}
	snap := s.snapshot(c)
	rep, err := buildReport(c.Request.Context(), reportInput{ent: ent, std: snap.Standard, pol: snap.Policy, view: v, lib: s.solutions(snap), points: s.Points,
		meters: s.Meters, from: from, to: to, now: now})
	if err != nil {
		s.fail(c, err)
		return
	}
	html, err := renderReportHTML(rep)
	if err != nil {
		s.fail(c, err)
		return
	}
	name := fmt.Sprintf("cleanprod-report-%s-%s", id, to.In(s.loc(c)).Format("20060102"))
	if format == "pdf" {
		if s.PDF == nil {
			s.fail(c, errorf(http.StatusServiceUnavailable, codeUnavailable, "no PDF renderer is configured"))
			return
		}
		pdf, err := s.PDF.RenderPDF(c.Request.Context(), rep, html)
		switch {
		case errors.Is(err, ErrNoPDFFont):
			// No way to print Chinese here: the same report as HTML, which
			// any browser prints, and the reason in a header.
			s.log.Warn("report PDF unavailable; serving HTML", "enterprise", id, "err", err)
			c.Header(PDFUnavailableHeader, err.Error())
		case err != nil:
			s.fail(c, err)
			return
		default:
			c.Header("Content-Disposition", `inline; filename="`+name+`.pdf"`)
			c.Data(http.StatusOK, "application/pdf", pdf)
			return
		}
	}
	c.Header("Content-Security-Policy", reportCSP)
	c.Header("Content-Disposition", `inline; filename="`+name+`.html"`)
	c.Data(http.StatusOK, "text/html; charset=utf-8", html)
}

// PDFUnavailableHeader is set on a report asked for as PDF and served as
// HTML, because no renderer can print it; its value says why.
const PDFUnavailableHeader = "X-Cleanprod-Pdf-Unavailable"

// reportCSP keeps the report self-contained: no script, no fetch.
const reportCSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

// ReportOptions describe a report rendered outside the server (the
// report subcommand): the assessment is rebuilt from the points stored
// at or before To.
type ReportOptions struct {
	Registry   *registry.Registry
	Standard   *scoring.Standard
	Policy     *scoring.Policy
	Solutions  *scoring.Library
	Points     PointReader
	Enterprise string
	From, To   time.Time
	Format     string // html or pdf
	PDF        PDFRenderer
	Now        time.Time
}

// RenderReport renders a report from stored points.
func RenderReport(ctx context.Context, o ReportOptions) ([]byte, error) {
	ent, ok := o.Registry.Enterprise(o.Enterprise)
	if !ok {
		return nil, fmt.Errorf("no enterprise %q in the gateway registry", o.Enterprise)
	}
	v, err := resultAt(ctx, o.Points, o.Standard, o.Policy, o.Solutions, o.Enterprise, o.To)
	if err != nil {
		return nil, err
	}
	rep, err := buildReport(ctx, reportInput{ent: ent, std: o.Standard, pol: o.Policy, view: v, lib: o.Solutions, points: o.Points, from: o.From, to: o.To, now: o.Now})
	if err != nil {
		return nil, err
	}
	html, err := renderReportHTML(rep)
	if err != nil || o.Format != "pdf" {
		return html, err
	}
	if o.PDF == nil {
		return nil, fmt.Errorf("no PDF renderer")
	}
	return o.PDF.RenderPDF(ctx, rep, html)
}

func renderReportHTML(rep *Report) ([]byte, error) {
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, "report.html", rep); err != nil {
		return nil, fmt.Errorf("render report: %w", err)
	}
	return b.Bytes(), nil
}
