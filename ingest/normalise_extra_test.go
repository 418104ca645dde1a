package ingest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/store"
)

func payload(seq int, readings ...string) []byte {
	return []byte(fmt.Sprintf(`{"gateway":"gw-1","seq":%d,"readings":[%s]}`, seq, strings.Join(readings, ",")))
}

func reading(meter string, ts time.Time, v float64) string {
	return fmt.Sprintf(`{"meter":%q,"ts":%q,"value":%g}`, meter, ts.Format(time.RFC3339), v)
}

const topicA = "cp/v1/ent-a/gw-1/telemetry"

// After a restart the Normaliser is seeded from the store: a redelivered
// message is absorbed and a counter continues from its stored register.
func TestRestoreAfterRestart(t *testing.T) {
	reg := testRegistry(t)
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	t0 := now.Add(-time.Hour)
	first := NewNormaliser(reg, testConfig)
	var stored []store.Reading
	var obs []store.Reading
	for i, v := range []float64{100, 150, 200} {
		if _, err := first.Process(topicA, payload(i+1, reading("E-1", t0.Add(time.Duration(i)*time.Minute), v)), false, now, &stored, &obs); err != nil {
			t.Fatal(err)
		}
	}

	second := NewNormaliser(reg, testConfig)
	second.Restore(stored)
	var write []store.Reading
	out, err := second.Process(topicA, payload(3, reading("E-1", t0.Add(2*time.Minute), 200)), true, now, &write, &obs)
	if err != nil {
		t.Fatal(err)
	}
	if out.Duplicates != 1 || len(write) != 0 {
		t.Fatalf("redelivery after restart: got %d duplicates and %d writes, want 1 and 0", out.Duplicates, len(write))
	}
	out, err = second.Process(topicA, payload(4, reading("E-1", t0.Add(3*time.Minute), 260)), false, now, &write, &obs)
	if err != nil {
		t.Fatal(err)
	}
	if out.Accepted != 1 || len(write) != 1 || write[0].Delta != 60 {
		t.Fatalf("got %+v, writes %+v; want one write with delta 60", out, write)
	}
}

// A counter reading older than the history kept cannot be placed between
// its neighbours, so it is rejected (and dead-lettered), never guessed.
func TestOutsideHistory(t *testing.T) {
	reg := testRegistry(t)
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	t0 := now.Add(-2 * time.Hour)
	n := NewNormaliser(reg, testConfig)
	var write, obs []store.Reading
	for i := 1; i <= testConfig.History+2; i++ {
		if _, err := n.Process(topicA, payload(i, reading("E-1", t0.Add(time.Duration(i)*time.Minute), float64(100*i))), false, now, &write, &obs); err != nil {
			t.Fatal(err)
		}
	}
	out, err := n.Process(topicA, payload(99, reading("E-1", t0.Add(30*time.Second), 50)), false, now, &write, &obs)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Rejects) != 1 || out.Rejects[0].Reason != ReasonOutsideHistory {
		t.Fatalf("got rejects %+v, want one %s", out.Rejects, ReasonOutsideHistory)
	}
}

// The sum of the amounts a counter reports to the scorer equals its last
// register minus its first, whatever order the readings arrive in.
func TestCounterAmountsIndependentOfOrder(t *testing.T) {
	reg := testRegistry(t)
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	t0 := now.Add(-time.Hour)
	values := []float64{10, 25, 25, 40, 70, 71, 90, 120}
	orders := [][]int{
		{0, 1, 2, 3, 4, 5, 6, 7},
		{7, 6, 5, 4, 3, 2, 1, 0},
		{0, 4, 2, 7, 1, 3, 6, 5},
		{3, 0, 7, 1, 5, 2, 4, 6, 0, 7, 3}, // with redeliveries
	}
	for _, order := range orders {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			n := NewNormaliser(reg, NormaliserConfig{FutureHorizon: time.Minute, PastHorizon: 24 * time.Hour, History: 16})
			var write, obs []store.Reading
			for seq, i := range order {
				if _, err := n.Process(topicA, payload(seq, reading("E-1", t0.Add(time.Duration(i)*time.Minute), values[i])), false, now, &write, &obs); err != nil {
					t.Fatal(err)
				}
			}
			var sum float64
			for _, o := range obs {
				sum += o.Delta
			}
			// The last write of each timestamp is what the store keeps.
			final := map[time.Time]float64{}
			for _, w := range write {
				final[w.Time] = w.Delta
			}
			var stored float64
			for _, d := range final {
				stored += d
			}
			if want := values[len(values)-1] - values[0]; sum != want || stored != want {
				t.Errorf("got observed sum %g and stored sum %g, want %g", sum, stored, want)
			}
		})
	}
}

func BenchmarkProcess(b *testing.B) {
	reg := testRegistry(b)
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	meters := []string{"E-1", "E-MWH", "E-CAPPED", "W-FRESH", "HW", "COD-OUT", "WW-OUT"}
	const perMsg = 49
	var n *Normaliser
	t0 := now.Add(-300 * 24 * time.Hour)
	msgs := make([][]byte, 512)
	step := 0
	for i := range msgs {
		rs := make([]string, 0, perMsg)
		for j := 0; j < perMsg/len(meters); j++ {
			step++
			for k, m := range meters {
				v := float64(step*10 + k) // rising registers
				if m == "HW" {
					v = float64(1 + step%5) // a delta meter: tonnes per minute, within its max_rate
				}
				rs = append(rs, reading(m, t0.Add(time.Duration(step)*time.Minute), v))
			}
		}
		msgs[i] = payload(i, rs...)
	}
	var write, obs []store.Reading
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%len(msgs) == 0 {
			// Start over with fresh state, so the replayed messages are
			// new readings again rather than duplicates.
			n = NewNormaliser(reg, NormaliserConfig{FutureHorizon: time.Minute, PastHorizon: 365 * 24 * time.Hour, History: 32})
		}
		write, obs = write[:0], obs[:0]
		out, err := n.Process(topicA, msgs[i%len(msgs)], false, now, &write, &obs)
		if err != nil || len(out.Rejects) > 0 {
			b.Fatal(err, out.Rejects)
		}
		i++
	}
	b.ReportMetric(float64(b.N*perMsg)/b.Elapsed().Seconds(), "readings/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perMsg), "ns/reading")
}

// A backlog older than the history kept is checked against the store: the
// same values are duplicates, another value a conflict, an old gauge or
// delta reading not stored is new, an old counter reading not stored is
// placed between its stored neighbours.
func TestOldReadingsCheckedAgainstStore(t *testing.T) {
	reg := testRegistry(t)
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	t0 := now.Add(-6 * time.Hour)
	var stored []store.Reading
	lookups := 0
	cfg := testConfig
	cfg.Lookup = func(_ context.Context, enterprise string, meters []string, from, to time.Time) ([]store.Reading, error) {
		lookups++
		var out []store.Reading
		for _, r := range stored {
			if r.Enterprise == enterprise && slices.Contains(meters, r.Meter) && !r.Time.Before(from) && !r.Time.After(to) {
				out = append(out, r)
			}
		}
		return out, nil
	}
	n := NewNormaliser(reg, cfg)
	var obs []store.Reading
	for i := 1; i <= cfg.History+5; i++ {
		ts := t0.Add(time.Duration(i) * time.Minute)
		if _, err := n.Process(topicA, payload(i, reading("E-1", ts, float64(100*i)), reading("COD-OUT", ts, 40)), false, now, &stored, &obs); err != nil {
			t.Fatal(err)
		}
	}
	old := t0.Add(2 * time.Minute)
	var write []store.Reading
	out, err := n.Process(topicA, payload(100,
		reading("E-1", old, 200),                        // stored: duplicate
		reading("COD-OUT", old, 41),                     // stored with 40: conflict
		reading("COD-OUT", old.Add(30*time.Second), 42), // not stored: a new gauge reading
		reading("E-1", old.Add(30*time.Second), 250),    // not stored: placed between its stored neighbours
	), false, now, &write, &obs)
	if err != nil {
		t.Fatal(err)
	}
	if lookups != 1 {
		t.Errorf("got %d store look-ups, want one for the whole message", lookups)
	}
	// The counter reading counts from the stored 200 before it (50), and
	// the stored 300 after it, which counted 100 from 200, now counts 50
	// from it: rewritten, -50 for the scorer. Nothing counted twice.
	var got []string
	for _, w := range write {
		got = append(got, fmt.Sprintf("%s %g+%g@%s", w.Meter, w.Value, w.Delta, w.Time.Sub(old)))
	}
	if want := []string{"COD-OUT 42+0@30s", "E-1 300+50@1m0s", "E-1 250+50@30s"}; fmt.Sprint(got) != fmt.Sprint(want) || out.Duplicates != 1 || out.Accepted != 2 || out.Rewrites != 1 {
		t.Errorf("got %+v and writes %q, want one duplicate and writes %q", out, got, want)
	}
	var amount float64
	for _, o := range obs[len(obs)-3:] {
		if o.Meter == "E-1" {
			amount += o.Delta
		}
	}
	if amount != 0 {
		t.Errorf("the late counter reading changed the amounts observed by %g, want 0 (it splits one interval in two)", amount)
	}
	var reasons []Reason
	for _, r := range out.Rejects {
		reasons = append(reasons, r.Reason)
	}
	if fmt.Sprint(reasons) != fmt.Sprint([]Reason{ReasonConflict}) {
		t.Errorf("got rejects %v, want a conflict", reasons)
	}
}

// Two readings of one meter and time in one message are a duplicate
// within the message even when they are older than the history kept and
// checked against the store, as they are when the history places them.
func TestDuplicateInMessageOlderThanHistory(t *testing.T) {
	reg := testRegistry(t)
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	t0 := now.Add(-2 * time.Hour)
	cfg := testConfig
	cfg.Lookup = func(context.Context, string, []string, time.Time, time.Time) ([]store.Reading, error) {
		return nil, nil // the store holds none of them
	}
	for _, second := range []float64{5, 6} { // the same value again, and another
		t.Run(fmt.Sprint(second), func(t *testing.T) {
			n := NewNormaliser(reg, cfg)
			var write, obs []store.Reading
			for i := 1; i <= cfg.History+2; i++ {
				if _, err := n.Process(topicA, payload(i, reading("HW", t0.Add(time.Duration(i)*time.Minute), 1)), false, now, &write, &obs); err != nil {
					t.Fatal(err)
				}
			}
			old := t0.Add(30 * time.Second) // before every reading kept
			out, err := n.Process(topicA, payload(99, reading("HW", old, 5), reading("HW", old, second)), false, now, &write, &obs)
			if err != nil {
				t.Fatal(err)
			}
			if out.Accepted != 1 || len(out.Rejects) != 1 || out.Rejects[0].Reason != ReasonDuplicate || out.Rejects[0].Index != 1 {
				t.Errorf("got %d accepted, rejects %+v; want the first accepted and the second rejected %s", out.Accepted, out.Rejects, ReasonDuplicate)
			}
		})
	}
}
