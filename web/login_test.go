package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestLogin: a page opened by a browser without a valid token is the
// sign-in form (401), a program still gets the JSON error; the form keeps
// a valid token in an HttpOnly, SameSite=Strict cookie and goes on to the
// page asked for (a path of this server only), sends a wrong one back to
// the form saying so, and refuses a form posted from another site.
func TestLogin(t *testing.T) {
	f := newFixture(t)
	get := func(target, accept string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", target, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		w := httptest.NewRecorder()
		f.handler.ServeHTTP(w, req)
		return w
	}
	browserAccept := "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	w := get("/api/v1/enterprises/"+entA+"/report?format=pdf", browserAccept)
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `<form method="post" action="/login">`) ||
		!strings.Contains(w.Body.String(), `value="/api/v1/enterprises/`+entA+`/report?format=pdf"`) {
		t.Errorf("browser without token: %d %.300s, want 401 and the sign-in form returning to the report", w.Code, w.Body)
	}
	w = get("/?token=cp_wrong", browserAccept)
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "login-error") || strings.Contains(w.Body.String(), "cp_wrong") {
		t.Errorf("browser with a wrong ?token=: %d %.300s, want 401, the form saying so, the token not repeated", w.Code, w.Body)
	}
	expectError(t, get("/", ""), http.StatusUnauthorized, codeUnauthorized)
	expectError(t, get("/api/v1/enterprises", browserAccept), http.StatusUnauthorized, codeUnauthorized) // not a page

	post := func(form url.Values, origin string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "http://cleanprod.example/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		w := httptest.NewRecorder()
		f.handler.ServeHTTP(w, req)
		return w
	}
	for _, c := range []struct {
		name, token, next, origin string
		status                    int
		location                  string
		cookie                    bool
	}{
		{"valid", supervisorToken, "/api/v1/enterprises/" + entB + "/report", "http://cleanprod.example", 303, "/api/v1/enterprises/" + entB + "/report", true},
		{"valid without next", enterpriseToken, "", "", 303, "/", true},
		{"another site as next", supervisorToken, "//evil.example/x", "", 303, "/", true},
		{"an absolute next", supervisorToken, "https://evil.example/", "", 303, "/", true},
		{"wrong token", "cp_wrong", "/x", "", 303, "/login?failed=1&next=%2Fx", false},
		{"posted from another site", supervisorToken, "/", "https://evil.example", 403, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := post(url.Values{"token": {c.token}, "next": {c.next}}, c.origin)
			if w.Code != c.status || w.Header().Get("Location") != c.location {
				t.Errorf("got %d to %q, want %d to %q", w.Code, w.Header().Get("Location"), c.status, c.location)
			}
			ck := w.Header().Get("Set-Cookie")
			if c.cookie != strings.Contains(ck, tokenCookie+"="+c.token) {
				t.Errorf("cookie %q, want one: %v", ck, c.cookie)
			}
			if c.cookie && (!strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Strict")) {
				t.Errorf("cookie %q: want HttpOnly and SameSite=Strict", ck)
			}
		})
	}
	// The cookie opens the page; signing out forgets it.
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: tokenCookie, Value: supervisorToken})
	w = httptest.NewRecorder()
	f.handler.ServeHTTP(w, req)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `id="rows"`) {
		t.Errorf("overview with the cookie: %d", w.Code)
	}
	req = httptest.NewRequest("POST", "/logout", nil)
	w = httptest.NewRecorder()
	f.handler.ServeHTTP(w, req)
	if w.Code != 303 || w.Header().Get("Location") != "/login" || !strings.Contains(w.Header().Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("logout: %d to %q, cookie %q", w.Code, w.Header().Get("Location"), w.Header().Get("Set-Cookie"))
	}
}
