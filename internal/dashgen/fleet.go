package dashgen

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/cleanprod/cleanprod/scoring"
)

// fleet is the supervisor's overview: codes, levels, rankings,
// regressions and audits of every enterprise.
func fleet(std *scoring.Standard, pol *scoring.Policy) *dashboard.DashboardBuilder {
	var windows, indicators []string
	for _, w := range std.Windows {
		windows = append(windows, w.Name)
	}
	for _, ind := range std.Indicators {
		indicators = append(indicators, ind.ID)
	}
	codeWin := pol.Window

	d := dashboard.NewDashboardBuilder(bi("清洁生产监管总览", "cleanprod fleet overview")).
		Uid(FleetUID).
		Description(about("全部企业的动态码、清洁生产等级、排名、退步与审核（InfluxDB：评分器写入的 score、indicator、event）。", "Dynamic codes, cleaner-production levels, rankings, regressions and audits of every enterprise (InfluxDB: measurements score, indicator, event written by the scorer).")).
		Tags([]string{"cleanprod", "supervisor"}).
		Time("now-7d", "now").Refresh("1m").Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Readonly().
		WithVariable(constVar("bucket", DefaultBucket, about("评分器输出所在的 InfluxDB 存储桶（1.8：数据库/保留策略）", "InfluxDB bucket of the scorer's outputs (1.8: database/retention-policy)"))).
		WithVariable(customVar("window", bi("评价窗口", "Window"), windows, windows[0]).
			Description(about("标准的滚动评价窗口："+fmt.Sprint(windows)+"；动态码按 "+codeWin+" 窗口",
				"Rolling window of the standard: "+fmt.Sprint(windows)+"; the code follows "+codeWin))).
		WithVariable(customVar("indicator", bi("指标", "Indicator"), indicators, indicators[0]).
			Description(about("单项指标排名所用的指标", "Indicator of the per-indicator ranking"))).
		Link(dashLink(bi("企业详情", "Enterprise detail"), EnterpriseUID, EnterpriseSlug)).
		Link(dashLink(bi("数据接入健康", "Ingestion health"), IngestUID, IngestSlug))

	d.WithRow(dashboard.NewRowBuilder(bi("动态码与等级", "Codes and levels")))
	d.WithPanel(stat.NewPanelBuilder().
		Title(bi("动态码分布", "Enterprises by dynamic code")).
		Description(about("各企业最新的动态码（"+codeWin+" 窗口的评分点）；未赋码：数据尚不足以首次评价。",
			"Each enterprise's latest code (the "+codeWin+" window's score points); no code yet: not enough data for a first assessment.")).
		Datasource(*fluxDS()).Span(8).Height(6).
		WithTarget(flux("A", fluxText(`
			from(bucket: "${bucket}")
			  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
			  |> filter(fn: (r) => r._measurement == "score" and r._field == "code")
			  |> group(columns: ["enterprise"])
			  |> last()
			  |> group()
			  |> reduce(identity: {green: 0, yellow: 0, red: 0, none: 0}, fn: (r, accumulator) => ({
			      green: accumulator.green + (if r._value == "green" then 1 else 0),
			      yellow: accumulator.yellow + (if r._value == "yellow" then 1 else 0),
			      red: accumulator.red + (if r._value == "red" then 1 else 0),
			      none: accumulator.none + (if r._value == "" then 1 else 0)}))`))).
		ReduceOptions(reduceLast("/^(green|yellow|red|none)$/")).
		ColorMode(common.BigValueColorModeBackground).GraphMode(common.BigValueGraphModeNone).
		TextMode(common.BigValueTextModeValueAndName).Orientation(common.VizOrientationAuto).Unit("none").Decimals(0).
		OverrideByName("green", []dashboard.DynamicConfigValue{fixedColor(colGreen)}).
		OverrideByName("yellow", []dashboard.DynamicConfigValue{fixedColor(colYellow)}).
		OverrideByName("red", []dashboard.DynamicConfigValue{fixedColor(colRed)}).
		OverrideByName("none", []dashboard.DynamicConfigValue{prop("displayName", bi("未赋码", "no code yet")), fixedColor(colGray)}))
	d.WithPanel(bargauge.NewPanelBuilder().
		Title(bi("等级分布", "Level distribution (${window} window)")).
		Description(about("所选窗口内各清洁生产等级的企业数；未评级：数据过少。", "Enterprises per cleaner-production level on the chosen window; not graded: too little data.")).
		Datasource(*fluxDS()).Span(8).Height(6).
		WithTarget(flux("A", fluxText(`
			from(bucket: "${bucket}")
			  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
			  |> filter(fn: (r) => r._measurement == "score" and r.window == "${window}" and r._field == "level")
			  |> group(columns: ["enterprise"])
			  |> last()
			  |> group()
			  |> reduce(identity: {level_i: 0, level_ii: 0, level_iii: 0, below_iii: 0, not_graded: 0}, fn: (r, accumulator) => ({
			      level_i: accumulator.level_i + (if r._value == 1 then 1 else 0),
			      level_ii: accumulator.level_ii + (if r._value == 2 then 1 else 0),
			      level_iii: accumulator.level_iii + (if r._value == 3 then 1 else 0),
			      below_iii: accumulator.below_iii + (if r._value == 4 then 1 else 0),
			      not_graded: accumulator.not_graded + (if r._value == 0 then 1 else 0)}))`))).
		ReduceOptions(reduceLast("/^(level_i|level_ii|level_iii|below_iii|not_graded)$/")).
		Orientation(common.VizOrientationHorizontal).DisplayMode(common.BarGaugeDisplayModeBasic).
		Unit("none").Decimals(0).Min(0).
		OverrideByName("level_i", []dashboard.DynamicConfigValue{prop("displayName", bi("一级", "Level I")), fixedColor(colGreen)}).
		OverrideByName("level_ii", []dashboard.DynamicConfigValue{prop("displayName", bi("二级", "Level II")), fixedColor(colLime)}).
		OverrideByName("level_iii", []dashboard.DynamicConfigValue{prop("displayName", bi("三级", "Level III")), fixedColor(colOrange)}).
		OverrideByName("below_iii", []dashboard.DynamicConfigValue{prop("displayName", bi("三级以下", "below III")), fixedColor(colRed)}).
		OverrideByName("not_graded", []dashboard.DynamicConfigValue{prop("displayName", bi("未评级", "not graded")), fixedColor(colGray)}))
	d.WithPanel(statetimeline.NewPanelBuilder().
		Title(bi("动态码变化", "Dynamic code over time")).
		Description(about("评分器写入的各企业动态码（每个区间取最后一个）。", "The code of each enterprise as the scorer wrote it (last per interval).")).
		Datasource(*fluxDS()).Span(8).Height(6).
		WithTarget(flux("A", fluxText(`
			from(bucket: "${bucket}")
			  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
			  |> filter(fn: (r) => r._measurement == "score" and r._field == "code")
			  |> aggregateWindow(every: v.windowPeriod, fn: last, createEmpty: false)
			  |> keep(columns: ["_time", "_value", "enterprise"])`))).
		DisplayName("${__field.labels.enterprise}").
		Mappings(codeMappings()).ShowValue(common.VisibilityModeNever).MergeValues(true).
		AlignValue(common.TimelineValueAlignmentLeft).RowHeight(0.8))

	d.WithRow(dashboard.NewRowBuilder(bi("排名", "Rankings")))
	d.WithPanel(newTable().
		Title(bi("综合排名", "Overall ranking (${window} window)")).
		Description(about("先按等级（优者在前），再按 0–100 连续得分排序；Y_I/Y_II/Y_III 为综合评价指数，完整度为数据充足的计量指标占比；动态码只按 "+codeWin+" 窗口。点击企业查看详情。",
			"Enterprises by level (best first), then by the continuous 0-100 score; Y_I/Y_II/Y_III are the comprehensive evaluation indices, completeness the share of metered indicators with enough data. The code is on the "+codeWin+" window only. Click an enterprise for its detail.")).
		Datasource(*fluxDS()).Span(14).Height(9).
		WithTarget(flux("A", fluxText(`
			from(bucket: "${bucket}")
			  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
			  |> filter(fn: (r) => r._measurement == "score" and r.window == "${window}")
			  |> last()
			  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
			  |> group()
			  |> map(fn: (r) => ({r with rank_key: float(v: if r.level == 0 then 5 else r.level) * 1000.0 - r.score}))
			  |> sort(columns: ["rank_key"])
			  |> keep(columns: ["enterprise", "code", "level", "score", "y_i", "y_ii", "y_iii", "completeness", "stale_meters"])`))).
		OverrideByName("enterprise", []dashboard.DynamicConfigValue{enterpriseLink()}).
		OverrideByName("code", []dashboard.DynamicConfigValue{prop("mappings", codeMappings()), cellColor()}).
		OverrideByName("level", []dashboard.DynamicConfigValue{prop("mappings", levelMappings()), cellColor()}).
		OverrideByName("score", []dashboard.DynamicConfigValue{prop("decimals", 1)}).
		OverrideByName("completeness", []dashboard.DynamicConfigValue{prop("unit", "percentunit")}).
		OverrideByName("stale_meters", []dashboard.DynamicConfigValue{prop("displayName", bi("离线仪表", "stale meters"))}).
		OverrideByRegexp("^y_i+$", []dashboard.DynamicConfigValue{prop("decimals", 1)}))
	d.WithPanel(newTable().
		Title(bi("单项指标排名", "Ranking on ${indicator} (${window} window)")).
		Description(about("全部企业在所选指标上的得分（0–100，越高越好）；insufficient：数据不足；not_applicable：不适用。", "Every enterprise on the chosen indicator, by its indicator score (0-100, higher is better). Status insufficient: not enough data; not_applicable: the enterprise lacks what the indicator needs.")).
		Datasource(*fluxDS()).Span(10).Height(9).
		WithTarget(flux("A", fluxText(`
			from(bucket: "${bucket}")
			  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
			  |> filter(fn: (r) => r._measurement == "indicator" and r.window == "${window}" and r.indicator == "${indicator}")
			  |> last()
			  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
			  |> group()
			  |> keep(columns: ["enterprise", "status", "value", "level", "score", "coverage"])
			  |> sort(columns: ["score"], desc: true)`))).
		OverrideByName("enterprise", []dashboard.DynamicConfigValue{enterpriseLink()}).
		OverrideByName("level", []dashboard.DynamicConfigValue{prop("mappings", levelMappings()), cellColor()}).
		OverrideByName("score", []dashboard.DynamicConfigValue{prop("decimals", 1)}).
		OverrideByName("coverage", []dashboard.DynamicConfigValue{prop("unit", "percentunit")}))
	d.WithPanel(timeseries.NewPanelBuilder().
		Title(bi("得分趋势", "Score over time (${window} window)")).
		Description(about("各企业的 0–100 连续得分。", "Continuous 0-100 score per enterprise.")).
		Datasource(*fluxDS()).Span(24).Height(8).
		WithTarget(flux("A", fluxText(`
			from(bucket: "${bucket}")
			  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
			  |> filter(fn: (r) => r._measurement == "score" and r.window == "${window}" and r._field == "score")
			  |> aggregateWindow(every: v.windowPeriod, fn: last, createEmpty: false)
			  |> keep(columns: ["_time", "_value", "enterprise"])`))).
		DisplayName("${__field.labels.enterprise}").Unit("none").Min(0).Max(100).Decimals(1))

	d.WithRow(dashboard.NewRowBuilder(bi("退步与审核", "Regressions and audits")))
	d.WithPanel(newTable().
		Title(bi("最新退步与赋码变化", "Latest regressions and code changes")).
		Description(about("评分器发布的事件，最新在前：赋码变化、指标降级、较基线恶化、限定性指标未达三级；resolved 表示情况结束。", "Events announced by the scorer, newest first: code_change (old -> new code), level_drop (an indicator fell a level and stayed), worsening (an indicator is worse than its trailing baseline), restrictive_fail (a restrictive indicator below Level III); resolved marks the end of a condition. Stale meters: see each enterprise's detail.")).
		Datasource(*fluxDS()).Span(16).Height(10).
		WithTarget(flux("A", fluxText(`
			from(bucket: "${bucket}")
			  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
			  |> filter(fn: (r) => r._measurement == "event" and r.kind != "stale")
			  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
			  |> group()
			  |> sort(columns: ["_time"], desc: true)
			  |> limit(n: 200)
			  |> keep(columns: ["_time", "enterprise", "kind", "indicator", "resolved", "old_code", "new_code", "reason"])`))).
		OverrideByName("_time", []dashboard.DynamicConfigValue{prop("displayName", bi("时间", "time")), prop("custom.width", 170)}).
		OverrideByName("enterprise", []dashboard.DynamicConfigValue{enterpriseLink()}).
		OverrideByName("kind", []dashboard.DynamicConfigValue{prop("mappings", []dashboard.ValueMapping{mapping(map[string][2]string{
			"code_change": {bi("赋码变化", "code change"), "blue"}, "level_drop": {bi("指标降级", "level drop"), colOrange},
			"worsening": {bi("较基线恶化", "worsening"), colOrange}, "restrictive_fail": {bi("限定性指标不达标", "restrictive fail"), colRed},
		})}), cellColor()}).
		OverrideByName("new_code", []dashboard.DynamicConfigValue{prop("mappings", codeMappings()), cellColor()}))
	d.WithPanel(newTable().
		Title(bi("即将到期的审核", "Audits due soon")).
		Description(about("各企业下次清洁生产审核：上次审核（申报）加当前动态码对应的周期，最近在前；尚未赋码的企业不列出。", "Next cleaner-production audit per enterprise: the last audit (declared) plus the interval of the current code; soonest first. An enterprise without a code yet has no due date and is not listed.")).
		Datasource(*fluxDS()).Span(8).Height(10).
		WithTarget(flux("A", fluxText(`
			from(bucket: "${bucket}")
			  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
			  |> filter(fn: (r) => r._measurement == "score" and r.window == "`+codeWin+`" and (r._field == "code" or r._field == "next_audit_due"))
			  |> last()
			  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
			  |> filter(fn: (r) => exists r.next_audit_due)
			  |> group()
			  |> map(fn: (r) => ({enterprise: r.enterprise, code: r.code, due: time(v: r.next_audit_due * 1000000000),
			      days_left: float(v: r.next_audit_due - int(v: now()) / 1000000000) / 86400.0}))
			  |> sort(columns: ["days_left"])`))).
		OverrideByName("enterprise", []dashboard.DynamicConfigValue{enterpriseLink()}).
		OverrideByName("code", []dashboard.DynamicConfigValue{prop("mappings", codeMappings()), cellColor()}).
		OverrideByName("due", []dashboard.DynamicConfigValue{prop("unit", "dateTimeAsIsoNoDateIfToday")}).
		OverrideByName("days_left", []dashboard.DynamicConfigValue{prop("displayName", bi("剩余天数", "days left")), prop("decimals", 0),
			prop("thresholds", map[string]any{"mode": "absolute", "steps": []map[string]any{
				{"value": nil, "color": colRed}, {"value": 30, "color": colOrange}, {"value": 90, "color": colGreen}}}),
			cellColor()}))
	return d
}
