package web

import (
	"encoding/json"
	"math"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/store"
)

// officerWindow is what the officer's page test reads from the API's
// detail: the live window's span, its totals and two indicator values.
type officerWindow struct {
	days   float64
	totals map[string]float64
	values map[string]float64
}

func liveWindow(t *testing.T, f *fixture, id, token string) officerWindow {
	t.Helper()
	w := f.do(t, "GET", "/api/v1/enterprises/"+id, token, "")
	if w.Code != 200 {
		t.Fatalf("detail of %s: %d %s", id, w.Code, w.Body)
	}
	var d EnterpriseDetail
	if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	for _, a := range d.Assessments {
		if a.Window != f.pol.Window {
			continue
		}
		lw := officerWindow{days: a.To.Sub(a.From).Hours() / 24, totals: map[string]float64{}, values: map[string]float64{}}
		for _, tt := range a.Totals {
			lw.totals[tt.ID] = tt.Value
		}
		for _, in := range a.Indicators {
			if in.Value != nil {
				lw.values[in.ID] = *in.Value
			}
		}
		return lw
	}
	t.Fatalf("detail of %s has no %s window", id, f.pol.Window)
	return officerWindow{}
}

// measureBlock returns the HTML of one measure on the page.
func measureBlock(t *testing.T, page, id string) string {
	t.Helper()
	i := strings.Index(page, `data-measure="`+id+`"`)
	if i < 0 {
		t.Fatalf("the page lists no measure %s", id)
	}
	block := page[i:]
	if j := strings.Index(block, `<div class="measure"`); j >= 0 {
		block = block[:j]
	}
	return block
}

// benefitCellText returns the text of a measure's benefit cell.
func benefitCellText(t *testing.T, block, key string) string {
	t.Helper()
	m := regexp.MustCompile(`data-benefit="` + key + `">(.*?)</td>`).FindStringSubmatch(block)
	if m == nil {
		t.Fatalf("no %s cell in %s", key, block)
	}
	return m[1]
}

// benefitNumber parses a benefit cell as a number ("2,844,314").
func benefitNumber(t *testing.T, block, key string) float64 {
	t.Helper()
	s := benefitCellText(t, block, key)
	v, err := strconv.ParseFloat(strings.ReplaceAll(s, ",", ""), 64)
	if err != nil {
		t.Fatalf("%s: %q is not a number", key, s)
	}
	return v
}

func TestEnterprisePage(t *testing.T) {
	f := newFixture(t)

	t.Run("own token", func(t *testing.T) {
		w := f.do(t, "GET", "/enterprises/"+entB, otherToken, "")
		if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
			t.Fatalf("got %d %s", w.Code, w.Body)
		}
		page := w.Body.String()
		for _, want := range []string{
			"指标与基准", "Indicators against Level I / II / III", "单车综合能耗", "Comprehensive energy per vehicle", "kgce/vehicle",
			"120 / 160 / 220", "完整度 completeness", "覆盖 Coverage",
			`id="next-level"`, "What gets you to Level",
			"推荐措施及年效益", "按贵企业最近 30 天", "from your last 30 days", "annualised", "0.65 yuan/kWh",
			`id="declarations"`, `id="cases"`, "/api/v1/enterprises/" + entB + "/report",
		} {
			if !strings.Contains(page, want) {
				t.Errorf("the page lacks %q", want)
			}
		}
		// Every indicator row with a score has its coverage or says it is
		// declared.
		for _, row := range regexp.MustCompile(`(?s)<tr data-indicator="[^"]+">.*?</tr>`).FindAllString(page, -1) {
			score := regexp.MustCompile(`data-label="得分 Score">([^<]*)<`).FindStringSubmatch(row)
			cov := regexp.MustCompile(`(?s)data-label="覆盖 Coverage">(.*?)</td>`).FindStringSubmatch(row)
			if score == nil || cov == nil {
				t.Fatalf("a row without score or coverage cells: %s", row)
			}
			if score[1] != "—" && (cov[1] == "—" || cov[1] == "") {
				t.Errorf("a score without its coverage: %s", row)
			}
		}

		// compressed_air_leaks: energy_per_vehicle -3 %, co2_per_vehicle
		// -2 % (scoring/solutions/auto-manufacturing.yaml). Worked by hand
		// from the plant's own live-window totals: 3 % of its electricity
		// and gas, annualised over the window's days; CO2 with the grid
		// factor Chongqing falls back to (national 2023, 0.5306 kgCO2/kWh)
		// and gas at 2.1622 kgCO2/m³, or 2 % of its CO2 if larger; yuan at
		// 0.65 yuan/kWh and 3.2 yuan/m³ (solutions/prices.yaml).
		lw := liveWindow(t, f, entB, otherToken)
		year := 365 / lw.days
		kwh := 0.03 * lw.totals["electricity"] * year
		gas := 0.03 * lw.totals["natural_gas"] * year
		kgce := 0.03 * lw.values["energy_per_vehicle"] * lw.totals["vehicles"] * year
		co2 := math.Max((kwh*0.5306+gas*2.1622)/1000, 0.02*lw.values["co2_per_vehicle"]*lw.totals["vehicles"]/1000*year)
		yuan := kwh*0.65 + gas*3.2
		if kwh < 1e6 || gas < 1e4 {
			t.Fatalf("the fixture's plant uses %v kWh and %v m³ a year: want a car plant's", kwh/0.03, gas/0.03)
		}
		block := measureBlock(t, page, "compressed_air_leaks")
		for _, c := range []struct {
			key  string
			want float64
		}{{"electricity_kwh", kwh}, {"natural_gas_m3", gas}, {"energy_kgce", kgce}, {"co2_t", co2}, {"yuan", yuan}} {
			// Whole numbers from 10,000 up, else about four digits.
			if got := benefitNumber(t, block, c.key); math.Abs(got-c.want) > math.Max(0.51, 1e-3*c.want) {
				t.Errorf("compressed_air_leaks %s: got %v, want %v", c.key, got, c.want)
			}
		}
		if got := benefitCellText(t, block, "fresh_water_m3"); got != "—" {
			t.Errorf("compressed_air_leaks saves fresh water %q, want —", got)
		}
		if strings.Contains(block, "insufficient data") {
			t.Errorf("compressed_air_leaks says insufficient data: %s", block)
		}
	})

	t.Run("supervisor", func(t *testing.T) {
		if w := f.do(t, "GET", "/enterprises/"+entB, supervisorToken, ""); w.Code != 200 {
			t.Errorf("got %d, want 200", w.Code)
		}
	})

	t.Run("another enterprise's token", func(t *testing.T) {
		w := f.do(t, "GET", "/enterprises/"+entB, enterpriseToken, "")
		if w.Code != 403 || strings.Contains(w.Body.String(), "推荐措施") {
			t.Errorf("got %d %s, want 403", w.Code, w.Body)
		}
	})

	t.Run("no token in a browser", func(t *testing.T) {
		req := httptest.NewRequest("GET", "/enterprises/"+entA, nil)
		req.Header.Set("Accept", "text/html")
		w := httptest.NewRecorder()
		f.handler.ServeHTTP(w, req)
		if w.Code != 401 || !strings.Contains(w.Body.String(), `name="next" value="/enterprises/`+entA) {
			t.Errorf("got %d, want the sign-in page coming back here: %s", w.Code, w.Body)
		}
	})

	t.Run("links", func(t *testing.T) {
		w := f.do(t, "GET", "/", supervisorToken, "")
		if !strings.Contains(w.Body.String(), `href="/enterprises/`+entA+`"`) {
			t.Error("the overview's rows do not link the enterprise's page")
		}
		w = f.do(t, "GET", "/api/v1/enterprises/"+entA+"/report", enterpriseToken, "")
		if !strings.Contains(w.Body.String(), `href="/enterprises/`+entA+`"`) {
			t.Error("the report does not link the enterprise's page")
		}
	})
}

// TestEnterprisePageInsufficient: with the vehicle counts of the last 12
// days lost, the per-vehicle indicators lack data, and a measure acting on
// them says so instead of printing a number.
func TestEnterprisePageInsufficient(t *testing.T) {
	reg, readings := fleet(t)
	cut := fixtureNow.Add(-12 * 24 * time.Hour)
	var kept []store.Reading
	for _, r := range readings {
		if r.Enterprise == entB && r.Quantity == "vehicles" && r.Time.After(cut) {
			continue
		}
		kept = append(kept, r)
	}
	f := newFixtureWith(t, reg, kept)
	w := f.do(t, "GET", "/enterprises/"+entB, otherToken, "")
	if w.Code != 200 {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	page := w.Body.String()
	if !strings.Contains(page, "数据不足 insufficient data") {
		t.Fatal("the page never says insufficient data")
	}
	// Every measure acting on energy per vehicle says insufficient data
	// in its energy cells, and prints no yuan.
	n := 0
	for _, id := range []string{"compressed_air_leaks", "heat_pumps", "rto_heat_recovery", "dry_overspray_separation", "energy_management_system"} {
		if !strings.Contains(page, `data-measure="`+id+`"`) {
			continue
		}
		n++
		block := measureBlock(t, page, id)
		for _, key := range []string{"electricity_kwh", "energy_kgce", "yuan"} {
			if got := benefitCellText(t, block, key); !strings.Contains(got, "insufficient data") {
				t.Errorf("%s %s: got %q, want insufficient data", id, key, got)
			}
		}
		if !strings.Contains(block, "energy_per_vehicle: insufficient data") {
			t.Errorf("%s does not say which data is short: %s", id, block)
		}
	}
	if n == 0 {
		t.Error("no measure on energy per vehicle is recommended")
	}
	// The API says the same.
	var d EnterpriseDetail
	if err := json.Unmarshal(f.do(t, "GET", "/api/v1/enterprises/"+entB, otherToken, "").Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	for _, b := range d.Benefits {
		if b.Insufficient && (b.Yuan != nil || b.EnergyKgce != nil && len(b.Missing) > 0 && strings.HasPrefix(b.Missing[0], "energy:")) {
			t.Errorf("%s: insufficient yet priced: %+v", b.Solution, b)
		}
	}
}
