package review_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/review"
	"github.com/cleanprod/cleanprod/scoring"
)

var (
	caseOfficer  = review.Actor{Name: "li", Role: review.Enterprise, Enterprise: "ent-a"}
	otherOfficer = review.Actor{Name: "zhao", Role: review.Enterprise, Enterprise: "ent-b"}
)

func TestCaseLifecycle(t *testing.T) {
	std := standard(t)
	for name, pts := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			book, told := tickingBook(pts, std)
			now := day0.Add(11 * 24 * time.Hour) // after the book's clock: a deadline from it is in the future

			// A code turning red opens a case; the same event again, or a
			// later red while it is open, opens none.
			red := scoring.Event{Time: day0, Enterprise: "ent-a", Kind: scoring.EventCodeChange, OldCode: "yellow", NewCode: "red", Reason: "below Level III"}
			c, opened, err := book.OpenFromEvent(ctx, red)
			if err != nil || !opened {
				t.Fatalf("open from a red code: %v, %v; want a case", opened, err)
			}
			if c.State != review.CaseOpen || c.Cause != review.CauseRedCode || !strings.Contains(c.Reason, "below Level III") {
				t.Errorf("case from a red code: %+v", c)
			}
			for _, e := range []scoring.Event{red, {Time: day0.Add(time.Hour), Enterprise: "ent-a", Kind: scoring.EventCodeChange, NewCode: "red"}} {
				if _, again, err := book.OpenFromEvent(ctx, e); err != nil || again {
					t.Errorf("event %v opened another case (%v)", e, err)
				}
			}
			// Events that call for no case open none.
			for _, e := range []scoring.Event{
				{Time: day0, Enterprise: "ent-a", Kind: scoring.EventCodeChange, OldCode: "red", NewCode: "yellow"},
				{Time: day0, Enterprise: "ent-a", Kind: scoring.EventRestrictiveFail, Indicator: "voc_per_m2", Resolved: true},
				{Time: day0, Enterprise: "ent-a", Kind: scoring.EventStale, Meter: "E-1"},
			} {
				if _, o, err := book.OpenFromEvent(ctx, e); err != nil || o {
					t.Errorf("event %v opened a case (%v)", e, err)
				}
			}

			// Only a supervisor acknowledges, assigns, rejects, closes.
			deadline := now.Add(14 * 24 * time.Hour)
			for _, who := range []review.Actor{caseOfficer, otherOfficer} {
				if _, err := book.Acknowledge(ctx, c.ID, who, "li", deadline, ""); !errors.Is(err, review.ErrState) {
					t.Errorf("%s acknowledged: %v, want ErrState", who, err)
				}
				if _, err := book.Close(ctx, c.ID, who, "done"); !errors.Is(err, review.ErrState) {
					t.Errorf("%s closed: %v, want ErrState", who, err)
				}
			}
			// A plan answers an acknowledged case only.
			if _, err := book.SubmitPlan(ctx, c.ID, caseOfficer, "fix", nil); !errors.Is(err, review.ErrState) {
				t.Errorf("plan on an open case: %v, want ErrState", err)
			}
			var inv *review.InvalidError
			if _, err := book.Acknowledge(ctx, c.ID, reviewer, "", deadline, ""); !errors.As(err, &inv) {
				t.Errorf("acknowledge without assignee: %v, want InvalidError", err)
			}
			if _, err := book.Acknowledge(ctx, c.ID, reviewer, "li", day0, ""); !errors.As(err, &inv) {
				t.Errorf("acknowledge with a past deadline: %v, want InvalidError", err)
			}
			c, err = book.Acknowledge(ctx, c.ID, reviewer, "li (ent-a EHS)", deadline, "paint shop VOC")
			if err != nil || c.State != review.CaseAcknowledged || c.Assignee != "li (ent-a EHS)" || !c.Deadline.Equal(deadline) {
				t.Fatalf("acknowledge: %+v, %v", c, err)
			}
			// Another enterprise's officer cannot answer it.
			if _, err := book.SubmitPlan(ctx, c.ID, otherOfficer, "fix", nil); !errors.Is(err, review.ErrCaseNotFound) {
				t.Errorf("another enterprise's plan: %v, want ErrCaseNotFound", err)
			}
			c, err = book.SubmitPlan(ctx, c.ID, caseOfficer, "replace the RTO burner", []string{" invoice-2026-118.pdf ", ""})
			if err != nil || c.State != review.CasePlanSubmitted || !slices.Equal(c.Evidence, []string{"invoice-2026-118.pdf"}) {
				t.Fatalf("plan: %+v, %v", c, err)
			}
			if _, err := book.RejectPlan(ctx, c.ID, reviewer, " "); !errors.As(err, &inv) {
				t.Errorf("reject without a note: %v, want InvalidError", err)
			}
			if c, err = book.RejectPlan(ctx, c.ID, reviewer, "no date for the burner"); err != nil || c.State != review.CaseAcknowledged {
				t.Fatalf("reject plan: %+v, %v", c, err)
			}
			if c, err = book.SubmitPlan(ctx, c.ID, caseOfficer, "replace the RTO burner by 2026-04-01", []string{"po-7781"}); err != nil {
				t.Fatal(err)
			}
			if c, err = book.Close(ctx, c.ID, reviewer, "burner replaced, VOC back under III"); err != nil || c.State != review.CaseClosed {
				t.Fatalf("close: %+v, %v", c, err)
			}
			if _, err := book.Close(ctx, c.ID, reviewer, "again"); !errors.Is(err, review.ErrState) {
				t.Errorf("close twice: %v, want ErrState", err)
			}

			// The store holds the whole history, who and when.
			got, err := book.Case(ctx, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			var steps []string
			for _, s := range got.History {
				steps = append(steps, s.Action+"/"+string(s.State)+"/"+s.By.Name)
				if s.At.IsZero() {
					t.Errorf("step %s has no time", s.Action)
				}
			}
			want := []string{"opened/open/scorer", "acknowledged/acknowledged/wang", "plan_submitted/plan_submitted/li",
				"plan_rejected/acknowledged/wang", "plan_submitted/plan_submitted/li", "closed/closed/wang"}
			if !slices.Equal(steps, want) {
				t.Errorf("history:\n got %v\nwant %v", steps, want)
			}
			if got.Plan != "replace the RTO burner by 2026-04-01" || !slices.Equal(got.Evidence, []string{"po-7781"}) || got.Assignee != "li (ent-a EHS)" {
				t.Errorf("stored case: %+v", got)
			}
			var kinds []scoring.EventKind
			for _, e := range *told {
				kinds = append(kinds, e.Kind)
				if !strings.HasPrefix(e.Reason, "case "+c.ID) || e.Enterprise != "ent-a" {
					t.Errorf("event %v does not name case %s of ent-a", e, c.ID)
				}
			}
			wantKinds := []scoring.EventKind{scoring.EventCaseOpened, scoring.EventCaseAcknowledged, scoring.EventCasePlanSubmitted,
				scoring.EventCasePlanRejected, scoring.EventCasePlanSubmitted, scoring.EventCaseClosed}
			if !slices.Equal(kinds, wantKinds) {
				t.Errorf("events: got %v, want %v", kinds, wantKinds)
			}
			// The events are stored with the case.
			evs, err := pts.Points(ctx, scoring.MeasurementEvent, map[string]string{"enterprise": "ent-a"}, day0, now.Add(time.Hour))
			if err != nil || len(evs) != len(wantKinds) {
				t.Errorf("stored events: %d, %v; want %d", len(evs), err, len(wantKinds))
			}

			// Closed, a later red code opens a new case; reopening the
			// closed one needs a supervisor, a note and a deadline.
			if _, o, err := book.OpenFromEvent(ctx, scoring.Event{Time: day0.Add(48 * time.Hour), Enterprise: "ent-a", Kind: scoring.EventCodeChange, NewCode: "red"}); err != nil || !o {
				t.Errorf("a red code after the close opened no case: %v", err)
			}
			if _, err := book.Reopen(ctx, c.ID, caseOfficer, now.Add(72*time.Hour), "not fixed"); !errors.Is(err, review.ErrState) {
				t.Errorf("an officer reopened: %v", err)
			}
			if r, err := book.Reopen(ctx, c.ID, reviewer, now.Add(72*time.Hour), "VOC failed again"); err != nil || r.State != review.CaseAcknowledged {
				t.Errorf("reopen: %+v, %v", r, err)
			}
		})
	}
}

func TestCaseFiltersAndOverdue(t *testing.T) {
	std := standard(t)
	for name, pts := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			now := day0
			var overdue []scoring.Event
			book := review.NewBook(pts, std, func() time.Time { return now }, func(e scoring.Event) {
				if e.Kind == scoring.EventCaseOverdue {
					overdue = append(overdue, e)
				}
			})
			a, _, err := book.OpenFromEvent(ctx, scoring.Event{Time: day0, Enterprise: "ent-a", Kind: scoring.EventRestrictiveFail, Indicator: "voc_per_m2"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := book.OpenCase(ctx, "ent-b", "", "site visit found open drums", caseOfficer); !errors.Is(err, review.ErrState) {
				t.Errorf("an officer opened a case: %v", err)
			}
			b, err := book.OpenCase(ctx, "ent-b", "", "site visit found open drums", reviewer)
			if err != nil {
				t.Fatal(err)
			}
			now = now.Add(time.Hour)
			if _, err := book.Acknowledge(ctx, a.ID, reviewer, "li", day0.Add(48*time.Hour), ""); err != nil {
				t.Fatal(err)
			}
			if _, err := book.Acknowledge(ctx, b.ID, reviewer, "zhao", day0.Add(96*time.Hour), ""); err != nil {
				t.Fatal(err)
			}
			ids := func(f review.CaseFilter) []string {
				t.Helper()
				cs, err := book.Cases(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, c := range cs {
					out = append(out, c.ID)
				}
				return out
			}
			if got := ids(review.CaseFilter{Enterprise: "ent-b"}); !slices.Equal(got, []string{b.ID}) {
				t.Errorf("ent-b's cases: %v, want [%s]", got, b.ID)
			}
			if got := ids(review.CaseFilter{Overdue: true}); len(got) != 0 {
				t.Errorf("overdue before any deadline: %v", got)
			}

			// Past a's deadline: a is overdue, announced once.
			now = day0.Add(72 * time.Hour)
			// The replica of another shard neither marks nor announces it.
			if active, err := book.MarkOverdueOf(ctx, func(e string) bool { return e == "ent-b" }); err != nil || len(active) != 1 || active[0].ID != b.ID || len(overdue) != 0 {
				t.Fatalf("mark overdue of ent-b only: %v (%v), %d announced; want b alone and nothing announced", active, err, len(overdue))
			}
			for range 2 {
				active, err := book.MarkOverdue(ctx)
				if err != nil || len(active) != 2 {
					t.Fatalf("mark overdue: %d active, %v", len(active), err)
				}
			}
			if len(overdue) != 1 || !strings.Contains(overdue[0].Reason, a.ID) {
				t.Errorf("overdue events: %v, want one for %s", overdue, a.ID)
			}
			if got := ids(review.CaseFilter{Overdue: true}); !slices.Equal(got, []string{a.ID}) {
				t.Errorf("overdue: %v, want [%s]", got, a.ID)
			}
			// Overdue first in every list.
			if got := ids(review.CaseFilter{Active: true}); !slices.Equal(got, []string{a.ID, b.ID}) {
				t.Errorf("active: %v, want [%s %s]", got, a.ID, b.ID)
			}
			// A new deadline clears it; closing ends it.
			c, err := book.Acknowledge(ctx, a.ID, reviewer, "li", day0.Add(30*24*time.Hour), "extended")
			if err != nil || c.OverdueAnnounced || c.Overdue(now) {
				t.Errorf("extended: %+v, %v", c, err)
			}
			if _, err := book.Close(ctx, b.ID, reviewer, ""); err == nil {
				t.Errorf("closed a case without plan or note")
			}
			if _, err := book.Close(ctx, b.ID, reviewer, "drums removed on the visit"); err != nil {
				t.Fatal(err)
			}
			if got := ids(review.CaseFilter{State: review.CaseClosed}); !slices.Equal(got, []string{b.ID}) {
				t.Errorf("closed: %v, want [%s]", got, b.ID)
			}
			now = day0.Add(97 * time.Hour)
			if _, err := book.MarkOverdue(ctx); err != nil || len(overdue) != 1 {
				t.Errorf("a closed case past its deadline was announced overdue: %v %v", overdue, err)
			}
		})
	}
}
