package web

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

var utc8 = time.FixedZone("UTC+8", 8*3600)

// A calendar date is the day in the platform's zone, never the UTC
// timestamp of its midnight (the day before, in UTC+8).
func TestDateJSON(t *testing.T) {
	tests := []struct {
		name string
		d    *Date
		want string
	}{
		{"local midnight", datePtr(time.Date(2026, 12, 6, 0, 0, 0, 0, utc8), utc8), `"2026-12-06"`},
		{"the same instant in UTC", datePtr(time.Date(2026, 12, 5, 16, 0, 0, 0, time.UTC), utc8), `"2026-12-06"`},
		{"late evening local", datePtr(time.Date(2026, 12, 6, 15, 59, 0, 0, time.UTC), utc8), `"2026-12-06"`},
		{"no date", datePtr(time.Time{}, utc8), `null`},
		{"a deadline at the end of its day", dayOf(time.Date(2026, 12, 7, 0, 0, 0, 0, utc8), utc8), `"2026-12-06"`},
		{"a deadline within its day", dayOf(time.Date(2026, 12, 6, 17, 30, 0, 0, utc8), utc8), `"2026-12-06"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.d)
			if err != nil || string(b) != tt.want {
				t.Fatalf("got %s (%v), want %s", b, err, tt.want)
			}
			if tt.d == nil {
				return
			}
			var back Date
			if err := json.Unmarshal(b, &back); err != nil || back != *tt.d {
				t.Errorf("read back %v (%v), want %v", back, err, *tt.d)
			}
		})
	}
	var d Date
	if err := json.Unmarshal([]byte(`"2026-12-06T00:00:00+08:00"`), &d); err == nil || !strings.Contains(err.Error(), "want YYYY-MM-DD") {
		t.Errorf("a timestamp read as a date: %v, %v", d, err)
	}
}

var (
	dateRE    = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
	instantRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$`)
)

// The API writes calendar dates as YYYY-MM-DD in the standard's zone
// (UTC+8) and instants as RFC 3339; it reads dates in that zone.
func TestDatesInAPI(t *testing.T) {
	f := newFixture(t)
	// entB's last audit was on 2021-05-10 and red's 12-month cycle made
	// the next due 2022-05-10: local midnights, 16:00 UTC the day before.
	list := f.do(t, "GET", "/api/v1/enterprises", supervisorToken, "")
	var raw struct {
		Enterprises []map[string]any `json:"enterprises"`
	}
	if err := json.Unmarshal(list.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	for _, e := range raw.Enterprises {
		for _, k := range []string{"evaluated_at", "data_through", "data_time", "code_since"} {
			if v, ok := e[k].(string); !ok || !instantRE.MatchString(v) {
				t.Errorf("%s %s: got %v, want an RFC 3339 instant", e["id"], k, e[k])
			}
		}
		for _, k := range []string{"last_audit", "next_audit_due"} {
			if v, ok := e[k].(string); !ok || !dateRE.MatchString(v) {
				t.Errorf("%s %s: got %v, want a date", e["id"], k, e[k])
			}
		}
		if e["id"] == entB && (e["last_audit"] != "2021-05-10" || e["next_audit_due"] != "2022-05-10") {
			t.Errorf("%s: last audit %v, next due %v, want 2021-05-10 and 2022-05-10", entB, e["last_audit"], e["next_audit_due"])
		}
	}

	// A declaration's validity given as a date reads back as that date;
	// one given as an instant reads back as its day in UTC+8.
	w := f.do(t, "POST", "/api/v1/enterprises/"+entA+"/declarations", supervisorToken,
		`{"indicator": "paint_transfer_efficiency", "value": 61, "evidence": "test", "valid_from": "2026-05-19T20:00:00Z", "valid_to": "2026-12-31"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("declare: got %d: %s", w.Code, w.Body)
	}
	for _, want := range []string{`"valid_from":"2026-05-20"`, `"valid_to":"2026-12-31"`} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("declaration: want %s in %s", want, w.Body)
		}
	}

	// A case's deadline given as a date is that day (it ends at the next
	// local midnight, deadline_at).
	k := decode[CaseDTO](t, f.do(t, "POST", "/api/v1/enterprises/"+entA+"/cases", supervisorToken, `{"reason": "site visit"}`))
	w = f.do(t, "POST", "/api/v1/cases/"+k.ID+"/acknowledge", supervisorToken, `{"assignee": "li", "deadline": "2026-06-20"}`)
	if w.Code != http.StatusOK {
		t.Fatalf("acknowledge: got %d: %s", w.Code, w.Body)
	}
	var c struct {
		Deadline   string        `json:"deadline"`
		DeadlineAt time.Time     `json:"deadline_at"`
		History    []CaseStepDTO `json:"history"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &c); err != nil {
		t.Fatal(err)
	}
	if end := time.Date(2026, 6, 21, 0, 0, 0, 0, utc8); c.Deadline != "2026-06-20" || !c.DeadlineAt.Equal(end) {
		t.Errorf("deadline %q at %v, want 2026-06-20 ending %v", c.Deadline, c.DeadlineAt, end)
	}
	if last := c.History[len(c.History)-1]; last.Deadline == nil || last.Deadline.String() != "2026-06-20" {
		t.Errorf("the acknowledgement's deadline: got %v, want 2026-06-20", last.Deadline)
	}

	// The OpenAPI description says which is which.
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]map[string]any `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(f.do(t, "GET", "/api/v1/openapi.json", "", "").Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	formatOf := func(schema, prop string) any { return doc.Components.Schemas[schema].Properties[prop]["format"] }
	for _, tt := range []struct{ schema, prop, want string }{
		{"DeclarationDTO", "valid_from", "date"}, {"EnterpriseSummary", "next_audit_due", "date"}, {"CaseDTO", "deadline", "date"},
		{"CaseDTO", "deadline_at", "date-time"}, {"DeclarationDTO", "submitted_at", "date-time"}, {"PendingChange", "takes_effect_on", "date"},
	} {
		if got := formatOf(tt.schema, tt.prop); got != tt.want {
			t.Errorf("OpenAPI %s.%s: format %v, want %s", tt.schema, tt.prop, got, tt.want)
		}
	}
}
