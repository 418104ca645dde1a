package web

import (
	"bytes"
	"context"
	"math"
	"os"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/scoring"
)

// TestReportTotals checks the window totals of the fixture's Level II
// plant against sums worked out directly from the readings the fixture
// fed the engine: every meter of those quantities at Jiahe belongs to a
// workshop, so the plant total is the sum over all of them, and energy is
// electricity x 0.1229 + natural gas x 1.2143 + steam x 0.1286 kgce (the
// standard's factors). It also checks the enterprise's identifiers in the
// API and the report.
func TestReportTotals(t *testing.T) {
	f := newFixture(t)
	_, readings := fleet(t)
	d := decode[detailJSON](t, f.do(t, "GET", "/api/v1/enterprises/"+entII, supervisorToken, ""))
	live := d.Assessments[0]
	if live.Window != "live" {
		t.Fatalf("first assessment is %s", live.Window)
	}
	sum := map[string]float64{}
	for _, r := range readings {
		if r.Enterprise == entII && !r.Time.Before(live.From) && !r.Time.After(live.To) {
			sum[r.Quantity] += r.Delta
		}
	}
	want := map[string]float64{
		"vehicles":    sum["vehicles"],
		"ecoat_area":  sum["ecoat_area"],
		"fresh_water": sum["fresh_water"],
		"energy_kgce": sum["electricity"]*0.1229 + sum["natural_gas"]*1.2143 + sum["steam"]*0.1286,
	}
	got := map[string]TotalDTO{}
	for _, tt := range live.Totals {
		got[tt.ID] = tt
	}
	units := map[string]string{"vehicles": "vehicle", "ecoat_area": "m2", "fresh_water": "m3", "energy_kgce": "kgce"}
	for id, w := range want {
		g, ok := got[id]
		if w <= 0 || !ok || math.Abs(g.Value-w) > 1e-9*w || g.Unit != units[id] || g.Coverage == nil || *g.Coverage < 0.99 {
			t.Errorf("total %s: got %+v, want %v %s over the whole window", id, g, w, units[id])
		}
	}
	for _, id := range []string{"load_voc", "load_cod_raw_wastewater"} {
		if g, ok := got[id]; !ok || g.Unit != "kg" || g.Value <= 0 {
			t.Errorf("total %s: got %+v, want a mass in kg", id, g)
		}
	}
	if d.USCC != "91500000747489318C" || d.DischargePermit != "91500000747489318C001P" {
		t.Errorf("identifiers: got %q %q", d.USCC, d.DischargePermit)
	}

	w := f.do(t, "GET", "/api/v1/enterprises/"+entII+"/report", supervisorToken, "")
	body := w.Body.Bytes()
	vehicles := want["vehicles"]
	for _, s := range []string{"Totals over the windows", "Vehicles produced", ">" + qtyText(&vehicles) + "<", "91500000747489318C001P",
		"统一社会信用代码 Unified social credit code"} {
		if !bytes.Contains(body, []byte(s)) {
			t.Errorf("the report lacks %q", s)
		}
	}
	// Totals come in the report's order: vehicles first, energy after the
	// e-coated area.
	rows := regexp.MustCompile(`(?s)<section id="totals".*?</section>`).Find(body)
	if i, j, k := bytes.Index(rows, []byte("Vehicles produced")), bytes.Index(rows, []byte("E-coated area")), bytes.Index(rows, []byte("Comprehensive energy")); !(i >= 0 && i < j && j < k) {
		t.Errorf("totals rows out of order: %d %d %d", i, j, k)
	}

	// A report rebuilt from stored points has the totals too.
	v, err := resultAt(context.Background(), f.points, f.std, f.pol, f.lib, entII, fixtureNow)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := f.eng.Snapshot().Result(entII)
	if a, b := v.res.Assessments[0].Totals, res.Assessments[0].Totals; len(a) != len(b) || len(a) == 0 ||
		!slices.EqualFunc(a, b, func(x, y scoring.Total) bool { return x.ID == y.ID && x.Value == y.Value }) {
		t.Errorf("rebuilt totals %v, want %v", a, b)
	}
}

func TestQtyText(t *testing.T) {
	for _, tt := range []struct {
		v    float64
		want string
	}{{1540602, "1,540,602"}, {12000, "12,000"}, {9999.5, "9999.5"}, {-123456.4, "-123,456"}, {0.125, "0.125"}, {math.NaN(), "—"}} {
		if got := qtyText(&tt.v); got != tt.want {
			t.Errorf("qtyText(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
	if qtyText(nil) != "—" {
		t.Error("nil")
	}
}

// TestProvisionalBanner: the shipped standard has estimated benchmarks, so
// the report, the overview and the API say the levels are provisional; a
// standard without estimates gets no banner.
func TestProvisionalBanner(t *testing.T) {
	f := newFixture(t)
	const banner = "Provisional grading"
	if w := f.do(t, "GET", "/api/v1/enterprises/"+entA+"/report", supervisorToken, ""); !bytes.Contains(w.Body.Bytes(), []byte(banner)) {
		t.Error("the report with the shipped standard has no banner")
	}
	if w := f.do(t, "GET", "/", supervisorToken, ""); !bytes.Contains(w.Body.Bytes(), []byte(banner)) {
		t.Error("the overview with the shipped standard has no banner")
	}
	d := decode[detailJSON](t, f.do(t, "GET", "/api/v1/enterprises/"+entA, supervisorToken, ""))
	if !slices.Contains(d.EstimatedBenchmarks, "voc_per_m2") || len(d.EstimatedBenchmarks) >= len(f.std.Indicators) {
		t.Errorf("estimated_benchmarks: got %v, want voc_per_m2 among them but not every indicator (cp_audit is sourced)", d.EstimatedBenchmarks)
	}

	// The same standard with every estimate replaced by a source tag.
	data, err := os.ReadFile("../scoring/standards/auto-manufacturing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srcLine := regexp.MustCompile(`(?m)^.*src:.*$`)
	data = srcLine.ReplaceAllFunc(data, func(l []byte) []byte { return regexp.MustCompile(`\bestimate\b`).ReplaceAll(l, []byte("S1")) })
	sourced, err := scoring.ParseStandard("sourced.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if est := sourced.Estimated(); len(est) != 0 {
		t.Fatalf("the sourced standard still estimates %v", est)
	}
	ent, _ := f.reg.Enterprise(entA)
	res, _ := f.eng.Snapshot().Result(entA)
	for _, tt := range []struct {
		std  *scoring.Standard
		want bool
	}{{f.std, true}, {sourced, false}} {
		rep, err := buildReport(context.Background(), reportInput{ent: ent, std: tt.std, pol: f.pol, view: resultView{res: res}, lib: f.lib,
			from: fixtureNow.Add(-30 * 24 * time.Hour), to: fixtureNow, now: fixtureNow})
		if err != nil {
			t.Fatal(err)
		}
		html, err := renderReportHTML(rep)
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Contains(html, []byte(banner)); got != tt.want {
			t.Errorf("standard %s: banner %v, want %v", tt.std.File, got, tt.want)
		}
	}
}
