package web

import (
	"fmt"
	"strings"
	"time"

	"github.com/cleanprod/cleanprod/scoring"
)

// Plain-language explanations of codes, levels and scores, in Chinese
// with English beside. The API keeps the stable ids (a reason's kind, an
// event's kind) and adds these texts next to them; the pages and the
// report show the texts. They are written from the structured fields and
// the standard in force, never parsed from the scorer's English
// sentences, so that a changed wording there cannot garble them.

// explainer words facts with the standard and policy in force.
type explainer struct {
	std *scoring.Standard
	pol *scoring.Policy
}

// levelWords names a level as the audit practice does: Level I is the
// international advanced level of cleaner production (国际清洁生产领先
// 水平, shortened 国际先进), II the domestic advanced, III the domestic
// general.
func levelWords(l scoring.Level) Text {
	switch l {
	case scoring.LevelI:
		return Text{"一级（国际先进）", "Level I (international advanced)"}
	case scoring.LevelII:
		return Text{"二级（国内先进）", "Level II (domestic advanced)"}
	case scoring.LevelIII:
		return Text{"三级（国内一般）", "Level III (domestic general)"}
	case scoring.BelowIII:
		return Text{"三级以下（未达国内一般水平）", "below Level III (under the domestic general level)"}
	}
	return Text{"未评级", "not graded"}
}

func levelFromDTO(l *string) scoring.Level {
	if l == nil {
		return scoring.NoLevel
	}
	lv, err := scoring.ParseLevel(*l)
	if err != nil {
		return scoring.NoLevel
	}
	return lv
}

// indicatorName is an indicator's names ("" id: none).
func (x explainer) indicatorName(id string) Text {
	if ind, ok := x.std.Indicator(id); ok {
		return Text{"“" + ind.NameZH + "”", ind.NameEN}
	}
	return Text{"“" + id + "”", id}
}

// benchmarkText is "≤ 45 g/m²" or "≥ 60 %" for a benchmark of indicator id.
func (x explainer) benchmarkText(id string, b float64, unit string) string {
	op := "≤"
	if ind, ok := x.std.Indicator(id); ok && ind.Direction == scoring.HigherBetter {
		op = "≥"
	}
	return strings.TrimSpace(op + " " + formatNum(b) + " " + unitText(unit))
}

// unitText writes a unit's powers as superscripts: g/m2 as g/m², m3 as m³.
func unitText(u string) string {
	return strings.NewReplacer("m2", "m²", "m3", "m³").Replace(u)
}

func valueText(v *float64, unit string) string {
	if v == nil {
		return "—"
	}
	return strings.TrimSpace(formatNum(*v) + " " + unitText(unit))
}

// reason says one fact a code rests on in plain words. An unknown kind
// keeps the scorer's own sentences.
func (x explainer) reason(r ReasonDTO) Text {
	ind := Text{}
	if r.Indicator != nil {
		ind = x.indicatorName(*r.Indicator)
	}
	v := func() float64 {
		if r.Value == nil {
			return 0
		}
		return *r.Value
	}
	switch r.Kind {
	case string(scoring.CondLevelI), string(scoring.CondLevelII):
		lv, y := scoring.LevelI, "Y_I"
		if r.Kind == string(scoring.CondLevelII) {
			lv, y = scoring.LevelII, "Y_II"
		}
		w := levelWords(lv)
		return Text{
			fmt.Sprintf("达到%s：综合评价指数 %s 为 %.1f（不低于 85），限定性指标均达到该级", w.ZH, y, v()),
			fmt.Sprintf("%s: evaluation index %s is %.1f (85 or more) and every restrictive indicator meets it", w.EN, y, v())}
	case string(scoring.CondLevelIII):
		if v() >= 85 {
			return Text{
				fmt.Sprintf("三级（国内一般）：综合评价指数 Y_II 为 %.1f，已达 85，但有指标未达二级基准值（见限定性指标）", v()),
				fmt.Sprintf("Level III (domestic general): evaluation index Y_II is %.1f, 85 or more, but an indicator misses its Level II benchmark (see the restrictive indicators)", v())}
		}
		return Text{
			fmt.Sprintf("三级（国内一般）：综合评价指数 Y_II 为 %.1f，二级（国内先进）需达到 85", v()),
			fmt.Sprintf("Level III (domestic general): evaluation index Y_II is %.1f; Level II (domestic advanced) needs 85", v())}
	case string(scoring.CondBelowIII):
		return Text{
			fmt.Sprintf("未达三级（国内一般）：综合评价指数 Y_III 为 %.2f，三级要求全部指标达到三级基准值（Y_III = 100）", v()),
			fmt.Sprintf("below Level III (domestic general): evaluation index Y_III is %.2f; Level III needs every indicator at its Level III benchmark (Y_III = 100)", v())}
	case string(scoring.CondNotGraded):
		return Text{"未评级：没有数据充足的适用指标，无法计算综合评价指数",
			"not graded: no applicable indicator has enough data to compute the evaluation index"}
	case string(scoring.CondRestrictiveFail), string(scoring.CondRestrictiveBelowII):
		bench, zh, en := scoring.LevelIII, "未达三级基准值，须整改", "misses its Level III benchmark and must be rectified"
		if r.Kind == string(scoring.CondRestrictiveBelowII) {
			bench, zh, en = scoring.LevelII, "未达二级基准值", "misses its Level II benchmark"
		}
		if r.Value == nil || r.Benchmark == nil || r.Indicator == nil { // a declared (qualitative) level
			got := levelWords(levelFromDTO(r.Level))
			return Text{fmt.Sprintf("限定性指标%s%s（申报等级：%s）", ind.ZH, zh, got.ZH),
				fmt.Sprintf("restrictive indicator %s %s (declared: %s)", ind.EN, en, got.EN)}
		}
		b := x.benchmarkText(*r.Indicator, *r.Benchmark, r.Unit)
		lw := levelWords(bench)
		return Text{fmt.Sprintf("限定性指标%s%s：实测 %s，%s基准值 %s", ind.ZH, zh, valueText(r.Value, r.Unit), lw.ZH, b),
			fmt.Sprintf("restrictive indicator %s %s: measured %s, %s benchmark %s", ind.EN, en, valueText(r.Value, r.Unit), lw.EN, b)}
	case string(scoring.CondRestrictiveMissing):
		return Text{fmt.Sprintf("限定性指标%s缺少有效数据，无法判定等级（请检查计量表或提交申报）", ind.ZH),
			fmt.Sprintf("restrictive indicator %s has no valid data, so its level cannot be judged (check its meters or declare it)", ind.EN)}
	case string(scoring.CondExceedance):
		return Text{fmt.Sprintf("超标排放：%s为 %.1f%%，应为 100%%", ind.ZH, v()),
			fmt.Sprintf("limit exceeded: %s is %.1f %%, must be 100 %%", ind.EN, v())}
	case string(scoring.CondInsufficientData):
		b := x.pol.MinCompleteness
		if r.Benchmark != nil {
			b = *r.Benchmark
		}
		return Text{fmt.Sprintf("数据不足：仅 %.0f%% 的计量指标数据充足，赋码至少需要 %.0f%%", 100*v(), 100*b),
			fmt.Sprintf("insufficient data: only %.0f %% of metered indicators have enough data; a code needs %.0f %%", 100*v(), 100*b)}
	case string(scoring.CondStale):
		h := formatNum(x.pol.StaleAfter.Hours())
		return Text{fmt.Sprintf("%.0f 块计量表停报超过 %s 小时", v(), h),
			fmt.Sprintf("%.0f meter(s) silent for more than %s h", v(), h)}
	}
	return Text{r.TextZH, r.TextEN}
}

// reasons fills ReasonText of every reason.
func (x explainer) reasons(rs []ReasonDTO) []ReasonDTO {
	for i := range rs {
		rs[i].ReasonText = x.reason(rs[i])
	}
	return rs
}

// pendingNote says where a pending change stands: the code it heads for,
// the date it takes effect if it keeps holding, and the hold behind that
// date, in loc's dates.
func (x explainer) pendingNote(cur string, p *PendingChange, loc *time.Location) Text {
	to := codeText(scoring.Code(p.Code))
	from := codeText(scoring.Code(cur))
	hold, dir := x.pol.Upgrade, Text{"升级", "an upgrade"}
	if codeOrder[p.Code] < codeOrder[cur] {
		hold, dir = x.pol.Downgrade, Text{"降级", "a downgrade"}
	}
	rule := Text{
		fmt.Sprintf("%s须连续保持 %s", dir.ZH, durationZH(hold.For)),
		fmt.Sprintf("%s must hold for %s", dir.EN, durationEN(hold.For))}
	if hold.Evaluations > 0 {
		rule.ZH += fmt.Sprintf("并经 %d 次评价", hold.Evaluations)
		rule.EN += fmt.Sprintf(" and %d evaluations", hold.Evaluations)
	}
	since := p.Since.In(loc).Format(time.DateOnly)
	if p.TakesEffect == nil {
		return Text{
			fmt.Sprintf("自 %s 起符合%s条件；%s", since, to.ZH, rule.ZH),
			fmt.Sprintf("meets the conditions of %s since %s; %s", to.EN, since, rule.EN)}
	}
	due := p.TakesEffect.In(loc).Format(time.DateOnly)
	return Text{
		fmt.Sprintf("自 %s 起符合%s条件，若持续保持，将于 %s 由%s转为%s（%s）", since, to.ZH, due, from.ZH, to.ZH, rule.ZH),
		fmt.Sprintf("meets the conditions of %s since %s; if that holds, turns from %s to %s on %s (%s)", to.EN, since, from.EN, to.EN, due, rule.EN)}
}

func durationZH(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d 天", int(d/(24*time.Hour)))
	}
	return fmt.Sprintf("%s 小时", formatNum(d.Hours()))
}

func durationEN(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return fmt.Sprintf("%s h", formatNum(d.Hours()))
}

// notGraded says why an assessment on window w has no level.
func (x explainer) notGraded(a *scoring.Assessment) Text {
	zh, en := a.Window+" 评价期", "the "+a.Window+" window"
	for _, w := range x.std.Windows {
		if w.Name == a.Window {
			d := formatNum(w.Length.Hours() / 24)
			zh, en = fmt.Sprintf("近 %s 天评价期（%s）", d, a.Window), fmt.Sprintf("the %s window (%s days)", a.Window, d)
		}
	}
	if a.Completeness < x.pol.MinCompleteness {
		return Text{
			fmt.Sprintf("未评级：%s内仅 %.0f%% 的计量指标数据充足，评级至少需要 %.0f%%", zh, 100*a.Completeness, 100*x.pol.MinCompleteness),
			fmt.Sprintf("not graded: on %s only %.0f %% of metered indicators have enough data; a level needs %.0f %%", en, 100*a.Completeness, 100*x.pol.MinCompleteness)}
	}
	return Text{
		fmt.Sprintf("未评级：%s内没有数据充足的适用指标", zh),
		fmt.Sprintf("not graded: no applicable indicator has enough data on %s", en)}
}

// scoreNote warns that a score rests on too little data (nil when the
// completeness meets the policy's minimum).
func (x explainer) scoreNote(completeness float64) *Text {
	if completeness >= x.pol.MinCompleteness {
		return nil
	}
	return &Text{
		fmt.Sprintf("得分仅基于 %.0f%% 数据充足的计量指标（要求 %.0f%%），仅供参考", 100*completeness, 100*x.pol.MinCompleteness),
		fmt.Sprintf("score from only %.0f %% of metered indicators with enough data (%.0f %% needed): indicative only", 100*completeness, 100*x.pol.MinCompleteness)}
}

// event says what a scoring event means in plain words.
func (x explainer) event(ev scoring.Event) Text {
	ind := x.indicatorName(ev.Indicator)
	unit := ""
	if i, ok := x.std.Indicator(ev.Indicator); ok {
		unit = i.Unit
	}
	switch ev.Kind {
	case scoring.EventCodeChange:
		from, to := codeText(ev.OldCode), codeText(ev.NewCode)
		t := Text{fmt.Sprintf("动态码由%s变为%s", from.ZH, to.ZH), fmt.Sprintf("code changed from %s to %s", from.EN, to.EN)}
		if ev.OldCode == "" {
			t = Text{fmt.Sprintf("首次赋码：%s", to.ZH), fmt.Sprintf("first code: %s", to.EN)}
		}
		var zh, en []string
		for _, r := range reasonsOf(ev.Reasons) {
			rt := x.reason(r)
			zh, en = append(zh, rt.ZH), append(en, rt.EN)
		}
		if len(zh) > 0 {
			t.ZH += "。依据：" + strings.Join(zh, "；")
			t.EN += ". Because: " + strings.Join(en, "; ")
		}
		return t
	case scoring.EventLevelDrop:
		if ev.Resolved {
			return Text{fmt.Sprintf("%s恢复到%s", ind.ZH, levelWords(ev.NewLevel).ZH), fmt.Sprintf("%s back at %s", ind.EN, levelWords(ev.NewLevel).EN)}
		}
		return Text{fmt.Sprintf("%s由%s降至%s", ind.ZH, levelWords(ev.OldLevel).ZH, levelWords(ev.NewLevel).ZH),
			fmt.Sprintf("%s fell from %s to %s", ind.EN, levelWords(ev.OldLevel).EN, levelWords(ev.NewLevel).EN)}
	case scoring.EventWorsening:
		if ev.Resolved {
			return Text{fmt.Sprintf("%s回到基线附近", ind.ZH), fmt.Sprintf("%s back near its baseline", ind.EN)}
		}
		return Text{fmt.Sprintf("%s较自身基线恶化：%s → %s", ind.ZH, valueText(&ev.OldValue, unit), valueText(&ev.NewValue, unit)),
			fmt.Sprintf("%s worse than its own baseline: %s → %s", ind.EN, valueText(&ev.OldValue, unit), valueText(&ev.NewValue, unit))}
	case scoring.EventRestrictiveFail:
		if ev.Resolved {
			return Text{fmt.Sprintf("限定性指标%s已恢复达标", ind.ZH), fmt.Sprintf("restrictive indicator %s meets its benchmark again", ind.EN)}
		}
		return Text{fmt.Sprintf("限定性指标%s未达三级基准值：实测 %s，须整改", ind.ZH, valueText(&ev.NewValue, unit)),
			fmt.Sprintf("restrictive indicator %s misses its Level III benchmark: measured %s, must be rectified", ind.EN, valueText(&ev.NewValue, unit))}
	case scoring.EventExceedance:
		return Text{fmt.Sprintf("在线监测 %s 小时均值 %s 超过限值 %s（超标）", ev.Meter, formatNum(ev.NewValue), formatNum(ev.OldValue)),
			fmt.Sprintf("analyser %s: hourly mean %s above its limit %s", ev.Meter, formatNum(ev.NewValue), formatNum(ev.OldValue))}
	case scoring.EventStale:
		if ev.Resolved {
			return Text{fmt.Sprintf("计量表 %s 恢复上报", ev.Meter), fmt.Sprintf("meter %s reporting again", ev.Meter)}
		}
		h := formatNum(x.pol.StaleAfter.Hours())
		return Text{fmt.Sprintf("计量表 %s 停报超过 %s 小时", ev.Meter, h), fmt.Sprintf("meter %s silent for more than %s h (%s)", ev.Meter, h, ev.Reason)}
	}
	return Text{kindZH(string(ev.Kind)) + "：" + ev.Reason, ev.Reason}
}
