package scoring

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/cleanprod/cleanprod/registry"
)

// Amount is a physical amount a measure saves, as its benefit states it.
type Amount string

// The amounts of a benefit.
const (
	AmountEnergy     Amount = "energy"      // kgce
	AmountFreshWater Amount = "fresh_water" // m³
	AmountCO2        Amount = "co2"         // t CO2
)

var amountUnits = map[Amount]string{AmountEnergy: "kgce", AmountFreshWater: "m3", AmountCO2: "tCO2"}

// AmountBasis says that an intensity indicator measures an amount: its
// value times the window total of Per is the amount the enterprise used
// over the window, in the amount's unit once multiplied by Scale (L to
// m³: 0.001). A relative change of the indicator at the same output saves
// that share of the amount.
type AmountBasis struct {
	Indicator string
	Amount    Amount
	Per       string // the registry quantity of the denominator, e.g. vehicles
	Scale     float64
}

// Price is the unit price of a quantity the measures save, in yuan per
// the quantity's canonical unit.
type Price struct {
	Quantity string // electricity, natural_gas or fresh_water
	Value    float64
	Unit     string // e.g. yuan/kWh
	Src      []string
	Note     string
	File     string
}

// pricedQuantities are the quantities a benefit prices: what the energy
// and water saved are bought as.
var pricedQuantities = []string{"electricity", "natural_gas", "fresh_water"}

type benefitsFile struct {
	Amounts []struct {
		Indicator string   `yaml:"indicator"`
		Amount    string   `yaml:"amount"`
		Per       string   `yaml:"per"`
		Scale     *float64 `yaml:"scale"`
	} `yaml:"amounts"`
}

type priceFile struct {
	Quantity string  `yaml:"quantity"`
	Value    float64 `yaml:"value"`
	Unit     string  `yaml:"unit"`
	Src      any     `yaml:"src"`
	Note     string  `yaml:"note"`
}

// Benefit is what a measure saves an enterprise in a year, estimated from
// the enterprise's own window: each relative effect on an indicator with
// an AmountBasis saves that share of the window's amount, annualised
// (x 365 / the window's days). Energy is split into electricity and
// natural gas by the enterprise's own energy mix; CO2 saved is the larger
// of the measure's own effect on CO2 and the CO2 of the energy saved
// (grid and gas factors of the standard). Nested effects on one amount
// (the paint shop's and the plant's energy) overlap: the larger counts,
// not the sum. A nil amount is one the measure does not change; one it
// changes but the data cannot tell is listed in Missing.
type Benefit struct {
	Solution *Solution
	Window   string
	Days     float64 // the window's length the amounts are from
	// Per year: kgce, kWh, m³ of gas, m³ of fresh water, t CO2, yuan.
	Energy, Electricity, NaturalGas, FreshWater, CO2, Yuan *float64
	// Missing names the amounts the measure changes that the data cannot
	// estimate, with why ("fresh_water: fresh_water coverage 42% < 80%").
	Missing []string
	// Factors are the CO2 factors used, e.g. "co2.electricity 0.5306
	// kgCO2/kWh" (with the regional fallback's note, if any).
	Factors []string
}

// Insufficient reports whether an amount the measure changes could not be
// estimated.
func (b *Benefit) Insufficient() bool { return len(b.Missing) > 0 }

// Affects reports whether the measure changes any amount a benefit states.
func (b *Benefit) Affects() bool {
	return b.Energy != nil || b.FreshWater != nil || b.CO2 != nil || b.Yuan != nil || len(b.Missing) > 0
}

// Prices returns the library's unit prices by quantity.
func (lib *Library) Prices() map[string]Price {
	if lib == nil {
		return nil
	}
	return lib.prices
}

// parseBenefits reads a file's amounts and prices into lib.
func (lib *Library) parseBenefits(name string, bf *benefitsFile, prices []priceFile, std *Standard, problem func(path []any, format string, args ...any)) {
	for i, af := range bf.Amounts {
		at := func(k string) []any { return []any{"benefits", "amounts", i, k} }
		ab := AmountBasis{Indicator: af.Indicator, Amount: Amount(af.Amount), Per: af.Per, Scale: 1}
		ind, ok := std.Indicator(af.Indicator)
		switch {
		case !ok:
			problem(at("indicator"), "benefits: unknown indicator %q", af.Indicator)
		case ind.Kind != Quantitative || ind.Direction != LowerBetter:
			problem(at("indicator"), "benefits: %s is not an amount per output (want a quantitative, lower_better indicator)", af.Indicator)
		}
		if _, ok := amountUnits[ab.Amount]; !ok {
			problem(at("amount"), "benefits: amount %q: want energy, fresh_water or co2", af.Amount)
		}
		if _, ok := registry.LookupQuantity(af.Per); !ok {
			problem(at("per"), "benefits: per %q: want a registry quantity (vehicles, ecoat_area)", af.Per)
		}
		if af.Scale != nil {
			ab.Scale = *af.Scale
			if !(ab.Scale > 0) {
				problem(at("scale"), "benefits: scale %v: want a positive number", ab.Scale)
			}
		}
		if slices.ContainsFunc(lib.amounts, func(x AmountBasis) bool { return x.Indicator == ab.Indicator }) {
			problem(at("indicator"), "benefits: %s is listed twice", ab.Indicator)
		}
		lib.amounts = append(lib.amounts, ab)
	}
	for i, pf := range prices {
		at := func(k string) []any { return []any{"prices", i, k} }
		p := Price{Quantity: pf.Quantity, Value: pf.Value, Unit: pf.Unit, Note: pf.Note, File: name}
		if !slices.Contains(pricedQuantities, p.Quantity) {
			problem(at("quantity"), "prices: quantity %q: want one of %s", p.Quantity, strings.Join(pricedQuantities, ", "))
		}
		if q, ok := registry.LookupQuantity(p.Quantity); ok && p.Unit != "yuan/"+q.Unit {
			problem(at("unit"), "prices: %s: unit %q: want yuan/%s", p.Quantity, p.Unit, q.Unit)
		}
		if !(p.Value >= 0) || math.IsInf(p.Value, 0) {
			problem(at("value"), "prices: %s: value %v: want a price of 0 or more", p.Quantity, p.Value)
		}
		var err error
		if p.Src, err = parseSrc(pf.Src); err != nil || len(p.Src) == 0 {
			problem(at("quantity"), "prices: %s: src is missing (a source tag, estimate or unverified)", p.Quantity)
		}
		if prev, dup := lib.prices[p.Quantity]; dup {
			problem(at("quantity"), "prices: %s is already priced in %s", p.Quantity, prev.File)
		}
		if lib.prices == nil {
			lib.prices = map[string]Price{}
		}
		lib.prices[p.Quantity] = p
	}
}

// BenefitInput is what Benefits estimates from.
type BenefitInput struct {
	Standard   *Standard
	Assessment *Assessment // the window the amounts are taken from
	// Region and Year pick the regional CO2 factors (the enterprise's
	// region, the assessment's year).
	Region string
	Year   int
}

// Benefit estimates what s saves the enterprise of in.Assessment a year.
func (lib *Library) Benefit(in BenefitInput, s *Solution) Benefit {
	std, a := in.Standard, in.Assessment
	b := Benefit{Solution: s, Window: a.Window, Days: a.To.Sub(a.From).Hours() / 24}
	if lib == nil || b.Days <= 0 {
		return b
	}
	year := 365 / b.Days
	totals := map[string]Total{}
	for _, t := range a.Totals {
		totals[t.ID] = t
	}
	// total returns a window total the estimate may use: one with enough
	// coverage. Coverage 0 is a total rebuilt from stored points, whose
	// coverage was not kept: the stored assessment was graded with it.
	total := func(id string) (float64, string) {
		t, ok := totals[id]
		switch {
		case !ok:
			return 0, "no " + id + " total"
		case t.Coverage > 0 && t.Coverage < std.MinCoverage:
			return 0, fmt.Sprintf("%s coverage %.0f%% < %.0f%%", id, 100*t.Coverage, 100*std.MinCoverage)
		}
		return t.Value, ""
	}
	type est struct {
		v       float64
		missing []string
		set     bool
	}
	ests := map[Amount]*est{AmountEnergy: {}, AmountFreshWater: {}, AmountCO2: {}}
	put := func(am Amount, v float64, why string) {
		e := ests[am]
		e.set = true
		if why != "" {
			e.missing = append(e.missing, why)
			return
		}
		e.v = math.Max(e.v, v)
	}
	for _, ef := range s.Effects {
		if ef.Relative >= 0 {
			continue
		}
		i := slices.IndexFunc(lib.amounts, func(x AmountBasis) bool { return x.Indicator == ef.Indicator })
		if i < 0 {
			continue
		}
		ab := lib.amounts[i]
		r, ok := a.Indicator(std, ab.Indicator)
		if ok && r.Status == NotApplicable {
			continue // the plant has no such amount (a parts plant makes no vehicles)
		}
		if !ok || r.Status != Graded {
			put(ab.Amount, 0, ab.Indicator+": insufficient data")
			continue
		}
		per, why := total(ab.Per)
		if why != "" {
			put(ab.Amount, 0, ab.Indicator+": "+why)
			continue
		}
		put(ab.Amount, -ef.Relative*r.Value*per*ab.Scale*year, "")
	}
	// Energy: split into electricity and gas by the enterprise's mix, and
	// the CO2 of both.
	if e := ests[AmountEnergy]; e.set && len(e.missing) > 0 {
		put(AmountCO2, 0, "the energy saved is unknown")
	} else if e.set {
		energy, why := total(EnergyTotal)
		if why != "" || energy <= 0 {
			e.missing = append(e.missing, "energy mix: "+cmp.Or(why, "no energy total"))
			put(AmountCO2, 0, "the energy saved is unknown")
		} else {
			elec, _ := total("electricity")
			gas, _ := total("natural_gas")
			kwh, m3 := e.v*elec/energy, e.v*gas/energy
			b.Electricity, b.NaturalGas = &kwh, &m3
			fe, ne := lib.factor(std, "co2.electricity", in.Region, in.Year)
			fg, ng := lib.factor(std, "co2.natural_gas", in.Region, in.Year)
			b.Factors = append(b.Factors, ne, ng)
			put(AmountCO2, (kwh*fe+m3*fg)/1000, "")
		}
	}
	for am, dst := range map[Amount]**float64{AmountEnergy: &b.Energy, AmountFreshWater: &b.FreshWater, AmountCO2: &b.CO2} {
		e := ests[am]
		switch {
		case !e.set:
		case len(e.missing) > 0:
			b.Missing = append(b.Missing, string(am)+": "+strings.Join(e.missing, "; "))
		default:
			v := e.v
			*dst = &v
		}
	}
	slices.Sort(b.Missing)
	// Yuan: what the energy and water saved cost to buy; none when an
	// amount it would price is missing, or a price is.
	changes := ests[AmountEnergy].set || ests[AmountFreshWater].set
	if changes && (ests[AmountEnergy].set && b.Electricity == nil || ests[AmountFreshWater].set && b.FreshWater == nil) {
		return b
	}
	var yuan float64
	for i, v := range []*float64{b.Electricity, b.NaturalGas, b.FreshWater} {
		q := pricedQuantities[i]
		if v == nil || *v == 0 {
			continue
		}
		p, ok := lib.prices[q]
		if !ok {
			return b
		}
		yuan += *v * p.Value
	}
	if changes {
		b.Yuan = &yuan
	}
	return b
}

// factor returns a factor of std for the enterprise and how it is
// written on a page ("co2.electricity 0.5306 kgCO2/kWh").
func (lib *Library) factor(std *Standard, id, region string, year int) (float64, string) {
	for _, f := range std.Factors {
		if f.ID == id {
			v, note := f.Resolve(region, year)
			s := fmt.Sprintf("%s %g %s", id, v, f.Unit)
			if note != "" {
				s += " (" + note + ")"
			}
			return v, s
		}
	}
	return 0, id + ": not in the standard (0 used)"
}
