package scoring

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/registry"
)

// TestAbsentDeclarations checks what the scenarios cannot see: the notes
// and reasons of indicators whose inputs are declared absent, missing or
// metered against a declaration, and that an absent declaration stops
// counting when it expires.
func TestAbsentDeclarations(t *testing.T) {
	fx := newFixture(t)
	reg, err := registry.Load("testdata/registry-gaps")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 6, 1, 0, 30, 0, 0, time.UTC)
	from := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	decls := &declSource{}
	ds := append(levelIIDeclarations(fx.std, "lj-nogas", LevelI), levelIIDeclarations(fx.std, "lj-noarea", LevelI)...)
	ds = append(ds,
		Declaration{Enterprise: "lj-nogas", Absent: "natural_gas", Evidence: "no gas connection", ValidFrom: from, ValidTo: now.Add(time.Hour)},
		Declaration{Enterprise: "lj-nogas", Absent: "electricity@paint", Evidence: "steam-heated ovens", ValidFrom: from},
		Declaration{Enterprise: "lj-noarea", Absent: "ecoat_area", Evidence: "no e-coat line", ValidFrom: from})
	decls.set(ds)
	eng, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: reg, Declarations: decls, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"lj-nogas", "lj-noarea"} {
		ent, _ := reg.Enterprise(id)
		for h := 30 * 24; h > 0; h-- {
			eng.Observe(hourly(ent, now.Add(-time.Duration(h)*time.Hour), goodRates))
		}
	}
	eng.loadDeclarations(context.Background())
	eng.step(context.Background(), now)
	indicator := func(ent, id string) IndicatorResult {
		t.Helper()
		res, _ := eng.Snapshot().Result(ent)
		a, _ := res.Assessment("live")
		r, _ := a.Indicator(fx.std, id)
		return *r
	}
	hasNote := func(r IndicatorResult, want string) bool {
		return slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, want) })
	}

	r := indicator("lj-nogas", "energy_per_vehicle")
	if r.Status != Graded || !hasNote(r, "natural_gas counts as 0: declared absent (no gas connection)") {
		t.Errorf("energy_per_vehicle: got %s %q, notes %q; want graded with gas counted as 0", r.Status, r.Reason, r.Notes)
	}
	// electricity@paint is metered (E-PAINT): the meter counts, and says so.
	r = indicator("lj-nogas", "paintshop_energy_per_m2")
	if r.Status != Graded || r.Value < 0.36 || !hasNote(r, "electricity@paint is declared absent but metered: its meters count") {
		t.Errorf("paintshop_energy_per_m2: got %s %v, notes %q; want graded on the paint meter, with a note", r.Status, r.Value, r.Notes)
	}
	r = indicator("lj-noarea", "voc_per_m2")
	if r.Status != NotApplicable || r.Source != "declared" || r.Evidence != "no e-coat line" || r.Reason != "not applicable: ecoat_area declared absent" {
		t.Errorf("voc_per_m2: got %s from %s (%q, %q); want not applicable, declared", r.Status, r.Source, r.Evidence, r.Reason)
	}

	// Once the gas declaration expires, gas is missing again.
	now = now.Add(2 * time.Hour)
	eng.step(context.Background(), now)
	r = indicator("lj-nogas", "energy_per_vehicle")
	if r.Status != Insufficient || r.Reason != "no meter for natural_gas" || len(r.Short) != 0 {
		t.Errorf("after the declaration expired: got %s %q, short %q; want insufficient, no meter for natural_gas", r.Status, r.Reason, r.Short)
	}
}
