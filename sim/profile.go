package sim

import (
	_ "embed"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"os"
	"slices"

	"github.com/cleanprod/cleanprod/internal/yamlfile"
	"github.com/cleanprod/cleanprod/registry"
)

//go:embed profiles.yaml
var defaultProfiles []byte

// Families of plants: a vehicle plant's job is a vehicle body, a parts
// plant's job is a rack of parts through e-coat.
const (
	FamilyVehicle = "vehicle"
	FamilyParts   = "parts"
)

// Profiles is the set of plant profiles: defaults, named presets that
// override them, and the preset of each known enterprise. It is the schema
// of sim/profiles.yaml.
type Profiles struct {
	Defaults    Profile               `yaml:"defaults"`
	Presets     map[string]Profile    `yaml:"presets"`
	Enterprises map[string]Assignment `yaml:"enterprises"`
}

// Assignment gives an enterprise its preset and, optionally, its own drift
// and the gateways the simulator leaves silent.
type Assignment struct {
	Preset string   `yaml:"preset"`
	Drift  *float64 `yaml:"drift"` // nil: the preset's
	// Silent are gateways of the enterprise that the simulator does not
	// run (a gateway being commissioned, whose readings are sent by hand).
	Silent []string `yaml:"silent"`
}

// Profile is how one plant produces and consumes. Zero fields inherit from
// Profiles.Defaults. Amounts are canonical units per job averaged over a
// normal week; see profiles.yaml for the model.
type Profile struct {
	Family    string             `yaml:"family"`    // FamilyVehicle or FamilyParts
	JPH       float64            `yaml:"jph"`       // nominal jobs per hour while the line runs
	Shifts    int                `yaml:"shifts"`    // 1, 2 or 3 shifts a weekday; weekends off
	Area      float64            `yaml:"area"`      // e-coated m2 per job
	Stoppage  float64            `yaml:"stoppage"`  // share of scheduled time the line stands
	VOC       float64            `yaml:"voc"`       // g/m2 emitted through the stacks
	Abatement float64            `yaml:"abatement"` // VOC abatement efficiency, 0..1
	PVPeak    float64            `yaml:"pv_peak"`   // kW peak of on-site PV
	Drift     float64            `yaml:"drift"`     // relative change of intensities per 30 simulated days (+: worse)
	Amounts   map[string]Amount  `yaml:"amounts"`   // by extensive quantity
	Gauges    map[string]GaugeAt `yaml:"gauges"`    // by gauge quantity
}

// Amount is a plant's use of one extensive quantity.
type Amount struct {
	PerJob float64 `yaml:"per_job"` // canonical units per job, base load included
	Base   float64 `yaml:"base"`    // share of PerJob drawn as constant base load
	Paint  float64 `yaml:"paint"`   // share metered in the paint shop
}

// GaugeAt is the level of one analysed pollutant.
type GaugeAt struct {
	Outlet     float64 `yaml:"outlet"`     // mean at the discharge point
	Inlet      float64 `yaml:"inlet"`      // mean before treatment
	Noise      float64 `yaml:"noise"`      // relative standard deviation
	Excursions float64 `yaml:"excursions"` // outlet episodes at 2.5x per 30 days
}

// DefaultProfiles returns the embedded profiles of sim/profiles.yaml, which
// describe the shipped fleet in gateway-config/.
func DefaultProfiles() *Profiles {
	p, err := ParseProfiles("sim/profiles.yaml", defaultProfiles)
	if err != nil {
		panic(err) // the embedded file is tested
	}
	return p
}

// LoadProfiles reads and validates a profiles file.
func LoadProfiles(path string) (*Profiles, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load profiles: %w", err)
	}
	return ParseProfiles(path, data)
}

// ParseProfiles decodes profiles strictly (unknown keys are errors) and
// validates them; name is used in messages.
func ParseProfiles(name string, data []byte) (*Profiles, error) {
	var p Profiles
	doc, err := yamlfile.Decode(name, data, &p)
	if err != nil {
		return nil, err
	}
	var errs []error
	problem := func(path []any, format string, args ...any) {
		errs = append(errs, doc.Errorf(path, format, args...))
	}
	checkProfile(p.Defaults, true, yamlfile.P("defaults"), problem)
	for _, n := range slices.Sorted(maps.Keys(p.Presets)) {
		checkProfile(p.Presets[n], false, yamlfile.P("presets", n), problem)
	}
	for _, id := range slices.Sorted(maps.Keys(p.Enterprises)) {
		a := p.Enterprises[id]
		if _, ok := p.Presets[a.Preset]; !ok {
			problem(yamlfile.P("enterprises", id, "preset"), "enterprise %q: unknown preset %q", id, a.Preset)
		}
		for i, g := range a.Silent {
			if !registry.ValidID(g) {
				problem(yamlfile.P("enterprises", id, "silent", i), "enterprise %q: silent gateway %q is not a valid id", id, g)
			}
		}
	}
	if len(p.Presets) == 0 {
		problem(yamlfile.P("presets"), "no presets")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &p, nil
}

func checkProfile(p Profile, full bool, at []any, problem func([]any, string, ...any)) {
	path := func(k ...any) []any { return append(slices.Clone(at), k...) }
	if p.Family != "" && p.Family != FamilyVehicle && p.Family != FamilyParts {
		problem(path("family"), "family %q: want vehicle or parts", p.Family)
	}
	if full && p.Family == "" {
		problem(path("family"), "defaults need a family")
	}
	if p.JPH < 0 || (full && p.JPH == 0) {
		problem(path("jph"), "jph must be positive, got %v", p.JPH)
	}
	if p.Shifts < 0 || p.Shifts > 3 || (full && p.Shifts == 0) {
		problem(path("shifts"), "shifts must be 1, 2 or 3, got %d", p.Shifts)
	}
	if p.Area < 0 || (full && p.Area == 0) {
		problem(path("area"), "area must be positive, got %v", p.Area)
	}
	if p.Stoppage < 0 || p.Stoppage >= 0.9 {
		problem(path("stoppage"), "stoppage must be in [0, 0.9), got %v", p.Stoppage)
	}
	if p.VOC < 0 || p.PVPeak < 0 {
		problem(at, "voc and pv_peak must not be negative")
	}
	if p.Abatement < 0 || p.Abatement >= 1 {
		problem(path("abatement"), "abatement must be in [0, 1), got %v", p.Abatement)
	}
	if p.Drift <= -1 || p.Drift > 1 {
		problem(path("drift"), "drift must be in (-1, 1] per 30 days, got %v", p.Drift)
	}
	for _, q := range slices.Sorted(maps.Keys(p.Amounts)) {
		a := p.Amounts[q]
		if qq, ok := registry.LookupQuantity(q); !ok || !qq.Extensive {
			problem(path("amounts", q), "%q is not an extensive quantity", q)
		}
		if a.PerJob < 0 || a.Base < 0 || a.Base > 1 || a.Paint < 0 || a.Paint > 1 {
			problem(path("amounts", q), "%s: want per_job >= 0 and base, paint in [0, 1]", q)
		}
	}
	for _, q := range slices.Sorted(maps.Keys(p.Gauges)) {
		g := p.Gauges[q]
		if qq, ok := registry.LookupQuantity(q); !ok || qq.Extensive {
			problem(path("gauges", q), "%q is not a gauge quantity", q)
		}
		if g.Outlet < 0 || g.Inlet < 0 || g.Noise < 0 || g.Noise > 1 || g.Excursions < 0 {
			problem(path("gauges", q), "%s: want outlet, inlet, excursions >= 0 and noise in [0, 1]", q)
		}
	}
}

// For returns the resolved profile of enterprise e: its assigned preset, or
// for an unknown enterprise a preset of its family chosen by a hash of its
// id, merged over the defaults.
func (ps *Profiles) For(e *registry.Enterprise) Profile {
	a, ok := ps.Enterprises[e.ID]
	if !ok {
		a = Assignment{Preset: ps.pick(e)}
	}
	p := ps.merge(ps.Presets[a.Preset])
	if a.Drift != nil {
		p.Drift = *a.Drift
	}
	return p
}

// Silent reports whether the simulator leaves gateway g silent.
func (ps *Profiles) Silent(g *registry.Gateway) bool {
	return slices.Contains(ps.Enterprises[g.Enterprise.ID].Silent, g.ID)
}

// pick chooses a preset for an unassigned enterprise: one of its family,
// by a hash of its id, so that a synthetic fleet spreads over levels.
func (ps *Profiles) pick(e *registry.Enterprise) string {
	family := FamilyParts
	for _, m := range e.Meters {
		if m.Quantity.Name == "vehicles" {
			family = FamilyVehicle
			break
		}
	}
	var names []string
	for _, n := range slices.Sorted(maps.Keys(ps.Presets)) {
		f := ps.Presets[n].Family
		if f == "" {
			f = ps.Defaults.Family
		}
		if f == family {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		names = slices.Sorted(maps.Keys(ps.Presets))
	}
	h := fnv.New64a()
	h.Write([]byte(e.ID))
	return names[h.Sum64()%uint64(len(names))]
}

func (ps *Profiles) merge(o Profile) Profile {
	p := ps.Defaults
	p.Amounts = maps.Clone(ps.Defaults.Amounts)
	p.Gauges = maps.Clone(ps.Defaults.Gauges)
	if p.Amounts == nil {
		p.Amounts = map[string]Amount{}
	}
	if p.Gauges == nil {
		p.Gauges = map[string]GaugeAt{}
	}
	setS := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	setF := func(dst *float64, v float64) {
		if v != 0 {
			*dst = v
		}
	}
	setS(&p.Family, o.Family)
	setF(&p.JPH, o.JPH)
	if o.Shifts != 0 {
		p.Shifts = o.Shifts
	}
	setF(&p.Area, o.Area)
	setF(&p.Stoppage, o.Stoppage)
	setF(&p.VOC, o.VOC)
	setF(&p.Abatement, o.Abatement)
	setF(&p.PVPeak, o.PVPeak)
	setF(&p.Drift, o.Drift)
	maps.Copy(p.Amounts, o.Amounts) // a preset's amount replaces the whole entry
	for q, g := range o.Gauges {
		d := p.Gauges[q]
		setF(&d.Outlet, g.Outlet)
		setF(&d.Inlet, g.Inlet)
		setF(&d.Noise, g.Noise)
		setF(&d.Excursions, g.Excursions)
		p.Gauges[q] = d
	}
	return p
}
