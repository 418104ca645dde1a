package web

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/store"
)

// listIDs reads the identities of a list answer's items.
type listIDs func(t *testing.T, body []byte) []string

// itemsOf reads the items of the list field of an answer as maps.
func itemsOf(t *testing.T, body []byte, list string) []map[string]any {
	t.Helper()
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("decode: %v\n%s", err, body)
	}
	var items []map[string]any
	if err := json.Unmarshal(doc[list], &items); err != nil {
		t.Fatalf("decode %s: %v\n%s", list, err, body)
	}
	return items
}

// field names the items of list by their key field.
func field(list, key string) listIDs {
	return func(t *testing.T, body []byte) []string {
		var ids []string
		for _, it := range itemsOf(t, body, list) {
			ids = append(ids, fmt.Sprint(it[key]))
		}
		return ids
	}
}

// rankingIDs names a ranking's entries and then its unranked.
func rankingIDs(t *testing.T, body []byte) []string {
	var ids []string
	for _, it := range itemsOf(t, body, "entries") {
		ids = append(ids, fmt.Sprint(it["enterprise"]))
	}
	for _, it := range itemsOf(t, body, "unranked") {
		ids = append(ids, "unranked "+fmt.Sprint(it["enterprise"]))
	}
	return ids
}

// eventIDs names events by their store identity.
func eventIDs(t *testing.T, body []byte) []string {
	var ids []string
	for _, it := range itemsOf(t, body, "events") {
		ids = append(ids, fmt.Sprint(it["time"], it["enterprise"], it["kind"], it["indicator"], it["meter"], it["resolved"]))
	}
	return ids
}

func withQuery(target, q string) string {
	if strings.Contains(target, "?") {
		return target + "&" + q
	}
	return target + "?" + q
}

// walk reads a list page by page, limit items a page, checks each page's
// has_more and next_cursor, calls between after every page but the
// last, and returns the ids of every item in the order sent.
func walk(t *testing.T, f *fixture, target string, limit int, ids listIDs, between func(page int)) []string {
	t.Helper()
	var all []string
	cursor := ""
	for page := 1; ; page++ {
		if page > 1000 {
			t.Fatalf("%s: still walking after 1000 pages", target)
		}
		q := fmt.Sprintf("limit=%d", limit)
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		w := f.do(t, "GET", withQuery(target, q), supervisorToken, "")
		if w.Code != http.StatusOK {
			t.Fatalf("%s page %d: got %d: %s", target, page, w.Code, w.Body)
		}
		var pg Page
		if err := json.Unmarshal(w.Body.Bytes(), &pg); err != nil {
			t.Fatal(err)
		}
		got := ids(t, w.Body.Bytes())
		all = append(all, got...)
		switch {
		case len(got) > limit:
			t.Fatalf("%s page %d: %d items, limit %d", target, page, len(got), limit)
		case pg.HasMore && (pg.NextCursor == "" || len(got) != limit):
			t.Fatalf("%s page %d: has_more with %d items and next_cursor %q", target, page, len(got), pg.NextCursor)
		case !pg.HasMore && strings.Contains(w.Body.String(), `"next_cursor"`):
			t.Fatalf("%s page %d: the last page has a next_cursor: %s", target, page, w.Body)
		case !pg.HasMore:
			return all
		}
		if between != nil {
			between(page)
		}
		cursor = pg.NextCursor
	}
}

// each fails unless every id of want is in got exactly once and got has
// no id twice.
func each(t *testing.T, what string, got, want []string) {
	t.Helper()
	count := map[string]int{}
	for _, id := range got {
		count[id]++
		if count[id] == 2 {
			t.Errorf("%s: %s sent twice", what, id)
		}
	}
	for _, id := range want {
		if count[id] == 0 {
			t.Errorf("%s: %s never sent", what, id)
		}
	}
}

// Walking any list with a small limit returns every item exactly once,
// in the order of the whole list, and the last page says has_more false.
func TestPagesWalkEveryList(t *testing.T) {
	f := newFixture(t)
	for _, ent := range []string{entA, entA, entB} {
		decode[CaseDTO](t, f.do(t, "POST", "/api/v1/enterprises/"+ent+"/cases", supervisorToken, `{"reason": "site visit"}`))
	}
	k := decode[CaseList](t, f.do(t, "GET", "/api/v1/cases?enterprise="+entB, supervisorToken, "")).Cases[0]
	decode[CaseDTO](t, f.do(t, "POST", "/api/v1/cases/"+k.ID+"/acknowledge", supervisorToken, `{"assignee": "li", "deadline": "2026-06-20"}`))

	const ind = "energy_per_vehicle"
	lists := []struct {
		name, target string
		ids          listIDs
	}{
		{"enterprises", "/api/v1/enterprises", field("enterprises", "id")},
		{"meters", "/api/v1/enterprises/" + entA + "/meters", field("meters", "id")},
		{"history", "/api/v1/enterprises/" + entA + "/indicators/" + ind + "/history?to=2026-06-01", field("points", "time")},
		{"declarations of an enterprise", "/api/v1/enterprises/" + entA + "/declarations", field("declarations", "id")},
		{"declarations", "/api/v1/declarations?state=all", field("declarations", "id")},
		{"cases", "/api/v1/cases?state=all", field("cases", "id")},
		{"ranking", "/api/v1/rankings", rankingIDs},
		{"indicator ranking", "/api/v1/rankings/" + ind, rankingIDs},
		{"events", "/api/v1/events?from=2026-01-01&to=2026-06-01T02:00:00Z", eventIDs},
	}
	for _, l := range lists {
		t.Run(l.name, func(t *testing.T) {
			whole := f.do(t, "GET", withQuery(l.target, "limit=1000"), supervisorToken, "")
			if whole.Code != http.StatusOK {
				t.Fatalf("got %d: %s", whole.Code, whole.Body)
			}
			want := l.ids(t, whole.Body.Bytes())
			if len(want) < 3 {
				t.Fatalf("the fixture has %d items in %s; want 3 or more to page through", len(want), l.target)
			}
			if pg := decode[Page](t, whole); pg.HasMore || pg.NextCursor != "" {
				t.Errorf("the whole list in one page: got has_more %v, next_cursor %q", pg.HasMore, pg.NextCursor)
			}
			for _, limit := range []int{1, 2} {
				got := walk(t, f, l.target, limit, l.ids, nil)
				if !slices.Equal(got, want) {
					t.Errorf("limit %d: got %v, want %v", limit, got, want)
				}
			}
		})
	}
}

// Items added while a client walks a list do not make it see another
// item twice or miss one.
func TestPagesWalkWhileItemsAreAdded(t *testing.T) {
	f := newFixture(t)
	for range 4 {
		decode[CaseDTO](t, f.do(t, "POST", "/api/v1/enterprises/"+entA+"/cases", supervisorToken, `{"reason": "site visit"}`))
	}
	t.Run("cases", func(t *testing.T) {
		const target = "/api/v1/cases?state=all"
		want := field("cases", "id")(t, f.do(t, "GET", target, supervisorToken, "").Body.Bytes())
		got := walk(t, f, target, 1, field("cases", "id"), func(page int) {
			// A new case without a deadline sorts among the first.
			decode[CaseDTO](t, f.do(t, "POST", "/api/v1/enterprises/"+entB+"/cases", supervisorToken, `{"reason": "another visit"}`))
		})
		each(t, "cases", got, want)
	})
	t.Run("declarations", func(t *testing.T) {
		const target = "/api/v1/declarations?state=all"
		want := field("declarations", "id")(t, f.do(t, "GET", target, supervisorToken, "").Body.Bytes())
		got := walk(t, f, target, 2, field("declarations", "id"), func(page int) {
			decode[DeclarationCreated](t, f.do(t, "POST", "/api/v1/enterprises/"+entA+"/declarations", enterpriseToken,
				fmt.Sprintf(`{"indicator": "paint_transfer_efficiency", "value": %d, "evidence": "test report %d", "valid_from": "2026-05-%02d"}`, 60+page%30, page, 1+page%28)))
		})
		each(t, "declarations", got, want)
	})
	t.Run("events", func(t *testing.T) {
		const target = "/api/v1/events?from=2026-01-01&to=2026-06-01T02:00:00Z"
		want := eventIDs(t, f.do(t, "GET", target, supervisorToken, "").Body.Bytes())
		got := walk(t, f, target, 2, eventIDs, func(page int) {
			// Events stored meanwhile, of the same times as the ones sent
			// and of times between them.
			var ps []store.Point
			for _, at := range []time.Time{fixtureNow, fixtureNow.Add(-time.Duration(page) * time.Hour), fixtureNow.Add(-24 * time.Hour)} {
				ps = append(ps, store.Point{Measurement: scoring.MeasurementEvent, Time: at,
					Tags:   map[string]string{"enterprise": entB, "kind": string(scoring.EventStale), "meter": fmt.Sprintf("TEST-%d", page)},
					Fields: map[string]any{"reason": "test"}})
			}
			f.points.WritePoints(context.Background(), ps)
		})
		each(t, "events", got, want)
	})
}

// A limit out of range and a cursor that is not one the server issued
// for that list are refused with 400 and a message saying what to do.
func TestPagesBadLimitOrCursor(t *testing.T) {
	f := newFixture(t)
	first := decode[EnterpriseList](t, f.do(t, "GET", "/api/v1/enterprises?limit=1", supervisorToken, ""))
	if !first.HasMore || first.NextCursor == "" {
		t.Fatalf("the first of %d enterprises: got has_more %v, next_cursor %q", len(f.reg.Enterprises), first.HasMore, first.NextCursor)
	}
	cur := first.NextCursor
	tampered := []byte(cur)
	tampered[len(tampered)/2] ^= 1
	for range 2 {
		decode[CaseDTO](t, f.do(t, "POST", "/api/v1/enterprises/"+entA+"/cases", supervisorToken, `{"reason": "site visit"}`))
	}
	casesCursor := decode[CaseList](t, f.do(t, "GET", "/api/v1/cases?state=all&limit=1", supervisorToken, "")).NextCursor
	// Another server (or this one after a restart) seals with another key.
	other := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/api/v1/enterprises?limit=1", nil)
	req.Header.Set("Authorization", "Bearer "+supervisorToken)
	NewHandler(f.handlerOptions(nil)).ServeHTTP(other, req)
	otherCursor := decode[EnterpriseList](t, other).NextCursor

	tests := []struct {
		name, target, want string
	}{
		{"zero limit", "/api/v1/enterprises?limit=0", "limit: want a whole number from 1 to 1000"},
		{"negative limit", "/api/v1/cases?limit=-3", "limit: want a whole number from 1 to 1000"},
		{"limit too large", "/api/v1/events?limit=1001", "limit: want a whole number from 1 to 1000"},
		{"history limit too large", "/api/v1/enterprises/" + entA + "/indicators/energy_per_vehicle/history?limit=10001", "limit: want a whole number from 1 to 10000"},
		{"limit not a number", "/api/v1/rankings?limit=ten", `limit: want a whole number from 1 to 1000, got \"ten\"`},
		{"cursor not base64", "/api/v1/enterprises?cursor=%21%21", "cursor: not a cursor this server issued"},
		{"cursor of random bytes", "/api/v1/enterprises?cursor=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "cursor: not a cursor this server issued"},
		{"cursor too short", "/api/v1/enterprises?cursor=AA", "cursor: not a cursor this server issued"},
		{"tampered cursor", "/api/v1/enterprises?cursor=" + url.QueryEscape(string(tampered)), "cursor: not a cursor this server issued"},
		{"another server's cursor", "/api/v1/enterprises?cursor=" + otherCursor, "cursor: not a cursor this server issued"},
		{"another list's cursor", "/api/v1/enterprises/" + entA + "/meters?cursor=" + cur, "cursor: it continues another list or other filters"},
		{"other filters", "/api/v1/cases?state=active&cursor=" + casesCursor, "cursor: it continues another list or other filters"},
		{"another enterprise's list", "/api/v1/enterprises/" + entB + "/declarations?cursor=" + cur, "cursor: it continues another list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := f.do(t, "GET", tt.target, supervisorToken, "")
			expectError(t, w, http.StatusBadRequest, codeBadRequest)
			if !strings.Contains(w.Body.String(), tt.want) {
				t.Errorf("got %s, want a message with %q", w.Body, tt.want)
			}
		})
	}
}

// An enterprise token walks a ranking whose other entries are anonymised:
// the cursors it is given do not name the enterprises ranked before.
func TestPagesRankingCursorHidesEnterprises(t *testing.T) {
	f := newFixture(t)
	var seen int
	cursor := ""
	for {
		target := "/api/v1/rankings?limit=1"
		if cursor != "" {
			target += "&cursor=" + url.QueryEscape(cursor)
		}
		rk := decode[RankingDTO](t, f.do(t, "GET", target, enterpriseToken, ""))
		seen += len(rk.Entries) + len(rk.Unranked)
		if !rk.HasMore {
			break
		}
		raw, err := base64.RawURLEncoding.DecodeString(rk.NextCursor)
		if err != nil {
			t.Fatalf("cursor %q: %v", rk.NextCursor, err)
		}
		for _, ent := range f.reg.Enterprises {
			if bytes.Contains(raw, []byte(ent.ID)) {
				t.Errorf("a cursor given to %s's token names %s", entA, ent.ID)
			}
		}
		cursor = rk.NextCursor
	}
	if seen != len(f.reg.Enterprises) {
		t.Errorf("walked %d entries, want the %d enterprises", seen, len(f.reg.Enterprises))
	}
}

// A walk without to keeps the period of its first page: the clock moving
// on between pages neither drops the oldest events nor adds new ones.
func TestPagesWalkKeepsItsPeriod(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	clock := fixtureNow
	opts := f.handlerOptions(nil)
	opts.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	g := *f
	g.handler = NewHandler(opts)
	const target = "/api/v1/events?enterprise=" + entB // the last 7 days
	want := eventIDs(t, g.do(t, "GET", target+"&limit=1000", supervisorToken, "").Body.Bytes())
	if len(want) < 4 {
		t.Fatalf("%d events of %s in the last 7 days; want 4 or more", len(want), entB)
	}
	got := walk(t, &g, target, 2, eventIDs, func(page int) {
		mu.Lock()
		clock = clock.Add(2 * 24 * time.Hour)
		at := clock
		mu.Unlock()
		g.points.WritePoints(context.Background(), []store.Point{{Measurement: scoring.MeasurementEvent, Time: at,
			Tags: map[string]string{"enterprise": entB, "kind": string(scoring.EventStale), "meter": "TEST"}, Fields: map[string]any{"reason": "test"}}})
	})
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
