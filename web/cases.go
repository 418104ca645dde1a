package web

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/review"
)

// CaseList is the answer of GET /api/v1/cases: overdue first, then by
// deadline (none last), then newest opened first. A walk through the
// pages keeps the order of its first page's time: a case that turns
// overdue meanwhile is not sent twice.
type CaseList struct {
	Cases []CaseDTO `json:"cases"`
	Page
}

// CaseDTO is one rectification case (整改). History is in the answer of
// GET /api/v1/cases/{cid} and of the steps, not in lists.
type CaseDTO struct {
	ID         string `json:"id"`
	Enterprise string `json:"enterprise"`
	// Cause is red_code, restrictive_fail or manual.
	Cause     string `json:"cause"`
	Indicator string `json:"indicator,omitempty"`
	Reason    string `json:"reason"`
	// State is open, acknowledged, plan_submitted or closed; StateZH
	// names it in Chinese.
	State    string    `json:"state"`
	StateZH  string    `json:"state_zh"`
	OpenedAt time.Time `json:"opened_at"`
	Assignee string    `json:"assignee,omitempty"`
	// Deadline is the last day of the case (a date in the platform's
	// zone); DeadlineAt the instant it ends, the next day's local
	// midnight for a deadline given as a date.
	Deadline   *Date      `json:"deadline"`
	DeadlineAt *time.Time `json:"deadline_at"`
	// Overdue: the deadline passed and the case is not closed.
	Overdue  bool          `json:"overdue"`
	Plan     string        `json:"plan,omitempty"`
	Evidence []string      `json:"evidence,omitempty"`
	History  []CaseStepDTO `json:"history,omitempty"`
}

// CaseStepDTO is one step of a case: who did what and when.
type CaseStepDTO struct {
	At       time.Time `json:"at"`
	By       string    `json:"by"` // role and token name, e.g. "supervisor bureau"
	Action   string    `json:"action"`
	State    string    `json:"state"` // after the step
	Note     string    `json:"note,omitempty"`
	Assignee string    `json:"assignee,omitempty"`
	// Deadline and DeadlineAt: as in the case, when the step set them.
	Deadline   *Date      `json:"deadline,omitempty"`
	DeadlineAt *time.Time `json:"deadline_at,omitempty"`
	Plan       string     `json:"plan,omitempty"`
	Evidence   []string   `json:"evidence,omitempty"`
}

// CaseOpenInput opens a case by hand.
type CaseOpenInput struct {
	Reason    string `json:"reason"`
	Indicator string `json:"indicator,omitempty"`
}

// CaseAckInput acknowledges (or reopens) a case. Deadline is a date
// (2026-12-20: the end of that day in the platform's zone) or an RFC
// 3339 time.
type CaseAckInput struct {
	Assignee string `json:"assignee,omitempty"` // required to acknowledge
	Deadline string `json:"deadline"`
	Note     string `json:"note,omitempty"`
}

// CasePlanInput is an enterprise's rectification plan.
type CasePlanInput struct {
	Plan     string   `json:"plan"`
	Evidence []string `json:"evidence,omitempty"` // references: file names, document numbers, links
}

// CaseNoteInput closes a case or rejects its plan.
type CaseNoteInput struct {
	Note string `json:"note"`
}

// caseDTO shapes a case at now, its dates in loc.
func caseDTO(c review.Case, now time.Time, loc *time.Location, history bool) CaseDTO {
	d := CaseDTO{ID: c.ID, Enterprise: c.Enterprise, Cause: c.Cause, Indicator: c.Indicator, Reason: c.Reason,
		State: string(c.State), StateZH: caseStateZH(string(c.State)), OpenedAt: c.OpenedAt, Assignee: c.Assignee,
		Overdue: c.Overdue(now), Plan: c.Plan, Evidence: c.Evidence}
	if !c.Deadline.IsZero() {
		t := c.Deadline
		d.Deadline, d.DeadlineAt = dayOf(t, loc), &t
	}
	if history {
		for _, s := range c.History {
			st := CaseStepDTO{At: s.At, By: s.By.String(), Action: s.Action, State: string(s.State), Note: s.Note,
				Assignee: s.Assignee, Plan: s.Plan, Evidence: s.Evidence}
			if !s.Deadline.IsZero() {
				t := s.Deadline
				st.Deadline, st.DeadlineAt = dayOf(t, loc), &t
			}
			d.History = append(d.History, st)
		}
	}
	return d
}

// actor is who acts on a case through this request.
func actor(c *gin.Context) review.Actor {
	p := principal(c)
	if p.Role == RoleSupervisor {
		return review.Actor{Name: p.Name, Role: review.Supervisor}
	}
	return review.Actor{Name: p.Name, Role: review.Enterprise, Enterprise: p.Enterprise}
}

// listCases lists the cases the token sees: by default those not closed.
func (s *server) listCases(c *gin.Context) {
	if !s.needBook(c) {
		return
	}
	state, err := enumParam(c, "state", "active", "active", string(review.CaseOpen), string(review.CaseAcknowledged),
		string(review.CasePlanSubmitted), string(review.CaseClosed), "all")
	if err != nil {
		s.fail(c, err)
		return
	}
	overdue, err := enumParam(c, "overdue", "false", "true", "false")
	if err != nil {
		s.fail(c, err)
		return
	}
	ent, err := s.enterpriseScope(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	pg, err := s.pageOf(c, "cases|"+ent+"|"+state+"|"+overdue, defaultLimit, maxLimit)
	if err != nil {
		s.fail(c, err)
		return
	}
	now := s.now()
	f := review.CaseFilter{Enterprise: ent, Overdue: overdue == "true", Now: now}
	switch state {
	case "active":
		f.Active = true
	case "all":
	default:
		f.State = review.CaseState(state)
	}
	cs, err := s.Declarations.Cases(c.Request.Context(), f)
	if err != nil {
		s.fail(c, err)
		return
	}
	cs, page := paginate(s, pg, cs, func(k review.Case) []string {
		return []string{keyFlag(k.Overdue(pg.at)), keyFlag(!k.Deadline.IsZero()), keyTime(k.Deadline), keyDesc(keyTime(k.OpenedAt)), k.ID}
	})
	out := CaseList{Cases: []CaseDTO{}, Page: page}
	for _, k := range cs {
		out.Cases = append(out.Cases, caseDTO(k, now, s.loc(c), false))
	}
	c.JSON(http.StatusOK, out)
}

// caseOf reads the case of :cid; another enterprise's case is not found,
// so that its existence does not leak.
func (s *server) caseOf(c *gin.Context) (review.Case, bool) {
	if !s.needBook(c) {
		return review.Case{}, false
	}
	id := c.Param("cid")
	if !registry.ValidID(id) {
		s.fail(c, errorf(http.StatusNotFound, codeNotFound, "no case %q", id))
		return review.Case{}, false
	}
	k, err := s.Declarations.Case(c.Request.Context(), id)
	if err == nil && !principal(c).Sees(k.Enterprise) {
		err = review.ErrCaseNotFound
	}
	if err != nil {
		s.fail(c, caseError(err))
		return review.Case{}, false
	}
	return k, true
}

func (s *server) getCase(c *gin.Context) {
	if k, ok := s.caseOf(c); ok {
		c.JSON(http.StatusOK, caseDTO(k, s.now(), s.loc(c), true))
	}
}

func (s *server) openCase(c *gin.Context) {
	if !s.needBook(c) {
		return
	}
	if _, ok := s.registry(c).Enterprise(c.Param("id")); !ok {
		s.fail(c, errorf(http.StatusNotFound, codeNotFound, "no enterprise %q in the gateway registry", c.Param("id")))
		return
	}
	var in CaseOpenInput
	if err := decodeJSON(c, &in); err != nil {
		s.fail(c, err)
		return
	}
	if in.Indicator != "" {
		if _, ok := s.snapshot(c).Standard.Indicator(in.Indicator); !ok {
			s.fail(c, errorf(http.StatusUnprocessableEntity, codeInvalid, "no indicator %q in the standard", in.Indicator))
			return
		}
	}
	k, err := s.Declarations.OpenCase(c.Request.Context(), c.Param("id"), in.Indicator, in.Reason, actor(c))
	if err != nil {
		s.fail(c, caseError(err))
		return
	}
	s.log.Info("web: case opened", "case", k.ID, "enterprise", k.Enterprise, "by", actor(c).String())
	c.JSON(http.StatusCreated, caseDTO(k, s.now(), s.loc(c), true))
}

func (s *server) acknowledgeCase(c *gin.Context) { s.caseStep(c, "acknowledge") }
func (s *server) submitCasePlan(c *gin.Context)  { s.caseStep(c, "plan") }
func (s *server) rejectCasePlan(c *gin.Context)  { s.caseStep(c, "reject-plan") }
func (s *server) closeCase(c *gin.Context)       { s.caseStep(c, "close") }
func (s *server) reopenCase(c *gin.Context)      { s.caseStep(c, "reopen") }

// stepInput is what any step may carry.
type stepInput struct {
	Assignee, Deadline, Note, Plan string
	Evidence                       []string
}

// caseStep decodes a step's JSON body and applies it. The route table
// lets only supervisors acknowledge, reject, close and reopen; the book
// refuses them to anyone else again.
func (s *server) caseStep(c *gin.Context, step string) {
	k, ok := s.caseOf(c)
	if !ok {
		return
	}
	var in stepInput
	var err error
	switch step {
	case "acknowledge", "reopen":
		var j CaseAckInput
		err = decodeJSON(c, &j)
		in = stepInput{Assignee: j.Assignee, Deadline: j.Deadline, Note: j.Note}
	case "plan":
		var j CasePlanInput
		err = decodeJSON(c, &j)
		in = stepInput{Plan: j.Plan, Evidence: j.Evidence}
	default:
		var j CaseNoteInput
		if c.Request.ContentLength != 0 {
			err = decodeJSON(c, &j)
		}
		in = stepInput{Note: j.Note}
	}
	if err == nil {
		k, err = s.applyStep(c, k, step, in)
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, caseDTO(k, s.now(), s.loc(c), true))
}

// applyStep applies step to case k on behalf of the request's token.
func (s *server) applyStep(c *gin.Context, k review.Case, step string, in stepInput) (review.Case, error) {
	ctx, who := c.Request.Context(), actor(c)
	var deadline time.Time
	if step == "acknowledge" || step == "reopen" {
		v := strings.TrimSpace(in.Deadline)
		if v == "" {
			return k, errorf(http.StatusUnprocessableEntity, codeInvalid, "deadline is required: a date (2026-12-20) or an RFC 3339 time")
		}
		t, err := parseTime("deadline", v, s.loc(c))
		if err != nil {
			return k, err
		}
		if !strings.Contains(v, "T") {
			t = t.AddDate(0, 0, 1) // a date: by the end of that day
		}
		deadline = t
	}
	var err error
	switch step {
	case "acknowledge":
		k, err = s.Declarations.Acknowledge(ctx, k.ID, who, in.Assignee, deadline, in.Note)
	case "reopen":
		k, err = s.Declarations.Reopen(ctx, k.ID, who, deadline, in.Note)
	case "plan":
		k, err = s.Declarations.SubmitPlan(ctx, k.ID, who, in.Plan, in.Evidence)
	case "reject-plan":
		k, err = s.Declarations.RejectPlan(ctx, k.ID, who, in.Note)
	case "close":
		k, err = s.Declarations.Close(ctx, k.ID, who, in.Note)
	default:
		return k, errorf(http.StatusNotFound, codeNotFound, "no step %q of a case", step)
	}
	if err != nil {
		return k, caseError(err)
	}
	s.log.Info("web: case step", "case", k.ID, "enterprise", k.Enterprise, "step", step, "by", who.String(), "state", k.State)
	return k, nil
}

// caseError maps the book's case errors to API errors.
func caseError(err error) error {
	if errors.Is(err, review.ErrCaseNotFound) {
		return errorf(http.StatusNotFound, codeNotFound, "%v", err)
	}
	return reviewError(err)
}
