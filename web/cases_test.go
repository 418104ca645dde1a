package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCaseRoles walks a case through the API and checks that an
// enterprise token can neither decide what only a supervisor decides nor
// see another enterprise's cases.
func TestCaseRoles(t *testing.T) {
	f := newFixture(t)
	expectError(t, f.do(t, "POST", "/api/v1/enterprises/"+entA+"/cases", enterpriseToken, `{"reason": "we open our own"}`), http.StatusForbidden, codeForbidden)
	expectError(t, f.do(t, "POST", "/api/v1/enterprises/"+entA+"/cases", supervisorToken, `{"reason": " "}`), http.StatusUnprocessableEntity, codeInvalid)
	expectError(t, f.do(t, "POST", "/api/v1/enterprises/nobody/cases", supervisorToken, `{"reason": "x"}`), http.StatusNotFound, codeNotFound)
	expectError(t, f.do(t, "POST", "/api/v1/enterprises/"+entA+"/cases", supervisorToken, `{"reason": "x", "indicator": "nope"}`), http.StatusUnprocessableEntity, codeInvalid)
	w := f.do(t, "POST", "/api/v1/enterprises/"+entA+"/cases", supervisorToken, `{"reason": "VOC per m2 failed on the site visit", "indicator": "voc_per_m2"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("open: %d %s", w.Code, w.Body)
	}
	k := decode[CaseDTO](t, w)
	if k.State != "open" || k.StateZH != "待受理" || k.Enterprise != entA || k.Deadline != nil || len(k.History) != 1 {
		t.Fatalf("opened case: %+v", k)
	}
	other := decode[CaseDTO](t, f.do(t, "POST", "/api/v1/enterprises/"+entB+"/cases", supervisorToken, `{"reason": "open drums"}`))
	path := "/api/v1/cases/" + k.ID

	// The other enterprise neither sees nor touches entA's case.
	if l := decode[CaseList](t, f.do(t, "GET", "/api/v1/cases?state=all", otherToken, "")); len(l.Cases) != 1 || l.Cases[0].ID != other.ID {
		t.Errorf("another enterprise's list: %+v, want its own case only", l.Cases)
	}
	expectError(t, f.do(t, "GET", "/api/v1/cases?enterprise="+entA, otherToken, ""), http.StatusForbidden, codeForbidden)
	expectError(t, f.do(t, "GET", path, otherToken, ""), http.StatusNotFound, codeNotFound)
	// Only a supervisor acknowledges, assigns, sets deadlines, rejects, closes, reopens.
	for _, step := range []struct{ path, body string }{
		{"/acknowledge", `{"assignee": "li", "deadline": "2026-06-20"}`},
		{"/reject-plan", `{"note": "no"}`},
		{"/close", `{"note": "done"}`},
		{"/reopen", `{"deadline": "2026-06-20", "note": "again"}`},
	} {
		for _, tok := range []string{enterpriseToken, otherToken} {
			expectError(t, f.do(t, "POST", path+step.path, tok, step.body), http.StatusForbidden, codeForbidden)
		}
	}
	expectError(t, f.do(t, "POST", path+"/plan", otherToken, `{"plan": "theirs"}`), http.StatusNotFound, codeNotFound)
	// A plan answers an acknowledged case only.
	expectError(t, f.do(t, "POST", path+"/plan", enterpriseToken, `{"plan": "too early"}`), http.StatusConflict, codeConflict)
	expectError(t, f.do(t, "POST", path+"/acknowledge", supervisorToken, `{"assignee": "li"}`), http.StatusUnprocessableEntity, codeInvalid)
	expectError(t, f.do(t, "POST", path+"/acknowledge", supervisorToken, `{"assignee": "li", "deadline": "2026-05-01"}`), http.StatusUnprocessableEntity, codeInvalid)

	w = f.do(t, "POST", path+"/acknowledge", supervisorToken, `{"assignee": "李工 (EHS)", "deadline": "2026-06-20", "note": "整改期限两周"}`)
	if w.Code != http.StatusOK {
		t.Fatalf("acknowledge: %d %s", w.Code, w.Body)
	}
	k = decode[CaseDTO](t, w)
	// A date is the end of that day in the standard's local time.
	wantDeadline := time.Date(2026, 6, 21, 0, 0, 0, 0, time.FixedZone("", 8*3600))
	if k.State != "acknowledged" || k.Assignee != "李工 (EHS)" || k.Deadline == nil || k.Deadline.String() != "2026-06-20" ||
		k.DeadlineAt == nil || !k.DeadlineAt.Equal(wantDeadline) || k.Overdue {
		t.Fatalf("acknowledged: %+v (deadline %v at %v, want 2026-06-20 ending %v)", k, k.Deadline, k.DeadlineAt, wantDeadline)
	}
	w = f.do(t, "POST", path+"/plan", enterpriseToken, `{"plan": "更换RTO燃烧器", "evidence": ["PO-7781", "invoice-118.pdf"]}`)
	if w.Code != http.StatusOK {
		t.Fatalf("plan: %d %s", w.Code, w.Body)
	}
	expectError(t, f.do(t, "POST", path+"/close", enterpriseToken, `{}`), http.StatusForbidden, codeForbidden)
	expectError(t, f.do(t, "POST", path+"/reject-plan", supervisorToken, ``), http.StatusUnprocessableEntity, codeInvalid)
	if w = f.do(t, "POST", path+"/close", supervisorToken, `{"note": "验收合格"}`); w.Code != http.StatusOK {
		t.Fatalf("close: %d %s", w.Code, w.Body)
	}

	// The enterprise sees its case with its whole history.
	k = decode[CaseDTO](t, f.do(t, "GET", path, enterpriseToken, ""))
	var steps []string
	for _, s := range k.History {
		steps = append(steps, s.Action+" by "+s.By)
	}
	want := []string{"opened by supervisor bureau", "acknowledged by supervisor bureau", "plan_submitted by enterprise yuntai", "closed by supervisor bureau"}
	if k.State != "closed" || !slices.Equal(steps, want) || !slices.Equal(k.Evidence, []string{"PO-7781", "invoice-118.pdf"}) {
		t.Errorf("closed case: %+v\nsteps %v, want %v", k, steps, want)
	}
	// Closed cases leave the default list; state=closed finds them.
	if l := decode[CaseList](t, f.do(t, "GET", "/api/v1/cases", enterpriseToken, "")); len(l.Cases) != 0 {
		t.Errorf("active cases after the close: %+v", l.Cases)
	}
	if l := decode[CaseList](t, f.do(t, "GET", "/api/v1/cases?state=closed", enterpriseToken, "")); len(l.Cases) != 1 || l.Cases[0].ID != k.ID || l.Cases[0].History != nil {
		t.Errorf("closed cases: %+v", l.Cases)
	}
	if l := decode[CaseList](t, f.do(t, "GET", "/api/v1/cases?overdue=true", supervisorToken, "")); len(l.Cases) != 0 {
		t.Errorf("overdue cases: %+v, want none before any deadline", l.Cases)
	}
	expectError(t, f.do(t, "GET", "/api/v1/cases?state=done", supervisorToken, ""), http.StatusBadRequest, codeBadRequest)
	// Every step is an event of entA, for its own eyes.
	evs := decode[EventList](t, f.do(t, "GET", "/api/v1/events?kind=case_closed", enterpriseToken, ""))
	if len(evs.Events) != 1 || !strings.Contains(evs.Events[0].Reason, k.ID) {
		t.Errorf("case_closed events: %+v", evs.Events)
	}
}

// form posts a case page's form with the sign-in cookie from origin ("":
// no Origin header).
func (f *fixture) form(t *testing.T, target, token, origin string, v url.Values) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("POST", target, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: tokenCookie, Value: token})
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, req)
	return w
}

// TestCasePages: the overview lists the cases not closed on both sides
// (an enterprise its own), and a case's page takes the steps its token
// may take from forms posted by this server's own pages only.
func TestCasePages(t *testing.T) {
	f := newFixture(t)
	k := decode[CaseDTO](t, f.do(t, "POST", "/api/v1/enterprises/"+entA+"/cases", supervisorToken, `{"reason": "现场检查发现 VOC 超标"}`))
	page := func(token, target string) string {
		t.Helper()
		w := f.do(t, "GET", target, token, "")
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", target, w.Code, w.Body)
		}
		return w.Body.String()
	}
	row := `data-case="` + k.ID + `"`
	for _, tok := range []string{supervisorToken, enterpriseToken} {
		if p := page(tok, "/"); !strings.Contains(p, row) || !strings.Contains(p, "待受理") {
			t.Errorf("the overview (%s) does not list the open case", tok)
		}
	}
	// entA's row in the fleet table links its case.
	if p := page(supervisorToken, "/"); !strings.Contains(p, `class="tag case-tag" href="/cases/`+k.ID+`"`) {
		t.Errorf("entA's row on the overview does not link its case")
	}
	if p := page(otherToken, "/"); strings.Contains(p, row) || strings.Contains(p, k.ID) || !strings.Contains(p, `id="no-cases"`) {
		t.Errorf("another enterprise's overview lists entA's case")
	}
	expectError(t, f.do(t, "GET", "/cases/"+k.ID, otherToken, ""), http.StatusNotFound, codeNotFound)
	// The officer sees no supervisor's form; the supervisor acknowledges.
	if p := page(enterpriseToken, "/cases/"+k.ID); strings.Contains(p, `id="form-acknowledge"`) || strings.Contains(p, `id="form-close"`) || strings.Contains(p, `id="form-plan"`) {
		t.Errorf("the officer's page of an open case offers steps")
	}
	if p := page(supervisorToken, "/cases/"+k.ID); !strings.Contains(p, `id="form-acknowledge"`) || !strings.Contains(p, `id="form-close"`) {
		t.Errorf("the supervisor's page of an open case offers no acknowledge and close")
	}
	ack := url.Values{"assignee": {"李工"}, "deadline": {"2026-06-20"}}
	const own = "http://example.com" // httptest.NewRequest's host
	// The cookie's authority on a POST needs this server's Origin.
	expectError(t, f.form(t, "/cases/"+k.ID+"/acknowledge", supervisorToken, "", ack), http.StatusForbidden, codeForbidden)
	expectError(t, f.form(t, "/cases/"+k.ID+"/acknowledge", supervisorToken, "https://evil.example", ack), http.StatusForbidden, codeForbidden)
	// An officer's form may not acknowledge or close.
	for _, step := range []string{"acknowledge", "close", "reject-plan"} {
		if w := f.form(t, "/cases/"+k.ID+"/"+step, enterpriseToken, own, ack); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), `id="case-error"`) {
			t.Errorf("officer's %s form: %d, want 403 on the case page", step, w.Code)
		}
	}
	if w := f.form(t, "/cases/"+k.ID+"/acknowledge", supervisorToken, own, ack); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/cases/"+k.ID {
		t.Fatalf("acknowledge form: %d %s", w.Code, w.Body)
	}
	// A refused step shows its reason on the page.
	if w := f.form(t, "/cases/"+k.ID+"/plan", enterpriseToken, own, url.Values{"plan": {" "}}); w.Code != http.StatusUnprocessableEntity || !strings.Contains(w.Body.String(), "plan needs its text") {
		t.Errorf("empty plan form: %d", w.Code)
	}
	if w := f.form(t, "/cases/"+k.ID+"/plan", enterpriseToken, own, url.Values{"plan": {"更换活性炭"}, "evidence": {"PO-1\r\n\r\nphoto-2.jpg"}}); w.Code != http.StatusSeeOther {
		t.Fatalf("plan form: %d %s", w.Code, w.Body)
	}
	got := decode[CaseDTO](t, f.do(t, "GET", "/api/v1/cases/"+k.ID, enterpriseToken, ""))
	if got.State != "plan_submitted" || got.Assignee != "李工" || !slices.Equal(got.Evidence, []string{"PO-1", "photo-2.jpg"}) {
		t.Errorf("after the forms: %+v", got)
	}
	// A deadline given as a date reads as that day's end.
	if p := page(enterpriseToken, "/cases/"+k.ID); !strings.Contains(p, "更换活性炭") || !strings.Contains(p, "photo-2.jpg") || !strings.Contains(p, "2026-06-20 24:00 UTC&#43;8") {
		t.Errorf("the case page does not show the plan, its evidence and the deadline 2026-06-20 24:00 UTC+8")
	}
}
