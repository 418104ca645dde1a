package store

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func openTestInflux(t *testing.T) (*Influx, *testenv.InfluxDB) {
	t.Helper()
	db := testenv.Influx(t)
	s, err := OpenInflux(InfluxConfig{URL: db.URL, Token: db.Token, Org: db.Org, Bucket: db.Bucket, GZip: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, db
}

func TestInfluxReadings(t *testing.T) {
	s, _ := openTestInflux(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	rs := []Reading{
		{Enterprise: "ent-a", Gateway: "gw-1", Meter: "E-1", Quantity: "electricity", Kind: "counter", Workshop: "paint", Time: t0, Value: 1000, Delta: 0},
		{Enterprise: "ent-a", Gateway: "gw-1", Meter: "E-1", Quantity: "electricity", Kind: "counter", Workshop: "paint", Time: t0.Add(30 * time.Minute), Value: 1100, Delta: 100},
		{Enterprise: "ent-a", Gateway: "gw-1", Meter: "E-1", Quantity: "electricity", Kind: "counter", Workshop: "paint", Time: t0.Add(90 * time.Minute), Value: 1400, Delta: 300},
		{Enterprise: "ent-a", Gateway: "gw-1", Meter: "COD", Quantity: "cod", Kind: "gauge", Time: t0, Value: 40},
		{Enterprise: "ent-a", Gateway: "gw-1", Meter: "COD", Quantity: "cod", Kind: "gauge", Time: t0.Add(30 * time.Minute), Value: 60},
		{Enterprise: "ent b", Gateway: "gw,2", Meter: "E=1", Quantity: "electricity", Kind: "counter", Time: t0, Value: 5},
	}
	if err := s.WriteReadings(ctx, rs); err != nil {
		t.Fatal(err)
	}
	// Writing again (a redelivery) overwrites: still six readings, and a
	// rewritten delta replaces the old one.
	again := append([]Reading(nil), rs...)
	again[1].Delta = 90
	if err := s.WriteReadings(ctx, again); err != nil {
		t.Fatal(err)
	}
	n, err := s.CountReadings(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if n != len(rs) {
		t.Errorf("got %d readings, want %d", n, len(rs))
	}
	got, err := s.Readings(ctx, "ent-a", "E-1", t0, t0.Add(90*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Delta != 90 || got[1].Value != 1100 || got[1].Kind != "counter" || got[1].Gateway != "" {
		t.Errorf("got %+v, want the first two E-1 counter readings with the rewritten delta 90 (half-open range), no gateway (not stored)", got)
	}
	latest, err := collectLatest(ctx, s, LatestQuery{Since: t0.Add(-time.Hour), PerMeter: 2})
	if err != nil {
		t.Fatal(err)
	}
	perMeter := map[string][]Reading{}
	for _, r := range latest {
		perMeter[r.Enterprise+"/"+r.Meter] = append(perMeter[r.Enterprise+"/"+r.Meter], r)
	}
	if e1 := perMeter["ent-a/E-1"]; len(e1) != 2 || e1[0].Value != 1100 || e1[1].Value != 1400 {
		t.Errorf("got latest E-1 %+v, want the last two in time order", e1)
	}
	if odd := perMeter["ent b/E=1"]; len(odd) != 1 || odd[0].Value != 5 {
		t.Errorf("got %+v, want escaped tags to round-trip", odd)
	}
	aggs, err := collectAggregates(ctx, s, AggregateQuery{From: t0.Add(-time.Hour), To: t0.Add(3 * time.Hour), Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Aggregate{
		"ent-a/E-1/06": {Sum: 90, Count: 2},
		"ent-a/E-1/07": {Sum: 300, Count: 1},
		"ent-a/COD/06": {ValueSum: 100, Count: 2, Max: 60},
	}
	for _, a := range aggs {
		k := a.Enterprise + "/" + a.Meter + "/" + a.Start.Format("15")
		w, ok := want[k]
		if !ok {
			continue
		}
		delete(want, k)
		if a.Sum != w.Sum || a.Count != w.Count || a.ValueSum != w.ValueSum || a.Max != w.Max {
			t.Errorf("%s: got %+v, want %+v", k, a, w)
		}
	}
	for k := range want {
		t.Errorf("aggregate %s missing in %+v", k, aggs)
	}
}

func TestInfluxPoints(t *testing.T) {
	s, _ := openTestInflux(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	ps := []Point{
		{Measurement: "score", Tags: map[string]string{"enterprise": "ent-a"}, Fields: map[string]any{"score": 81.5, "level": "II", "restrictive_ok": true, "rank": int64(2)}, Time: t0},
		{Measurement: "score", Tags: map[string]string{"enterprise": "ent-b"}, Fields: map[string]any{"score": 55.0, "level": "below III", "restrictive_ok": false, "rank": int64(3)}, Time: t0},
	}
	if err := s.WritePoints(ctx, ps); err != nil {
		t.Fatal(err)
	}
	got, err := s.Points(ctx, "score", map[string]string{"enterprise": "ent-a"}, t0, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("got %d points, want 1: %+v", len(got), got)
	}
	f := got[0].Fields
	if f["score"] != 81.5 || f["level"] != "II" || f["restrictive_ok"] != true || f["rank"] != int64(2) || got[0].Tags["enterprise"] != "ent-a" {
		t.Errorf("got %+v, want the ent-a point with typed fields", got[0])
	}
}

// A point InfluxDB refuses for its content is a permanent error; an
// unreachable server is a temporary one.
func TestInfluxErrorsAreClassified(t *testing.T) {
	s, db := openTestInflux(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	// A field type conflict: value was a float, now a string.
	db.Write(t, `reading,enterprise=x,meter=m value=1 `+strconv.FormatInt(t0.UnixNano(), 10))
	err := s.WritePoints(ctx, []Point{{Measurement: "reading", Tags: map[string]string{"enterprise": "x", "meter": "m"}, Fields: map[string]any{"value": "text"}, Time: t0.Add(time.Second)}})
	if err == nil || !IsPermanent(err) {
		t.Errorf("got %v, want a permanent error", err)
	}
	down, err := OpenInflux(InfluxConfig{URL: "http://127.0.0.1:1", Bucket: "x/autogen", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = down.WriteReadings(ctx, []Reading{{Enterprise: "e", Meter: "m", Kind: "gauge", Time: t0, Value: 1}})
	if err == nil || IsPermanent(err) {
		t.Errorf("got %v, want a temporary error", err)
	}
}

func TestInfluxReadingsOf(t *testing.T) {
	s, _ := openTestInflux(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	var rs []Reading
	for i, m := range []string{"A", "B", "C"} {
		for k := range 3 {
			rs = append(rs, Reading{Enterprise: "e", Gateway: "g", Meter: m, Quantity: "electricity", Kind: "counter", Time: t0.Add(time.Duration(k) * time.Hour), Value: float64(100*i + k)})
		}
	}
	rs = append(rs, Reading{Enterprise: "other", Gateway: "g", Meter: "A", Quantity: "electricity", Kind: "counter", Time: t0, Value: 9})
	if err := s.WriteReadings(ctx, rs); err != nil {
		t.Fatal(err)
	}
	// A point of the same enterprise without a meter tag in the same hours
	// (a scoring event stamped at the data's time) is not a reading, and
	// must not break the look-up.
	if err := s.WritePoints(ctx, []Point{{Measurement: "event", Tags: map[string]string{"enterprise": "e", "kind": "code_change"},
		Fields: map[string]any{"reason": "x"}, Time: t0.Add(30 * time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	if one, err := s.Readings(ctx, "e", "A", t0, t0.Add(time.Hour)); err != nil || len(one) != 1 {
		t.Fatalf("Readings of A: %d, %v; want 1 (to excluded)", len(one), err)
	}
	if last, err := collectLatest(ctx, s, LatestQuery{Since: t0, PerMeter: 1}); err != nil || len(last) != 4 {
		t.Fatalf("EachLatestReading: %d, %v; want one per meter (4)", len(last), err)
	}
	got, err := s.ReadingsOf(ctx, "e", []string{"A", "C"}, t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, r := range got {
		keys = append(keys, r.Meter+"@"+r.Time.Format("15"))
	}
	sort.Strings(keys)
	if fmt.Sprint(keys) != "[A@06 A@07 C@06 C@07]" {
		t.Errorf("got %v, want A and C at 06 and 07 (both ends included), enterprise e only", keys)
	}
}

// Writes with and without gzip land the same, concurrently (the gzip
// writers and buffers are pooled).
func TestInfluxWriteGzipOnAndOff(t *testing.T) {
	db := testenv.Influx(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for i, gz := range []bool{true, false, true, false} {
		s, err := OpenInflux(InfluxConfig{URL: db.URL, Token: db.Token, Org: db.Org, Bucket: db.Bucket, GZip: gz})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		wg.Go(func() {
			var rs []Reading
			for j := range 2000 {
				rs = append(rs, Reading{Enterprise: fmt.Sprintf("ent-%d", i), Gateway: "gw", Meter: "E", Quantity: "electricity", Kind: "counter",
					Time: t0.Add(time.Duration(j) * time.Minute), Value: float64(j), Delta: 1})
			}
			if err := s.WriteReadings(ctx, rs); err != nil {
				t.Errorf("gzip %v: %v", gz, err)
			}
		})
	}
	wg.Wait()
	s, _ := OpenInflux(InfluxConfig{URL: db.URL, Token: db.Token, Org: db.Org, Bucket: db.Bucket})
	defer s.Close()
	for i := range 4 {
		if n, err := s.CountReadings(ctx, fmt.Sprintf("ent-%d", i)); err != nil || n != 2000 {
			t.Errorf("ent-%d: %d readings (%v), want 2000", i, n, err)
		}
	}
}

// Readings stored before readings lost their registry tags (six tags; a
// counter's register and a delta meter's amount in value, beside delta)
// read back with their register, so a restart after the upgrade computes
// the next delta from the register, and their deltas still add up.
func TestInfluxReadsTheOlderLayout(t *testing.T) {
	s, db := openTestInflux(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	db.Write(t, fmt.Sprintf(`reading,enterprise=e,gateway=gw,kind=counter,meter=E,quantity=electricity,workshop=paint value=1000,delta=0 %d
reading,enterprise=e,gateway=gw,kind=counter,meter=E,quantity=electricity,workshop=paint value=1010,delta=10 %d
reading,enterprise=e,gateway=gw,kind=delta,meter=W,quantity=water value=3,delta=3 %d
reading,enterprise=e,gateway=gw,kind=gauge,meter=COD,quantity=cod value=41 %d
`, t0.UnixNano(), t0.Add(time.Hour).UnixNano(), t0.Add(time.Hour).UnixNano(), t0.Add(time.Hour).UnixNano()))
	// After the upgrade, the same meters in the new layout.
	if err := s.WriteReadings(ctx, []Reading{
		{Enterprise: "e", Meter: "E", Kind: "counter", Time: t0.Add(2 * time.Hour), Value: 1025, Delta: 15},
		{Enterprise: "e", Meter: "W", Kind: "delta", Time: t0.Add(2 * time.Hour), Value: 4, Delta: 4},
	}); err != nil {
		t.Fatal(err)
	}
	latest, err := collectLatest(ctx, s, LatestQuery{PerMeter: 3})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range latest {
		got = append(got, fmt.Sprintf("%s@%d=%g+%g", r.Meter, r.Time.Sub(t0)/time.Hour, r.Value, r.Delta))
	}
	want := []string{"COD@1=41+0", "E@0=1000+0", "E@1=1010+10", "E@2=1025+15", "W@1=3+3", "W@2=4+4"}
	slices.Sort(got) // meters in any order, each in time order
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("latest readings across the upgrade: %v, want %v", got, want)
	}
	rs, err := s.Readings(ctx, "e", "E", t0, t0.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 || rs[1].Value != 1010 || rs[2].Value != 1025 {
		t.Errorf("E's readings across the upgrade: %+v, want registers 1000, 1010, 1025", rs)
	}
	aggs, err := collectAggregates(ctx, s, AggregateQuery{From: t0, To: t0.Add(3 * time.Hour), Every: 24 * time.Hour, Enterprises: []string{"e"}})
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]float64{}
	for _, a := range aggs {
		sums[a.Meter] += a.Sum
	}
	if sums["E"] != 25 || sums["W"] != 7 {
		t.Errorf("amounts across the upgrade: %v, want E 25 and W 7", sums)
	}
}
