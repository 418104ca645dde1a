package web

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/scoring"
)

// TestCodeReasonsInAPI: the list and the detail give the structured
// reasons of the code in force, the pending change apart (its code,
// reasons and the date it takes effect) and flag an overdue audit.
//
// The fleet is scored with the shipped policy: entB is red (below Level
// III, its restrictive VOC per m2 below the Level III benchmark, 45
// g/m2). Then the policy is reloaded with red kept for exceedances only:
// entB's candidate is yellow (VOC per m2 below the Level II benchmark, 35
// g/m2), a better code that waits for the 30-day upgrade hold, so red
// stays in force with its reasons, yellow is pending since now and takes
// effect 30 days later. entB's last audit (cp_audit) is from 2021-05-10;
// red's 12-month interval made it due 2022-05-10 (UTC+8), i.e.
// 2022-05-09 16:00 UTC: 1461 days to 2026-05-09 16:00 and 22 days 10 h
// more to fixtureNow, overdue by 1483 days. entA (green, audit
// 2024-09-01, 60 months) is not overdue.
func TestCodeReasonsInAPI(t *testing.T) {
	f := newFixture(t)
	f.redWhen(t, "when_any: [exceedance]")

	list := decode[EnterpriseList](t, f.do(t, "GET", "/api/v1/enterprises", supervisorToken, ""))
	var b, a *EnterpriseSummary
	for i := range list.Enterprises {
		switch list.Enterprises[i].ID {
		case entA:
			a = &list.Enterprises[i]
		case entB:
			b = &list.Enterprises[i]
		}
	}
	if a == nil || b == nil {
		t.Fatalf("list: got %v, want %s and %s", list.Enterprises, entA, entB)
	}
	d := decode[detailJSON](t, f.do(t, "GET", "/api/v1/enterprises/"+entB, supervisorToken, ""))
	for _, s := range []struct {
		where string
		sum   *EnterpriseSummary
	}{{"list", b}, {"detail", &d.EnterpriseSummary}} {
		e := s.sum
		if deref(e.Code) != "red" || e.CodeText != (Text{"红码", "red"}) {
			t.Errorf("%s: code %v %+v, want red", s.where, deref(e.Code), e.CodeText)
		}
		type reason struct{ kind, indicator string }
		var got []reason
		for _, r := range e.CodeReasons {
			got = append(got, reason{r.Kind, deref(r.Indicator)})
			if r.TextZH == "" || r.TextEN == "" {
				t.Errorf("%s: reason %+v without texts", s.where, r)
			}
		}
		if want := []reason{{"below_iii", ""}, {"restrictive_fail", "voc_per_m2"}}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Fatalf("%s: reasons of the code in force: got %+v, want %v (red's, not the pending yellow's)", s.where, e.CodeReasons, want)
		}
		if r := e.CodeReasons[0]; r.Benchmark == nil || *r.Benchmark != 100 || r.Value == nil || *r.Value >= 100 || deref(r.Level) != "below III" {
			t.Errorf("%s: below_iii reason %+v, want Y_III below its benchmark 100", s.where, r)
		}
		if r := e.CodeReasons[1]; r.Benchmark == nil || *r.Benchmark != 45 || r.Value == nil || *r.Value <= 45 || r.Unit != "g/m2" {
			t.Errorf("%s: restrictive_fail reason %+v, want VOC per m2 above its Level III benchmark 45 g/m2", s.where, r)
		}
		p := e.PendingChange
		if p == nil {
			t.Fatalf("%s: no pending change, want yellow", s.where)
		}
		if p.Code != "yellow" || !p.Since.Equal(fixtureNow) || p.TakesEffect == nil || !p.TakesEffect.Equal(fixtureNow.Add(30*24*time.Hour)) ||
			deref(e.PendingCode) != "yellow" || e.PendingSince == nil || !e.PendingSince.Equal(fixtureNow) {
			t.Errorf("%s: pending %+v (pending_code %v since %v), want yellow since %v taking effect 30 days later", s.where, p, deref(e.PendingCode), e.PendingSince, fixtureNow)
		}
		if len(p.Reasons) != 1 || p.Reasons[0].Kind != "restrictive_below_ii" || deref(p.Reasons[0].Indicator) != "voc_per_m2" ||
			p.Reasons[0].Benchmark == nil || *p.Reasons[0].Benchmark != 35 {
			t.Errorf("%s: pending reasons %+v, want VOC per m2 against its Level II benchmark 35", s.where, p.Reasons)
		}
		// Due at local midnight (2022-05-09T16:00Z): the local date.
		if e.NextAuditDue == nil || e.NextAuditDue.String() != "2022-05-10" || !e.AuditOverdue || e.AuditNote == nil ||
			e.AuditNote.EN != "audit overdue by 1483 days (due 2022-05-10)" || !strings.Contains(e.AuditNote.ZH, "逾期 1483 天") {
			t.Errorf("%s: next audit due %v overdue %v note %+v, want overdue since 2022-05-10", s.where, e.NextAuditDue, e.AuditOverdue, e.AuditNote)
		}
	}
	if a.AuditOverdue || a.AuditNote != nil || a.PendingChange != nil || len(a.CodeReasons) != 1 || a.CodeReasons[0].Kind != "level_i" {
		t.Errorf("%s: overdue %v note %v pending %v reasons %+v, want green on Level I, nothing pending, audit not due", entA, a.AuditOverdue, a.AuditNote, a.PendingChange, a.CodeReasons)
	}

	// The overview and the report say the same.
	page := f.do(t, "GET", "/", supervisorToken, "").Body.String()
	for _, want := range []string{"审核已逾期 1483 天", "逾期 overdue", "将于 2026-07-01 由红码转为黄码", "turns from red to yellow on 2026-07-01"} {
		if !strings.Contains(page, want) {
			t.Errorf("overview: no %q", want)
		}
	}
	rep := f.do(t, "GET", "/api/v1/enterprises/"+entB+"/report", supervisorToken, "").Body.String()
	for _, want := range []string{"audit overdue by 1483 days", "Pending", "turns from red to yellow on 2026-07-01", "misses its Level II benchmark"} {
		if !strings.Contains(rep, want) {
			t.Errorf("report: no %q", want)
		}
	}
}

// redWhen reloads the shipped policy with its red rule's conditions
// replaced by when (e.g. "when_any: [exceedance]"); the engine grades the
// fleet again under it.
func (f *fixture) redWhen(t *testing.T, when string) {
	t.Helper()
	data, err := os.ReadFile("../scoring/policy/default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const red = "when_any: [below_iii, restrictive_fail, exceedance]"
	if !strings.Contains(string(data), red) {
		t.Fatalf("the shipped policy has no %q", red)
	}
	pol, err := scoring.ParsePolicy("red-"+when+".yaml", []byte(strings.Replace(string(data), red, when, 1)), f.std)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.eng.Reload(context.Background(), scoring.Update{Standard: f.std, Policy: pol, Registry: f.reg, Solutions: f.lib, Declarations: f.decl}); err != nil {
		t.Fatal(err)
	}
}
