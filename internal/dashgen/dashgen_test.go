package dashgen

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/cleanprod/cleanprod/scoring"
)

const committed = "../../dashboards/json"

// The committed dashboards are exactly what the generator makes from the
// shipped standard and policy, and there are no others.
func TestCommittedDashboardsAreGenerated(t *testing.T) {
	std, pol, err := Load("", "")
	if err != nil {
		t.Fatal(err)
	}
	files, err := Generate(std, pol)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
		got, err := os.ReadFile(filepath.Join(committed, f.Name))
		if err != nil {
			t.Errorf("%v: run go generate ./internal/dashgen", err)
			continue
		}
		if !bytes.Equal(got, f.Data) {
			t.Errorf("%s/%s differs from the generator's output: run go generate ./internal/dashgen", committed, f.Name)
		}
	}
	entries, _ := filepath.Glob(filepath.Join(committed, "*.json"))
	for _, e := range entries {
		if !slices.Contains(names, filepath.Base(e)) {
			t.Errorf("%s is not generated: remove it or generate it", e)
		}
	}
}

// Each quantitative indicator of the standard gets a panel whose
// thresholds are its Level I/II/III benchmarks, coloured by direction.
func TestIndicatorPanelsFollowTheStandard(t *testing.T) {
	std, pol, err := Load("", "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := enterprise(std, pol).Build()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(b)
	var d struct {
		Panels []struct {
			Title       string `json:"title"`
			Targets     []struct{ Query string }
			FieldConfig struct {
				Defaults struct {
					Thresholds struct {
						Steps []struct {
							Value *float64
							Color string
						}
					}
				}
			} `json:"fieldConfig"`
		}
	}
	json.Unmarshal(raw, &d)
	found := 0
	for _, ind := range std.Indicators {
		if ind.Kind != scoring.Quantitative {
			continue
		}
		for _, p := range d.Panels {
			if len(p.Targets) != 1 || !strings.Contains(p.Targets[0].Query, `r.indicator == "`+ind.ID+`"`) {
				continue
			}
			found++
			steps := p.FieldConfig.Defaults.Thresholds.Steps
			var vals []float64
			for _, s := range steps[1:] {
				vals = append(vals, *s.Value)
			}
			best, worst := colGreen, colRed
			want := []float64{ind.Benchmarks[0], ind.Benchmarks[1], ind.Benchmarks[2]}
			if ind.Direction == scoring.HigherBetter {
				best, worst = colRed, colGreen
				want = []float64{ind.Benchmarks[2], ind.Benchmarks[1], ind.Benchmarks[0]}
			}
			want = slices.Compact(want)
			if !slices.Equal(vals, want) || steps[0].Color != best || steps[len(steps)-1].Color != worst {
				t.Errorf("%s (%s): thresholds %v from %s to %s, want %v", ind.ID, ind.Direction, vals, steps[0].Color, steps[len(steps)-1].Color, want)
			}
		}
	}
	if found == 0 {
		t.Fatal("no indicator panels found")
	}
}

// The InfluxDB target decoder is strict.
func TestInfluxVariantIsStrict(t *testing.T) {
	v := InfluxVariant()
	good := `{"refId":"A","datasource":{"type":"influxdb","uid":"x"},"query":"from(bucket: \"b\")"}`
	q, err := v.StrictDataqueryUnmarshaler([]byte(good))
	if err != nil || q.Validate() != nil {
		t.Fatalf("good target: %v, %v", err, q.Validate())
	}
	if _, err := v.StrictDataqueryUnmarshaler([]byte(`{"refId":"A","qurey":"x"}`)); err == nil {
		t.Error("a misspelt key decoded without error")
	}
	if err := (InfluxQuery{RefID: "A"}).Validate(); err == nil {
		t.Error("a target without query and datasource validated")
	}
}

// Every dashboard, row, panel, link and variable reads in Chinese with
// the English beside, as the pages do: titles and labels "中文 English",
// descriptions a Chinese line, then the English.
func TestDashboardsBilingual(t *testing.T) {
	std, pol, err := Load("", "")
	if err != nil {
		t.Fatal(err)
	}
	files, err := Generate(std, pol)
	if err != nil {
		t.Fatal(err)
	}
	han := func(s string) bool {
		return strings.ContainsFunc(s, func(r rune) bool { return unicode.Is(unicode.Han, r) })
	}
	latin := func(s string) bool {
		return strings.ContainsFunc(s, func(r rune) bool { return r < unicode.MaxASCII && unicode.IsLetter(r) })
	}
	for _, f := range files {
		var d struct {
			Title, Description string
			Panels             []struct {
				Title, Description, Type string
				Panels                   []struct{ Title, Description string }
			}
			Links      []struct{ Title, Tooltip string }
			Templating struct {
				List []struct{ Name, Label, Type, Description string }
			}
		}
		if err := json.Unmarshal(f.Data, &d); err != nil {
			t.Fatal(err)
		}
		check := func(what, s string, desc bool) {
			t.Helper()
			if !han(s) || !latin(s) {
				t.Errorf("%s: %s %q is not in Chinese and English", f.Name, what, s)
				return
			}
			zh, en, ok := strings.Cut(s, "\n\n")
			if desc && (!ok || !han(zh) || han(en) || !latin(en)) {
				t.Errorf("%s: %s %q: want a Chinese line, a blank line, then the English", f.Name, what, s)
			}
		}
		check("title", d.Title, false)
		check("description", d.Description, true)
		for _, p := range d.Panels {
			check(p.Type+" title", p.Title, false)
			if p.Type != "row" {
				check(p.Title+"'s description", p.Description, true)
			}
			for _, q := range p.Panels { // a collapsed row's
				check("panel title", q.Title, false)
				check(q.Title+"'s description", q.Description, true)
			}
		}
		for _, l := range d.Links {
			check("link", l.Title, false)
		}
		for _, v := range d.Templating.List {
			if v.Type != "constant" {
				check("variable "+v.Name+"'s label", v.Label, false)
			}
			check("variable "+v.Name+"'s description", v.Description, true)
		}
	}
}
