// Package review keeps enterprise declarations and their review in the
// store, so that they survive restarts, need no writable config folder and
// are the same for every replica that reads the store.
//
// An enterprise's declaration is submitted; a supervisor accepts or
// rejects it with a note; a supervisor's own declaration is accepted at
// once. Only accepted declarations are scored: Book.Declarations is what
// the scoring engine reads. Every step is a record update and a scoring
// event, written to the store in one batch.
//
// A record is one point of measurement "declaration", tagged with its
// enterprise and id, at the time it was submitted; each step rewrites the
// same point (same identity), whole. The folder of declaration files
// (scoring.DeclarationFiles) seeds the book: its entries are accepted
// records submitted by "file".
//
// The book keeps rectification cases (整改) the same way (cases.go): a
// case is one point of measurement "case", rewritten whole with its
// history at each step, and each step is a scoring event in the same
// batch. A Watcher opens cases from the scorer's red-code and
// restrictive-fail events and announces overdue ones (watch.go).
package review

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/store"
)

// Measurement is the measurement of declaration records.
const Measurement = "declaration"

// State is where a declaration stands in its review.
type State string

// States. Superseded is never stored: an accepted record reads as
// superseded when a later accepted one has the same indicator and
// valid_from.
const (
	Submitted  State = "submitted"
	Accepted   State = "accepted"
	Rejected   State = "rejected"
	Superseded State = "superseded"
)

// Role says who acts: a supervisor's declaration is accepted at once.
type Role string

// Roles, as in the API's tokens.
const (
	Supervisor Role = "supervisor"
	Enterprise Role = "enterprise"
	File       Role = "file"   // the seed folder
	System     Role = "system" // the scorer, opening cases and marking them overdue
)

// Actor is who submits or reviews.
type Actor struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	// Enterprise is an enterprise officer's enterprise: a step on a case
	// of another enterprise is refused.
	Enterprise string `json:"enterprise,omitempty"`
}

func (a Actor) String() string { return string(a.Role) + " " + a.Name }

// Record is one declaration with its review.
type Record struct {
	ID          string
	Declaration scoring.Declaration
	State       State
	SubmittedBy Actor
	SubmittedAt time.Time
	ReviewedBy  Actor // zero while submitted
	ReviewedAt  time.Time
	Note        string // the reviewer's note
}

// Errors the API maps to statuses; wrap-checked with errors.Is/As.
var (
	ErrNotFound = errors.New("no such declaration")
	// ErrState: the step is not allowed from the record's state.
	ErrState = errors.New("not allowed in this state")
)

// InvalidError is a declaration the standard does not allow.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// Points is the part of the store the book needs (store.Bolt and
// store.Influx).
type Points interface {
	Reader
	WritePoints(ctx context.Context, ps []store.Point) error
}

// Book is the declarations and their review, kept in the store. Methods
// are safe for concurrent use; steps of one process are serialised (two
// replicas reviewing the same record at once: the later write wins, and
// both steps are in the events).
type Book struct {
	pts     Points
	std     atomic.Pointer[scoring.Standard]
	now     func() time.Time
	onEvent func(scoring.Event)
	mu      sync.Mutex
}

// NewBook returns the book kept in pts, checking declarations against
// std. onEvent (nil: none) is told every step's event after it is
// stored; now is the clock (nil: time.Now).
func NewBook(pts Points, std *scoring.Standard, now func() time.Time, onEvent func(scoring.Event)) *Book {
	if now == nil {
		now = time.Now
	}
	b := &Book{pts: pts, now: now, onEvent: onEvent}
	b.std.Store(std)
	return b
}

// SetStandard makes the book check declarations against std (a reloaded
// standard).
func (b *Book) SetStandard(std *scoring.Standard) { b.std.Store(std) }

// Filter selects records; zero fields select all.
type Filter struct {
	Enterprise string
	State      State
}

// all spans every time a record can have.
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Records returns the records that match f, by enterprise, indicator and
// newest valid_from first. Superseded accepted records read as
// Superseded.
func (b *Book) Records(ctx context.Context, f Filter) ([]Record, error) {
	return Records(ctx, b.pts, f)
}

// Reader reads stored points (store.Bolt, store.Influx).
type Reader interface {
	Points(ctx context.Context, measurement string, tags map[string]string, from, to time.Time) ([]store.Point, error)
}

// Records reads the records that match f from a store, as Book.Records
// does (for readers that never write: the report command).
func Records(ctx context.Context, pts Reader, f Filter) ([]Record, error) {
	ps, err := read(ctx, pts, Measurement, "enterprise", f.Enterprise)
	if err != nil {
		return nil, fmt.Errorf("read declarations: %w", err)
	}
	rs := make([]Record, 0, len(ps))
	for _, p := range ps {
		r, err := fromPoint(p)
		if err != nil {
			return nil, fmt.Errorf("read declarations: %w", err)
		}
		rs = append(rs, r)
	}
	markSuperseded(rs)
	out := rs[:0]
	for _, r := range rs {
		if f.State == "" || r.State == f.State {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, c Record) int {
		return cmp.Or(strings.Compare(a.Declaration.Enterprise, c.Declaration.Enterprise),
			strings.Compare(a.Declaration.Subject(), c.Declaration.Subject()),
			c.Declaration.ValidFrom.Compare(a.Declaration.ValidFrom), c.SubmittedAt.Compare(a.SubmittedAt))
	})
	return out, nil
}

// Record returns the record with the given id, in its stored state (a
// superseded record reads as accepted here). It reads that record alone.
func (b *Book) Record(ctx context.Context, id string) (Record, error) {
	p, err := b.one(ctx, Measurement, id, "declaration", ErrNotFound)
	if err != nil {
		return Record{}, err
	}
	return fromPoint(p)
}

// read reads every point of measurement m, or those whose tag k is v
// when v is not "".
func read(ctx context.Context, r Reader, m, k, v string) ([]store.Point, error) {
	var tags map[string]string
	if v != "" {
		tags = map[string]string{k: v}
	}
	return r.Points(ctx, m, tags, minTime, maxTime)
}

// one reads the point of measurement m with the given id: a declaration
// or a case (what names it in errors); notFound when there is none.
func (b *Book) one(ctx context.Context, m, id, what string, notFound error) (store.Point, error) {
	ps, err := read(ctx, b.pts, m, "id", id)
	if err != nil {
		return store.Point{}, fmt.Errorf("read %s %s: %w", what, id, err)
	}
	if len(ps) == 0 {
		return store.Point{}, fmt.Errorf("%s %q: %w", what, id, notFound)
	}
	return ps[len(ps)-1], nil
}

// Declarations returns the accepted declarations that count, one per
// enterprise, indicator and valid_from (the one accepted last): what the
// scoring engine grades (scoring.Declarations).
func (b *Book) Declarations(ctx context.Context) ([]scoring.Declaration, error) {
	rs, err := b.Records(ctx, Filter{State: Accepted})
	if err != nil {
		return nil, err
	}
	out := make([]scoring.Declaration, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.Declaration)
	}
	return out, nil
}

// Submit stores a new declaration by who: accepted at once when who is a
// supervisor (or the seed folder), submitted for review otherwise. A
// declaration the standard does not allow is an *InvalidError.
func (b *Book) Submit(ctx context.Context, d scoring.Declaration, who Actor) (Record, error) {
	if err := d.Check(b.std.Load()); err != nil {
		return Record{}, &InvalidError{err}
	}
	now := b.now().UTC()
	r := Record{ID: newID(), Declaration: d, State: Submitted, SubmittedBy: who, SubmittedAt: now}
	if who.Role == Supervisor || who.Role == File {
		r.State, r.ReviewedBy, r.ReviewedAt = Accepted, who, now
		r.Note = "declared by a supervisor"
		if who.Role == File {
			r.Note = "seeded from the declarations folder"
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.write(ctx, r, "submitted"); err != nil {
		return Record{}, err
	}
	return r, nil
}

// Accept accepts a submitted declaration; it counts from now on.
func (b *Book) Accept(ctx context.Context, id string, who Actor, note string) (Record, error) {
	return b.review(ctx, id, who, note, Accepted)
}

// Reject rejects a submitted declaration, or withdraws an accepted one;
// note says why and is required.
func (b *Book) Reject(ctx context.Context, id string, who Actor, note string) (Record, error) {
	if strings.TrimSpace(note) == "" {
		return Record{}, &InvalidError{errors.New("a rejection needs a note saying why")}
	}
	return b.review(ctx, id, who, note, Rejected)
}

func (b *Book) review(ctx context.Context, id string, who Actor, note string, to State) (Record, error) {
	if who.Role != Supervisor {
		return Record{}, fmt.Errorf("only a supervisor reviews declarations: %w", ErrState)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r, err := b.Record(ctx, id)
	if err != nil {
		return Record{}, err
	}
	switch {
	case to == Accepted && r.State != Submitted:
		return Record{}, fmt.Errorf("declaration %s is %s; only a submitted one can be accepted: %w", id, r.State, ErrState)
	case to == Rejected && r.State != Submitted && r.State != Accepted:
		return Record{}, fmt.Errorf("declaration %s is %s; only a submitted or accepted one can be rejected: %w", id, r.State, ErrState)
	}
	if to == Accepted {
		// The standard may have changed since it was submitted.
		if err := r.Declaration.Check(b.std.Load()); err != nil {
			return Record{}, &InvalidError{err}
		}
	}
	r.State, r.ReviewedBy, r.ReviewedAt, r.Note = to, who, b.now().UTC(), strings.TrimSpace(note)
	if err := b.write(ctx, r, string(to)); err != nil {
		return Record{}, err
	}
	return r, nil
}

// Seed adds the folder's declarations that the book does not hold yet as
// accepted records by the file, and updates those whose entry in the file
// changed. A record seeded from the folder has an id derived from its
// enterprise, indicator and valid_from, so that every replica seeds the
// same record. It returns how many records it wrote.
func (b *Book) Seed(ctx context.Context, ds []scoring.Declaration, source string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rs, err := b.Records(ctx, Filter{})
	if err != nil {
		return 0, err
	}
	byID := make(map[string]*Record, len(rs))
	for i := range rs {
		byID[rs[i].ID] = &rs[i]
	}
	who := Actor{Name: source, Role: File}
	n := 0
	for _, d := range ds {
		id := seedID(&d)
		if old, ok := byID[id]; ok && sameDeclaration(&old.Declaration, &d) {
			continue // unchanged, whatever a supervisor did with it since
		}
		r := Record{ID: id, Declaration: d, State: Accepted, SubmittedBy: who, SubmittedAt: d.ValidFrom.UTC(),
			ReviewedBy: who, ReviewedAt: b.now().UTC(), Note: "seeded from the declarations folder"}
		// The folder is the operator's configuration, not a review step:
		// no event.
		if err := b.write(ctx, r, ""); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// write stores r and the event of its step (none if step is "") in one
// batch, then tells onEvent.
func (b *Book) write(ctx context.Context, r Record, step string) error {
	p, err := toPoint(r)
	if err != nil {
		return err
	}
	ps := []store.Point{p}
	var ev scoring.Event
	if step != "" {
		ev = Event(r, step, b.now().UTC())
		ps = append(ps, scoring.EventPoint(ev))
	}
	if err := b.pts.WritePoints(ctx, ps); err != nil {
		return fmt.Errorf("store declaration: %w", err)
	}
	if step != "" && b.onEvent != nil {
		b.onEvent(ev)
	}
	return nil
}

// Event is the scoring event of a step of r.
func Event(r Record, step string, at time.Time) scoring.Event {
	d := &r.Declaration
	what := d.Subject()
	reason := fmt.Sprintf("declaration %s of %s %s by %s", r.ID, what, step, r.SubmittedBy)
	switch {
	case step == "submitted" && r.State == Submitted:
		reason = fmt.Sprintf("declaration %s of %s submitted by %s; waits for review", r.ID, what, r.SubmittedBy)
	case step == "submitted":
		reason = fmt.Sprintf("declaration %s of %s %s by %s and accepted", r.ID, what, step, r.SubmittedBy)
	case r.State == Accepted || r.State == Rejected:
		reason = fmt.Sprintf("declaration %s of %s %s by %s", r.ID, what, r.State, r.ReviewedBy)
		if r.Note != "" {
			reason += ": " + r.Note
		}
	}
	kind := scoring.EventDeclarationSubmitted
	switch r.State {
	case Accepted:
		kind = scoring.EventDeclarationAccepted
	case Rejected:
		kind = scoring.EventDeclarationRejected
	}
	return scoring.Event{Time: at, Enterprise: d.Enterprise, Kind: kind, Indicator: d.Indicator, Reason: reason}
}

// markSuperseded marks accepted records that a later accepted record of
// the same enterprise, subject and valid_from replaces.
func markSuperseded(rs []Record) {
	type key struct {
		ent, subject string
		from         int64
	}
	latest := map[key]int{}
	for i := range rs {
		r := &rs[i]
		if r.State != Accepted {
			continue
		}
		k := key{r.Declaration.Enterprise, r.Declaration.Subject(), r.Declaration.ValidFrom.UnixNano()}
		j, ok := latest[k]
		if !ok {
			latest[k] = i
			continue
		}
		if cmp.Or(r.ReviewedAt.Compare(rs[j].ReviewedAt), r.SubmittedAt.Compare(rs[j].SubmittedAt), strings.Compare(r.ID, rs[j].ID)) > 0 {
			rs[j].State, latest[k] = Superseded, i
		} else {
			r.State = Superseded
		}
	}
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

func seedID(d *scoring.Declaration) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d", d.Enterprise, d.Subject(), d.ValidFrom.UnixNano()))
	return "f" + hex.EncodeToString(h[:])[:15]
}

func sameDeclaration(a, b *scoring.Declaration) bool {
	return a.Enterprise == b.Enterprise && a.Indicator == b.Indicator && a.Level == b.Level &&
		(a.Value == nil) == (b.Value == nil) && (a.Value == nil || *a.Value == *b.Value) &&
		a.NotApplicable == b.NotApplicable && a.Absent == b.Absent && a.Evidence == b.Evidence &&
		a.ValidFrom.Equal(b.ValidFrom) && a.ValidTo.Equal(b.ValidTo) &&
		a.Auditor == b.Auditor && a.ReportRef == b.ReportRef
}

// recordJSON is a record as stored in the point's "record" field.
type recordJSON struct {
	Indicator     string     `json:"indicator"`
	Level         string     `json:"level,omitempty"`
	Value         *float64   `json:"value,omitempty"`
	NotApplicable bool       `json:"not_applicable,omitempty"`
	Absent        string     `json:"absent,omitempty"`
	Evidence      string     `json:"evidence"`
	ValidFrom     time.Time  `json:"valid_from"`
	ValidTo       *time.Time `json:"valid_to,omitempty"`
	Auditor       string     `json:"auditor,omitempty"`
	ReportRef     string     `json:"report_ref,omitempty"`
	State         State      `json:"state"`
	SubmittedBy   Actor      `json:"submitted_by"`
	ReviewedBy    *Actor     `json:"reviewed_by,omitempty"`
	ReviewedAt    *time.Time `json:"reviewed_at,omitempty"`
	Note          string     `json:"note,omitempty"`
}

func toPoint(r Record) (store.Point, error) {
	d := &r.Declaration
	j := recordJSON{Indicator: d.Indicator, Value: d.Value, NotApplicable: d.NotApplicable, Absent: d.Absent, Evidence: d.Evidence,
		ValidFrom: d.ValidFrom.UTC(), Auditor: d.Auditor, ReportRef: d.ReportRef,
		State: r.State, SubmittedBy: r.SubmittedBy, Note: r.Note}
	if d.Level != scoring.NoLevel {
		j.Level = strings.ReplaceAll(d.Level.String(), " ", "_")
	}
	if !d.ValidTo.IsZero() {
		t := d.ValidTo.UTC()
		j.ValidTo = &t
	}
	if !r.ReviewedAt.IsZero() {
		who, at := r.ReviewedBy, r.ReviewedAt.UTC()
		j.ReviewedBy, j.ReviewedAt = &who, &at
	}
	body, err := json.Marshal(j)
	if err != nil {
		return store.Point{}, fmt.Errorf("encode declaration %s: %w", r.ID, err)
	}
	return store.Point{Measurement: Measurement, Time: r.SubmittedAt,
		Tags:   map[string]string{"enterprise": d.Enterprise, "id": r.ID},
		Fields: map[string]any{"record": string(body), "state": string(r.State), "subject": d.Subject()}}, nil
}

func fromPoint(p store.Point) (Record, error) {
	body, _ := p.Fields["record"].(string)
	var j recordJSON
	if err := json.Unmarshal([]byte(body), &j); err != nil {
		return Record{}, fmt.Errorf("declaration %s of %s: %w", p.Tags["id"], p.Tags["enterprise"], err)
	}
	r := Record{ID: p.Tags["id"], State: j.State, SubmittedBy: j.SubmittedBy, SubmittedAt: p.Time.UTC(), Note: j.Note,
		Declaration: scoring.Declaration{Enterprise: p.Tags["enterprise"], Indicator: j.Indicator, Value: j.Value,
			NotApplicable: j.NotApplicable, Absent: j.Absent, Evidence: j.Evidence, ValidFrom: j.ValidFrom, Auditor: j.Auditor, ReportRef: j.ReportRef}}
	if j.Level != "" {
		l, err := scoring.ParseLevel(j.Level)
		if err != nil {
			return Record{}, fmt.Errorf("declaration %s: %w", r.ID, err)
		}
		r.Declaration.Level = l
	}
	if j.ValidTo != nil {
		r.Declaration.ValidTo = *j.ValidTo
	}
	if j.ReviewedBy != nil && j.ReviewedAt != nil {
		r.ReviewedBy, r.ReviewedAt = *j.ReviewedBy, *j.ReviewedAt
	}
	return r, nil
}
