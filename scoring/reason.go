package scoring

import (
	"fmt"
	"strings"
)

// Reason is one fact a code rests on: a condition of the policy's rules
// that holds on the policy's window, the indicator it concerns (if any),
// the level, value and benchmark (or threshold) it compares, and a
// sentence in Chinese and English. Value and Benchmark are nil where they
// do not apply.
type Reason struct {
	Kind      Condition `json:"kind"`
	Indicator string    `json:"indicator,omitempty"`
	Level     Level     `json:"level,omitzero"`
	Value     *float64  `json:"value,omitempty"`
	Benchmark *float64  `json:"benchmark,omitempty"`
	Unit      string    `json:"unit,omitempty"`
	TextZH    string    `json:"text_zh"`
	TextEN    string    `json:"text_en"`
}

// String returns the English text.
func (r Reason) String() string { return r.TextEN }

func ptr(v float64) *float64 { return &v }

// reasonsText joins the English texts of rs.
func reasonsText(rs []Reason) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.TextEN
	}
	return strings.Join(parts, "; ")
}

// levelZH names a level in Chinese.
func levelZH(l Level) string {
	switch l {
	case LevelI:
		return "一级"
	case LevelII:
		return "二级"
	case LevelIII:
		return "三级"
	case BelowIII:
		return "三级以下"
	}
	return "未评级"
}

// conditions evaluates the policy's conditions on an assessment (stale
// lists the stale meters), with the reasons behind each that holds. The
// reasons of CondAlways are those of the enterprise's level, the fact a
// catch-all code rests on.
func (e *Engine) conditions(a *Assessment, stale []string) (map[Condition]bool, map[Condition][]Reason) {
	holds, why, _ := holding(e.std, e.pol, a, stale)
	return holds, why
}

// Reasons returns the facts behind every condition of pol that holds on
// a, whichever rule they feed: the level first, then the restrictive
// indicators, exceedances and a shortage of data, in that order (stale
// meters aside: they are not the assessment's). The pages use them to
// say why a level is what it is; the code's own reasons are
// Result.CodeReasons.
func Reasons(std *Standard, pol *Policy, a *Assessment) []Reason {
	_, _, all := holding(std, pol, a, nil)
	return all
}

func holding(std *Standard, pol *Policy, a *Assessment, stale []string) (map[Condition]bool, map[Condition][]Reason, []Reason) {
	holds := map[Condition]bool{CondAlways: true}
	why := map[Condition][]Reason{}
	var all []Reason
	add := func(r Reason) {
		holds[r.Kind] = true
		why[r.Kind] = append(why[r.Kind], r)
		all = append(all, r)
	}
	// The enterprise's level.
	switch a.Level {
	case LevelI:
		add(Reason{Kind: CondLevelI, Level: LevelI, Value: ptr(a.Y[0]), Benchmark: ptr(85),
			TextZH: fmt.Sprintf("一级：Y_I %.1f ≥ 85", a.Y[0]),
			TextEN: fmt.Sprintf("Level I: Y_I %.1f >= 85", a.Y[0])})
	case LevelII:
		add(Reason{Kind: CondLevelII, Level: LevelII, Value: ptr(a.Y[1]), Benchmark: ptr(85),
			TextZH: fmt.Sprintf("二级：Y_II %.1f ≥ 85", a.Y[1]),
			TextEN: fmt.Sprintf("Level II: Y_II %.1f >= 85", a.Y[1])})
	case LevelIII:
		zh, en := "", ""
		if a.Capped != "" {
			zh, en = "；"+a.Capped, "; "+a.Capped
		}
		add(Reason{Kind: CondLevelIII, Level: LevelIII, Value: ptr(a.Y[1]), Benchmark: ptr(85),
			TextZH: fmt.Sprintf("三级：Y_II %.1f，二级需 ≥ 85%s", a.Y[1], zh),
			TextEN: fmt.Sprintf("Level III: Y_II %.1f, Level II needs 85%s", a.Y[1], en)})
	case BelowIII:
		add(Reason{Kind: CondBelowIII, Level: BelowIII, Value: ptr(a.Y[2]), Benchmark: ptr(100),
			TextZH: fmt.Sprintf("低于三级：Y_III %.2f，三级需 100", a.Y[2]),
			TextEN: fmt.Sprintf("below Level III: Y_III %.2f, Level III needs 100", a.Y[2])})
	default:
		add(Reason{Kind: CondNotGraded,
			TextZH: "未评级：没有具备足够数据的适用指标",
			TextEN: "not graded: no applicable indicator with enough data"})
	}
	// Restrictive indicators.
	for _, ind := range std.Indicators {
		if !ind.Restrictive {
			continue
		}
		r := &a.Indicators[ind.Index]
		switch {
		case r.Status == Insufficient:
			why := r.Reason
			if why == "" {
				why = "no data"
			}
			add(Reason{Kind: CondRestrictiveMissing, Indicator: ind.ID, Unit: ind.Unit,
				TextZH: fmt.Sprintf("限定性指标%s无有效数据（%s）", ind.NameZH, why),
				TextEN: fmt.Sprintf("restrictive indicator %s has no valid data (%s)", ind.NameEN, why)})
		case r.Status != Graded:
		case r.Level == BelowIII:
			add(indicatorReason(CondRestrictiveFail, ind, r, LevelIII, "低于三级", "below Level III"))
			add(indicatorReason(CondRestrictiveBelowII, ind, r, LevelII, "低于二级", "below Level II"))
		case r.Level == LevelIII:
			add(indicatorReason(CondRestrictiveBelowII, ind, r, LevelII, "低于二级", "below Level II"))
		}
	}
	// Exceedances: a compliance rate below 100 %.
	for _, id := range a.Exceedance {
		ind, ok := std.Indicator(id)
		if !ok {
			continue
		}
		r := &a.Indicators[ind.Index]
		add(Reason{Kind: CondExceedance, Indicator: id, Level: r.Level, Value: ptr(r.Value), Benchmark: ptr(100), Unit: ind.Unit,
			TextZH: fmt.Sprintf("超标：%s %.1f%%，应为 100%%", ind.NameZH, r.Value),
			TextEN: fmt.Sprintf("limit exceeded: %s %.1f %%, must be 100 %%", ind.NameEN, r.Value)})
	}
	if a.Completeness < pol.MinCompleteness {
		add(Reason{Kind: CondInsufficientData, Value: ptr(a.Completeness), Benchmark: ptr(pol.MinCompleteness),
			TextZH: fmt.Sprintf("数据不足：%.0f%% 的计量指标有足够数据，策略要求 %.0f%%", 100*a.Completeness, 100*pol.MinCompleteness),
			TextEN: fmt.Sprintf("insufficient data: %.0f %% of metered indicators have enough data, the policy needs %.0f %%", 100*a.Completeness, 100*pol.MinCompleteness)})
	}
	if len(stale) > 0 {
		h := pol.StaleAfter.Hours()
		add(Reason{Kind: CondStale, Value: ptr(float64(len(stale))),
			TextZH: fmt.Sprintf("%d 块计量表停报超过 %g 小时：%s", len(stale), h, strings.Join(stale, ", ")),
			TextEN: fmt.Sprintf("%d meter(s) silent for over %gh: %s", len(stale), h, strings.Join(stale, ", "))})
	}
	why[CondAlways] = why[levelCondition(a.Level)]
	return holds, why, all
}

// indicatorReason is the reason of kind c for indicator ind at result r,
// against the benchmark of level bench.
func indicatorReason(c Condition, ind *Indicator, r *IndicatorResult, bench Level, zh, en string) Reason {
	out := Reason{Kind: c, Indicator: ind.ID, Level: r.Level, Unit: ind.Unit}
	if ind.Kind == Qualitative {
		out.TextZH = fmt.Sprintf("限定性指标%s%s（申报%s）", ind.NameZH, zh, levelZH(r.Level))
		out.TextEN = fmt.Sprintf("restrictive indicator %s %s (declared %s)", ind.NameEN, en, levelName(r.Level))
		return out
	}
	out.Value, out.Benchmark = ptr(r.Value), ptr(ind.Benchmark(bench))
	out.TextZH = fmt.Sprintf("限定性指标%s%s：%.4g %s（%s基准 %.4g）", ind.NameZH, zh, r.Value, ind.Unit, levelZH(bench), ind.Benchmark(bench))
	out.TextEN = fmt.Sprintf("restrictive indicator %s %s: %.4g %s (Level %s benchmark %.4g)", ind.NameEN, en, r.Value, ind.Unit, bench, ind.Benchmark(bench))
	return out
}

// levelCondition is the condition that holds for level l.
func levelCondition(l Level) Condition {
	switch l {
	case LevelI:
		return CondLevelI
	case LevelII:
		return CondLevelII
	case LevelIII:
		return CondLevelIII
	case BelowIII:
		return CondBelowIII
	}
	return CondNotGraded
}

// reasonsOf returns the reasons behind the matched conditions of a rule.
func reasonsOf(matched []Condition, why map[Condition][]Reason) []Reason {
	var out []Reason
	for _, c := range matched {
		if c == CondAlways && len(matched) > 1 {
			continue // the specific conditions say it better
		}
		out = append(out, why[c]...)
	}
	return out
}
