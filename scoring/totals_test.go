package scoring

import (
	"slices"
	"testing"
)

// The shipped standard provides the totals an audit report states, and
// they survive the trip through a score point.
func TestTotalsShippedAndPoints(t *testing.T) {
	std := mustStandard(t, "standards/auto-manufacturing.yaml")
	var ids []string
	for _, sp := range std.totals {
		ids = append(ids, sp.id)
	}
	for _, want := range []string{EnergyTotal, "vehicles", "ecoat_area", "fresh_water", "load_voc", "load_cod_raw_wastewater"} {
		if !slices.Contains(ids, want) {
			t.Errorf("totals %v lack %s", ids, want)
		}
	}
	if ids[0] != EnergyTotal || slices.Contains(ids, "electricity@paint") || slices.Contains(ids, "load_voc_inlet") {
		t.Errorf("totals %v: want energy first, no workshop sums and no abatement loads", ids)
	}
	ts := []Total{{ID: EnergyTotal, Unit: "kgce", Value: 1540602}, {ID: "vehicles", Quantity: "vehicles", Unit: "vehicle", Value: 12000},
		{ID: "load_voc", Quantity: "voc", Unit: "kg", Value: 30000}}
	f := map[string]any{"y_i": 90.0}
	totalFields(f, ts)
	if f["total_vehicles"] != 12000.0 || len(f) != 4 {
		t.Errorf("fields: got %v", f)
	}
	if got := TotalsFromFields(std, f); !slices.Equal(got, ts) {
		t.Errorf("read back %v, want %v", got, ts)
	}
}
