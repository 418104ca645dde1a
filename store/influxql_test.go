package store

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDecodeChunks(t *testing.T) {
	const series = `{"name":"reading","tags":{"enterprise":"e","meter":"m"},"columns":["time","v"],"values":[[1,2.5],[2,null]]`
	tests := []struct {
		name    string
		body    string
		rows    int
		wantErr string // substring; "" for none
	}{
		{"one chunk", `{"results":[{"statement_id":0,"series":[` + series + `}]}]}`, 2, ""},
		{"series split over chunks", `{"results":[{"statement_id":0,"series":[` + series + `,"partial":true}],"partial":true}]}` + "\n" +
			`{"results":[{"statement_id":0,"series":[` + series + `}]}]}` + "\n", 4, ""},
		{"no series", `{"results":[{"statement_id":0}]}`, 0, ""},
		{"unknown members are skipped", `{"results":[{"statement_id":0,"messages":[{"level":"warning","text":"x"}],"series":[{"x":{"y":[1]},"columns":["a"],"values":[[1]]}]}],"z":1}`, 1, ""},
		{"ended after a partial chunk", `{"results":[{"statement_id":0,"series":[` + series + `,"partial":true}],"partial":true}]}`, 2, "ended early"},
		{"empty answer", ``, 0, "ended early"},
		{"cut inside a chunk", `{"results":[{"statement_id":0,"series":[` + series[:len(series)-8], 1, "unexpected EOF"},
		{"error of the query", `{"error":"database not found: x"}`, 0, "database not found"},
		{"error of a statement", `{"results":[{"statement_id":0,"error":"max-select-point limit exceeded"}]}`, 0, "max-select-point"},
		{"error in a later chunk", `{"results":[{"statement_id":0,"series":[` + series + `}],"partial":true}]}{"results":[{"statement_id":0,"error":"timeout"}]}`, 2, "timeout"},
		{"not json", `<html>`, 0, "invalid character"},
		{"not an object", `[1,2]`, 0, "want {"},
		{"results not an array", `{"results":{}}`, 0, "want ["},
		{"values before columns", `{"results":[{"series":[{"values":[[1]]}]}]}`, 0, "values before columns"},
		{"row too short", `{"results":[{"series":[{"columns":["a","b"],"values":[[1]]}]}]}`, 0, "row of 1 values for 2 columns"},
		{"row not an array", `{"results":[{"series":[{"columns":["a"],"values":[7]}]}]}`, 0, "want an array"},
		{"values not an array", `{"results":[{"series":[{"columns":["a"],"values":{"a":[1]}}]}]}`, 0, "want an array"},
		{"nested value", `{"results":[{"series":[{"columns":["a","b"],"values":[[1,[2]]]}]}]}`, 0, "want scalar values"},
		{"second row not an array", `{"results":[{"series":[{"columns":["a"],"values":[[1],2]}]}]}`, 1, "want an array"},
		{"rows with spaces, strings and escapes", "{\"results\":[{\"series\":[{\"columns\":[\"a\",\"b\"],\"values\": [ [1 , \"x,]\\\"y\"] ,\n[null,true] ] }]}]}", 2, ""},
		{"empty row", `{"results":[{"series":[{"columns":["a"],"values":[[]]}]}]}`, 0, "row of 0 values for 1 columns"},
		{"no rows", `{"results":[{"series":[{"columns":["a"],"values":[]}]}]}`, 0, ""},
		{"tag not a string", `{"results":[{"series":[{"tags":{"a":1},"columns":["a"],"values":[[1]]}]}]}`, 0, "want a string"},
		{"column not a string", `{"results":[{"series":[{"columns":[1],"values":[[1]]}]}]}`, 0, "want a string"},
		{"partial not a bool", `{"results":[{"partial":"yes"}]}`, 0, "want true or false"},
		{"error not a string", `{"error":{"a":1}}`, 0, "want a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows := 0
			err := decodeChunks(strings.NewReader(tt.body), func(*influxSeries, []json.RawMessage) error {
				rows++
				return nil
			})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got %v, want an error with %q", err, tt.wantErr)
			}
			if tt.wantErr == "" && rows != tt.rows {
				t.Errorf("got %d rows, want %d", rows, tt.rows)
			}
		})
	}
}

// FuzzDecodeChunks: no input makes the decoder or the row parsers panic.
func FuzzDecodeChunks(f *testing.F) {
	f.Add(`{"results":[{"statement_id":0,"series":[{"name":"reading","tags":{"enterprise":"e","meter":"m","kind":"gauge"},"columns":["time","delta_sum","value_sum","n","value_max"],"values":[[1,2.5,null,1,3]]}]}]}`)
	f.Add(`{"results":[{"series":[{"tags":{"enterprise":"e","meter":"m"},"columns":["time","value","delta","gateway","kind","quantity","workshop"],"values":[[1,2,null,"g\u00e9",null,"q","w"]]}]}]}`)
	f.Add(`{"results":[{"partial":true}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		_ = decodeChunks(strings.NewReader(body), func(s *influxSeries, row []json.RawMessage) error {
			if c, err := newAggColumns(s.columns); err == nil {
				_, _ = rawInt(row[c.time])
				_, _ = rawFloat(row[c.n])
			}
			for _, v := range row {
				_, _ = rawString(v)
			}
			return nil
		})
	})
}

// rawChunk writes one chunk of n readings of meter m to w, an hour apart.
func rawChunk(w io.Writer, m, n int, last bool) {
	fmt.Fprintf(w, `{"results":[{"statement_id":0,"series":[{"name":"reading","tags":{"enterprise":"ent-%03d","meter":"M-%d"},"columns":["time","delta","value"],"values":[`, m/50, m)
	for i := range n {
		if i > 0 {
			io.WriteString(w, ",")
		}
		fmt.Fprintf(w, "[%d,%d.5,null]", int64(1.7e18)+int64(i)*int64(time.Hour), i%100)
	}
	if last {
		io.WriteString(w, "]}]}]}\n")
	} else {
		io.WriteString(w, `],"partial":true}],"partial":true}]}`+"\n")
	}
}

// aggChunk writes one chunk of n aggregate rows of meter m to w.
func aggChunk(w io.Writer, m, n int, last bool) {
	fmt.Fprintf(w, `{"results":[{"statement_id":0,"series":[{"name":"reading","tags":{"enterprise":"ent-%03d","kind":"counter","meter":"M-%d","quantity":"electricity","workshop":"paint"},"columns":["time","delta_sum","value_sum","n","value_max"],"values":[`, m/50, m)
	for i := range n {
		if i > 0 {
			io.WriteString(w, ",")
		}
		fmt.Fprintf(w, "[%d,%d.5,%d,6,%d]", int64(1.7e18)+int64(i)*int64(time.Hour), i%100, i, i)
	}
	if last {
		io.WriteString(w, "]}]}]}\n")
	} else {
		io.WriteString(w, `],"partial":true}],"partial":true}]}`+"\n")
	}
}

// fakeQueryServer answers /query with body, which writes the chunks.
func fakeQueryServer(t testing.TB, body func(w *bufio.Writer, flush func())) *Influx {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/query" || r.FormValue("chunked") != "true" || r.FormValue("epoch") != "ns" || r.FormValue("db") != "telemetry" {
			http.Error(w, "unexpected request "+r.URL.String(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(r.FormValue("q"), `sum("value")`) {
			// The aggregates' second statement, for gauges: none here.
			w.Write([]byte(`{"results":[{"statement_id":0}]}` + "\n"))
			return
		}
		bw := bufio.NewWriter(w)
		body(bw, func() { bw.Flush(); w.(http.Flusher).Flush() })
		bw.Flush()
	}))
	t.Cleanup(srv.Close)
	s, err := OpenInflux(InfluxConfig{URL: srv.URL, Token: "u:p", Bucket: "telemetry/autogen", Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// An aggregate of 2 million rows (some 170 MB of JSON, 250 MB as a
// slice of Aggregate) streams through a heap that stays within a few
// megabytes, by either path: rows the server summed, or readings summed
// here.
func TestInfluxEachAggregateBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 170 MB")
	}
	const meters, perMeter = 1000, 2000
	for _, p := range aggPaths {
		t.Run(p.name, func(t *testing.T) {
			s := fakeQueryServer(t, func(w *bufio.Writer, flush func()) {
				for m := range meters {
					p.chunk(w, m, perMeter, m == meters-1)
					flush()
				}
			})
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			base, peak := ms.HeapAlloc, ms.HeapAlloc
			rows := 0
			err := s.eachAggregate(context.Background(), AggregateQuery{From: time.Unix(0, 0), To: time.Unix(2e9, 0), Every: time.Hour}, p.path, func(a *Aggregate) error {
				if rows++; rows%50_000 == 0 {
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapAlloc)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if rows != meters*perMeter {
				t.Fatalf("got %d rows, want %d", rows, meters*perMeter)
			}
			grew := float64(peak-base) / (1 << 20)
			t.Logf("%d rows, heap grew by at most %.1f MB", rows, grew)
			if grew > 32 {
				t.Errorf("heap grew by %.1f MB while streaming, want < 32 MB (bounded by a chunk, not the result)", grew)
			}
		})
	}
}

// aggPaths are the two ways EachAggregate can ask InfluxDB, with a writer
// of answer chunks for each.
var aggPaths = []struct {
	name  string
	path  aggPath
	chunk func(w io.Writer, m, n int, last bool)
}{
	{"GROUP BY time", aggGrouped, aggChunk},
	{"readings summed here", aggRaw, rawChunk},
}

func BenchmarkInfluxEachAggregateDecode(b *testing.B) {
	const meters, perMeter = 10, 10000
	s := fakeQueryServer(b, func(w *bufio.Writer, flush func()) {
		for m := range meters {
			aggChunk(w, m, perMeter, m == meters-1)
		}
	})
	ctx := context.Background()
	q := AggregateQuery{From: time.Unix(0, 0), To: time.Unix(2e9, 0), Every: time.Hour}
	b.ReportAllocs()
	rows := 0
	for b.Loop() {
		if err := s.eachAggregate(ctx, q, aggGrouped, func(*Aggregate) error { rows++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rows), "ns/row")
}

func TestInfluxStreamFailures(t *testing.T) {
	q := AggregateQuery{From: time.Unix(0, 0), To: time.Unix(2e9, 0), Every: time.Hour}
	stop := errors.New("stop here")
	for _, p := range aggPaths {
		// row writes one answer holding a single row of value v at time at.
		row := func(w *bufio.Writer, at, v string) {
			if p.path == aggRaw {
				fmt.Fprintf(w, `{"results":[{"series":[{"tags":{"enterprise":"e","meter":"m"},"columns":["time","delta","value"],"values":[[%s,%s,null]]}]}]}`, at, v)
				return
			}
			fmt.Fprintf(w, `{"results":[{"series":[{"tags":{"enterprise":"e","meter":"m"},"columns":["time","delta_sum","value_sum","n","value_max"],"values":[[%s,%s,null,1,null]]}]}]}`, at, v)
		}
		tests := []struct {
			name    string
			body    func(w *bufio.Writer, flush func())
			ctx     time.Duration // deadline; 0: none
			fnErr   error
			wantIs  error
			wantSub string
		}{
			{name: "connection cut after a chunk", body: func(w *bufio.Writer, flush func()) {
				p.chunk(w, 0, 10, false)
				flush()
				panic(http.ErrAbortHandler) // the server drops the connection
			}, wantSub: "unexpected EOF"},
			{name: "answer ends after a partial chunk", body: func(w *bufio.Writer, flush func()) {
				p.chunk(w, 0, 10, false)
			}, wantIs: ErrIncomplete},
			{name: "deadline mid-stream", body: func(w *bufio.Writer, flush func()) {
				p.chunk(w, 0, 10, false)
				flush()
				time.Sleep(time.Second)
				p.chunk(w, 1, 10, true)
			}, ctx: 300 * time.Millisecond, wantIs: context.DeadlineExceeded},
			{name: "callback error", body: func(w *bufio.Writer, flush func()) {
				p.chunk(w, 0, 10, true)
			}, fnErr: stop, wantIs: stop},
			{name: "server error mid-stream", body: func(w *bufio.Writer, flush func()) {
				p.chunk(w, 0, 10, false)
				w.WriteString(`{"results":[{"statement_id":0,"error":"query interrupted"}]}`)
			}, wantSub: "query interrupted"},
			{name: "bad number", body: func(w *bufio.Writer, flush func()) {
				row(w, "1", `"x"`)
			}, wantSub: "want a number"},
			{name: "float time", body: func(w *bufio.Writer, flush func()) {
				row(w, "1.5", "1")
			}, wantSub: "integer nanoseconds"},
		}
		for _, tt := range tests {
			t.Run(p.name+"/"+tt.name, func(t *testing.T) {
				s := fakeQueryServer(t, tt.body)
				ctx := context.Background()
				if tt.ctx > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.ctx)
					defer cancel()
				}
				rows := 0
				err := s.eachAggregate(ctx, q, p.path, func(*Aggregate) error {
					rows++
					return tt.fnErr
				})
				if err == nil {
					t.Fatalf("got nil error after %d rows, want one", rows)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("got %v, want errors.Is %v", err, tt.wantIs)
				}
				if tt.wantSub != "" && !strings.Contains(err.Error(), tt.wantSub) {
					t.Errorf("got %v, want it to say %q", err, tt.wantSub)
				}
			})
		}
	}
	t.Run("HTTP error", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"authorization failed"}`)
		}))
		defer srv.Close()
		s, _ := OpenInflux(InfluxConfig{URL: srv.URL, Bucket: "telemetry/autogen"})
		defer s.Close()
		err := s.EachLatestReading(context.Background(), LatestQuery{PerMeter: 1}, func(*Reading) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "authorization failed") {
			t.Errorf("got %v, want the server's 401 message", err)
		}
	})
}

// EachAggregate asks InfluxDB for the readings themselves where buckets
// hold a few (a row of GROUP BY time costs the server about what four or
// five readings do) and has the server sum them where buckets hold many;
// either way the answer is the same.
func TestInfluxAggregatePath(t *testing.T) {
	s, _ := openTestInflux(t)
	ctx := context.Background()
	day := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	var rs []Reading
	for _, e := range []struct {
		name string
		step time.Duration
	}{{"sparse", time.Hour}, {"quarter", 15 * time.Minute}, {"dense", 5 * time.Minute}} {
		reg := 0.0
		for at := day; at.Before(day.Add(48 * time.Hour)); at = at.Add(e.step) {
			reg += 2
			rs = append(rs,
				Reading{Enterprise: e.name, Gateway: "gw", Meter: "C", Kind: "counter", Time: at, Value: reg, Delta: 2},
				Reading{Enterprise: e.name, Gateway: "gw", Meter: "D", Kind: "delta", Time: at, Value: 3, Delta: 3},
				Reading{Enterprise: e.name, Gateway: "gw", Meter: "G", Kind: "gauge", Time: at, Value: 5})
		}
	}
	if err := s.WriteReadings(ctx, rs); err != nil {
		t.Fatal(err)
	}
	hourly := func(ents ...string) AggregateQuery {
		return AggregateQuery{From: day, To: day.Add(48 * time.Hour), Every: time.Hour, Enterprises: ents}
	}
	daily := AggregateQuery{From: day, To: day.Add(48 * time.Hour), Every: 24 * time.Hour, Offset: 16 * time.Hour, Enterprises: []string{"sparse"}}
	before := hourly("sparse")
	before.From, before.To = day.Add(-48*time.Hour), day
	tests := []struct {
		name  string
		q     AggregateQuery
		want  aggPath
		rows  int
		split bool // the enterprises asked for one at a time
	}{
		{"one reading a bucket", hourly("sparse"), aggRaw, 3 * 48, false},
		{"four a bucket", hourly("quarter"), aggRaw, 3 * 48, false},
		{"twelve a bucket: 1,728 readings", hourly("dense"), aggGrouped, 3 * 48, true},
		{"24 a bucket", daily, aggGrouped, 3 * 3, false},
		{"one and twelve: 1,872 readings in at most 288 rows, 936 an enterprise", hourly("sparse", "dense"), aggGrouped, 2 * 3 * 48, false},
		{"four and twelve: 2,304 readings, 1,152 an enterprise", hourly("quarter", "dense"), aggGrouped, 2 * 3 * 48, true},
		{"nothing", before, aggAuto, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := s.planAggregate(ctx, tt.q, aggAuto)
			if err != nil {
				t.Fatal(err)
			}
			if p.path != tt.want || p.split != tt.split {
				t.Errorf("path %d, one at a time %t; want %d, %t", p.path, p.split, tt.want, tt.split)
			}
			got, err := collectAggregates(ctx, s, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.rows {
				t.Errorf("%d rows, want %d", len(got), tt.rows)
			}
			for _, path := range []aggPath{aggRaw, aggGrouped} {
				other, err := collectAggregates(ctx, influxAggPath{s, path}, tt.q)
				if err != nil {
					t.Fatal(err)
				}
				if a, b := sortedAggregates(got), sortedAggregates(other); !slices.EqualFunc(a, b, aggEqual) {
					t.Errorf("path %d differs:\n%s", path, diffAggregates(a, b))
				}
			}
		})
	}
	// By hand: a sparse hour holds one reading of each meter.
	got, err := collectAggregates(ctx, s, hourly("sparse"))
	if err != nil || len(got) != 3*48 {
		t.Fatalf("sparse hours: %d rows (%v), want %d", len(got), err, 3*48)
	}
	for _, a := range got {
		want := Aggregate{Enterprise: "sparse", Meter: a.Meter, Start: a.Start, Count: 1}
		switch a.Meter {
		case "C":
			want.Sum = 2
		case "D":
			want.Sum = 3
		case "G":
			want.ValueSum, want.Max = 5, 5
		}
		if !aggEqual(a, want) {
			t.Errorf("got %+v, want %+v", a, want)
		}
	}
}

// eachRow splits a chunk's values as the JSON decoder would.
func TestEachRow(t *testing.T) {
	raw := json.RawMessage(" [ [1 , \"x,]\\\"y\" ,-2.5e-3],\n[null,true,\"\"] ,[false, \"\\\\\",0]] ")
	var got [][]string
	var vals []json.RawMessage
	err := eachRow(raw, &vals, func(v []json.RawMessage) error {
		var row []string
		for _, e := range v {
			row = append(row, string(e))
		}
		got = append(got, row)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var want [][]json.RawMessage
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d rows %q, want %d", len(got), got, len(want))
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("row %d: got %q, want %q", i, got[i], want[i])
		}
		for j := range want[i] {
			if got[i][j] != string(want[i][j]) {
				t.Errorf("row %d value %d: got %s, want %s", i, j, got[i][j], want[i][j])
			}
		}
	}
}

// FuzzEachRow: on any valid JSON, eachRow splits rows of scalars as the
// JSON decoder does, and refuses anything else without panicking.
func FuzzEachRow(f *testing.F) {
	f.Add(`[[1,"a"],[null,true]]`)
	f.Add(` [ [ "x,]\"y" , -2.5e-3 ] ] `)
	f.Add(`[[1,[2]]]`)
	f.Add(`{"a":1}`)
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) {
			return
		}
		var got [][]string
		var vals []json.RawMessage
		err := eachRow(json.RawMessage(s), &vals, func(v []json.RawMessage) error {
			row := []string{}
			for _, e := range v {
				row = append(row, string(e))
			}
			got = append(got, row)
			return nil
		})
		var want [][]json.RawMessage
		if json.Unmarshal([]byte(s), &want) != nil {
			if err == nil {
				t.Fatalf("%q: split into %q, want an error (not an array of arrays)", s, got)
			}
			return
		}
		if want == nil || slices.ContainsFunc(want, func(r []json.RawMessage) bool { return r == nil }) { // null, not an array
			if err == nil {
				t.Fatalf("%q: split into %q, want an error for null", s, got)
			}
			return
		}
		for _, row := range want {
			for _, e := range row {
				if e[0] == '[' || e[0] == '{' {
					if err == nil {
						t.Fatalf("%q: split, want an error for a nested value", s)
					}
					return
				}
			}
		}
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d rows, want %d", s, len(got), len(want))
		}
		for i := range want {
			if len(got[i]) != len(want[i]) {
				t.Fatalf("%q row %d: %q, want %q", s, i, got[i], want[i])
			}
			for j := range want[i] {
				if got[i][j] != string(want[i][j]) {
					t.Fatalf("%q row %d: %q, want %q", s, i, got[i], want[i])
				}
			}
		}
	})
}
