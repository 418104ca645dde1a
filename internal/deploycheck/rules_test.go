package deploycheck

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/cleanprod/cleanprod/internal/dashgen"
	"github.com/cleanprod/cleanprod/internal/yamlfile"
	"github.com/cleanprod/cleanprod/scoring"
)

const (
	rulesDir         = deployDir + "/prometheus"
	alertmanagerFile = deployDir + "/alertmanager/alertmanager.yml"
)

type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type ruleTests struct {
	RuleFiles          []string `yaml:"rule_files"`
	EvaluationInterval string   `yaml:"evaluation_interval"`
	Tests              []struct {
		Interval    string `yaml:"interval"`
		InputSeries []struct {
			Series string `yaml:"series"`
			Values string `yaml:"values"`
		} `yaml:"input_series"`
		AlertRuleTest []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
		PromQLExprTest []struct {
			Expr       string `yaml:"expr"`
			EvalTime   string `yaml:"eval_time"`
			ExpSamples []struct {
				Labels string  `yaml:"labels"`
				Value  float64 `yaml:"value"`
			} `yaml:"exp_samples"`
		} `yaml:"promql_expr_test"`
	} `yaml:"tests"`
}

// loadRules returns every rule of deploy/prometheus/*-rules.yml by file.
func loadRules(t *testing.T) map[string][]rule {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(rulesDir, "*-rules.yml"))
	if len(files) == 0 {
		t.Fatalf("no rule files in %s", rulesDir)
	}
	out := map[string][]rule{}
	for _, f := range files {
		var rf ruleFile
		if _, err := yamlfile.DecodeFile(f, &rf); err != nil {
			t.Fatal(err)
		}
		for _, g := range rf.Groups {
			out[filepath.Base(f)] = append(out[filepath.Base(f)], g.Rules...)
		}
	}
	return out
}

// promtool checks every rule file and runs every unit test file.
func TestPromtool(t *testing.T) {
	t.Parallel()
	promtool := tool(t, "promtool")
	files, _ := filepath.Glob(filepath.Join(rulesDir, "*-rules.yml"))
	for _, f := range files {
		run(t, rulesDir, promtool, "check", "rules", filepath.Base(f))
	}
	tests, _ := filepath.Glob(filepath.Join(rulesDir, "*_test.yml"))
	for _, f := range tests {
		run(t, rulesDir, promtool, "test", "rules", filepath.Base(f))
	}
	run(t, rulesDir, promtool, "check", "config", "prometheus.yml")
}

var (
	severities = []string{"critical", "warning", "info"}
	audiences  = []string{"", "operator", "supervisor"}
)

// Every alert has a sensible severity and audience, a summary, a
// description and a dashboard link that resolves (dashboard uid, slug and
// variables), and promtool unit tests where it fires and where it does
// not; every recording rule has an expression test or feeds an alert.
func TestAlertRules(t *testing.T) {
	dashes := map[string]*dash{}
	for _, d := range loadDashboards(t) {
		dashes[d.uid] = d
	}
	slugs := map[string]string{dashgen.FleetUID: dashgen.FleetSlug, dashgen.EnterpriseUID: dashgen.EnterpriseSlug, dashgen.IngestUID: dashgen.IngestSlug}

	fires, quiet, exprTested := map[string]bool{}, map[string]bool{}, map[string]bool{}
	testFiles, _ := filepath.Glob(filepath.Join(rulesDir, "*_test.yml"))
	for _, f := range testFiles {
		var rt ruleTests
		if _, err := yamlfile.DecodeFile(f, &rt); err != nil {
			t.Fatal(err)
		}
		for _, tc := range rt.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				} else {
					quiet[a.Alertname] = true
				}
			}
			for _, e := range tc.PromQLExprTest {
				exprTested[e.Expr] = true
			}
		}
	}

	seen := map[string]string{}
	var alertExprs string
	all := loadRules(t)
	for _, file := range sortedKeys(all) {
		for _, r := range all[file] {
			if r.Alert != "" {
				alertExprs += r.Expr + "\n"
			}
		}
	}
	for _, file := range sortedKeys(all) {
		for _, r := range all[file] {
			if r.Record != "" {
				if !exprTested[r.Record] && !strings.Contains(alertExprs, r.Record) {
					t.Errorf("%s: recording rule %s has no promql_expr_test and feeds no alert", file, r.Record)
				}
				continue
			}
			where := file + ": " + r.Alert
			if prev, ok := seen[r.Alert]; ok {
				t.Errorf("%s: alert name also used in %s", where, prev)
			}
			seen[r.Alert] = file
			if !slices.Contains(severities, r.Labels["severity"]) || !slices.Contains(audiences, r.Labels["audience"]) {
				t.Errorf("%s: severity %q audience %q: want one of %v and %v", where, r.Labels["severity"], r.Labels["audience"], severities, audiences)
			}
			for _, k := range []string{"summary", "description", "dashboard"} {
				if strings.TrimSpace(r.Annotations[k]) == "" {
					t.Errorf("%s: no %s annotation", where, k)
				}
			}
			if !fires[r.Alert] || !quiet[r.Alert] {
				t.Errorf("%s: unit tests where it fires: %v, where it stays quiet: %v; want both", where, fires[r.Alert], quiet[r.Alert])
			}
			checkDashboardLink(t, where, r.Annotations["dashboard"], dashes, slugs)
			// An alert about one enterprise names it.
			if strings.Contains(r.Expr, "enterprise") || strings.Contains(r.Expr, "cleanprod_scoring_code") ||
				strings.Contains(r.Expr, "cleanprod_scoring_level") || strings.Contains(r.Expr, "indicator_level") ||
				strings.Contains(r.Expr, "stale_meters") || strings.Contains(r.Expr, "audit_due") {
				if !strings.Contains(r.Annotations["summary"], "$labels.enterprise") {
					t.Errorf("%s: the summary does not name the enterprise", where)
				}
			}
			if strings.Contains(r.Expr, "indicator_level") && !strings.Contains(r.Annotations["summary"], "$labels.indicator") {
				t.Errorf("%s: the summary does not name the indicator", where)
			}
		}
	}
}

// checkDashboardLink resolves /d/{uid}/{slug}?var-x=... against the
// dashboards.
func checkDashboardLink(t *testing.T, where, link string, dashes map[string]*dash, slugs map[string]string) {
	t.Helper()
	link = regexp.MustCompile(`\{\{[^}]*\}\}`).ReplaceAllString(link, "x")
	u, err := url.Parse(link)
	if err != nil {
		t.Errorf("%s: dashboard link %q: %v", where, link, err)
		return
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 3 || parts[0] != "d" {
		t.Errorf("%s: dashboard link %q: want /d/{uid}/{slug}", where, link)
		return
	}
	d, ok := dashes[parts[1]]
	if !ok || slugs[parts[1]] != parts[2] {
		t.Errorf("%s: dashboard link %q: no dashboard %s/%s", where, link, parts[1], parts[2])
		return
	}
	vars := map[string]bool{}
	for _, v := range d.variables() {
		vars[v.name] = true
	}
	for k := range u.Query() {
		if name, ok := strings.CutPrefix(k, "var-"); ok && !vars[name] {
			t.Errorf("%s: dashboard link sets var-%s, which %s does not have", where, name, d.uid)
		}
	}
}

// The restrictive-indicator alert watches exactly the standard's
// restrictive indicators.
func TestRestrictiveAlertFollowsStandard(t *testing.T) {
	std, err := scoring.DefaultStandard()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, ind := range std.Indicators {
		if ind.Restrictive {
			want = append(want, ind.ID)
		}
	}
	sort.Strings(want)
	re := regexp.MustCompile(`indicator=~"([^"]+)"`)
	found := false
	for _, rules := range loadRules(t) {
		for _, r := range rules {
			if r.Alert != "CleanprodRestrictiveIndicatorFailing" {
				continue
			}
			found = true
			m := re.FindStringSubmatch(r.Expr)
			if m == nil {
				t.Fatalf("CleanprodRestrictiveIndicatorFailing: no indicator=~ matcher in %s", r.Expr)
			}
			got := strings.Split(m[1], "|")
			sort.Strings(got)
			if !slices.Equal(got, want) {
				t.Errorf("CleanprodRestrictiveIndicatorFailing watches %v; the standard's restrictive indicators are %v", got, want)
			}
		}
	}
	if !found {
		t.Fatal("no CleanprodRestrictiveIndicatorFailing alert")
	}
}

// The Alertmanager example passes amtool, routes every alert's severity
// and audience to the receiver the comments promise, groups supervisors'
// alerts by enterprise, and inhibits only alerts that exist.
func TestAlertmanagerConfig(t *testing.T) {
	amtool := tool(t, "amtool")
	run(t, "", amtool, "check-config", alertmanagerFile)
	want := map[[2]string]string{
		{"supervisor", "critical"}: "supervisors-urgent",
		{"supervisor", "warning"}:  "supervisors",
		{"supervisor", "info"}:     "supervisors-digest",
		{"operator", "critical"}:   "operators-pager",
		{"operator", "warning"}:    "operators",
		{"", "critical"}:           "operators-pager",
		{"", "warning"}:            "operators",
	}
	alerts := map[string]bool{}
	for _, rules := range loadRules(t) {
		for _, r := range rules {
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = true
			key := [2]string{r.Labels["audience"], r.Labels["severity"]}
			receiver, ok := want[key]
			if !ok {
				t.Errorf("%s: no routing promised for audience %q severity %q", r.Alert, key[0], key[1])
				continue
			}
			args := []string{"config", "routes", "test", "--config.file=" + alertmanagerFile, "--verify.receivers=" + receiver,
				"alertname=" + r.Alert, "severity=" + key[1], "enterprise=e1"}
			if key[0] != "" {
				args = append(args, "audience="+key[0])
			}
			run(t, "", amtool, args...)
		}
	}
	var am struct {
		Route struct {
			GroupBy []string `yaml:"group_by"`
			Routes  []struct {
				Matchers []string `yaml:"matchers"`
				GroupBy  []string `yaml:"group_by"`
			} `yaml:"routes"`
		} `yaml:"route"`
		InhibitRules []struct {
			SourceMatchers []string `yaml:"source_matchers"`
			TargetMatchers []string `yaml:"target_matchers"`
			Equal          []string `yaml:"equal"`
		} `yaml:"inhibit_rules"`
	}
	raw, err := os.ReadFile(alertmanagerFile)
	if err != nil {
		t.Fatal(err)
	}
	// Lenient decode: amtool is the schema; this reads what the test needs.
	if err := yamlUnmarshal(raw, &am); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(am.Route.GroupBy, "enterprise") {
		t.Errorf("alertmanager: the root route does not group by enterprise: %v", am.Route.GroupBy)
	}
	for _, r := range am.Route.Routes {
		if slices.Contains(r.Matchers, `audience="supervisor"`) && !slices.Equal(r.GroupBy, []string{"enterprise"}) {
			t.Errorf("alertmanager: supervisors' route groups by %v, want [enterprise]", r.GroupBy)
		}
	}
	nameRE := regexp.MustCompile(`alertname=~?"([^"]+)"`)
	for _, ir := range am.InhibitRules {
		for _, m := range append(slices.Clone(ir.SourceMatchers), ir.TargetMatchers...) {
			if sub := nameRE.FindStringSubmatch(m); sub != nil {
				for _, name := range strings.Split(sub[1], "|") {
					if !alerts[name] {
						t.Errorf("alertmanager: inhibit rule names %s, which no rule defines", name)
					}
				}
			}
		}
	}
}
