package web

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"
)

// The sign-in page: a browser opening a page without a token (or with one
// no longer valid) gets a form to paste one instead of the API's JSON
// error. The token then lives in the same cookie as a ?token= once given:
// HttpOnly (no script, ours or an injected one, can read it), SameSite
// Strict (no other site's request carries it) and Secure over HTTPS.
// sessionStorage would put it within reach of any script on the page.

// loginPage is what templates/login.html renders.
type loginPage struct {
	Next   string // where to go once signed in: a path of this server
	Failed bool   // the token given was not valid
	Needed bool   // a page was opened without a valid token
}

// wantsHTML reports whether a request comes from a browser navigating to
// a page (rather than a program asking the API).
func wantsHTML(c *gin.Context) bool {
	return strings.Contains(c.GetHeader("Accept"), "text/html")
}

// localPath returns next if it is a path of this server ("/" otherwise),
// so that the form cannot send anyone elsewhere.
func localPath(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(next, "//") || strings.ContainsRune(next, '\\') {
		return "/"
	}
	return (&url.URL{Path: u.Path, RawQuery: u.RawQuery}).String()
}

// pageAddress is the page a request asked for, without its ?token=.
func pageAddress(c *gin.Context) string {
	q := c.Request.URL.Query()
	q.Del("token")
	return localPath((&url.URL{Path: c.Request.URL.Path, RawQuery: q.Encode()}).String())
}

// renderLogin answers with the sign-in page and status.
func (s *server) renderLogin(c *gin.Context, status int, pg loginPage) {
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, "login.html", &pg); err != nil {
		s.fail(c, fmt.Errorf("render login: %w", err))
		return
	}
	c.Header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	c.Header("Cache-Control", "no-store")
	if status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="cleanprod"`)
	}
	c.Data(status, "text/html; charset=utf-8", b.Bytes())
	c.Abort()
}

func (s *server) loginForm(c *gin.Context) {
	s.renderLogin(c, http.StatusOK, loginPage{Next: localPath(c.Query("next")), Failed: c.Query("failed") == "1"})
}

// sameOrigin refuses a form posted from another site (login CSRF: signing
// a person in with someone else's token). Browsers send Origin with
// every POST.
func (s *server) sameOrigin(c *gin.Context) bool {
	o := c.GetHeader("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || u.Host != c.Request.Host {
		s.fail(c, errorf(http.StatusForbidden, codeForbidden, "a sign-in form must come from this server's own pages"))
		return false
	}
	return true
}

// login checks a pasted token and keeps it in the cookie, then goes on to
// next; a token that is not valid goes back to the form, saying so (a
// redirect either way, so that reloading the result never posts again).
func (s *server) login(c *gin.Context) {
	if !s.sameOrigin(c) {
		return
	}
	next := localPath(c.PostForm("next"))
	token := strings.TrimSpace(c.PostForm("token"))
	if _, ok := s.Tokens.Lookup(token); !ok {
		c.Redirect(http.StatusSeeOther, "/login?"+url.Values{"next": {next}, "failed": {"1"}}.Encode())
		return
	}
	s.setTokenCookie(c, token, 12*3600)
	c.Header("Cache-Control", "no-store")
	c.Redirect(http.StatusSeeOther, next)
}

// logout forgets the cookie.
func (s *server) logout(c *gin.Context) {
	if !s.sameOrigin(c) {
		return
	}
	s.setTokenCookie(c, "", -1)
	c.Redirect(http.StatusSeeOther, "/login")
}
