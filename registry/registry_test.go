package registry

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadGood(t *testing.T) {
	reg, err := Load("testdata/good")
	if err != nil {
		t.Fatal(err)
	}
	g, ok := reg.Gateway("plant-a", "gw-1")
	if !ok {
		t.Fatal("gateway plant-a/gw-1 not found")
	}
	tests := []struct {
		meter                        string
		factor, rollover, resolution float64
		flow                         string
	}{
		{"E-1", 1000, 99999.9 * 1000, 0.1 * 1000, ""},
		{"WW", 1, 0, 0, ""},
		{"COD", 1000, 0, 0, "WW"},
		{"BODY", 102, 0, 0, ""},
		{"E-2", 1, 0, 0, ""},
	}
	for _, tt := range tests {
		m, ok := g.Meter(tt.meter)
		if !ok {
			t.Fatalf("meter %s not found", tt.meter)
		}
		if m.Factor != tt.factor || m.Rollover != tt.rollover || m.Resolution != tt.resolution {
			t.Errorf("%s: got factor %g, rollover %g, resolution %g; want %g, %g and %g", tt.meter, m.Factor, m.Rollover, m.Resolution, tt.factor, tt.rollover, tt.resolution)
		}
		if (m.FlowMeter == nil) != (tt.flow == "") || (m.FlowMeter != nil && m.FlowMeter.ID != tt.flow) {
			t.Errorf("%s: got flow meter %v, want %q", tt.meter, m.FlowMeter, tt.flow)
		}
	}
	e2, _ := g.Meter("E-2")
	if len(e2.Replacements) != 1 || e2.Replacements[0].OldFinal != 182900 || e2.MaxRate != 5000 {
		t.Errorf("E-2: got %+v", e2)
	}
	if e := g.Enterprise; e.USCC != "91130200699229617X" || e.DischargePermit != "91130200699229617X001P" {
		t.Errorf("plant-a: uscc %q, discharge permit %q", e.USCC, e.DischargePermit)
	}
	if homes := reg.MetersNamed("COD"); len(homes) != 1 || homes[0].Enterprise.ID != "plant-a" {
		t.Errorf("MetersNamed(COD): got %v", homes)
	}
}

// Each bad file must fail with a message naming the file, the line and the
// problem.
func TestLoadBad(t *testing.T) {
	want := map[string]string{
		"unknown_key":                "unknown_key.yaml:7: field rolover not found",
		"unknown_quantity":           `unknown_quantity.yaml:7: meter "M": unknown quantity "electrickery"`,
		"undeclared_unit":            `undeclared_unit.yaml:7: meter "M": unit "kW" is not declared for electricity (it takes GWh, MWh, Wh, kWh)`,
		"missing_unit":               "missing_unit.yaml:7: meter \"M\": unit is missing",
		"gauge_for_amount":           "gauge_for_amount.yaml:7: meter \"M\": electricity is an amount",
		"counter_for_concentration":  "counter_for_concentration.yaml:7: meter \"M\": cod is a concentration",
		"bad_kind":                   `bad_kind.yaml:7: meter "M": kind "cumulative": want counter, delta or gauge`,
		"rollover_on_delta":          "rollover_on_delta.yaml:7: meter \"M\": rollover applies to counters only",
		"max_register_with_rollover": `max_register_with_rollover.yaml:7: meter "M": give rollover or max_register, not both`,
		"max_register_on_gauge":      `max_register_on_gauge.yaml:7: meter "M": max_register applies to counters only`,
		"bad_meter_id":               `bad_meter_id.yaml:7: meter id "E/1#"`,
		"duplicate_meter":            `duplicate_meter.yaml:8: meter "M" is defined twice`,
		"flow_meter_missing":         `flow_meter_missing.yaml:7: flow_meter "NOPE" of meter "COD" is not a meter`,
		"flow_meter_wrong_medium":    `flow_meter_wrong_medium.yaml:7: flow_meter "GAS" measures natural_gas`,
		"negative_scale":             "negative_scale.yaml:7: meter \"M\": scale must be a positive number",
		"replacement_incomplete":     "replacement_incomplete.yaml:12: meter \"M\": a replacement needs at, old_final and new_initial",
		"no_gateways":                `no_gateways.yaml:4: enterprise "p" has no gateways`,
		"bad_enterprise_id":          `bad_enterprise_id.yaml:2: enterprise id "my plant"`,
		"bad_uscc_check":             `bad_uscc_check.yaml:4: enterprise "p": uscc: unified social credit code "91130200699229617Y": check character is 'Y', want 'X'`,
		"bad_permit_holder":          `bad_permit_holder.yaml:5: enterprise "p": discharge_permit: discharge permit number "91350100M000100Y43001P" does not start with the enterprise's unified social credit code 91130200699229617X`,
		"wrong_type":                 "wrong_type.yaml:7: cannot unmarshal !!str `lots` into float64",
		"syntax":                     "syntax.yaml:6: did not find expected",
	}
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) != len(want) {
		t.Errorf("got %d bad fixtures, want %d", len(files), len(want))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(map[string][]byte{filepath.Base(f): data})
			if err == nil {
				t.Fatal("got no error")
			}
			if !strings.Contains(err.Error(), want[name]) {
				t.Errorf("got %q, want it to contain %q", err, want[name])
			}
		})
	}
}

// Every problem of a folder is reported at once, and an enterprise
// defined in two files is refused.
func TestParseReportsEverything(t *testing.T) {
	bad1, _ := os.ReadFile("testdata/bad/unknown_quantity.yaml")
	bad2, _ := os.ReadFile("testdata/bad/bad_kind.yaml")
	good, _ := os.ReadFile("testdata/good/plant.yaml")
	_, err := Parse(map[string][]byte{"a.yaml": bad1, "b.yaml": bad2, "c.yaml": good, "d.yaml": good})
	if err == nil {
		t.Fatal("got no error")
	}
	for _, w := range []string{"a.yaml:7", "b.yaml:7", `d.yaml: enterprise "plant-a" is already defined in c.yaml`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("got %q, want it to contain %q", err, w)
		}
	}
}

func TestQuantitiesAreConsistent(t *testing.T) {
	for _, q := range Quantities() {
		if f, ok := q.Factor(q.Unit); !ok || f != 1 {
			t.Errorf("%s: canonical unit %s must convert with factor 1, got %v %v", q.Name, q.Unit, f, ok)
		}
		if !q.Extensive && q.Max <= q.Min {
			t.Errorf("%s: a gauge quantity needs a plausible range, got %g..%g", q.Name, q.Min, q.Max)
		}
	}
}

// Every extensive quantity has a ceiling, and a counter without max_rate
// takes it as its bound.
func TestQuantityCeilings(t *testing.T) {
	for _, q := range Quantities() {
		if q.Extensive != (q.Ceiling > 0) {
			t.Errorf("quantity %s: extensive %v, ceiling %g: want a ceiling exactly on extensive quantities", q.Name, q.Extensive, q.Ceiling)
		}
	}
	reg, err := Parse(map[string][]byte{"p.yaml": []byte("enterprise: {id: p, name: P}\ngateways:\n  - id: g\n    meters:\n      - {id: E, quantity: electricity, unit: MWh, kind: counter}\n      - {id: F, quantity: electricity, unit: kWh, kind: counter, max_rate: 5}\n")})
	if err != nil {
		t.Fatal(err)
	}
	ent, _ := reg.Enterprise("p")
	if got := ent.Meters[0].MaxRate; got != 2e6 {
		t.Errorf("counter without max_rate: MaxRate %g, want the electricity ceiling 2e6 kWh/h", got)
	}
	if got := ent.Meters[1].MaxRate; got != 5 {
		t.Errorf("counter with max_rate 5: MaxRate %g, want 5", got)
	}
	if m, ok := reg.Meter("p", "F"); !ok || m != ent.Meters[1] {
		t.Errorf("Meter(p, F) = %v, %v: want the registered meter", m, ok)
	}
	if _, ok := reg.Meter("q", "F"); ok {
		t.Error("Meter(q, F) found a meter of another enterprise")
	}
}

// A counter's rollover is the largest value its register shows and its
// resolution the smallest step, read from the rollover's decimals as the
// file writes it when not given; both are stored in canonical units.
func TestRolloverResolution(t *testing.T) {
	tests := []struct {
		name                 string
		meter                string // the fields after "id: M"
		rollover, resolution float64
	}{
		{"five digits", kWh + "rollover: 99999", 99999, 1},
		{"a tenth", kWh + "rollover: 999999.9", 999999.9, 0.1},
		{"the decimals written", kWh + "rollover: 999.90", 999.9, 0.01},
		{"digit separators", kWh + "rollover: 99_999.9", 99999.9, 0.1},
		{"hexadecimal", kWh + "rollover: 0xFFFF", 65535, 1},
		{"a 32-bit register", kWh + "rollover: 4294967295", 4294967295, 1},
		{"unit conversion", "quantity: electricity, unit: MWh, kind: counter, rollover: 99999.9", 99999.9 * 1000, 0.1 * 1000},
		{"scale", "quantity: ecoat_area, unit: m2, kind: counter, scale: 95, rollover: 9999", 9999 * 95, 95},
		{"resolution given", kWh + "rollover: 32767.5, resolution: 0.5", 32767.5, 0.5},
		{"resolution given with an exponent", kWh + "rollover: 9.9999e4, resolution: 1", 99999, 1},
		{"no rollover", kWh + "max_rate: 5", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseMeter(tt.meter)
			if err != nil {
				t.Fatal(err)
			}
			if m.Rollover != tt.rollover || m.Resolution != tt.resolution {
				t.Errorf("got rollover %v, resolution %v; want %v and %v", m.Rollover, m.Resolution, tt.rollover, tt.resolution)
			}
		})
	}
}

// gateways check names the file, the line and what is inconsistent.
func TestRolloverResolutionBad(t *testing.T) {
	tests := []struct{ name, meter, want string }{
		{"resolution zero", kWh + "rollover: 99999, resolution: 0", `a.yaml:5: meter "M": resolution must be a positive number`},
		{"resolution negative", kWh + "rollover: 99999, resolution: -1", `resolution must be a positive number (the smallest step the register shows), got -1`},
		{"resolution NaN", kWh + "rollover: 99999, resolution: .nan", `resolution must be a positive number (the smallest step the register shows), got NaN`},
		{"resolution infinite", kWh + "rollover: 99999, resolution: .inf", `resolution must be a positive number (the smallest step the register shows), got +Inf`},
		{"rollover NaN", kWh + "rollover: .nan", `rollover must be positive, got NaN`},
		{"rollover negative", kWh + "rollover: -99999", `rollover must be positive, got -99999`},
		{"not a multiple", kWh + "rollover: 99999.95, resolution: 0.1", `rollover 99999.95 is not a whole number of steps of resolution 0.1`},
		{"below one step", kWh + "rollover: 0.5, resolution: 1", `rollover 0.5 is not a whole number of steps of resolution 1`},
		{"one step", kWh + "rollover: 1", `rollover 1 is one step of resolution 1`},
		{"the wrap, not the largest value", kWh + "rollover: 1000000", `rollover 1000000 is where the register wraps, not the largest value it shows (99999 for five digits, 65535 for 16 bits): did you mean 999999?`},
		{"the wrap with decimals", kWh + "rollover: 100000.0", `did you mean 99999.9?`},
		{"the wrap of a binary register", kWh + "rollover: 65536", `did you mean 65535?`},
		{"an exponent says no resolution", kWh + "rollover: 9.9999e4", `rollover 9.9999e4: cannot tell the register's resolution from how it is written`},
		{"too many steps", kWh + "rollover: 9999999999999", `at most 1e+12 are counted exactly`},
		{"resolution without rollover", kWh + "resolution: 0.1", `meter "M": resolution is the step of a register that rolls over; give its rollover too`},
		{"resolution on a delta meter", "quantity: electricity, unit: kWh, kind: delta, rollover: 99999, resolution: 1", `rollover applies to counters only`},
		{"replacement above the rollover", kWh + "rollover: 99999, replacements: [{at: 2026-01-01T00:00:00Z, old_final: 100000, new_initial: 0}]", `old_final 100000 and new_initial 0 must be registers the meter can show: at most its rollover 99999`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseMeter(tt.meter)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	// In block style the problem is reported at the line of the value.
	_, err := Parse(map[string][]byte{"a.yaml": []byte("enterprise: {id: e, name: E}\ngateways:\n  - id: g\n    meters:\n      - id: M\n        quantity: electricity\n        unit: kWh\n        kind: counter\n        rollover: 99999.95\n        resolution: 0.1\n")})
	if want := `a.yaml:10: meter "M": rollover 99999.95 is not a whole number`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want an error containing %q", err, want)
	}
}

// kWh starts the fields of an electricity counter in kWh.
const kWh = "quantity: electricity, unit: kWh, kind: counter, "

// parseMeter parses a registry of one meter M with the given fields.
func parseMeter(fields string) (*Meter, error) {
	reg, err := Parse(map[string][]byte{"a.yaml": []byte("enterprise: {id: e, name: E}\ngateways:\n  - id: g\n    meters:\n      - {id: M, " + fields + "}\n")})
	if err != nil {
		return nil, err
	}
	m, _ := reg.Meter("e", "M")
	return m, nil
}

// Codes from public examples pass; one wrong character fails on the check
// character, with a message that says which rule and what it wants.
func TestCheckUSCC(t *testing.T) {
	tests := []struct {
		code string
		want string // error substring; "" valid
	}{
		{"91130200699229617X", ""}, // HJ 608-2017 appendix A
		{"911302307808371268", ""}, // 固定污染源编码规则(试行), example outlet code
		{"91350100M000100Y43", ""}, // the GB 32100 example
		{"91500000MA60F2C1XY", ""}, // gateway-config/cq-lj-yuntai-auto.yaml
		{"91130200699229617Y", `check character is 'Y', want 'X'`},
		{"91130200699229671X", `check character is 'X', want`}, // two digits swapped
		{"91350100M000100Y4", "want 18 characters, got 17"},
		{"91350100M000100I43", `character 16 'I' is not one of`},
		{"91350100m000100Y43", "letters are upper case"},
		{"9135A100M000100Y43", "characters 3-8 are the region code"},
		{"", "want 18 characters, got 0"},
	}
	for _, tt := range tests {
		err := CheckUSCC(tt.code)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v, want valid", tt.code, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: got %v, want an error containing %q", tt.code, err, tt.want)
		}
	}
}

func TestCheckDischargePermit(t *testing.T) {
	tests := []struct {
		permit, uscc string
		want         string // error substring; "" valid
	}{
		{"91130200699229617X001P", "91130200699229617X", ""},
		{"91130200699229617X002P", "", ""},
		{"H9500112000001234a001P", "", ""},
		{"91130200699229617X001", "", "want 22 characters"},
		{"91130200699229617Y001P", "", "check character is 'Y'"},
		{"91130200699229617X0A1P", "", "sequence number and must be digits"},
		{"91130200699229617X001p", "", "capital letter or a digit"},
		{"91350100M000100Y43001P", "91130200699229617X", "does not start with the enterprise's unified social credit code"},
		{"H9500112000001234a001P", "91130200699229617X", "substitute holder code"},
	}
	for _, tt := range tests {
		err := CheckDischargePermit(tt.permit, tt.uscc)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v, want valid", tt.permit, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: got %v, want an error containing %q", tt.permit, err, tt.want)
		}
	}
}
