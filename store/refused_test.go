package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"
)

func TestRefused(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&QueryError{Status: 401, Message: "authorization failed"}, true},
		{fmt.Errorf("refill: %w", &QueryError{Status: 403}), true},
		{&QueryError{Status: 400, Message: "error parsing query"}, true},
		{&QueryError{Status: 503}, false},
		{&QueryError{Status: 500}, false},
		{&ihttp.Error{StatusCode: 401}, true},
		{&ihttp.Error{StatusCode: 429}, false},
		{&WriteError{Err: errors.New("bad line"), Permanent: true}, true},
		{&WriteError{Err: errors.New("timeout")}, false},
		{context.DeadlineExceeded, false},
		{ErrIncomplete, false},
		{nil, false},
	} {
		if got := Refused(c.err); got != c.want {
			t.Errorf("Refused(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
