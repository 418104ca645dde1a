package review_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/review"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func standard(t *testing.T) *scoring.Standard {
	t.Helper()
	std, err := scoring.LoadStandard(filepath.Join("..", "scoring", "standards", "auto-manufacturing.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return std
}

// stores returns the embedded store and, with servers, a real InfluxDB:
// the book must behave the same on both.
func stores(t *testing.T) map[string]review.Points {
	t.Helper()
	out := map[string]review.Points{"bolt": boltStore(t)}
	testenv.NeedServers(t)
	db := testenv.Influx(t)
	s, err := store.OpenInflux(store.InfluxConfig{URL: db.URL, Token: db.Token, Org: db.Org, Bucket: db.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	out["influx"] = s
	return out
}

// boltStore is a fresh embedded store, closed at the test's end.
func boltStore(t *testing.T) *store.Bolt {
	t.Helper()
	b, err := store.OpenBolt(filepath.Join(t.TempDir(), "cp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// tickingBook is a book over pts whose clock starts ten days after day0
// and moves a second at each read, with the events it told so far.
func tickingBook(pts review.Points, std *scoring.Standard) (*review.Book, *[]scoring.Event) {
	now := day0.Add(10 * 24 * time.Hour)
	var events []scoring.Event
	book := review.NewBook(pts, std, func() time.Time { now = now.Add(time.Second); return now },
		func(e scoring.Event) { events = append(events, e) })
	return book, &events
}

func ptr(v float64) *float64 { return &v }

var (
	day0     = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	officer  = review.Actor{Name: "li", Role: review.Enterprise}
	reviewer = review.Actor{Name: "wang", Role: review.Supervisor}
)

func TestReviewSteps(t *testing.T) {
	std := standard(t)
	for name, pts := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			book, told := tickingBook(pts, std)

			// An enterprise's not-applicable restrictive indicator waits.
			na, err := book.Submit(ctx, scoring.Declaration{Enterprise: "ent-a", Indicator: "permit_compliance", NotApplicable: true,
				Evidence: "no discharge", ValidFrom: day0}, officer)
			if err != nil {
				t.Fatal(err)
			}
			if na.State != review.Submitted {
				t.Fatalf("enterprise declaration state = %s, want submitted", na.State)
			}
			ds, err := book.Declarations(ctx)
			if err != nil || len(ds) != 0 {
				t.Fatalf("scored declarations before review = %v, %v; want none", ds, err)
			}
			// A supervisor's own is accepted at once.
			sup, err := book.Submit(ctx, scoring.Declaration{Enterprise: "ent-a", Indicator: "paint_transfer_efficiency", Value: ptr(65),
				Evidence: "trial report", ValidFrom: day0}, reviewer)
			if err != nil || sup.State != review.Accepted || sup.ReviewedBy != reviewer {
				t.Fatalf("supervisor declaration = %+v, %v; want accepted by %v", sup, err, reviewer)
			}
			pending, err := book.Records(ctx, review.Filter{State: review.Submitted})
			if err != nil || len(pending) != 1 || pending[0].ID != na.ID {
				t.Fatalf("pending = %+v, %v; want the one submitted", pending, err)
			}
			// Reject needs a note; then the record says who and why.
			if _, err := book.Reject(ctx, na.ID, reviewer, " "); !errors.As(err, new(*review.InvalidError)) {
				t.Fatalf("reject without a note: err = %v, want InvalidError", err)
			}
			if _, err := book.Accept(ctx, na.ID, officer, ""); !errors.Is(err, review.ErrState) {
				t.Fatalf("enterprise accepting: err = %v, want ErrState", err)
			}
			rej, err := book.Reject(ctx, na.ID, reviewer, "the plant holds permit 915001; the gate applies")
			if err != nil || rej.State != review.Rejected || rej.ReviewedBy != reviewer || rej.Note == "" || rej.ReviewedAt.IsZero() {
				t.Fatalf("rejected = %+v, %v", rej, err)
			}
			if _, err := book.Accept(ctx, na.ID, reviewer, ""); !errors.Is(err, review.ErrState) {
				t.Fatalf("accepting a rejected one: err = %v, want ErrState", err)
			}
			if _, err := book.Accept(ctx, "nope", reviewer, ""); !errors.Is(err, review.ErrNotFound) {
				t.Fatalf("accepting an unknown id: err = %v, want ErrNotFound", err)
			}
			ds, _ = book.Declarations(ctx)
			if len(ds) != 1 || ds[0].Indicator != "paint_transfer_efficiency" {
				t.Fatalf("scored = %+v; want the supervisor's only", ds)
			}

			// A later accepted declaration of the same indicator and
			// valid_from replaces the earlier one.
			v2, err := book.Submit(ctx, scoring.Declaration{Enterprise: "ent-a", Indicator: "paint_transfer_efficiency", Value: ptr(70),
				Evidence: "second trial", ValidFrom: day0}, officer)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := book.Accept(ctx, v2.ID, reviewer, "checked the trial"); err != nil {
				t.Fatal(err)
			}
			ds, _ = book.Declarations(ctx)
			if len(ds) != 1 || *ds[0].Value != 70 {
				t.Fatalf("scored after the second is accepted = %+v; want the value 70 alone", ds)
			}
			all, _ := book.Records(ctx, review.Filter{Enterprise: "ent-a"})
			states := map[string]review.State{}
			for _, r := range all {
				states[r.ID] = r.State
			}
			if states[sup.ID] != review.Superseded || states[v2.ID] != review.Accepted || states[na.ID] != review.Rejected {
				t.Fatalf("states = %v", states)
			}

			// Every step is an event, stored with the record.
			var kinds []string
			for _, e := range *told {
				kinds = append(kinds, string(e.Kind))
			}
			want := "declaration_submitted declaration_accepted declaration_rejected declaration_submitted declaration_accepted"
			if got := strings.Join(kinds, " "); got != want {
				t.Fatalf("events = %s, want %s", got, want)
			}
			stored, err := pts.Points(ctx, scoring.MeasurementEvent, map[string]string{"enterprise": "ent-a"}, day0, day0.AddDate(1, 0, 0))
			if err != nil || len(stored) != len(*told) {
				t.Fatalf("stored events = %d, %v; want %d", len(stored), err, len(*told))
			}

			// Another book on the same store (a restart, another replica)
			// sees the same.
			again := review.NewBook(pts, std, nil, nil)
			ds2, err := again.Declarations(ctx)
			if err != nil || len(ds2) != 1 || *ds2[0].Value != 70 || ds2[0].Evidence != "second trial" {
				t.Fatalf("a second book reads %+v, %v", ds2, err)
			}
		})
	}
}

func TestSubmitChecksTheStandard(t *testing.T) {
	std := standard(t)
	b, err := store.OpenBolt(filepath.Join(t.TempDir(), "cp.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	book := review.NewBook(b, std, nil, nil)
	cases := []struct {
		d    scoring.Declaration
		want []string // in the message
	}{
		{scoring.Declaration{Indicator: "robotic_electrostatic_share", Value: ptr(150)}, []string{"robotic_electrostatic_share", "0 to 100 %"}},
		{scoring.Declaration{Indicator: "paint_transfer_efficiency", Value: ptr(-5)}, []string{"paint_transfer_efficiency", "0 to 100 %"}},
		{scoring.Declaration{Indicator: "permit_compliance", Level: scoring.LevelII}, []string{"permit_compliance", "yes/no", "below_III"}},
		{scoring.Declaration{Indicator: "cp_audit", Level: scoring.LevelI, Auditor: "someone"}, []string{"cp_audit", "report_ref"}},
		{scoring.Declaration{Indicator: "no_such", Level: scoring.LevelI}, []string{"no_such"}},
	}
	for _, c := range cases {
		c.d.Enterprise, c.d.Evidence, c.d.ValidFrom = "ent-a", "x", day0
		_, err := book.Submit(context.Background(), c.d, reviewer)
		var inv *review.InvalidError
		if !errors.As(err, &inv) {
			t.Errorf("%s: err = %v, want InvalidError", c.d.Indicator, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", c.d.Indicator, err, w)
			}
		}
	}
	// In range it is accepted: 100 % is allowed, a gate takes I or below III.
	for _, d := range []scoring.Declaration{
		{Indicator: "robotic_electrostatic_share", Value: ptr(100)},
		{Indicator: "permit_compliance", Level: scoring.BelowIII},
		{Indicator: "cp_audit", Level: scoring.LevelII, Auditor: "审核机构", ReportRef: "渝环清审〔2025〕1号"},
	} {
		d.Enterprise, d.Evidence, d.ValidFrom = "ent-a", "x", day0
		if _, err := book.Submit(context.Background(), d, reviewer); err != nil {
			t.Errorf("%s: %v", d.Indicator, err)
		}
	}
}

func TestSeedIsIdempotent(t *testing.T) {
	std := standard(t)
	b, err := store.OpenBolt(filepath.Join(t.TempDir(), "cp.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	ds, err := scoring.LoadDeclarations(filepath.Join("..", "scoring", "declarations"), std)
	if err != nil {
		t.Fatal(err)
	}
	book := review.NewBook(b, std, nil, nil)
	n, err := book.Seed(ctx, ds, "scoring/declarations")
	if err != nil || n != len(ds) {
		t.Fatalf("first seed wrote %d, %v; want %d", n, err, len(ds))
	}
	// A second replica, or a restart, seeds nothing new.
	if n, err := review.NewBook(b, std, nil, nil).Seed(ctx, ds, "scoring/declarations"); err != nil || n != 0 {
		t.Fatalf("second seed wrote %d, %v; want 0", n, err)
	}
	got, err := book.Declarations(ctx)
	if err != nil || len(got) != len(ds) {
		t.Fatalf("scored %d, %v; want %d", len(got), err, len(ds))
	}
	// A supervisor's rejection of a seeded declaration survives a restart
	// that seeds the unchanged file again.
	rs, _ := book.Records(ctx, review.Filter{Enterprise: ds[0].Enterprise})
	if _, err := book.Reject(ctx, rs[0].ID, reviewer, "certificate expired early"); err != nil {
		t.Fatal(err)
	}
	if n, _ := book.Seed(ctx, ds, "scoring/declarations"); n != 0 {
		t.Fatalf("reseed wrote %d, want 0", n)
	}
	if got, _ := book.Declarations(ctx); len(got) != len(ds)-1 {
		t.Fatalf("scored after a rejection = %d, want %d", len(got), len(ds)-1)
	}
}

// An absent amount (a plant that burns no gas) is a declaration like any
// other: reviewed, and kept whole by the store.
func TestAbsentIsReviewed(t *testing.T) {
	std := standard(t)
	for name, pts := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			book := review.NewBook(pts, std, nil, nil)
			r, err := book.Submit(ctx, scoring.Declaration{Enterprise: "ent-b", Absent: "natural_gas", Evidence: "no gas connection", ValidFrom: day0}, officer)
			if err != nil || r.State != review.Submitted {
				t.Fatalf("submit absent: %+v, %v", r, err)
			}
			if ds, _ := book.Declarations(ctx); len(ds) != 0 {
				t.Fatalf("scored before review: %+v", ds)
			}
			if _, err := book.Accept(ctx, r.ID, reviewer, "utility letter checked"); err != nil {
				t.Fatal(err)
			}
			ds, err := review.NewBook(pts, std, nil, nil).Declarations(ctx)
			if err != nil || len(ds) != 1 || ds[0].Absent != "natural_gas" || ds[0].Indicator != "" {
				t.Fatalf("read back: %+v, %v", ds, err)
			}
			if _, err := book.Submit(ctx, scoring.Declaration{Enterprise: "ent-b", Absent: "unobtainium", Evidence: "x", ValidFrom: day0}, officer); !errors.As(err, new(*review.InvalidError)) {
				t.Errorf("an amount the standard does not read: err = %v, want InvalidError", err)
			}
		})
	}
}
