package dashgen

import (
	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// sel is the label selector every ingestion-health query carries.
const sel = `instance=~"$instance"`

// promTarget is a range query with a legend.
func promTarget(ref, expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().RefId(ref).Datasource(*promDS()).Range().Expr(expr).LegendFormat(legend)
}

// promInstant is an instant query with a legend.
func promInstant(ref, expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().RefId(ref).Datasource(*promDS()).Instant().Expr(expr).LegendFormat(legend)
}

func promSeries(title, desc, unit string, span uint32, targets ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Title(title).Description(desc).
		Datasource(*promDS()).Span(span).Height(7).Unit(unit).Min(0)
	for _, t := range targets {
		p.WithTarget(t)
	}
	return p
}

// ingestHealth is the operator's view of the pipeline, from cleanprod's
// own Prometheus metrics.
func ingestHealth() *dashboard.DashboardBuilder {
	d := dashboard.NewDashboardBuilder(bi("数据接入健康", "cleanprod ingestion health")).
		Uid(IngestUID).
		Description(about("接入的遥测、存储的读数、拒收与死信、存储、网关与评分器，来自 cleanprod 的 /metrics。", "Telemetry in, readings stored, rejects and dead-letters, the store, gateways and the scorer, from cleanprod's /metrics.")).
		Tags([]string{"cleanprod", "operator"}).
		Time("now-6h", "now").Refresh("30s").Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Readonly().
		WithVariable(dashboard.NewQueryVariableBuilder("instance").Label(bi("实例", "Instance")).
			Description(about("Prometheus 采集的 cleanprod 实例", "cleanprod instances scraped by Prometheus")).
			Datasource(*promDS()).
			Query(dashboard.StringOrMap{String: cog.ToPtr(`label_values(cleanprod_ingest_messages_total, instance)`)}).
			Definition(`label_values(cleanprod_ingest_messages_total, instance)`).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).IncludeAll(true).AllValue(".*").
			Current(dashboard.VariableOption{Selected: cog.ToPtr(true),
				Text:  dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
				Value: dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}}})).
		Link(dashLink(bi("监管总览", "Fleet overview"), FleetUID, FleetSlug)).
		Link(dashLink(bi("企业详情", "Enterprise detail"), EnterpriseUID, EnterpriseSlug))

	d.WithRow(dashboard.NewRowBuilder(bi("吞吐", "Throughput")))
	d.WithPanel(promSeries(bi("每秒消息与读数", "Messages and readings per second"),
		about("收到的遥测消息、写入并确认的读数、作为重复吸收的重投读数。", "Telemetry messages received, readings written and acknowledged, and redelivered readings absorbed as duplicates."), "reqps", 12,
		promTarget("A", `sum(rate(cleanprod_ingest_messages_total{`+sel+`}[$__rate_interval]))`, "messages"),
		promTarget("B", `sum(rate(cleanprod_ingest_readings_written_total{`+sel+`}[$__rate_interval]))`, "readings written"),
		promTarget("C", `sum(rate(cleanprod_ingest_duplicates_total{`+sel+`}[$__rate_interval]))`, "duplicates absorbed")))
	d.WithPanel(promSeries(bi("按原因的拒收", "Rejected by reason"),
		about("按原因的每秒被拒消息与读数；每条带原因发布到 cp/v1/deadletter/{reason}。", "Rejected messages and readings per second by reason; each is published with its reason on cp/v1/deadletter/{reason}."), "reqps", 12,
		promTarget("A", `sum by (reason) (rate(cleanprod_ingest_rejected_total{`+sel+`}[$__rate_interval]))`, "{{reason}}")).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).FillOpacity(30))
	d.WithPanel(promSeries(bi("死信", "Dead-letters"),
		about("发布到 cp/v1/deadletter/# 的信封与发布失败（重试；消息保持未确认）。", "Envelopes published to cp/v1/deadletter/#, and failed publishes (retried; the message stays unacknowledged)."), "reqps", 8,
		promTarget("A", `sum(rate(cleanprod_ingest_deadletters_total{`+sel+`}[$__rate_interval]))`, "published"),
		promTarget("B", `sum(rate(cleanprod_ingest_deadletter_errors_total{`+sel+`}[$__rate_interval]))`, "publish errors")))
	d.WithPanel(promSeries(bi("处理中", "In flight"),
		about("已收到尚未确认的消息；存储故障时不超过 mqtt.max_unacked_messages（背压：其余由代理保留）。", "Messages received and not yet acknowledged; while the store is down it stays at or below mqtt.max_unacked_messages (back-pressure: the broker holds the rest)."), "none", 8,
		promTarget("A", `sum by (instance) (cleanprod_ingest_inflight_messages{`+sel+`})`, "{{instance}}")))
	d.WithPanel(stat.NewPanelBuilder().Title(bi("代理连接", "Broker connection")).
		Description(about("连接 MQTT 代理时为 1；时间范围内的重连与断连次数。", "1 while connected to the MQTT broker; reconnects and lost connections over the time range.")).
		Datasource(*promDS()).Span(8).Height(7).
		WithTarget(promInstant("A", `min(cleanprod_mqtt_connected{`+sel+`})`, "connected")).
		WithTarget(promInstant("B", `sum(increase(cleanprod_mqtt_connection_lost_total{`+sel+`}[$__range]))`, "connections lost")).
		WithTarget(promInstant("C", `sum(increase(cleanprod_mqtt_watchdog_reconnects_total{`+sel+`}[$__range]))`, "watchdog reconnects")).
		ReduceOptions(reduceLast("")).GraphMode(common.BigValueGraphModeNone).
		ColorMode(common.BigValueColorModeValue).TextMode(common.BigValueTextModeValueAndName).Orientation(common.VizOrientationAuto).Decimals(0).
		OverrideByName("connected", []dashboard.DynamicConfigValue{
			prop("mappings", []dashboard.ValueMapping{mapping(map[string][2]string{"0": {bi("已断开", "disconnected"), colRed}, "1": {bi("已连接", "connected"), colGreen}})})}))

	d.WithRow(dashboard.NewRowBuilder(bi("存储", "Store")))
	d.WithPanel(promSeries(bi("存储写入延迟", "Store write latency"),
		about("成功写入存储的耗时（每批最多 ingest.batch_size 条读数）。", "Duration of successful store writes (a batch of up to ingest.batch_size readings)."), "s", 8,
		promTarget("A", `histogram_quantile(0.5, sum by (le) (rate(cleanprod_store_write_duration_seconds_bucket{`+sel+`}[$__rate_interval])))`, "p50"),
		promTarget("B", `histogram_quantile(0.99, sum by (le) (rate(cleanprod_store_write_duration_seconds_bucket{`+sel+`}[$__rate_interval])))`, "p99")))
	d.WithPanel(promSeries(bi("存储写入错误", "Store write errors"),
		about("按类型的存储写入失败：临时的退避重试，永久的作为 store_rejected 进入死信。", "Failed store writes by kind: temporary ones are retried with back-off while acknowledgements wait; permanent ones are dead-lettered as store_rejected."), "reqps", 8,
		promTarget("A", `sum by (kind) (rate(cleanprod_store_write_errors_total{`+sel+`}[$__rate_interval]))`, "{{kind}}")))
	d.WithPanel(promSeries(bi("确认延迟与批量大小", "Acknowledgement latency and batch size"),
		about("从收到消息到存储接受后确认的耗时（p99），以及每次写入的读数（p50，右轴）。", "From receiving a message to acknowledging it after the store accepted it (p99), and readings per store write (p50, right axis)."), "s", 8,
		promTarget("A", `histogram_quantile(0.99, sum by (le) (rate(cleanprod_ingest_ack_latency_seconds_bucket{`+sel+`}[$__rate_interval])))`, "ack latency p99"),
		promTarget("B", `histogram_quantile(0.5, sum by (le) (rate(cleanprod_ingest_batch_readings_bucket{`+sel+`}[$__rate_interval])))`, "readings per write p50")).
		OverrideByName("readings per write p50", []dashboard.DynamicConfigValue{prop("unit", "none"), prop("custom.axisPlacement", "right")}))

	d.WithRow(dashboard.NewRowBuilder(bi("网关", "Gateways")))
	d.WithPanel(bargauge.NewPanelBuilder().Title(bi("各网关距上次消息时长", "Time since last message, per gateway")).
		Description(about("各已注册网关上次被接受的消息至今的秒数，最久在前；15 分钟后告警。", "Seconds since each registered gateway's last accepted message, longest first; CleanprodGatewayOffline fires after 15 minutes.")).
		Datasource(*promDS()).Span(12).Height(9).
		WithTarget(promInstant("A", `sort_desc(time() - max by (enterprise, gateway) (cleanprod_ingest_last_message_timestamp_seconds{`+sel+`}))`, "{{enterprise}} / {{gateway}}")).
		ReduceOptions(reduceLast("")).Orientation(common.VizOrientationHorizontal).
		DisplayMode(common.BarGaugeDisplayModeBasic).Unit("s").Min(0).
		Thresholds(thresholds(colGreen, 300, colOrange, 900, colRed)))
	d.WithPanel(promSeries(bi("边缘丢失的消息", "Messages lost at the edge"),
		about("各网关每小时按 seq 缺失的消息（网关与代理之间丢失），以及 seq 重复或倒退的消息。", "Messages missing by seq per gateway and hour (lost between the gateway and the broker), and messages whose seq repeated (redeliveries) or went backwards (gateway restart or late message)."), "none", 12,
		promTarget("A", `sum by (enterprise, gateway) (increase(cleanprod_ingest_seq_gaps_total{`+sel+`}[1h])) > 0`, "gap {{enterprise}} / {{gateway}}"),
		promTarget("B", `sum(increase(cleanprod_ingest_seq_repeats_total{`+sel+`}[1h]))`, "seq repeated"),
		promTarget("C", `sum(increase(cleanprod_ingest_seq_backwards_total{`+sel+`}[1h]))`, "seq backwards")).
		Decimals(0))
	d.WithPanel(promSeries(bi("累计表清零、回绕与换表", "Counter resets, rollovers and replacements"),
		about("累计寄存器回落：清零、达到量程回绕，或跨过申报的换表（每小时）。", "Cumulative registers that dropped: reset to zero, wrapped at their rollover, or crossed a declared meter replacement (per hour)."), "none", 24,
		promTarget("A", `sum by (event) (increase(cleanprod_ingest_counter_events_total{`+sel+`}[1h]))`, "{{event}}")).
		Decimals(0))

	d.WithRow(dashboard.NewRowBuilder(bi("评分", "Scoring")))
	d.WithPanel(promSeries(bi("评分周期耗时", "Scoring tick duration"),
		about("评价企业的评分周期耗时；超过 scoring.interval（默认 10s）即超时。", "Duration of scoring ticks that evaluated enterprises; a tick longer than scoring.interval (10s by default) overruns."), "s", 8,
		promTarget("A", `histogram_quantile(0.99, sum by (le) (rate(cleanprod_scoring_tick_duration_seconds_bucket{`+sel+`}[$__rate_interval])))`, "p99"),
		promTarget("B", `sum(rate(cleanprod_scoring_tick_duration_seconds_sum{`+sel+`}[$__rate_interval])) / sum(rate(cleanprod_scoring_tick_duration_seconds_count{`+sel+`}[$__rate_interval]))`, "mean")))
	d.WithPanel(promSeries(bi("评分器输入", "Scorer input"),
		about("按结果送入评分器的读数，以及等待应用的读数（右轴）。", "Readings offered to the scorer by result, and readings waiting to be applied (right axis)."), "reqps", 8,
		promTarget("A", `sum by (result) (rate(cleanprod_scoring_readings_total{`+sel+`}[$__rate_interval]))`, "{{result}}"),
		promTarget("B", `sum(cleanprod_scoring_pending_readings{`+sel+`})`, "pending")).
		OverrideByName("pending", []dashboard.DynamicConfigValue{prop("unit", "none"), prop("custom.axisPlacement", "right")}))
	d.WithPanel(promSeries(bi("评分器输出", "Scorer outputs"),
		about("按结果的指标与得分点（dropped 丢弃、failed 存储拒绝；下一周期重写），以及每小时按类型的事件。", "Indicator and score points by result (dropped: the write queue was full or they were queued at shutdown; failed: the store refused; the next tick writes fresh ones), and events by kind per hour."), "none", 8,
		promTarget("A", `sum by (result) (rate(cleanprod_scoring_points_total{`+sel+`}[$__rate_interval]))`, "points {{result}}/s"),
		promTarget("B", `sum by (kind) (increase(cleanprod_scoring_events_total{`+sel+`}[1h]))`, "events {{kind}}/h")))
	d.WithPanel(promSeries(bi("事件发件箱", "Event outbox"),
		about("在 data_dir/outbox 中等待投递的评分事件（按阶段）、投递失败速率与最久等待时长（右轴）；事件从不丢弃，积压只是迟到。", "Scoring events kept in data_dir/outbox until delivered, by stage (store: waiting for InfluxDB; mqtt: stored, waiting for the broker), delivery failures per second by target (retried until they pass), and how long the oldest has waited (right axis). Events are never dropped: a backlog means late, not lost."), "none", 24,
		promTarget("A", `sum by (stage) (cleanprod_events_outbox_events{`+sel+`})`, "waiting for {{stage}}"),
		promTarget("B", `sum by (target) (rate(cleanprod_events_outbox_failures_total{`+sel+`}[$__rate_interval]))`, "failures {{target}}/s"),
		promTarget("C", `max(cleanprod_events_outbox_oldest_age_seconds{`+sel+`})`, "oldest waiting")).
		OverrideByName("oldest waiting", []dashboard.DynamicConfigValue{prop("unit", "s"), prop("custom.axisPlacement", "right")}))
	d.WithPanel(stat.NewPanelBuilder().Title(bi("评分器状态", "Scorer state")).
		Description(about("已评分企业数、每秒评价次数，以及滚动窗口占用的内存。", "Enterprises scored, evaluations per second, and the memory held by their rolling windows.")).
		Datasource(*promDS()).Span(24).Height(4).
		WithTarget(promInstant("A", `sum(cleanprod_scoring_enterprises{`+sel+`})`, "enterprises")).
		WithTarget(promInstant("B", `sum(rate(cleanprod_scoring_evaluations_total{`+sel+`}[$__rate_interval]))`, "evaluations/s")).
		WithTarget(promInstant("C", `sum(cleanprod_scoring_window_state_bytes{`+sel+`})`, "window state")).
		ReduceOptions(reduceLast("")).GraphMode(common.BigValueGraphModeNone).
		ColorMode(common.BigValueColorModeNone).TextMode(common.BigValueTextModeValueAndName).Orientation(common.VizOrientationAuto).
		OverrideByName("window state", []dashboard.DynamicConfigValue{prop("unit", "bytes")}))
	return d
}
