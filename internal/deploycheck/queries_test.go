package deploycheck

import (
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/internal/dashgen"
)

// TestPanelQueries runs every query of every dashboard, its variables
// substituted as Grafana would, for every value of the variables it uses
// (enterprises, windows, indicators, quantities), against a real InfluxDB
// holding a simulated fleet and the real scorer's outputs, and a real
// Prometheus scraping the same pipeline's and scorer's metrics with the
// deploy/prometheus rules loaded. Every query must run; every panel must
// return rows (for every combination, unless noted in mayBeEmpty); and the
// fields, labels and names the panel refers to (overrides, display names,
// reduce options, InfluxQL aliases, legends) must be in what it returns.
func TestPanelQueries(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("fills InfluxDB and Prometheus with a simulated fleet (about 20 s)")
	}
	f := newFleet(t)
	rules, _ := filepath.Glob("../../deploy/prometheus/*-rules.yml")
	prom := startPrometheus(t, f.metricsURL, rules)
	// Let Prometheus see the seq-gap counter before it grows, so that
	// increase() has something to show.
	f.fill(t, func() {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if s, err := prom.query(`cleanprod_ingest_seq_gaps_total`); err == nil && len(s) > 0 {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatal("prometheus did not scrape cleanprod_ingest_seq_gaps_total")
	})
	filled := time.Now()
	// Wait for a scrape after the run, so the last counts are in.
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := prom.query(`timestamp(up{job="cleanprod"} == 1)`)
		if err == nil && len(s) == 1 {
			var ts float64
			fmt.Sscan(s[0].value(), &ts)
			if ts > float64(filled.UnixNano())/1e9 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus has not scraped the test's metrics: %v %v", s, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	checkRulesLoaded(t, prom)

	e := &queryEnv{f: f, prom: prom, now: time.Now().UTC()}
	executed := 0
	for _, d := range loadDashboards(t) {
		t.Run(d.uid, func(t *testing.T) {
			vars := d.variables()
			from, to := e.timeRange(t, d)
			for _, p := range d.panels() {
				if p.typ == "row" {
					continue
				}
				t.Run(p.title, func(t *testing.T) {
					combos := e.combos(t, vars, p, from, to)
					if len(combos) == 0 {
						t.Fatal("no combination of variable values to run the panel for")
					}
					var results []panelResult
					for _, c := range combos {
						r := e.runPanel(t, p, c)
						executed += len(p.targets)
						results = append(results, r)
					}
					checkPanel(t, p, combos, results)
					if check := semantic[p.title]; check != nil {
						check(t, f, combos, results)
					}
				})
			}
		})
	}
	t.Logf("%d queries executed", executed)
}

// checkRulesLoaded: the rule files loaded into a real Prometheus, and
// every rule evaluates without error against the fleet's metrics.
func checkRulesLoaded(t *testing.T, prom *promServer) {
	t.Helper()
	var data struct {
		Groups []struct {
			Name  string `json:"name"`
			File  string `json:"file"`
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
				Type      string `json:"type"`
			} `json:"rules"`
		} `json:"groups"`
	}
	// Rules are evaluated every second; give them one round.
	time.Sleep(1500 * time.Millisecond)
	if err := prom.api("/api/v1/rules", nil, &data); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health == "err" {
				t.Errorf("rule %s (%s): %s", r.Name, filepath.Base(g.File), r.LastError)
			}
		}
	}
	if n == 0 {
		t.Error("prometheus loaded no rules from deploy/prometheus")
	}
}

type queryEnv struct {
	f    *fleet
	prom *promServer
	now  time.Time
}

// timeRange is the dashboard's default time range ("now-7d" to "now").
func (e *queryEnv) timeRange(t *testing.T, d *dash) (time.Time, time.Time) {
	t.Helper()
	tm, _ := d.model["time"].(map[string]any)
	from, _ := tm["from"].(string)
	to, _ := tm["to"].(string)
	rel := func(s string) time.Time {
		if s == "now" {
			return e.now
		}
		ago, ok := strings.CutPrefix(s, "now-")
		if !ok {
			t.Fatalf("time %q: want now or now-N{m,h,d}", s)
		}
		unit := map[byte]time.Duration{'m': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour}[ago[len(ago)-1]]
		var n int
		fmt.Sscan(ago[:len(ago)-1], &n)
		if unit == 0 || n <= 0 {
			t.Fatalf("time %q: want now-N{m,h,d}", s)
		}
		return e.now.Add(-time.Duration(n) * unit)
	}
	return rel(from), rel(to)
}

// combo is one assignment of values to variables, Grafana's built-ins
// included.
type combo map[string]string

func (c combo) String() string {
	var parts []string
	for _, k := range sortedKeys(c) {
		if !strings.HasPrefix(k, "__") && k != "timeFilter" && k != "bucket" {
			parts = append(parts, k+"="+c[k])
		}
	}
	return strings.Join(parts, " ")
}

// panelUses returns the variable names a panel's queries, title and
// repeat refer to.
func panelUses(p *panel) map[string]bool {
	used := map[string]bool{}
	text := p.title
	for _, tg := range p.targets {
		text += " " + tg.query + " " + tg.alias + " " + tg.legend
	}
	for _, m := range varRE.FindAllStringSubmatch(text, -1) {
		used[m[1]] = true
	}
	if p.repeat != "" {
		used[p.repeat] = true
	}
	return used
}

// combos returns every assignment of the variables the panel uses: all
// options of custom variables, all values a query variable's query
// returns (evaluated with the assignment so far, so dependent variables
// work), the All value of a multi-value variable the panel does not
// repeat over, and the test database's bucket for the bucket constant.
func (e *queryEnv) combos(t *testing.T, vars []variable, p *panel, from, to time.Time) []combo {
	t.Helper()
	used := panelUses(p)
	base := combo{
		"__interval": "1h", "__rate_interval": "1m", "__range": "1h",
		"timeFilter": fmt.Sprintf("time >= '%s' AND time <= '%s'", from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano)),
		"__from":     from.Format(time.RFC3339Nano), "__to": to.Format(time.RFC3339Nano),
	}
	var walk func(i int, c combo) []combo
	walk = func(i int, c combo) []combo {
		if i == len(vars) {
			return []combo{c}
		}
		v := vars[i]
		if !used[v.name] {
			return walk(i+1, c)
		}
		var values []string
		switch v.typ {
		case "constant":
			values = []string{v.query}
			if v.query == dashgen.DefaultBucket {
				values = []string{e.f.db.Bucket}
			}
		case "custom":
			values = v.options
		case "query":
			values = e.variableValues(t, v, c)
		default:
			t.Fatalf("variable %s: type %s not handled", v.name, v.typ)
		}
		if v.multi && v.includeAll && p.repeat != v.name {
			all := v.allValue
			if all == "" {
				all = "(" + strings.Join(values, "|") + ")"
			}
			values = []string{all}
		}
		var out []combo
		for _, val := range values {
			next := combo{}
			for k, x := range c {
				next[k] = x
			}
			next[v.name] = val
			out = append(out, walk(i+1, next)...)
		}
		return out
	}
	return walk(0, base)
}

var labelValuesRE = regexp.MustCompile(`^label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*(?:\{[^}]*\})?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$`)

// variableValues runs a query variable's query as Grafana would.
func (e *queryEnv) variableValues(t *testing.T, v variable, c combo) []string {
	t.Helper()
	q := substitute(v.query, c)
	var values []string
	switch v.ds.UID {
	case dashgen.InfluxQLUID:
		series, err := e.f.influxQL(q)
		if err != nil {
			t.Fatalf("variable %s: %s: %v", v.name, q, err)
		}
		for _, s := range series {
			col := slices.Index(s.Columns, "value")
			for _, row := range s.Values {
				if col >= 0 {
					values = append(values, fmt.Sprint(row[col]))
				}
			}
		}
	case dashgen.PrometheusUID:
		m := labelValuesRE.FindStringSubmatch(q)
		if m == nil {
			t.Fatalf("variable %s: %q is not label_values(metric, label)", v.name, q)
		}
		var err error
		if values, err = e.prom.labelValues(m[1], m[2]); err != nil {
			t.Fatalf("variable %s: %v", v.name, err)
		}
	default:
		t.Fatalf("variable %s: datasource %s not handled", v.name, v.ds.UID)
	}
	if len(values) == 0 {
		t.Fatalf("variable %s: %s returned no values", v.name, q)
	}
	slices.Sort(values)
	return values
}

// leftVarRE finds a variable left in a query ($ ends regular expressions
// in InfluxQL too, so a bare $ is fine).
var leftVarRE = regexp.MustCompile(`\$[A-Za-z_{]`)

var tmplRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_.]*)(?::[a-z]+)?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// substitute replaces $name, ${name} and ${name:format} by their values;
// unknown names stay.
func substitute(text string, c combo) string {
	return tmplRE.ReplaceAllStringFunc(text, func(m string) string {
		sub := tmplRE.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		if v, ok := c[name]; ok {
			return v
		}
		return m
	})
}

// panelResult is what a panel's queries returned for one combination.
type panelResult struct {
	rows     int
	byTarget map[string]int  // rows per refId
	names    map[string]bool // column names, display names and legends
	labels   map[string]bool // columns, tags and labels present
	flux     []map[string]any
	prom     []promSample
	problems []string
}

func (r *panelResult) problem(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

var (
	legendRE      = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)
	aliasTagRE    = regexp.MustCompile(`\$tag_([A-Za-z_][A-Za-z0-9_]*)`)
	fieldLabelsRE = regexp.MustCompile(`\$\{__field\.labels\.([A-Za-z_][A-Za-z0-9_]*)\}`)
)

// runPanel runs every target of p for c.
func (e *queryEnv) runPanel(t *testing.T, p *panel, c combo) panelResult {
	t.Helper()
	r := panelResult{names: map[string]bool{}, labels: map[string]bool{}, byTarget: map[string]int{}}
	displayName, _ := fieldDefaults(p)["displayName"].(string)
	for _, tg := range p.targets {
		before := r.rows
		q := substitute(tg.query, c)
		if leftVarRE.MatchString(q) {
			t.Fatalf("target %s: variables left after substitution (%s):\n%s", tg.refID, c, q)
		}
		switch {
		case tg.ds.UID == dashgen.FluxUID:
			prelude := fmt.Sprintf("v = {timeRangeStart: %s, timeRangeStop: %s, windowPeriod: %s}\n",
				c["__from"], c["__to"], c["__interval"])
			rows := e.f.db.QueryFlux(t, prelude+q)
			r.rows += len(rows)
			r.flux = append(r.flux, rows...)
			for _, row := range rows {
				for k := range row {
					if k != "result" && k != "table" {
						r.names[k], r.labels[k] = true, true
					}
				}
				for _, m := range fieldLabelsRE.FindAllStringSubmatch(displayName, -1) {
					if v, ok := row[m[1]]; ok && v != nil {
						r.names[fmt.Sprint(v)] = true
					}
				}
				if p.typ == "timeseries" || p.typ == "state-timeline" {
					if row["_time"] == nil || row["_value"] == nil {
						r.problem("a %s needs _time and _value in every row, got %v", p.typ, row)
						break
					}
				}
			}
		case tg.ds.UID == dashgen.InfluxQLUID:
			series, err := e.f.influxQL(q)
			if err != nil {
				t.Fatalf("target %s (%s): %v\n%s", tg.refID, c, err, q)
			}
			for _, s := range series {
				r.rows += len(s.Values)
				for _, col := range s.Columns {
					r.names[col], r.labels[col] = true, true
				}
				for k := range s.Tags {
					r.labels[k] = true
				}
				if tg.format == "time_series" && (len(s.Columns) < 2 || s.Columns[0] != "time") {
					r.problem("time series %s: columns %v, want time first", s.Name, s.Columns)
				}
				alias := tg.alias
				for _, m := range aliasTagRE.FindAllStringSubmatch(tg.alias, -1) {
					v, ok := s.Tags[m[1]]
					if !ok {
						r.problem("alias %q: series %s has no tag %s (tags %v)", tg.alias, s.Name, m[1], s.Tags)
					}
					alias = strings.ReplaceAll(alias, m[0], v)
				}
				r.names[alias] = true
			}
		case tg.ds.UID == dashgen.PrometheusUID:
			samples, err := e.prom.query(q)
			if err != nil {
				t.Fatalf("target %s (%s): %v\n%s", tg.refID, c, err, q)
			}
			r.rows += len(samples)
			r.prom = append(r.prom, samples...)
			for _, s := range samples {
				legend := tg.legend
				for _, m := range legendRE.FindAllStringSubmatch(tg.legend, -1) {
					v, ok := s.Metric[m[1]]
					if !ok {
						r.problem("legend %q: series %v has no label %s", tg.legend, s.Metric, m[1])
					}
					legend = strings.ReplaceAll(legend, m[0], v)
				}
				r.names[legend] = true
				for k := range s.Metric {
					r.labels[k] = true
				}
			}
		default:
			t.Fatalf("target %s: datasource %v not handled", tg.refID, tg.ds)
		}
		r.byTarget[tg.refID] = r.rows - before
	}
	return r
}

func fieldDefaults(p *panel) map[string]any {
	fc, _ := p.model["fieldConfig"].(map[string]any)
	d, _ := fc["defaults"].(map[string]any)
	return d
}

// mayBeEmpty lists the panels that may legitimately return nothing for
// some variable values (never for all), with the reason.
var mayBeEmpty = map[string]string{
	"落后指标 Lagging indicators (${window})":           "an enterprise with every graded indicator at Level I has none",
	"仪表停报事件 Stale meter events":                     "only the enterprise with the silenced gateway has stale meters",
	"网关边缘丢失的消息 Gateways: messages lost at the edge": "only the enterprise of the gateway that lost messages has seq gaps",
	"申报指标 Declared indicators":                      "not every enterprise declares every qualitative indicator",
}

// indicatorPanel reports whether a panel charts one indicator: those are
// empty for an enterprise the indicator does not apply to (a parts plant
// has no per-vehicle indicators).
func indicatorPanel(p *panel) bool {
	return len(p.targets) == 1 && strings.Contains(p.targets[0].query, `r.indicator == "`) && p.typ == "timeseries"
}

// checkPanel checks what a panel got over all combinations.
func checkPanel(t *testing.T, p *panel, combos []combo, results []panelResult) {
	t.Helper()
	names, labels := map[string]bool{}, map[string]bool{}
	withRows := map[string]int{}
	for i, r := range results {
		for _, pr := range r.problems {
			t.Errorf("%s: %s", combos[i], pr)
		}
		for _, tg := range p.targets {
			if r.byTarget[tg.refID] > 0 {
				withRows[tg.refID]++
				continue
			}
			if _, ok := mayBeEmpty[p.title]; !ok && !indicatorPanel(p) {
				t.Errorf("%s: target %s: no rows", combos[i], tg.refID)
			}
		}
		for k := range r.names {
			names[k] = true
		}
		for k := range r.labels {
			labels[k] = true
		}
	}
	for _, tg := range p.targets {
		if withRows[tg.refID] == 0 {
			t.Fatalf("target %s: no rows for any of %d combinations of its variables:\n%s", tg.refID, len(combos), tg.query)
		}
	}
	fc, _ := p.model["fieldConfig"].(map[string]any)
	overrides, _ := fc["overrides"].([]any)
	for _, o := range overrides {
		m, _ := o.(map[string]any)["matcher"].(map[string]any)
		opt, _ := m["options"].(string)
		switch m["id"] {
		case "byName":
			if !names[opt] {
				t.Errorf("override for field %q, which no query returns (got %v)", opt, sortedKeys(names))
			}
		case "byRegexp":
			if !anyMatch(opt, names) {
				t.Errorf("override for fields matching %q, which no query returns (got %v)", opt, sortedKeys(names))
			}
		}
	}
	for _, m := range fieldLabelsRE.FindAllStringSubmatch(fmt.Sprint(fieldDefaults(p)["displayName"]), -1) {
		if !labels[m[1]] {
			t.Errorf("display name uses label %s, which no result has (got %v)", m[1], sortedKeys(labels))
		}
	}
	opts, _ := p.model["options"].(map[string]any)
	if ro, ok := opts["reduceOptions"].(map[string]any); ok {
		if fields, _ := ro["fields"].(string); fields != "" {
			if !anyMatch(strings.Trim(fields, "/"), names) {
				t.Errorf("reduceOptions.fields %s matches no returned field (got %v)", fields, sortedKeys(names))
			}
		}
	}
}

func anyMatch(expr string, names map[string]bool) bool {
	re, err := regexp.Compile(expr)
	if err != nil {
		return false
	}
	for n := range names {
		if re.MatchString(n) {
			return true
		}
	}
	return false
}

// semantic holds checks of what some panels must show for the simulated
// fleet, beyond returning rows.
var semantic = map[string]func(t *testing.T, f *fleet, combos []combo, results []panelResult){
	"动态码分布 Enterprises by dynamic code": func(t *testing.T, f *fleet, _ []combo, rs []panelResult) {
		for _, r := range rs {
			if got := sumColumns(r.flux, "green", "yellow", "red", "none"); got != float64(len(f.enterprises)) {
				t.Errorf("codes add up to %g enterprises, want %d", got, len(f.enterprises))
			}
		}
	},
	"等级分布 Level distribution (${window} window)": func(t *testing.T, f *fleet, cs []combo, rs []panelResult) {
		for i, r := range rs {
			if got := sumColumns(r.flux, "level_i", "level_ii", "level_iii", "below_iii", "not_graded"); got != float64(len(f.enterprises)) {
				t.Errorf("%s: levels add up to %g enterprises, want %d", cs[i], got, len(f.enterprises))
			}
		}
	},
	"综合排名 Overall ranking (${window} window)": func(t *testing.T, f *fleet, cs []combo, rs []panelResult) {
		for i, r := range rs {
			var got []string
			for _, row := range r.flux {
				got = append(got, fmt.Sprint(row["enterprise"]))
			}
			if slices.Sort(got); !slices.Equal(got, f.enterprises) {
				t.Errorf("%s: ranked %v, want every enterprise once %v", cs[i], got, f.enterprises)
			}
			for j := 1; j < len(r.flux); j++ {
				a, b := levelRank(r.flux[j-1]["level"]), levelRank(r.flux[j]["level"])
				if a > b {
					t.Errorf("%s: row %d (level %v) ranked above a better level %v", cs[i], j, r.flux[j-1]["level"], r.flux[j]["level"])
				}
			}
		}
	},
	"即将到期的审核 Audits due soon": func(t *testing.T, f *fleet, _ []combo, rs []panelResult) {
		for _, r := range rs {
			if len(r.flux) != len(f.enterprises) {
				t.Errorf("%d rows, want one per enterprise (%d)", len(r.flux), len(f.enterprises))
			}
			prev := math.Inf(-1)
			for _, row := range r.flux {
				d, ok := row["days_left"].(float64)
				if !ok || d < prev {
					t.Errorf("days_left %v not a number in ascending order", row["days_left"])
				}
				prev = d
			}
		}
	},
	"最新退步与赋码变化 Latest regressions and code changes": func(t *testing.T, f *fleet, _ []combo, rs []panelResult) {
		kinds := map[string]int{}
		for _, r := range rs {
			for _, row := range r.flux {
				kinds[fmt.Sprint(row["kind"])]++
			}
		}
		if kinds["code_change"] == 0 || kinds["stale"] != 0 {
			t.Errorf("event kinds %v: want code changes and no stale meters", kinds)
		}
		t.Logf("event kinds shown: %v", kinds)
	},
	"仪表数据新鲜度 Meter freshness": func(t *testing.T, f *fleet, cs []combo, rs []panelResult) {
		for i, r := range rs {
			ent := cs[i]["enterprise"]
			e, _ := f.reg.Enterprise(ent)
			if want := len(e.Meters); len(r.flux) != want {
				t.Errorf("%s: %d meters, want all %d of the registry", ent, len(r.flux), want)
			}
			oldest := 0.0
			for _, row := range r.flux {
				if a, ok := row["age"].(float64); ok {
					oldest = max(oldest, a)
				}
			}
			silentEnt, _, _ := strings.Cut(f.silent, "/")
			if ent == silentEnt && oldest < (silentHours-1)*3600 {
				t.Errorf("%s: oldest reading %.0fs ago, want the silenced gateway's meters over %dh", ent, oldest, silentHours-1)
			}
		}
	},
	"仪表停报事件 Stale meter events": func(t *testing.T, f *fleet, cs []combo, rs []panelResult) {
		silentEnt, _, _ := strings.Cut(f.silent, "/")
		for i, r := range rs {
			if (cs[i]["enterprise"] == silentEnt) != (r.rows > 0) {
				t.Errorf("%s: %d stale events; want them for %s (silenced) only", cs[i], r.rows, silentEnt)
			}
		}
	},
	"各网关距上次消息时长 Time since last message, per gateway": func(t *testing.T, f *fleet, _ []combo, rs []panelResult) {
		for _, r := range rs {
			if r.rows != f.reg.GatewayCount() {
				t.Errorf("%d gateways, want all %d registered", r.rows, f.reg.GatewayCount())
			}
		}
	},
	"边缘丢失的消息 Messages lost at the edge": func(t *testing.T, f *fleet, _ []combo, rs []panelResult) {
		want := "gap " + strings.Replace(f.gapped, "/", " / ", 1)
		for _, r := range rs {
			if !r.names[want] {
				t.Errorf("no series %q among %v", want, sortedKeys(r.names))
			}
		}
	},
}

func sumColumns(rows []map[string]any, cols ...string) float64 {
	s := 0.0
	for _, row := range rows {
		for _, c := range cols {
			switch v := row[c].(type) {
			case int64:
				s += float64(v)
			case float64:
				s += v
			}
		}
	}
	return s
}

// levelRank orders levels best first, not graded last.
func levelRank(v any) int64 {
	l, _ := v.(int64)
	if l == 0 {
		return 5
	}
	return l
}
