package registry

import (
	"maps"
	"slices"
)

// Medium is what a volume or a concentration refers to, so that a
// concentration pairs only with a flow of the same medium.
type Medium string

// Media of paired concentration and flow meters.
const (
	Water Medium = "water"
	Gas   Medium = "gas"
)

// Quantity is a measured physical quantity with its canonical unit and the
// units meters may report it in.
type Quantity struct {
	Name string // e.g. "electricity"
	Unit string // canonical unit, e.g. "kWh"
	// Extensive quantities are amounts that add up over time (energy,
	// volume, mass, count); they are metered by counters or deltas.
	// Intensive ones (concentrations, pH) are gauges.
	Extensive bool
	// Medium is set for water and gas volumes and for concentrations in them.
	Medium Medium
	// Min and Max bound a plausible gauge value in the canonical unit.
	Min, Max float64
	// Ceiling bounds a plausible increase per hour of any one meter of an
	// extensive quantity, in the canonical unit: far above the largest
	// plant, it catches a glitching register (a jump by 1e12) on meters
	// that declare no max_rate of their own, which becomes their MaxRate.
	Ceiling     float64
	Description string
	units       map[string]float64 // unit -> factor to the canonical unit
}

// Factor returns the factor that converts a value in unit to the canonical
// unit, and whether unit is declared for the quantity.
func (q *Quantity) Factor(unit string) (float64, bool) {
	f, ok := q.units[unit]
	return f, ok
}

// Units returns the units declared for the quantity, sorted.
func (q *Quantity) Units() []string { return slices.Sorted(maps.Keys(q.units)) }

var (
	energyKWh   = map[string]float64{"Wh": 0.001, "kWh": 1, "MWh": 1e3, "GWh": 1e6}
	waterM3     = map[string]float64{"m3": 1, "L": 0.001, "t": 1} // 1 t of water is 1 m3
	gasM3       = map[string]float64{"m3": 1, "Nm3": 1, "km3": 1e3, "L": 0.001}
	massKg      = map[string]float64{"g": 0.001, "kg": 1, "t": 1e3}
	waterConc   = map[string]float64{"mg/L": 1, "g/m3": 1, "g/L": 1e3, "ug/L": 1e-3}
	gasConc     = map[string]float64{"mg/m3": 1, "g/m3": 1e3, "ug/m3": 1e-3}
	plausibleMg = 1e6 // mg/L or mg/m3: anything above is a broken analyser
)

// quantities is the declared table of canonical quantities. Names are the
// vocabulary of meter definitions and of indicator formulas.
var quantities = map[string]*Quantity{
	"electricity":        {Unit: "kWh", Extensive: true, units: energyKWh, Description: "electricity consumed (grid and on-site)"},
	"pv_electricity":     {Unit: "kWh", Extensive: true, units: energyKWh, Description: "electricity generated on site from renewables"},
	"green_electricity":  {Unit: "kWh", Extensive: true, units: energyKWh, Description: "purchased certified green electricity"},
	"natural_gas":        {Unit: "m3", Extensive: true, Medium: Gas, units: gasM3, Description: "natural gas at standard conditions"},
	"steam":              {Unit: "kg", Extensive: true, units: massKg, Description: "purchased steam"},
	"purchased_heat":     {Unit: "MJ", Extensive: true, units: map[string]float64{"MJ": 1, "GJ": 1e3, "kWh": 3.6}, Description: "purchased heat"},
	"diesel":             {Unit: "kg", Extensive: true, units: massKg, Description: "diesel burned on site"},
	"fresh_water":        {Unit: "m3", Extensive: true, Medium: Water, units: waterM3, Description: "fresh water drawn"},
	"recycled_water":     {Unit: "m3", Extensive: true, Medium: Water, units: waterM3, Description: "water reused within the plant"},
	"reclaimed_water":    {Unit: "m3", Extensive: true, Medium: Water, units: waterM3, Description: "treated wastewater or rainwater used instead of fresh water"},
	"wastewater":         {Unit: "m3", Extensive: true, Medium: Water, units: waterM3, Description: "treated effluent discharged"},
	"raw_wastewater":     {Unit: "m3", Extensive: true, Medium: Water, units: waterM3, Description: "wastewater entering treatment"},
	"stack_gas":          {Unit: "m3", Extensive: true, Medium: Gas, units: gasM3, Description: "exhaust gas through a stack, standard conditions"},
	"vehicles":           {Unit: "vehicle", Extensive: true, units: map[string]float64{"vehicle": 1}, Description: "vehicles produced (line-off)"},
	"bodies":             {Unit: "body", Extensive: true, units: map[string]float64{"body": 1}, Description: "bodies through e-coat"},
	"ecoat_area":         {Unit: "m2", Extensive: true, units: map[string]float64{"m2": 1}, Description: "e-coated area"},
	"paint_used":         {Unit: "kg", Extensive: true, units: massKg, Description: "coating materials used"},
	"low_voc_paint":      {Unit: "kg", Extensive: true, units: massKg, Description: "waterborne, high-solids or powder coatings used"},
	"hazardous_waste":    {Unit: "kg", Extensive: true, units: massKg, Description: "hazardous waste generated"},
	"solid_waste":        {Unit: "kg", Extensive: true, units: massKg, Description: "general industrial solid waste generated"},
	"solid_waste_reused": {Unit: "kg", Extensive: true, units: massKg, Description: "general industrial solid waste utilised"},

	"cod":              {Unit: "mg/L", Medium: Water, Max: plausibleMg, units: waterConc, Description: "chemical oxygen demand"},
	"nh3n":             {Unit: "mg/L", Medium: Water, Max: plausibleMg, units: waterConc, Description: "ammonia nitrogen"},
	"total_nickel":     {Unit: "mg/L", Medium: Water, Max: plausibleMg, units: waterConc, Description: "total nickel"},
	"total_phosphorus": {Unit: "mg/L", Medium: Water, Max: plausibleMg, units: waterConc, Description: "total phosphorus"},
	"ph":               {Unit: "pH", Max: 14, units: map[string]float64{"pH": 1}, Description: "pH of effluent"},
	"voc":              {Unit: "mg/m3", Medium: Gas, Max: plausibleMg, units: gasConc, Description: "VOCs (as NMHC) in stack gas after abatement"},
	"voc_inlet":        {Unit: "mg/m3", Medium: Gas, Max: plausibleMg, units: gasConc, Description: "VOCs (as NMHC) before abatement"},
	"so2":              {Unit: "mg/m3", Medium: Gas, Max: plausibleMg, units: gasConc, Description: "sulphur dioxide in stack gas (HJ 212 a21026)"},
	"nox":              {Unit: "mg/m3", Medium: Gas, Max: plausibleMg, units: gasConc, Description: "nitrogen oxides as NO2 in stack gas (HJ 212 a21002)"},
	"particulate":      {Unit: "mg/m3", Medium: Gas, Max: plausibleMg, units: gasConc, Description: "particulate matter in stack gas (HJ 212 a34013)"},
}

// ceilings are the Ceiling of the extensive quantities: engineering
// estimates 10 to 1,000 times the hourly use of a large car plant (about
// 50 MW, 1,000 m3 of water and 60 vehicles an hour) for one meter.
var ceilings = map[string]float64{
	"electricity": 2e6, "pv_electricity": 2e6, "green_electricity": 2e6, // kWh: 2 GW
	"natural_gas": 1e6, "steam": 1e7, "purchased_heat": 1e8, "diesel": 1e6,
	"fresh_water": 1e5, "recycled_water": 1e5, "reclaimed_water": 1e5, "wastewater": 1e5, "raw_wastewater": 1e5,
	"stack_gas": 1e8, "vehicles": 1e4, "bodies": 1e4, "ecoat_area": 1e7,
	"paint_used": 1e6, "low_voc_paint": 1e6, "hazardous_waste": 1e7, "solid_waste": 1e7, "solid_waste_reused": 1e7,
}

func init() {
	for name, q := range quantities {
		q.Name = name
		q.Ceiling = ceilings[name]
	}
}

// LookupQuantity returns the quantity with the given name.
func LookupQuantity(name string) (*Quantity, bool) {
	q, ok := quantities[name]
	return q, ok
}

// Quantities returns every declared quantity, sorted by name.
func Quantities() []*Quantity {
	out := make([]*Quantity, 0, len(quantities))
	for _, name := range slices.Sorted(maps.Keys(quantities)) {
		out = append(out, quantities[name])
	}
	return out
}
