package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The same readings written to Bolt and to a real InfluxDB must read back
// the same through EachAggregate and EachLatestReading (as sets), and
// each store must keep a series' rows together and in time order.

// conformanceReadings returns counters with deltas, delta meters and
// gauges over three days from day (00:00 UTC), several quantities and
// workshops, a meter whose workshop changes inside a bucket, names that
// need quoting, and readings exactly on hour and day (16:00 UTC) edges.
func conformanceReadings(day time.Time) []Reading {
	var rs []Reading
	prev := map[[2]string]Reading{}
	add := func(ent, meter, qty, ws, kind string, at time.Time, value, delta float64) {
		r := Reading{Enterprise: ent, Gateway: "gw-" + ent, Meter: meter, Quantity: qty, Workshop: ws, Kind: kind,
			Time: at, Value: value, Delta: delta}
		// Counters as the normaliser writes them: most of an hour's
		// readings chained to the one before (InfluxDB keeps their delta
		// alone), the hour's first with its register.
		if p, ok := prev[[2]string{ent, meter}]; ok && kind == "counter" {
			r.Chained = Chains(p.Time.UnixNano(), p.Value, at.UnixNano(), value, delta)
		}
		prev[[2]string{ent, meter}] = r
		rs = append(rs, r)
	}
	for _, ent := range []string{"e1", "e2", "o'neil \"x\""} {
		reg := 1000.0
		for i := range 3 * 24 * 3 { // every 20 minutes for three days: on every hour edge
			at := day.Add(time.Duration(i) * 20 * time.Minute)
			d := float64(i%7) + 0.5
			reg += d
			add(ent, "E-1", "electricity", "paint", "counter", at, reg, d)
			add(ent, "W", "water", "", "delta", at.Add(7*time.Minute), d*2, d*2)
			add(ent, "COD", "cod", "paint", "gauge", at.Add(10*time.Minute), float64(i%11)-5.25, 0)
		}
	}
	// A meter that moves from workshop "paint" to "weld" at 14:30 on the
	// first day: the hour and the local day of 14:30 have both.
	for i := range 48 {
		at := day.Add(time.Duration(i) * 30 * time.Minute)
		ws := "paint"
		if i >= 29 {
			ws = "weld"
		}
		add("e2", "moved", "electricity", ws, "counter", at, float64(i), 1)
	}
	// An analyser's values with their data flags: valid ones (N, S) are
	// readings with their flag; invalid ones (M, C) are kept apart and
	// never read as readings or counted in an aggregate.
	for i, f := range []string{"N", "M", "S", "C", "N"} {
		rs = append(rs, Reading{Enterprise: "e3", Gateway: "st", Meter: "flagged", Quantity: "cod", Workshop: "outlet", Kind: "gauge",
			Time: day.Add(time.Duration(i) * time.Hour), Value: 30 + float64(i), Flag: f, Invalid: f == "M" || f == "C"})
	}
	// Exactly on the 16:00 UTC edge of a local day at UTC+8 and one
	// nanosecond before it.
	add("e3", "edge", "steam", "boiler", "gauge", day.Add(16*time.Hour), 7, 0)
	add("e3", "edge", "steam", "boiler", "gauge", day.Add(16*time.Hour-1), 9, 0)
	return rs
}

// writeShuffled writes rs in a random order in several batches, and some
// readings twice (a redelivery).
func writeShuffled(t *testing.T, w func(context.Context, []Reading) error, rs []Reading) {
	t.Helper()
	rs = slices.Clone(rs)
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(rs), func(i, j int) { rs[i], rs[j] = rs[j], rs[i] })
	for len(rs) > 0 {
		n := min(len(rs), 1+r.IntN(500))
		if err := w(context.Background(), rs[:n]); err != nil {
			t.Fatal(err)
		}
		if err := w(context.Background(), rs[:n/10]); err != nil {
			t.Fatal(err)
		}
		rs = rs[n:]
	}
}

// checkAggregateOrder fails unless the rows of each series (enterprise,
// meter, quantity, workshop) come together, ascending in time.
func checkAggregateOrder(t *testing.T, name string, aggs []Aggregate) {
	t.Helper()
	type key struct{ ent, meter string }
	done := map[key]bool{}
	var cur key
	var last time.Time
	for i, a := range aggs {
		k := key{a.Enterprise, a.Meter}
		if i == 0 || k != cur {
			if done[k] {
				t.Errorf("%s: rows of %v come apart (row %d)", name, k, i)
			}
			done[cur], cur = true, k
		} else if !a.Start.After(last) {
			t.Errorf("%s: %v row %d at %v after %v", name, k, i, a.Start, last)
		}
		last = a.Start
	}
}

// checkLatestOrder fails unless each meter's readings come together,
// ascending in time, at most perMeter of them.
func checkLatestOrder(t *testing.T, name string, rs []Reading, perMeter int) {
	t.Helper()
	type key struct{ ent, meter string }
	done := map[key]bool{}
	var cur key
	n := 0
	for i, r := range rs {
		k := key{r.Enterprise, r.Meter}
		if i == 0 || k != cur {
			if done[k] {
				t.Errorf("%s: readings of %v come apart (row %d)", name, k, i)
			}
			done[cur], cur, n = true, k, 0
		} else if !r.Time.After(rs[i-1].Time) {
			t.Errorf("%s: %v reading %d at %v after %v", name, k, i, r.Time, rs[i-1].Time)
		}
		if n++; n > perMeter {
			t.Errorf("%s: %v has more than %d readings", name, k, perMeter)
		}
	}
}

func TestConformance(t *testing.T) {
	day := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	rs := conformanceReadings(day)
	b := openTestBolt(t)
	s, _ := openTestInflux(t)
	writeShuffled(t, b.WriteReadings, rs)
	writeShuffled(t, s.WriteReadings, rs)
	stores := []struct {
		name string
		h    history
	}{{"bolt", b}, {"influx", s}}
	ctx := context.Background()

	aggQueries := []struct {
		name string
		q    AggregateQuery
	}{
		{"hourly, all", AggregateQuery{From: day, To: day.Add(72 * time.Hour), Every: time.Hour}},
		{"15 minutes, from and to inside buckets", AggregateQuery{From: day.Add(10 * time.Minute), To: day.Add(30*time.Hour + 5*time.Minute), Every: 15 * time.Minute}},
		{"daily at UTC+8", AggregateQuery{From: day.Add(-8 * time.Hour), To: day.Add(64 * time.Hour), Every: 24 * time.Hour, Offset: 16 * time.Hour}},
		{"daily, negative offset", AggregateQuery{From: day, To: day.Add(80 * time.Hour), Every: 24 * time.Hour, Offset: -8 * time.Hour}},
		{"daily, to on an edge", AggregateQuery{From: day, To: day.Add(16 * time.Hour), Every: 24 * time.Hour, Offset: 16 * time.Hour}},
		{"weekly from the epoch", AggregateQuery{From: day.Add(-time.Hour), To: day.Add(100 * time.Hour), Every: 7 * 24 * time.Hour}},
		{"some enterprises", AggregateQuery{From: day, To: day.Add(48 * time.Hour), Every: time.Hour, Enterprises: []string{"e2", "o'neil \"x\"", "absent", "e2"}}},
		{"unknown enterprise only", AggregateQuery{From: day, To: day.Add(48 * time.Hour), Every: time.Hour, Enterprises: []string{"nobody"}}},
		{"before the data", AggregateQuery{From: day.Add(-48 * time.Hour), To: day, Every: time.Hour}},
	}
	// InfluxDB answers an aggregate by either of two paths, whichever the
	// density of the readings makes cheaper: both must agree with Bolt.
	aggStores := append(slices.Clone(stores), struct {
		name string
		h    history
	}{"influx, readings summed here", influxAggPath{s, aggRaw}}, struct {
		name string
		h    history
	}{"influx, GROUP BY time", influxAggPath{s, aggGrouped}})
	for _, tt := range aggQueries {
		t.Run("aggregate/"+tt.name, func(t *testing.T) {
			got := make([][]Aggregate, len(aggStores))
			for i, st := range aggStores {
				aggs, err := collectAggregates(ctx, st.h, tt.q)
				if err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				checkAggregateOrder(t, st.name, aggs)
				got[i] = sortedAggregates(aggs)
			}
			for i := 1; i < len(got); i++ {
				if !slices.EqualFunc(got[0], got[i], aggEqual) {
					t.Errorf("bolt and %s differ:\n%s", aggStores[i].name, diffAggregates(got[0], got[i]))
				}
			}
			if tt.name != "before the data" && tt.name != "unknown enterprise only" && len(got[0]) == 0 {
				t.Error("no rows: the case tests nothing")
			}
		})
	}

	t.Run("flags", func(t *testing.T) {
		for _, st := range stores {
			rr, ok := st.h.(interface {
				Readings(context.Context, string, string, time.Time, time.Time) ([]Reading, error)
				Points(context.Context, string, map[string]string, time.Time, time.Time) ([]Point, error)
			})
			if !ok {
				t.Fatalf("%s: no Readings/Points", st.name)
			}
			got, err := rr.Readings(ctx, "e3", "flagged", day, day.Add(24*time.Hour))
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			var flags []string
			var sum float64
			for _, r := range got {
				flags = append(flags, r.Flag)
				sum += r.Value
			}
			if !slices.Equal(flags, []string{"N", "S", "N"}) || sum != 30+32+34 {
				t.Errorf("%s: readings flagged %q summing %g, want the valid N, S, N summing 96", st.name, flags, sum)
			}
			ps, err := rr.Points(ctx, FlaggedMeasurement, map[string]string{"enterprise": "e3", "meter": "flagged"}, day, day.Add(24*time.Hour))
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			var kept []string
			for _, p := range ps {
				kept = append(kept, fmt.Sprintf("%s=%v@%s", p.Tags["flag"], p.Fields["value"], p.Time.Sub(day)))
			}
			if want := []string{"M=31@1h0m0s", "C=33@3h0m0s"}; !slices.Equal(kept, want) {
				t.Errorf("%s: flagged values kept as %q, want %q", st.name, kept, want)
			}
			aggs, err := collectAggregates(ctx, st.h, AggregateQuery{From: day, To: day.Add(24 * time.Hour), Every: 24 * time.Hour, Enterprises: []string{"e3"}})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range aggs {
				if a.Meter == "flagged" && (a.Count != 3 || a.ValueSum != 96 || a.Max != 34) {
					t.Errorf("%s: the flagged meter aggregates to %+v, want count 3, sum 96, max 34 (valid values only)", st.name, a)
				}
			}
		}
	})

	// Identity is (enterprise, meter, time) whatever the registry says of
	// the meter: a meter that moved to another gateway and workshop, its
	// reading rewritten or redelivered from the new place, is one reading
	// in one series, counted once.
	t.Run("identity", func(t *testing.T) {
		at := day.Add(200 * time.Hour)
		before := Reading{Enterprise: "mv", Gateway: "gw-old", Meter: "E", Quantity: "electricity", Workshop: "paint", Kind: "counter", Time: at, Value: 100, Delta: 4}
		moved := before
		moved.Gateway, moved.Workshop, moved.Delta = "gw-new", "weld", 5
		for _, st := range stores {
			w := st.h.(interface {
				WriteReadings(context.Context, []Reading) error
				Readings(context.Context, string, string, time.Time, time.Time) ([]Reading, error)
			})
			for _, batch := range [][]Reading{{before}, {moved}, {moved}} {
				if err := w.WriteReadings(ctx, batch); err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
			}
			got, err := w.Readings(ctx, "mv", "E", at, at.Add(time.Second))
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			if len(got) != 1 || got[0].Delta != 5 || got[0].Value != 100 || got[0].Kind != "counter" {
				t.Errorf("%s: the moved meter's reading reads back as %+v, want one counter reading with the rewritten delta 5", st.name, got)
			}
			aggs, err := collectAggregates(ctx, st.h, AggregateQuery{From: at, To: at.Add(time.Hour), Every: time.Hour, Enterprises: []string{"mv"}})
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			if len(aggs) != 1 || aggs[0].Sum != 5 || aggs[0].Count != 1 {
				t.Errorf("%s: the moved meter aggregates to %+v, want one row summing 5 from one reading", st.name, aggs)
			}
		}
	})

	// A counter's chained readings (InfluxDB keeps their delta alone) read
	// back with their registers, bit for bit, however a read starts: in
	// the middle of an hour, for several meters, or as a meter's latest
	// readings; a reset, a glitch and the hour's first keep theirs.
	t.Run("chained registers", func(t *testing.T) {
		h := day.Add(300 * time.Hour)
		var want []Reading
		var last Reading
		add := func(meter, kind string, at time.Duration, value, delta float64) {
			r := Reading{Enterprise: "ch", Gateway: "gw", Meter: meter, Quantity: "electricity", Kind: kind, Time: h.Add(at), Value: value, Delta: delta}
			if kind == "counter" && last.Meter == meter {
				r.Chained = Chains(last.Time.UnixNano(), last.Value, r.Time.UnixNano(), value, delta)
			}
			last = r
			want = append(want, r)
		}
		add("C", "counter", 0, 100, 0)                  // the meter's first: its register
		add("C", "counter", 10*time.Minute, 100.5, 0.5) // chained
		add("C", "counter", 20*time.Minute, 101.25, 0.75)
		add("C", "counter", 30*time.Minute, 2, 2) // reset: not the step
		add("C", "counter", 40*time.Minute, 3.5, 1.5)
		add("C", "counter", 55*time.Minute, 4, 0.5)
		add("C", "counter", 65*time.Minute, 5, 1) // the hour's first
		add("C", "counter", 75*time.Minute, 6, 1)
		add("C", "counter", 85*time.Minute, 0, 0) // a glitch, held
		add("C", "counter", 95*time.Minute, 7, 1) // counted from 6
		add("C", "counter", 105*time.Minute, 7.25, 0.25)
		// A register in hundredths, read every minute for two hours: the
		// deltas are differences of decimals, most but not all rebuild it
		// exactly.
		prev := 0.0
		chained := 0
		for i := range 120 {
			v, _ := strconv.ParseFloat(fmt.Sprintf("%.2f", 576.65+0.01*float64(i*7)), 64)
			d := 0.0
			if i > 0 {
				d = v - prev
			}
			add("R", "counter", time.Duration(i)*time.Minute, v, d)
			if last.Chained {
				chained++
			}
			prev = v
		}
		if chained < 60 {
			t.Fatalf("only %d of 120 readings chained: the case tests little", chained)
		}
		add("D", "delta", 5*time.Minute, 3, 3)
		add("D", "delta", 15*time.Minute, 4, 4)
		add("D", "delta", 100*time.Minute, 5, 5)
		stored := make([]Reading, len(want))
		for i, r := range want {
			stored[i] = asStored(r)
		}
		between := func(meters []string, from, to time.Time) []Reading {
			var out []Reading
			for _, r := range stored {
				if slices.Contains(meters, r.Meter) && !r.Time.Before(from) && !r.Time.After(to) {
					out = append(out, r)
				}
			}
			return sortedReadings(out)
		}
		latest := func(n int) []Reading {
			var out []Reading
			for _, m := range []string{"C", "D", "R"} {
				ms := between([]string{m}, h, h.Add(24*time.Hour))
				out = append(out, ms[max(0, len(ms)-n):]...)
			}
			return sortedReadings(out)
		}
		for _, st := range stores {
			w := st.h.(interface {
				WriteReadings(context.Context, []Reading) error
				Readings(context.Context, string, string, time.Time, time.Time) ([]Reading, error)
				ReadingsOf(context.Context, string, []string, time.Time, time.Time) ([]Reading, error)
			})
			if err := w.WriteReadings(ctx, want); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			check := func(what string, got, want []Reading) {
				t.Helper()
				if got = sortedReadings(got); !slices.EqualFunc(got, want, readingEqual) {
					t.Errorf("%s: %s:\ngot  %v\nwant %v", st.name, what, got, want)
				}
			}
			from, to := h.Add(15*time.Minute), h.Add(100*time.Minute)
			got, err := w.Readings(ctx, "ch", "C", from, to)
			if err != nil {
				t.Fatal(err)
			}
			check("readings from the middle of an hour", got, between([]string{"C"}, from, to.Add(-1)))
			got, err = w.Readings(ctx, "ch", "R", h.Add(17*time.Minute), h.Add(3*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			check("registers in hundredths", got, between([]string{"R"}, h.Add(17*time.Minute), h.Add(3*time.Hour)))
			got, err = w.ReadingsOf(ctx, "ch", []string{"C", "D", "R"}, from, to)
			if err != nil {
				t.Fatal(err)
			}
			check("several meters", got, between([]string{"C", "D", "R"}, from, to))
			for _, n := range []int{1, 3, 5} {
				got, err := collectLatest(ctx, st.h, LatestQuery{Since: h, PerMeter: n, Enterprises: []string{"ch"}})
				if err != nil {
					t.Fatal(err)
				}
				checkLatestOrder(t, st.name, got, n)
				check(fmt.Sprintf("latest %d per meter", n), got, latest(n))
			}
		}
	})

	latestQueries := []struct {
		name string
		q    LatestQuery
	}{
		{"one per meter", LatestQuery{PerMeter: 1}},
		{"five per meter since", LatestQuery{Since: day.Add(71 * time.Hour), PerMeter: 5}},
		{"since on a reading", LatestQuery{Since: day.Add(71*time.Hour + 40*time.Minute), PerMeter: 5}},
		{"some enterprises", LatestQuery{Since: day, PerMeter: 3, Enterprises: []string{"o'neil \"x\"", "e3"}}},
		{"after everything", LatestQuery{Since: day.Add(100 * time.Hour), PerMeter: 3}},
	}
	for _, tt := range latestQueries {
		t.Run("latest/"+tt.name, func(t *testing.T) {
			var got [2][]Reading
			for i, st := range stores {
				rs, err := collectLatest(ctx, st.h, tt.q)
				if err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				checkLatestOrder(t, st.name, rs, tt.q.PerMeter)
				got[i] = sortedReadings(rs)
			}
			if !slices.EqualFunc(got[0], got[1], readingEqual) {
				t.Errorf("bolt and influx differ:\nbolt   %v\ninflux %v", got[0], got[1])
			}
		})
	}
}

// TestAggregateByHand checks both stores against sums worked out by hand:
// daily buckets at UTC+8 (16:00 UTC edges), a reading exactly on an edge.
func TestAggregateByHand(t *testing.T) {
	day := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	at := func(h, m int) time.Time { return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute) }
	rs := []Reading{
		{Enterprise: "e", Gateway: "g", Meter: "E", Quantity: "electricity", Kind: "counter", Time: at(15, 0), Value: 100, Delta: 0},
		{Enterprise: "e", Gateway: "g", Meter: "E", Quantity: "electricity", Kind: "counter", Time: at(15, 59), Value: 103, Delta: 3},
		{Enterprise: "e", Gateway: "g", Meter: "E", Quantity: "electricity", Kind: "counter", Time: at(16, 0), Value: 110, Delta: 7}, // next local day
		{Enterprise: "e", Gateway: "g", Meter: "E", Quantity: "electricity", Kind: "counter", Time: at(39, 0), Value: 111, Delta: 1},
		{Enterprise: "e", Gateway: "g", Meter: "pH", Quantity: "ph", Workshop: "tank", Kind: "gauge", Time: at(2, 0), Value: 6.5},
		{Enterprise: "e", Gateway: "g", Meter: "pH", Quantity: "ph", Workshop: "tank", Kind: "gauge", Time: at(16, 0), Value: 8},
		{Enterprise: "e", Gateway: "g", Meter: "pH", Quantity: "ph", Workshop: "tank", Kind: "gauge", Time: at(20, 0), Value: 7.5},
		{Enterprise: "f", Gateway: "g", Meter: "E", Quantity: "electricity", Kind: "counter", Time: at(20, 0), Value: 1, Delta: 1},
	}
	q := AggregateQuery{From: at(0, 0), To: at(40, 0), Every: 24 * time.Hour, Offset: 16 * time.Hour, Enterprises: []string{"e"}}
	want := []Aggregate{
		{Enterprise: "e", Meter: "E", Start: at(-8, 0), Sum: 3, Count: 2},
		{Enterprise: "e", Meter: "E", Start: at(16, 0), Sum: 8, Count: 2},
		{Enterprise: "e", Meter: "pH", Start: at(-8, 0), ValueSum: 6.5, Count: 1, Max: 6.5},
		{Enterprise: "e", Meter: "pH", Start: at(16, 0), ValueSum: 15.5, Count: 2, Max: 8},
	}
	b := openTestBolt(t)
	s, _ := openTestInflux(t)
	for _, st := range []struct {
		name string
		h    history
		w    func(context.Context, []Reading) error
	}{{"bolt", b, b.WriteReadings}, {"influx", s, s.WriteReadings}} {
		if err := st.w(context.Background(), rs); err != nil {
			t.Fatal(err)
		}
		got, err := collectAggregates(context.Background(), st.h, q)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got = sortedAggregates(got); !slices.EqualFunc(got, want, aggEqual) {
			t.Errorf("%s:\n%s", st.name, diffAggregates(got, want))
		}
	}
}

// influxAggPath is InfluxDB answering aggregates by one path only.
type influxAggPath struct {
	*Influx
	path aggPath
}

func (s influxAggPath) EachAggregate(ctx context.Context, q AggregateQuery, fn func(*Aggregate) error) error {
	return s.eachAggregate(ctx, q, s.path, fn)
}

func aggEqual(a, b Aggregate) bool {
	sa, sb := a.Start, b.Start
	a.Start, b.Start = time.Time{}, time.Time{}
	return a == b && sa.Equal(sb)
}

func readingEqual(a, b Reading) bool {
	ta, tb := a.Time, b.Time
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b && ta.Equal(tb)
}

// diffAggregates lists the rows only in got and only in want.
func diffAggregates(got, want []Aggregate) string {
	s := ""
	for _, a := range got {
		if !slices.ContainsFunc(want, func(b Aggregate) bool { return aggEqual(a, b) }) {
			s += fmt.Sprintf("  got only  %+v\n", a)
		}
	}
	for _, b := range want {
		if !slices.ContainsFunc(got, func(a Aggregate) bool { return aggEqual(a, b) }) {
			s += fmt.Sprintf("  want only %+v\n", b)
		}
	}
	return s
}

// Points answers alike from both stores: typed fields (an integral float
// stays a float, an integer an integer), fields a point lacks left out,
// tags a point lacks absent (and matched by ""), quoted names, the
// half-open span, and points at one time in the same order.
func TestPointsConformance(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	ps := []Point{
		{Measurement: "event", Tags: map[string]string{"enterprise": "e1", "kind": "code_change"},
			Fields: map[string]any{"new_code": "red", "new_level": int64(3), "resolved": false, "reasons": `[{"kind":"x"}]`}, Time: t0},
		{Measurement: "event", Tags: map[string]string{"enterprise": "e1 x", "kind": "code_change"},
			Fields: map[string]any{"new_code": "yellow"}, Time: t0},
		{Measurement: "event", Tags: map[string]string{"enterprise": "e1", "kind": "exceedance", "meter": "cod"},
			Fields: map[string]any{"new_value": 55.0, "old_value": 50.5, "resolved": false}, Time: t0},
		{Measurement: "event", Tags: map[string]string{"enterprise": "e1", "kind": "level_drop", "indicator": "water"},
			Fields: map[string]any{"old_level": int64(1), "new_level": int64(2), "new_value": -0.25}, Time: t0.Add(time.Minute)},
		{Measurement: "event", Tags: map[string]string{"enterprise": `it's "e2"`, "kind": "stale", "meter": "m 1,a=b"},
			Fields: map[string]any{"resolved": true, "reason": "silent, 'since' 3h"}, Time: t0.Add(2 * time.Minute)},
		{Measurement: "event", Tags: map[string]string{"enterprise": "e1", "kind": "code_change"},
			Fields: map[string]any{"new_code": "green"}, Time: t0.Add(time.Hour)}, // at to: left out
		{Measurement: "score", Tags: map[string]string{"enterprise": "e1"}, Fields: map[string]any{"score": 1.0}, Time: t0},
	}
	b := openTestBolt(t)
	s, _ := openTestInflux(t)
	for _, w := range []interface {
		WritePoints(context.Context, []Point) error
	}{b, s} {
		if err := w.WritePoints(ctx, ps); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		tags map[string]string
		want int
	}{
		{"all", nil, 5},
		{"an enterprise", map[string]string{"enterprise": "e1"}, 3},
		{"quoted", map[string]string{"enterprise": `it's "e2"`, "meter": "m 1,a=b"}, 1},
		{"no meter tag", map[string]string{"enterprise": "e1", "meter": ""}, 2},
		{"none", map[string]string{"enterprise": "nobody"}, 0},
	} {
		want, err := b.Points(ctx, "event", c.tags, t0, t0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Points(ctx, "event", c.tags, t0, t0.Add(time.Hour))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(want) != c.want {
			t.Fatalf("%s: the embedded store has %d points, want %d", c.name, len(want), c.want)
		}
		if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
			t.Errorf("%s: InfluxDB's points\n%#v\nthe embedded store's\n%#v", c.name, got, want)
		}
	}
	if got, err := s.Points(ctx, "no_such_measurement", nil, t0, t0.Add(time.Hour)); err != nil || len(got) != 0 {
		t.Errorf("a measurement never written: %v, %v; want none", got, err)
	}
}

// LatestPoints gives each series' (or each enterprise's) n newest points
// within the span, from both stores alike.
func TestLatestPointsConformance(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	a := map[string]string{"enterprise": "e1", "kind": "code_change"}
	b := map[string]string{"enterprise": "e1", "kind": "exceedance", "meter": "cod"}
	c := map[string]string{"enterprise": "e2", "kind": "stale", "meter": "m1"}
	var ps []Point
	add := func(tags map[string]string, min int) {
		ps = append(ps, Point{Measurement: "event", Tags: tags, Fields: map[string]any{"n": int64(min), "reason": "r"}, Time: at(min)})
	}
	add(a, 0)
	add(a, 10)
	add(a, 20)
	add(a, 60) // at to: left out
	add(b, 5)
	add(b, 15)
	add(c, -1) // before from: left out
	add(c, 1)
	ps = append(ps, Point{Measurement: "score", Tags: a, Fields: map[string]any{"n": int64(30)}, Time: at(30)})
	bolt := openTestBolt(t)
	influx, _ := openTestInflux(t)
	names := map[string]string{"e1/code_change": "A", "e1/exceedance": "B", "e2/stale": "C"}
	for _, st := range []interface {
		WritePoints(context.Context, []Point) error
		LatestPoints(context.Context, string, []string, int, time.Time, time.Time) ([]Point, error)
	}{bolt, influx} {
		if err := st.WritePoints(ctx, ps); err != nil {
			t.Fatal(err)
		}
		for _, q := range []struct {
			by   []string
			n    int
			want string
		}{
			{nil, 1, "C1 B15 A20"},
			{nil, 2, "C1 B5 A10 B15 A20"},
			{[]string{"enterprise"}, 3, "C1 A10 B15 A20"},
			{[]string{"enterprise"}, 1, "C1 A20"},
			{[]string{"kind", "enterprise"}, 1, "C1 B15 A20"},
			{nil, 0, ""},
		} {
			got, err := st.LatestPoints(ctx, "event", q.by, q.n, t0, at(60))
			if err != nil {
				t.Fatalf("%T: %v", st, err)
			}
			var seq []string
			for _, p := range got {
				n, _ := p.Fields["n"].(int64)
				if p.Fields["reason"] != "r" || !p.Time.Equal(at(int(n))) {
					t.Errorf("%T: point %+v: fields or time mangled", st, p)
				}
				seq = append(seq, fmt.Sprintf("%s%d", names[p.Tags["enterprise"]+"/"+p.Tags["kind"]], n))
			}
			if s := strings.Join(seq, " "); s != q.want {
				t.Errorf("%T: by %v, %d each: got %q, want %q", st, q.by, q.n, s, q.want)
			}
		}
	}
}
