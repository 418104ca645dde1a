package deploycheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	promsdk "github.com/grafana/grafana-foundation-sdk/go/prometheus"

	"github.com/cleanprod/cleanprod/internal/dashgen"
	"github.com/cleanprod/cleanprod/internal/yamlfile"
)

const (
	dashboardsDir   = "../../dashboards/json"
	datasourcesFile = "../../dashboards/provisioning/datasources/cleanprod.yaml"
	providersFile   = "../../dashboards/provisioning/dashboards/cleanprod.yaml"
)

// dash is one dashboard file, decoded generically for the checks the SDK
// types do not make easy.
type dash struct {
	file  string
	uid   string
	raw   []byte
	model map[string]any
}

// panel is a panel (or row) of a dashboard, flattened out of rows.
type panel struct {
	dash    *dash
	id      int
	typ     string
	title   string
	ds      dsRef
	repeat  string
	grid    [4]int // x, y, w, h
	targets []target
	model   map[string]any
}

type dsRef struct{ Type, UID string }

// target is one query of a panel: Flux, InfluxQL or PromQL.
type target struct {
	refID   string
	ds      dsRef
	query   string // Flux or InfluxQL text, or PromQL expr
	raw     bool   // InfluxQL
	format  string // InfluxQL resultFormat
	alias   string // InfluxQL alias
	legend  string // PromQL legendFormat
	instant bool
}

func (p *panel) String() string { return p.dash.uid + ": " + p.title }

func loadDashboards(t *testing.T) []*dash {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in %s (%v)", dashboardsDir, err)
	}
	var out []*dash
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d := &dash{file: filepath.Base(f), raw: raw}
		if err := json.Unmarshal(raw, &d.model); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		d.uid, _ = d.model["uid"].(string)
		out = append(out, d)
	}
	return out
}

func (d *dash) panels() []*panel {
	var out []*panel
	var add func(list []any)
	add = func(list []any) {
		for _, x := range list {
			m, _ := x.(map[string]any)
			p := &panel{dash: d, model: m}
			p.typ, _ = m["type"].(string)
			p.title, _ = m["title"].(string)
			p.repeat, _ = m["repeat"].(string)
			if id, ok := m["id"].(float64); ok {
				p.id = int(id)
			}
			p.ds = refOf(m["datasource"])
			if g, ok := m["gridPos"].(map[string]any); ok {
				for i, k := range []string{"x", "y", "w", "h"} {
					v, _ := g[k].(float64)
					p.grid[i] = int(v)
				}
			}
			ts, _ := m["targets"].([]any)
			for _, x := range ts {
				tm, _ := x.(map[string]any)
				tg := target{ds: refOf(tm["datasource"])}
				tg.refID, _ = tm["refId"].(string)
				if q, ok := tm["expr"].(string); ok {
					tg.query = q
				} else {
					tg.query, _ = tm["query"].(string)
				}
				tg.raw, _ = tm["rawQuery"].(bool)
				tg.format, _ = tm["resultFormat"].(string)
				tg.alias, _ = tm["alias"].(string)
				tg.legend, _ = tm["legendFormat"].(string)
				tg.instant, _ = tm["instant"].(bool)
				p.targets = append(p.targets, tg)
			}
			out = append(out, p)
			if sub, ok := m["panels"].([]any); ok {
				add(sub)
			}
		}
	}
	list, _ := d.model["panels"].([]any)
	add(list)
	return out
}

func refOf(v any) dsRef {
	m, _ := v.(map[string]any)
	var r dsRef
	r.Type, _ = m["type"].(string)
	r.UID, _ = m["uid"].(string)
	return r
}

// variable is a dashboard template variable.
type variable struct {
	name, typ, query  string
	ds                dsRef
	current           []string
	options           []string
	multi, includeAll bool
	allValue          string
}

func (d *dash) variables() []variable {
	tmpl, _ := d.model["templating"].(map[string]any)
	list, _ := tmpl["list"].([]any)
	var out []variable
	for _, x := range list {
		m, _ := x.(map[string]any)
		v := variable{ds: refOf(m["datasource"])}
		v.name, _ = m["name"].(string)
		v.typ, _ = m["type"].(string)
		v.query, _ = m["query"].(string)
		v.multi, _ = m["multi"].(bool)
		v.includeAll, _ = m["includeAll"].(bool)
		v.allValue, _ = m["allValue"].(string)
		if cur, ok := m["current"].(map[string]any); ok {
			v.current = strs(cur["value"])
		}
		opts, _ := m["options"].([]any)
		for _, o := range opts {
			om, _ := o.(map[string]any)
			v.options = append(v.options, strs(om["value"])...)
		}
		out = append(out, v)
	}
	return out
}

func strs(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// sdkErr undoes the foundation SDK's typed-nil: UnmarshalJSONStrict
// returns an empty cog.BuildErrors, which is a non-nil error.
func sdkErr(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

// registerPlugins registers the SDK's panel and query types, the InfluxDB
// query type of dashgen, and wraps every strict decoder so that the
// SDK's typed-nil "no error" (an empty cog.BuildErrors) does not make its
// callers drop what was decoded (options, field config, targets).
func registerPlugins(types ...string) {
	plugins.RegisterDefaultPlugins()
	rt := cog.NewRuntime()
	rt.RegisterDataqueryVariant(dashgen.InfluxVariant())
	prom := promsdk.VariantConfig()
	prom.StrictDataqueryUnmarshaler = func(raw []byte) (variants.Dataquery, error) {
		q := &promsdk.Dataquery{}
		if err := sdkErr(q.UnmarshalJSONStrict(raw)); err != nil {
			return nil, err
		}
		return q, nil
	}
	rt.RegisterDataqueryVariant(prom)
	for _, typ := range types {
		cfg, ok := rt.ConfigForPanelcfgVariant(typ)
		if !ok {
			continue
		}
		cfg.StrictOptionsUnmarshaler = keepDecoded(cfg.StrictOptionsUnmarshaler, cfg.OptionsUnmarshaler)
		cfg.StrictFieldConfigUnmarshaler = keepDecoded(cfg.StrictFieldConfigUnmarshaler, cfg.FieldConfigUnmarshaler)
		rt.RegisterPanelcfgVariant(cfg)
	}
}

// keepDecoded wraps a strict decoder that returns nothing with its typed
// nil "no error": when strict decoding found no problem, the lenient
// decoder gives the value.
func keepDecoded(strict, lenient func([]byte) (any, error)) func([]byte) (any, error) {
	if strict == nil || lenient == nil {
		return strict
	}
	return func(raw []byte) (any, error) {
		v, err := strict(raw)
		if err = sdkErr(err); err != nil || v != nil {
			return v, err
		}
		return lenient(raw)
	}
}

// strictDecode decodes a dashboard strictly. The SDK's own
// Dashboard.UnmarshalJSONStrict loses every panel (PanelOrRowPanel returns
// its typed-nil error before keeping the panel), so panels and rows are
// decoded one by one here.
func strictDecode(raw []byte) (dashboard.Dashboard, error) {
	var d dashboard.Dashboard
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return d, err
	}
	var list []json.RawMessage
	if err := json.Unmarshal(top["panels"], &list); err != nil {
		return d, fmt.Errorf("panels: %w", err)
	}
	delete(top, "panels")
	rest, _ := json.Marshal(top)
	var errs []error
	if err := sdkErr(d.UnmarshalJSONStrict(rest)); err != nil {
		errs = append(errs, err)
	}
	for i, pr := range list {
		var kind struct{ Type string }
		json.Unmarshal(pr, &kind)
		if kind.Type == "row" {
			var r dashboard.RowPanel
			if err := sdkErr(r.UnmarshalJSONStrict(pr)); err != nil {
				errs = append(errs, fmt.Errorf("panels[%d]: %w", i, err))
			}
			d.Panels = append(d.Panels, dashboard.PanelOrRowPanel{RowPanel: &r})
			continue
		}
		var p dashboard.Panel
		if err := sdkErr(p.UnmarshalJSONStrict(pr)); err != nil {
			errs = append(errs, fmt.Errorf("panels[%d]: %w", i, err))
		}
		d.Panels = append(d.Panels, dashboard.PanelOrRowPanel{Panel: &p})
	}
	return d, errors.Join(errs...)
}

// Every dashboard decodes strictly (unknown or mistyped fields anywhere,
// panel options and targets included, are errors) and validates; every
// target decodes to its datasource's query type, none to the SDK's bag of
// unknown fields; and nothing is lost: the decoded dashboard encodes back
// to the same JSON.
func TestDashboardsDecodeStrictly(t *testing.T) {
	dashes := loadDashboards(t)
	var types []string
	for _, d := range dashes {
		for _, p := range d.panels() {
			types = append(types, p.typ)
		}
	}
	registerPlugins(types...)
	for _, d := range dashes {
		t.Run(d.file, func(t *testing.T) {
			sd, err := strictDecode(d.raw)
			if err != nil {
				t.Fatalf("strict decode: %v", err)
			}
			if err := sdkErr(sd.Validate()); err != nil {
				t.Fatalf("validate: %v", err)
			}
			var targets int
			var check func(p *dashboard.Panel)
			check = func(p *dashboard.Panel) {
				for i, q := range p.Targets {
					targets++
					switch q.(type) {
					case variants.UnknownDataquery:
						t.Errorf("panel %q target %d: decoded as an unknown query type, so it was not checked strictly", deref(p.Title), i)
					case dashgen.InfluxQuery:
						if err := q.Validate(); err != nil {
							t.Errorf("panel %q target %d: %v", deref(p.Title), i, err)
						}
					}
					if got := q.DataqueryType(); p.Datasource == nil || p.Datasource.Type == nil || got != *p.Datasource.Type {
						t.Errorf("panel %q target %d: query type %s, panel datasource %v", deref(p.Title), i, got, p.Datasource)
					}
				}
			}
			for _, pr := range sd.Panels {
				if pr.Panel != nil {
					check(pr.Panel)
				}
				if pr.RowPanel != nil {
					for i := range pr.RowPanel.Panels {
						check(&pr.RowPanel.Panels[i])
					}
				}
			}
			if targets == 0 {
				t.Error("no targets decoded")
			}
			again, err := json.Marshal(sd)
			if err != nil {
				t.Fatal(err)
			}
			var a, b any
			json.Unmarshal(d.raw, &a)
			json.Unmarshal(again, &b)
			if diffs := jsonDiff("", a, b); len(diffs) > 0 {
				t.Errorf("decoding and encoding again changed the dashboard (%d differences), e.g.:\n%s", len(diffs), strings.Join(diffs[:min(10, len(diffs))], "\n"))
			}
		})
	}
}

// jsonDiff lists the paths where two decoded JSON values differ.
func jsonDiff(path string, a, b any) []string {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %v vs %v", path, a, b)}
		}
		var out []string
		keys := map[string]bool{}
		for k := range x {
			keys[k] = true
		}
		for k := range y {
			keys[k] = true
		}
		for _, k := range sortedKeys(keys) {
			out = append(out, jsonDiff(path+"."+k, x[k], y[k])...)
		}
		return out
	case []any:
		y, ok := b.([]any)
		if len(x) == 0 && b == nil {
			return nil // [] and null
		}
		if !ok || len(x) != len(y) {
			return []string{fmt.Sprintf("%s: %v vs %v", path, a, b)}
		}
		var out []string
		for i := range x {
			out = append(out, jsonDiff(fmt.Sprintf("%s[%d]", path, i), x[i], y[i])...)
		}
		return out
	}
	if !reflect.DeepEqual(a, b) {
		return []string{fmt.Sprintf("%s: %v vs %v", path, a, b)}
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Panels fit the 24-column grid, have a size, do not overlap, and have
// unique ids; dashboards have unique uids, titles and a time range.
func TestDashboardLayout(t *testing.T) {
	uids := map[string]string{}
	for _, d := range loadDashboards(t) {
		if d.uid == "" || uids[d.uid] != "" {
			t.Errorf("%s: uid %q empty or used by %s too", d.file, d.uid, uids[d.uid])
		}
		uids[d.uid] = d.file
		ids := map[int]bool{}
		ps := d.panels()
		for i, p := range ps {
			x, y, w, h := p.grid[0], p.grid[1], p.grid[2], p.grid[3]
			if w < 1 || h < 1 || x < 0 || y < 0 || x+w > 24 {
				t.Errorf("%s: gridPos x=%d y=%d w=%d h=%d does not fit the 24-column grid", p, x, y, w, h)
			}
			if p.id == 0 || ids[p.id] {
				t.Errorf("%s: id %d missing or repeated", p, p.id)
			}
			ids[p.id] = true
			if p.typ != "row" && (p.title == "" || len(p.targets) == 0) {
				t.Errorf("%s (%s): a panel needs a title and a query", p, p.typ)
			}
			for _, q := range ps[:i] {
				qx, qy, qw, qh := q.grid[0], q.grid[1], q.grid[2], q.grid[3]
				if x < qx+qw && qx < x+w && y < qy+qh && qy < y+h {
					t.Errorf("%s overlaps %s: %v and %v", p, q.title, p.grid, q.grid)
				}
			}
		}
		if tm, _ := d.model["time"].(map[string]any); tm["from"] == nil || tm["to"] == nil {
			t.Errorf("%s: no default time range", d.file)
		}
	}
}

// builtinVar reports whether a $name is Grafana's own: $__interval,
// $timeFilter, ${__value.text}, $tag_meter (InfluxQL aliases) and so on.
func builtinVar(name string) bool {
	return strings.HasPrefix(name, "__") || name == "timeFilter" || name == "interval" || strings.HasPrefix(name, "tag_")
}

var varRE = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)

// Every variable a panel, title or variable query uses is defined (or is
// Grafana's own), every variable defined is used, and a repeated panel
// repeats over a multi-value variable.
func TestDashboardVariables(t *testing.T) {
	for _, d := range loadDashboards(t) {
		vars := map[string]variable{}
		for _, v := range d.variables() {
			vars[v.name] = v
		}
		used := map[string]bool{}
		use := func(where, text string) {
			for _, m := range varRE.FindAllStringSubmatch(text, -1) {
				name := m[1]
				if builtinVar(name) {
					continue
				}
				if _, ok := vars[name]; !ok {
					t.Errorf("%s: %s uses $%s, which the dashboard does not define", d.uid, where, name)
				}
				used[name] = true
			}
		}
		for _, v := range vars {
			use("variable "+v.name, v.query)
			if v.typ == "custom" && (len(v.current) != 1 || !slices.Contains(v.options, v.current[0])) {
				t.Errorf("%s: variable %s: current %v is not one of its options %v", d.uid, v.name, v.current, v.options)
			}
		}
		for _, p := range d.panels() {
			use("panel "+p.title+" title", p.title)
			for _, tg := range p.targets {
				use("panel "+p.title, tg.query+" "+tg.alias+" "+tg.legend)
			}
			if p.repeat != "" {
				used[p.repeat] = true
				if v, ok := vars[p.repeat]; !ok || !v.multi {
					t.Errorf("%s: panel %s repeats over %q, which is not a multi-value variable", d.uid, p.title, p.repeat)
				}
			}
		}
		for name := range vars {
			if !used[name] {
				t.Errorf("%s: variable %s is defined but never used", d.uid, name)
			}
		}
	}
}

// provisioned is dashboards/provisioning/datasources/cleanprod.yaml.
type provisioned struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name      string            `yaml:"name"`
		UID       string            `yaml:"uid"`
		Type      string            `yaml:"type"`
		Access    string            `yaml:"access"`
		URL       string            `yaml:"url"`
		User      string            `yaml:"user"`
		IsDefault bool              `yaml:"isDefault"`
		JSONData  map[string]any    `yaml:"jsonData"`
		Secure    map[string]string `yaml:"secureJsonData"`
	} `yaml:"datasources"`
}

func loadDatasources(t *testing.T) provisioned {
	t.Helper()
	var p provisioned
	if _, err := yamlfile.DecodeFile(datasourcesFile, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// Every datasource a panel, target or variable names is provisioned under
// that uid with that type; targets use their panel's datasource; the
// generator's uids are the provisioned ones; the InfluxDB datasources
// point at the bucket and database the service writes.
func TestDashboardDatasources(t *testing.T) {
	prov := loadDatasources(t)
	byUID := map[string]string{}
	for _, ds := range prov.Datasources {
		if byUID[ds.UID] != "" {
			t.Errorf("%s: uid %s twice", datasourcesFile, ds.UID)
		}
		byUID[ds.UID] = ds.Type
		switch ds.UID {
		case dashgen.FluxUID:
			if ds.JSONData["version"] != "Flux" || ds.JSONData["defaultBucket"] != dashgen.DefaultBucket {
				t.Errorf("%s: %s: want version Flux and defaultBucket %s, got %v", datasourcesFile, ds.UID, dashgen.DefaultBucket, ds.JSONData)
			}
		case dashgen.InfluxQLUID:
			db, _, _ := strings.Cut(dashgen.DefaultBucket, "/")
			if ds.JSONData["version"] != "InfluxQL" || ds.JSONData["dbName"] != db {
				t.Errorf("%s: %s: want version InfluxQL and dbName %s, got %v", datasourcesFile, ds.UID, db, ds.JSONData)
			}
		}
	}
	for uid, typ := range map[string]string{dashgen.FluxUID: dashgen.InfluxType, dashgen.InfluxQLUID: dashgen.InfluxType, dashgen.PrometheusUID: dashgen.PrometheusType} {
		if byUID[uid] != typ {
			t.Errorf("datasource %s: provisioned type %q, want %q", uid, byUID[uid], typ)
		}
	}
	check := func(where string, r dsRef) {
		if r.UID == "" || byUID[r.UID] != r.Type {
			t.Errorf("%s: datasource %+v is not provisioned (have %v)", where, r, byUID)
		}
	}
	for _, d := range loadDashboards(t) {
		for _, v := range d.variables() {
			if v.typ == "query" {
				check(d.uid+" variable "+v.name, v.ds)
			}
		}
		for _, p := range d.panels() {
			if p.typ == "row" {
				continue
			}
			check(p.String(), p.ds)
			for _, tg := range p.targets {
				check(p.String()+" target "+tg.refID, tg.ds)
				if tg.ds != p.ds {
					t.Errorf("%s: target %s uses %v, the panel %v", p, tg.refID, tg.ds, p.ds)
				}
			}
		}
	}
}

// The dashboard provider loads the folder Grafana finds the JSON in.
func TestDashboardProvider(t *testing.T) {
	var prov struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name                  string `yaml:"name"`
			OrgID                 int    `yaml:"orgId"`
			Folder                string `yaml:"folder"`
			FolderUID             string `yaml:"folderUid"`
			Type                  string `yaml:"type"`
			DisableDeletion       bool   `yaml:"disableDeletion"`
			AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
			UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
			Options               struct {
				Path                      string `yaml:"path"`
				FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if _, err := yamlfile.DecodeFile(providersFile, &prov); err != nil {
		t.Fatal(err)
	}
	if len(prov.Providers) != 1 || prov.Providers[0].Type != "file" || prov.Providers[0].Options.Path != grafanaDashboardsPath {
		t.Errorf("%s: want one file provider reading %s, got %+v", providersFile, grafanaDashboardsPath, prov.Providers)
	}
}

// grafanaDashboardsPath is where deploy/compose.yaml mounts
// dashboards/json in the Grafana container.
const grafanaDashboardsPath = "/var/lib/grafana/dashboards/cleanprod"

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// The strict decoding above is strict: a misspelt key anywhere a panel
// keeps its content (panel, options, field config, an InfluxDB or a
// Prometheus target) is an error, so the test cannot pass by decoding
// nothing (the SDK's typed-nil errors make that easy).
func TestStrictDecodeCatchesTypos(t *testing.T) {
	dashes := loadDashboards(t)
	var types []string
	for _, d := range dashes {
		for _, p := range d.panels() {
			types = append(types, p.typ)
		}
	}
	registerPlugins(types...)
	var influxPanel, promPanel, tsPanel int = -1, -1, -1
	var doc map[string]any
	for _, d := range dashes {
		if d.uid != dashgen.EnterpriseUID {
			continue
		}
		json.Unmarshal(d.raw, &doc)
	}
	panels := doc["panels"].([]any)
	for i, x := range panels {
		m := x.(map[string]any)
		ds := refOf(m["datasource"])
		switch {
		case ds.Type == dashgen.InfluxType && m["type"] == "timeseries" && tsPanel < 0:
			tsPanel = i
		case ds.Type == dashgen.InfluxType && influxPanel < 0:
			influxPanel = i
		case ds.Type == dashgen.PrometheusType && promPanel < 0:
			promPanel = i
		}
	}
	if influxPanel < 0 || promPanel < 0 || tsPanel < 0 {
		t.Fatalf("enterprise dashboard lacks an InfluxDB, a Prometheus or a time-series panel")
	}
	cases := []struct {
		name   string
		panel  int
		mutate func(p map[string]any)
	}{
		{"panel", influxPanel, func(p map[string]any) { p["titel"] = "x" }},
		{"options", influxPanel, func(p map[string]any) { p["options"].(map[string]any)["reduceOptionz"] = 1 }},
		{"field config", tsPanel, func(p map[string]any) {
			p["fieldConfig"].(map[string]any)["defaults"].(map[string]any)["custom"].(map[string]any)["lineWidht"] = 2
		}},
		{"influxdb target", influxPanel, func(p map[string]any) { p["targets"].([]any)[0].(map[string]any)["qeury"] = "x" }},
		{"prometheus target", promPanel, func(p map[string]any) { p["targets"].([]any)[0].(map[string]any)["exrp"] = "x" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var cp map[string]any
			b, _ := json.Marshal(doc)
			json.Unmarshal(b, &cp)
			c.mutate(cp["panels"].([]any)[c.panel].(map[string]any))
			raw, _ := json.Marshal(cp)
			if _, err := strictDecode(raw); err == nil {
				t.Errorf("a misspelt key in the %s decoded without error", c.name)
			}
		})
	}
}

// The panel query test's checks (semantic, mayBeEmpty) name panels by
// title: each names a panel of the dashboards, so that renaming a panel
// cannot silently drop its check.
func TestDashboardPanelChecksNamePanels(t *testing.T) {
	titles := map[string]bool{}
	for _, d := range loadDashboards(t) {
		for _, p := range d.panels() {
			titles[p.title] = true
		}
	}
	for title := range semantic {
		if !titles[title] {
			t.Errorf("semantic check %q: no panel has that title", title)
		}
	}
	for title := range mayBeEmpty {
		if !titles[title] {
			t.Errorf("mayBeEmpty %q: no panel has that title", title)
		}
	}
}
