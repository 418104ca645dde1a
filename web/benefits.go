package web

import (
	"fmt"
	"math"
	"slices"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/scoring"
)

// BenefitDTO is what a recommended measure saves the enterprise a year,
// estimated from its own totals on a window (scoring.Benefit): a relative
// effect on an intensity indicator saves that share of the window's
// amount, annualised; energy is split by the enterprise's energy mix;
// CO2 uses the standard's factors; yuan the library's unit prices. A null
// amount is one the measure does not change, or, when Insufficient, one
// the data cannot estimate (Missing says which and why).
type BenefitDTO struct {
	Solution string  `json:"solution"`
	NameZH   string  `json:"name_zh"`
	NameEN   string  `json:"name_en"`
	Cost     string  `json:"cost"`
	Window   string  `json:"window"`
	Days     float64 `json:"days"` // the window's length the yearly figures are scaled from
	// Per year.
	EnergyKgce     *float64 `json:"energy_kgce"`
	ElectricityKWh *float64 `json:"electricity_kwh"`
	NaturalGasM3   *float64 `json:"natural_gas_m3"`
	FreshWaterM3   *float64 `json:"fresh_water_m3"`
	CO2Tonnes      *float64 `json:"co2_t"`
	Yuan           *float64 `json:"yuan"`
	Insufficient   bool     `json:"insufficient"`
	Missing        []string `json:"missing"`
	// Factors are the CO2 factors used for the energy saved.
	Factors []string `json:"factors"`
	Basis   Text     `json:"basis"`
}

// PriceDTO is a unit price the yuan figures use.
type PriceDTO struct {
	Quantity string   `json:"quantity"`
	Value    float64  `json:"value"`
	Unit     string   `json:"unit"`
	Src      []string `json:"src"`
	Note     string   `json:"note,omitempty"`
}

// recommendedMeasures lists the ids of the measures a detail recommends:
// those of the steps to the next level, then of the lagging indicators,
// each once.
func recommendedMeasures(d *EnterpriseDetail) []string {
	var ids []string
	add := func(ms []MatchDTO) {
		for _, m := range ms {
			if !slices.Contains(ids, m.ID) {
				ids = append(ids, m.ID)
			}
		}
	}
	if d.NextLevel != nil {
		for _, s := range d.NextLevel.Steps {
			add(s.Solutions)
		}
	}
	for _, l := range d.Lagging {
		add(l.Solutions)
	}
	return ids
}

// addBenefits estimates the benefits of the measures d recommends on the
// policy's window of v.
func addBenefits(d *EnterpriseDetail, std *scoring.Standard, pol *scoring.Policy, ent *registry.Enterprise, v resultView, lib *scoring.Library) {
	d.Benefits, d.BenefitPrices = []BenefitDTO{}, []PriceDTO{}
	if lib == nil {
		return
	}
	prices := lib.Prices()
	for _, q := range []string{"electricity", "natural_gas", "fresh_water"} {
		if p, ok := prices[q]; ok {
			d.BenefitPrices = append(d.BenefitPrices, PriceDTO{Quantity: p.Quantity, Value: p.Value, Unit: p.Unit, Src: nonNil(p.Src), Note: p.Note})
		}
	}
	if v.res == nil {
		return
	}
	a, ok := v.res.Assessment(pol.Window)
	if !ok {
		return
	}
	in := scoring.BenefitInput{Standard: std, Assessment: a, Region: ent.Region, Year: a.To.In(localZone(std.UTCOffset)).Year()}
	for _, id := range recommendedMeasures(d) {
		i := slices.IndexFunc(lib.Solutions, func(s *scoring.Solution) bool { return s.ID == id })
		if i < 0 {
			continue
		}
		b := lib.Benefit(in, lib.Solutions[i])
		if !b.Affects() {
			continue
		}
		days := math.Round(b.Days)
		bd := BenefitDTO{Solution: id, NameZH: b.Solution.NameZH, NameEN: b.Solution.NameEN, Cost: string(b.Solution.Cost), Window: b.Window, Days: b.Days,
			EnergyKgce: b.Energy, ElectricityKWh: b.Electricity, NaturalGasM3: b.NaturalGas, FreshWaterM3: b.FreshWater, CO2Tonnes: b.CO2, Yuan: b.Yuan,
			Insufficient: b.Insufficient(), Missing: nonNil(b.Missing), Factors: nonNil(b.Factors),
			Basis: Text{fmt.Sprintf("按贵企业最近 %g 天（%s 窗口）数据折算为全年", days, b.Window), fmt.Sprintf("from your last %g days (%s window), annualised", days, b.Window)}}
		d.Benefits = append(d.Benefits, bd)
	}
}
