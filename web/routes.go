package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// access is who may call a route.
type access int

const (
	public        access = iota // anyone
	authenticated               // any valid token; the handler scopes what it shows
	ownEnterprise               // a token that sees the enterprise named by :id
	supervisor                  // a supervisor's token
)

// route is one entry of the route table: what gin serves and what the
// OpenAPI description says about it.
type route struct {
	method, path string
	access       access
	page         bool // a browser page: a ?token= is moved into a cookie
	// form is a browser form's POST: the cookie is accepted when the
	// request's Origin is this server (a form posted from another site
	// is refused; the cookie is SameSite=Strict as well).
	form        bool
	summary     string
	description string
	tag         string
	params      []param
	body        any      // JSON request body (a value of its type)
	out         any      // JSON response body on success (a value of its type)
	produces    []string // content types on success (default application/json)
	status      int      // success status (default 200)
	h           gin.HandlerFunc
}

// param is a path or query parameter.
type param struct {
	name, in, desc string
	typ, format    string // JSON schema type and format (default string)
	enum           []string
	required       bool
}

func pathID() param {
	return param{name: "id", in: "path", desc: "enterprise id, as in the gateway registry", required: true}
}

func declID() param {
	return param{name: "did", in: "path", desc: "declaration id", required: true}
}

func caseID() param {
	return param{name: "cid", in: "path", desc: "case id", required: true}
}

func timeQuery(name, desc string) param {
	return param{name: name, in: "query", desc: desc + "; a date (2026-05-01, midnight in the standard's local time) or an RFC 3339 time"}
}

func windowQuery() param {
	return param{name: "window", in: "query", desc: "the standard's window (default: the one the dynamic code follows)"}
}

// routes is the one list of routes.
func (s *server) routes() []route {
	rs := []route{
		{method: "GET", path: "/healthz", access: public, tag: "operations", summary: "Liveness", produces: []string{"application/json"}, out: statusBody{},
			h: func(c *gin.Context) { c.JSON(http.StatusOK, statusBody{Status: "ok"}) }},
		{method: "GET", path: "/readyz", access: public, tag: "operations", summary: "Readiness: ingest running, broker connected, store reachable and accepting writes (503 with the reason otherwise); lists what is still loading", out: statusBody{},
			h: s.readyz},
		{method: "GET", path: "/metrics", access: public, tag: "operations", summary: "Prometheus metrics", produces: []string{"text/plain"},
			h: gin.WrapH(promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))},
	}
	if !s.api() {
		return rs
	}
	kinds := eventKinds
	return append(rs, []route{
		{method: "GET", path: "/api/v1/openapi.json", access: public, tag: "meta", summary: "This OpenAPI 3 description", h: s.openAPI},
		{method: "GET", path: "/login", access: public, tag: "pages", summary: "Sign-in page (HTML): paste a token, kept in an HttpOnly cookie",
			params:   []param{{name: "next", in: "query", desc: "the page to open once signed in (a path of this server)"}},
			produces: []string{"text/html"}, h: s.loginForm},
		{method: "POST", path: "/login", access: public, tag: "pages", summary: "Sign in from the form (token, next): a valid token goes into the cookie and on to next, another back to the form",
			description: "Form-encoded fields token and next. Answers 303 either way. A form posted from another site (Origin) is refused with 403.",
			produces:    []string{"text/html"}, status: http.StatusSeeOther, h: s.login},
		{method: "POST", path: "/logout", access: public, tag: "pages", summary: "Sign out: forget the cookie and go to the sign-in page",
			produces: []string{"text/html"}, status: http.StatusSeeOther, h: s.logout},
		{method: "GET", path: "/", access: authenticated, page: true, tag: "pages", summary: "Fleet overview page (HTML): enterprises by code, level distribution, latest regressions",
			produces: []string{"text/html"}, h: s.overview},
		{method: "GET", path: "/enterprises/:id", access: ownEnterprise, page: true, tag: "pages",
			summary:     "An enterprise's own page (HTML), for its environmental officer: indicators against Level I/II/III, what reaches the next level, recommended measures with their yearly benefits, its declarations and cases",
			description: "Every indicator with its value, unit, level and coverage (the score with its completeness); the steps to the next level; the recommended measures by cost tier, each with what it saves a year in kWh, kgce, m³, t CO2 and yuan, estimated from the enterprise's own totals on the live window and annualised (insufficient data is said, not printed as a number); the enterprise's declarations and rectification cases with their state. The enterprise's own token or a supervisor's.",
			params:      []param{pathID()}, produces: []string{"text/html"}, h: s.enterprisePage},

		{method: "GET", path: "/cases/:cid", access: authenticated, page: true, tag: "pages",
			summary: "A rectification case's page (HTML): its state, deadline and history, and the forms of the steps the token may take",
			params:  []param{caseID()}, produces: []string{"text/html"}, h: s.casePage},
		{method: "POST", path: "/cases/:cid/:step", access: authenticated, form: true, tag: "pages",
			summary:     "A step of a case from its page's form (acknowledge, plan, reject-plan, close): back to the case's page",
			description: "Form-encoded fields as the JSON of the API's step (evidence: one reference a line). Answers 303 to the case's page, with the refusal's message when the step is refused. The sign-in cookie is accepted only from this server's own pages (Origin); acknowledge, reject-plan and close need a supervisor's token.",
			params:      []param{caseID(), {name: "step", in: "path", desc: "the step", required: true, enum: []string{"acknowledge", "plan", "reject-plan", "close"}}},
			produces:    []string{"text/html"}, status: http.StatusSeeOther, h: s.caseForm},

		{method: "GET", path: "/api/v1/enterprises", access: authenticated, tag: "enterprises",
			summary: "Enterprises with level, score, code, next audit due and data freshness (an enterprise token sees its own), by id",
			params:  paged(defaultLimit, maxLimit, nil), out: EnterpriseList{}, h: s.listEnterprises},
		{method: "GET", path: "/api/v1/enterprises/:id", access: ownEnterprise, tag: "enterprises",
			summary: "One enterprise: every indicator on every window, Y_I/Y_II/Y_III, lagging indicators with matched solutions, the fewest improvements that reach the next level (next_level), the yearly benefits of the recommended measures in kWh, kgce, m³, t CO2 and yuan from the enterprise's own data (benefits, with the unit prices in benefit_prices), recent events",
			params:  []param{pathID(), timeQuery("at", "rebuild the result as of this time from stored points (default: the live result)")},
			out:     EnterpriseDetail{}, h: s.getEnterprise},
		{method: "GET", path: "/api/v1/enterprises/:id/report", access: ownEnterprise, page: true, tag: "report",
			summary:     "The cleaner-production audit report (HTML or PDF)",
			description: "Profile, data coverage, the indicator table against Level I/II/III with Y_I/Y_II/Y_III and the resulting level, the improvements that reach the next level, lagging indicators, recommended measures, trend charts of key indicators, the dynamic code and audit cycle, and the provenance of the standard. The assessment is the live one, or the last stored one at or before `to` when `to` is in the past; trends and events cover from..to.",
			params: []param{pathID(), timeQuery("from", "start of the period (default: 30 days before to)"), timeQuery("to", "end of the period (default: now)"),
				{name: "format", in: "query", desc: "html (default) or pdf", enum: []string{"html", "pdf"}}},
			produces: []string{"text/html", "application/pdf"}, h: s.report},
		{method: "GET", path: "/api/v1/enterprises/:id/meters", access: ownEnterprise, tag: "enterprises",
			summary: "Registered meters with last value, last seen and rejects, by id (paged), and every gateway",
			params:  paged(defaultLimit, maxLimit, []param{pathID()}), out: MetersDTO{}, h: s.meters},
		{method: "GET", path: "/api/v1/enterprises/:id/indicators/:indicator/history", access: ownEnterprise, tag: "enterprises",
			summary: "Stored values of one indicator over time (for trend charts)",
			params: paged(maxHistoryPoints, maxHistoryPoints, []param{pathID(), {name: "indicator", in: "path", desc: "indicator id of the standard", required: true}, windowQuery(),
				timeQuery("from", "start (default: 30 days before to)"), timeQuery("to", "end (default: now; with a cursor, the to of the walk's first page)"),
				{name: "max_points", in: "query", desc: "at most this many points, evenly thinned (default 500, at most 10000); pages walk the thinned series", typ: "integer"}}),
			out: HistoryDTO{}, h: s.history},
		{method: "GET", path: "/api/v1/enterprises/:id/declarations", access: ownEnterprise, tag: "declarations",
			summary: "The enterprise's declarations with their review (submitted, accepted, rejected, superseded) and whether each is in force, by indicator then newest valid_from first",
			params:  paged(defaultLimit, maxLimit, []param{pathID()}),
			out:     DeclarationsDTO{}, h: s.listDeclarations},
		{method: "POST", path: "/api/v1/enterprises/:id/declarations", access: ownEnterprise, tag: "declarations",
			summary:     "Declare a qualitative or non-metered indicator, an audit, or that an indicator does not apply",
			description: "Exactly one of level (qualitative indicators: I, II, III or below_III; yes or no for a yes/no requirement), value (quantitative indicators without a formula, within the indicator's range) and not_applicable. A declaration of the audit indicator is an audit record: auditor and report_ref are required and valid_from is the audit's date. An enterprise's declaration is submitted and counts only once a supervisor accepts it; a supervisor's own is accepted at once. A later accepted declaration of the same indicator and valid_from replaces the earlier one. A value or level the standard does not allow is refused with 422 naming the indicator and what it allows. Needs an Authorization header (cookies are not accepted here).",
			params:      []param{pathID()}, body: DeclarationInput{}, out: DeclarationCreated{}, status: http.StatusCreated, h: s.addDeclaration},
		{method: "GET", path: "/api/v1/declarations", access: authenticated, tag: "declarations",
			summary: "Declarations across the enterprises the token sees, oldest submission first: by default those waiting for review",
			params: paged(defaultLimit, maxLimit, []param{{name: "state", in: "query", desc: "submitted (default), accepted, rejected, superseded or all",
				enum: []string{"submitted", "accepted", "rejected", "superseded", "all"}},
				{name: "enterprise", in: "query", desc: "only this enterprise"}}),
			out: DeclarationList{}, h: s.fleetDeclarations},
		{method: "POST", path: "/api/v1/declarations/:did/accept", access: supervisor, tag: "declarations",
			summary: "Accept a submitted declaration (supervisors); it is scored from now on", params: []param{declID()},
			body: ReviewInput{}, out: DeclarationDTO{}, h: s.acceptDeclaration},
		{method: "POST", path: "/api/v1/declarations/:did/reject", access: supervisor, tag: "declarations",
			summary: "Reject a submitted declaration, or withdraw an accepted one (supervisors); the note saying why is required",
			params:  []param{declID()}, body: ReviewInput{}, out: DeclarationDTO{}, h: s.rejectDeclaration},

		{method: "GET", path: "/api/v1/cases", access: authenticated, tag: "cases",
			summary:     "Rectification cases (整改) across the enterprises the token sees: by default those not closed, overdue first, then by deadline",
			description: "A case opens when an enterprise's code turns red or a restrictive indicator fails, or by a supervisor's hand; a supervisor acknowledges it with an assignee and a deadline, the enterprise answers with a plan and evidence, the supervisor closes it or sends the plan back. An enterprise token sees its own cases only.",
			params: paged(defaultLimit, maxLimit, []param{{name: "state", in: "query", desc: "active (default: not closed), open, acknowledged, plan_submitted, closed or all",
				enum: []string{"active", "open", "acknowledged", "plan_submitted", "closed", "all"}},
				{name: "overdue", in: "query", desc: "true: only those whose deadline passed", enum: []string{"true", "false"}},
				{name: "enterprise", in: "query", desc: "only this enterprise"}}),
			out: CaseList{}, h: s.listCases},
		{method: "GET", path: "/api/v1/cases/:cid", access: authenticated, tag: "cases",
			summary: "One case with its history: every step with who and when (another enterprise's case is 404)", params: []param{caseID()},
			out: CaseDTO{}, h: s.getCase},
		{method: "POST", path: "/api/v1/enterprises/:id/cases", access: supervisor, tag: "cases",
			summary: "Open a case by hand (supervisors); the reason is required", params: []param{pathID()},
			body: CaseOpenInput{}, out: CaseDTO{}, status: http.StatusCreated, h: s.openCase},
		{method: "POST", path: "/api/v1/cases/:cid/acknowledge", access: supervisor, tag: "cases",
			summary: "Acknowledge a case, assign it and set its deadline (supervisors); again to change them", params: []param{caseID()},
			body: CaseAckInput{}, out: CaseDTO{}, h: s.acknowledgeCase},
		{method: "POST", path: "/api/v1/cases/:cid/plan", access: authenticated, tag: "cases",
			summary: "Answer an acknowledged case with a rectification plan and evidence (the case's enterprise, or a supervisor on its behalf)",
			params:  []param{caseID()}, body: CasePlanInput{}, out: CaseDTO{}, h: s.submitCasePlan},
		{method: "POST", path: "/api/v1/cases/:cid/reject-plan", access: supervisor, tag: "cases",
			summary: "Send a submitted plan back (supervisors); the note saying why is required", params: []param{caseID()},
			body: CaseNoteInput{}, out: CaseDTO{}, h: s.rejectCasePlan},
		{method: "POST", path: "/api/v1/cases/:cid/close", access: supervisor, tag: "cases",
			summary: "Close a case (supervisors); a case without a plan needs a note saying why", params: []param{caseID()},
			body: CaseNoteInput{}, out: CaseDTO{}, h: s.closeCase},
		{method: "POST", path: "/api/v1/cases/:cid/reopen", access: supervisor, tag: "cases",
			summary: "Reopen a closed case with a new deadline and a note (supervisors)", params: []param{caseID()},
			body: CaseAckInput{}, out: CaseDTO{}, h: s.reopenCase},

		{method: "GET", path: "/api/v1/rankings", access: authenticated, tag: "rankings",
			summary: "Overall ranking with the fleet distribution (an enterprise token sees the others anonymised); entries then unranked are paged as one list",
			params:  paged(defaultLimit, maxLimit, []param{windowQuery(), {name: "enterprise", in: "query", desc: "whose position to report (default: the token's enterprise)"}}),
			out:     RankingDTO{}, h: s.ranking},
		{method: "GET", path: "/api/v1/rankings/:indicator", access: authenticated, tag: "rankings",
			summary: "Ranking on one indicator with the fleet distribution of its value; entries then unranked are paged as one list",
			params: paged(defaultLimit, maxLimit, []param{{name: "indicator", in: "path", desc: "indicator id of the standard", required: true}, windowQuery(),
				{name: "enterprise", in: "query", desc: "whose position to report (default: the token's enterprise)"}}),
			out: RankingDTO{}, h: s.ranking},

		{method: "GET", path: "/api/v1/events", access: authenticated, tag: "events", summary: "Recent scoring events, newest first",
			description: "Without to, every page of a walk keeps the to of its first page (now, then): events stored meanwhile are not sent.",
			params: paged(defaultLimit, maxLimit, []param{{name: "enterprise", in: "query", desc: "only this enterprise's (an enterprise token: its own only)"},
				{name: "kind", in: "query", desc: "only this kind", enum: kinds},
				timeQuery("from", "start (default: 7 days before to)"), timeQuery("to", "end (default: now; with a cursor, the to of the walk's first page)")}),
			out: EventList{}, h: s.events},
		{method: "GET", path: "/api/v1/events/stream", access: authenticated, tag: "events",
			summary:     "Live scoring events as server-sent events (event: the kind; data: the event JSON)",
			description: "A comment line every 15 s keeps the connection open. An enterprise token receives its own enterprise's events only. Each event's id names it; a client reconnecting with Last-Event-ID (EventSource does) first receives the events after that one, oldest first (events of its very time may come again).",
			params: []param{{name: "enterprise", in: "query", desc: "only this enterprise's"},
				{name: "kind", in: "query", desc: "only this kind", enum: kinds},
				{name: "Last-Event-ID", in: "header", desc: "the id of the last event received: the events after it are sent first"}},
			produces: []string{"text/event-stream"}, h: s.stream},

		{method: "GET", path: "/api/v1/standard", access: authenticated, tag: "standard",
			summary: "The indicator standard and code policy in force, with the source of every number", out: StandardDTO{}, h: s.standard},
	}...)
}

// statusBody is the JSON of /healthz and /readyz.
type statusBody struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Loading lists what is still loading at start (the meters' recent
	// readings before ingest starts, the scorer's windows while they
	// refill): /readyz answers 200 once ingest runs, while the scorer may
	// still refill.
	Loading []string `json:"loading,omitempty"`
}

func (s *server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 3*time.Second)
	defer cancel()
	var loading []string
	if s.Loading != nil {
		loading = s.Loading()
	}
	if s.Ready != nil {
		if err := s.Ready(ctx); err != nil {
			c.JSON(http.StatusServiceUnavailable, statusBody{Status: "not ready", Reason: err.Error(), Loading: loading})
			return
		}
	}
	c.JSON(http.StatusOK, statusBody{Status: "ready", Loading: loading})
}

// chain returns a route's handlers: authentication as it needs, then its
// handler.
func (s *server) chain(rt route) []gin.HandlerFunc {
	if rt.access == public {
		return []gin.HandlerFunc{rt.h}
	}
	return []gin.HandlerFunc{s.authenticate(rt), rt.h}
}

const (
	principalKey = "cleanprod.principal"
	tokenCookie  = "cleanprod_token"
)

// authenticate finds the request's token (Authorization: Bearer; for
// GET also the cookie or ?token=), refuses a missing or unknown one with
// 401, and, for routes of one enterprise, another enterprise's id with 403
// and an unknown id with 404.
func (s *server) authenticate(rt route) gin.HandlerFunc {
	return func(c *gin.Context) {
		safe := c.Request.Method == http.MethodGet || c.Request.Method == http.MethodHead
		var token, from string
		if h := c.GetHeader("Authorization"); h != "" {
			scheme, tok, _ := strings.Cut(h, " ")
			if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
				s.fail(c, errorf(http.StatusUnauthorized, codeInvalidToken, "the Authorization header must be \"Bearer <token>\""))
				return
			}
			token, from = strings.TrimSpace(tok), "header"
		} else if q := c.Query("token"); q != "" && safe {
			token, from = q, "query"
		} else if ck, err := c.Cookie(tokenCookie); err == nil && ck != "" && (safe || rt.form) {
			if !safe && !ownOrigin(c) {
				s.fail(c, errorf(http.StatusForbidden, codeForbidden, "a form must come from this server's own pages"))
				return
			}
			token, from = ck, "cookie"
		}
		if token == "" {
			if rt.page && wantsHTML(c) {
				s.renderLogin(c, http.StatusUnauthorized, loginPage{Next: pageAddress(c), Needed: true})
				return
			}
			msg := "this route needs a bearer token: Authorization: Bearer <token>"
			if !safe {
				msg += " (cookies and ?token= are accepted for GET only)"
			}
			s.fail(c, errorf(http.StatusUnauthorized, codeUnauthorized, "%s", msg))
			return
		}
		p, ok := s.Tokens.Lookup(token)
		if !ok {
			if from == "cookie" {
				s.setTokenCookie(c, "", -1)
			}
			if rt.page && wantsHTML(c) {
				s.renderLogin(c, http.StatusUnauthorized, loginPage{Next: pageAddress(c), Failed: true})
				return
			}
			s.fail(c, errorf(http.StatusUnauthorized, codeInvalidToken, "the token is not valid"))
			return
		}
		if from == "query" && rt.page {
			// Keep the token out of the address bar and history.
			s.setTokenCookie(c, token, 12*3600)
			u := *c.Request.URL
			q := u.Query()
			q.Del("token")
			u.RawQuery = q.Encode()
			c.Redirect(http.StatusSeeOther, (&url.URL{Path: u.Path, RawQuery: u.RawQuery}).String())
			c.Abort()
			return
		}
		c.Set(principalKey, p)
		if rt.access == supervisor && p.Role != RoleSupervisor {
			s.fail(c, errorf(http.StatusForbidden, codeForbidden, "only a supervisor's token may do this"))
			return
		}
		if rt.access == ownEnterprise {
			id := c.Param("id")
			if !p.Sees(id) {
				s.fail(c, errorf(http.StatusForbidden, codeForbidden, "this token is for enterprise %s; it may not see %q", p.Enterprise, id))
				return
			}
			if _, ok := s.registry(c).Enterprise(id); !ok {
				s.fail(c, errorf(http.StatusNotFound, codeNotFound, "no enterprise %q in the gateway registry", id))
				return
			}
		}
		// Checked here first, then again by the owner of another
		// shard's enterprise.
		if id := c.Param("id"); id != "" {
			s.forward(c, id)
		}
	}
}

// ownOrigin reports whether the request's Origin names this server.
// Browsers send Origin with every POST; a request without one is not a
// browser's form and does not get the cookie's authority.
func ownOrigin(c *gin.Context) bool {
	u, err := url.Parse(c.GetHeader("Origin"))
	return err == nil && u.Host != "" && u.Host == c.Request.Host
}

func (s *server) setTokenCookie(c *gin.Context, token string, maxAge int) {
	http.SetCookie(c.Writer, &http.Cookie{Name: tokenCookie, Value: token, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: c.Request.TLS != nil, SameSite: http.SameSiteStrictMode})
}

func principal(c *gin.Context) Principal {
	v, _ := c.Get(principalKey)
	p, _ := v.(Principal)
	return p
}

// enterpriseScope returns the enterprise a list is limited to: the
// ?enterprise= asked (which the token must see and must exist) or, for an
// enterprise token, its own. "" means every enterprise.
func (s *server) enterpriseScope(c *gin.Context) (string, error) {
	p := principal(c)
	id := c.Query("enterprise")
	if id == "" {
		return p.Enterprise, nil
	}
	if !p.Sees(id) {
		return "", errorf(http.StatusForbidden, codeForbidden, "this token is for enterprise %s; it may not see %q", p.Enterprise, id)
	}
	if _, ok := s.registry(c).Enterprise(id); !ok {
		return "", errorf(http.StatusNotFound, codeNotFound, "no enterprise %q in the gateway registry", id)
	}
	return id, nil
}
