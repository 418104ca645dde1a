package scoring

import "fmt"

// Level is a cleaner-production level. Smaller is better: LevelI is the
// best. The zero value means "not graded" (the indicator is not applicable
// or has insufficient data); it never meets any level.
type Level int8

// Levels, best first.
const (
	NoLevel  Level = 0 // not graded
	LevelI   Level = 1 // international leading (领先)
	LevelII  Level = 2 // domestic advanced (先进)
	LevelIII Level = 3 // domestic basic (一般)
	BelowIII Level = 4 // below Level III
)

// gradedLevels are the levels that have benchmarks, best first.
var gradedLevels = [3]Level{LevelI, LevelII, LevelIII}

// Meets reports whether l is graded and at least as good as g: membership
// is cumulative, so an indicator at Level I meets Level I, II and III.
func (l Level) Meets(g Level) bool { return l != NoLevel && l <= g }

// Better reports whether l is graded and strictly better than m (any graded
// level is better than NoLevel).
func (l Level) Better(m Level) bool {
	if l == NoLevel {
		return false
	}
	return m == NoLevel || l < m
}

// MarshalText encodes the level as its String, so JSON reads "II".
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText parses what MarshalText writes ("" is NoLevel), so that
// events and reasons read back from JSON.
func (l *Level) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*l = NoLevel
		return nil
	}
	v, err := ParseLevel(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// String returns "I", "II", "III", "below III" or "" for NoLevel.
func (l Level) String() string {
	switch l {
	case NoLevel:
		return ""
	case LevelI:
		return "I"
	case LevelII:
		return "II"
	case LevelIII:
		return "III"
	case BelowIII:
		return "below III"
	}
	return fmt.Sprintf("Level(%d)", int8(l))
}

// ParseLevel parses "I", "II", "III" or "below III" (also "below_III",
// "below_iii").
func ParseLevel(s string) (Level, error) {
	switch s {
	case "I", "i":
		return LevelI, nil
	case "II", "ii":
		return LevelII, nil
	case "III", "iii":
		return LevelIII, nil
	case "below III", "below_III", "below_iii", "BELOW_III":
		return BelowIII, nil
	}
	return NoLevel, fmt.Errorf("level %q: want I, II, III or below_III", s)
}

// Direction says which way an indicator improves.
type Direction string

// Directions.
const (
	LowerBetter  Direction = "lower_better"
	HigherBetter Direction = "higher_better"
)

// Kind says how an indicator gets its value.
type Kind string

// Indicator kinds.
const (
	// Quantitative indicators have numeric benchmarks; their value comes from
	// a formula over metered quantities or, without a formula, from an
	// enterprise declaration.
	Quantitative Kind = "quantitative"
	// Qualitative indicators have a text description per level; their level
	// comes from an enterprise declaration.
	Qualitative Kind = "qualitative"
)

// Status says whether an indicator could be graded.
type Status string

// Indicator statuses.
const (
	Graded        Status = "graded"         // value and level known
	NotApplicable Status = "not_applicable" // declared not applicable: renormalised out of its group
	Insufficient  Status = "insufficient"   // not enough data or no valid declaration: the policy decides
)
