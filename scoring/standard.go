package scoring

import (
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cleanprod/cleanprod/internal/yamlfile"
	"github.com/cleanprod/cleanprod/registry"
)

// Standard is a loaded, validated indicator standard: indicator groups and
// indicators with weights, benchmarks and formulas, the conversion factors
// and limits formulas use, and the windows indicators are computed over.
// It is immutable once loaded and safe for concurrent use.
type Standard struct {
	ID     string
	NameZH string
	NameEN string
	// Industries are the registry industries (Enterprise.Industry) the
	// standard grades; empty means every enterprise.
	Industries []string
	File       string
	Src        []string
	Sources    map[string]string // source tag -> citation

	// LevelIRequiresNonRestrictiveII is the newer variant of the Level I
	// rule: every non-restrictive indicator must also meet Level II.
	LevelIRequiresNonRestrictiveII bool

	// UTCOffset places local days (for daily buckets and daily means) at
	// 00:00 local time; +8h for China.
	UTCOffset time.Duration
	// MinCoverage is the default share of window buckets an input series
	// needs data in for an indicator to be graded.
	MinCoverage float64
	Windows     []Window

	Groups     []*Group
	Indicators []*Indicator // every indicator, in file order; Indicator.Index is the position
	Factors    []*Factor
	Limits     []*Limit
	// Series are every input the formulas read; formulas refer to them by
	// index.
	Series []Series

	indicators  map[string]*Indicator
	seriesIdx   map[Series]int
	seriesNames []string
	// absentSeries maps what an Absent declaration may name to the amount
	// series it covers: q@w to that series, q to q and every q@w.
	absentSeries map[string][]int
	consts       []*constantDef
	constIDs     map[string]int
	totals       []totalSpec // the window totals the series provide (totals.go)
}

// Window is a rolling window indicators are computed over, in buckets.
type Window struct {
	Name   string // e.g. "live" (30 days) or "official" (12 months)
	Length time.Duration
	Bucket time.Duration
	Src    []string
}

// Buckets returns the number of buckets in the window.
func (w Window) Buckets() int { return int(w.Length / w.Bucket) }

// Group is a first-level indicator class with its weight.
type Group struct {
	ID         string
	NameZH     string
	NameEN     string
	Weight     float64
	Src        []string
	Indicators []*Indicator

	weightBP int64
}

// Indicator is a second-level indicator.
type Indicator struct {
	ID        string
	NameZH    string
	NameEN    string
	Unit      string
	Group     *Group
	Index     int // position in Standard.Indicators
	Kind      Kind
	Direction Direction // quantitative only
	Formula   string    // "" for a declared indicator
	Optional  []string  // formula inputs an enterprise may lack a meter for
	// AppliesIfMetered lists amounts the indicator only applies with: a
	// parts supplier that makes no vehicles has no per-vehicle indicators.
	// A missing meter does not make the indicator not applicable (it has
	// insufficient data); a declaration that the amount is absent does.
	AppliesIfMetered []string
	MinCoverage      float64
	Basis            string // "generation" (before treatment), "emission" or ""
	Weight           float64
	Restrictive      bool
	// Benchmarks are the Level I, II and III values of a quantitative
	// indicator; Descriptions the level texts of a qualitative one.
	Benchmarks   [3]float64
	Descriptions [3]string
	// Range is what a value of a quantitative indicator can be, for
	// declarations: the YAML's range, else [0, 100] for a unit of "%" and
	// [0, +Inf) otherwise.
	Range [2]float64
	Src   []string

	weightBP  int64
	expr      *expr
	inputs    []indicatorInput
	regional  []int // constants that depend on the enterprise (grid CO2)
	appliesIf []int // series whose declared absence makes the indicator not applicable
	// compliance is set when the formula judges concentrations against
	// limits: a value below 100 is an exceedance.
	compliance bool
}

type indicatorInput struct {
	series   int
	optional bool
}

// RangeText describes Range for messages: "0 to 100 %" or "0 or more
// kgce/vehicle".
func (ind *Indicator) RangeText() string {
	lo, hi := strconv.FormatFloat(ind.Range[0], 'g', -1, 64), strconv.FormatFloat(ind.Range[1], 'g', -1, 64)
	switch {
	case math.IsInf(ind.Range[1], 1):
		return lo + " or more " + ind.Unit
	case math.IsInf(ind.Range[0], -1):
		return hi + " or less " + ind.Unit
	}
	return lo + " to " + hi + " " + ind.Unit
}

// Gate reports whether a qualitative indicator is a yes/no requirement
// (every level's text is "yes", as for a permit held): it is either met
// (Level I) or not (below Level III), never II or III.
func (ind *Indicator) Gate() bool {
	if ind.Kind != Qualitative {
		return false
	}
	for _, d := range ind.Descriptions {
		if !strings.EqualFold(strings.TrimSpace(d), "yes") {
			return false
		}
	}
	return true
}

// AllowedLevels returns the levels a declaration of a qualitative
// indicator may give.
func (ind *Indicator) AllowedLevels() []Level {
	if ind.Gate() {
		return []Level{LevelI, BelowIII}
	}
	return []Level{LevelI, LevelII, LevelIII, BelowIII}
}

// Metered reports whether the indicator's value comes from a formula over
// meter readings (rather than from a declaration).
func (ind *Indicator) Metered() bool { return ind.expr != nil }

// Compliance reports whether the indicator is a compliance rate of
// concentrations against limits (a value below 100 is an exceedance).
func (ind *Indicator) Compliance() bool { return ind.compliance }

// Benchmark returns the benchmark of level l (LevelI, LevelII or LevelIII).
func (ind *Indicator) Benchmark(l Level) float64 { return ind.Benchmarks[l-1] }

// EffectiveWeight returns the indicator's share of the whole index with no
// indicator renormalised out: group weight x indicator weight.
func (ind *Indicator) EffectiveWeight() float64 { return ind.Group.Weight * ind.Weight }

// LevelOf returns the best level whose benchmark v meets (BelowIII if none).
// A relative tolerance of 1e-9 absorbs float noise in formula results, so a
// value that equals a benchmark meets it.
func (ind *Indicator) LevelOf(v float64) Level {
	for _, l := range gradedLevels {
		if meetsBenchmark(ind.Direction, v, ind.Benchmarks[l-1]) {
			return l
		}
	}
	return BelowIII
}

func meetsBenchmark(d Direction, v, b float64) bool {
	tol := 1e-9 * math.Max(1, math.Abs(b))
	if d == HigherBetter {
		return v >= b-tol
	}
	return v <= b+tol
}

// Factor is a conversion or emission factor: one value, or values by region
// and year (grid CO2) with a fallback region.
type Factor struct {
	ID       string // "group.quantity", e.g. "kgce.electricity"
	Unit     string // e.g. "kgce/kWh"; the denominator is the quantity's canonical unit
	Value    float64
	ByRegion []RegionalValue // sorted by region, then year
	Fallback string          // region used when the enterprise's region has no value
	Src      []string
	Note     string
}

// RegionalValue is a factor's value for one region and year.
type RegionalValue struct {
	Region string
	Year   int
	Value  float64
	Src    []string
}

// Regional reports whether the factor depends on the enterprise's region.
func (f *Factor) Regional() bool { return len(f.ByRegion) > 0 }

// Resolve returns the factor's value for an enterprise in region at year:
// the region's value of the latest year not after year (or its earliest, if
// all are later); without any for region, the fallback region's, with a
// note saying so.
func (f *Factor) Resolve(region string, year int) (v float64, note string) {
	if !f.Regional() {
		return f.Value, ""
	}
	if rv, ok := f.pick(region, year); ok {
		return rv.Value, ""
	}
	rv, _ := f.pick(f.Fallback, year)
	who := region
	if who == "" {
		who = "(none)"
	}
	return rv.Value, fmt.Sprintf("%s: no value for region %s; %s %d (%g) used", f.ID, who, rv.Region, rv.Year, rv.Value)
}

func (f *Factor) pick(region string, year int) (RegionalValue, bool) {
	var best RegionalValue
	found := false
	for _, rv := range f.ByRegion {
		if rv.Region != region {
			continue
		}
		switch {
		case !found:
			best, found = rv, true
		case rv.Year <= year && (best.Year > year || rv.Year > best.Year):
			best = rv
		case rv.Year > year && best.Year > year && rv.Year < best.Year:
			best = rv
		}
	}
	return best, found
}

// Limit is a regulatory concentration limit that compliance formulas use.
type Limit struct {
	ID       string // referenced as limit.<id>
	Quantity string
	Unit     string
	Value    float64
	Src      []string
	Note     string
}

type constantDef struct {
	id     string
	value  float64
	factor *Factor // nil for limits
	limit  *Limit
}

// Indicator returns the indicator with the given id.
func (s *Standard) Indicator(id string) (*Indicator, bool) {
	ind, ok := s.indicators[id]
	return ind, ok
}

// Estimated returns the ids of the indicators whose benchmarks and weight
// are engineering estimates (src includes "estimate") rather than figures
// from a source, in file order. While there are any, levels graded against
// the standard are provisional.
func (s *Standard) Estimated() []string {
	var out []string
	for _, ind := range s.Indicators {
		if slices.Contains(ind.Src, "estimate") {
			out = append(out, ind.ID)
		}
	}
	return out
}

// Window returns the window with the given name.
func (s *Standard) Window(name string) (Window, int, bool) {
	for i, w := range s.Windows {
		if w.Name == name {
			return w, i, true
		}
	}
	return Window{}, -1, false
}

// constants returns the value of every factor and limit for an enterprise
// in region at year, and per constant a note when a regional factor fell
// back ("" otherwise).
func (s *Standard) constants(region string, year int) (vals []float64, notes []string) {
	vals = make([]float64, len(s.consts))
	notes = make([]string, len(s.consts))
	for i, c := range s.consts {
		vals[i] = c.value
		if c.factor != nil && c.factor.Regional() {
			vals[i], notes[i] = c.factor.Resolve(region, year)
		}
	}
	return vals, notes
}

// symbols implementation used while compiling formulas.

func (s *Standard) series(sr Series) int {
	if i, ok := s.seriesIdx[sr]; ok {
		return i
	}
	s.Series = append(s.Series, sr)
	s.seriesIdx[sr] = len(s.Series) - 1
	return len(s.Series) - 1
}

func (s *Standard) constant(id string) (int, float64, bool, error) {
	i, ok := s.constIDs[id]
	if !ok {
		var known []string
		for _, c := range s.consts {
			known = append(known, c.id)
		}
		return 0, 0, false, fmt.Errorf("unknown factor or limit %q (known: %s)", id, strings.Join(known, ", "))
	}
	c := s.consts[i]
	return i, c.value, c.factor == nil || !c.factor.Regional(), nil
}

func (s *Standard) limitQuantity(id string) string {
	if i, ok := s.constIDs[id]; ok && s.consts[i].limit != nil {
		return s.consts[i].limit.Quantity
	}
	return ""
}

// File schema.

type standardFile struct {
	SchemaVersion int               `yaml:"schema_version"`
	ID            string            `yaml:"id"`
	NameZH        string            `yaml:"name_zh"`
	NameEN        string            `yaml:"name_en"`
	Industries    []string          `yaml:"industries"`
	Note          string            `yaml:"note"`
	Src           any               `yaml:"src"`
	Sources       map[string]string `yaml:"sources"`
	Method        struct {
		LevelIRequiresNonRestrictiveII bool   `yaml:"level_i_requires_nonrestrictive_ii"`
		Note                           string `yaml:"note"`
		Src                            any    `yaml:"src"`
	} `yaml:"method"`
	Data struct {
		UTCOffset   string   `yaml:"utc_offset"`
		MinCoverage *float64 `yaml:"min_coverage"`
		Src         any      `yaml:"src"`
		Note        string   `yaml:"note"`
	} `yaml:"data"`
	Windows []struct {
		Name   string `yaml:"name"`
		Length string `yaml:"length"`
		Bucket string `yaml:"bucket"`
		Src    any    `yaml:"src"`
		Note   string `yaml:"note"`
	} `yaml:"windows"`
	Factors []struct {
		ID       string   `yaml:"id"`
		Value    *float64 `yaml:"value"`
		Unit     string   `yaml:"unit"`
		Src      any      `yaml:"src"`
		Note     string   `yaml:"note"`
		ByRegion []struct {
			Region string   `yaml:"region"`
			Year   int      `yaml:"year"`
			Value  *float64 `yaml:"value"`
			Src    any      `yaml:"src"`
			Note   string   `yaml:"note"`
		} `yaml:"by_region"`
		Fallback string `yaml:"fallback"`
	} `yaml:"factors"`
	Limits []struct {
		ID       string   `yaml:"id"`
		Quantity string   `yaml:"quantity"`
		Value    *float64 `yaml:"value"`
		Unit     string   `yaml:"unit"`
		Src      any      `yaml:"src"`
		Note     string   `yaml:"note"`
	} `yaml:"limits"`
	Groups []struct {
		ID         string          `yaml:"id"`
		NameZH     string          `yaml:"name_zh"`
		NameEN     string          `yaml:"name_en"`
		Weight     *float64        `yaml:"weight"`
		Src        any             `yaml:"src"`
		Note       string          `yaml:"note"`
		Indicators []indicatorFile `yaml:"indicators"`
	} `yaml:"groups"`
}

type indicatorFile struct {
	ID          string    `yaml:"id"`
	NameZH      string    `yaml:"name_zh"`
	NameEN      string    `yaml:"name_en"`
	Type        string    `yaml:"type"`
	Unit        string    `yaml:"unit"`
	Direction   string    `yaml:"direction"`
	Formula     string    `yaml:"formula"`
	Optional    []string  `yaml:"optional"`
	AppliesIf   []string  `yaml:"applies_if_metered"`
	MinCoverage *float64  `yaml:"min_coverage"`
	Basis       string    `yaml:"basis"`
	Weight      *float64  `yaml:"weight"`
	Restrictive bool      `yaml:"restrictive"`
	Range       []float64 `yaml:"range"`
	Benchmarks  struct {
		I   any `yaml:"I"`
		II  any `yaml:"II"`
		III any `yaml:"III"`
	} `yaml:"benchmarks"`
	Src  any    `yaml:"src"`
	Note string `yaml:"note"`
}

// LoadStandard reads and validates the standard at path. Every problem is
// returned at once (errors.Join), each as "file:line: message".
func LoadStandard(path string) (*Standard, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load standard: %w", err)
	}
	return ParseStandard(path, data)
}

// ParseStandard validates a standard from data named name in messages.
func ParseStandard(name string, data []byte) (*Standard, error) {
	var f standardFile
	doc, err := yamlfile.Decode(name, data, &f)
	if err != nil {
		return nil, err
	}
	l := &stdLoader{doc: doc, f: &f, s: &Standard{
		File:       name,
		indicators: make(map[string]*Indicator),
		seriesIdx:  make(map[Series]int),
		constIDs:   make(map[string]int),
	}}
	l.load()
	if err := errors.Join(l.errs...); err != nil {
		return nil, err
	}
	l.s.absentSeries = make(map[string][]int)
	for i, sr := range l.s.Series {
		l.s.seriesNames = append(l.s.seriesNames, sr.String())
		if sr.Kind == SeriesSum {
			l.s.absentSeries[sr.Quantity] = append(l.s.absentSeries[sr.Quantity], i)
			if sr.Workshop != "" {
				l.s.absentSeries[sr.String()] = append(l.s.absentSeries[sr.String()], i)
			}
		}
	}
	l.s.totals = l.s.totalSpecs()
	return l.s, nil
}

type stdLoader struct {
	doc  *yamlfile.Doc
	f    *standardFile
	s    *Standard
	errs []error
}

func (l *stdLoader) problem(path []any, format string, args ...any) {
	l.errs = append(l.errs, l.doc.Errorf(path, format, args...))
}

var (
	idRE    = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	tagRE   = regexp.MustCompile(`^S[0-9]+(-[A-Z]+)?$`)
	identRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// srcTags normalises a src value (a tag or a list of tags) and checks every
// tag: "estimate", "unverified", or a source tag defined under sources.
func (l *stdLoader) srcTags(path []any, v any, what string) []string {
	tags, err := parseSrc(v)
	if err != nil {
		l.problem(path, "%s: %v", what, err)
		return nil
	}
	if len(tags) == 0 {
		l.problem(path, "%s: src is missing (a source tag such as S17, or estimate or unverified)", what)
		return nil
	}
	for _, t := range tags {
		switch {
		case t == "estimate" || t == "unverified":
		case !tagRE.MatchString(t):
			l.problem(path, "%s: src %q: want a tag such as S17, or estimate or unverified", what, t)
		case l.f.Sources != nil && l.f.Sources[t] == "":
			l.problem(path, "%s: src %q is not listed under sources", what, t)
		}
	}
	return tags
}

func parseSrc(v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("src entries must be strings, got %v", e)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("src must be a tag or a list of tags, got %v", v)
}

// ParseDuration parses a Go duration or a whole number of days ("30d").
func ParseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil {
			return 0, fmt.Errorf("duration %q: want e.g. 30d or 720h", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want e.g. 30d or 720h", s)
	}
	return d, nil
}

// weightBP converts a weight to integer basis points (1 = 10000), which
// must be exact.
func (l *stdLoader) weightBP(path []any, w *float64, what string) (float64, int64) {
	if w == nil {
		l.problem(path, "%s: weight is missing", what)
		return 0, 0
	}
	v := *w
	bp := math.Round(v * 10000)
	switch {
	case !(v > 0) || v > 1 || math.IsInf(v, 0):
		l.problem(path, "%s: weight %v: want a number in (0, 1]", what, v)
		return 0, 0
	case math.Abs(v*10000-bp) > 1e-6:
		l.problem(path, "%s: weight %v: want a multiple of 0.0001 (weights are summed in basis points)", what, v)
		return 0, 0
	}
	return v, int64(bp)
}

func (l *stdLoader) load() {
	f, s := l.f, l.s
	if f.SchemaVersion != 1 {
		l.problem(yamlfile.P("schema_version"), "schema_version %d: want 1", f.SchemaVersion)
	}
	s.ID, s.NameZH, s.NameEN, s.Industries, s.Sources = f.ID, f.NameZH, f.NameEN, f.Industries, f.Sources
	if !idRE.MatchString(strings.ReplaceAll(s.ID, "-", "_")) {
		l.problem(yamlfile.P("id"), "standard id %q: want lower-case letters, digits, '-' or '_'", s.ID)
	}
	if s.NameZH == "" || s.NameEN == "" {
		l.problem(yamlfile.P("id"), "standard %q: name_zh and name_en are required", s.ID)
	}
	for tag, cite := range f.Sources {
		if !tagRE.MatchString(tag) || strings.TrimSpace(cite) == "" {
			l.problem(yamlfile.P("sources", tag), "source %q: want a tag such as S17 with a citation", tag)
		}
	}
	s.Src = l.srcTags(yamlfile.P("src"), f.Src, "standard")
	l.srcTags(yamlfile.P("method"), f.Method.Src, "method")
	s.LevelIRequiresNonRestrictiveII = f.Method.LevelIRequiresNonRestrictiveII
	l.loadData()
	l.loadConstants()
	l.loadGroups()
}

func (l *stdLoader) loadData() {
	f, s := l.f, l.s
	l.srcTags(yamlfile.P("data"), f.Data.Src, "data")
	if f.Data.UTCOffset != "" {
		d, err := time.ParseDuration(f.Data.UTCOffset)
		if err != nil || d < -12*time.Hour || d > 14*time.Hour || d%time.Minute != 0 {
			l.problem(yamlfile.P("data", "utc_offset"), "utc_offset %q: want a duration between -12h and 14h, e.g. 8h", f.Data.UTCOffset)
		}
		s.UTCOffset = d
	}
	s.MinCoverage = 0.8
	if f.Data.MinCoverage != nil {
		s.MinCoverage = *f.Data.MinCoverage
		if !(s.MinCoverage >= 0 && s.MinCoverage <= 1) {
			l.problem(yamlfile.P("data", "min_coverage"), "min_coverage %v: want a fraction in [0, 1]", s.MinCoverage)
		}
	}
	if len(f.Windows) == 0 {
		l.problem(yamlfile.P("windows"), "no windows: want at least one, e.g. {name: live, length: 30d, bucket: 1h}")
	}
	for i, wf := range f.Windows {
		at := func(k string) []any { return yamlfile.P("windows", i, k) }
		w := Window{Name: wf.Name}
		if !idRE.MatchString(w.Name) {
			l.problem(at("name"), "window name %q: want lower-case letters, digits and '_'", w.Name)
		}
		if _, _, dup := s.Window(w.Name); dup {
			l.problem(at("name"), "window %q is defined twice", w.Name)
		}
		var err error
		if w.Length, err = ParseDuration(wf.Length); err != nil {
			l.problem(at("length"), "window %q: length: %v", w.Name, err)
		}
		if w.Bucket, err = ParseDuration(wf.Bucket); err != nil {
			l.problem(at("bucket"), "window %q: bucket: %v", w.Name, err)
		}
		w.Src = l.srcTags(at("name"), wf.Src, "window "+w.Name)
		switch {
		case w.Length <= 0 || w.Bucket <= 0:
			l.problem(at("length"), "window %q: length and bucket must be positive", w.Name)
			continue
		case w.Bucket < time.Minute:
			l.problem(at("bucket"), "window %q: bucket %v: want at least 1m", w.Name, w.Bucket)
		case w.Length%w.Bucket != 0:
			l.problem(at("length"), "window %q: length %v is not a whole number of %v buckets", w.Name, w.Length, w.Bucket)
		case w.Length/w.Bucket > 100_000:
			l.problem(at("length"), "window %q: %d buckets: want at most 100000", w.Name, w.Length/w.Bucket)
		case (24*time.Hour)%w.Bucket != 0 && w.Bucket%(24*time.Hour) != 0:
			l.problem(at("bucket"), "window %q: bucket %v: want a divisor or multiple of 24h", w.Name, w.Bucket)
		}
		s.Windows = append(s.Windows, w)
	}
	if fine := s.finestBucket(); fine > 0 {
		for i, w := range s.Windows {
			if w.Bucket%fine != 0 {
				l.problem(yamlfile.P("windows", i, "bucket"), "window %q: bucket %v is not a multiple of the finest bucket %v (the store is read back in the finest bucket)", w.Name, w.Bucket, fine)
			}
		}
		if s.UTCOffset%fine != 0 {
			l.problem(yamlfile.P("data", "utc_offset"), "utc_offset %v is not a multiple of the finest bucket %v", s.UTCOffset, fine)
		}
	}
}

// finestBucket returns the smallest window bucket (0 without windows).
func (s *Standard) finestBucket() time.Duration {
	var fine time.Duration
	for _, w := range s.Windows {
		if w.Bucket > 0 && (fine == 0 || w.Bucket < fine) {
			fine = w.Bucket
		}
	}
	return fine
}

func (l *stdLoader) loadConstants() {
	f, s := l.f, l.s
	for i, ff := range f.Factors {
		at := func(k string) []any { return yamlfile.P("factors", i, k) }
		fa := &Factor{ID: ff.ID, Unit: ff.Unit, Fallback: ff.Fallback, Note: ff.Note}
		group, qname, ok := strings.Cut(ff.ID, ".")
		if !ok || !identRE.MatchString(group) || group == "limit" {
			l.problem(at("id"), "factor id %q: want group.quantity, e.g. kgce.electricity (group is not \"limit\")", ff.ID)
			continue
		}
		if _, dup := s.constIDs[ff.ID]; dup {
			l.problem(at("id"), "factor %q is defined twice", ff.ID)
			continue
		}
		q, ok := registry.LookupQuantity(qname)
		switch {
		case !ok:
			l.problem(at("id"), "factor %q: unknown quantity %q%s", ff.ID, qname, suggest(qname))
		case !q.Extensive:
			l.problem(at("id"), "factor %q: %s is not an amount", ff.ID, qname)
		default:
			num, den, ok := strings.Cut(ff.Unit, "/")
			if !ok || num == "" || den != q.Unit {
				l.problem(at("unit"), "factor %q: unit %q: want <unit>/%s (per canonical unit of %s)", ff.ID, ff.Unit, q.Unit, qname)
			}
		}
		if (ff.Value == nil) == (len(ff.ByRegion) == 0) {
			l.problem(at("id"), "factor %q: give either value or by_region", ff.ID)
			continue
		}
		if ff.Value != nil {
			fa.Value = *ff.Value
			if !(fa.Value >= 0) || math.IsInf(fa.Value, 0) {
				l.problem(at("value"), "factor %q: value %v: want a finite number >= 0", ff.ID, fa.Value)
			}
			fa.Src = l.srcTags(at("id"), ff.Src, "factor "+ff.ID)
			if ff.Fallback != "" {
				l.problem(at("fallback"), "factor %q: fallback applies to by_region only", ff.ID)
			}
		} else {
			if ff.Src != nil {
				fa.Src = l.srcTags(at("id"), ff.Src, "factor "+ff.ID)
			}
			seen := map[[2]string]bool{}
			for j, rv := range ff.ByRegion {
				rat := func(k string) []any { return yamlfile.P("factors", i, "by_region", j, k) }
				v := RegionalValue{Region: rv.Region, Year: rv.Year}
				if !identRE.MatchString(v.Region) {
					l.problem(rat("region"), "factor %q: region %q: want lower-case letters, digits and '_'", ff.ID, v.Region)
				}
				if v.Year < 1990 || v.Year > 2100 {
					l.problem(rat("year"), "factor %q: year %d: want 1990-2100", ff.ID, v.Year)
				}
				key := [2]string{v.Region, strconv.Itoa(v.Year)}
				if seen[key] {
					l.problem(rat("region"), "factor %q: %s %d is given twice", ff.ID, v.Region, v.Year)
				}
				seen[key] = true
				if rv.Value == nil || !(*rv.Value >= 0) || math.IsInf(*rv.Value, 0) {
					l.problem(rat("value"), "factor %q: %s %d: value: want a finite number >= 0", ff.ID, v.Region, v.Year)
				} else {
					v.Value = *rv.Value
				}
				v.Src = l.srcTags(rat("region"), rv.Src, fmt.Sprintf("factor %s %s %d", ff.ID, v.Region, v.Year))
				fa.ByRegion = append(fa.ByRegion, v)
			}
			slices.SortFunc(fa.ByRegion, func(a, b RegionalValue) int {
				if c := strings.Compare(a.Region, b.Region); c != 0 {
					return c
				}
				return a.Year - b.Year
			})
			if _, ok := fa.pick(ff.Fallback, 0); !ok {
				l.problem(at("fallback"), "factor %q: fallback %q: want a region listed under by_region (e.g. national)", ff.ID, ff.Fallback)
			}
		}
		s.Factors = append(s.Factors, fa)
		s.constIDs[fa.ID] = len(s.consts)
		s.consts = append(s.consts, &constantDef{id: fa.ID, value: fa.Value, factor: fa})
	}
	for i, lf := range f.Limits {
		at := func(k string) []any { return yamlfile.P("limits", i, k) }
		li := &Limit{ID: lf.ID, Quantity: lf.Quantity, Unit: lf.Unit, Note: lf.Note}
		id := "limit." + lf.ID
		if !identRE.MatchString(lf.ID) {
			l.problem(at("id"), "limit id %q: want lower-case letters, digits and '_'", lf.ID)
			continue
		}
		if _, dup := s.constIDs[id]; dup {
			l.problem(at("id"), "limit %q is defined twice", lf.ID)
			continue
		}
		q, ok := registry.LookupQuantity(lf.Quantity)
		switch {
		case !ok:
			l.problem(at("quantity"), "limit %q: unknown quantity %q%s", lf.ID, lf.Quantity, suggest(lf.Quantity))
		case q.Extensive:
			l.problem(at("quantity"), "limit %q: %s is an amount; limits apply to concentrations and levels", lf.ID, lf.Quantity)
		case lf.Unit != q.Unit:
			l.problem(at("unit"), "limit %q: unit %q: want %s, the canonical unit of %s", lf.ID, lf.Unit, q.Unit, q.Name)
		}
		if lf.Value == nil || math.IsNaN(*lf.Value) || math.IsInf(*lf.Value, 0) {
			l.problem(at("value"), "limit %q: value: want a finite number", lf.ID)
		} else {
			li.Value = *lf.Value
		}
		li.Src = l.srcTags(at("id"), lf.Src, "limit "+lf.ID)
		s.Limits = append(s.Limits, li)
		s.constIDs[id] = len(s.consts)
		s.consts = append(s.consts, &constantDef{id: id, value: li.Value, limit: li})
	}
}

func (l *stdLoader) loadGroups() {
	f, s := l.f, l.s
	if len(f.Groups) == 0 {
		l.problem(yamlfile.P("groups"), "no indicator groups")
		return
	}
	var topBP int64
	topOK := true
	ids := map[string]bool{}
	for gi, gf := range f.Groups {
		at := func(k string) []any { return yamlfile.P("groups", gi, k) }
		g := &Group{ID: gf.ID, NameZH: gf.NameZH, NameEN: gf.NameEN}
		if !idRE.MatchString(g.ID) {
			l.problem(at("id"), "group id %q: want lower-case letters, digits and '_'", g.ID)
		}
		if ids[g.ID] {
			l.problem(at("id"), "id %q is used twice", g.ID)
		}
		ids[g.ID] = true
		if g.NameZH == "" || g.NameEN == "" {
			l.problem(at("id"), "group %q: name_zh and name_en are required", g.ID)
		}
		g.Weight, g.weightBP = l.weightBP(at("weight"), gf.Weight, "group "+g.ID)
		topOK = topOK && g.weightBP > 0
		topBP += g.weightBP
		g.Src = l.srcTags(at("id"), gf.Src, "group "+g.ID)
		if len(gf.Indicators) == 0 {
			l.problem(at("indicators"), "group %q has no indicators", g.ID)
		}
		var sumBP int64
		sumOK := true
		for ii, inf := range gf.Indicators {
			ind := l.indicator(gi, ii, inf, ids)
			ind.Group = g
			ind.Index = len(s.Indicators)
			sumOK = sumOK && ind.weightBP > 0
			sumBP += ind.weightBP
			g.Indicators = append(g.Indicators, ind)
			s.Indicators = append(s.Indicators, ind)
			s.indicators[ind.ID] = ind
		}
		if sumOK && len(gf.Indicators) > 0 && sumBP != 10000 {
			l.problem(at("indicators"), "weights of the indicators of group %q sum to %s, want 1", g.ID, bpString(sumBP))
		}
		s.Groups = append(s.Groups, g)
	}
	if topOK && topBP != 10000 {
		l.problem(yamlfile.P("groups"), "weights of the groups sum to %s, want 1", bpString(topBP))
	}
}

func bpString(bp int64) string { return strconv.FormatFloat(float64(bp)/10000, 'f', 4, 64) }

func (l *stdLoader) indicator(gi, ii int, inf indicatorFile, ids map[string]bool) *Indicator {
	at := func(k string) []any { return yamlfile.P("groups", gi, "indicators", ii, k) }
	ind := &Indicator{
		ID: inf.ID, NameZH: inf.NameZH, NameEN: inf.NameEN, Unit: inf.Unit,
		Kind: Kind(inf.Type), Direction: Direction(inf.Direction), Formula: inf.Formula,
		Optional: inf.Optional, AppliesIfMetered: inf.AppliesIf, Basis: inf.Basis, Restrictive: inf.Restrictive,
		MinCoverage: l.s.MinCoverage,
	}
	what := "indicator " + ind.ID
	if !idRE.MatchString(ind.ID) {
		l.problem(at("id"), "indicator id %q: want lower-case letters, digits and '_'", ind.ID)
	}
	if ids[ind.ID] {
		l.problem(at("id"), "id %q is used twice", ind.ID)
	}
	ids[ind.ID] = true
	if ind.NameZH == "" || ind.NameEN == "" {
		l.problem(at("id"), "%s: name_zh and name_en are required", what)
	}
	ind.Weight, ind.weightBP = l.weightBP(at("weight"), inf.Weight, what)
	ind.Src = l.srcTags(at("id"), inf.Src, what)
	if inf.MinCoverage != nil {
		ind.MinCoverage = *inf.MinCoverage
		if !(ind.MinCoverage >= 0 && ind.MinCoverage <= 1) {
			l.problem(at("min_coverage"), "%s: min_coverage %v: want a fraction in [0, 1]", what, ind.MinCoverage)
		}
	}
	switch ind.Basis {
	case "", "generation", "emission":
	default:
		l.problem(at("basis"), "%s: basis %q: want generation (before treatment) or emission", what, ind.Basis)
	}
	raw := [3]any{inf.Benchmarks.I, inf.Benchmarks.II, inf.Benchmarks.III}
	switch ind.Kind {
	case Quantitative:
		if ind.Unit == "" {
			l.problem(at("unit"), "%s: unit is missing", what)
		}
		ind.Range = [2]float64{0, math.Inf(1)}
		if ind.Unit == "%" {
			ind.Range[1] = 100
		}
		if inf.Range != nil {
			if len(inf.Range) != 2 || !(inf.Range[0] < inf.Range[1]) || math.IsNaN(inf.Range[0]) || math.IsNaN(inf.Range[1]) {
				l.problem(at("range"), "%s: range %v: want [lowest, highest] with lowest < highest", what, inf.Range)
			} else {
				ind.Range = [2]float64{inf.Range[0], inf.Range[1]}
			}
		}
		if ind.Direction != LowerBetter && ind.Direction != HigherBetter {
			l.problem(at("direction"), "%s: direction %q: want lower_better or higher_better", what, inf.Direction)
		}
		ok := true
		for k, v := range raw {
			x, isNum := number(v)
			if !isNum {
				l.problem(at("benchmarks"), "%s: benchmark %s: want a number, got %v", what, gradedLevels[k], v)
				ok = false
				continue
			}
			ind.Benchmarks[k] = x
		}
		if ok && ind.Direction == LowerBetter && !(ind.Benchmarks[0] <= ind.Benchmarks[1] && ind.Benchmarks[1] <= ind.Benchmarks[2]) {
			l.problem(at("benchmarks"), "%s: lower_better benchmarks must satisfy I <= II <= III, got %v/%v/%v", what, ind.Benchmarks[0], ind.Benchmarks[1], ind.Benchmarks[2])
		}
		if ok && ind.Direction == HigherBetter && !(ind.Benchmarks[0] >= ind.Benchmarks[1] && ind.Benchmarks[1] >= ind.Benchmarks[2]) {
			l.problem(at("benchmarks"), "%s: higher_better benchmarks must satisfy I >= II >= III, got %v/%v/%v", what, ind.Benchmarks[0], ind.Benchmarks[1], ind.Benchmarks[2])
		}
		if ind.Formula != "" {
			l.formula(at("formula"), ind)
		} else if len(ind.Optional) > 0 || len(ind.AppliesIfMetered) > 0 {
			l.problem(at("optional"), "%s: optional and applies_if_metered apply to formulas only", what)
		}
	case Qualitative:
		if inf.Range != nil {
			l.problem(at("range"), "%s: a qualitative indicator has levels, not a range", what)
		}
		if ind.Direction != "" {
			l.problem(at("direction"), "%s: a qualitative indicator has no direction", what)
		}
		if ind.Formula != "" {
			l.problem(at("formula"), "%s: a qualitative indicator has no formula; its level is declared", what)
		}
		for k, v := range raw {
			s, isStr := v.(string)
			if !isStr || strings.TrimSpace(s) == "" {
				l.problem(at("benchmarks"), "%s: benchmark %s: want the level's description, got %v", what, gradedLevels[k], v)
				continue
			}
			ind.Descriptions[k] = s
		}
	default:
		l.problem(at("type"), "%s: type %q: want quantitative or qualitative", what, inf.Type)
	}
	return ind
}

func number(v any) (float64, bool) {
	switch v := v.(type) {
	case int:
		return float64(v), true
	case float64:
		return v, !math.IsNaN(v) && !math.IsInf(v, 0)
	}
	return 0, false
}

func (l *stdLoader) formula(path []any, ind *Indicator) {
	e, err := compileFormula(ind.Formula, l.s)
	if err != nil {
		l.problem(path, "indicator %s: %v", ind.ID, err)
		return
	}
	ind.expr = e
	seen := map[int]bool{}
	e.visitSeries(func(i int) {
		if !seen[i] {
			seen[i] = true
			ind.inputs = append(ind.inputs, indicatorInput{series: i})
		}
	})
	ind.compliance = hasOp(e, opCompliance)
	e.visitConsts(func(i int) {
		if c := l.s.consts[i]; c.factor != nil && c.factor.Regional() && !slices.Contains(ind.regional, i) {
			ind.regional = append(ind.regional, i)
		}
	})
	for _, a := range ind.AppliesIfMetered {
		q, w, _ := strings.Cut(a, "@")
		if qq, ok := registry.LookupQuantity(q); !ok || !qq.Extensive {
			l.problem(path, "indicator %s: applies_if_metered %q: want an amount quantity such as vehicles", ind.ID, a)
			continue
		}
		ind.appliesIf = append(ind.appliesIf, l.s.series(Series{Kind: SeriesSum, Quantity: q, Workshop: w}))
	}
	for _, o := range ind.Optional {
		q, w, _ := strings.Cut(o, "@")
		found := false
		for k, in := range ind.inputs {
			sr := l.s.Series[in.series]
			if sr.Quantity == q && sr.Workshop == w {
				ind.inputs[k].optional = true
				found = true
			}
		}
		if !found {
			l.problem(path, "indicator %s: optional %q is not an input of the formula", ind.ID, o)
		}
	}
}

func hasOp(e *expr, o op) bool {
	if e.op == o {
		return true
	}
	for _, a := range e.args {
		if hasOp(a, o) {
			return true
		}
	}
	return false
}
