package scoring

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cleanprod/cleanprod/internal/yamlfile"
	"github.com/cleanprod/cleanprod/registry"
)

// Declaration is an enterprise's statement about what meters cannot
// measure: the level of a qualitative indicator, the value of a non-metered
// quantitative one (paint transfer efficiency, the monthly VOC mass
// balance), that an indicator does not apply to it, or that a formula input
// is genuinely absent (the plant burns no gas). It holds from ValidFrom
// (inclusive) to ValidTo (exclusive; zero means open-ended), so an expired
// certificate stops counting by itself.
//
// A missing meter is never taken for an absent input: without an absent
// declaration, an indicator whose input has no meter has insufficient
// data.
type Declaration struct {
	Enterprise string
	Indicator  string // "" for an Absent declaration
	// Exactly one of Level (qualitative), Value (quantitative, not metered),
	// NotApplicable (any indicator) and Absent is set.
	Level         Level
	Value         *float64
	NotApplicable bool
	// Absent names an amount series the formulas read, as written in them
	// (a quantity such as natural_gas, or quantity@workshop), that the
	// enterprise does not have: while the declaration holds, the series
	// counts as 0 with full coverage in every formula, and an indicator
	// that applies_if_metered it does not apply. A bare quantity covers its
	// workshop series too. An enterprise that has a meter for the series
	// is judged by the meter: the declaration does not apply to it.
	Absent    string
	Evidence  string // what supports it: certificate, report, permit number
	ValidFrom time.Time
	ValidTo   time.Time
	// Auditor and ReportRef make a declaration of the policy's audit
	// indicator (cp_audit) an audit record: who audited and the report's
	// reference. ValidFrom is the audit's date. Only an accepted audit
	// record restarts the audit cycle.
	Auditor   string
	ReportRef string
}

// AuditRecord reports whether the declaration records an audit.
func (d *Declaration) AuditRecord() bool {
	return strings.TrimSpace(d.Auditor) != "" && strings.TrimSpace(d.ReportRef) != ""
}

// ValidAt reports whether the declaration holds at t.
func (d *Declaration) ValidAt(t time.Time) bool {
	return !t.Before(d.ValidFrom) && (d.ValidTo.IsZero() || t.Before(d.ValidTo))
}

// absentKey prefixes the key of Absent declarations in a
// declarationIndex; indicator ids cannot contain ':'.
const absentKey = "absent:"

// Subject is what the declaration is about: its indicator, or "absent:"
// and the absent series. Two declarations of one enterprise with the same
// subject and valid_from are one declaration: the later replaces the
// earlier.
func (d *Declaration) Subject() string {
	if d.Absent != "" {
		return absentKey + d.Absent
	}
	return d.Indicator
}

// Check validates the declaration against the standard.
func (d *Declaration) Check(std *Standard) error {
	set := 0
	for _, b := range []bool{d.Level != NoLevel, d.Value != nil, d.NotApplicable, d.Absent != ""} {
		if b {
			set++
		}
	}
	if d.Absent != "" {
		what := fmt.Sprintf("declaration of %s that %s is absent", d.Enterprise, d.Absent)
		switch {
		case !registry.ValidID(d.Enterprise):
			return fmt.Errorf("declaration that %s is absent: enterprise id %q is not valid", d.Absent, d.Enterprise)
		case set != 1:
			return fmt.Errorf("%s: give exactly one of level, value, not_applicable and absent", what)
		case d.Indicator != "":
			return fmt.Errorf("%s: give no indicator; it holds for every formula that reads %s", what, d.Absent)
		case len(std.absentSeries[d.Absent]) == 0:
			return fmt.Errorf("%s: %q is not an amount the standard's formulas read (want e.g. natural_gas or electricity@paint)", what, d.Absent)
		}
		return d.checkValidity(what)
	}
	ind, ok := std.Indicator(d.Indicator)
	if !ok {
		return fmt.Errorf("declaration of %s: unknown indicator %q", d.Enterprise, d.Indicator)
	}
	what := fmt.Sprintf("declaration of %s for %s", d.Enterprise, d.Indicator)
	switch {
	case !registry.ValidID(d.Enterprise):
		return fmt.Errorf("declaration for %s: enterprise id %q is not valid", d.Indicator, d.Enterprise)
	case set != 1:
		return fmt.Errorf("%s: give exactly one of level, value, not_applicable and absent", what)
	case d.Level != NoLevel && ind.Kind != Qualitative:
		return fmt.Errorf("%s: a level is declared for qualitative indicators; %s is quantitative (declare its value)", what, d.Indicator)
	case d.Level != NoLevel && !slices.Contains(ind.AllowedLevels(), d.Level):
		if ind.Gate() {
			return fmt.Errorf("%s: %s is a yes/no requirement: declare level I (yes, met) or below_III (no), not %s", what, d.Indicator, d.Level)
		}
		return fmt.Errorf("%s: level %d is not valid: want I, II, III or below_III", what, d.Level)
	case d.Value != nil && (ind.Kind != Quantitative || ind.Metered()):
		return fmt.Errorf("%s: a value is declared for quantitative indicators without a formula; %s is %s", what, d.Indicator, map[bool]string{true: "metered", false: "qualitative"}[ind.Metered()])
	case d.Value != nil && (math.IsNaN(*d.Value) || math.IsInf(*d.Value, 0)):
		return fmt.Errorf("%s: value must be a finite number", what)
	case d.Value != nil && (*d.Value < ind.Range[0] || *d.Value > ind.Range[1]):
		return fmt.Errorf("%s: value %v %s is outside what %s can be: %s", what, *d.Value, ind.Unit, d.Indicator, ind.RangeText())
	case (d.Auditor != "" || d.ReportRef != "") && !d.AuditRecord():
		return fmt.Errorf("%s: an audit record needs both auditor and report_ref", what)
	case d.AuditRecord() && ind.Kind != Qualitative:
		return fmt.Errorf("%s: auditor and report_ref belong to the audit indicator, not to %s", what, d.Indicator)
	}
	return d.checkValidity(what)
}

// checkValidity checks the evidence and validity dates.
func (d *Declaration) checkValidity(what string) error {
	switch {
	case strings.TrimSpace(d.Evidence) == "":
		return fmt.Errorf("%s: evidence is required", what)
	case d.ValidFrom.IsZero():
		return fmt.Errorf("%s: valid_from is required", what)
	case !d.ValidTo.IsZero() && !d.ValidTo.After(d.ValidFrom):
		return fmt.Errorf("%s: valid_to must be after valid_from", what)
	}
	return nil
}

// Declarations is where the engine reads enterprise declarations from: the
// API's store in production, DeclarationFiles by default. The engine calls
// it at start and whenever ReloadDeclarations is called, from its own
// goroutine; invalid declarations are logged and skipped.
type Declarations interface {
	Declarations(ctx context.Context) ([]Declaration, error)
}

// DeclarationFiles reads declarations from the YAML files of a folder, one
// enterprise per file:
//
//	enterprise: cq-auto-01
//	declarations:
//	  - indicator: cp_audit
//	    level: II
//	    evidence: audit report 2024, acceptance letter 渝环清审〔2024〕12号
//	    auditor: 重庆某清洁生产咨询有限公司
//	    report_ref: 渝环清审〔2024〕12号
//	    valid_from: 2024-06-01
//	    valid_to: 2029-06-01
//	  - indicator: paint_transfer_efficiency
//	    value: 65
//	    evidence: supplier trial report 2025-03
//	    valid_from: 2025-03-01
//	  - indicator: nev_output_share
//	    not_applicable: true
//	    evidence: commercial-vehicle plant
//	    valid_from: 2025-01-01
//	  - absent: natural_gas
//	    evidence: all-electric ovens and heat pumps, no gas connection (utility letter 2025-02)
//	    valid_from: 2025-03-01
//
// Dates without a time are midnight in the standard's local time.
//
// With Files set, those files (by name) are read instead of the folder's,
// and Dir only names where they come from (such as the example fleet's
// declarations built into the binary).
type DeclarationFiles struct {
	Dir      string
	Files    map[string][]byte
	Standard *Standard
}

// Declarations reads and validates every *.yaml file of the folder (or
// Files); all problems are returned at once.
func (f DeclarationFiles) Declarations(ctx context.Context) ([]Declaration, error) {
	if f.Files != nil {
		return ParseDeclarationFiles(f.Files, f.Standard)
	}
	return LoadDeclarations(f.Dir, f.Standard)
}

type declarationFile struct {
	Enterprise   string `yaml:"enterprise"`
	Declarations []struct {
		Indicator     string   `yaml:"indicator"`
		Level         string   `yaml:"level"`
		Value         *float64 `yaml:"value"`
		NotApplicable bool     `yaml:"not_applicable"`
		Absent        string   `yaml:"absent"`
		Evidence      string   `yaml:"evidence"`
		ValidFrom     string   `yaml:"valid_from"`
		ValidTo       string   `yaml:"valid_to"`
		Auditor       string   `yaml:"auditor"`
		ReportRef     string   `yaml:"report_ref"`
	} `yaml:"declarations"`
}

// LoadDeclarations reads every *.yaml file in dir and validates it against
// std. A missing folder is an error; an empty one yields no declarations.
func LoadDeclarations(dir string, std *Standard) ([]Declaration, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load declarations: %w", err)
	}
	files := map[string][]byte{}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("load declarations: %w", err))
			continue
		}
		files[path] = data
	}
	ds, err := ParseDeclarationFiles(files, std)
	if err := errors.Join(append(errs, err)...); err != nil {
		return nil, err
	}
	return ds, nil
}

// ParseDeclarationFiles validates declaration files keyed by name, one
// enterprise per file, in name order; all problems are returned at once.
func ParseDeclarationFiles(files map[string][]byte, std *Standard) ([]Declaration, error) {
	var out []Declaration
	var errs []error
	seen := map[string]string{}
	for _, path := range slices.Sorted(maps.Keys(files)) {
		ds, err := ParseDeclarations(path, files[path], std)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(ds) > 0 {
			if prev, dup := seen[ds[0].Enterprise]; dup {
				errs = append(errs, fmt.Errorf("%s: enterprise %q is already declared in %s", path, ds[0].Enterprise, prev))
				continue
			}
			seen[ds[0].Enterprise] = path
		}
		out = append(out, ds...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// ParseDeclarations validates one declaration file.
func ParseDeclarations(name string, data []byte, std *Standard) ([]Declaration, error) {
	var f declarationFile
	doc, err := yamlfile.Decode(name, data, &f)
	if err != nil {
		return nil, err
	}
	var errs []error
	if !registry.ValidID(f.Enterprise) {
		errs = append(errs, doc.Errorf(yamlfile.P("enterprise"), "enterprise id %q is not valid", f.Enterprise))
	}
	loc := time.FixedZone("local", int(std.UTCOffset/time.Second))
	out := make([]Declaration, 0, len(f.Declarations))
	for i, df := range f.Declarations {
		at := func(k string) []any { return yamlfile.P("declarations", i, k) }
		d := Declaration{Enterprise: f.Enterprise, Indicator: df.Indicator, Value: df.Value, NotApplicable: df.NotApplicable, Absent: df.Absent,
			Evidence: df.Evidence, Auditor: df.Auditor, ReportRef: df.ReportRef}
		bad := false
		if df.Level != "" {
			l, err := ParseLevel(df.Level)
			if err != nil {
				errs = append(errs, doc.Errorf(at("level"), "%v", err))
				bad = true
			}
			d.Level = l
		}
		if d.ValidFrom, err = parseDate(df.ValidFrom, loc); err != nil {
			errs = append(errs, doc.Errorf(at("valid_from"), "valid_from: %v", err))
			bad = true
		}
		if df.ValidTo != "" {
			if d.ValidTo, err = parseDate(df.ValidTo, loc); err != nil {
				errs = append(errs, doc.Errorf(at("valid_to"), "valid_to: %v", err))
				bad = true
			}
		}
		if bad {
			continue
		}
		field, about := "indicator", d.Indicator
		if d.Absent != "" {
			field, about = "absent", "absent "+d.Absent
		}
		if err := d.Check(std); err != nil {
			errs = append(errs, doc.Errorf(at(field), "%v", err))
			continue
		}
		if slices.ContainsFunc(out, func(o Declaration) bool { return o.Subject() == d.Subject() && o.ValidFrom.Equal(d.ValidFrom) }) {
			errs = append(errs, doc.Errorf(at(field), "%s is declared twice from %s", about, df.ValidFrom))
			continue
		}
		out = append(out, d)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func parseDate(s string, loc *time.Location) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("missing")
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, loc); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q: want a date (2025-06-01) or RFC 3339 time", s)
}

// declarationIndex holds the declarations of one enterprise by indicator
// (Absent ones by absentKey and the series), newest ValidFrom first.
type declarationIndex map[string][]Declaration

// at returns the declaration with key (an indicator id) that holds at t
// (the one with the latest ValidFrom), and whether an expired or future
// one exists instead.
func (di declarationIndex) at(key string, t time.Time) (d *Declaration, expired bool) {
	ds := di[key]
	for i := range ds {
		if ds[i].ValidAt(t) {
			return &ds[i], false
		}
	}
	return nil, len(ds) > 0
}

func indexDeclarations(ds []Declaration) map[string]declarationIndex {
	out := make(map[string]declarationIndex)
	for _, d := range ds {
		di := out[d.Enterprise]
		if di == nil {
			di = make(declarationIndex)
			out[d.Enterprise] = di
		}
		di[d.Subject()] = append(di[d.Subject()], d)
	}
	for _, di := range out {
		for _, ds := range di {
			slices.SortFunc(ds, func(a, b Declaration) int { return b.ValidFrom.Compare(a.ValidFrom) })
		}
	}
	return out
}
