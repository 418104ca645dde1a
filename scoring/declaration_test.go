package scoring

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestLoadDeclarations(t *testing.T) {
	std := mustStandard(t, "standards/auto-manufacturing.yaml")
	ds, err := DeclarationFiles{Dir: "testdata/declarations/good", Standard: std}.Declarations(context.Background())
	if err != nil {
		t.Fatalf("got error %v, want none", err)
	}
	if len(ds) != 4 {
		t.Fatalf("got %d declarations, want 4", len(ds))
	}
	cst := time.FixedZone("local", 8*3600)
	if want := time.Date(2024, 6, 1, 0, 0, 0, 0, cst); !ds[0].ValidFrom.Equal(want) {
		t.Errorf("valid_from: got %v, want %v (midnight local time)", ds[0].ValidFrom, want)
	}
	if ds[0].Level != LevelII || ds[1].Value == nil || *ds[1].Value != 65 || !ds[2].NotApplicable {
		t.Errorf("got %+v, want cp_audit II, transfer efficiency 65, NEV share not applicable", ds)
	}
	if ds[3].Absent != "natural_gas" || ds[3].Indicator != "" || ds[3].Subject() != "absent:natural_gas" {
		t.Errorf("got %+v, want natural_gas absent, for no indicator", ds[3])
	}
}

func TestLoadDeclarationsBad(t *testing.T) {
	std := mustStandard(t, "standards/auto-manufacturing.yaml")
	_, err := LoadDeclarations("testdata/declarations/bad", std)
	if err == nil {
		t.Fatal("got no error, want one")
	}
	for _, want := range []string{
		"cq-auto-02.yaml:3: declaration of cq-auto-02 for cp_audit: a value is declared for quantitative indicators without a formula; cp_audit is qualitative",
		"cq-auto-02.yaml:7: declaration of cq-auto-02 for energy_per_vehicle: a value is declared for quantitative indicators without a formula; energy_per_vehicle is metered",
		"cq-auto-02.yaml:11: declaration of cq-auto-02 for permit_compliance: evidence is required",
		`cq-auto-02.yaml:16: level "IV": want I, II, III or below_III`,
		"cq-auto-02.yaml:19: declaration of cq-auto-02 for ecoat_process: valid_to must be after valid_from",
		`cq-auto-02.yaml:27: valid_from: "June 2024": want a date`,
		`cq-auto-02.yaml:28: declaration of cq-auto-02 that natural_gaz is absent: "natural_gaz" is not an amount the standard's formulas read`,
		`cq-auto-02.yaml:32: declaration of cq-auto-02 that natural_gas is absent: give no indicator`,
		`cq-auto-02.yaml:35: declaration of cq-auto-02 that vehicles is absent: give exactly one of level, value, not_applicable and absent`,
		`cq-auto-02.yaml:39: declaration of cq-auto-02 that load(voc) is absent: "load(voc)" is not an amount`,
		`cq-auto-02.yaml:42: declaration of cq-auto-02 that electricity@paint is absent: evidence is required`,
		`cq-auto-02.yaml:47: absent vehicles is declared twice from 2024-06-01`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got error:\n%v\nwant it to contain %q", err, want)
		}
	}
}

func TestDeclarationValidity(t *testing.T) {
	from := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	to := from.AddDate(5, 0, 0)
	d := Declaration{ValidFrom: from, ValidTo: to}
	tests := []struct {
		name string
		at   time.Time
		want bool
	}{
		{"before", from.Add(-time.Second), false},
		{"from is inclusive", from, true},
		{"inside", from.AddDate(1, 0, 0), true},
		{"to is exclusive", to, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := d.ValidAt(tt.at); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	open := Declaration{ValidFrom: from}
	if !open.ValidAt(from.AddDate(50, 0, 0)) {
		t.Errorf("open-ended: got invalid 50 years on, want valid")
	}
}

func TestShippedDeclarations(t *testing.T) {
	std := mustStandard(t, "standards/auto-manufacturing.yaml")
	ds, err := LoadDeclarations("declarations", std)
	if err != nil {
		t.Fatalf("got error:\n%v\nwant none", err)
	}
	if len(ds) == 0 {
		t.Errorf("got no declarations, want the fleet's")
	}
}
