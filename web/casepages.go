package web

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/cleanprod/cleanprod/review"
)

// casePageData is what templates/case.html shows.
type casePageData struct {
	clock
	Case CaseDTO
	Name string // the enterprise's name
	Role Role
	// The forms shown: the steps the token may take in the case's state.
	CanAck, CanPlan, CanReject, CanClose bool
	Error                                string // a refused step's message
}

// caseRow is a case in the overview's list.
type caseRow struct {
	CaseDTO
	Name string
}

// causeZH names what opened a case.
func causeZH(c string) string {
	return map[string]string{review.CauseRedCode: "红码", review.CauseRestrictiveFail: "限定性指标不达标", review.CauseManual: "监管部门立案"}[c]
}

func (s *server) casePage(c *gin.Context) {
	k, ok := s.caseOf(c)
	if ok {
		s.renderCase(c, http.StatusOK, k, "")
	}
}

func (s *server) renderCase(c *gin.Context, status int, k review.Case, msg string) {
	p := principal(c)
	sup := p.Role == RoleSupervisor
	pg := casePageData{clock: clock{localZone(s.snapshot(c).Standard.UTCOffset)}, Case: caseDTO(k, s.now(), s.loc(c), true), Name: k.Enterprise,
		Role: p.Role, Error: msg,
		CanAck:    sup && (k.State == review.CaseOpen || k.State == review.CaseAcknowledged),
		CanPlan:   k.State == review.CaseAcknowledged,
		CanReject: sup && k.State == review.CasePlanSubmitted,
		CanClose:  sup && k.State != review.CaseClosed}
	pg.Name = s.enterpriseName(c, k.Enterprise)
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, "case.html", &pg); err != nil {
		s.fail(c, fmt.Errorf("render case: %w", err))
		return
	}
	c.Header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	c.Header("Cache-Control", "no-store")
	c.Data(status, "text/html; charset=utf-8", b.Bytes())
}

// caseForm takes a step from the case page's form and shows the page
// again: after a step, through a redirect (so a reload does not post it
// twice); after a refusal, with its message and status.
func (s *server) caseForm(c *gin.Context) {
	k, ok := s.caseOf(c)
	if !ok {
		return
	}
	step := c.Param("step")
	if step != "plan" && principal(c).Role != RoleSupervisor {
		s.renderCase(c, http.StatusForbidden, k, "只有监管部门可以执行此操作。 Only a supervisor's token may do this.")
		return
	}
	var evidence []string
	for _, line := range strings.Split(c.PostForm("evidence"), "\n") {
		evidence = append(evidence, strings.TrimSpace(line))
	}
	in := stepInput{Assignee: c.PostForm("assignee"), Deadline: c.PostForm("deadline"), Note: c.PostForm("note"),
		Plan: c.PostForm("plan"), Evidence: evidence}
	if step == "reopen" {
		step = "" // not from the page
	}
	next, err := s.applyStep(c, k, step, in)
	if err != nil {
		status, msg := http.StatusInternalServerError, "内部错误 internal error; the server log has the details"
		var ae *apiError
		if errors.As(err, &ae) {
			status, msg = ae.Status, ae.Message
		} else {
			s.log.Error("web: case step from a form failed", "case", k.ID, "step", step, "err", err)
		}
		s.renderCase(c, status, k, msg)
		return
	}
	c.Redirect(http.StatusSeeOther, "/cases/"+next.ID)
}

// enterpriseName names an enterprise in Chinese and English as the
// registry has them (its id when it has neither).
func (s *server) enterpriseName(c *gin.Context, id string) string {
	ent, ok := s.registry(c).Enterprise(id)
	switch {
	case !ok:
		return id
	case ent.NameZH != "" && ent.Name != "":
		return ent.NameZH + " " + ent.Name
	case ent.NameZH != "":
		return ent.NameZH
	case ent.Name != "":
		return ent.Name
	}
	return id
}
