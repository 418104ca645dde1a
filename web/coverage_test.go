package web

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/store"
)

// TestSilentSubMeterInAPIAndReport: the shipped fleet with one of Yuntai's
// four electricity meters, E-BODY-01, silent for the last 10 days of the
// 30-day window. The plant's electricity still has data every hour from
// the other three, but the indicators reading it show the coverage of
// E-BODY-01 (about 20 of 30 days, below min_coverage 80 %), have
// insufficient data and name the meter, in the API and in the report.
func TestSilentSubMeterInAPIAndReport(t *testing.T) {
	reg, readings := fleet(t)
	silentFrom := fixtureNow.Add(-10 * 24 * time.Hour)
	kept := make([]store.Reading, 0, len(readings))
	for _, r := range readings {
		if r.Enterprise == entA && r.Meter == "E-BODY-01" && !r.Time.Before(silentFrom) {
			continue
		}
		kept = append(kept, r)
	}
	f := newFixtureWith(t, reg, kept)

	w := f.do(t, "GET", "/api/v1/enterprises/"+entA, supervisorToken, "")
	if w.Code != 200 {
		t.Fatalf("GET %s: %d %s", entA, w.Code, w.Body)
	}
	var d struct {
		Assessments []AssessmentDTO `json:"assessments"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(d.Assessments, func(a AssessmentDTO) bool { return a.Window == f.pol.Window })
	if i < 0 {
		t.Fatalf("no assessment on %s", f.pol.Window)
	}
	byID := map[string]IndicatorDTO{}
	for _, ind := range d.Assessments[i].Indicators {
		byID[ind.ID] = ind
	}
	for _, id := range []string{"energy_per_vehicle", "co2_per_vehicle", "renewable_electricity_share"} {
		ind := byID[id]
		// 20 of 30 days, give or take the partial hour at each end.
		if c := coverageOf(ind); ind.Status != string(scoring.Insufficient) || !(c > 0.64 && c < 0.69) ||
			!slices.Equal(ind.Short, []string{"E-BODY-01"}) || !strings.Contains(ind.Reason, "E-BODY-01") {
			t.Errorf("%s: got status %s, coverage %v, short meters %q, reason %q; want insufficient, about 0.67, [E-BODY-01]",
				id, ind.Status, coverageOf(ind), ind.Short, ind.Reason)
		}
	}
	// The paint shop's own meter reported throughout.
	if ind := byID["paintshop_energy_per_m2"]; ind.Status != string(scoring.Graded) || len(ind.Short) != 0 || coverageOf(ind) < 0.95 {
		t.Errorf("paintshop_energy_per_m2: got status %s, coverage %v, short meters %q; want graded, full, none", ind.Status, coverageOf(ind), ind.Short)
	}
	if !strings.Contains(w.Body.String(), `"short_meters":["E-BODY-01"]`) {
		t.Errorf("the JSON lacks short_meters:\n%.300s", w.Body)
	}

	w = f.do(t, "GET", "/api/v1/enterprises/"+entA+"/report", supervisorToken, "")
	if w.Code != 200 {
		t.Fatalf("report: %d %s", w.Code, w.Body)
	}
	if got := strings.Count(w.Body.String(), "meters short of data: E-BODY-01"); got < 3 {
		t.Errorf("report: E-BODY-01 named as short of data %d times, want at least 3 (one per indicator reading the plant's electricity)", got)
	}
}

// coverageOf returns an indicator's coverage, NaN when it has none.
func coverageOf(ind IndicatorDTO) float64 {
	if ind.Coverage == nil {
		return math.NaN()
	}
	return *ind.Coverage
}
