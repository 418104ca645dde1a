package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"

	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/store"
)

// TestMeasureLayoutCost measures what InfluxDB spends per stored reading
// in four point layouts, each written to a fresh database in batches of
// 5,000 by two writers: a plain (enterprise, meter) series with one value
// (the floor); cleanprod's layout (store.AppendReadingLine: two thirds
// counters read every five minutes, with register and delta on the first
// reading of each hour and delta alone on the others, one third gauges
// with value); the same with every counter reading's register (the layout
// before registers were chained); and the layout before that (six tags:
// gateway, kind, quantity and workshop beside enterprise and meter; value
// and delta). It prints influxd's CPU seconds per million readings for
// each, twice, and for cleanprod's two how long reading back the latest 4
// readings of every meter takes (what a start restores). It asserts
// nothing: figures go to BENCHMARKS.md. Run with
// CLEANPROD_MEASURE_LAYOUT=1 (about two minutes).
func TestMeasureLayoutCost(t *testing.T) {
	if os.Getenv("CLEANPROD_MEASURE_LAYOUT") == "" {
		t.Skip("a measurement, not a check: set CLEANPROD_MEASURE_LAYOUT=1")
	}
	const meters, times = 20000, 50
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	reading := func(k, i int) store.Reading {
		e, m := k/50, k%50
		r := store.Reading{Enterprise: fmt.Sprintf("E%04d", e), Gateway: fmt.Sprintf("gw-E%04d-1", e), Meter: fmt.Sprintf("E%04d-M%03d", e, m),
			Quantity: "electricity", Workshop: "paint", Kind: "counter", Time: base.Add(time.Duration(i) * 5 * time.Minute),
			Value: 1000 + float64(i)*0.37 + float64(k), Delta: 0.25 + float64(i%7)}
		if m%3 == 2 {
			r.Kind, r.Quantity, r.Delta = "gauge", "cod", 0
		}
		return r
	}
	layouts := map[string]func(b []byte, r *store.Reading) []byte{
		"plain (enterprise, meter) value": func(b []byte, r *store.Reading) []byte {
			b = fmt.Appendf(b, "reading,enterprise=%s,meter=%s value=%s %d\n", r.Enterprise, r.Meter, strconv.FormatFloat(r.Value, 'g', -1, 64), r.Time.UnixNano())
			return b
		},
		"cleanprod": store.AppendReadingLine,
		"cleanprod, every counter reading with its register": func(b []byte, r *store.Reading) []byte {
			r.Chained = false
			return store.AppendReadingLine(b, r)
		},
		"six tags, value and delta (before)": func(b []byte, r *store.Reading) []byte {
			b = fmt.Appendf(b, "reading,enterprise=%s,gateway=%s,kind=%s,meter=%s,quantity=%s,workshop=%s value=%s", r.Enterprise, r.Gateway, r.Kind, r.Meter, r.Quantity, r.Workshop,
				strconv.FormatFloat(r.Value, 'g', -1, 64))
			if r.Kind != "gauge" {
				b = fmt.Appendf(b, ",delta=%s", strconv.FormatFloat(r.Delta, 'g', -1, 64))
			}
			return fmt.Appendf(b, " %d\n", r.Time.UnixNano())
		},
	}
	order := []string{"plain (enterprise, meter) value", "cleanprod", "cleanprod, every counter reading with its register", "six tags, value and delta (before)"}
	for round := range 2 {
		for _, name := range order {
			var batches []string
			var buf []byte
			for i := range times {
				for k := range meters {
					r := reading(k, i)
					// As the normaliser marks them: a counter's register
					// is kept on the first reading of each hour (every
					// twelfth at five minutes) and rebuilt for the rest.
					r.Chained = r.Kind == "counter" && r.Time.Minute() != 0
					buf = layouts[name](buf, &r)
					if (i*meters+k+1)%5000 == 0 {
						batches = append(batches, string(buf))
						buf = buf[:0]
					}
				}
			}
			db := testenv.Influx(t)
			client := influxdb2.NewClientWithOptions(db.URL, db.Token, influxdb2.DefaultOptions().SetPrecision(time.Nanosecond).SetHTTPRequestTimeout(120).SetLogLevel(0))
			w := client.WriteAPIBlocking(db.Org, db.Bucket)
			c0, err := childrenCPU("influxd")
			if err != nil {
				t.Fatal(err)
			}
			next := make(chan string)
			errs := make(chan error, 2)
			for range 2 {
				go func() {
					for b := range next {
						if err := w.WriteRecord(context.Background(), b); err != nil {
							errs <- err
							for range next {
							}
							return
						}
					}
					errs <- nil
				}()
			}
			for _, b := range batches {
				next <- b
			}
			close(next)
			for range 2 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			c1, err := childrenCPU("influxd")
			if err != nil {
				t.Fatal(err)
			}
			client.Close()
			n := meters * times
			count := db.CountReadings
			ours := strings.HasPrefix(name, "cleanprod")
			if !ours { // every reading has a value field
				count = func(string) (int, error) { return countInfluxValues(db) }
			}
			if got, err := count(""); err != nil || got != n {
				t.Fatalf("%s: %d readings stored (%v), want %d", name, got, err, n)
			}
			restore := ""
			if ours {
				// What a start costs: the latest 4 readings of every meter,
				// as ingest restores them (chained counters completed from
				// their hour's first reading).
				st, err := store.OpenInflux(store.InfluxConfig{URL: db.URL, Token: db.Token, Bucket: db.Bucket, Timeout: 5 * time.Minute})
				if err != nil {
					t.Fatal(err)
				}
				t0 := time.Now()
				rows := 0
				if err := st.EachLatestReading(context.Background(), store.LatestQuery{PerMeter: 4}, func(*store.Reading) error { rows++; return nil }); err != nil {
					t.Fatal(err)
				}
				restore = fmt.Sprintf("; latest 4 per meter: %d readings in %v", rows, time.Since(t0).Round(time.Millisecond))
				st.Close()
			}
			t.Logf("round %d, %s: influxd %.2f CPU-s per million readings%s", round+1, name, (c1-c0).Seconds()/float64(n)*1e6, restore)
		}
	}
}

func countInfluxValues(db *testenv.InfluxDB) (int, error) {
	rows, err := db.Query(`SELECT count("value") FROM "reading"`)
	if err != nil || len(rows) != 1 || len(rows[0]) != 2 {
		return 0, fmt.Errorf("count values: %v %v", rows, err)
	}
	n, _ := rows[0][1].(float64)
	return int(n), nil
}
