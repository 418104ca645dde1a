package scoring

import (
	"fmt"
	"time"
)

// EventKind says what an event announces.
type EventKind string

// Event kinds.
const (
	// EventCodeChange: the enterprise's dynamic code changed (OldCode,
	// NewCode, Reason, and Reasons: those of the new code). An enterprise
	// has no code until its first assessment with enough data; that
	// assessment announces its first code with OldCode "".
	EventCodeChange EventKind = "code_change"
	// EventLevelDrop: an indicator's level got worse and stayed worse for
	// the policy's level_drop.for (OldLevel, NewLevel, NewValue).
	EventLevelDrop EventKind = "level_drop"
	// EventWorsening: an indicator's live value is worse than its trailing
	// baseline by more than the policy's fraction (OldValue is the
	// baseline, NewValue the live value); Resolved when it is back within
	// clear_fraction.
	EventWorsening EventKind = "worsening"
	// EventRestrictiveFail: a restrictive indicator is below Level III;
	// Resolved when it is back at III or better.
	EventRestrictiveFail EventKind = "restrictive_fail"
	// EventStale: a meter has been silent for the policy's stale.after
	// (Meter); Resolved when it reports again.
	EventStale EventKind = "stale"
	// EventExceedance: an analyser's mean over one bucket of the code
	// window (an hour) exceeded its limit: the meter's discharge permit
	// limit, or else the standard's limit of its quantity. Time is the
	// hour's start, NewValue the hour's mean and OldValue the limit, both
	// in canonical units; announced once per meter and hour.
	EventExceedance EventKind = "exceedance"
	// EventDeclarationSubmitted, Accepted and Rejected: a step of a
	// declaration's review (Indicator; Reason names the declaration, who
	// acted and the reviewer's note). A supervisor's own declaration is
	// announced as accepted.
	EventDeclarationSubmitted EventKind = "declaration_submitted"
	EventDeclarationAccepted  EventKind = "declaration_accepted"
	EventDeclarationRejected  EventKind = "declaration_rejected"
	// EventCaseOpened, Acknowledged, PlanSubmitted, PlanRejected, Closed,
	// Reopened and Overdue: a step of a rectification case (package
	// review): opened for a red code or a failed restrictive indicator
	// (Indicator), or by a supervisor; Reason begins with "case <id>" and
	// names who acted. Overdue is announced once per deadline; Closed
	// carries Resolved.
	EventCaseOpened        EventKind = "case_opened"
	EventCaseAcknowledged  EventKind = "case_acknowledged"
	EventCasePlanSubmitted EventKind = "case_plan_submitted"
	EventCasePlanRejected  EventKind = "case_plan_rejected"
	EventCaseClosed        EventKind = "case_closed"
	EventCaseReopened      EventKind = "case_reopened"
	EventCaseOverdue       EventKind = "case_overdue"
)

// Event is a change worth telling people about. Events are announced once
// per change (a condition must hold for its configured time, and is not
// announced again until it has resolved), so nothing flaps. Time is the
// enterprise's data time (Result.DataTime) of the evaluation that
// announced it.
type Event struct {
	Time       time.Time `json:"time"`
	Enterprise string    `json:"enterprise"`
	Kind       EventKind `json:"kind"`
	Resolved   bool      `json:"resolved,omitempty"` // the announced condition has ended
	Window     string    `json:"window,omitempty"`
	Indicator  string    `json:"indicator,omitempty"` // level_drop, worsening, restrictive_fail
	Meter      string    `json:"meter,omitempty"`     // stale
	OldCode    Code      `json:"old_code,omitempty"`
	NewCode    Code      `json:"new_code,omitempty"`
	OldLevel   Level     `json:"old_level,omitzero"`
	NewLevel   Level     `json:"new_level,omitzero"`
	OldValue   float64   `json:"old_value,omitempty"`
	NewValue   float64   `json:"new_value,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	// Reasons are the facts behind the new code (code_change only).
	Reasons []Reason `json:"reasons,omitempty"`
}

// String renders the event for logs and test failures.
func (e Event) String() string {
	s := fmt.Sprintf("%s %s %s", e.Time.UTC().Format(time.RFC3339), e.Enterprise, e.Kind)
	if e.Resolved {
		s += " resolved"
	}
	if e.Indicator != "" {
		s += " indicator=" + e.Indicator
	}
	if e.Meter != "" {
		s += " meter=" + e.Meter
	}
	if e.Kind == EventCodeChange {
		s += fmt.Sprintf(" %s->%s", e.OldCode, e.NewCode)
	}
	if e.Kind == EventLevelDrop {
		s += fmt.Sprintf(" %s->%s", e.OldLevel, e.NewLevel)
	}
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	return s
}

// Result is everything the engine knows about one enterprise after an
// evaluation. Results are immutable once published.
type Result struct {
	Enterprise string
	Time       time.Time
	// DataThrough is the time of the newest reading the result includes
	// (zero: none yet).
	DataThrough time.Time
	// Assessments are indexed like Standard.Windows.
	Assessments []Assessment

	// DataTime is the time the assessments, the code and its holds are
	// evaluated at: the wall clock (Time), except while the enterprise
	// catches up (CatchingUp): then the time through which every gateway
	// still delivering has delivered, so that a backfill moves the code as
	// the same data arriving live would.
	DataTime time.Time
	// CatchingUp is set while readings arrive (in the last stale.after of
	// wall-clock time) for a data time that lags the wall clock by more
	// than stale.after. CodeHeld is set when, meanwhile, the policy's
	// window already reaches beyond DataTime (a gateway ahead of another,
	// or a window that slid during a silence): the code does not move on
	// such a distorted window.
	CatchingUp, CodeHeld bool

	// Code is the code in force: "" until the first assessment with
	// enough data (completeness >= the policy's min_completeness, graded).
	Code      Code
	CodeSince time.Time // data time
	// CodeReasons are the facts behind the code in force (not those of a
	// pending candidate).
	CodeReasons []Reason
	// PendingCode is a code change waiting for its hold ("" none), with
	// the facts behind it, the data time its candidate first appeared and
	// the data time it takes effect if the candidate keeps holding.
	PendingCode    Code
	PendingSince   time.Time
	PendingDue     time.Time
	PendingReasons []Reason
	// LastAudit is the valid_from of the latest declaration of the policy's
	// last_audit_indicator (zero: no audit on record); NextAuditDue is
	// LastAudit plus the code's audit interval, or CodeSince when there is
	// no audit on record (due at once), or zero without a code.
	LastAudit    time.Time
	NextAuditDue time.Time

	// Lagging lists the indicators that hold the enterprise below its next
	// level on the policy's window, largest weighted gap first.
	Lagging     []Lagging
	StaleMeters []string
}

// Assessment returns the assessment of the named window.
func (r *Result) Assessment(window string) (*Assessment, bool) {
	for i := range r.Assessments {
		if r.Assessments[i].Window == window {
			return &r.Assessments[i], true
		}
	}
	return nil, false
}
