package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cleanprod/cleanprod/review"
	"github.com/cleanprod/cleanprod/scoring"
)

// concrete turns a route's path into a URL for enterprise ent.
func concrete(path, ent string) string {
	path = strings.ReplaceAll(path, ":id", ent)
	return strings.ReplaceAll(path, ":indicator", "energy_per_vehicle")
}

// request builds the request a route is probed with: a valid body for
// POST, and a deadline for the event stream (which never ends by itself).
func probe(t *testing.T, f *fixture, rt route, target, token string) *httptest.ResponseRecorder {
	t.Helper()
	var body string
	if rt.method == http.MethodPost {
		body = `{"indicator": "cp_audit", "level": "II", "evidence": "audit acceptance letter 2026-3", "auditor": "consultancy", "report_ref": "2026-3", "valid_from": "2026-03-01"}`
	}
	if strings.Contains(target, ":did") {
		// A fresh submitted declaration to review.
		r, err := f.decl.Submit(context.Background(), scoring.Declaration{Enterprise: entA, Indicator: "management_systems", Level: scoring.LevelII,
			Evidence: "ISO 14001", ValidFrom: fixtureNow.AddDate(0, -1, 0)}, review.Actor{Name: "yuntai", Role: review.Enterprise})
		if err != nil {
			t.Fatal(err)
		}
		target = strings.ReplaceAll(target, ":did", r.ID)
		body = `{"note": "checked"}`
	}
	ctype := "application/json"
	if strings.HasSuffix(rt.path, "/cases") {
		body = `{"reason": "site visit"}`
	}
	if strings.Contains(target, ":cid") {
		// A fresh case of entA in the state the step needs.
		step := rt.path[strings.LastIndex(rt.path, "/")+1:]
		if rt.path == "/cases/:cid/:step" {
			step = "plan"
			target = strings.ReplaceAll(target, ":step", step)
			body, ctype = "plan=replace+the+burner&evidence=PO-1", "application/x-www-form-urlencoded"
		}
		target = strings.ReplaceAll(target, ":cid", caseIn(t, f, step))
		switch {
		case rt.path == "/cases/:cid/:step":
		case step == "acknowledge" || step == "reopen":
			body = `{"assignee": "li", "deadline": "2026-06-20", "note": "x"}`
		case step == "plan":
			body = `{"plan": "replace the burner", "evidence": ["PO-1"]}`
		case step == "reject-plan" || step == "close":
			body = `{"note": "x"}`
		}
	}
	req := httptest.NewRequest(rt.method, target, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if strings.HasSuffix(rt.path, "/stream") {
		ctx, cancel := context.WithTimeout(req.Context(), 200*time.Millisecond)
		defer cancel()
		req = req.WithContext(ctx)
	}
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, req)
	return w
}

// caseIn opens a case of entA and takes it to the state from which step
// can be taken.
func caseIn(t *testing.T, f *fixture, step string) string {
	t.Helper()
	ctx, sup := context.Background(), review.Actor{Name: "bureau", Role: review.Supervisor}
	k, err := f.decl.OpenCase(ctx, entA, "", "probe", sup)
	if err == nil && (step == "plan" || step == "reject-plan" || step == "close" || step == "reopen") {
		k, err = f.decl.Acknowledge(ctx, k.ID, sup, "li", fixtureNow.Add(24*time.Hour), "")
	}
	if err == nil && (step == "reject-plan" || step == "close" || step == "reopen") {
		k, err = f.decl.SubmitPlan(ctx, k.ID, review.Actor{Name: "yuntai", Role: review.Enterprise, Enterprise: entA}, "plan", nil)
	}
	if err == nil && step == "reopen" {
		k, err = f.decl.Close(ctx, k.ID, sup, "")
	}
	if err != nil {
		t.Fatal(err)
	}
	return k.ID
}

// TestEveryRouteAuth proves, for every route the server has: public routes
// answer without a token; every other one refuses no token and a wrong
// token with 401, another enterprise's id with 403, and serves its own
// enterprise's token and a supervisor's.
func TestEveryRouteAuth(t *testing.T) {
	f := newFixture(t)
	s := newServer(Options{Scorer: f.eng, Registry: f.reg})
	routes := s.routes()
	served := f.handler.(*gin.Engine).Routes()
	if len(served) != len(routes) {
		t.Fatalf("gin serves %d routes, the route table has %d", len(served), len(routes))
	}
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			want := http.StatusOK
			if rt.status != 0 {
				want = rt.status
			}
			own := concrete(rt.path, entA)
			if rt.access == public {
				if w := probe(t, f, rt, own, ""); w.Code != want {
					t.Errorf("no token: got %d, want %d: %s", w.Code, want, w.Body)
				}
				return
			}
			expectError(t, probe(t, f, rt, own, ""), http.StatusUnauthorized, codeUnauthorized)
			expectError(t, probe(t, f, rt, own, "not-a-token"), http.StatusUnauthorized, codeInvalidToken)
			expectError(t, probe(t, f, rt, own, supervisorToken+"x"), http.StatusUnauthorized, codeInvalidToken)
			other := ""
			switch {
			case strings.Contains(rt.path, ":id"):
				other = concrete(rt.path, entB)
			case hasParam(rt, "enterprise"):
				other = own + "?enterprise=" + entB
			}
			if other != "" {
				expectError(t, probe(t, f, rt, other, enterpriseToken), http.StatusForbidden, codeForbidden)
				if rt.access == supervisor {
					expectError(t, probe(t, f, rt, other, otherToken), http.StatusForbidden, codeForbidden)
				} else if w := probe(t, f, rt, other, otherToken); w.Code != want {
					t.Errorf("the other enterprise's own token: got %d, want %d: %s", w.Code, want, w.Body)
				}
			}
			if rt.access == supervisor {
				expectError(t, probe(t, f, rt, own, enterpriseToken), http.StatusForbidden, codeForbidden)
			} else if w := probe(t, f, rt, own, enterpriseToken); w.Code != want {
				t.Errorf("enterprise token: got %d, want %d: %s", w.Code, want, w.Body)
			}
			if w := probe(t, f, rt, own, supervisorToken); w.Code != want {
				t.Errorf("supervisor token: got %d, want %d: %s", w.Code, want, w.Body)
			}
			if strings.Contains(rt.path, ":id") {
				expectError(t, probe(t, f, rt, concrete(rt.path, "no-such-plant"), supervisorToken), http.StatusNotFound, codeNotFound)
				expectError(t, probe(t, f, rt, concrete(rt.path, "no-such-plant"), enterpriseToken), http.StatusForbidden, codeForbidden)
			}
		})
	}
}

func expectError(t *testing.T, w *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if w.Code != status {
		t.Errorf("got %d, want %d: %s", w.Code, status, w.Body)
		return
	}
	var body errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code != code || body.Error.Message == "" {
		t.Errorf("got body %s, want JSON error with code %q and a message", w.Body, code)
	}
	if status == http.StatusUnauthorized && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("401 without WWW-Authenticate: Bearer")
	}
}

// A browser passes the token once in the address; it moves into an
// HttpOnly cookie, which works for GET only.
func TestTokenCookie(t *testing.T) {
	f := newFixture(t)
	w := f.do(t, "GET", "/?token="+supervisorToken, "", "")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
		t.Fatalf("got %d to %q, want 303 to /", w.Code, w.Header().Get("Location"))
	}
	cookie := w.Result().Cookies()
	if len(cookie) != 1 || cookie[0].Name != tokenCookie || !cookie[0].HttpOnly || cookie[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("got cookies %v", cookie)
	}
	req := httptest.NewRequest("GET", "/api/v1/enterprises", nil)
	req.AddCookie(cookie[0])
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("GET with the cookie: got %d", rec.Code)
	}
	req = httptest.NewRequest("POST", "/api/v1/enterprises/"+entA+"/declarations", strings.NewReader(`{}`))
	req.AddCookie(cookie[0])
	rec = httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	expectError(t, rec, http.StatusUnauthorized, codeUnauthorized)
	// A query token on an API route works without a redirect.
	if w := f.do(t, "GET", "/api/v1/standard?token="+enterpriseToken, "", ""); w.Code != http.StatusOK {
		t.Errorf("query token on the API: got %d", w.Code)
	}
	expectError(t, f.do(t, "GET", "/api/v1/standard", "", ""), http.StatusUnauthorized, codeUnauthorized)
	req = httptest.NewRequest("GET", "/api/v1/standard", nil)
	req.Header.Set("Authorization", "Basic abc")
	rec = httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	expectError(t, rec, http.StatusUnauthorized, codeInvalidToken)
}

func TestParseTokens(t *testing.T) {
	reg, _ := fleet(t)
	good := "tokens:\n  - {name: a, sha256: " + HashToken("a") + ", role: supervisor}\n  - {name: b, sha256: " + HashToken("b") + ", role: enterprise, enterprise: " + entA + "}\n"
	ts, err := ParseTokens("t.yaml", []byte(good), reg)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := ts.Lookup("b"); !ok || p.Role != RoleEnterprise || p.Enterprise != entA || p.Name != "b" {
		t.Errorf("lookup b: got %+v %v", p, ok)
	}
	if _, ok := ts.Lookup("c"); ok {
		t.Error("lookup c: found")
	}
	tests := []struct{ name, yaml, want string }{
		{"bad hash", "tokens:\n  - {sha256: abc, role: supervisor}\n", "t.yaml:2: sha256: want the 64 hex digits"},
		{"bad role", "tokens:\n  - {sha256: " + HashToken("a") + ", role: admin}\n", `t.yaml:2: role "admin"`},
		{"no enterprise", "tokens:\n  - {sha256: " + HashToken("a") + ", role: enterprise}\n", "needs a valid enterprise id"},
		{"unknown enterprise", "tokens:\n  - {sha256: " + HashToken("a") + ", role: enterprise, enterprise: nope}\n", `enterprise "nope" is not in the gateway registry`},
		{"supervisor with enterprise", "tokens:\n  - {sha256: " + HashToken("a") + ", role: supervisor, enterprise: " + entA + "}\n", "remove enterprise"},
		{"duplicate", "tokens:\n  - {sha256: " + HashToken("a") + ", role: supervisor}\n  - {sha256: " + HashToken("a") + ", role: supervisor}\n", "t.yaml:3: the same token is listed twice"},
		{"unknown key", "tokens:\n  - {token: a, role: supervisor}\n", "t.yaml:2: field token not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTokens("t.yaml", []byte(tt.yaml), reg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestAppendTokenFile(t *testing.T) {
	reg, _ := fleet(t)
	path := t.TempDir() + "/tokens.yaml"
	tok, err := GenerateToken()
	if err != nil || !strings.HasPrefix(tok, "cp_") || len(tok) != 46 {
		t.Fatalf("generated %q, %v", tok, err)
	}
	if err := AppendTokenFile(path, Token{Name: "bureau", SHA256: HashToken(tok), Role: RoleSupervisor}, reg); err != nil {
		t.Fatal(err)
	}
	if err := AppendTokenFile(path, Token{Name: "yuntai", SHA256: HashToken("x"), Role: RoleEnterprise, Enterprise: entA}, reg); err != nil {
		t.Fatal(err)
	}
	if err := AppendTokenFile(path, Token{Name: "bad", SHA256: HashToken("y"), Role: RoleEnterprise, Enterprise: "nope"}, reg); err == nil {
		t.Error("appended a token of an unknown enterprise")
	}
	ts, err := LoadTokens(path, reg)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := ts.Lookup(tok); !ok || p.Role != RoleSupervisor || ts.Len() != 2 {
		t.Errorf("got %+v %v, %d tokens", p, ok, ts.Len())
	}
}
