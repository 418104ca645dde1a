package scoring

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cleanprod/cleanprod/internal/yamlfile"
)

// Code is an enterprise's dynamic code, e.g. "green", "yellow" or "red".
// The policy lists its codes best first.
type Code string

// Condition is a named state of an enterprise's assessment that the code
// rules test.
type Condition string

// Conditions the code rules may test, all on the policy's window.
const (
	CondLevelI             Condition = "level_i"              // graded Level I
	CondLevelII            Condition = "level_ii"             // graded Level II
	CondLevelIII           Condition = "level_iii"            // graded Level III
	CondBelowIII           Condition = "below_iii"            // graded below Level III
	CondNotGraded          Condition = "not_graded"           // no indicator applicable with data
	CondRestrictiveFail    Condition = "restrictive_fail"     // a restrictive indicator below Level III
	CondRestrictiveBelowII Condition = "restrictive_below_ii" // a restrictive indicator at Level III or below
	CondRestrictiveMissing Condition = "restrictive_missing"  // a restrictive indicator without data
	CondExceedance         Condition = "exceedance"           // a compliance rate below 100 %: a limit was exceeded
	CondInsufficientData   Condition = "insufficient_data"    // completeness below min_completeness
	CondStale              Condition = "stale"                // a meter has been silent longer than stale.after
	CondAlways             Condition = "always"               // the catch-all of the last rule
)

// holdsWithoutLevel reports whether c can hold for an enterprise that is
// not graded (every condition but the levels).
func holdsWithoutLevel(c Condition) bool {
	switch c {
	case CondLevelI, CondLevelII, CondLevelIII, CondBelowIII:
		return false
	}
	return true
}

var conditions = []Condition{CondLevelI, CondLevelII, CondLevelIII, CondBelowIII, CondNotGraded,
	CondRestrictiveFail, CondRestrictiveBelowII, CondRestrictiveMissing, CondExceedance,
	CondInsufficientData, CondStale, CondAlways}

// Policy is the dynamic-code policy: how an assessment maps to a code, the
// audit interval each code implies, the hysteresis of code changes, and
// when regressions are announced. It is data (scoring/policy/*.yaml) and
// immutable once loaded.
type Policy struct {
	ID   string
	File string
	Src  []string

	// Window is the standard's window the code follows; Baseline the
	// window that serves as the trailing baseline for worsening.
	Window, Baseline string
	Data             DataPolicy
	// MinCompleteness is the share of metered indicators with enough data
	// below which insufficient_data holds.
	MinCompleteness float64
	// LastAuditIndicator is the declared indicator whose latest
	// declaration's valid_from is taken as the date of the last audit.
	LastAuditIndicator string

	Codes []CodeSpec // best first
	Rules []Rule     // first match wins; the last is "always"

	Upgrade, Downgrade Hold
	// ImmediateDowngradeOn lists conditions that change the code to a
	// worse one at once, whatever Downgrade says.
	ImmediateDowngradeOn []Condition

	LevelDrop       time.Duration // a worse level must hold this long before level_drop is announced
	Worsening       Worsening
	RestrictiveFail time.Duration // a failure must hold this long before restrictive_fail is announced
	StaleAfter      time.Duration // a meter silent this long is stale
}

// CodeSpec is one code and the audit interval it implies.
type CodeSpec struct {
	Code                Code
	AuditIntervalMonths int
}

// Rule assigns Code when any of When holds.
type Rule struct {
	Code Code
	When []Condition
}

// Hold is how long and for how many evaluations a new code must be the
// candidate before the code changes; zero values require nothing, so
// Hold{} changes at once. When both are set both must be met.
type Hold struct {
	For         time.Duration
	Evaluations int
}

// Worsening configures the worsening regression: the live value is worse
// than the baseline by more than Fraction (relative) for For; it clears
// once back within ClearFraction.
type Worsening struct {
	Fraction, ClearFraction float64
	For                     time.Duration
}

// rank returns the position of c among the codes, best first (-1: unknown).
func (p *Policy) rank(c Code) int {
	return slices.IndexFunc(p.Codes, func(s CodeSpec) bool { return s.Code == c })
}

// AuditInterval returns the audit interval of code c in months.
func (p *Policy) AuditInterval(c Code) int {
	if i := p.rank(c); i >= 0 {
		return p.Codes[i].AuditIntervalMonths
	}
	return 0
}

// Classify returns the code the first matching rule assigns and the
// conditions of that rule that hold.
func (p *Policy) Classify(holds map[Condition]bool) (Code, []Condition) {
	for _, r := range p.Rules {
		var matched []Condition
		for _, c := range r.When {
			if c == CondAlways || holds[c] {
				matched = append(matched, c)
			}
		}
		if len(matched) > 0 {
			return r.Code, matched
		}
	}
	return p.Codes[len(p.Codes)-1].Code, nil // unreachable: the last rule is "always"
}

// CodeState is an enterprise's code with its hysteresis state. Times are
// in the enterprise's data time (see Result.DataTime).
type CodeState struct {
	Enterprise string
	// Code is "" until the first assessment with enough data.
	Code  Code
	Since time.Time
	// Reasons are the facts behind the code in force, as of the latest
	// evaluation that gave that code (its change, or a later one).
	Reasons []Reason
	// Pending is the code the enterprise is heading for while a hold runs
	// ("" when none): the worst code seen since PendingSince for an
	// upgrade, the best for a downgrade.
	Pending        Code
	PendingSince   time.Time
	PendingEvals   int
	PendingReasons []Reason // behind Pending, as of the latest evaluation that gave it
}

// PendingDue returns when st's pending change takes effect if its
// candidate keeps holding: PendingSince plus the hold of its direction
// (the hold's evaluations permitting). It is zero when nothing is pending.
func (p *Policy) PendingDue(st *CodeState) time.Time {
	if st.Pending == "" || st.Code == "" {
		return time.Time{}
	}
	hold := p.Upgrade
	if p.rank(st.Pending) > p.rank(st.Code) {
		hold = p.Downgrade
	}
	return st.PendingSince.Add(hold.For)
}

// Step advances st by one evaluation whose rules gave cand (for the
// matched conditions) at now. It returns whether the code changed.
//
// The first step (st.Code "") sets the code at once: the caller steps only
// on an assessment with enough data. A better candidate replaces
// the code only after it (or better) was the candidate for Upgrade; a
// worse one after Downgrade, or at once when a matched condition is in
// ImmediateDowngradeOn. A candidate equal to the current code cancels a
// pending change.
func (p *Policy) Step(st *CodeState, cand Code, matched []Condition, now time.Time) bool {
	if st.Code == "" {
		st.Code, st.Since, st.Pending = cand, now, ""
		return true
	}
	cur, c := p.rank(st.Code), p.rank(cand)
	if c == cur {
		st.Pending, st.PendingEvals = "", 0
		return false
	}
	worse := c > cur
	if worse && slices.ContainsFunc(matched, func(m Condition) bool { return slices.Contains(p.ImmediateDowngradeOn, m) }) {
		st.Code, st.Since, st.Pending, st.PendingEvals = cand, now, "", 0
		return true
	}
	pend := p.rank(st.Pending)
	switch {
	case st.Pending == "" || (pend > cur) != worse:
		// A new pending change, or one in the other direction.
		st.Pending, st.PendingSince, st.PendingEvals = cand, now, 1
	default:
		st.PendingEvals++
		// Keep the code the enterprise has held throughout: for an
		// upgrade the worst candidate seen, for a downgrade the best.
		if (!worse && c > pend) || (worse && c < pend) {
			st.Pending = cand
		}
	}
	hold := p.Upgrade
	if worse {
		hold = p.Downgrade
	}
	if st.PendingEvals >= hold.Evaluations && now.Sub(st.PendingSince) >= hold.For {
		st.Code, st.Since, st.Pending, st.PendingEvals = st.Pending, now, "", 0
		return true
	}
	return false
}

// File schema.

type policyFile struct {
	SchemaVersion int    `yaml:"schema_version"`
	ID            string `yaml:"id"`
	Src           any    `yaml:"src"`
	Note          string `yaml:"note"`
	Window        string `yaml:"window"`
	Baseline      string `yaml:"baseline"`
	Insufficient  struct {
		Metered  string `yaml:"metered"`
		Declared string `yaml:"declared"`
	} `yaml:"insufficient_data"`
	MinCompleteness    *float64 `yaml:"min_completeness"`
	LastAuditIndicator string   `yaml:"last_audit_indicator"`
	Codes              []struct {
		Code                string `yaml:"code"`
		AuditIntervalMonths int    `yaml:"audit_interval_months"`
		Note                string `yaml:"note"`
	} `yaml:"codes"`
	Rules []struct {
		Code    string   `yaml:"code"`
		WhenAny []string `yaml:"when_any"`
	} `yaml:"rules"`
	Hysteresis struct {
		Upgrade              holdFile `yaml:"upgrade"`
		Downgrade            holdFile `yaml:"downgrade"`
		ImmediateDowngradeOn []string `yaml:"immediate_downgrade_on"`
	} `yaml:"hysteresis"`
	Regressions struct {
		LevelDrop struct {
			For string `yaml:"for"`
		} `yaml:"level_drop"`
		Worsening struct {
			Fraction      float64 `yaml:"fraction"`
			ClearFraction float64 `yaml:"clear_fraction"`
			For           string  `yaml:"for"`
		} `yaml:"worsening"`
		RestrictiveFail struct {
			For string `yaml:"for"`
		} `yaml:"restrictive_fail"`
		Stale struct {
			After string `yaml:"after"`
		} `yaml:"stale"`
	} `yaml:"regressions"`
}

type holdFile struct {
	For         string `yaml:"for"`
	Evaluations int    `yaml:"evaluations"`
}

// LoadPolicy reads and validates the policy at path against std (its
// windows and indicators). Every problem is returned at once.
func LoadPolicy(path string, std *Standard) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	return ParsePolicy(path, data, std)
}

// ParsePolicy validates a policy from data named name in messages.
func ParsePolicy(name string, data []byte, std *Standard) (*Policy, error) {
	var f policyFile
	doc, err := yamlfile.Decode(name, data, &f)
	if err != nil {
		return nil, err
	}
	var errs []error
	problem := func(path []any, format string, args ...any) {
		errs = append(errs, doc.Errorf(path, format, args...))
	}
	p := &Policy{ID: f.ID, File: name, Window: f.Window, Baseline: f.Baseline, LastAuditIndicator: f.LastAuditIndicator}
	if f.SchemaVersion != 1 {
		problem(yamlfile.P("schema_version"), "schema_version %d: want 1", f.SchemaVersion)
	}
	if !idRE.MatchString(strings.ReplaceAll(p.ID, "-", "_")) {
		problem(yamlfile.P("id"), "policy id %q: want lower-case letters, digits, '-' or '_'", p.ID)
	}
	p.Src, err = parseSrc(f.Src)
	if err != nil || len(p.Src) == 0 {
		problem(yamlfile.P("src"), "src: want a source tag, estimate or unverified")
	}
	for k, w := range map[string]string{"window": p.Window, "baseline": p.Baseline} {
		if _, _, ok := std.Window(w); !ok {
			problem(yamlfile.P(k), "%s %q: not a window of standard %s (it has %s)", k, w, std.ID, windowNames(std))
		}
	}
	pol := func(key, v string) InsufficientPolicy {
		switch InsufficientPolicy(v) {
		case InsufficientFails, InsufficientExcluded:
			return InsufficientPolicy(v)
		}
		problem(yamlfile.P("insufficient_data", key), "insufficient_data.%s %q: want fail or exclude", key, v)
		return InsufficientFails
	}
	p.Data = DataPolicy{Metered: pol("metered", f.Insufficient.Metered), Declared: pol("declared", f.Insufficient.Declared)}
	if f.MinCompleteness != nil {
		p.MinCompleteness = *f.MinCompleteness
	}
	if !(p.MinCompleteness >= 0 && p.MinCompleteness <= 1) {
		problem(yamlfile.P("min_completeness"), "min_completeness %v: want a fraction in [0, 1]", p.MinCompleteness)
	}
	if p.LastAuditIndicator != "" {
		if ind, ok := std.Indicator(p.LastAuditIndicator); !ok || ind.Metered() {
			problem(yamlfile.P("last_audit_indicator"), "last_audit_indicator %q: want a declared indicator of standard %s", p.LastAuditIndicator, std.ID)
		}
	}
	if len(f.Codes) == 0 {
		problem(yamlfile.P("codes"), "no codes: list them best first, e.g. green, yellow, red")
	}
	for i, c := range f.Codes {
		if !idRE.MatchString(c.Code) {
			problem(yamlfile.P("codes", i, "code"), "code %q: want lower-case letters", c.Code)
		}
		if p.rank(Code(c.Code)) >= 0 {
			problem(yamlfile.P("codes", i, "code"), "code %q is listed twice", c.Code)
		}
		if c.AuditIntervalMonths <= 0 || c.AuditIntervalMonths > 120 {
			problem(yamlfile.P("codes", i, "audit_interval_months"), "code %q: audit_interval_months %d: want 1-120", c.Code, c.AuditIntervalMonths)
		}
		p.Codes = append(p.Codes, CodeSpec{Code: Code(c.Code), AuditIntervalMonths: c.AuditIntervalMonths})
	}
	condition := func(path []any, s string) (Condition, bool) {
		c := Condition(s)
		if !slices.Contains(conditions, c) {
			var known []string
			for _, k := range conditions {
				known = append(known, string(k))
			}
			problem(path, "unknown condition %q (known: %s)", s, strings.Join(known, ", "))
			return "", false
		}
		return c, true
	}
	for i, r := range f.Rules {
		rule := Rule{Code: Code(r.Code)}
		if p.rank(rule.Code) < 0 {
			problem(yamlfile.P("rules", i, "code"), "rule %d: code %q is not listed under codes", i+1, r.Code)
		}
		if len(r.WhenAny) == 0 {
			problem(yamlfile.P("rules", i), "rule %d: when_any is empty", i+1)
		}
		for j, s := range r.WhenAny {
			if c, ok := condition(yamlfile.P("rules", i, "when_any", j), s); ok {
				rule.When = append(rule.When, c)
			}
		}
		p.Rules = append(p.Rules, rule)
	}
	if n := len(p.Rules); n == 0 || !slices.Contains(p.Rules[n-1].When, CondAlways) {
		problem(yamlfile.P("rules"), "the last rule must include \"always\", so that every state has a code")
	}
	// An enterprise that is not graded must never get the best code: every
	// rule that can match it, up to the first that names not_graded (or
	// always), must give a worse one.
	if len(p.Codes) > 0 {
		for i, r := range p.Rules {
			if !slices.ContainsFunc(r.When, holdsWithoutLevel) {
				continue
			}
			if r.Code == p.Codes[0].Code {
				problem(yamlfile.P("rules", i, "code"), "rule %d gives %s, the best code, to an enterprise that is not graded (its conditions hold without a level); put a rule for not_graded with a worse code before it", i+1, r.Code)
			}
			if slices.Contains(r.When, CondNotGraded) || slices.Contains(r.When, CondAlways) {
				break
			}
		}
	}
	hold := func(key string, h holdFile) Hold {
		out := Hold{Evaluations: h.Evaluations}
		if h.For != "" {
			d, err := ParseDuration(h.For)
			if err != nil || d < 0 {
				problem(yamlfile.P("hysteresis", key, "for"), "hysteresis.%s.for: %v", key, err)
			}
			out.For = d
		}
		if h.Evaluations < 0 {
			problem(yamlfile.P("hysteresis", key, "evaluations"), "hysteresis.%s.evaluations %d: want >= 0", key, h.Evaluations)
		}
		return out
	}
	p.Upgrade = hold("upgrade", f.Hysteresis.Upgrade)
	p.Downgrade = hold("downgrade", f.Hysteresis.Downgrade)
	for j, s := range f.Hysteresis.ImmediateDowngradeOn {
		if c, ok := condition(yamlfile.P("hysteresis", "immediate_downgrade_on", j), s); ok {
			p.ImmediateDowngradeOn = append(p.ImmediateDowngradeOn, c)
		}
	}
	dur := func(path []any, s string, required bool) time.Duration {
		name := fmt.Sprint(path[0])
		for _, p := range path[1:] {
			name += fmt.Sprint(".", p)
		}
		if s == "" {
			if required {
				problem(path, "%s is required", name)
			}
			return 0
		}
		d, err := ParseDuration(s)
		if err != nil || d < 0 {
			problem(path, "%s %q: want a duration such as 6h or 30d", name, s)
		}
		return d
	}
	rg := f.Regressions
	p.LevelDrop = dur(yamlfile.P("regressions", "level_drop", "for"), rg.LevelDrop.For, false)
	p.RestrictiveFail = dur(yamlfile.P("regressions", "restrictive_fail", "for"), rg.RestrictiveFail.For, false)
	p.StaleAfter = dur(yamlfile.P("regressions", "stale", "after"), rg.Stale.After, true)
	p.Worsening = Worsening{Fraction: rg.Worsening.Fraction, ClearFraction: rg.Worsening.ClearFraction,
		For: dur(yamlfile.P("regressions", "worsening", "for"), rg.Worsening.For, false)}
	if !(p.Worsening.Fraction > 0) || !(p.Worsening.ClearFraction >= 0 && p.Worsening.ClearFraction <= p.Worsening.Fraction) {
		problem(yamlfile.P("regressions", "worsening"), "worsening: want fraction > 0 and 0 <= clear_fraction <= fraction, got %v and %v", p.Worsening.Fraction, p.Worsening.ClearFraction)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

func windowNames(std *Standard) string {
	var names []string
	for _, w := range std.Windows {
		names = append(names, w.Name)
	}
	return strings.Join(names, ", ")
}
