package scoring

import (
	"math"
	"strings"

	"github.com/cleanprod/cleanprod/registry"
)

// Total is an enterprise's absolute total of one quantity over a window,
// from the same window sums the formulas read: what an audit report states
// beside the ratios (vehicles produced, e-coated area, energy, water, the
// masses of VOC and COD).
type Total struct {
	// ID names the total: a quantity ("vehicles", "fresh_water"), a load
	// "load_<quantity>[_<flow quantity>]" ("load_voc",
	// "load_cod_raw_wastewater"), or "energy_kgce".
	ID string
	// Quantity is the registry quantity ("" for energy_kgce).
	Quantity string
	// Unit is the quantity's canonical unit; kg for loads, kgce for energy.
	Unit  string
	Value float64
	// Coverage is the worst share of the window's buckets (days, for
	// analysers) with data among the meters behind the total, 0-1: a total
	// over a window with gaps understates the real one.
	Coverage float64
}

// EnergyTotal is the ID of the comprehensive energy total: every
// plant-wide amount that has a standard-coal factor (kgce.<quantity>)
// times that factor, as the standard's energy formulas weigh them.
const EnergyTotal = "energy_kgce"

// TotalPrefix starts the fields of the score points that hold the window
// totals: total_<Total.ID>.
const TotalPrefix = "total_"

// totalSpec is one total the standard's series provide.
type totalSpec struct {
	id, quantity, unit string
	series             int   // -1 for energy
	energy             []int // energy: plant-wide sums with a kgce factor
	factors            []int // energy: the constants of those factors
}

// totalSpecs lists the totals the standard's series provide, in the order
// Assessment.Totals has them: energy first, then the plant-wide sums of
// amounts in series order, then the plant-wide loads (the loads of
// abatement formulas, restricted to paired inlets and outlets, are left
// out).
func (s *Standard) totalSpecs() []totalSpec {
	var sums, loads []totalSpec
	energy := totalSpec{id: EnergyTotal, unit: "kgce", series: -1}
	for i, sr := range s.Series {
		if sr.Workshop != "" {
			continue
		}
		switch {
		case sr.Kind == SeriesSum:
			unit := ""
			if q, ok := registry.LookupQuantity(sr.Quantity); ok {
				unit = q.Unit
			}
			sums = append(sums, totalSpec{id: sr.Quantity, quantity: sr.Quantity, unit: unit, series: i})
			if c, ok := s.constIDs["kgce."+sr.Quantity]; ok {
				energy.energy = append(energy.energy, i)
				energy.factors = append(energy.factors, c)
			}
		case sr.Kind == SeriesLoad && sr.With == "":
			id := "load_" + sr.Quantity
			if sr.Flow != "" {
				id += "_" + sr.Flow
			}
			loads = append(loads, totalSpec{id: id, quantity: sr.Quantity, unit: "kg", series: i})
		}
	}
	var out []totalSpec
	if len(energy.energy) > 0 {
		out = append(out, energy)
	}
	return append(append(out, sums...), loads...)
}

// windowTotals computes the totals of the series the enterprise meters
// over ev's window. It runs on every evaluation: the specs are the
// standard's, computed once at load, and the result is its only allocation.
func windowTotals(ev *env, std *Standard) []Total {
	specs := std.totals
	n := 0
	for _, sp := range specs {
		if sp.series >= 0 && ev.lay.series[sp.series].present {
			n++
		}
	}
	out := make([]Total, 0, n+1)
	for _, sp := range specs {
		t := Total{ID: sp.id, Quantity: sp.quantity, Unit: sp.unit, Coverage: 1}
		present := false
		if sp.series >= 0 {
			present = addTotal(ev, std, &t, sp.series, 1)
		}
		for j, i := range sp.energy {
			present = addTotal(ev, std, &t, i, ev.constant(sp.factors[j])) || present
		}
		if present {
			out = append(out, t)
		}
	}
	return out
}

// addTotal adds series i times factor to t, if the enterprise meters it.
func addTotal(ev *env, std *Standard, t *Total, i int, factor float64) bool {
	var v float64
	var ok bool
	if std.Series[i].Kind == SeriesLoad {
		v, ok = ev.load(i)
	} else {
		v, ok = ev.sum(i)
	}
	if !ok {
		return false
	}
	cov, _, _ := ev.inputCoverage(i)
	t.Value += v * factor
	t.Coverage = math.Min(t.Coverage, cov)
	return true
}

// TotalsFromFields reads the totals back from the fields of a score point
// (see MeasurementScore), in the order of Assessment.Totals; their
// Coverage is not stored and reads 0.
func TotalsFromFields(std *Standard, fields map[string]any) []Total {
	var out []Total
	for _, sp := range std.totals {
		var v float64
		switch x := fields[TotalPrefix+sp.id].(type) {
		case float64:
			v = x
		case int64:
			v = float64(x)
		default:
			continue
		}
		out = append(out, Total{ID: sp.id, Quantity: sp.quantity, Unit: sp.unit, Value: v})
	}
	return out
}

// totalFields adds the totals to score point fields.
func totalFields(f map[string]any, ts []Total) {
	for _, t := range ts {
		if !math.IsNaN(t.Value) && !math.IsInf(t.Value, 0) && !strings.ContainsAny(t.ID, " ,=") {
			f[TotalPrefix+t.ID] = t.Value
		}
	}
}
