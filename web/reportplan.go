package web

import (
	"cmp"
	"fmt"
	"html/template"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/scoring"
)

// PlanTier is one cost tier of the report's action plan, as the audit
// practice names them: 无/低费 (no or low cost, done at once) and 中/高费
// (medium or high cost, a project with its own feasibility study).
type PlanTier struct {
	ID       string // "low" or "high"
	NameZH   string
	NameEN   string
	Measures []PlanMeasure
}

// PlanMeasure is one measure of the solution library, listed once with
// every lagging indicator (or step to the next level) it improves.
type PlanMeasure struct {
	ID, NameZH, NameEN, Description string
	Cost                            string // no, low, medium, high
	PaybackYears                    [2]float64
	Src                             []string
	Effects                         []PlanEffect
	// Benefit is the sum of the index points gained on the indicators.
	Benefit float64
	// Steps counts the effects on a step to the next level.
	Steps int
}

// PlanEffect is what a measure does to one indicator.
type PlanEffect struct {
	Indicator, NameZH, NameEN, Unit string
	Step                            bool     // a step to the next level
	Value                           *float64 // current value (nil: none or qualitative)
	Projected                       *float64 // value after the measure
	ProjectedLevel                  *string
	ReachesTarget                   bool
	Benefit                         float64 // index points on this indicator
	// Saving is what the projected value saves over the live window, in
	// SavingUnit (the numerator of the indicator's unit): the change of
	// an intensity times the window's total of its denominator, such as
	// m³ of fresh water for m³/vehicle times the vehicles produced. Nil
	// when the indicator is no simple ratio of two metered totals.
	Saving     *float64
	SavingUnit string
}

// planTierOf returns the action plan's tier of a cost class: "low" for
// no or low cost, "high" for medium, high or anything unknown.
func planTierOf(cost string) string {
	switch cost {
	case string(scoring.CostNo), string(scoring.CostLow):
		return "low"
	}
	return "high"
}

// planIndicator is an indicator the plan considers with its measures.
type planIndicator struct {
	id, zh, en, unit string
	step             bool
	value            *float64
	matches          []MatchDTO
}

// actionPlan groups the measures of the steps to the next level and of the
// lagging indicators by measure: each measure once, with the indicators it
// improves, in the 无/低费 tier then the 中/高费 tier. Within a tier,
// measures helping a step to the next level come first, then by total
// benefit, then cheapest, quickest payback, id. Tiers without measures are
// left out.
func actionPlan(inds []planIndicator) []PlanTier {
	byID := map[string]*PlanMeasure{}
	var order []string
	seen := map[string]bool{}
	for _, in := range inds {
		if seen[in.id] {
			continue
		}
		seen[in.id] = true
		for _, m := range in.matches {
			pm := byID[m.ID]
			if pm == nil {
				pm = &PlanMeasure{ID: m.ID, NameZH: m.NameZH, NameEN: m.NameEN, Description: m.Description, Cost: m.Cost,
					PaybackYears: m.PaybackYears, Src: m.Src}
				byID[m.ID] = pm
				order = append(order, m.ID)
			}
			pm.Effects = append(pm.Effects, PlanEffect{Indicator: in.id, NameZH: in.zh, NameEN: in.en, Unit: in.unit, Step: in.step,
				Value: in.value, Projected: m.ProjectedValue, ProjectedLevel: m.ProjectedLevel, ReachesTarget: m.ReachesTarget, Benefit: m.Benefit})
			pm.Benefit += m.Benefit
			if in.step {
				pm.Steps++
			}
		}
	}
	tiers := []PlanTier{
		{ID: "low", NameZH: "无/低费方案", NameEN: "No- and low-cost measures"},
		{ID: "high", NameZH: "中/高费方案", NameEN: "Medium- and high-cost measures"},
	}
	costRank := func(c string) int {
		if i := slices.Index([]string{"no", "low", "medium", "high"}, c); i >= 0 {
			return i
		}
		return 4
	}
	for _, id := range order {
		pm := byID[id]
		t := &tiers[0]
		if planTierOf(pm.Cost) == "high" {
			t = &tiers[1]
		}
		t.Measures = append(t.Measures, *pm)
	}
	for i := range tiers {
		slices.SortStableFunc(tiers[i].Measures, func(a, b PlanMeasure) int {
			if (a.Steps > 0) != (b.Steps > 0) {
				if a.Steps > 0 {
					return -1
				}
				return 1
			}
			if c := cmp.Compare(b.Benefit, a.Benefit); c != 0 {
				return c
			}
			if c := cmp.Compare(costRank(a.Cost), costRank(b.Cost)); c != 0 {
				return c
			}
			if c := cmp.Compare(a.PaybackYears[0], b.PaybackYears[0]); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
	}
	return slices.DeleteFunc(tiers, func(t PlanTier) bool { return len(t.Measures) == 0 })
}

// planIndicators are the indicators of the report's action plan: the steps
// to the next level, then the other lagging indicators.
func (rep *Report) planIndicators() []planIndicator { return planIndicatorsOf(&rep.Enterprise) }

// planIndicatorsOf are the indicators of an enterprise's action plan: the
// steps to the next level, then the other lagging indicators.
func planIndicatorsOf(e *EnterpriseDetail) []planIndicator {
	var out []planIndicator
	if n := e.NextLevel; n != nil {
		for _, s := range n.Steps {
			out = append(out, planIndicator{id: s.Indicator, zh: s.NameZH, en: s.NameEN, unit: s.Unit, step: true, value: s.Value, matches: s.Solutions})
		}
	}
	for _, l := range e.Lagging {
		out = append(out, planIndicator{id: l.Indicator, zh: l.NameZH, en: l.NameEN, unit: l.Unit, value: l.Value, matches: l.Solutions})
	}
	return out
}

// EventRow is one line of the report's event table: a single event, or a
// summary of many alike (stale meters of one gateway on one day; the hourly
// exceedances of one analyser on one day).
type EventRow struct {
	Time, Last time.Time // first and last event of the row
	Kind       scoring.EventKind
	Count      int
	Resolved   bool // the events announce the end of a condition
	Subject    string
	ZH, EN     string
}

// Until writes when a summary row's last event was: its time of day
// when on the day of its first, else its date and time (local).
func (rep *Report) Until(r EventRow) string {
	if r.Time.In(rep.loc).Format("2006-01-02") == r.Last.In(rep.loc).Format("2006-01-02") {
		return r.Last.In(rep.loc).Format("15:04")
	}
	return rep.DateTime(r.Last)
}

// Summary reports whether the row stands for more than one event.
func (r EventRow) Summary() bool { return r.Count > 1 }

// maxEventRows bounds the report's event table.
const maxEventRows = 60

// groupEvents turns events (any order) into the report's rows, newest
// first: stale meters are summarised in one row per gateway and local
// day, hourly exceedances in one row per analyser and local day; other
// events keep a row each. gateway maps a meter to its gateway ("" when
// unknown: the meter is its own group). At most maxEventRows rows; the
// second result counts the rows left out.
func groupEvents(evs []scoring.Event, gateway func(meter string) string, loc *time.Location, ex explainer) ([]EventRow, int) {
	type key struct {
		kind      scoring.EventKind
		subject   string
		day       string
		resolved  bool
		singleton int
	}
	groups := map[key]*[]scoring.Event{}
	var keys []key
	for i, ev := range evs {
		k := key{kind: ev.Kind, singleton: i + 1}
		switch ev.Kind {
		case scoring.EventStale:
			gw := gateway(ev.Meter)
			if gw == "" {
				gw = ev.Meter
			}
			k = key{kind: ev.Kind, subject: gw, day: ev.Time.In(loc).Format("2006-01-02"), resolved: ev.Resolved}
		case scoring.EventExceedance:
			k = key{kind: ev.Kind, subject: ev.Meter, day: ev.Time.In(loc).Format("2006-01-02")}
		}
		g := groups[k]
		if g == nil {
			g = new([]scoring.Event)
			groups[k] = g
			keys = append(keys, k)
		}
		*g = append(*g, ev)
	}
	rows := make([]EventRow, 0, len(keys))
	for _, k := range keys {
		g := *groups[k]
		slices.SortStableFunc(g, func(a, b scoring.Event) int { return a.Time.Compare(b.Time) })
		first, last := g[0], g[len(g)-1]
		row := EventRow{Time: first.Time, Last: last.Time, Kind: k.kind, Count: len(g), Resolved: first.Resolved}
		switch {
		case len(g) == 1:
			row.Subject = first.Indicator + first.Meter
			if first.Kind == scoring.EventCodeChange {
				row.Subject = string(first.OldCode) + " → " + string(first.NewCode)
			}
			t := ex.event(first)
			row.ZH, row.EN = t.ZH, t.EN
		case k.kind == scoring.EventStale:
			meters := distinctMeters(g)
			row.Subject = k.subject
			if k.resolved {
				row.ZH = fmt.Sprintf("%d 次恢复上报（%d 块仪表）：%s", len(g), len(meters), listShort(meters, 8))
				row.EN = fmt.Sprintf("%d reports resumed (%d meters): %s", len(g), len(meters), listShort(meters, 8))
			} else {
				row.ZH = fmt.Sprintf("%d 次仪表离线（%d 块仪表）：%s", len(g), len(meters), listShort(meters, 8))
				row.EN = fmt.Sprintf("%d stale-meter events (%d meters): %s", len(g), len(meters), listShort(meters, 8))
			}
		default: // exceedances of one analyser on one day
			hi := g[0]
			for _, ev := range g {
				if ev.NewValue > hi.NewValue {
					hi = ev
				}
			}
			row.Subject = k.subject
			row.ZH = fmt.Sprintf("%d 个小时均值超过限值 %s，最高 %s（%s）", len(g), formatNum(hi.OldValue), formatNum(hi.NewValue), hi.Time.In(loc).Format("15:04"))
			row.EN = fmt.Sprintf("%d hourly means above the limit %s, highest %s (%s)", len(g), formatNum(hi.OldValue), formatNum(hi.NewValue), hi.Time.In(loc).Format("15:04"))
		}
		rows = append(rows, row)
	}
	slices.SortStableFunc(rows, func(a, b EventRow) int {
		if c := b.Last.Compare(a.Last); c != 0 {
			return c
		}
		return strings.Compare(a.Subject, b.Subject)
	})
	if len(rows) > maxEventRows {
		return rows[:maxEventRows], len(rows) - maxEventRows
	}
	return rows, 0
}

func distinctMeters(evs []scoring.Event) []string {
	var out []string
	for _, ev := range evs {
		if !slices.Contains(out, ev.Meter) {
			out = append(out, ev.Meter)
		}
	}
	slices.Sort(out)
	return out
}

// listShort joins up to n items and says how many more there are.
func listShort(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:n], ", ") + fmt.Sprintf(" … (+%d)", len(items)-n)
}

// quantityNames are the Chinese names of the registry's quantities.
var quantityNames = map[string]string{
	"electricity": "用电量", "pv_electricity": "自发可再生电力", "green_electricity": "外购绿电", "natural_gas": "天然气",
	"steam": "外购蒸汽", "purchased_heat": "外购热力", "diesel": "柴油", "fresh_water": "新鲜水", "recycled_water": "重复利用水",
	"reclaimed_water": "中水/雨水回用", "wastewater": "废水排放", "raw_wastewater": "废水产生(处理前)", "stack_gas": "排气筒烟气量",
	"vehicles": "整车产量", "bodies": "车身数", "ecoat_area": "电泳涂装面积", "paint_used": "涂料用量", "low_voc_paint": "低VOCs涂料用量",
	"hazardous_waste": "危险废物", "solid_waste": "一般工业固体废物", "solid_waste_reused": "一般工业固体废物利用量",
	"cod": "化学需氧量(COD)", "nh3n": "氨氮(NH₃-N)", "total_nickel": "总镍", "total_phosphorus": "总磷", "ph": "pH 值",
	"voc": "VOCs 排放浓度(治理后)", "voc_inlet": "VOCs 进口浓度(治理前)",
	"so2": "二氧化硫(SO₂)", "nox": "氮氧化物(NOx)", "particulate": "颗粒物",
}

// QuantityZH names a quantity in Chinese ("" when unknown).
func (rep *Report) QuantityZH(q string) string { return quantityNames[q] }

// QuantityEN describes a quantity in English (its id when unknown).
func (rep *Report) QuantityEN(q string) string {
	if d, ok := registry.LookupQuantity(q); ok && d.Description != "" {
		return d.Description
	}
	return q
}

// industryNames are the Chinese names of the registry's industries.
var industryNames = map[string]string{
	"automobile manufacturing":       "汽车制造业",
	"automobile parts manufacturing": "汽车零部件及配件制造",
}

// regionNames are the Chinese names of the registry's regions.
var regionNames = map[string]string{"chongqing": "重庆市"}

// RegionZH names a region in Chinese ("" when unknown).
func (rep *Report) RegionZH(s string) string {
	return regionNames[strings.ToLower(strings.TrimSpace(s))]
}

// IndicatorZH names an indicator of the standard in Chinese, else its id.
func (rep *Report) IndicatorZH(id string) string {
	if rep.explain.std != nil {
		if ind, ok := rep.explain.std.Indicator(id); ok && ind.NameZH != "" {
			return ind.NameZH
		}
	}
	return id
}

// indicatorsZH lists indicators by their Chinese names.
func (r *Report) indicatorsZH(ids []string) string {
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = r.IndicatorZH(id)
	}
	return strings.Join(names, "、")
}

// IndustryZH names an industry in Chinese ("" when unknown).
func (rep *Report) IndustryZH(s string) string {
	return industryNames[strings.ToLower(strings.TrimSpace(s))]
}

var (
	unitPower   = regexp.MustCompile(`\b(N?m|km|cm|mm)([23])\b`)
	unitVehicle = regexp.MustCompile(`/vehicle\b`)
)

// reportUnit writes units as printed in Chinese reports: m² and m³ for m2
// and m3 (also inside mg/m3, L/m2 and the like), and 辆 for the unit
// vehicle and the vehicle of a per-vehicle unit.
func reportUnit(s string) string {
	if s == "vehicle" {
		return "辆"
	}
	s = unitPower.ReplaceAllStringFunc(s, func(m string) string {
		sup := map[byte]string{'2': "²", '3': "³"}[m[len(m)-1]]
		return m[:len(m)-1] + sup
	})
	return unitVehicle.ReplaceAllString(s, "/辆")
}

// U writes a unit (or a text with units) for the report.
func (rep *Report) U(s string) string { return reportUnit(s) }

var reportCSS = mustRead("templates/report.css")

// PrintCSS is the report's own stylesheet: its tables, and the printed
// page with a running header (the report and the enterprise) and the page
// number as 第 N 页 / 共 M 页 in the margin boxes Chromium prints.
func (rep *Report) PrintCSS() template.CSS {
	e := rep.Enterprise
	name := e.Name
	if e.NameZH != "" {
		name = e.NameZH + " · " + e.Name
	}
	head := "清洁生产审核报告 · " + name + " · " + rep.Date(rep.To)
	page := `@page { size: A4; margin: 16mm 12mm 16mm;
  @top-left { content: "` + cssString(head) + `"; font-size: 8px; color: #57606a; font-family: "WenQuanYi Micro Hei", "Noto Sans CJK SC", sans-serif; }
  @bottom-center { content: "第 " counter(page) " 页 / 共 " counter(pages) " 页"; font-size: 8px; color: #57606a; font-family: "WenQuanYi Micro Hei", "Noto Sans CJK SC", sans-serif; }
  @bottom-right { content: "` + cssString(e.ID) + `"; font-size: 7px; color: #8c959f; }
}
@page :first { @top-left { content: none; } }
`
	return template.CSS(reportCSS + page)
}

// cssString escapes s for a double-quoted CSS string inside a <style>
// element: quotes, backslashes, line breaks and angle brackets become
// CSS escapes.
func cssString(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '"' || r == '\\' || r == '<' || r == '>' || r == '&' || r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\%x ", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// StaleGroup is the stale meters of one gateway.
type StaleGroup struct {
	Gateway string // "" for meters of no known gateway
	Meters  []string
	// List names up to eight meters and counts the others.
	List string
}

// staleByGateway groups stale meters by their gateway, in the order of
// the enterprise's gateways; meters of no gateway come last.
func staleByGateway(ent *registry.Enterprise, stale []string) []StaleGroup {
	if len(stale) == 0 {
		return nil
	}
	gw := map[string]string{}
	var order []string
	for _, g := range ent.Gateways {
		order = append(order, g.ID)
	}
	for _, m := range ent.Meters {
		if m.Gateway != nil {
			gw[m.ID] = m.Gateway.ID
		}
	}
	by := map[string][]string{}
	for _, m := range stale {
		by[gw[m]] = append(by[gw[m]], m)
	}
	var out []StaleGroup
	for _, id := range append(order, "") {
		if ms := by[id]; len(ms) > 0 {
			slices.Sort(ms)
			out = append(out, StaleGroup{Gateway: id, Meters: ms, List: listShort(ms, 8)})
			delete(by, id)
		}
	}
	return out
}

// ratioFormula matches an indicator formula that is one total over
// another, such as "fresh_water / vehicles".
var ratioFormula = regexp.MustCompile(`^\s*([a-z0-9_]+)\s*/\s*([a-z0-9_]+)\s*$`)

// addSavings puts into the action plan what each projected value saves
// in physical units over the live window (see PlanEffect.Saving).
func (rep *Report) addSavings(std *scoring.Standard) {
	live := -1
	for i := range rep.Enterprise.Assessments {
		if &rep.Enterprise.Assessments[i] == rep.Live {
			live = i
		}
	}
	if live < 0 {
		return
	}
	totals := map[string]float64{}
	for _, t := range rep.Totals {
		if live < len(t.Values) && t.Values[live] != nil {
			totals[t.ID] = *t.Values[live]
		}
	}
	for ti := range rep.Plan {
		for mi := range rep.Plan[ti].Measures {
			for ei := range rep.Plan[ti].Measures[mi].Effects {
				ef := &rep.Plan[ti].Measures[mi].Effects[ei]
				ind, ok := std.Indicator(ef.Indicator)
				if !ok || ef.Value == nil || ef.Projected == nil || ind.Direction != scoring.LowerBetter {
					continue
				}
				m := ratioFormula.FindStringSubmatch(ind.Formula)
				num, _, found := strings.Cut(ind.Unit, "/")
				den, ok := totals[m2(m)]
				if m == nil || !found || num == "" || !ok {
					continue
				}
				saving := (*ef.Value - *ef.Projected) * den
				if saving > 0 && !math.IsInf(saving, 0) && !math.IsNaN(saving) {
					ef.Saving, ef.SavingUnit = &saving, num
				}
			}
		}
	}
}

// m2 is the denominator of a ratioFormula match ("" for none).
func m2(m []string) string {
	if len(m) < 3 {
		return ""
	}
	return m[2]
}

// SavingText writes a saving as "≈ 7,097 m³" ("" for none).
func (rep *Report) SavingText(ef PlanEffect) string {
	if ef.Saving == nil {
		return ""
	}
	return "≈ " + qtyText(ef.Saving) + " " + reportUnit(ef.SavingUnit)
}
