package review

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/store"
)

// CaseMeasurement is the measurement of rectification cases (整改).
const CaseMeasurement = "case"

// CaseState is where a case stands.
type CaseState string

// Case states: open -> acknowledged (assignee, deadline) ->
// plan_submitted (plan, evidence) -> closed. A rejected plan goes back
// to acknowledged; a closed case can be reopened (acknowledged again).
const (
	CaseOpen          CaseState = "open"
	CaseAcknowledged  CaseState = "acknowledged"
	CasePlanSubmitted CaseState = "plan_submitted"
	CaseClosed        CaseState = "closed"
)

// Causes: what opened a case.
const (
	CauseRedCode         = "red_code"
	CauseRestrictiveFail = "restrictive_fail"
	CauseManual          = "manual"
)

// Step is one step of a case's history: who did what and when.
type Step struct {
	At       time.Time `json:"at"`
	By       Actor     `json:"by"`
	Action   string    `json:"action"` // opened, acknowledged, plan_submitted, plan_rejected, closed, reopened, overdue
	State    CaseState `json:"state"`  // the state after the step
	Note     string    `json:"note,omitempty"`
	Assignee string    `json:"assignee,omitempty"`
	Deadline time.Time `json:"deadline,omitzero"`
	Plan     string    `json:"plan,omitempty"`
	Evidence []string  `json:"evidence,omitempty"`
}

// Case is a rectification case of one enterprise: a red code or a
// failed restrictive indicator that a supervisor follows up to its close.
type Case struct {
	ID         string
	Enterprise string
	Cause      string // CauseRedCode, CauseRestrictiveFail or CauseManual
	Indicator  string // the restrictive indicator, if any
	Reason     string // why it was opened
	OpenedAt   time.Time
	State      CaseState
	Assignee   string    // who follows it (set on acknowledge)
	Deadline   time.Time // by when it must be closed (zero: none yet)
	Plan       string    // the enterprise's rectification plan
	Evidence   []string  // references to the evidence of the plan
	// OverdueAnnounced is set once the deadline passed without a close
	// and the case_overdue event was written; a new deadline clears it.
	OverdueAnnounced bool
	History          []Step
}

// Overdue reports whether c's deadline passed at now without a close.
func (c *Case) Overdue(now time.Time) bool {
	return c.State != CaseClosed && !c.Deadline.IsZero() && now.After(c.Deadline)
}

// ErrCaseNotFound: no case with that id.
var ErrCaseNotFound = errors.New("no such case")

// CaseFilter selects cases; zero fields select all. Active selects the
// cases not closed; Overdue those overdue at Now.
type CaseFilter struct {
	Enterprise string
	State      CaseState
	Active     bool
	Overdue    bool
	Now        time.Time
}

// Cases returns the cases that match f, overdue first, then by
// deadline (none last), then newest opened first.
func (b *Book) Cases(ctx context.Context, f CaseFilter) ([]Case, error) {
	ps, err := read(ctx, b.pts, CaseMeasurement, "enterprise", f.Enterprise)
	if err != nil {
		return nil, fmt.Errorf("read cases: %w", err)
	}
	now := f.Now
	if now.IsZero() {
		now = b.now()
	}
	out := make([]Case, 0, len(ps))
	for _, p := range ps {
		c, err := caseFromPoint(p)
		if err != nil {
			return nil, fmt.Errorf("read cases: %w", err)
		}
		if (f.State != "" && c.State != f.State) || (f.Active && c.State == CaseClosed) || (f.Overdue && !c.Overdue(now)) {
			continue
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, c Case) int {
		ao, co := a.Overdue(now), c.Overdue(now)
		if ao != co {
			if ao {
				return -1
			}
			return 1
		}
		if a.Deadline.IsZero() != c.Deadline.IsZero() {
			if a.Deadline.IsZero() {
				return 1
			}
			return -1
		}
		return cmp.Or(a.Deadline.Compare(c.Deadline), c.OpenedAt.Compare(a.OpenedAt), strings.Compare(a.ID, c.ID))
	})
	return out, nil
}

// Case returns the case with the given id.
func (b *Book) Case(ctx context.Context, id string) (Case, error) {
	p, err := b.one(ctx, CaseMeasurement, id, "case", ErrCaseNotFound)
	if err != nil {
		return Case{}, err
	}
	return caseFromPoint(p)
}

// OpenCase opens a case by hand (a supervisor): cause is CauseManual
// unless given; reason is required.
func (b *Book) OpenCase(ctx context.Context, enterprise, indicator, reason string, who Actor) (Case, error) {
	if who.Role != Supervisor {
		return Case{}, fmt.Errorf("only a supervisor opens a case: %w", ErrState)
	}
	if strings.TrimSpace(reason) == "" {
		return Case{}, &InvalidError{errors.New("a case needs a reason")}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now().UTC()
	c := Case{ID: newID(), Enterprise: enterprise, Cause: CauseManual, Indicator: indicator, Reason: strings.TrimSpace(reason),
		OpenedAt: now, State: CaseOpen}
	c.History = []Step{{At: now, By: who, Action: "opened", State: CaseOpen, Note: c.Reason}}
	return c, b.writeCase(ctx, c)
}

// systemActor is the scorer, which opens cases from its events and
// marks them overdue.
var systemActor = Actor{Name: "scorer", Role: System}

// OpenFromEvent opens a case for a scoring event that calls for one: a
// code turning red, or a restrictive indicator failing. It does nothing
// for other events, or when the enterprise already has a case of that
// cause (and indicator) not closed. The case's id derives from the
// event, so an event delivered again opens nothing new. It reports
// whether it opened one.
func (b *Book) OpenFromEvent(ctx context.Context, e scoring.Event) (Case, bool, error) {
	var cause, reason string
	switch {
	case e.Kind == scoring.EventCodeChange && e.NewCode == redCode && !e.Resolved:
		cause, reason = CauseRedCode, fmt.Sprintf("code turned red (from %s)", cmp.Or(string(e.OldCode), "none"))
	case e.Kind == scoring.EventRestrictiveFail && !e.Resolved:
		cause, reason = CauseRestrictiveFail, fmt.Sprintf("restrictive indicator %s failed", e.Indicator)
	default:
		return Case{}, false, nil
	}
	if e.Reason != "" {
		reason += ": " + e.Reason
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	cs, err := b.Cases(ctx, CaseFilter{Enterprise: e.Enterprise})
	if err != nil {
		return Case{}, false, err
	}
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s\x00%d", e.Enterprise, e.Kind, e.Indicator, e.Time.UnixNano()))
	id := "e" + hex.EncodeToString(h[:])[:15]
	for _, c := range cs {
		if c.ID == id || (c.State != CaseClosed && c.Cause == cause && c.Indicator == e.Indicator) {
			return Case{}, false, nil
		}
	}
	now := b.now().UTC()
	c := Case{ID: id, Enterprise: e.Enterprise, Cause: cause, Indicator: e.Indicator, Reason: reason, OpenedAt: now, State: CaseOpen}
	c.History = []Step{{At: now, By: systemActor, Action: "opened", State: CaseOpen, Note: reason}}
	if err := b.writeCase(ctx, c); err != nil {
		return Case{}, false, err
	}
	return c, true, nil
}

// Acknowledge takes a case on (a supervisor): assignee and deadline are
// required; an acknowledged case may be acknowledged again to change
// them.
func (b *Book) Acknowledge(ctx context.Context, id string, who Actor, assignee string, deadline time.Time, note string) (Case, error) {
	assignee = strings.TrimSpace(assignee)
	if assignee == "" || deadline.IsZero() {
		return Case{}, &InvalidError{errors.New("acknowledging a case needs an assignee and a deadline")}
	}
	return b.step(ctx, id, who, true, func(c *Case, s *Step) error {
		if c.State != CaseOpen && c.State != CaseAcknowledged {
			return fmt.Errorf("case %s is %s; only an open or acknowledged one can be acknowledged: %w", id, c.State, ErrState)
		}
		if !deadline.After(s.At) {
			return &InvalidError{fmt.Errorf("the deadline %s has already passed", deadline.UTC().Format(time.RFC3339))}
		}
		c.State, c.Assignee, c.Deadline, c.OverdueAnnounced = CaseAcknowledged, assignee, deadline.UTC(), false
		s.Action, s.Assignee, s.Deadline, s.Note = "acknowledged", assignee, c.Deadline, note
		return nil
	})
}

// SubmitPlan answers an acknowledged case with a rectification plan and
// references to its evidence (the enterprise of the case, or a
// supervisor on its behalf).
func (b *Book) SubmitPlan(ctx context.Context, id string, who Actor, plan string, evidence []string) (Case, error) {
	plan = strings.TrimSpace(plan)
	if plan == "" {
		return Case{}, &InvalidError{errors.New("a rectification plan needs its text")}
	}
	var ev []string
	for _, e := range evidence {
		if e = strings.TrimSpace(e); e != "" {
			ev = append(ev, e)
		}
	}
	return b.step(ctx, id, who, false, func(c *Case, s *Step) error {
		if c.State != CaseAcknowledged {
			return fmt.Errorf("case %s is %s; a plan answers an acknowledged case: %w", id, c.State, ErrState)
		}
		c.State, c.Plan, c.Evidence = CasePlanSubmitted, plan, ev
		s.Action, s.Plan, s.Evidence = "plan_submitted", plan, ev
		return nil
	})
}

// RejectPlan sends a submitted plan back (a supervisor); note says why.
func (b *Book) RejectPlan(ctx context.Context, id string, who Actor, note string) (Case, error) {
	if strings.TrimSpace(note) == "" {
		return Case{}, &InvalidError{errors.New("rejecting a plan needs a note saying why")}
	}
	return b.step(ctx, id, who, true, func(c *Case, s *Step) error {
		if c.State != CasePlanSubmitted {
			return fmt.Errorf("case %s is %s; only a submitted plan can be rejected: %w", id, c.State, ErrState)
		}
		c.State = CaseAcknowledged
		s.Action, s.Note = "plan_rejected", note
		return nil
	})
}

// Close closes a case (a supervisor), normally once its plan is
// accepted; an open or acknowledged case can be closed too, with a note
// (a mistaken or resolved case).
func (b *Book) Close(ctx context.Context, id string, who Actor, note string) (Case, error) {
	return b.step(ctx, id, who, true, func(c *Case, s *Step) error {
		switch {
		case c.State == CaseClosed:
			return fmt.Errorf("case %s is already closed: %w", id, ErrState)
		case c.State != CasePlanSubmitted && strings.TrimSpace(note) == "":
			return &InvalidError{fmt.Errorf("case %s has no plan; closing it needs a note saying why", id)}
		}
		c.State = CaseClosed
		s.Action, s.Note = "closed", note
		return nil
	})
}

// Reopen reopens a closed case (a supervisor): it is acknowledged again
// with its assignee and a new deadline.
func (b *Book) Reopen(ctx context.Context, id string, who Actor, deadline time.Time, note string) (Case, error) {
	if strings.TrimSpace(note) == "" || deadline.IsZero() {
		return Case{}, &InvalidError{errors.New("reopening a case needs a note saying why and a new deadline")}
	}
	return b.step(ctx, id, who, true, func(c *Case, s *Step) error {
		if c.State != CaseClosed {
			return fmt.Errorf("case %s is %s; only a closed one can be reopened: %w", id, c.State, ErrState)
		}
		if !deadline.After(s.At) {
			return &InvalidError{fmt.Errorf("the deadline %s has already passed", deadline.UTC().Format(time.RFC3339))}
		}
		c.State, c.Deadline, c.OverdueAnnounced = CaseAcknowledged, deadline.UTC(), false
		s.Action, s.Deadline, s.Assignee, s.Note = "reopened", c.Deadline, c.Assignee, note
		return nil
	})
}

// MarkOverdue marks the cases whose deadline passed without a close,
// once each: a history step and a case_overdue event. It returns the
// cases not closed, as they stand after marking (for the metrics).
func (b *Book) MarkOverdue(ctx context.Context) ([]Case, error) {
	return b.MarkOverdueOf(ctx, nil)
}

// MarkOverdueOf is MarkOverdue for the cases of the enterprises keep
// accepts (nil: all), the only ones it returns: with the fleet split
// between replicas, each sweeps its own shard's cases, so none is marked
// by two replicas at once.
func (b *Book) MarkOverdueOf(ctx context.Context, keep func(enterprise string) bool) ([]Case, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now().UTC()
	cs, err := b.Cases(ctx, CaseFilter{Active: true, Now: now})
	if err != nil {
		return nil, err
	}
	if keep != nil {
		cs = slices.DeleteFunc(cs, func(c Case) bool { return !keep(c.Enterprise) })
	}
	for i := range cs {
		c := &cs[i]
		if !c.Overdue(now) || c.OverdueAnnounced {
			continue
		}
		c.OverdueAnnounced = true
		c.History = append(c.History, Step{At: now, By: systemActor, Action: "overdue", State: c.State,
			Note: "deadline " + c.Deadline.Format(time.RFC3339) + " passed"})
		if err := b.writeCase(ctx, *c); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

// step applies one step to a case under the book's lock and stores it.
func (b *Book) step(ctx context.Context, id string, who Actor, supervisorOnly bool, apply func(*Case, *Step) error) (Case, error) {
	if supervisorOnly && who.Role != Supervisor {
		return Case{}, fmt.Errorf("only a supervisor may do this to a case: %w", ErrState)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c, err := b.Case(ctx, id)
	if err != nil {
		return Case{}, err
	}
	if who.Role == Enterprise && who.Enterprise != c.Enterprise {
		return Case{}, fmt.Errorf("case %q: %w", id, ErrCaseNotFound)
	}
	s := Step{At: b.now().UTC(), By: who}
	if err := apply(&c, &s); err != nil {
		return Case{}, err
	}
	s.Note, s.State = strings.TrimSpace(s.Note), c.State
	c.History = append(c.History, s)
	if err := b.writeCase(ctx, c); err != nil {
		return Case{}, err
	}
	return c, nil
}

// writeCase stores c and the event of its last step in one batch, then
// tells onEvent.
func (b *Book) writeCase(ctx context.Context, c Case) error {
	p, err := casePoint(c)
	if err != nil {
		return err
	}
	ev := CaseEvent(c, c.History[len(c.History)-1])
	if err := b.pts.WritePoints(ctx, []store.Point{p, scoring.EventPoint(ev)}); err != nil {
		return fmt.Errorf("store case: %w", err)
	}
	if b.onEvent != nil {
		b.onEvent(ev)
	}
	return nil
}

// CaseEvent is the scoring event of step s of case c. Its reason begins
// with "case <id>".
func CaseEvent(c Case, s Step) scoring.Event {
	kind := map[string]scoring.EventKind{"opened": scoring.EventCaseOpened, "acknowledged": scoring.EventCaseAcknowledged,
		"plan_submitted": scoring.EventCasePlanSubmitted, "plan_rejected": scoring.EventCasePlanRejected,
		"closed": scoring.EventCaseClosed, "reopened": scoring.EventCaseReopened, "overdue": scoring.EventCaseOverdue}[s.Action]
	reason := fmt.Sprintf("case %s %s by %s", c.ID, strings.ReplaceAll(s.Action, "_", " "), s.By)
	switch s.Action {
	case "opened":
		reason = fmt.Sprintf("case %s opened by %s: %s", c.ID, s.By, c.Reason)
	case "acknowledged", "reopened":
		reason += fmt.Sprintf("; assigned to %s, due %s", c.Assignee, c.Deadline.Format(time.RFC3339))
	case "overdue":
		reason = fmt.Sprintf("case %s is overdue: due %s, %s", c.ID, c.Deadline.Format(time.RFC3339), c.State)
	}
	if s.Note != "" && s.Action != "opened" && s.Action != "overdue" {
		reason += ": " + s.Note
	}
	return scoring.Event{Time: s.At, Enterprise: c.Enterprise, Kind: kind, Indicator: c.Indicator,
		Resolved: s.Action == "closed", Reason: reason}
}

// caseJSON is a case as stored in the point's "record" field.
type caseJSON struct {
	Cause            string    `json:"cause"`
	Indicator        string    `json:"indicator,omitempty"`
	Reason           string    `json:"reason"`
	State            CaseState `json:"state"`
	Assignee         string    `json:"assignee,omitempty"`
	Deadline         time.Time `json:"deadline,omitzero"`
	Plan             string    `json:"plan,omitempty"`
	Evidence         []string  `json:"evidence,omitempty"`
	OverdueAnnounced bool      `json:"overdue_announced,omitempty"`
	History          []Step    `json:"history"`
}

func casePoint(c Case) (store.Point, error) {
	body, err := json.Marshal(caseJSON{Cause: c.Cause, Indicator: c.Indicator, Reason: c.Reason, State: c.State,
		Assignee: c.Assignee, Deadline: c.Deadline, Plan: c.Plan, Evidence: c.Evidence, OverdueAnnounced: c.OverdueAnnounced, History: c.History})
	if err != nil {
		return store.Point{}, fmt.Errorf("encode case %s: %w", c.ID, err)
	}
	return store.Point{Measurement: CaseMeasurement, Time: c.OpenedAt,
		Tags:   map[string]string{"enterprise": c.Enterprise, "id": c.ID},
		Fields: map[string]any{"record": string(body), "state": string(c.State)}}, nil
}

func caseFromPoint(p store.Point) (Case, error) {
	body, _ := p.Fields["record"].(string)
	var j caseJSON
	if err := json.Unmarshal([]byte(body), &j); err != nil {
		return Case{}, fmt.Errorf("case %s of %s: %w", p.Tags["id"], p.Tags["enterprise"], err)
	}
	return Case{ID: p.Tags["id"], Enterprise: p.Tags["enterprise"], Cause: j.Cause, Indicator: j.Indicator, Reason: j.Reason,
		OpenedAt: p.Time.UTC(), State: j.State, Assignee: j.Assignee, Deadline: j.Deadline, Plan: j.Plan, Evidence: j.Evidence,
		OverdueAnnounced: j.OverdueAnnounced, History: j.History}, nil
}

// redCode is the policy's code that opens a case when an enterprise
// turns to it (the shipped policies name it "red").
const redCode scoring.Code = "red"
