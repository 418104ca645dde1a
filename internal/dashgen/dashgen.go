package dashgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/table"

	"github.com/cleanprod/cleanprod/scoring"
)

// Datasource uids: dashboards/provisioning/datasources/cleanprod.yaml
// provisions datasources under these uids, and every panel names one.
const (
	FluxUID        = "cleanprod-flux"       // InfluxDB, Flux
	InfluxQLUID    = "cleanprod-influxql"   // InfluxDB, InfluxQL
	PrometheusUID  = "cleanprod-prometheus" // Prometheus scraping cleanprod
	PrometheusType = "prometheus"
)

// Dashboard uids and URL slugs; alert annotations link to
// /d/{uid}/{slug}.
const (
	FleetUID       = "cleanprod-fleet"
	FleetSlug      = "cleanprod-fleet-overview"
	EnterpriseUID  = "cleanprod-enterprise"
	EnterpriseSlug = "cleanprod-enterprise"
	IngestUID      = "cleanprod-ingest"
	IngestSlug     = "cleanprod-ingestion-health"
)

// DefaultBucket is the InfluxDB bucket the dashboards read unless the
// hidden dashboard constant "bucket" is changed: the service's default
// influx.bucket (InfluxDB 1.8: database/retention-policy).
const DefaultBucket = "telemetry/autogen"

// File is one generated file, named relative to the dashboards folder.
type File struct {
	Name string
	Data []byte
}

// Generate returns the dashboards for the standard std and the policy pol
// (the per-indicator panels, their Level I/II/III thresholds and the
// indicator choices come from std; the code's window from pol), as
// indented JSON files that Grafana imports.
func Generate(std *scoring.Standard, pol *scoring.Policy) ([]File, error) {
	builders := []struct {
		name  string
		build func() (dashboard.Dashboard, error)
	}{
		{"cleanprod-fleet.json", func() (dashboard.Dashboard, error) { return fleet(std, pol).Build() }},
		{"cleanprod-enterprise.json", func() (dashboard.Dashboard, error) { return enterprise(std, pol).Build() }},
		{"cleanprod-ingest.json", func() (dashboard.Dashboard, error) { return ingestHealth().Build() }},
	}
	var (
		files []File
		errs  []error
	)
	for _, b := range builders {
		d, err := b.build()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.name, err))
			continue
		}
		numberPanels(&d)
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(d); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.name, err))
			continue
		}
		files = append(files, File{Name: b.name, Data: buf.Bytes()})
	}
	return files, errors.Join(errs...)
}

// Write writes files into dir, replacing what is there under their names.
func Write(dir string, files []File) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// numberPanels gives every panel and row a unique id, in layout order, so
// that links to a panel (viewPanel=ID) stay stable between generations.
func numberPanels(d *dashboard.Dashboard) {
	id := uint32(1)
	for i := range d.Panels {
		p := &d.Panels[i]
		switch {
		case p.Panel != nil:
			p.Panel.Id = cog.ToPtr(id)
		case p.RowPanel != nil:
			p.RowPanel.Id = id
			for j := range p.RowPanel.Panels {
				id++
				p.RowPanel.Panels[j].Id = cog.ToPtr(id)
			}
		}
		id++
	}
}

func fluxDS() *common.DataSourceRef {
	return &common.DataSourceRef{Type: cog.ToPtr(InfluxType), Uid: cog.ToPtr(FluxUID)}
}

func influxQLDS() *common.DataSourceRef {
	return &common.DataSourceRef{Type: cog.ToPtr(InfluxType), Uid: cog.ToPtr(InfluxQLUID)}
}

func promDS() *common.DataSourceRef {
	return &common.DataSourceRef{Type: cog.ToPtr(PrometheusType), Uid: cog.ToPtr(PrometheusUID)}
}

// dashboardURL is the path of a dashboard, as alert annotations and data
// links use it.
func dashboardURL(uid, slug string) string { return "/d/" + uid + "/" + slug }

// enterpriseLink is a table-cell data link from an enterprise id to its
// detail dashboard, keeping the time range.
func enterpriseLink() dashboard.DynamicConfigValue {
	return dashboard.DynamicConfigValue{Id: "links", Value: []map[string]any{{
		"title": bi("企业详情", "Enterprise detail"),
		"url":   dashboardURL(EnterpriseUID, EnterpriseSlug) + "?var-enterprise=${__value.text}&${__url_time_range}",
	}}}
}

// Colours of the dynamic codes and levels.
const (
	colGreen  = "green"
	colYellow = "yellow"
	colOrange = "orange"
	colRed    = "red"
	colGray   = "text"
	colLime   = "#96D98D"
)

func mapping(opts map[string][2]string) dashboard.ValueMapping {
	m := dashboard.NewValueMap()
	for i, v := range sortedKeys(opts) {
		m.Options[v] = dashboard.ValueMappingResult{Text: cog.ToPtr(opts[v][0]), Color: cog.ToPtr(opts[v][1]), Index: cog.ToPtr(int32(i))}
	}
	return dashboard.ValueMapping{ValueMap: m}
}

// codeMappings colour the dynamic codes; an enterprise without one yet
// (code "": not enough data so far) reads "no code yet".
func codeMappings() []dashboard.ValueMapping {
	none := dashboard.NewSpecialValueMap()
	none.Options.Match = dashboard.SpecialValueMatchEmpty
	none.Options.Result = dashboard.ValueMappingResult{Text: cog.ToPtr(bi("未赋码", "no code yet")), Color: cog.ToPtr(colGray), Index: cog.ToPtr(int32(3))}
	return []dashboard.ValueMapping{mapping(map[string][2]string{
		"green": {bi("绿码", "green"), colGreen}, "yellow": {bi("黄码", "yellow"), colYellow}, "red": {bi("红码", "red"), colRed},
	}), {SpecialValueMap: none}}
}

// levelMappings name the levels of the score and indicator points
// (0 not graded, 1-3 Level I-III, 4 below III).
func levelMappings() []dashboard.ValueMapping {
	return []dashboard.ValueMapping{mapping(map[string][2]string{
		"0": {bi("未评级", "not graded"), colGray}, "1": {bi("一级", "Level I"), colGreen}, "2": {bi("二级", "Level II"), colLime},
		"3": {bi("三级", "Level III"), colOrange}, "4": {bi("三级以下", "below III"), colRed},
	})}
}

func prop(id string, v any) dashboard.DynamicConfigValue {
	return dashboard.DynamicConfigValue{Id: id, Value: v}
}

func fixedColor(c string) dashboard.DynamicConfigValue {
	return prop("color", map[string]any{"mode": "fixed", "fixedColor": c})
}

func cellColor() dashboard.DynamicConfigValue {
	return prop("custom.cellOptions", map[string]any{"type": "color-background", "mode": "basic"})
}

// thresholds returns absolute thresholds: base colour, then (value,
// colour) pairs in ascending order.
func thresholds(base string, steps ...any) *dashboard.ThresholdsConfigBuilder {
	ts := []dashboard.Threshold{{Value: nil, Color: base}}
	for i := 0; i+1 < len(steps); i += 2 {
		v := toFloat(steps[i])
		ts = append(ts, dashboard.Threshold{Value: &v, Color: steps[i+1].(string)})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(ts)
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case int:
		return float64(x)
	case float64:
		return x
	}
	panic(fmt.Sprintf("dashgen: threshold %v is not a number", v))
}

func reduceLast(fields string) *common.ReduceDataOptionsBuilder {
	return common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Fields(fields).Values(false)
}

// grafanaUnit maps a standard's unit to a Grafana unit.
func grafanaUnit(u string) string {
	switch u {
	case "%":
		return "percent"
	case "":
		return "none"
	}
	return "suffix: " + u
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Small maps: insertion sort keeps this dependency-free and stable.
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// fluxText removes the indentation a query has in Go source: the first
// line is trimmed, the others lose the tabs they all share.
func fluxText(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	common := -1
	for _, l := range lines[1:] {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, "\t"))
		if common < 0 || n < common {
			common = n
		}
	}
	for i := 1; i < len(lines); i++ {
		lines[i] = strings.TrimRight(lines[i][min(common, len(lines[i])-len(strings.TrimLeft(lines[i], "\t"))):], " \t")
	}
	return strings.Join(lines, "\n")
}

// constVar is a hidden dashboard constant.
func constVar(name, value, desc string) *dashboard.ConstantVariableBuilder {
	return dashboard.NewConstantVariableBuilder(name).Value(dashboard.StringOrMap{String: cog.ToPtr(value)}).Description(desc)
}

// customVar is a single-choice variable over fixed values.
func customVar(name, label string, values []string, current string) *dashboard.CustomVariableBuilder {
	opts := make([]dashboard.VariableOption, len(values))
	for i, v := range values {
		opts[i] = option(v, v, v == current)
	}
	return dashboard.NewCustomVariableBuilder(name).Label(label).
		Values(dashboard.StringOrMap{String: cog.ToPtr(strings.Join(values, ","))}).
		Current(option(current, current, true)).Options(opts)
}

func option(text, value string, selected bool) dashboard.VariableOption {
	return dashboard.VariableOption{Selected: cog.ToPtr(selected),
		Text:  dashboard.StringOrArrayOfString{String: cog.ToPtr(text)},
		Value: dashboard.StringOrArrayOfString{String: cog.ToPtr(value)}}
}

// link to another dashboard of the set, keeping time and variables.
func dashLink(title, uid, slug string) *dashboard.DashboardLinkBuilder {
	return dashboard.NewDashboardLinkBuilder(title).Type(dashboard.DashboardLinkTypeLink).
		Url(dashboardURL(uid, slug)).KeepTime(true).IncludeVars(false).Icon("dashboard").
		AsDropdown(false).TargetBlank(false).Tooltip(title).Tags([]string{})
}

// Load returns the standard and policy in the files named (empty: the
// shipped ones, as the service does).
func Load(standardFile, policyFile string) (*scoring.Standard, *scoring.Policy, error) {
	var (
		std *scoring.Standard
		err error
	)
	if standardFile == "" {
		std, err = scoring.DefaultStandard()
	} else {
		std, err = scoring.LoadStandard(standardFile)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("standard: %w", err)
	}
	var pol *scoring.Policy
	if policyFile == "" {
		pol, err = scoring.DefaultPolicy(std)
	} else {
		pol, err = scoring.LoadPolicy(policyFile, std)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("policy: %w", err)
	}
	return std, pol, nil
}

// newTable returns a table panel with its footer off (the SDK's default
// footer has a null reducer, which Grafana's schema refuses).
func newTable() *table.PanelBuilder {
	return table.NewPanelBuilder().
		Footer(common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{"sum"}).CountRows(false)).
		ShowHeader(true).CellHeight(common.TableCellHeightSm)
}

// bi is a title in Chinese with the English beside, as cleanprod's pages
// write them: "动态码分布 Enterprises by dynamic code".
func bi(zh, en string) string { return zh + " " + en }

// about is a description: a short line in Chinese, then the English.
func about(zh, en string) string { return zh + "\n\n" + en }
