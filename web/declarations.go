package web

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/review"
	"github.com/cleanprod/cleanprod/scoring"
)

// DeclarationsDTO is the answer of GET .../enterprises/{id}/declarations:
// by indicator, then newest valid_from first. Declarations are paged;
// Pending and Declarable are of them all, on every page.
type DeclarationsDTO struct {
	Enterprise   string           `json:"enterprise"`
	Declarations []DeclarationDTO `json:"declarations"`
	// Pending counts the declarations that wait for a supervisor.
	Pending    int            `json:"pending"`
	Declarable []IndicatorRef `json:"declarable"`
	Page
}

// DeclarationList is the answer of GET /api/v1/declarations: oldest
// submission first.
type DeclarationList struct {
	Declarations []DeclarationDTO `json:"declarations"`
	Page
}

// DeclarationDTO is one declaration with its review.
type DeclarationDTO struct {
	ID            string   `json:"id"`
	Enterprise    string   `json:"enterprise"`
	Indicator     string   `json:"indicator"`        // "" for an absent amount
	Absent        string   `json:"absent,omitempty"` // an amount the enterprise does not have, e.g. natural_gas
	NameEN        string   `json:"name_en"`
	NameZH        string   `json:"name_zh"`
	Restrictive   bool     `json:"restrictive"`
	Level         *string  `json:"level"`
	Value         *float64 `json:"value"`
	NotApplicable bool     `json:"not_applicable"`
	Evidence      string   `json:"evidence"`
	// ValidFrom and ValidTo (null: open-ended) are dates in the
	// platform's zone; the declaration holds from the start of
	// ValidFrom until the start of ValidTo.
	ValidFrom Date  `json:"valid_from"`
	ValidTo   *Date `json:"valid_to"`
	// Auditor and ReportRef make a declaration of the audit indicator an
	// audit record; only an accepted one restarts the audit cycle.
	Auditor   string `json:"auditor,omitempty"`
	ReportRef string `json:"report_ref,omitempty"`
	// State is submitted, accepted, rejected or superseded (accepted, and
	// replaced by a later accepted one of the same indicator and
	// valid_from). Only accepted declarations are scored.
	State       string     `json:"state"`
	SubmittedBy string     `json:"submitted_by"`
	SubmittedAt time.Time  `json:"submitted_at"`
	ReviewedBy  *string    `json:"reviewed_by"`
	ReviewedAt  *time.Time `json:"reviewed_at"`
	ReviewNote  string     `json:"review_note,omitempty"`
	// InForce: accepted, valid now and the newest valid one of its
	// indicator.
	InForce bool `json:"in_force"`
	// LevelDescription is the standard's text of the declared level.
	LevelDescription string `json:"level_description,omitempty"`
}

// DeclarationInput is the body of POST .../declarations.
type DeclarationInput struct {
	// Indicator, or Absent: an amount the formulas read (natural_gas,
	// or quantity@workshop) that the enterprise does not have; it then
	// counts as 0.
	Indicator string   `json:"indicator,omitempty"`
	Absent    string   `json:"absent,omitempty"`
	Level     string   `json:"level,omitempty"`
	Value     *float64 `json:"value,omitempty"`
	// Unit, when given, must be the indicator's unit: a value is never
	// converted or guessed.
	Unit          string `json:"unit,omitempty"`
	NotApplicable bool   `json:"not_applicable,omitempty"`
	Evidence      string `json:"evidence"`
	ValidFrom     string `json:"valid_from"`
	ValidTo       string `json:"valid_to,omitempty"`
	Auditor       string `json:"auditor,omitempty"`
	ReportRef     string `json:"report_ref,omitempty"`
}

// DeclarationCreated is the answer of POST .../declarations.
type DeclarationCreated struct {
	Declaration DeclarationDTO `json:"declaration"`
	// Rescoring says the engine was asked to re-evaluate the enterprise
	// (an accepted declaration); GET /api/v1/enterprises/{id} shows the
	// new score within a second or so. A submitted one waits for review.
	Rescoring bool `json:"rescoring"`
}

// ReviewInput is the body of POST /api/v1/declarations/{did}/accept and
// /reject.
type ReviewInput struct {
	Note string `json:"note"`
}

func (s *server) declarationDTO(c *gin.Context, r review.Record, inForce bool) DeclarationDTO {
	return declarationDTO(s.snapshot(c).Standard, r, inForce)
}

func declarationDTO(std *scoring.Standard, r review.Record, inForce bool) DeclarationDTO {
	d := &r.Declaration
	loc := localZone(std.UTCOffset)
	out := DeclarationDTO{ID: r.ID, Enterprise: d.Enterprise, Indicator: d.Indicator, Absent: d.Absent, Level: levelPtr(d.Level), Value: d.Value,
		NotApplicable: d.NotApplicable, Evidence: d.Evidence, ValidFrom: dateOf(d.ValidFrom, loc), ValidTo: datePtr(d.ValidTo, loc),
		Auditor: d.Auditor, ReportRef: d.ReportRef, State: string(r.State), SubmittedBy: r.SubmittedBy.String(),
		SubmittedAt: r.SubmittedAt, ReviewedAt: timePtr(r.ReviewedAt), ReviewNote: r.Note, InForce: inForce}
	if !r.ReviewedAt.IsZero() {
		by := r.ReviewedBy.String()
		out.ReviewedBy = &by
	}
	if ind, ok := std.Indicator(d.Indicator); ok {
		out.NameEN, out.NameZH, out.Restrictive = ind.NameEN, ind.NameZH, ind.Restrictive
		if d.Level >= scoring.LevelI && d.Level <= scoring.LevelIII {
			out.LevelDescription = ind.Descriptions[d.Level-1]
		}
	}
	return out
}

func (s *server) declarationDTOs(c *gin.Context, rs []review.Record, now time.Time) []DeclarationDTO {
	return declarationDTOs(s.snapshot(c).Standard, rs, now)
}

// declarationDTOs shapes records, marking the ones in force at now.
func declarationDTOs(std *scoring.Standard, rs []review.Record, now time.Time) []DeclarationDTO {
	type key struct{ ent, subject string }
	current := map[key]int{} // the accepted one in force, by indicator
	for i, r := range rs {
		if r.State != review.Accepted || !r.Declaration.ValidAt(now) {
			continue
		}
		k := key{r.Declaration.Enterprise, r.Declaration.Subject()}
		if j, ok := current[k]; !ok || r.Declaration.ValidFrom.After(rs[j].Declaration.ValidFrom) {
			current[k] = i
		}
	}
	out := make([]DeclarationDTO, 0, len(rs))
	for i, r := range rs {
		j, ok := current[key{r.Declaration.Enterprise, r.Declaration.Subject()}]
		out = append(out, declarationDTO(std, r, ok && j == i))
	}
	return out
}

func (s *server) needBook(c *gin.Context) bool {
	if s.Declarations == nil {
		s.fail(c, errorf(http.StatusServiceUnavailable, codeUnavailable, "declarations are not kept by this server (no store)"))
		return false
	}
	return true
}

func (s *server) listDeclarations(c *gin.Context) {
	if !s.needBook(c) {
		return
	}
	id := c.Param("id")
	pg, err := s.pageOf(c, "declarations|"+id, defaultLimit, maxLimit)
	if err != nil {
		s.fail(c, err)
		return
	}
	rs, err := s.Declarations.Records(c.Request.Context(), review.Filter{Enterprise: id})
	if err != nil {
		s.fail(c, err)
		return
	}
	out := DeclarationsDTO{Enterprise: id, Declarable: []IndicatorRef{}}
	out.Declarations, out.Page = pageDeclarations(s, pg, rs, s.declarationDTOs(c, rs, s.now()), func(r review.Record) []string {
		return []string{r.Declaration.Subject(), keyDesc(keyTime(r.Declaration.ValidFrom)), keyDesc(keyTime(r.SubmittedAt)), r.ID}
	})
	for _, r := range rs {
		if r.State == review.Submitted {
			out.Pending++
		}
	}
	for _, ind := range s.snapshot(c).Standard.Indicators {
		if !ind.Metered() || ind.Restrictive {
			// A metered indicator is declared only as not applicable, and
			// that waits for review like any other declaration.
			out.Declarable = append(out.Declarable, IndicatorRef{ID: ind.ID, NameZH: ind.NameZH, NameEN: ind.NameEN, Unit: ind.Unit, Direction: string(ind.Direction)})
		}
	}
	c.JSON(http.StatusOK, out)
}

// fleetDeclarations lists declarations across the enterprises the token
// sees, by default those waiting for review.
func (s *server) fleetDeclarations(c *gin.Context) {
	if !s.needBook(c) {
		return
	}
	state, err := enumParam(c, "state", string(review.Submitted), string(review.Submitted), string(review.Accepted),
		string(review.Rejected), string(review.Superseded), "all")
	if err != nil {
		s.fail(c, err)
		return
	}
	ent, err := s.enterpriseScope(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	pg, err := s.pageOf(c, "fleet-declarations|"+ent+"|"+state, defaultLimit, maxLimit)
	if err != nil {
		s.fail(c, err)
		return
	}
	f := review.Filter{Enterprise: ent, State: review.State(state)}
	if state == "all" {
		f.State = ""
	}
	rs, err := s.Declarations.Records(c.Request.Context(), f)
	if err != nil {
		s.fail(c, err)
		return
	}
	// Oldest submission first: the queue a supervisor works through.
	var out DeclarationList
	out.Declarations, out.Page = pageDeclarations(s, pg, rs, s.declarationDTOs(c, rs, s.now()), func(r review.Record) []string {
		return []string{keyTime(r.SubmittedAt), r.ID}
	})
	c.JSON(http.StatusOK, out)
}

// pageDeclarations pages the declarations ds of the records rs (which
// they are made of, one to one) by the records' key.
func pageDeclarations(s *server, pg page, rs []review.Record, ds []DeclarationDTO, key func(review.Record) []string) ([]DeclarationDTO, Page) {
	idx := make([]int, len(rs))
	for i := range idx {
		idx[i] = i
	}
	idx, page := paginate(s, pg, idx, func(i int) []string { return key(rs[i]) })
	out := make([]DeclarationDTO, 0, len(idx))
	for _, i := range idx {
		out = append(out, ds[i])
	}
	return out, page
}

func (s *server) addDeclaration(c *gin.Context) {
	if !s.needBook(c) {
		return
	}
	if ct := c.ContentType(); ct != "application/json" {
		s.fail(c, errorf(http.StatusUnsupportedMediaType, codeUnsupported, "send the declaration as application/json, not %q", ct))
		return
	}
	var in DeclarationInput
	if err := decodeJSON(c, &in); err != nil {
		s.fail(c, err)
		return
	}
	snap := s.snapshot(c)
	std := snap.Standard
	d := scoring.Declaration{Enterprise: c.Param("id"), Indicator: in.Indicator, Absent: strings.TrimSpace(in.Absent), Value: in.Value,
		NotApplicable: in.NotApplicable, Evidence: strings.TrimSpace(in.Evidence), Auditor: strings.TrimSpace(in.Auditor),
		ReportRef: strings.TrimSpace(in.ReportRef)}
	if (in.Indicator == "") == (d.Absent == "") {
		s.fail(c, errorf(http.StatusBadRequest, codeBadRequest, "give indicator, or absent (an amount the enterprise does not have), not both"))
		return
	}
	ind, ok := std.Indicator(in.Indicator)
	if !ok && d.Absent == "" {
		s.fail(c, errorf(http.StatusUnprocessableEntity, codeInvalid, "no indicator %q in standard %s", in.Indicator, std.ID))
		return
	}
	if in.Unit != "" && (ind == nil || in.Value == nil || in.Unit != ind.Unit) {
		want := "no unit: only a declared value has one"
		if ind != nil && ind.Kind == scoring.Quantitative && in.Value != nil {
			want = fmt.Sprintf("%s is declared in %s", ind.ID, ind.Unit)
		}
		s.fail(c, errorf(http.StatusUnprocessableEntity, codeInvalid, "unit %q: %s", in.Unit, want))
		return
	}
	if in.Level != "" && ind == nil {
		s.fail(c, errorf(http.StatusUnprocessableEntity, codeInvalid, "an absent amount has no level"))
		return
	}
	if in.Level != "" {
		l, err := parseDeclaredLevel(in.Level, ind)
		if err != nil {
			s.fail(c, err)
			return
		}
		d.Level = l
	}
	var err error
	if in.ValidFrom == "" {
		s.fail(c, errorf(http.StatusBadRequest, codeBadRequest, "valid_from is required"))
		return
	}
	if d.ValidFrom, err = parseTime("valid_from", in.ValidFrom, s.loc(c)); err != nil {
		s.fail(c, err)
		return
	}
	if in.ValidTo != "" {
		if d.ValidTo, err = parseTime("valid_to", in.ValidTo, s.loc(c)); err != nil {
			s.fail(c, err)
			return
		}
	}
	now := s.now()
	if audit := snap.Policy.LastAuditIndicator; audit != "" && d.Indicator == audit {
		switch {
		case d.Level == scoring.NoLevel:
			s.fail(c, errorf(http.StatusUnprocessableEntity, codeInvalid, "%s is an audit record: give its level", audit))
			return
		case d.Auditor == "" || d.ReportRef == "":
			s.fail(c, errorf(http.StatusUnprocessableEntity, codeInvalid, "%s is an audit record: give auditor and report_ref (the audit report's reference); valid_from is the audit's date", audit))
			return
		case d.ValidFrom.After(now):
			s.fail(c, errorf(http.StatusUnprocessableEntity, codeInvalid, "%s: the audit's date (valid_from %s) is in the future", audit, in.ValidFrom))
			return
		}
	}
	if d.ValidFrom.After(now.AddDate(1, 0, 0)) {
		s.fail(c, errorf(http.StatusUnprocessableEntity, codeInvalid, "valid_from %s is more than a year ahead", in.ValidFrom))
		return
	}
	p := principal(c)
	who := review.Actor{Name: p.Name, Role: review.Enterprise}
	if p.Role == RoleSupervisor {
		who.Role = review.Supervisor
	}
	r, err := s.Declarations.Submit(c.Request.Context(), d, who)
	if err != nil {
		s.fail(c, reviewError(err))
		return
	}
	accepted := r.State == review.Accepted
	if accepted {
		s.Scorer.ReloadDeclarations()
	}
	s.log.Info("web: declaration stored", "id", r.ID, "enterprise", d.Enterprise, "indicator", d.Indicator, "by", who.String(), "state", r.State)
	c.JSON(http.StatusCreated, DeclarationCreated{Declaration: s.declarationDTO(c, r, accepted && d.ValidAt(now)), Rescoring: accepted})
}

// parseDeclaredLevel reads a level, or yes/no for a yes/no gate.
func parseDeclaredLevel(s string, ind *scoring.Indicator) (scoring.Level, error) {
	if ind.Gate() {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "yes":
			return scoring.LevelI, nil
		case "no":
			return scoring.BelowIII, nil
		}
	}
	l, err := scoring.ParseLevel(s)
	if err != nil {
		return 0, errorf(http.StatusUnprocessableEntity, codeInvalid, "%s: %v", ind.ID, err)
	}
	return l, nil
}

func (s *server) acceptDeclaration(c *gin.Context) { s.reviewDeclaration(c, true) }
func (s *server) rejectDeclaration(c *gin.Context) { s.reviewDeclaration(c, false) }

func (s *server) reviewDeclaration(c *gin.Context, accept bool) {
	if !s.needBook(c) {
		return
	}
	// The owner of the declaration's enterprise reviews it, so that its
	// scorer reloads the declarations at once.
	if s.sharded() && registry.ValidID(c.Param("did")) {
		if rec, err := s.Declarations.Record(c.Request.Context(), c.Param("did")); err == nil && s.forward(c, rec.Declaration.Enterprise) {
			return
		}
	}
	var in ReviewInput
	if c.Request.ContentLength != 0 {
		if ct := c.ContentType(); ct != "application/json" {
			s.fail(c, errorf(http.StatusUnsupportedMediaType, codeUnsupported, "send the review as application/json, not %q", ct))
			return
		}
		if err := decodeJSON(c, &in); err != nil {
			s.fail(c, err)
			return
		}
	}
	p := principal(c)
	who := review.Actor{Name: p.Name, Role: review.Supervisor}
	id := c.Param("did")
	if !registry.ValidID(id) {
		s.fail(c, errorf(http.StatusNotFound, codeNotFound, "no declaration %q", id))
		return
	}
	ctx := c.Request.Context()
	rec, err := s.Declarations.Record(ctx, id)
	if err != nil {
		s.fail(c, reviewError(err))
		return
	}
	if _, ok := s.registry(c).Enterprise(rec.Declaration.Enterprise); !ok {
		s.fail(c, errorf(http.StatusConflict, codeConflict, "declaration %s is of %q, which is not in the gateway registry", id, rec.Declaration.Enterprise))
		return
	}
	var r review.Record
	if accept {
		r, err = s.Declarations.Accept(ctx, id, who, in.Note)
	} else {
		r, err = s.Declarations.Reject(ctx, id, who, in.Note)
	}
	if err != nil {
		s.fail(c, reviewError(err))
		return
	}
	s.Scorer.ReloadDeclarations()
	s.log.Info("web: declaration reviewed", "id", r.ID, "enterprise", r.Declaration.Enterprise, "indicator", r.Declaration.Indicator,
		"by", who.String(), "state", r.State)
	c.JSON(http.StatusOK, s.declarationDTO(c, r, r.State == review.Accepted && r.Declaration.ValidAt(s.now())))
}

// reviewError maps the book's errors to API errors.
func reviewError(err error) error {
	var inv *review.InvalidError
	switch {
	case errors.As(err, &inv):
		return errorf(http.StatusUnprocessableEntity, codeInvalid, "%v", err)
	case errors.Is(err, review.ErrNotFound):
		return errorf(http.StatusNotFound, codeNotFound, "%v", err)
	case errors.Is(err, review.ErrState):
		return errorf(http.StatusConflict, codeConflict, "%v", err)
	}
	return err
}
