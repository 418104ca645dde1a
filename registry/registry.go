package registry

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cleanprod/cleanprod/internal/yamlfile"
)

// Kind says how a meter reports.
type Kind string

// Meter kinds.
const (
	// Counter is a cumulative register; consumption is the difference
	// between readings, with resets, rollovers and replacements handled.
	Counter Kind = "counter"
	// Delta reports the amount since its previous reading.
	Delta Kind = "delta"
	// Gauge reports an instantaneous value, such as a concentration.
	Gauge Kind = "gauge"
)

// Enterprise is a registered enterprise with its gateways.
type Enterprise struct {
	ID       string
	Name     string
	NameZH   string
	Industry string
	Region   string // grid region for emission factors, e.g. "chongqing"
	// USCC is the unified social credit code (统一社会信用代码, 18
	// characters, GB 32100-2015; see CheckUSCC), "" when not given.
	USCC string
	// DischargePermit is the discharge permit number (排污许可证编号, 22
	// characters, HJ 608-2017; see CheckDischargePermit), "" when not
	// given.
	DischargePermit string
	Gateways        []*Gateway
	Meters          []*Meter // every meter of every gateway, in file order
	File            string
}

// Gateway is a registered gateway of one enterprise.
type Gateway struct {
	ID          string
	Enterprise  *Enterprise
	Description string
	Meters      []*Meter
	// Station is the HJ 212 monitoring point whose frames the gateway
	// forwards or whose logger connects to cleanprod (nil: none).
	Station *Station
	meters  map[string]*Meter
}

// Meter returns the gateway's meter with the given id.
func (g *Gateway) Meter(id string) (*Meter, bool) {
	m, ok := g.meters[id]
	return m, ok
}

// Meter is a registered meter. All conversions are precomputed: a raw value
// v from the device is v*Factor in the quantity's canonical unit.
type Meter struct {
	ID         string
	Enterprise *Enterprise
	Gateway    *Gateway
	Quantity   *Quantity
	Unit       string // unit the device reports in
	Kind       Kind
	Scale      float64 // multiplier applied to the raw value before unit conversion
	Factor     float64 // Scale times the unit's factor to the canonical unit
	// Rollover is the largest value the counter's register shows, in
	// canonical units (0: the meter declares none). The file gives it in
	// the raw unit the device reports, as printed on the register or in
	// the device's manual (99999 for five digits, 999999.9 for six and a
	// tenth, 65535 for a 16-bit register); it is that times Factor. After
	// it the register reads 0, so it wraps at Rollover + Resolution: from
	// 99980 to 30 a register with rollover 99999 counted 50.
	Rollover float64
	// Resolution is the smallest step the register of a counter with a
	// Rollover shows, in canonical units (0 without a rollover): the
	// file's resolution, or, when it gives none, one unit of the last
	// decimal the rollover is written with (99999: 1, 999999.9: 0.1),
	// times Factor. The rollover is a whole number of these steps.
	Resolution float64
	// MaxRegister is the largest register a counter can show, in
	// canonical units (0: the meter declares no range): its Rollover when
	// it has one, else the file's max_register (in the raw unit, like
	// rollover) times Factor. A reading above it is refused, the first
	// one too, which would otherwise become the baseline every later
	// delta counts from.
	MaxRegister float64
	// MaxRate bounds a plausible counter or delta increase, canonical units
	// per hour: the meter's max_rate, or else its quantity's Ceiling.
	MaxRate float64
	// FlowMeter is the flow meter a concentration pairs with to form a
	// load (nil: none).
	FlowMeter *Meter
	Workshop  string
	// Replacements are physical meter exchanges, sorted by time.
	Replacements []Replacement
	// HJ212 is where the meter's values come from in its gateway's
	// station frames (nil: the meter reports through contract v1 only).
	HJ212 *HJ212Source
	// PermitLimit is the discharge permit's limit of a concentration, in
	// canonical units (0: none declared).
	PermitLimit float64
}

// Replacement is the exchange of a counter's physical meter at At: the old
// register ended at OldFinal and the new one started at NewInitial (both
// canonical units).
type Replacement struct {
	At         time.Time
	OldFinal   float64
	NewInitial float64
}

// Registry is the loaded, validated gateway registry. It is immutable and
// safe for concurrent use.
type Registry struct {
	Enterprises []*Enterprise // sorted by id
	enterprises map[string]*Enterprise
	gateways    map[gatewayKey]*Gateway
	meterHomes  map[string][]*Meter // meter id -> meters with that id in any enterprise
	meters      map[meterKey]*Meter
	stations    map[string]*Gateway // by MN
}

type gatewayKey struct{ enterprise, gateway string }

type meterKey struct{ enterprise, meter string }

// Enterprise returns the enterprise with the given id.
func (r *Registry) Enterprise(id string) (*Enterprise, bool) {
	e, ok := r.enterprises[id]
	return e, ok
}

// Gateway returns the gateway registered under enterprise with id gateway.
func (r *Registry) Gateway(enterprise, gateway string) (*Gateway, bool) {
	g, ok := r.gateways[gatewayKey{enterprise, gateway}]
	return g, ok
}

// Station returns the gateway of the HJ 212 monitoring point with the
// given MN.
func (r *Registry) Station(mn string) (*Gateway, bool) {
	g, ok := r.stations[mn]
	return g, ok
}

// MetersNamed returns every registered meter with the given id, in any
// enterprise; ingest uses it to tell a spoofed reading from an unknown meter.
func (r *Registry) MetersNamed(id string) []*Meter { return r.meterHomes[id] }

// Meter returns the meter registered under enterprise with id id.
func (r *Registry) Meter(enterprise, id string) (*Meter, bool) {
	m, ok := r.meters[meterKey{enterprise, id}]
	return m, ok
}

// MeterCount returns the number of registered meters.
func (r *Registry) MeterCount() int {
	n := 0
	for _, e := range r.Enterprises {
		n += len(e.Meters)
	}
	return n
}

// GatewayCount returns the number of registered gateways.
func (r *Registry) GatewayCount() int { return len(r.gateways) }

// idRE is what an enterprise, gateway or meter id may look like: it becomes
// an MQTT topic level and an InfluxDB tag, so no '/', '+', '#', '$' or spaces.
var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidID reports whether s may be used as an enterprise, gateway or meter id.
func ValidID(s string) bool { return idRE.MatchString(s) }

// File schema of one gateway-config file.
type fileSchema struct {
	Enterprise struct {
		ID       string `yaml:"id"`
		Name     string `yaml:"name"`
		NameZH   string `yaml:"name_zh"`
		Industry string `yaml:"industry"`
		Region   string `yaml:"region"`
		USCC     string `yaml:"uscc"`
		Permit   string `yaml:"discharge_permit"`
	} `yaml:"enterprise"`
	Gateways []struct {
		ID          string         `yaml:"id"`
		Description string         `yaml:"description"`
		HJ212       *stationSchema `yaml:"hj212"`
		Meters      []meterSchema  `yaml:"meters"`
	} `yaml:"gateways"`
}

type meterSchema struct {
	ID           string       `yaml:"id"`
	Quantity     string       `yaml:"quantity"`
	Unit         string       `yaml:"unit"`
	Kind         string       `yaml:"kind"`
	Scale        *float64     `yaml:"scale"`
	Rollover     float64      `yaml:"rollover"`
	MaxRegister  float64      `yaml:"max_register"`
	Resolution   *float64     `yaml:"resolution"`
	MaxRate      float64      `yaml:"max_rate"`
	FlowMeter    string       `yaml:"flow_meter"`
	Workshop     string       `yaml:"workshop"`
	HJ212        *hj212Schema `yaml:"hj212"`
	PermitLimit  *float64     `yaml:"permit_limit"`
	Replacements []struct {
		At         time.Time `yaml:"at"`
		OldFinal   *float64  `yaml:"old_final"`
		NewInitial *float64  `yaml:"new_initial"`
	} `yaml:"replacements"`
}

// Load reads every *.yaml and *.yml file in dir (one enterprise each) and
// validates the whole registry. It returns every problem at once, each
// naming file and line.
func Load(dir string) (*Registry, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load gateway registry: %w", err)
	}
	files := make(map[string][]byte)
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("load gateway registry: %w", err)
		}
		files[filepath.Join(dir, name)] = data
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("load gateway registry: no *.yaml files in %s", dir)
	}
	return Parse(files)
}

// Parse builds a registry from file contents keyed by file name.
func Parse(files map[string][]byte) (*Registry, error) {
	r := &Registry{
		enterprises: make(map[string]*Enterprise),
		gateways:    make(map[gatewayKey]*Gateway),
		meterHomes:  make(map[string][]*Meter),
		meters:      make(map[meterKey]*Meter),
		stations:    make(map[string]*Gateway),
	}
	var errs []error
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	// Files parse on every core (a fleet of 2,000 enterprises takes
	// seconds on one), then join the registry in name order.
	type parsed struct {
		e   *Enterprise
		err error
	}
	out := make([]parsed, len(names))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(names)) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(names); i = int(next.Add(1)) - 1 {
				out[i].e, out[i].err = parseFile(names[i], files[names[i]])
			}
		})
	}
	wg.Wait()
	for i, name := range names {
		e, err := out[i].e, out[i].err
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := r.enterprises[e.ID]; dup {
			errs = append(errs, fmt.Errorf("%s: enterprise %q is already defined in %s", name, e.ID, prev.File))
			continue
		}
		r.enterprises[e.ID] = e
		r.Enterprises = append(r.Enterprises, e)
		for _, g := range e.Gateways {
			r.gateways[gatewayKey{e.ID, g.ID}] = g
			if g.Station == nil {
				continue
			}
			if prev, dup := r.stations[g.Station.MN]; dup {
				errs = append(errs, fmt.Errorf("%s: gateway %q: hj212 mn %q is already the station of gateway %q of enterprise %q (%s)", name, g.ID, g.Station.MN, prev.ID, prev.Enterprise.ID, prev.Enterprise.File))
				continue
			}
			r.stations[g.Station.MN] = g
		}
		for _, m := range e.Meters {
			r.meterHomes[m.ID] = append(r.meterHomes[m.ID], m)
			r.meters[meterKey{m.Enterprise.ID, m.ID}] = m
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortFunc(r.Enterprises, func(a, b *Enterprise) int { return strings.Compare(a.ID, b.ID) })
	return r, nil
}

func parseFile(name string, data []byte) (*Enterprise, error) {
	var f fileSchema
	doc, err := yamlfile.Decode(name, data, &f)
	if err != nil {
		return nil, err
	}
	var errs []error
	problem := func(path []any, format string, args ...any) {
		errs = append(errs, doc.Errorf(path, format, args...))
	}
	e := &Enterprise{
		ID: f.Enterprise.ID, Name: f.Enterprise.Name, NameZH: f.Enterprise.NameZH,
		Industry: f.Enterprise.Industry, Region: f.Enterprise.Region, File: name,
		USCC: f.Enterprise.USCC, DischargePermit: f.Enterprise.Permit,
	}
	if !ValidID(e.ID) {
		problem(yamlfile.P("enterprise", "id"), "enterprise id %q: want 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", e.ID)
	}
	if e.Name == "" {
		problem(yamlfile.P("enterprise"), "enterprise name is missing")
	}
	if e.USCC != "" {
		if err := CheckUSCC(e.USCC); err != nil {
			problem(yamlfile.P("enterprise", "uscc"), "enterprise %q: uscc: %v", e.ID, err)
		}
	}
	if e.DischargePermit != "" {
		uscc := e.USCC
		if CheckUSCC(uscc) != nil {
			uscc = "" // reported above; do not report it twice
		}
		if err := CheckDischargePermit(e.DischargePermit, uscc); err != nil {
			problem(yamlfile.P("enterprise", "discharge_permit"), "enterprise %q: discharge_permit: %v", e.ID, err)
		}
	}
	if len(f.Gateways) == 0 {
		problem(yamlfile.P("gateways"), "enterprise %q has no gateways", e.ID)
	}
	meters := make(map[string]*Meter)
	type pending struct {
		m    *Meter
		flow string
		path []any
	}
	var pairs []pending
	for gi, gs := range f.Gateways {
		g := &Gateway{ID: gs.ID, Enterprise: e, Description: gs.Description, meters: make(map[string]*Meter)}
		if !ValidID(g.ID) {
			problem(yamlfile.P("gateways", gi, "id"), "gateway id %q: want 1-64 letters, digits, '.', '_' or '-'", g.ID)
		}
		for _, prev := range e.Gateways {
			if prev.ID == g.ID {
				problem(yamlfile.P("gateways", gi, "id"), "gateway %q is defined twice", g.ID)
			}
		}
		if len(gs.Meters) == 0 {
			problem(yamlfile.P("gateways", gi), "gateway %q has no meters", g.ID)
		}
		if gs.HJ212 != nil {
			g.Station = buildStation(gs.HJ212, g.ID, func(key string) []any { return yamlfile.P("gateways", gi, "hj212", key) }, problem)
		}
		for mi, ms := range gs.Meters {
			at := func(key string) []any { return yamlfile.P("gateways", gi, "meters", mi, key) }
			written := func(key string) (string, bool) { return doc.Scalar(at(key)...) }
			m, flow := buildMeter(ms, at, written, problem)
			if m == nil {
				continue
			}
			m.Enterprise, m.Gateway = e, g
			if _, dup := meters[m.ID]; dup {
				problem(at("id"), "meter %q is defined twice in enterprise %q", m.ID, e.ID)
				continue
			}
			if m.HJ212 != nil {
				switch {
				case gs.HJ212 == nil:
					problem(at("hj212"), "meter %q takes HJ 212 values, but gateway %q declares no hj212 station", m.ID, g.ID)
				case g.Station != nil:
					if prev, dup := g.Station.sources[*m.HJ212]; dup {
						problem(at("hj212"), "meter %q: %s-%s of %s data already goes to meter %q", m.ID, m.HJ212.Code, m.HJ212.Field, HJ212DataName(m.HJ212.CN), prev.ID)
					} else {
						g.Station.sources[*m.HJ212] = m
					}
				}
			}
			meters[m.ID] = m
			g.meters[m.ID] = m
			g.Meters = append(g.Meters, m)
			e.Meters = append(e.Meters, m)
			if flow != "" {
				pairs = append(pairs, pending{m, flow, at("flow_meter")})
			}
		}
		if g.Station != nil && len(g.Station.sources) == 0 {
			problem(yamlfile.P("gateways", gi, "hj212"), "gateway %q: hj212 station %q maps no pollutant code to a meter (give meters an hj212: {code: ...})", g.ID, g.Station.MN)
		}
		e.Gateways = append(e.Gateways, g)
	}
	for _, p := range pairs {
		fm, ok := meters[p.flow]
		switch {
		case !ok:
			problem(p.path, "flow_meter %q of meter %q is not a meter of enterprise %q", p.flow, p.m.ID, e.ID)
		case !fm.Quantity.Extensive || fm.Quantity.Medium != p.m.Quantity.Medium:
			problem(p.path, "flow_meter %q measures %s; meter %q (%s in %s) needs a %s volume", p.flow, fm.Quantity.Name, p.m.ID, p.m.Quantity.Name, p.m.Quantity.Medium, p.m.Quantity.Medium)
		default:
			p.m.FlowMeter = fm
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return e, nil
}

// buildMeter converts and checks one meter entry, reporting each problem
// through report; it returns nil when there was any. written gives a key's
// value as the file writes it.
func buildMeter(ms meterSchema, at func(string) []any, written func(key string) (string, bool), report func(path []any, format string, args ...any)) (*Meter, string) {
	bad := false
	problem := func(key, format string, args ...any) {
		bad = true
		report(at(key), format, args...)
	}
	m := &Meter{ID: ms.ID, Unit: ms.Unit, Kind: Kind(ms.Kind), Scale: 1, MaxRate: ms.MaxRate, Workshop: ms.Workshop}
	if !ValidID(m.ID) {
		problem("id", "meter id %q: want 1-64 letters, digits, '.', '_' or '-'", m.ID)
	}
	q, ok := LookupQuantity(ms.Quantity)
	if !ok {
		names := make([]string, 0, len(quantities))
		for _, q := range Quantities() {
			names = append(names, q.Name)
		}
		problem("quantity", "meter %q: unknown quantity %q (known: %s)", m.ID, ms.Quantity, strings.Join(names, ", "))
	}
	m.Quantity = q
	if m.MaxRate == 0 && q != nil {
		m.MaxRate = q.Ceiling // zero for gauges
	}
	if ms.Scale != nil {
		m.Scale = *ms.Scale
		if !(m.Scale > 0) || math.IsInf(m.Scale, 0) {
			problem("scale", "meter %q: scale must be a positive number, got %v", m.ID, m.Scale)
		}
	}
	unitFactor := 1.0
	if q != nil {
		f, ok := q.Factor(ms.Unit)
		switch {
		case ms.Unit == "":
			problem("unit", "meter %q: unit is missing (%s takes %s)", m.ID, q.Name, strings.Join(q.Units(), ", "))
		case !ok:
			problem("unit", "meter %q: unit %q is not declared for %s (it takes %s)", m.ID, ms.Unit, q.Name, strings.Join(q.Units(), ", "))
		default:
			unitFactor = f
		}
	}
	m.Factor = m.Scale * unitFactor
	if m.Scale > 0 && !math.IsInf(m.Scale, 0) && (!(m.Factor > 0) || math.IsInf(m.Factor, 0)) {
		// Each number is fine, their product is not: a reading times an
		// infinite factor is +Inf, times a zero one always 0.
		problem("scale", "meter %q: scale %v with unit %s gives a factor of %v to the canonical unit: out of range", m.ID, m.Scale, ms.Unit, m.Factor)
	}
	switch m.Kind {
	case Counter, Delta:
		if q != nil && !q.Extensive {
			problem("kind", "meter %q: %s is a %s; a %s cannot be a %s (use gauge)", m.ID, q.Name, "concentration or level", q.Name, m.Kind)
		}
	case Gauge:
		if q != nil && q.Extensive {
			problem("kind", "meter %q: %s is an amount; meter it with a counter or delta, not a gauge", m.ID, q.Name)
		}
	default:
		problem("kind", "meter %q: kind %q: want counter, delta or gauge", m.ID, ms.Kind)
	}
	switch {
	case ms.Rollover != 0 && m.Kind != Counter:
		problem("rollover", "meter %q: rollover applies to counters only", m.ID)
	case ms.Resolution != nil && ms.Rollover == 0:
		problem("resolution", "meter %q: resolution is the step of a register that rolls over; give its rollover too", m.ID)
	case ms.Rollover != 0:
		text, _ := written("rollover")
		rollover, resolution, key, err := registerRange(ms.Rollover, ms.Resolution, text)
		if err != nil {
			problem(key, "meter %q: %v", m.ID, err)
			break
		}
		m.Rollover, m.Resolution = rollover*m.Factor, resolution*m.Factor
		if math.IsInf(m.Rollover, 0) || !(m.Resolution > 0) {
			problem("rollover", "meter %q: rollover %v %s with resolution %v is out of range in the canonical unit", m.ID, ms.Rollover, ms.Unit, resolution)
		}
	}
	m.MaxRegister = m.Rollover
	switch {
	case ms.MaxRegister == 0:
	case m.Kind != Counter:
		problem("max_register", "meter %q: max_register applies to counters only", m.ID)
	case ms.Rollover != 0:
		problem("max_register", "meter %q: give rollover or max_register, not both: a register that rolls over shows at most its rollover", m.ID)
	case !(ms.MaxRegister > 0) || math.IsInf(ms.MaxRegister, 0):
		problem("max_register", "meter %q: max_register must be a positive number, got %v", m.ID, ms.MaxRegister)
	case math.IsInf(ms.MaxRegister*m.Factor, 0):
		problem("max_register", "meter %q: max_register %v %s is out of range in the canonical unit", m.ID, ms.MaxRegister, ms.Unit)
	default:
		m.MaxRegister = ms.MaxRegister * m.Factor
	}
	if ms.MaxRate < 0 || math.IsNaN(ms.MaxRate) || math.IsInf(ms.MaxRate, 0) {
		problem("max_rate", "meter %q: max_rate must be zero or positive, got %v", m.ID, ms.MaxRate)
	}
	if ms.MaxRate != 0 && m.Kind == Gauge {
		problem("max_rate", "meter %q: max_rate applies to counters and deltas only", m.ID)
	}
	if ms.FlowMeter != "" && (q == nil || q.Extensive || q.Medium == "") {
		problem("flow_meter", "meter %q: only a concentration in water or gas pairs with a flow meter", m.ID)
	}
	for i, r := range ms.Replacements {
		path := append(at("replacements"), i)
		if m.Kind != Counter {
			bad = true
			report(path, "meter %q: replacements apply to counters only", m.ID)
			break
		}
		if r.At.IsZero() || r.OldFinal == nil || r.NewInitial == nil {
			bad = true
			report(path, "meter %q: a replacement needs at, old_final and new_initial", m.ID)
			continue
		}
		if len(m.Replacements) > 0 && !r.At.After(m.Replacements[len(m.Replacements)-1].At) {
			bad = true
			report(path, "meter %q: replacements must be in time order", m.ID)
		}
		rep := Replacement{At: r.At, OldFinal: *r.OldFinal * m.Factor, NewInitial: *r.NewInitial * m.Factor}
		if !(*r.OldFinal >= 0) || !(*r.NewInitial >= 0) || math.IsInf(rep.OldFinal, 0) || math.IsInf(rep.NewInitial, 0) {
			// Registers: a NaN or negative one made every delta across
			// the replacement NaN or wrong.
			bad = true
			report(path, "meter %q: old_final %v and new_initial %v must be registers: finite, not negative", m.ID, *r.OldFinal, *r.NewInitial)
		} else if m.Rollover > 0 && (rep.OldFinal > m.Rollover || rep.NewInitial > m.Rollover) {
			// Readings above the rollover are refused as impossible; so
			// is a declared register above it.
			bad = true
			report(path, "meter %q: old_final %s and new_initial %s must be registers the meter can show: at most its rollover %s", m.ID, num(*r.OldFinal), num(*r.NewInitial), num(ms.Rollover))
		} else if ms.Rollover == 0 && m.MaxRegister > 0 && (rep.OldFinal > m.MaxRegister || rep.NewInitial > m.MaxRegister) {
			bad = true
			report(path, "meter %q: old_final %s and new_initial %s must be registers the meter can show: at most its max_register %s", m.ID, num(*r.OldFinal), num(*r.NewInitial), num(ms.MaxRegister))
		}
		m.Replacements = append(m.Replacements, rep)
	}
	if ms.HJ212 != nil {
		if src, ok := buildSource(ms.HJ212, m, problem); ok {
			m.HJ212 = &src
		}
	}
	if ms.PermitLimit != nil {
		switch l := *ms.PermitLimit * m.Factor; {
		case m.Kind != Gauge:
			problem("permit_limit", "meter %q: permit_limit is a concentration's limit: it applies to gauges only", m.ID)
		case !(*ms.PermitLimit > 0) || math.IsInf(l, 0):
			problem("permit_limit", "meter %q: permit_limit must be a positive number in %s, got %v", m.ID, ms.Unit, *ms.PermitLimit)
		default:
			m.PermitLimit = l
		}
	}
	if bad {
		return nil, ""
	}
	return m, ms.FlowMeter
}

// maxRegisterSteps bounds rollover/resolution: a float64 register of up to
// 10^12 steps is exact to far below a step (about 10^-4 of one), which the
// normaliser relies on to count a wrap in whole steps.
const maxRegisterSteps = 1e12

// registerRange checks a counter's rollover (the largest value its register
// shows) and its resolution, both in raw units, and returns them; with no
// resolution given it is read from the decimals of text, the rollover as
// the file writes it. key names the field a problem is reported at.
func registerRange(rollover float64, resolution *float64, text string) (roll, res float64, key string, err error) {
	if !(rollover > 0) || math.IsInf(rollover, 0) {
		return 0, 0, "rollover", fmt.Errorf("rollover must be positive, got %s", num(rollover))
	}
	if resolution != nil {
		res, key = *resolution, "resolution"
		if !(res > 0) || math.IsInf(res, 0) {
			return 0, 0, key, fmt.Errorf("resolution must be a positive number (the smallest step the register shows), got %s", num(res))
		}
	} else {
		key = "rollover"
		var ok bool
		if res, ok = resolutionOf(text); !ok {
			if text == "" {
				text = num(rollover) // not a plain scalar: from a merge key
			}
			return 0, 0, key, fmt.Errorf("rollover %s: cannot tell the register's resolution from how it is written; write the largest value as the register shows it (e.g. 99999 or 999999.9), or give resolution", text)
		}
	}
	steps := rollover / res
	n := math.Round(steps)
	switch {
	case n < 1 || math.Abs(steps-n) > 1e-6+1e-15*n:
		return 0, 0, key, fmt.Errorf("rollover %s is not a whole number of steps of resolution %s: rollover is the largest value the register shows, resolution the smallest step it shows", num(rollover), num(res))
	case n == 1:
		return 0, 0, key, fmt.Errorf("rollover %s is one step of resolution %s: a register that shows only 0 and %s counts nothing", num(rollover), num(res), num(rollover))
	case n > maxRegisterSteps:
		return 0, 0, key, fmt.Errorf("rollover %s is %.3g steps of resolution %s: at most %.0g are counted exactly", num(rollover), n, num(res), maxRegisterSteps)
	case powerOf(int64(n), 10) || powerOf(int64(n), 2):
		// A register shows one step less than where it wraps: 99999,
		// 65535. A power of ten or two is the wrap itself, as a file
		// written for "the value at which the counter wraps" gives it.
		return 0, 0, "rollover", fmt.Errorf("rollover %s is where the register wraps, not the largest value it shows (99999 for five digits, 65535 for 16 bits): did you mean %s?", num(rollover), num(rollover-res))
	}
	return rollover, res, key, nil
}

// writtenRE is a number written in decimals (YAML allows '_' between
// digits: 99_999.9); writtenWholeRE a whole number in another base
// (0xFFFF, 0o177777).
var (
	writtenRE      = regexp.MustCompile(`^\+?[0-9][0-9_]*(?:\.([0-9_]*))?$`)
	writtenWholeRE = regexp.MustCompile(`^\+?(?:0x[0-9A-Fa-f_]+|0o[0-7_]+|0b[01_]+)$`)
)

// resolutionOf returns one unit of the last decimal a register value is
// written with: 1 for 99999 or 0xFFFF, 0.1 for 999999.9, 0.01 for 999.90.
// It fails for text that does not say, such as 1e6.
func resolutionOf(text string) (float64, bool) {
	if m := writtenRE.FindStringSubmatch(text); m != nil {
		return math.Pow10(-len(strings.ReplaceAll(m[1], "_", ""))), true
	}
	if writtenWholeRE.MatchString(text) {
		return 1, true
	}
	return 0, false
}

// powerOf reports whether n is a power (0 included) of base.
func powerOf(n, base int64) bool {
	if n < 1 {
		return false
	}
	for n%base == 0 {
		n /= base
	}
	return n == 1
}

// num writes x in plain decimals where that is readable (1000000, not
// 1e+06), as a register shows it.
func num(x float64) string {
	if a := math.Abs(x); a >= 1e-6 && a < 1e21 {
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return fmt.Sprint(x)
}

// Only returns a view of r holding the enterprises keep accepts, with
// their gateways and meters: what one shard of a sharded fleet receives,
// normalises and scores. r is not changed; the two share their
// enterprises, which are immutable.
//
// MetersNamed and Station still answer for every enterprise of r: they
// tell a meter or an HJ 212 logger registered elsewhere from an unknown
// one, and a reading naming another shard's meter is spoofed, as it is
// on a single replica, not unknown.
func (r *Registry) Only(keep func(enterpriseID string) bool) *Registry {
	v := &Registry{
		enterprises: make(map[string]*Enterprise),
		gateways:    make(map[gatewayKey]*Gateway),
		meterHomes:  r.meterHomes,
		meters:      make(map[meterKey]*Meter),
		stations:    r.stations,
	}
	for _, e := range r.Enterprises {
		if !keep(e.ID) {
			continue
		}
		v.Enterprises = append(v.Enterprises, e)
		v.enterprises[e.ID] = e
		for _, g := range e.Gateways {
			v.gateways[gatewayKey{e.ID, g.ID}] = g
		}
		for _, m := range e.Meters {
			v.meters[meterKey{e.ID, m.ID}] = m
		}
	}
	return v
}
