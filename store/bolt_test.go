package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var t0 = time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)

func openTestBolt(t testing.TB) *Bolt {
	t.Helper()
	b, err := OpenBolt(filepath.Join(t.TempDir(), "sub", "cleanprod.db"))
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// rd builds a reading of meter ent/meter at t0+min minutes.
func rd(ent, meter string, min int, value, delta float64) Reading {
	return Reading{
		Enterprise: ent,
		Gateway:    "gw-" + ent,
		Meter:      meter,
		Quantity:   "electricity",
		Workshop:   "paint",
		Kind:       "counter",
		Time:       t0.Add(time.Duration(min) * time.Minute),
		Value:      value,
		Delta:      delta,
	}
}

func mustWrite(t testing.TB, b *Bolt, rs ...Reading) {
	t.Helper()
	if err := b.WriteReadings(context.Background(), rs); err != nil {
		t.Fatalf("WriteReadings: %v", err)
	}
}

func mustCount(t testing.TB, b *Bolt, ent string) int {
	t.Helper()
	n, err := b.CountReadings(context.Background(), ent)
	if err != nil {
		t.Fatalf("CountReadings(%q): %v", ent, err)
	}
	return n
}

// sameReadings compares readings as stored: what the registry knows of a
// meter (gateway, quantity, workshop) is not part of a stored reading.
func sameReadings(got, want []Reading) bool {
	return slices.EqualFunc(got, want, func(a, b Reading) bool {
		b = asStored(b)
		ta, tb := a.Time, b.Time
		a.Time, b.Time = time.Time{}, time.Time{}
		return a == b && ta.Equal(tb)
	})
}

func fmtReadings(rs []Reading) string {
	var sb strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&sb, "\n\t%s/%s %s v=%g d=%g (%s %s %s %s)", r.Enterprise, r.Meter,
			r.Time.UTC().Format(time.RFC3339Nano), r.Value, r.Delta, r.Gateway, r.Quantity, r.Workshop, r.Kind)
	}
	return sb.String()
}

func checkReadings(t *testing.T, what string, got, want []Reading) {
	t.Helper()
	if !sameReadings(got, want) {
		t.Errorf("%s: got%s\nwant%s", what, fmtReadings(got), fmtReadings(want))
	}
}

func TestBoltWriteReadingsOverwrites(t *testing.T) {
	ctx := context.Background()
	b := openTestBolt(t)
	batch := []Reading{
		rd("e1", "m1", 0, 10, 1),
		rd("e1", "m1", 1, 11, 1),
		rd("e1", "m2", 0, 5, 0),
		rd("e2", "m1", 0, 7, 7),
	}
	mustWrite(t, b, batch...)
	mustWrite(t, b, batch...) // redelivered
	if got := mustCount(t, b, ""); got != len(batch) {
		t.Errorf("after writing twice: got %d readings, want %d", got, len(batch))
	}

	// Same key, new content: the new reading replaces the old one.
	changed := rd("e1", "m1", 1, 99, 88)
	changed.Kind = "vendor-specific" // a kind without a short code
	changed.Workshop = ""
	mustWrite(t, b, changed)
	got, err := b.Readings(ctx, "e1", "m1", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	checkReadings(t, "e1/m1", got, []Reading{batch[0], changed})

	// Duplicates inside one batch: the last one wins.
	mustWrite(t, b, rd("e3", "m", 0, 1, 1), rd("e3", "m", 0, 2, 2))
	got, err = b.Readings(ctx, "e3", "m", t0, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	checkReadings(t, "e3/m", got, []Reading{rd("e3", "m", 0, 2, 2)})

	for ent, want := range map[string]int{"": 5, "e1": 3, "e2": 1, "e3": 1, "e": 0} {
		if got := mustCount(t, b, ent); got != want {
			t.Errorf("CountReadings(%q): got %d, want %d", ent, got, want)
		}
	}
}

func TestBoltWriteReadingsRejects(t *testing.T) {
	good := rd("e", "m", 0, 1, 1)
	tests := []struct {
		name string
		edit func(r *Reading)
	}{
		{"empty enterprise", func(r *Reading) { r.Enterprise = "" }},
		{"empty meter", func(r *Reading) { r.Meter = "" }},
		{"NUL in enterprise", func(r *Reading) { r.Enterprise = "e\x00x" }},
		{"NUL in meter", func(r *Reading) { r.Meter = "m\x00" }},
		{"zero time", func(r *Reading) { r.Time = time.Time{} }},
		{"time after 2262", func(r *Reading) { r.Time = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"key too long", func(r *Reading) { r.Meter = strings.Repeat("m", bolt.MaxKeySize) }},
		{"NaN value", func(r *Reading) { r.Value = math.NaN() }},
		{"infinite delta", func(r *Reading) { r.Delta = math.Inf(1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := openTestBolt(t)
			bad := good
			tt.edit(&bad)
			err := b.WriteReadings(context.Background(), []Reading{good, bad})
			if !IsPermanent(err) {
				t.Fatalf("got error %v, want a permanent write error", err)
			}
			if n := mustCount(t, b, ""); n != 0 {
				t.Errorf("got %d readings stored, want 0: a refused batch stores nothing", n)
			}
		})
	}
}

func TestBoltSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cleanprod.db")
	b, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Reading{rd("e", "m", 0, 1, 0), rd("e", "m", 1, 2, 1), rd("e", "m", 2, 4, 2)}
	mustWrite(t, b, want...)
	pt := Point{Measurement: "score", Tags: map[string]string{"enterprise": "e"}, Fields: map[string]any{"score": 87.5}, Time: t0}
	if err := b.WritePoints(ctx, []Point{pt}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Ping(ctx); err == nil {
		t.Error("Ping after Close: got nil error")
	}
	if err := b.WriteReadings(ctx, want); err == nil || IsPermanent(err) {
		t.Errorf("WriteReadings after Close: got %v, want a temporary error", err)
	}

	b, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	got, err := b.Readings(ctx, "e", "m", time.Time{}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	checkReadings(t, "after reopen", got, want)
	pts, err := b.Points(ctx, "score", nil, time.Time{}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 1 || pts[0].Fields["score"] != 87.5 {
		t.Errorf("points after reopen: got %v, want %v", pts, pt)
	}
}

func TestBoltReadingsRange(t *testing.T) {
	b := openTestBolt(t)
	mustWrite(t, b,
		rd("e", "m", -1, 0, 0), rd("e", "m", 0, 1, 1), rd("e", "m", 1, 2, 1), rd("e", "m", 2, 3, 1),
		// Neighbouring names must not leak into e/m's range.
		rd("e", "m1", 0, 9, 9), rd("e", "m\x01", 0, 9, 9), rd("e", "l", 0, 9, 9), rd("e2", "m", 0, 9, 9), rd("d", "m", 0, 9, 9),
	)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	tests := []struct {
		name     string
		from, to time.Time
		want     []Reading
	}{
		{"all", time.Time{}, at(100), []Reading{rd("e", "m", -1, 0, 0), rd("e", "m", 0, 1, 1), rd("e", "m", 1, 2, 1), rd("e", "m", 2, 3, 1)}},
		{"from inclusive, to exclusive", at(0), at(2), []Reading{rd("e", "m", 0, 1, 1), rd("e", "m", 1, 2, 1)}},
		{"one nanosecond", at(1), at(1).Add(1), []Reading{rd("e", "m", 1, 2, 1)}},
		{"empty range", at(1), at(1), nil},
		{"inverted range", at(2), at(0), nil},
		{"after the last", at(3), at(100), nil},
		{"before the first", time.Time{}, at(-1), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := b.Readings(context.Background(), "e", "m", tt.from, tt.to)
			if err != nil {
				t.Fatal(err)
			}
			checkReadings(t, "Readings", got, tt.want)
		})
	}
	if _, err := b.Readings(context.Background(), "e", "", time.Time{}, at(100)); err == nil {
		t.Error("Readings with an empty meter: got nil error")
	}
}

func TestBoltReadingsBefore1970(t *testing.T) {
	b := openTestBolt(t)
	old := time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)
	rs := []Reading{rd("e", "m", 0, 3, 0), rd("e", "m", 0, 2, 0), rd("e", "m", 0, 1, 0)}
	rs[0].Time = time.Unix(0, 0).UTC()
	rs[1].Time = old
	rs[2].Time = time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC)
	mustWrite(t, b, rs...)
	got, err := b.Readings(context.Background(), "e", "m", time.Time{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	checkReadings(t, "time order across 1970", got, []Reading{rs[2], rs[1], rs[0]})
}

func TestBoltEachLatestReading(t *testing.T) {
	b := openTestBolt(t)
	var all []Reading
	for _, em := range [][2]string{{"e1", "a"}, {"e1", "b"}, {"e2", "a"}} {
		for i := range 5 {
			all = append(all, rd(em[0], em[1], i, float64(i), 1))
		}
	}
	all = append(all, rd("e3", "only", -60, 42, 0))
	// Write newest first: the store, not the caller, orders by time.
	slices.Reverse(all)
	mustWrite(t, b, all...)

	m := func(ent, meter string, mins ...int) []Reading {
		var out []Reading
		for _, min := range mins {
			out = append(out, rd(ent, meter, min, float64(min), 1))
		}
		return out
	}
	e3 := []Reading{rd("e3", "only", -60, 42, 0)}
	tests := []struct {
		name     string
		since    time.Time
		perMeter int
		want     []Reading
	}{
		{"one per meter", time.Time{}, 1, slices.Concat(m("e1", "a", 4), m("e1", "b", 4), m("e2", "a", 4), e3)},
		{"two per meter, time order", time.Time{}, 2, slices.Concat(m("e1", "a", 3, 4), m("e1", "b", 3, 4), m("e2", "a", 3, 4), e3)},
		{"more than stored", time.Time{}, 100, slices.Concat(m("e1", "a", 0, 1, 2, 3, 4), m("e1", "b", 0, 1, 2, 3, 4), m("e2", "a", 0, 1, 2, 3, 4), e3)},
		{"since is inclusive", t0.Add(3 * time.Minute), 100, slices.Concat(m("e1", "a", 3, 4), m("e1", "b", 3, 4), m("e2", "a", 3, 4))},
		{"since limits before perMeter", t0.Add(4 * time.Minute), 3, slices.Concat(m("e1", "a", 4), m("e1", "b", 4), m("e2", "a", 4))},
		{"since after everything", t0.Add(time.Hour), 3, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := collectLatest(context.Background(), b, LatestQuery{Since: tt.since, PerMeter: tt.perMeter})
			if err != nil {
				t.Fatal(err)
			}
			checkReadings(t, "EachLatestReading", got, tt.want)
		})
	}
	if _, err := collectLatest(context.Background(), b, LatestQuery{Since: time.Time{}, PerMeter: 0}); err == nil {
		t.Error("EachLatestReading with PerMeter 0: got nil error")
	}
}

func TestBoltEachAggregate(t *testing.T) {
	b := openTestBolt(t)
	h := func(hours, mins int) time.Time {
		return t0.Add(time.Duration(hours)*time.Hour + time.Duration(mins)*time.Minute)
	}
	gauge := func(ent, meter string, at time.Time, v float64) Reading {
		r := rd(ent, meter, 0, v, 0)
		r.Kind, r.Quantity, r.Time = "gauge", "cod", at
		return r
	}
	counter := func(ent, meter string, at time.Time, v, d float64) Reading {
		r := rd(ent, meter, 0, v, d)
		r.Time = at
		return r
	}
	mustWrite(t, b,
		counter("e1", "E", h(0, 0), 100, 1), // bucket start is inclusive
		counter("e1", "E", h(0, 30), 102, 2),
		counter("e1", "E", h(0, 59).Add(59*time.Second+999999999), 105, 3), // last nanosecond of the bucket
		counter("e1", "E", h(1, 0), 109, 4),                                // next bucket
		counter("e1", "E", h(3, 10), 110, 1),                               // an empty bucket in between
		gauge("e1", "COD", h(0, 5), -4),
		gauge("e1", "COD", h(0, 10), -2),
		gauge("e1", "COD", h(0, 15), -3),
		gauge("e2", "COD", h(-1, 0), 50), // before from
		gauge("e2", "COD", h(5, 0), 60),  // at to: excluded
	)
	aggE := func(hours int, sum float64, n int) Aggregate { // counters: no ValueSum, no Max
		return Aggregate{Enterprise: "e1", Meter: "E", Start: h(hours, 0), Sum: sum, Count: n}
	}
	tests := []struct {
		name     string
		from, to time.Time
		every    time.Duration
		want     []Aggregate
	}{
		{"hourly", h(0, 0), h(5, 0), time.Hour, []Aggregate{
			{Enterprise: "e1", Meter: "COD", Start: h(0, 0), Sum: 0, ValueSum: -9, Count: 3, Max: -2},
			aggE(0, 6, 3),
			aggE(1, 4, 1),
			aggE(3, 1, 1),
		}},
		{"from inside a bucket", h(0, 10), h(2, 0), time.Hour, []Aggregate{
			{Enterprise: "e1", Meter: "COD", Start: h(0, 0), ValueSum: -5, Count: 2, Max: -2},
			aggE(0, 5, 2),
			aggE(1, 4, 1),
		}},
		{"to exclusive", h(0, 0), h(0, 30), time.Hour, []Aggregate{
			{Enterprise: "e1", Meter: "COD", Start: h(0, 0), ValueSum: -9, Count: 3, Max: -2},
			aggE(0, 1, 1),
		}},
		{"daily buckets start at midnight UTC", h(-6, 0), h(18, 0), 24 * time.Hour, []Aggregate{
			{Enterprise: "e1", Meter: "COD", Start: h(-6, 0), ValueSum: -9, Count: 3, Max: -2},
			{Enterprise: "e1", Meter: "E", Start: h(-6, 0), Sum: 11, Count: 5},
			{Enterprise: "e2", Meter: "COD", Start: h(-6, 0), ValueSum: 110, Count: 2, Max: 60},
		}},
		{"weekly buckets start on Thursdays (epoch)", h(-100, 0), h(100, 0), 7 * 24 * time.Hour, []Aggregate{
			{Enterprise: "e1", Meter: "COD", Start: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), ValueSum: -9, Count: 3, Max: -2},
			{Enterprise: "e1", Meter: "E", Start: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), Sum: 11, Count: 5},
			{Enterprise: "e2", Meter: "COD", Start: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), ValueSum: 110, Count: 2, Max: 60},
		}},
		{"empty range", h(1, 0), h(1, 0), time.Hour, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := collectAggregates(context.Background(), b, AggregateQuery{From: tt.from, To: tt.to, Every: tt.every})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, tt.want, func(a, b Aggregate) bool {
				sa, sb := a.Start, b.Start
				a.Start, b.Start = time.Time{}, time.Time{}
				return a == b && sa.Equal(sb)
			}) {
				t.Errorf("got\n\t%+v\nwant\n\t%+v", got, tt.want)
			}
		})
	}
	if _, err := collectAggregates(context.Background(), b, AggregateQuery{From: h(0, 0), To: h(1, 0), Every: 0}); err == nil {
		t.Error("EachAggregate with Every 0: got nil error")
	}
}

func TestFloorMultiple(t *testing.T) {
	tests := []struct{ ns, step, want int64 }{
		{0, 10, 0}, {9, 10, 0}, {10, 10, 10}, {-1, 10, -10}, {-10, 10, -10}, {-11, 10, -20},
	}
	for _, tt := range tests {
		if got := floorMultiple(tt.ns, tt.step); got != tt.want {
			t.Errorf("floorMultiple(%d, %d): got %d, want %d", tt.ns, tt.step, got, tt.want)
		}
	}
}

func TestBoltPruneReadings(t *testing.T) {
	var rs []Reading
	for _, em := range [][2]string{{"a", "1"}, {"a", "2"}, {"b", "1"}, {"c", "x"}} {
		for i := range 10 {
			rs = append(rs, rd(em[0], em[1], i, float64(i), 1))
		}
	}
	rs = append(rs, rd("d", "new", 50, 0, 0)) // nothing to prune here
	for _, limit := range []int{1, 3, 9, 10, 11, 1000} {
		t.Run(fmt.Sprintf("chunks of %d", limit), func(t *testing.T) {
			ctx := context.Background()
			b := openTestBolt(t)
			mustWrite(t, b, rs...)
			n, err := b.prune(ctx, t0.Add(4*time.Minute), limit)
			if err != nil {
				t.Fatal(err)
			}
			if n != 16 {
				t.Errorf("got %d deleted, want 16", n)
			}
			if got := mustCount(t, b, ""); got != len(rs)-16 {
				t.Errorf("got %d left, want %d", got, len(rs)-16)
			}
			got, err := b.Readings(ctx, "b", "1", time.Time{}, t0.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			checkReadings(t, "b/1 after prune", got, rs[24:30])
			n, err = b.prune(ctx, t0.Add(4*time.Minute), limit)
			if err != nil || n != 0 {
				t.Errorf("pruning again: got %d, %v, want 0, nil", n, err)
			}
		})
	}
	b := openTestBolt(t)
	mustWrite(t, b, rs...)
	n, err := b.PruneReadings(context.Background(), t0.Add(time.Hour))
	if err != nil || n != len(rs) {
		t.Errorf("PruneReadings everything: got %d, %v, want %d, nil", n, err, len(rs))
	}
}

func TestBoltContextCancelled(t *testing.T) {
	b := openTestBolt(t)
	mustWrite(t, b, rd("e", "m", 0, 1, 1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]func() error{
		"Ping":          func() error { return b.Ping(ctx) },
		"WriteReadings": func() error { return b.WriteReadings(ctx, []Reading{rd("e", "m", 1, 1, 1)}) },
		"EachLatestReading": func() error {
			_, err := collectLatest(ctx, b, LatestQuery{Since: time.Time{}, PerMeter: 1})
			return err
		},
		"Readings": func() error {
			_, err := b.Readings(ctx, "e", "m", time.Time{}, t0.Add(time.Hour))
			return err
		},
		"CountReadings": func() error { _, err := b.CountReadings(ctx, ""); return err },
		"EachAggregate": func() error {
			_, err := collectAggregates(ctx, b, AggregateQuery{From: time.Time{}, To: t0.Add(time.Hour), Every: time.Hour})
			return err
		},
		"PruneReadings": func() error { _, err := b.PruneReadings(ctx, t0.Add(time.Hour)); return err },
		"WritePoints": func() error {
			return b.WritePoints(ctx, []Point{{Measurement: "m", Fields: map[string]any{"v": 1.0}, Time: t0}})
		},
		"Points": func() error { _, err := b.Points(ctx, "m", nil, time.Time{}, t0.Add(time.Hour)); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: got %v, want context.Canceled", name, err)
		}
	}
	if n := mustCount(t, b, ""); n != 1 {
		t.Errorf("got %d readings, want 1: nothing may change under a cancelled ctx", n)
	}
}

func TestBoltConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	b := openTestBolt(t)
	const writers, batches, perBatch = 8, 10, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range batches {
				rs := make([]Reading, perBatch)
				for j := range rs {
					// Writers overlap pairwise on meter names: the same
					// readings written concurrently must stay one copy.
					rs[j] = rd("e", fmt.Sprintf("m%d", w/2), i*perBatch+j, float64(j), 1)
				}
				if err := b.WriteReadings(ctx, rs); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		})
		wg.Go(func() { // readers run alongside
			for range batches {
				if _, err := collectLatest(ctx, b, LatestQuery{Since: time.Time{}, PerMeter: 3}); err != nil {
					t.Errorf("reader %d: %v", w, err)
					return
				}
				if _, err := collectAggregates(ctx, b, AggregateQuery{From: time.Time{}, To: t0.Add(24 * time.Hour), Every: time.Hour}); err != nil {
					t.Errorf("reader %d: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got, want := mustCount(t, b, "e"), writers/2*batches*perBatch; got != want {
		t.Errorf("got %d readings, want %d", got, want)
	}
}

func TestOpenBoltLocked(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "cleanprod.db")
	b, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	start := time.Now()
	b2, err := OpenBolt(path)
	took := time.Since(start)
	if err == nil {
		b2.Close()
		t.Fatal("second OpenBolt on a locked file: got nil error")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("got %v, want an error wrapping ErrLocked", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	// bbolt retries the lock every 50ms and may give up a little early.
	if took < BoltLockTimeout-200*time.Millisecond || took > BoltLockTimeout+2*time.Second {
		t.Errorf("gave up after %v, want about %v", took, BoltLockTimeout)
	}

	// Once the first one closes, the file opens again.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2, err = openBolt(path, 100*time.Millisecond)
	if err != nil {
		t.Fatalf("open after Close: %v", err)
	}
	b2.Close()
}

func TestOpenBoltNotABoltFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("not bolt ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := OpenBolt(path); err == nil {
		b.Close()
		t.Fatal("got nil error")
	}
}

func TestOpenBoltRefusesOtherFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cleanprod.db")
	b, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	putRaw(t, b, bucketMeta, metaFormatKey, []byte{boltFormat + 1})
	b.Close()
	if b, err := OpenBolt(path); err == nil || !strings.Contains(err.Error(), "unsupported format") {
		if err == nil {
			b.Close()
		}
		t.Fatalf("got %v, want an unsupported format error", err)
	}
}

// putRaw stores a raw key and value, bypassing the encoding.
func putRaw(t *testing.T, b *Bolt, bucket, k, v []byte) {
	t.Helper()
	err := b.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(k, v) })
	if err != nil {
		t.Fatal(err)
	}
}

func TestBoltCorruptReading(t *testing.T) {
	good := appendReadingValue(nil, &Reading{Gateway: "g", Quantity: "q", Workshop: "w", Kind: "counter", Value: 1, Delta: 1})
	key := appendReadingKey(nil, "e", "m", t0.UnixNano())
	tests := []struct {
		name string
		k, v []byte
	}{
		{"empty value", key, []byte{}},
		{"unknown version", key, append([]byte{9}, good[1:]...)},
		{"truncated", key, good[:len(good)-3]},
		{"trailing bytes", key, append(slices.Clone(good), 0)},
		{"string longer than value", key, []byte{1, 200, 'g'}},
		{"huge string length", key, []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"unknown kind code", key, append([]byte{1, 0, 0, 0, 7}, make([]byte, 16)...)},
		{"key without meter", append([]byte("e\x00"), key[len(key)-8:]...), good},
		{"key too short", []byte("e\x00m\x00"), good},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := openTestBolt(t)
			putRaw(t, b, bucketReadings, tt.k, tt.v)
			_, err := collectLatest(ctx, b, LatestQuery{Since: time.Time{}, PerMeter: 1})
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("EachLatestReading: got %v, want ErrCorrupt", err)
			}
			_, err = collectAggregates(ctx, b, AggregateQuery{From: time.Time{}, To: t0.Add(time.Hour), Every: time.Hour})
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("EachAggregate: got %v, want ErrCorrupt", err)
			}
		})
	}
	t.Run("Readings", func(t *testing.T) {
		b := openTestBolt(t)
		putRaw(t, b, bucketReadings, key, good[:5])
		_, err := b.Readings(ctx, "e", "m", time.Time{}, t0.Add(time.Hour))
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("got %v, want ErrCorrupt", err)
		}
	})
}

func FuzzDecodeReadingValue(f *testing.F) {
	f.Add(appendReadingValue(nil, &Reading{Gateway: "g", Quantity: "q", Workshop: "w", Kind: "counter", Value: 1, Delta: 1}))
	f.Add(appendReadingValue(nil, &Reading{Kind: "other"}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, v []byte) {
		var rf readingFields
		if err := decodeReadingValue(v, &rf); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v, want ErrCorrupt", err)
			}
			return
		}
		// What decodes must encode to something that decodes the same.
		r := Reading{Kind: rf.kind, Value: rf.value, Delta: rf.delta, Flag: string(rf.flag)}
		if rf.otherKind != nil {
			r.Kind = string(rf.otherKind)
		}
		var again readingFields
		if err := decodeReadingValue(appendReadingValue(nil, &r), &again); err != nil {
			t.Fatalf("decoding the re-encoded value: %v", err)
		}
		if again.kind != rf.kind || string(again.otherKind) != string(rf.otherKind) || string(again.flag) != string(rf.flag) ||
			math.Float64bits(again.value) != math.Float64bits(r.Value) || math.Float64bits(again.delta) != math.Float64bits(r.Delta) {
			t.Errorf("round trip changed %+v into %+v", rf, again)
		}
	})
}

// benchBatch returns a batch of n readings: 50 meters of one enterprise,
// n/50 consecutive minutes each, interleaved by time as a gateway sends
// them.
func benchBatch(n int) []Reading {
	const meters = 50
	rs := make([]Reading, 0, n)
	for i := range n {
		m := i % meters
		r := rd("ent-0001", fmt.Sprintf("E-PAINT-%02d", m), i/meters, float64(i), 1.5)
		r.Gateway = "gw-paint-01"
		rs = append(rs, r)
	}
	return rs
}

func BenchmarkBoltWriteReadings(b *testing.B) {
	const batch = 5000
	for _, bc := range []struct {
		name  string
		shift time.Duration // added to every reading's time between batches
	}{
		{"new", time.Duration(batch/50) * time.Minute},
		{"redelivered", 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			st := openTestBolt(b)
			rs := benchBatch(batch)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if err := st.WriteReadings(ctx, rs); err != nil {
					b.Fatal(err)
				}
				n += len(rs)
				for i := range rs {
					rs[i].Time = rs[i].Time.Add(bc.shift)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "readings/s")
		})
	}
}

func BenchmarkBoltEachLatestReading(b *testing.B) {
	ctx := context.Background()
	st := openTestBolt(b)
	rs := benchBatch(5000)
	for range 20 { // 100k readings, 2000 per meter
		mustWrite(b, st, rs...)
		for i := range rs {
			rs[i].Time = rs[i].Time.Add(100 * time.Minute)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := collectLatest(ctx, st, LatestQuery{Since: time.Time{}, PerMeter: 2})
		if err != nil || len(got) != 100 {
			b.Fatalf("got %d readings, %v", len(got), err)
		}
	}
}

// referenceAggregates sums rs as EachAggregate defines it, one reading at
// a time.
func referenceAggregates(rs []Reading, q AggregateQuery) []Aggregate {
	type key struct {
		ent, meter string
		gauge      bool
		start      int64
	}
	offset, _ := q.check()
	aggs := map[key]*Aggregate{}
	gauges := map[key]int{}
	for _, r := range rs {
		if r.Time.Before(q.From) || !r.Time.Before(q.To) || (len(q.Enterprises) > 0 && !slices.Contains(q.Enterprises, r.Enterprise)) {
			continue
		}
		start := bucketStart(r.Time.UnixNano(), int64(q.Every), int64(offset))
		k := key{r.Enterprise, r.Meter, isGaugeKind(r.Kind), start}
		a := aggs[k]
		if a == nil {
			a = &Aggregate{Enterprise: r.Enterprise, Meter: r.Meter, Start: time.Unix(0, start).UTC()}
			aggs[k] = a
		}
		a.Count++
		if !isGaugeKind(r.Kind) {
			a.Sum += r.Delta
		} else {
			a.ValueSum += r.Value
			if gauges[k] == 0 || r.Value > a.Max {
				a.Max = r.Value
			}
			gauges[k]++
		}
	}
	var out []Aggregate
	for _, a := range aggs {
		out = append(out, *a)
	}
	return sortedAggregates(out)
}

// Answers larger than one read transaction's chunk come whole and in
// order, and the callback may write to the store between chunks.
func TestBoltEachAcrossChunks(t *testing.T) {
	b := openTestBolt(t)
	var rs []Reading
	for e := range 3 {
		for m := range 30 {
			for h := range 200 {
				r := rd(fmt.Sprintf("e%d", e), fmt.Sprintf("m%02d", m), h*60, float64(h), float64(h%3))
				if m%4 == 0 {
					r.Kind, r.Quantity, r.Delta = "gauge", "cod", 0
				}
				if m == 7 && h >= 100 {
					r.Workshop = "weld" // moves at 100 h
				}
				rs = append(rs, r)
			}
		}
	}
	mustWrite(t, b, rs...)
	ctx := context.Background()
	writes := 0
	writeMeanwhile := func(n int) error {
		if n%1000 != 0 {
			return nil
		}
		writes++
		return b.WritePoints(ctx, []Point{{Measurement: "note", Fields: map[string]any{"n": n}, Time: t0.Add(time.Duration(n))}})
	}
	for _, q := range []AggregateQuery{
		{From: t0, To: t0.Add(200 * time.Hour), Every: time.Hour},
		{From: t0.Add(-time.Hour), To: t0.Add(150 * time.Hour), Every: 24 * time.Hour, Offset: 16 * time.Hour},
		{From: t0.Add(30 * time.Minute), To: t0.Add(190 * time.Hour), Every: time.Hour, Enterprises: []string{"e2", "e0", "nobody", ""}},
	} {
		var got []Aggregate
		err := b.EachAggregate(ctx, q, func(a *Aggregate) error {
			got = append(got, *a)
			return writeMeanwhile(len(got))
		})
		if err != nil {
			t.Fatal(err)
		}
		checkAggregateOrder(t, "bolt", got)
		want := referenceAggregates(rs, q)
		if q.Every == time.Hour && len(got) <= boltChunk {
			t.Errorf("%d rows: the case does not cross a chunk", len(got))
		}
		if got := sortedAggregates(got); !slices.EqualFunc(got, want, aggEqual) {
			t.Errorf("%+v: %d rows, want %d:\n%s", q, len(got), len(want), diffAggregates(got, want))
		}
	}
	var latest []Reading
	err := b.EachLatestReading(ctx, LatestQuery{PerMeter: 150, Enterprises: []string{"e1", "e0"}}, func(r *Reading) error {
		latest = append(latest, *r)
		return writeMeanwhile(len(latest))
	})
	if err != nil {
		t.Fatal(err)
	}
	checkLatestOrder(t, "bolt", latest, 150)
	if len(latest) != 2*30*150 || latest[0].Enterprise != "e0" || latest[0].Time != t0.Add(50*time.Hour) {
		t.Errorf("got %d readings starting %+v, want 9000 starting with e0 at 50 h", len(latest), latest[0])
	}
	if writes == 0 {
		t.Error("no write between chunks: the case tests nothing")
	}
}

// Values written by releases that kept the meter's gateway, quantity and
// workshop in each reading (versions 1 and 2) still read back.
func TestBoltReadsOlderReadingValues(t *testing.T) {
	b := openTestBolt(t)
	key := appendReadingKey(nil, "e", "m", t0.UnixNano())
	str := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	floats := func(v, d float64) []byte {
		out := binary.BigEndian.AppendUint64(nil, math.Float64bits(v))
		return binary.BigEndian.AppendUint64(out, math.Float64bits(d))
	}
	v1 := slices.Concat([]byte{1}, str("gw"), str("electricity"), str("paint"), []byte{kindCounter}, floats(12, 2))
	putRaw(t, b, bucketReadings, key, v1)
	key2 := appendReadingKey(nil, "e", "cod", t0.UnixNano())
	v2 := slices.Concat([]byte{2}, str("st"), str("cod"), str(""), []byte{kindGauge}, floats(31.5, 0), str("N"))
	putRaw(t, b, bucketReadings, key2, v2)
	got, err := collectLatest(context.Background(), b, LatestQuery{PerMeter: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := []Reading{
		{Enterprise: "e", Meter: "cod", Kind: "gauge", Time: t0, Value: 31.5, Flag: "N"},
		{Enterprise: "e", Meter: "m", Kind: "counter", Time: t0, Value: 12, Delta: 2},
	}
	checkReadings(t, "older values", got, want)
}
