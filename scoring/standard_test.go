package scoring

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadStandardGood(t *testing.T) {
	files, err := filepath.Glob("testdata/standards/*.good.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no good fixtures: %v", err)
	}
	files = append(files, "standards/auto-manufacturing.yaml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := LoadStandard(f); err != nil {
				t.Fatalf("got error:\n%v\nwant none", err)
			}
		})
	}
}

func TestLoadStandardBad(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"weights.bad.yaml", []string{
			`weights.bad.yaml:19: weights of the indicators of group "a" sum to 0.9000, want 1`,
			`weights.bad.yaml:13: weights of the groups sum to 1.1000, want 1`,
		}},
		{"benchmarks.bad.yaml", []string{
			`benchmarks.bad.yaml:19: indicator low: lower_better benchmarks must satisfy I <= II <= III, got 10/5/20`,
			`benchmarks.bad.yaml:20: indicator high: higher_better benchmarks must satisfy I >= II >= III`,
			`benchmarks.bad.yaml:21: indicator nodir: direction "": want lower_better or higher_better`,
			`indicator nodir: benchmark II: want a number, got many`,
		}},
		{"formulas.bad.yaml", []string{
			`formulas.bad.yaml:25: indicator typo: formula "electricty*kgce.electricity / vehicles": unknown quantity "electricty" (did you mean electricity?)`,
			`formulas.bad.yaml:35: indicator factor: formula "electricity*kgce.electric / vehicles": unknown factor or limit "kgce.electric"`,
			`formulas.bad.yaml:45: indicator bare_gauge: formula "cod / vehicles": cod is a concentration`,
			`formulas.bad.yaml:55: indicator syntax: formula "(electricity / vehicles": syntax:`,
			`formulas.bad.yaml:65: indicator func: formula "sqrt(electricity) + load(electricity)": unknown function "sqrt"`,
		}},
		{"structure.bad.yaml", []string{
			`structure.bad.yaml:1: schema_version 2: want 1`,
			`structure.bad.yaml:5: standard: src "S99" is not listed under sources`,
			`structure.bad.yaml:9: min_coverage 1.5: want a fraction in [0, 1]`,
			`structure.bad.yaml:11: window "live": length 720h0m0s is not a whole number of 7h0m0s buckets`,
			`structure.bad.yaml:12: window "live" is defined twice`,
			`structure.bad.yaml:12: window live: src is missing`,
			`structure.bad.yaml:14: factor "kgce.electricity": unit "kgce/MWh": want <unit>/kWh`,
			`structure.bad.yaml:15: factor "co2.electricity": fallback "national": want a region listed under by_region`,
			`structure.bad.yaml:16: factor "kgce.cod": cod is not an amount`,
			`structure.bad.yaml:18: group a: src is missing`,
			`structure.bad.yaml:23: indicator x: weight 0.33333: want a multiple of 0.0001`,
			`structure.bad.yaml:24: id "x" is used twice`,
			`structure.bad.yaml:24: indicator x: a qualitative indicator has no formula`,
			`structure.bad.yaml:24: indicator x: benchmark II: want the level's description`,
			`structure.bad.yaml:25: indicator y: type "ranking": want quantitative or qualitative`,
		}},
		{"unknown-field.bad.yaml", []string{`unknown-field.bad.yaml:25: field formual not found`}},
	}
	files, _ := filepath.Glob("testdata/standards/*.bad.yaml")
	if len(files) != len(tests) {
		t.Errorf("got %d bad fixtures, want a test case for each of %d", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := LoadStandard(filepath.Join("testdata/standards", tt.file))
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error:\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

// mustStandard loads a fixture or the shipped standard.
func mustStandard(t testing.TB, path string) *Standard {
	t.Helper()
	s, err := LoadStandard(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	return s
}

func TestShippedStandard(t *testing.T) {
	s := mustStandard(t, "standards/auto-manufacturing.yaml")
	wantGroups := []string{"process_equipment", "resource_energy", "comprehensive_utilization", "pollutant_generation", "carbon", "product", "management"}
	if len(s.Groups) != len(wantGroups) {
		t.Fatalf("got %d groups, want %d", len(s.Groups), len(wantGroups))
	}
	for i, g := range s.Groups {
		if g.ID != wantGroups[i] {
			t.Errorf("group %d: got %s, want %s", i, g.ID, wantGroups[i])
		}
	}
	for _, ind := range s.Indicators {
		if len(ind.Src) == 0 {
			t.Errorf("indicator %s: no src", ind.ID)
		}
	}
	for _, id := range []string{"voc_per_m2", "effluent_compliance_rate", "stack_voc_compliance_rate", "permit_compliance"} {
		if ind, ok := s.Indicator(id); !ok || !ind.Restrictive {
			t.Errorf("indicator %s: got restrictive=false, want true", id)
		}
	}
	if _, _, ok := s.Window("live"); !ok {
		t.Errorf("got no live window, want one")
	}
}

func TestFactorResolve(t *testing.T) {
	s := mustStandard(t, "standards/auto-manufacturing.yaml")
	var grid *Factor
	for _, f := range s.Factors {
		if f.ID == "co2.electricity" {
			grid = f
		}
	}
	if grid == nil {
		t.Fatal("no co2.electricity factor")
	}
	tests := []struct {
		name     string
		region   string
		year     int
		want     float64
		wantNote string
	}{
		{"chongqing falls back to national 2023 and says so", "chongqing", 2026, 0.5306, "co2.electricity: no value for region chongqing; national 2023 (0.5306) used"},
		{"no region falls back too", "", 2026, 0.5306, "region (none)"},
		{"national picks the latest year not after", "national", 2022, 0.5366, ""},
		{"year before all values takes the earliest", "national", 2010, 0.5366, ""},
		{"sichuan 2023", "sichuan", 2026, 0.1564, ""},
		{"sichuan 2022", "sichuan", 2022, 0.1404, ""},
		{"regional grid", "southwest_china", 2025, 0.2472, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, note := grid.Resolve(tt.region, tt.year)
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if (tt.wantNote == "") != (note == "") || !strings.Contains(note, tt.wantNote) {
				t.Errorf("got note %q, want %q", note, tt.wantNote)
			}
		})
	}
}

// fakeEnv serves formula inputs from maps keyed by series string.
type fakeEnv struct {
	std    *Standard
	sums   map[string]float64
	consts []float64
}

func (f fakeEnv) get(i int) (float64, bool) {
	v, ok := f.sums[f.std.Series[i].String()]
	return v, ok
}
func (f fakeEnv) sum(i int) (float64, bool)  { return f.get(i) }
func (f fakeEnv) load(i int) (float64, bool) { return f.get(i) }
func (f fakeEnv) mean(i int) (float64, bool) { return f.get(i) }
func (f fakeEnv) compliance(i int, lo, hi float64, _ bool) (float64, bool) {
	v, ok := f.get(i)
	if !ok {
		return 0, false
	}
	if v >= lo && v <= hi {
		return 100, true
	}
	return 0, true
}
func (f fakeEnv) coverage(i int) (float64, bool) { return f.get(i) }
func (f fakeEnv) constant(i int) float64         { return f.consts[i] }

func TestFormulaEval(t *testing.T) {
	tests := []struct {
		name    string
		formula string
		in      map[string]float64
		want    float64
		absent  bool
	}{
		{"per vehicle", "(electricity*kgce.electricity + natural_gas*kgce.natural_gas)/vehicles",
			map[string]float64{"electricity": 700, "natural_gas": 50, "vehicles": 1}, 700*0.1229 + 50*1.2143, false},
		{"absent addend counts as zero", "(electricity*kgce.electricity + steam*kgce.steam)/vehicles",
			map[string]float64{"electricity": 1000, "vehicles": 10}, 12.29, false},
		{"absent divisor is absent", "electricity/vehicles", map[string]float64{"electricity": 1}, 0, true},
		{"workshop scope", "electricity@paint / ecoat_area", map[string]float64{"electricity@paint": 300, "ecoat_area": 100}, 3, false},
		{"rate", "recycled_water/(recycled_water+fresh_water)*100", map[string]float64{"recycled_water": 90, "fresh_water": 10}, 90, false},
		{"load with flow filter", "load(cod, raw_wastewater)/vehicles", map[string]float64{"load(cod, raw_wastewater)": 50, "vehicles": 100}, 0.5, false},
		{"min skips absent", "min(compliance(cod, limit.cod_sewer), compliance(nh3n, limit.nh3n_sewer))", map[string]float64{"cod": 100}, 100, false},
		{"coalesce", "coalesce(pv_electricity + green_electricity, 0)/electricity*100", map[string]float64{"electricity": 10}, 0, false},
		{"unary minus", "-electricity + 2", map[string]float64{"electricity": 5}, -3, false},
	}
	s := mustStandard(t, "standards/auto-manufacturing.yaml")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := compileFormula(tt.formula, s)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			consts, _ := s.constants("chongqing", 2026)
			got, ok := e.eval(fakeEnv{std: s, sums: tt.in, consts: consts})
			if ok == tt.absent {
				t.Fatalf("got present=%v, want %v", ok, !tt.absent)
			}
			if ok && math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFormulaErrors(t *testing.T) {
	tests := []struct {
		formula string
		want    string
	}{
		{"electricity == 1", "operator == is not allowed"},
		{"electricity@paint@x", "'@' must join"},
		{"a.b.c", "nested selector"},
		{`"text"`, "is not a number"},
		{"electricity[1]", "indexing"},
		{"load(electricity)", "load(electricity): electricity is an amount"},
		{"load(cod, stack_gas)", "stack_gas is not a water volume"},
		{"load(cod, raw_wastewater@paint)", "scope the concentration, not the flow"},
		{"compliance(cod)", "compliance takes a gauge and a limit"},
		{"compliance(cod, limit.voc_stack)", "the limit is for voc"},
		{"compliance(cod, co2.electricity)", "depends on the enterprise"},
		{"compliance(ph, 9, 6)", "lower bound exceeds the upper"},
		{"mean(electricity)", "electricity is an amount"},
		{"min(electricity)", "min takes two or more arguments"},
		{"x__at__y", "reserved"},
		{"", "formula is empty"},
		{"electricity + ", "syntax"},
	}
	s := mustStandard(t, "standards/auto-manufacturing.yaml")
	for _, tt := range tests {
		t.Run(tt.formula, func(t *testing.T) {
			_, err := compileFormula(tt.formula, s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
