package dashgen

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/cleanprod/cleanprod/scoring"
)

// enterprise is one enterprise in detail: its code and level now, every
// indicator against its Level I/II/III benchmarks, the evaluation indices,
// lagging indicators, meter freshness and the raw readings.
func enterprise(std *scoring.Standard, pol *scoring.Policy) *dashboard.DashboardBuilder {
	var windows []string
	for _, w := range std.Windows {
		windows = append(windows, w.Name)
	}
	codeWin := pol.Window

	d := dashboard.NewDashboardBuilder(bi("企业清洁生产详情", "cleanprod enterprise")).
		Uid(EnterpriseUID).
		Description(about("单个企业：动态码与等级、各指标对照一/二/三级基准值、综合评价指数、落后指标、仪表数据新鲜度、原始用量与产量。", "One enterprise: code and level, every indicator against its Level I/II/III benchmarks, evaluation indices, lagging indicators, meter freshness, raw consumption and production.")).
		Tags([]string{"cleanprod", "supervisor"}).
		Time("now-7d", "now").Refresh("1m").Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Readonly().
		WithVariable(constVar("bucket", DefaultBucket, about("读数与评分器输出所在的 InfluxDB 存储桶（1.8：数据库/保留策略）", "InfluxDB bucket of readings and scorer outputs (1.8: database/retention-policy)"))).
		WithVariable(dashboard.NewQueryVariableBuilder("enterprise").Label(bi("企业", "Enterprise")).
			Description(about("评分器已写入得分的企业", "Enterprises the scorer has written scores for")).
			Datasource(*influxQLDS()).
			Query(dashboard.StringOrMap{String: cog.ToPtr(`SHOW TAG VALUES FROM "score" WITH KEY = "enterprise"`)}).
			Definition(`SHOW TAG VALUES FROM "score" WITH KEY = "enterprise"`).
			Refresh(dashboard.VariableRefreshOnDashboardLoad).Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(false).IncludeAll(false)).
		WithVariable(customVar("window", bi("评价窗口", "Window"), windows, windows[0]).
			Description(about("标准的滚动评价窗口："+fmt.Sprint(windows)+"；动态码按 "+codeWin+" 窗口",
				"Rolling window of the standard: "+fmt.Sprint(windows)+"; the code follows "+codeWin))).
		WithVariable(dashboard.NewQueryVariableBuilder("quantity").Label(bi("计量量", "Quantity")).
			Description(about("企业的计量量（累计表与增量表）", "Metered quantities (counters and delta meters) of the enterprise")).
			Datasource(*influxQLDS()).
			Query(dashboard.StringOrMap{String: cog.ToPtr(`SHOW TAG VALUES FROM "meter" WITH KEY = "quantity" WHERE "enterprise" = '$enterprise' AND "kind" != 'gauge'`)}).
			Definition(`SHOW TAG VALUES FROM "meter" WITH KEY = "quantity" WHERE "enterprise" = '$enterprise' AND "kind" != 'gauge'`).
			Refresh(dashboard.VariableRefreshOnDashboardLoad).Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).IncludeAll(true).
			Current(dashboard.VariableOption{Selected: cog.ToPtr(true),
				Text:  dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
				Value: dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}}})).
		Link(dashLink(bi("监管总览", "Fleet overview"), FleetUID, FleetSlug)).
		Link(dashLink(bi("数据接入健康", "Ingestion health"), IngestUID, IngestSlug))

	scoreField := func(title, desc, window, field, unit string, extra func(*stat.PanelBuilder)) {
		p := stat.NewPanelBuilder().Title(title).Description(desc).
			Datasource(*fluxDS()).Span(4).Height(4).
			WithTarget(flux("A", fluxText(`
				from(bucket: "${bucket}")
				  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
				  |> filter(fn: (r) => r._measurement == "score" and r.enterprise == "${enterprise}" and r.window == "`+window+`" and r._field == "`+field+`")
				  |> last()
				  |> keep(columns: ["_time", "_value"])`))).
			ReduceOptions(reduceLast("/^_value$/")).GraphMode(common.BigValueGraphModeNone).
			ColorMode(common.BigValueColorModeBackground).TextMode(common.BigValueTextModeValue).Orientation(common.VizOrientationAuto).Unit(unit)
		if extra != nil {
			extra(p)
		}
		d.WithPanel(p)
	}
	d.WithRow(dashboard.NewRowBuilder("${enterprise} 当前 now"))
	scoreField(bi("动态码", "Dynamic code"), about(codeWin+" 窗口的动态码，按数据时间施加滞后；首次数据充足的评价之前为未赋码。",
		"The code on the "+codeWin+" window, with hysteresis applied in data time; no code yet until the first assessment with enough data."), codeWin, "code", "none",
		func(p *stat.PanelBuilder) { p.Mappings(codeMappings()) })
	scoreField(bi("等级", "Level (${window})"), about("所选窗口的清洁生产等级。", "Cleaner-production level on the chosen window."), "${window}", "level", "none",
		func(p *stat.PanelBuilder) { p.Mappings(levelMappings()) })
	scoreField(bi("得分", "Score (${window})"), about("0–100 连续得分：用于同一等级内排序。", "Continuous 0-100 score: orders enterprises within a level."), "${window}", "score", "none",
		func(p *stat.PanelBuilder) {
			p.Decimals(1).Min(0).Max(100).Thresholds(thresholds(colRed, 60, colOrange, 80, colLime, 90, colGreen))
		})
	scoreField(bi("数据完整度", "Data completeness (${window})"), about("数据充足的计量指标占比；低于策略下限时不评级。",
		"Share of metered indicators with enough data; below the policy's minimum the enterprise is not graded."), "${window}", "completeness", "percentunit",
		func(p *stat.PanelBuilder) {
			p.Decimals(0).Thresholds(thresholds(colRed, pol.MinCompleteness, colGreen))
		})
	d.WithPanel(stat.NewPanelBuilder().Title(bi("下次审核", "Next audit due")).
		Description(about("上次申报的审核加当前动态码对应的周期（首次赋码前无）。", "The last declared audit plus the interval of the current code (none before the enterprise's first code).")).
		Datasource(*fluxDS()).Span(4).Height(4).
		WithTarget(flux("A", fluxText(`
			from(bucket: "${bucket}")
			  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
			  |> filter(fn: (r) => r._measurement == "score" and r.enterprise == "${enterprise}" and r.window == "`+codeWin+`" and r._field == "next_audit_due")
			  |> last()
			  |> map(fn: (r) => ({_time: r._time, _value: r._value * 1000}))`))).
		ReduceOptions(reduceLast("/^_value$/")).GraphMode(common.BigValueGraphModeNone).
		ColorMode(common.BigValueColorModeNone).TextMode(common.BigValueTextModeValue).Orientation(common.VizOrientationAuto).Unit("dateTimeAsIso"))
	scoreField(bi("离线仪表", "Stale meters"), about("停报超过策略 stale.after 的仪表数。", "Meters silent for longer than the policy's stale.after."), codeWin, "stale_meters", "none",
		func(p *stat.PanelBuilder) { p.Decimals(0).Thresholds(thresholds(colGreen, 1, colRed)) })

	d.WithRow(dashboard.NewRowBuilder(bi("评价", "Evaluation")))
	d.WithPanel(timeseries.NewPanelBuilder().
		Title(bi("综合评价指数", "Comprehensive evaluation indices (${window})")).
		Description(about("Y_I、Y_II、Y_III（0–100）：一级需 Y_I ≥ 85 且限定性指标均达一级；二级同理用 Y_II；三级需 Y_III = 100。", "Y_I, Y_II, Y_III (0-100): Level I needs Y_I >= 85 and every restrictive indicator at I; Level II likewise with Y_II; Level III needs Y_III = 100.")).
		Datasource(*fluxDS()).Span(12).Height(8).
		WithTarget(flux("A", fluxText(`
			from(bucket: "${bucket}")
			  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
			  |> filter(fn: (r) => r._measurement == "score" and r.enterprise == "${enterprise}" and r.window == "${window}" and (r._field == "y_i" or r._field == "y_ii" or r._field == "y_iii"))
			  |> aggregateWindow(every: v.windowPeriod, fn: last, createEmpty: false)
			  |> keep(columns: ["_time", "_value", "_field"])`))).
		DisplayName("${__field.labels._field}").Min(0).Max(100).Decimals(1).
		Thresholds(thresholds(colGray, 85, colGreen)).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		OverrideByName("y_i", []dashboard.DynamicConfigValue{prop("displayName", "Y_I"), fixedColor(colGreen)}).
		OverrideByName("y_ii", []dashboard.DynamicConfigValue{prop("displayName", "Y_II"), fixedColor(colLime)}).
		OverrideByName("y_iii", []dashboard.DynamicConfigValue{prop("displayName", "Y_III"), fixedColor(colOrange)}))
	d.WithPanel(statetimeline.NewPanelBuilder().
		Title(bi("指标等级", "Indicator levels (${window})")).
		Description(about("各已评级指标的等级变化。", "Level of every graded indicator over time.")).
		Datasource(*fluxDS()).Span(12).Height(8).
		WithTarget(flux("A", fluxText(`
			from(bucket: "${bucket}")
			  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
			  |> filter(fn: (r) => r._measurement == "indicator" and r.enterprise == "${enterprise}" and r.window == "${window}" and r._field == "level")
			  |> aggregateWindow(every: v.windowPeriod, fn: last, createEmpty: false)
			  |> keep(columns: ["_time", "_value", "indicator"])`))).
		DisplayName("${__field.labels.indicator}").Mappings(levelMappings()).
		ShowValue(common.VisibilityModeNever).MergeValues(true).RowHeight(0.9))
	d.WithPanel(newTable().
		Title(bi("落后指标", "Lagging indicators (${window})")).
		Description(about("未达一级的已评级指标，最差在前；API 的 lagging 列表另附方案库中的措施。", "Graded indicators not at Level I, worst first; the API's lagging list adds matching solutions from the library.")).
		Datasource(*fluxDS()).Span(24).Height(8).
		WithTarget(flux("A", fluxText(`
			from(bucket: "${bucket}")
			  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
			  |> filter(fn: (r) => r._measurement == "indicator" and r.enterprise == "${enterprise}" and r.window == "${window}")
			  |> last()
			  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
			  |> group()
			  |> filter(fn: (r) => r.status == "graded" and r.level > 1)
			  |> map(fn: (r) => ({r with gap: float(v: r.level) * 1000.0 - r.score}))
			  |> sort(columns: ["gap"], desc: true)
			  |> keep(columns: ["indicator", "value", "level", "score", "weight", "coverage", "source"])`))).
		OverrideByName("level", []dashboard.DynamicConfigValue{prop("mappings", levelMappings()), cellColor()}).
		OverrideByName("score", []dashboard.DynamicConfigValue{prop("decimals", 1)}).
		OverrideByName("coverage", []dashboard.DynamicConfigValue{prop("unit", "percentunit")}))

	// Every indicator against its benchmarks, a row per group.
	for _, g := range std.Groups {
		var quant, qual []*scoring.Indicator
		for _, ind := range g.Indicators {
			if ind.Kind == scoring.Quantitative {
				quant = append(quant, ind)
			} else {
				qual = append(qual, ind)
			}
		}
		d.WithRow(dashboard.NewRowBuilder(bi(g.NameZH, g.NameEN)))
		n := len(quant)
		if len(qual) > 0 {
			n++
		}
		spans := rowSpans(n, 3)
		for i, ind := range quant {
			d.WithPanel(indicatorPanel(ind, spans[i]))
		}
		if len(qual) > 0 {
			d.WithPanel(declaredPanel(qual, spans[len(spans)-1]))
		}
	}

	d.WithRow(dashboard.NewRowBuilder(bi("仪表与网关", "Meters and gateways")))
	d.WithPanel(newTable().
		Title(bi("仪表数据新鲜度", "Meter freshness")).
		Description(about(fmt.Sprintf("近 30 天（实时窗口）各仪表的最后读数，最旧在前；超过 %s 变红（评分器判为停报）。停报更久的仪表不在此列：见仪表停报事件。", pol.StaleAfter),
			fmt.Sprintf("Last reading of every meter over the past 30 days (the live window), oldest first; red after %s, when the scorer calls a meter stale. A meter silent for longer is missing here: see stale meter events.", pol.StaleAfter))).
		Datasource(*fluxDS()).Span(12).Height(10).
		WithTarget(flux("A", fluxText(`
			meters = from(bucket: "${bucket}")
			  |> range(start: 0)
			  |> filter(fn: (r) => r._measurement == "meter" and r.enterprise == "${enterprise}" and r._field == "unit")
			  |> group(columns: ["meter"])
			  |> last()
			  |> group()
			  |> keep(columns: ["meter", "gateway", "quantity", "kind"])
			latest = from(bucket: "${bucket}")
			  |> range(start: -30d)
			  |> filter(fn: (r) => r._measurement == "reading" and r.enterprise == "${enterprise}" and (r._field == "delta" or r._field == "value"))
			  |> last()
			  |> group()
			  |> keep(columns: ["meter", "_time"])
			join(tables: {r: latest, m: meters}, on: ["meter"])
			  |> map(fn: (r) => ({meter: r.meter, gateway: r.gateway, quantity: r.quantity, kind: r.kind, last_reading: r._time,
			      age: float(v: int(v: now()) - int(v: r._time)) / 1000000000.0}))
			  |> sort(columns: ["age"], desc: true)`))).
		OverrideByName("last_reading", []dashboard.DynamicConfigValue{prop("displayName", bi("最后读数", "last reading")), prop("unit", "dateTimeAsIso")}).
		OverrideByName("age", []dashboard.DynamicConfigValue{prop("unit", "s"), prop("decimals", 0),
			prop("thresholds", map[string]any{"mode": "absolute", "steps": []map[string]any{
				{"value": nil, "color": colGreen}, {"value": pol.StaleAfter.Seconds() / 6, "color": colOrange},
				{"value": pol.StaleAfter.Seconds(), "color": colRed}}}),
			cellColor()}))
	d.WithPanel(newTable().
		Title(bi("仪表停报事件", "Stale meter events")).
		Description(about("仪表停报达策略 stale.after 时产生停报事件；恢复上报后标记 resolved。", "A meter silent for the policy's stale.after raises a stale event; resolved when it reports again.")).
		Datasource(*fluxDS()).Span(12).Height(10).
		WithTarget(flux("A", fluxText(`
			from(bucket: "${bucket}")
			  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
			  |> filter(fn: (r) => r._measurement == "event" and r.enterprise == "${enterprise}" and r.kind == "stale")
			  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
			  |> group()
			  |> sort(columns: ["_time"], desc: true)
			  |> keep(columns: ["_time", "meter", "resolved", "reason"])`))).
		OverrideByName("_time", []dashboard.DynamicConfigValue{prop("displayName", bi("时间", "time"))}).
		OverrideByName("resolved", []dashboard.DynamicConfigValue{prop("mappings", []dashboard.ValueMapping{mapping(map[string][2]string{
			"true": {bi("恢复上报", "reporting again"), colGreen}, "false": {bi("停报", "silent"), colRed}})}), cellColor()}))
	d.WithPanel(bargauge.NewPanelBuilder().
		Title(bi("网关距上次消息时长", "Gateways: time since last message")).
		Description(about("各网关上次被接受的消息至今的秒数（Prometheus）；15 分钟后告警。", "Seconds since each gateway's last accepted message (Prometheus); the GatewayOffline alert fires after 15 minutes.")).
		Datasource(*promDS()).Span(8).Height(7).
		WithTarget(prometheus.NewDataqueryBuilder().RefId("A").Datasource(*promDS()).Instant().
			Expr(`time() - max by (gateway) (cleanprod_ingest_last_message_timestamp_seconds{enterprise="$enterprise"})`).
			LegendFormat("{{gateway}}")).
		ReduceOptions(reduceLast("")).Orientation(common.VizOrientationHorizontal).
		DisplayMode(common.BarGaugeDisplayModeBasic).Unit("s").Min(0).
		Thresholds(thresholds(colGreen, 300, colOrange, 900, colRed)))
	d.WithPanel(bargauge.NewPanelBuilder().
		Title(bi("网关边缘丢失的消息", "Gateways: messages lost at the edge")).
		Description(about("时间范围内各网关按 seq 缺失的消息：在仪表与代理之间丢失。", "Messages missing by seq over the time range, per gateway: lost between meter and broker.")).
		Datasource(*promDS()).Span(8).Height(7).
		WithTarget(prometheus.NewDataqueryBuilder().RefId("A").Datasource(*promDS()).Instant().
			Expr(`sum by (gateway) (increase(cleanprod_ingest_seq_gaps_total{enterprise="$enterprise"}[$__range]))`).
			LegendFormat("{{gateway}}")).
		ReduceOptions(reduceLast("")).Orientation(common.VizOrientationHorizontal).
		DisplayMode(common.BarGaugeDisplayModeBasic).Unit("none").Decimals(0).Min(0).
		Thresholds(thresholds(colGreen, 1, colOrange)))
	d.WithPanel(timeseries.NewPanelBuilder().
		Title(bi("被拒输入（全部企业）", "Rejected input, whole fleet")).
		Description(about("全部企业按原因的被拒消息与读数速率：尚未按企业计数。", "Rejected messages and readings per second by reason, for the whole fleet: the service does not count rejects per enterprise yet. The envelopes on cp/v1/deadletter/{reason} name the topic, hence the enterprise.")).
		Datasource(*promDS()).Span(8).Height(7).
		WithTarget(prometheus.NewDataqueryBuilder().RefId("A").Datasource(*promDS()).Range().
			Expr(`sum by (reason) (rate(cleanprod_ingest_rejected_total[$__rate_interval]))`).
			LegendFormat("{{reason}}")).
		Unit("reqps").Min(0))

	d.WithRow(dashboard.NewRowBuilder(bi("用量与产量", "Consumption and production")))
	d.WithPanel(timeseries.NewPanelBuilder().
		Title(bi("$quantity 区间用量（按仪表）", "$quantity per interval, by meter")).
		Description(about("累计表与增量表的用量（规范单位），按区间求和；产量是强度指标的分母。", "Amounts of counters and delta meters in the quantity's canonical unit (registry/quantity.go), summed per interval; production quantities (vehicles, bodies, ecoat_area) are the denominators of the intensity indicators.")).
		Datasource(*fluxDS()).Span(24).Height(7).
		Repeat("quantity").RepeatDirection(dashboard.PanelRepeatDirectionH).MaxPerRow(3).
		WithTarget(flux("A", fluxText(`
			meters = from(bucket: "${bucket}")
			  |> range(start: 0)
			  |> filter(fn: (r) => r._measurement == "meter" and r.enterprise == "${enterprise}" and r.quantity == "${quantity}" and r._field == "unit")
			  |> group(columns: ["meter"])
			  |> last()
			  |> group()
			  |> keep(columns: ["meter"])
			amounts = from(bucket: "${bucket}")
			  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
			  |> filter(fn: (r) => r._measurement == "reading" and r.enterprise == "${enterprise}" and r._field == "delta")
			  |> aggregateWindow(every: v.windowPeriod, fn: sum, createEmpty: false)
			  |> group()
			  |> keep(columns: ["_time", "_value", "meter"])
			join(tables: {a: amounts, m: meters}, on: ["meter"])
			  |> group(columns: ["meter"])
			  |> sort(columns: ["_time"])`))).
		DrawStyle(common.GraphDrawStyleBars).FillOpacity(80).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).Min(0))
	d.WithPanel(timeseries.NewPanelBuilder().
		Title(bi("在线监测读数", "Analyser readings")).
		Description(about("在线监测值（浓度、pH、流量）按区间和仪表取均值，规范单位。", "Gauges (concentrations, pH, flows) averaged per interval, by meter, in canonical units (a reading's value field is a gauge's: counters keep register and delta, delta meters delta).")).
		Datasource(*influxQLDS()).Span(24).Height(8).
		WithTarget(influxQL("A", `SELECT mean("value") FROM "reading" WHERE "enterprise" = '$enterprise' AND $timeFilter GROUP BY time($__interval), "meter" fill(none)`, "time_series", "$tag_meter")))
	d.WithPanel(timeseries.NewPanelBuilder().
		Title(bi("在线监测无效数据", "Analyser values flagged invalid")).
		Description(about("HJ 212 站点标记为无效的数据（F 停运、M 维护、D 故障、C 校准、T 超量程、B 通讯异常等），按区间、仪表和标记计数；不计入均值、排放量或达标率。", "Values an HJ 212 station flagged as not valid data (F stopped, M maintenance, D fault, C calibration, T over range, B communication; S unless hand-set values are allowed), counted per interval by meter and flag. They count toward no mean, mass or compliance; each such hour is missing from the analyser's data availability. Many flagged hours around high readings deserve a look.")).
		Datasource(*influxQLDS()).Span(24).Height(7).
		WithTarget(influxQL("A", `SELECT count("value") FROM "reading_flagged" WHERE "enterprise" = '$enterprise' AND $timeFilter GROUP BY time($__interval), "meter", "flag" fill(none)`, "time_series", "$tag_meter $tag_flag")).
		DrawStyle(common.GraphDrawStyleBars).FillOpacity(80).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).Min(0))
	return d
}

// rowSpans splits n panels into rows of at most per panels that fill the
// 24-column grid exactly.
func rowSpans(n, per int) []uint32 {
	var spans []uint32
	for n > 0 {
		k := min(n, per)
		for range k {
			spans = append(spans, uint32(24/k))
		}
		n -= k
	}
	return spans
}

// indicatorPanel charts one quantitative indicator with its Level
// I/II/III benchmarks as coloured thresholds.
func indicatorPanel(ind *scoring.Indicator, span uint32) *timeseries.PanelBuilder {
	b := ind.Benchmarks
	better, betterZH := "lower is better", "越低越好"
	var th *dashboard.ThresholdsConfigBuilder
	if ind.Direction == scoring.HigherBetter {
		better, betterZH = "higher is better", "越高越好"
		th = thresholds(colRed, dedupeSteps(b[2], colOrange, b[1], colLime, b[0], colGreen)...)
	} else {
		th = thresholds(colGreen, dedupeSteps(b[0], colLime, b[1], colOrange, b[2], colRed)...)
	}
	unit := superscripts.Replace(ind.Unit)
	zh := fmt.Sprintf("%s：一级 %s，二级 %s，三级 %s %s；%s。", ind.NameZH, num(b[0]), num(b[1]), num(b[2]), unit, betterZH)
	en := fmt.Sprintf("%s (%s): Level I %s, II %s, III %s %s; %s.", ind.ID, ind.NameEN,
		num(b[0]), num(b[1]), num(b[2]), unit, better)
	if ind.Restrictive {
		zh += "限定性指标：低于三级则动态码为红码。"
		en += " Restrictive: below Level III turns the code red."
	}
	if !ind.Metered() {
		zh += "由企业申报，非计量。"
		en += " Declared by the enterprise, not metered."
	}
	desc := about(zh, en)
	title := bi(ind.NameZH, ind.NameEN)
	if ind.Unit != "" {
		title += " (" + superscripts.Replace(ind.Unit) + ")"
	}
	return timeseries.NewPanelBuilder().
		Title(title).Description(desc).
		Datasource(*fluxDS()).Span(span).Height(7).
		WithTarget(flux("A", fluxText(`
			from(bucket: "${bucket}")
			  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
			  |> filter(fn: (r) => r._measurement == "indicator" and r.enterprise == "${enterprise}" and r.window == "${window}" and r.indicator == "`+ind.ID+`" and r._field == "value")
			  |> aggregateWindow(every: v.windowPeriod, fn: last, createEmpty: false)
			  |> keep(columns: ["_time", "_value"])`))).
		DisplayName(ind.ID).Unit(grafanaUnit(ind.Unit)).
		Thresholds(th).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeLineAndArea)).
		ColorScheme(dashboard.NewFieldColorBuilder().Mode(dashboard.FieldColorModeIdFixed).FixedColor("blue"))
}

// declaredPanel lists the qualitative (declared) indicators of a group.
func declaredPanel(inds []*scoring.Indicator, span uint32) *table.PanelBuilder {
	ids := make([]string, len(inds))
	for i, ind := range inds {
		ids[i] = strconv.Quote(ind.ID)
	}
	return newTable().
		Title(bi("申报指标", "Declared indicators")).
		Description(about("定性指标，按企业申报（source）及其有效期评级。", "Qualitative indicators, graded from the enterprise's declarations (source) with their validity.")).
		Datasource(*fluxDS()).Span(span).Height(7).
		WithTarget(flux("A", fluxText(`
			from(bucket: "${bucket}")
			  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
			  |> filter(fn: (r) => r._measurement == "indicator" and r.enterprise == "${enterprise}" and r.window == "${window}" and contains(value: r.indicator, set: [`+strings.Join(ids, ", ")+`]))
			  |> last()
			  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
			  |> group()
			  |> keep(columns: ["indicator", "status", "level", "source"])`))).
		OverrideByName("level", []dashboard.DynamicConfigValue{prop("mappings", levelMappings()), cellColor()})
}

// dedupeSteps drops a threshold step whose value a later step repeats
// (equal benchmarks, e.g. 100/100/100 for a compliance rate), so the best
// level's colour wins at that value.
func dedupeSteps(pairs ...any) []any {
	var out []any
	for i := 0; i+1 < len(pairs); i += 2 {
		if i+2 < len(pairs) && toFloat(pairs[i]) == toFloat(pairs[i+2]) {
			continue
		}
		out = append(out, pairs[i], pairs[i+1])
	}
	return out
}

// superscripts write a unit's powers as the pages do: g/m2 as g/m².
var superscripts = strings.NewReplacer("m2", "m²", "m3", "m³")

func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
