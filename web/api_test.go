package web

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/sim"
)

func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if w.Code >= 300 {
		t.Fatalf("got %d: %s", w.Code, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		body := w.Body.String()
		if len(body) > 2000 {
			body = body[:2000] + "..."
		}
		t.Fatalf("decode %T: %v\n%s", v, err, body)
	}
	return v
}

// detailJSON reads EnterpriseDetail back (scoring.Level only marshals).
type detailJSON struct {
	EnterpriseDetail
	RecentEvents []map[string]any `json:"recent_events"`
}

func TestEnterprises(t *testing.T) {
	f := newFixture(t)
	all := decode[EnterpriseList](t, f.do(t, "GET", "/api/v1/enterprises", supervisorToken, ""))
	if len(all.Enterprises) != len(f.reg.Enterprises) {
		t.Fatalf("supervisor sees %d enterprises, want %d", len(all.Enterprises), len(f.reg.Enterprises))
	}
	for _, e := range all.Enterprises {
		if !e.Evaluated || e.Code == nil || e.NextAuditDue == nil || e.DataThrough == nil || e.Freshness.LastReading == nil || e.Freshness.Meters == 0 {
			t.Errorf("%s: got %+v, want code, next audit due and freshness", e.ID, e)
		}
	}
	own := decode[EnterpriseList](t, f.do(t, "GET", "/api/v1/enterprises", enterpriseToken, ""))
	if len(own.Enterprises) != 1 || own.Enterprises[0].ID != entA {
		t.Errorf("enterprise token sees %v, want only %s", own.Enterprises, entA)
	}

	d := decode[detailJSON](t, f.do(t, "GET", "/api/v1/enterprises/"+entA, enterpriseToken, ""))
	if len(d.Assessments) != len(f.std.Windows) || len(d.Assessments[0].Indicators) != len(f.std.Indicators) {
		t.Fatalf("got %d assessments of %d indicators", len(d.Assessments), len(d.Assessments[0].Indicators))
	}
	live := d.Assessments[0]
	if live.Window != f.pol.Window || live.Level == nil || live.YI == 0 {
		t.Errorf("live assessment: %+v", live)
	}
	for _, ind := range live.Indicators {
		def, _ := f.std.Indicator(ind.ID)
		if ind.Status == "graded" && def.Kind == scoring.Quantitative && (ind.Value == nil || ind.Benchmarks == nil) {
			t.Errorf("%s: graded without value or benchmarks: %+v", ind.ID, ind)
		}
		if def.Metered() && ind.Coverage == nil {
			t.Errorf("%s: metered without coverage", ind.ID)
		}
		if len(ind.Src) == 0 {
			t.Errorf("%s: no source", ind.ID)
		}
	}
	if len(d.RecentEvents) == 0 || d.RecentEvents[0]["kind"] != "code_change" || d.RecentEvents[0]["new_level"] != "I" {
		t.Errorf("recent events: %v, want the initial code change", d.RecentEvents)
	}
	// A red enterprise has lagging indicators with solutions.
	red := decode[detailJSON](t, f.do(t, "GET", "/api/v1/enterprises/"+entB, supervisorToken, ""))
	if deref(red.Code) != "red" || len(red.Lagging) == 0 || len(red.Lagging[0].Solutions) == 0 {
		t.Errorf("%s: code %v, lagging %+v, want red with matched solutions", entB, deref(red.Code), red.Lagging)
	}

	m := decode[MetersDTO](t, f.do(t, "GET", "/api/v1/enterprises/"+entA+"/meters", enterpriseToken, ""))
	ent, _ := f.reg.Enterprise(entA)
	if len(m.Meters) != len(ent.Meters) || len(m.Gateways) != len(ent.Gateways) {
		t.Fatalf("meters: got %d meters and %d gateways", len(m.Meters), len(m.Gateways))
	}
	for _, mt := range m.Meters {
		// The simulator leaves some gateways silent (readings by hand).
		if g, _ := f.reg.Gateway(entA, mt.Gateway); g != nil && sim.DefaultProfiles().Silent(g) {
			if mt.LastSeen != nil {
				t.Errorf("meter %s of a silent gateway: last seen %v, want never", mt.ID, mt.LastSeen)
			}
			continue
		}
		if mt.LastSeen == nil || mt.LastValue == nil || mt.CanonicalUnit == "" {
			t.Errorf("meter %s: %+v, want last seen, value and unit", mt.ID, mt)
		}
	}
}

func TestRankings(t *testing.T) {
	f := newFixture(t)
	rk := decode[RankingDTO](t, f.do(t, "GET", "/api/v1/rankings", enterpriseToken, ""))
	if rk.Position == nil || !rk.Position.You || deref(rk.Position.Enterprise) != entA {
		t.Errorf("position: %+v, want the token's own enterprise", rk.Position)
	}
	n := 0
	for _, e := range append(rk.Entries, rk.Unranked...) {
		if e.You {
			continue
		}
		n++
		if e.Enterprise != nil || e.Name != nil || e.Reason != "" {
			t.Errorf("another enterprise is not anonymised: %+v", e)
		}
	}
	if n != len(f.reg.Enterprises)-1 || rk.Distribution.Enterprises != len(f.reg.Enterprises) {
		t.Errorf("got %d others, distribution %+v", n, rk.Distribution)
	}
	sum := 0
	for _, c := range rk.Distribution.Levels {
		sum += c
	}
	if sum != len(f.reg.Enterprises) || rk.Distribution.Median == nil {
		t.Errorf("distribution %+v", rk.Distribution)
	}
	sup := decode[RankingDTO](t, f.do(t, "GET", "/api/v1/rankings?enterprise="+entB, supervisorToken, ""))
	if sup.Position == nil || deref(sup.Position.Enterprise) != entB || sup.Position.You {
		t.Errorf("supervisor position of %s: %+v", entB, sup.Position)
	}
	for _, e := range sup.Entries {
		if e.Enterprise == nil || e.Name == nil {
			t.Errorf("supervisor sees an anonymous entry %+v", e)
		}
	}
	ind := decode[RankingDTO](t, f.do(t, "GET", "/api/v1/rankings/energy_per_vehicle?window=live", supervisorToken, ""))
	if ind.Indicator == nil || ind.Distribution.Of != "value" || len(ind.Entries) == 0 || ind.Entries[0].Value == nil {
		t.Errorf("indicator ranking: %+v", ind)
	}
	for i := 1; i < len(ind.Entries); i++ {
		if *ind.Entries[i].Value < *ind.Entries[i-1].Value {
			t.Errorf("energy_per_vehicle ranking not ascending (lower is better): %v then %v", *ind.Entries[i-1].Value, *ind.Entries[i].Value)
		}
	}
	expectError(t, f.do(t, "GET", "/api/v1/rankings/no_such_indicator", supervisorToken, ""), http.StatusNotFound, codeNotFound)
	expectError(t, f.do(t, "GET", "/api/v1/rankings?window=weekly", supervisorToken, ""), http.StatusBadRequest, codeBadRequest)
	expectError(t, f.do(t, "GET", "/api/v1/rankings?enterprise=nope", supervisorToken, ""), http.StatusNotFound, codeNotFound)
}

// Bad input gets a 4xx with a JSON error, never a 500.
func TestBadInput(t *testing.T) {
	f := newFixture(t)
	base := "/api/v1/enterprises/" + entA
	tests := []struct {
		name, method, target, body string
		status                     int
		code                       string
	}{
		{"bad kind", "GET", "/api/v1/events?kind=boom", "", 400, codeBadRequest},
		{"bad date", "GET", "/api/v1/events?from=yesterday", "", 400, codeBadRequest},
		{"from after to", "GET", "/api/v1/events?from=2026-05-01&to=2026-04-01", "", 400, codeBadRequest},
		{"period too long", "GET", "/api/v1/events?from=2020-01-01&to=2026-01-01", "", 400, codeBadRequest},
		{"bad limit", "GET", "/api/v1/events?limit=many", "", 400, codeBadRequest},
		{"limit too big", "GET", "/api/v1/events?limit=1000000", "", 400, codeBadRequest},
		{"bad at", "GET", base + "?at=2026-13-01", "", 400, codeBadRequest},
		{"nothing stored then", "GET", base + "?at=2026-01-01", "", 404, codeNotEvaluated},
		{"bad format", "GET", base + "/report?format=docx", "", 400, codeBadRequest},
		{"bad report period", "GET", base + "/report?from=2026-06-01&to=2026-05-01", "", 400, codeBadRequest},
		{"unknown indicator history", "GET", base + "/indicators/nope/history", "", 404, codeNotFound},
		{"bad max points", "GET", base + "/indicators/energy_per_vehicle/history?max_points=1", "", 400, codeBadRequest},
		{"unknown route", "GET", "/api/v1/nope", "", 404, codeNotFound},
		{"wrong method", "DELETE", base + "/declarations", "", 405, codeMethodNotAllow},
		{"wrong type", "POST", base + "/declarations", `{"indicator": "paint_transfer_efficiency", "value": "high", "evidence": "x", "valid_from": "2026-01-01"}`, 400, codeBadRequest},
		{"unknown field", "POST", base + "/declarations", `{"indicator": "cp_audit", "grade": "I", "evidence": "x", "valid_from": "2026-01-01"}`, 400, codeBadRequest},
		{"malformed", "POST", base + "/declarations", `{"indicator": `, 400, codeBadRequest},
		{"empty", "POST", base + "/declarations", ` `, 400, codeBadRequest},
		{"two objects", "POST", base + "/declarations", `{} {}`, 400, codeBadRequest},
		{"too large", "POST", base + "/declarations", `{"indicator": "cp_audit", "evidence": "` + strings.Repeat("x", maxBody) + `"}`, 413, codeTooLarge},
		{"bad valid_from", "POST", base + "/declarations", `{"indicator": "cp_audit", "level": "I", "evidence": "x", "valid_from": "01/06/2026"}`, 400, codeBadRequest},
		{"no valid_from", "POST", base + "/declarations", `{"indicator": "cp_audit", "level": "I", "evidence": "x"}`, 400, codeBadRequest},
		{"no indicator", "POST", base + "/declarations", `{"level": "I", "evidence": "x", "valid_from": "2026-01-01"}`, 400, codeBadRequest},
		{"unknown indicator", "POST", base + "/declarations", `{"indicator": "happiness", "level": "I", "evidence": "x", "valid_from": "2026-01-01"}`, 422, codeInvalid},
		{"bad level", "POST", base + "/declarations", `{"indicator": "cp_audit", "level": "IV", "evidence": "x", "valid_from": "2026-01-01"}`, 422, codeInvalid},
		{"level of a quantitative", "POST", base + "/declarations", `{"indicator": "paint_transfer_efficiency", "level": "I", "evidence": "x", "valid_from": "2026-01-01"}`, 422, codeInvalid},
		{"value of a metered", "POST", base + "/declarations", `{"indicator": "energy_per_vehicle", "value": 100, "evidence": "x", "valid_from": "2026-01-01"}`, 422, codeInvalid},
		{"two of level value n/a", "POST", base + "/declarations", `{"indicator": "paint_transfer_efficiency", "value": 60, "not_applicable": true, "evidence": "x", "valid_from": "2026-01-01"}`, 422, codeInvalid},
		{"no evidence", "POST", base + "/declarations", `{"indicator": "cp_audit", "level": "I", "evidence": "  ", "valid_from": "2026-01-01"}`, 422, codeInvalid},
		{"valid_to before valid_from", "POST", base + "/declarations", `{"indicator": "cp_audit", "level": "I", "evidence": "x", "valid_from": "2026-01-01", "valid_to": "2025-01-01"}`, 422, codeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expectError(t, f.do(t, tt.method, tt.target, supervisorToken, tt.body), tt.status, tt.code)
		})
	}
	t.Run("not json", func(t *testing.T) {
		req := httptest.NewRequest("POST", base+"/declarations", strings.NewReader("indicator=cp_audit"))
		req.Header.Set("Authorization", "Bearer "+supervisorToken)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		f.handler.ServeHTTP(w, req)
		expectError(t, w, http.StatusUnsupportedMediaType, codeUnsupported)
	})
}

// An enterprise's declarations wait for a supervisor; only accepted ones
// are scored; every step is an event; values the standard does not allow
// are refused with 422 naming the indicator and what it allows.
func TestDeclarationReview(t *testing.T) {
	f := newFixture(t)
	before, _ := f.eng.Snapshot().Result(entA)
	ba, _ := before.Assessment(f.pol.Window)
	if r, _ := ba.Indicator(f.std, "management_systems"); r.Level != scoring.LevelI {
		t.Fatalf("management_systems of %s: got %v, want the shipped Level I", entA, r.Level)
	}
	post := func(token, body string) *httptest.ResponseRecorder {
		return f.do(t, "POST", "/api/v1/enterprises/"+entA+"/declarations", token, body)
	}

	// Out of range, wrong level for a gate, audit without its record: 422.
	for body, want := range map[string][]string{
		`{"indicator": "robotic_electrostatic_share", "value": 150, "evidence": "x", "valid_from": "2026-05-01"}`:                    {"robotic_electrostatic_share", "0 to 100 %"},
		`{"indicator": "permit_compliance", "level": "II", "evidence": "x", "valid_from": "2026-05-01"}`:                             {"permit_compliance", "yes/no"},
		`{"indicator": "paint_transfer_efficiency", "value": 0.65, "unit": "fraction", "evidence": "x", "valid_from": "2026-05-01"}`: {"paint_transfer_efficiency is declared in %"},
		`{"indicator": "cp_audit", "level": "I", "evidence": "x", "valid_from": "2026-05-01"}`:                                       {"cp_audit", "auditor", "report_ref"},
		`{"indicator": "cp_audit", "level": "I", "evidence": "x", "auditor": "a", "report_ref": "r", "valid_from": "2026-09-01"}`:    {"future"},
	} {
		w := post(enterpriseToken, body)
		expectError(t, w, http.StatusUnprocessableEntity, codeInvalid)
		for _, s := range want {
			if !strings.Contains(w.Body.String(), s) {
				t.Errorf("%s: %s does not say %q", body, w.Body.String(), s)
			}
		}
	}

	// The enterprise declares its restrictive VOC indicator not
	// applicable, and an audit of its own: both wait.
	na := decode[DeclarationCreated](t, post(enterpriseToken, `{"indicator": "voc_per_m2", "not_applicable": true, "evidence": "we say so", "valid_from": "2026-05-01"}`))
	audit := decode[DeclarationCreated](t, post(enterpriseToken, `{"indicator": "cp_audit", "level": "I", "evidence": "our own audit", "auditor": "ourselves", "report_ref": "self-2026", "valid_from": "2026-05-20"}`))
	for _, d := range []DeclarationCreated{na, audit} {
		if d.Rescoring || d.Declaration.State != "submitted" || d.Declaration.InForce || d.Declaration.ReviewedBy != nil || d.Declaration.SubmittedBy != "enterprise yuntai" {
			t.Errorf("enterprise declaration: %+v, want submitted and not in force", d)
		}
	}
	pending := decode[DeclarationList](t, f.do(t, "GET", "/api/v1/declarations", supervisorToken, ""))
	if len(pending.Declarations) != 2 || !slices.ContainsFunc(pending.Declarations, func(d DeclarationDTO) bool { return d.ID == na.Declaration.ID }) {
		t.Fatalf("pending: %+v, want the two submitted", pending.Declarations)
	}
	// The overview counts what waits, for those who see it.
	if page := f.do(t, "GET", "/", supervisorToken, "").Body.String(); !strings.Contains(page, `<span class="badge yellow">2</span> 项申报待审核`) {
		t.Errorf("the supervisor's overview does not count 2 declarations waiting for review")
	}
	if page := f.do(t, "GET", "/", otherToken, "").Body.String(); strings.Contains(page, "项申报待审核") {
		t.Errorf("another enterprise's overview counts declarations it may not see")
	}
	// The other enterprise sees none of them; no enterprise may review.
	if other := decode[DeclarationList](t, f.do(t, "GET", "/api/v1/declarations", otherToken, "")); len(other.Declarations) != 0 {
		t.Errorf("another enterprise sees %+v", other.Declarations)
	}
	expectError(t, f.do(t, "POST", "/api/v1/declarations/"+na.Declaration.ID+"/accept", enterpriseToken, `{"note": "fine"}`), http.StatusForbidden, codeForbidden)
	expectError(t, f.do(t, "POST", "/api/v1/declarations/"+na.Declaration.ID+"/reject", supervisorToken, `{}`), http.StatusUnprocessableEntity, codeInvalid)
	expectError(t, f.do(t, "POST", "/api/v1/declarations/nope/accept", supervisorToken, ""), http.StatusNotFound, codeNotFound)
	expectError(t, f.do(t, "POST", "/api/v1/declarations/a%00b/reject", supervisorToken, `{"note": "x"}`), http.StatusNotFound, codeNotFound)

	// A supervisor rejects the VOC one with a note...
	rej := decode[DeclarationDTO](t, f.do(t, "POST", "/api/v1/declarations/"+na.Declaration.ID+"/reject", supervisorToken, `{"note": "the paint shop has an e-coat line; meter it"}`))
	if rej.State != "rejected" || deref(rej.ReviewedBy) != "supervisor bureau" || rej.ReviewedAt == nil || rej.ReviewNote == "" {
		t.Errorf("rejected: %+v", rej)
	}
	expectError(t, f.do(t, "POST", "/api/v1/declarations/"+na.Declaration.ID+"/accept", supervisorToken, ""), http.StatusConflict, codeConflict)
	// ... and the management level the enterprise reports is accepted.
	mgmt := decode[DeclarationCreated](t, post(enterpriseToken, `{"indicator": "management_systems", "level": "III", "evidence": "ISO 50001 certificate withdrawn 2026-05", "valid_from": "2026-05-15"}`))
	acc := decode[DeclarationDTO](t, f.do(t, "POST", "/api/v1/declarations/"+mgmt.Declaration.ID+"/accept", supervisorToken, `{"note": "certificate checked"}`))
	if acc.State != "accepted" || !acc.InForce {
		t.Errorf("accepted: %+v", acc)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, _ := f.eng.Snapshot().Result(entA)
		a, _ := res.Assessment(f.pol.Window)
		if r, _ := a.Indicator(f.std, "management_systems"); r.Level == scoring.LevelIII {
			if a.Y[0] >= ba.Y[0] {
				t.Errorf("Y_I did not fall: %v -> %v", ba.Y[0], a.Y[0])
			}
			// The rejected and the pending declarations never counted.
			if voc, _ := a.Indicator(f.std, "voc_per_m2"); voc.Status == scoring.NotApplicable {
				t.Errorf("voc_per_m2 is not applicable after its declaration was rejected: %+v", voc)
			}
			if !res.LastAudit.Equal(before.LastAudit) || !res.NextAuditDue.Equal(before.NextAuditDue) {
				t.Errorf("a submitted audit moved the cycle: last %v -> %v, due %v -> %v", before.LastAudit, res.LastAudit, before.NextAuditDue, res.NextAuditDue)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the score did not follow the accepted declaration within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The accepted audit record restarts the cycle from its date.
	decode[DeclarationDTO](t, f.do(t, "POST", "/api/v1/declarations/"+audit.Declaration.ID+"/accept", supervisorToken, `{"note": "report filed"}`))
	auditDay := time.Date(2026, 5, 20, 0, 0, 0, 0, time.FixedZone("", 8*3600))
	for deadline := time.Now().Add(10 * time.Second); ; {
		res, _ := f.eng.Snapshot().Result(entA)
		if res.LastAudit.Equal(auditDay) {
			if res.NextAuditDue.Before(auditDay.AddDate(1, 0, 0)) {
				t.Errorf("next audit due %v, want at least a year after the audit", res.NextAuditDue)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last audit %v, want the accepted record's %v", res.LastAudit, auditDay)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The enterprise sees each declaration's state, reviewer and time.
	list := decode[DeclarationsDTO](t, f.do(t, "GET", "/api/v1/enterprises/"+entA+"/declarations", enterpriseToken, ""))
	byID := map[string]DeclarationDTO{}
	for _, d := range list.Declarations {
		byID[d.ID] = d
	}
	if d := byID[na.Declaration.ID]; d.State != "rejected" || d.ReviewNote == "" {
		t.Errorf("listed rejected: %+v", d)
	}
	if d := byID[mgmt.Declaration.ID]; d.State != "accepted" || !d.InForce || deref(d.ReviewedBy) != "supervisor bureau" {
		t.Errorf("listed accepted: %+v", d)
	}
	if list.Pending != 0 || len(list.Declarable) == 0 {
		t.Errorf("pending %d, declarable %d", list.Pending, len(list.Declarable))
	}
	// Every step is an event.
	evs := decode[struct {
		Events []struct{ Kind scoring.EventKind } `json:"events"`
	}](t, f.do(t, "GET", "/api/v1/events?enterprise="+entA+"&from=2026-05-01", supervisorToken, ""))
	n := map[scoring.EventKind]int{}
	for _, e := range evs.Events {
		n[e.Kind]++
	}
	if n[scoring.EventDeclarationSubmitted] != 3 || n[scoring.EventDeclarationRejected] != 1 || n[scoring.EventDeclarationAccepted] < 2 {
		t.Errorf("declaration events: %v", n)
	}
}

// The event stream delivers live events to a client, filtered by the
// token's enterprise.
func TestEventStream(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.handler)
	defer srv.Close()
	open := func(token string) (*bufio.Reader, func()) {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/events/stream", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("got %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		return bufio.NewReader(resp.Body), func() { resp.Body.Close() }
	}
	sup, closeSup := open(supervisorToken)
	defer closeSup()
	ent, closeEnt := open(otherToken)
	defer closeEnt()
	readEvent := func(r *bufio.Reader) (kind string, ev scoring.Event) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended: %v", err)
			}
			if k, ok := strings.CutPrefix(line, "event: "); ok {
				kind = strings.TrimSpace(k)
			}
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				if err := json.Unmarshal([]byte(d), &ev); err != nil {
					t.Fatal(err)
				}
				return kind, ev
			}
		}
	}
	// Wait for both subscriptions before publishing.
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.events.mu.Lock()
		n := len(f.events.subs)
		f.events.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscriptions", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.events.Publish(scoring.Event{Time: fixtureNow, Enterprise: entA, Kind: scoring.EventLevelDrop, Indicator: "energy_per_vehicle", Reason: "a"})
	f.events.Publish(scoring.Event{Time: fixtureNow, Enterprise: entB, Kind: scoring.EventStale, Meter: "E-1", Reason: "b"})
	if k, ev := readEvent(sup); k != "level_drop" || ev.Enterprise != entA {
		t.Errorf("supervisor got %s %+v first", k, ev)
	}
	if k, ev := readEvent(sup); k != "stale" || ev.Enterprise != entB {
		t.Errorf("supervisor got %s %+v second", k, ev)
	}
	if k, ev := readEvent(ent); k != "stale" || ev.Enterprise != entB {
		t.Errorf("the enterprise got %s %+v, want only its own stale event", k, ev)
	}
	// Closing the broadcaster ends the streams (as at shutdown).
	f.events.Close()
	if _, err := sup.ReadString('\n'); err == nil {
		for {
			if _, err := sup.ReadString('\n'); err != nil {
				break
			}
		}
	}
}

// The OpenAPI description lists exactly the routes gin serves.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	f := newFixture(t)
	w := f.do(t, "GET", "/api/v1/openapi.json", "", "")
	var doc struct {
		OpenAPI    string                               `json:"openapi"`
		Paths      map[string]map[string]map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil || doc.OpenAPI != "3.0.3" {
		t.Fatalf("openapi.json: %v %q", err, doc.OpenAPI)
	}
	inDoc := map[string]bool{}
	for p, ops := range doc.Paths {
		for m, op := range ops {
			inDoc[strings.ToUpper(m)+" "+p] = true
			if op["summary"] == "" || op["responses"] == nil || op["operationId"] == "" {
				t.Errorf("%s %s: incomplete operation %v", m, p, op)
			}
		}
	}
	served := map[string]bool{}
	for _, r := range f.handler.(*gin.Engine).Routes() {
		served[r.Method+" "+OpenAPIPath(r.Path)] = true
	}
	for k := range served {
		if !inDoc[k] {
			t.Errorf("served but not in openapi.json: %s", k)
		}
	}
	for k := range inDoc {
		if !served[k] {
			t.Errorf("in openapi.json but not served: %s", k)
		}
	}
	// Every $ref points at a schema.
	for _, ref := range refs(w.Body.String()) {
		if _, ok := doc.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]; !ok {
			t.Errorf("dangling $ref %s", ref)
		}
	}
	for _, name := range []string{"EnterpriseDetail", "RankingDTO", "DeclarationInput", "StandardDTO", "EventDTO"} {
		if doc.Components.Schemas[name] == nil {
			t.Errorf("no schema %s", name)
		}
	}
}

func refs(doc string) []string {
	var out []string
	for _, part := range strings.Split(doc, `"$ref":"`)[1:] {
		ref, _, _ := strings.Cut(part, `"`)
		out = append(out, ref)
	}
	return out
}

func TestStandardAndHistory(t *testing.T) {
	f := newFixture(t)
	sd := decode[StandardDTO](t, f.do(t, "GET", "/api/v1/standard", enterpriseToken, ""))
	n := 0
	for _, g := range sd.Groups {
		for _, ind := range g.Indicators {
			n++
			if len(ind.Src) == 0 {
				t.Errorf("%s without src", ind.ID)
			}
			for _, s := range ind.Src {
				if _, ok := sd.Sources[s]; !ok && s != "estimate" && s != "unverified" {
					t.Errorf("%s: src %q is not a source", ind.ID, s)
				}
			}
		}
	}
	if n != len(f.std.Indicators) || len(sd.Policy.Codes) != 3 || len(sd.Factors) == 0 {
		t.Errorf("standard: %d indicators, policy %+v", n, sd.Policy)
	}
	h := decode[HistoryDTO](t, f.do(t, "GET", "/api/v1/enterprises/"+entA+"/indicators/energy_per_vehicle/history?max_points=10", enterpriseToken, ""))
	if h.Stored != 31 || len(h.Points) != 10 || h.Points[0].Value == nil || h.Points[9].Time != fixtureNow {
		t.Errorf("history: stored %d, %d points, %+v", h.Stored, len(h.Points), h.Points)
	}
}

// An enterprise may say an amount is absent (no gas connection); it waits
// for review like any declaration.
func TestDeclareAbsent(t *testing.T) {
	f := newFixture(t)
	w := f.do(t, "POST", "/api/v1/enterprises/"+entA+"/declarations", enterpriseToken,
		`{"absent": "natural_gas", "evidence": "no gas connection (utility letter)", "valid_from": "2026-05-01"}`)
	got := decode[DeclarationCreated](t, w)
	if got.Declaration.Absent != "natural_gas" || got.Declaration.State != "submitted" || got.Rescoring {
		t.Errorf("absent: %+v", got)
	}
	expectError(t, f.do(t, "POST", "/api/v1/enterprises/"+entA+"/declarations", enterpriseToken,
		`{"absent": "natural_gas", "indicator": "cp_audit", "evidence": "x", "valid_from": "2026-05-01"}`), http.StatusBadRequest, codeBadRequest)
	expectError(t, f.do(t, "POST", "/api/v1/enterprises/"+entA+"/declarations", enterpriseToken,
		`{"absent": "moonlight", "evidence": "x", "valid_from": "2026-05-01"}`), http.StatusUnprocessableEntity, codeInvalid)
}

// A client reconnecting with Last-Event-ID is first sent the events after
// that one (from the store), oldest first, then the live ones; an id the
// stream never sent is refused.
func TestEventStreamResumes(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.handler)
	defer srv.Close()
	all := decode[EventList](t, f.do(t, "GET", "/api/v1/events?enterprise="+entB+"&from=2026-01-01&to=2026-12-31&limit=1000", supervisorToken, ""))
	if len(all.Events) < 3 {
		t.Fatalf("the fixture has %d events of entB; want a few", len(all.Events))
	}
	// Newest first: resume after the third newest.
	lastSeen := all.Events[2].Event
	want := []scoring.Event{all.Events[1].Event, all.Events[0].Event}

	open := func(lastID string) *http.Response {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/events/stream?enterprise="+entB, nil)
		req.Header.Set("Authorization", "Bearer "+supervisorToken)
		req.Header.Set("Last-Event-ID", lastID)
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req) // the stream never ends by itself
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := open("yesterday"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("Last-Event-ID yesterday: got %d, want 400", resp.StatusCode)
		resp.Body.Close()
	}
	resp := open(eventID(lastSeen))
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	var got []scoring.Event
	var ids []string
	for len(got) < len(want) {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended after %d events: %v", len(got), err)
		}
		if id, ok := strings.CutPrefix(line, "id: "); ok {
			ids = append(ids, strings.TrimSpace(id))
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			var ev scoring.Event
			if err := json.Unmarshal([]byte(d), &ev); err != nil {
				t.Fatal(err)
			}
			if eventID(ev) == eventID(lastSeen) {
				t.Fatalf("the last event seen was sent again: %v", ev)
			}
			// Events at the time of the last one seen may come again;
			// every one after it must come, oldest first.
			if ev.Time.Equal(lastSeen.Time) && !slices.ContainsFunc(want, func(w scoring.Event) bool { return eventID(w) == eventID(ev) }) {
				continue
			}
			got = append(got, ev)
		}
	}
	for i := range want {
		if eventID(got[i]) != eventID(want[i]) {
			t.Errorf("replayed event %d: %v, want %v", i, got[i], want[i])
		}
	}
	if len(ids) < len(want) || ids[len(ids)-1] != eventID(want[len(want)-1]) {
		t.Errorf("ids %v, want each event's id", ids)
	}
}
