package store

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/internal/testenv"
)

// TestMeasureHistoryQueries compares the InfluxQL queries behind
// EachAggregate and EachLatestReading with their Flux equivalents on a
// realistic history: 200 enterprises × 50 meters × 30 days hourly (7.2
// million readings). It takes minutes, so it runs only with
// CLEANPROD_MEASURE_HISTORY=1 and logs time, peak heap growth and bytes
// allocated for each.
func TestMeasureHistoryQueries(t *testing.T) {
	s := openMeasureStore(t, "7.2 million readings")
	const ents, meters, days = 200, 50, 30
	ctx := context.Background()
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			var rs []Reading
			for e := w; e < ents; e += 2 {
				for m := range meters {
					kind, qty, ws := "counter", "electricity", []string{"paint", "weld", "assembly"}[m%3]
					if m >= 40 {
						kind, qty = "gauge", "cod"
					}
					reg := 0.0
					for h := range days * 24 {
						r := Reading{Enterprise: fmt.Sprintf("ent-%03d", e), Gateway: "gw", Meter: fmt.Sprintf("M-%02d", m), Quantity: qty, Workshop: ws, Kind: kind,
							Time: start.Add(time.Duration(h) * time.Hour)}
						if kind == "gauge" {
							r.Value = float64(h%17) + 0.5
						} else {
							r.Delta = float64(h%5) + 0.25
							reg += r.Delta
							r.Value = reg
						}
						rs = append(rs, r)
					}
					if len(rs) >= 10000 {
						if err := s.WriteReadings(ctx, rs); err != nil {
							t.Error(err)
							return
						}
						rs = rs[:0]
					}
				}
			}
			if err := s.WriteReadings(ctx, rs); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	t.Logf("wrote %d readings in %v", ents*meters*days*24, time.Since(t0).Round(time.Second))
	if t.Failed() {
		return
	}

	group := make([]string, 20)
	for i := range group {
		group[i] = fmt.Sprintf("ent-%03d", i)
	}
	end := start.Add(days * 24 * time.Hour)
	hourly := AggregateQuery{From: start, To: end, Every: time.Hour, Enterprises: group}
	daily := AggregateQuery{From: start, To: end, Every: 24 * time.Hour, Offset: 16 * time.Hour}
	latest := LatestQuery{Since: end.Add(-48 * time.Hour), PerMeter: 3}
	cases := []struct {
		name string
		run  func(row func()) error
	}{
		{"aggregate hourly, 20 enterprises, InfluxQL", func(row func()) error {
			return s.EachAggregate(ctx, hourly, func(*Aggregate) error { row(); return nil })
		}},
		{"aggregate hourly, 20 enterprises, Flux", func(row func()) error { return fluxAggregate(ctx, s, hourly, row) }},
		{"aggregate daily+16h, 200 enterprises, InfluxQL", func(row func()) error {
			return s.EachAggregate(ctx, daily, func(*Aggregate) error { row(); return nil })
		}},
		{"aggregate daily+16h, 200 enterprises, Flux", func(row func()) error { return fluxAggregate(ctx, s, daily, row) }},
		{"latest 3 per meter, 200 enterprises, InfluxQL", func(row func()) error {
			return s.EachLatestReading(ctx, latest, func(*Reading) error { row(); return nil })
		}},
		{"latest 3 per meter, 200 enterprises, Flux", func(row func()) error { return fluxLatest(ctx, s, latest, row) }},
		{"aggregate hourly, 200 enterprises, InfluxQL", func(row func()) error {
			q := hourly
			q.Enterprises = nil
			return s.EachAggregate(ctx, q, func(*Aggregate) error { row(); return nil })
		}},
	}
	for _, c := range cases {
		rows, took, peak, alloc, err := measureQuery(c.run)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		t.Logf("%-50s %9d rows %8v  heap +%6.1f MB  allocated %8.1f MB", c.name, rows, took.Round(time.Millisecond), peak, alloc)
	}
}

// measureQuery runs a query and returns its rows, time, peak heap growth
// and bytes allocated (MB).
func measureQuery(run func(row func()) error) (rows int, took time.Duration, peakMB, allocMB float64, err error) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, alloc0 := ms.HeapAlloc, ms.TotalAlloc
	var peak atomic.Uint64
	peak.Store(base)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapAlloc > peak.Load() {
					peak.Store(m.HeapAlloc)
				}
			}
		}
	})
	t0 := time.Now()
	err = run(func() { rows++ })
	took = time.Since(t0)
	close(done)
	wg.Wait()
	runtime.ReadMemStats(&ms)
	return rows, took, float64(peak.Load()-base) / (1 << 20), float64(ms.TotalAlloc-alloc0) / (1 << 20), err
}

// fluxEnterprises returns a Flux predicate on the enterprises (none for
// all).
func fluxEnterprises(ents []string) []string {
	if len(ents) == 0 {
		return nil
	}
	var b strings.Builder
	for i, e := range ents {
		if i > 0 {
			b.WriteString(" or ")
		}
		b.WriteString("r.enterprise == " + fluxString(e))
	}
	return []string{b.String()}
}

// fluxAggregate is the Flux way to the same aggregates: one windowed
// query per aggregate (sum of delta, count, gauge sum and max), records
// streamed by the client's CSV reader.
func fluxAggregate(ctx context.Context, s *Influx, q AggregateQuery, row func()) error {
	base := s.fluxFrom(q.From, q.To, append([]string{fmt.Sprintf("r._measurement == %q", readingMeasurement)}, fluxEnterprises(q.Enterprises)...)...)
	window := fmt.Sprintf("  |> window(every: %dns, offset: %dns)\n", q.Every.Nanoseconds(), q.Offset.Nanoseconds())
	for _, p := range []struct{ filter, fn string }{
		{`r._field == "delta"`, "sum()"},
		{`r._field == "value"`, "count()"},
		{`r._field == "value" and r.kind == "gauge"`, "sum()"},
		{`r._field == "value" and r.kind == "gauge"`, "max()"},
	} {
		res, err := s.query.Query(ctx, base+"  |> filter(fn: (r) => "+p.filter+")\n"+window+"  |> "+p.fn+"\n")
		if err != nil {
			return err
		}
		for res.Next() {
			_ = num(res.Record(), "_value")
			row()
		}
		err = res.Err()
		res.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// fluxLatest is the Flux way to the latest readings per meter.
func fluxLatest(ctx context.Context, s *Influx, q LatestQuery, row func()) error {
	flux := s.fluxFrom(q.Since, time.Now().Add(24*365*time.Hour), append([]string{fmt.Sprintf(`r._measurement == %q and (r._field == "value" or r._field == "delta")`, readingMeasurement)}, fluxEnterprises(q.Enterprises)...)...) +
		fmt.Sprintf(`  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> group(columns: ["enterprise", "meter"])
  |> sort(columns: ["_time"])
  |> tail(n: %d)
`, q.PerMeter)
	res, err := s.query.Query(ctx, flux)
	if err != nil {
		return err
	}
	defer res.Close()
	for res.Next() {
		rec := res.Record()
		_ = Reading{Enterprise: str(rec, "enterprise"), Meter: str(rec, "meter"), Value: num(rec, "value"), Delta: num(rec, "delta")}
		row()
	}
	return res.Err()
}

// TestMeasureAggregatePaths measures what InfluxDB's two ways of
// answering an aggregate cost (GROUP BY time, or the readings summed by
// EachAggregate) against the density of the readings: 20 enterprises ×
// 50 meters × 7 days, read hourly and every five minutes, in hourly
// buckets. It takes a few minutes, so it runs only with
// CLEANPROD_MEASURE_HISTORY=1, and logs the time of each, the cost of a
// GROUP BY time row in raw readings (aggRawPoints), what asking for the
// group's enterprises one at a time saves, and from how many readings an
// enterprise it does (aggPlan.split, aggSplitPoints).
func TestMeasureAggregatePaths(t *testing.T) {
	s := openMeasureStore(t, "2.8 million readings")
	const ents, meters, days = 20, 50, 7
	ctx := context.Background()
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	end := start.Add(days * 24 * time.Hour)
	for _, step := range []time.Duration{time.Hour, 5 * time.Minute} {
		prefix := fmt.Sprintf("%v-", step)
		add, flush := batchWriter(t, s)
		for e := range ents {
			for m := range meters {
				kind := "counter"
				if m >= 40 {
					kind = "gauge"
				}
				reg := 0.0
				for at := start; at.Before(end); at = at.Add(step) {
					r := Reading{Enterprise: fmt.Sprintf("%s%02d", prefix, e), Gateway: "gw", Meter: fmt.Sprintf("M-%02d", m), Kind: kind, Time: at}
					if kind == "gauge" {
						r.Value = float64(at.Minute()%17) + 0.5
					} else {
						r.Delta = float64(at.Hour()%5) + 0.25
						reg += r.Delta
						r.Value = reg
					}
					add(r)
				}
			}
		}
		flush()
		group := make([]string, ents)
		for i := range group {
			group[i] = fmt.Sprintf("%s%02d", prefix, i)
		}
		q := AggregateQuery{From: start, To: end, Every: time.Hour, Enterprises: group}
		took := map[aggPath]time.Duration{}
		for round := range 2 {
			for _, c := range []struct {
				name string
				path aggPath
			}{{"GROUP BY time", aggGrouped}, {"readings summed here", aggRaw}, {"chosen", aggAuto}} {
				c0, s0 := influxdCPU(t), selfCPU()
				rows, d, _, _, err := measureQuery(func(row func()) error {
					return s.eachAggregate(ctx, q, c.path, func(*Aggregate) error { row(); return nil })
				})
				if err != nil {
					t.Fatal(err)
				}
				if round == 1 {
					took[c.path] = d
				}
				t.Logf("readings every %v, %-22s %7d rows %v  influxd %v CPU, this process %v", step, c.name, rows, d.Round(time.Millisecond),
					influxdCPU(t)-c0, (selfCPU() - s0).Round(10*time.Millisecond))
			}
		}
		perBucket := float64(time.Hour / step)
		t.Logf("readings every %v: a GROUP BY time row costs %.1f readings", step,
			perBucket*took[aggGrouped].Seconds()/took[aggRaw].Seconds())
		// The group in one query, grouped by enterprise and meter, against
		// an enterprise at a time, grouped by meter (aggPlan.ents).
		for round := range 2 {
			for _, oneQuery := range []bool{true, false} {
				for _, path := range []aggPath{aggRaw, aggGrouped} {
					p, err := s.planAggregate(ctx, q, path)
					if err != nil {
						t.Fatal(err)
					}
					how := "an enterprise at a time"
					p.split = !oneQuery
					if oneQuery {
						how = "the group in one query"
					}
					sum := s.sumRaw
					if path == aggGrouped {
						sum = s.sumGrouped
					}
					c0 := influxdCPU(t)
					rows, d, _, _, err := measureQuery(func(row func()) error {
						return sum(ctx, p, func(*Aggregate) error { row(); return nil })
					})
					if err != nil {
						t.Fatal(err)
					}
					if round == 1 {
						t.Logf("readings every %v, path %d, %-24s %7d rows %v  influxd %v CPU", step, path, how, rows, d.Round(time.Millisecond), influxdCPU(t)-c0)
					}
				}
			}
		}
		if step == 5*time.Minute {
			measureSplit(t, s, group, end)
		}
	}
}

// measureSplit logs what asking for group's enterprises one at a time
// costs against one query for the group, by how many readings each has in
// the range: 50 meters read every five minutes, ranges from five minutes
// (50 readings an enterprise, as a bucket read again) to a day. The
// crossing is where aggSplitPoints should be.
func measureSplit(t *testing.T, s *Influx, group []string, end time.Time) {
	ctx := context.Background()
	for round := range 2 {
		for _, span := range []time.Duration{5 * time.Minute, 15 * time.Minute, time.Hour, 6 * time.Hour, 24 * time.Hour} {
			for _, split := range []bool{false, true} {
				q := AggregateQuery{From: end.Add(-span), To: end, Every: time.Hour, Enterprises: group}
				c0, s0 := influxdCPU(t), selfCPU()
				t0 := time.Now()
				rows := 0
				for range 5 {
					p, err := s.planAggregate(ctx, q, aggRaw)
					if err != nil {
						t.Fatal(err)
					}
					p.split = split
					if err := s.sumRaw(ctx, p, func(*Aggregate) error { rows++; return nil }); err != nil {
						t.Fatal(err)
					}
				}
				if round == 1 {
					t.Logf("%8v (%5d readings an enterprise) one at a time %-5v %6d rows %8v  influxd %8v CPU, this process %v", span, int(span/(5*time.Minute))*50, split,
						rows, time.Since(t0).Round(time.Millisecond), influxdCPU(t)-c0, (selfCPU() - s0).Round(10*time.Millisecond))
				}
			}
		}
	}
}

// TestMeasureLatestReadings measures what a start's restore costs
// InfluxDB: the latest 4 readings of 10,000 meters (200 enterprises × 50)
// read every five minutes and hourly, as EachLatestReading reads them
// (LIMIT 4, chained counters completed from their hour's first reading),
// against asking for 15 per meter so that most chains need no second
// query. It runs only with CLEANPROD_MEASURE_HISTORY=1 and logs wall time
// and influxd CPU for each.
func TestMeasureLatestReadings(t *testing.T) {
	s := openMeasureStore(t, "3.1 million readings")
	const ents, meters = 200, 50
	ctx := context.Background()
	// 23 minutes past the hour: a five-minute counter's last 4 readings
	// are all chained to the hour's first.
	end := time.Now().UTC().Truncate(time.Hour).Add(-7 * time.Hour).Add(23 * time.Minute)
	for _, step := range []time.Duration{5 * time.Minute, time.Hour} {
		prefix := fmt.Sprintf("%v-", step)
		add, flush := batchWriter(t, s)
		for e := range ents {
			for m := range meters {
				kind := "counter"
				switch {
				case m >= 45:
					kind = "gauge"
				case m >= 40:
					kind = "delta"
				}
				var prev Reading
				for at := end.Add(-48 * time.Hour); at.Before(end); at = at.Add(step) {
					r := Reading{Enterprise: fmt.Sprintf("%se%03d", prefix, e), Gateway: "gw", Meter: fmt.Sprintf("M-%02d", m), Kind: kind, Time: at, Value: 1.5, Delta: 0.25}
					if kind == "counter" {
						r.Value = prev.Value + r.Delta
						r.Chained = !prev.Time.IsZero() && Chains(prev.Time.UnixNano(), prev.Value, at.UnixNano(), r.Value, r.Delta)
						prev = r
					}
					add(r)
				}
			}
		}
		flush()
		group := make([]string, ents)
		for i := range group {
			group[i] = fmt.Sprintf("%se%03d", prefix, i)
		}
		since := end.Add(-30 * 24 * time.Hour)
		for range 2 {
			for _, c := range []struct {
				name string
				run  func(row func()) error
			}{
				{"EachLatestReading, 4", func(row func()) error {
					return s.EachLatestReading(ctx, LatestQuery{Since: since, PerMeter: 4, Enterprises: group}, func(*Reading) error { row(); return nil })
				}},
				{"LIMIT 15 alone", func(row func()) error {
					stmt := fmt.Sprintf(`SELECT "register", "delta", "value", "flag"::field FROM %s WHERE time >= %d%s GROUP BY "enterprise", "meter" ORDER BY time DESC LIMIT 15`,
						influxIdent(readingMeasurement), since.UnixNano(), enterpriseCond(group))
					return s.influxQL(ctx, stmt, func(*influxSeries, []json.RawMessage) error { row(); return nil })
				}},
			} {
				c0 := influxdCPU(t)
				rows, took, _, _, err := measureQuery(c.run)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("every %v, %-22s %6d rows %7v  influxd %v CPU", step, c.name, rows, took.Round(time.Millisecond), influxdCPU(t)-c0)
			}
		}
	}
}

// openMeasureStore skips t unless CLEANPROD_MEASURE_HISTORY is set (the
// measurement writes what), and opens a fresh InfluxDB database for it
// with a client timeout long enough for any of its queries.
func openMeasureStore(t *testing.T, what string) *Influx {
	t.Helper()
	if os.Getenv("CLEANPROD_MEASURE_HISTORY") == "" {
		t.Skipf("set CLEANPROD_MEASURE_HISTORY=1 to measure (writes %s)", what)
	}
	db := testenv.Influx(t)
	s, err := OpenInflux(InfluxConfig{URL: db.URL, Token: db.Token, Org: db.Org, Bucket: db.Bucket, GZip: true, Timeout: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// batchWriter returns add, which writes readings to s 10,000 at a time,
// and flush, which writes the rest.
func batchWriter(t *testing.T, s *Influx) (add func(Reading), flush func()) {
	var rs []Reading
	flush = func() {
		if err := s.WriteReadings(context.Background(), rs); err != nil {
			t.Fatal(err)
		}
		rs = rs[:0]
	}
	add = func(r Reading) {
		if rs = append(rs, r); len(rs) == 10000 {
			flush()
		}
	}
	return add, flush
}

// selfCPU returns the CPU time of this process.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// influxdCPU returns the CPU time of every influxd process of the machine
// (the tests' own, when nothing else runs one).
func influxdCPU(t *testing.T) time.Duration {
	out, err := exec.Command("pgrep", "-x", "influxd").Output()
	if err != nil {
		t.Fatalf("pgrep influxd: %v", err)
	}
	var total time.Duration
	for _, pid := range strings.Fields(string(out)) {
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			continue
		}
		// After the name: utime and stime are fields 14 and 15.
		f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(u+st) * 10 * time.Millisecond
	}
	return total
}
