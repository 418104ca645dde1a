package web

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Error codes of the API's JSON errors {"error": {"code", "message"}}.
const (
	codeUnauthorized   = "unauthorized"   // no token
	codeInvalidToken   = "invalid_token"  // a token that is not in the tokens file
	codeForbidden      = "forbidden"      // another enterprise's data
	codeNotFound       = "not_found"      // no such route or resource
	codeBadRequest     = "bad_request"    // a malformed parameter or body
	codeInvalid        = "invalid"        // well-formed but refused by the standard
	codeTooLarge       = "body_too_large" // body over the limit
	codeUnsupported    = "unsupported"    // content type or format
	codeUnavailable    = "unavailable"    // a dependency is missing or down
	codeNotEvaluated   = "not_evaluated"  // the scorer has no result yet
	codeInternal       = "internal"       // a bug or a store failure
	codeMethodNotAllow = "method_not_allowed"
	codeConflict       = "conflict" // the stored state must be fixed first
)

// apiError is an error with its HTTP status and code.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// errorBody is the JSON of every error.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// fail writes err as the JSON error and stops the chain. Errors that are
// not *apiError are internal: their text is logged, not shown.
func (s *server) fail(c *gin.Context, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		s.log.Error("web: request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
		ae = errorf(http.StatusInternalServerError, codeInternal, "internal error; the server log has the details")
	}
	if ae.Status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="cleanprod"`)
	}
	c.AbortWithStatusJSON(ae.Status, errorBody{errorDetail{Code: ae.Code, Message: ae.Message}})
}

// timeParam parses an optional time parameter: RFC 3339, or a date
// (2026-05-01) at midnight in loc. def is returned when it is absent.
func timeParam(c *gin.Context, name string, def time.Time, loc *time.Location) (time.Time, error) {
	v, ok := c.GetQuery(name)
	if !ok || v == "" {
		return def, nil
	}
	return parseTime(name, v, loc)
}

func parseTime(name, v string, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, v, loc); err == nil {
		return t, nil
	}
	return time.Time{}, errorf(http.StatusBadRequest, codeBadRequest, "%s: %q is not a date (2026-05-01) or an RFC 3339 time (2026-05-01T08:00:00+08:00)", name, v)
}

// period reads from and to (defaults: to = now, from = to - def) and
// checks from < to and the span is at most max.
func period(c *gin.Context, now time.Time, def, max time.Duration, loc *time.Location) (from, to time.Time, err error) {
	if to, err = timeParam(c, "to", now, loc); err != nil {
		return
	}
	if from, err = timeParam(c, "from", to.Add(-def), loc); err != nil {
		return
	}
	switch {
	case !from.Before(to):
		err = errorf(http.StatusBadRequest, codeBadRequest, "from (%s) must be before to (%s)", from.Format(time.RFC3339), to.Format(time.RFC3339))
	case to.Sub(from) > max:
		err = errorf(http.StatusBadRequest, codeBadRequest, "the period from %s to %s is longer than the %s allowed", from.Format(time.RFC3339), to.Format(time.RFC3339), formatSpan(max))
	}
	return
}

// intParam parses an optional integer parameter within [lo, hi].
func intParam(c *gin.Context, name string, def, lo, hi int) (int, error) {
	v, ok := c.GetQuery(name)
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, errorf(http.StatusBadRequest, codeBadRequest, "%s: want a whole number from %d to %d, got %q", name, lo, hi, v)
	}
	return n, nil
}

// enumParam checks an optional parameter against the allowed values.
func enumParam(c *gin.Context, name, def string, allowed ...string) (string, error) {
	v, ok := c.GetQuery(name)
	if !ok || v == "" {
		return def, nil
	}
	for _, a := range allowed {
		if v == a {
			return v, nil
		}
	}
	return "", errorf(http.StatusBadRequest, codeBadRequest, "%s: %q is not one of %s", name, v, strings.Join(allowed, ", "))
}

func formatSpan(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}
