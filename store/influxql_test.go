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
		{"row not an array", `{"results":[{"series":[{"columns":["a"],"values":[7]}]}]}`, 0, "cannot unmarshal"},
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
// megabytes.
func TestInfluxEachAggregateBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 170 MB")
	}
	const meters, perMeter = 1000, 2000
	s := fakeQueryServer(t, func(w *bufio.Writer, flush func()) {
		for m := range meters {
			aggChunk(w, m, perMeter, m == meters-1)
			flush()
		}
	})
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	rows := 0
	err := s.EachAggregate(context.Background(), AggregateQuery{From: time.Unix(0, 0), To: time.Unix(2e9, 0), Every: time.Hour}, func(a *Aggregate) error {
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
		if err := s.EachAggregate(ctx, q, func(*Aggregate) error { rows++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rows), "ns/row")
}

func TestInfluxStreamFailures(t *testing.T) {
	q := AggregateQuery{From: time.Unix(0, 0), To: time.Unix(2e9, 0), Every: time.Hour}
	stop := errors.New("stop here")
	tests := []struct {
		name    string
		body    func(w *bufio.Writer, flush func())
		ctx     time.Duration // deadline; 0: none
		fnErr   error
		wantIs  error
		wantSub string
	}{
		{name: "connection cut after a chunk", body: func(w *bufio.Writer, flush func()) {
			aggChunk(w, 0, 10, false)
			flush()
			panic(http.ErrAbortHandler) // the server drops the connection
		}, wantSub: "unexpected EOF"},
		{name: "answer ends after a partial chunk", body: func(w *bufio.Writer, flush func()) {
			aggChunk(w, 0, 10, false)
		}, wantIs: ErrIncomplete},
		{name: "deadline mid-stream", body: func(w *bufio.Writer, flush func()) {
			aggChunk(w, 0, 10, false)
			flush()
			time.Sleep(time.Second)
			aggChunk(w, 1, 10, true)
		}, ctx: 300 * time.Millisecond, wantIs: context.DeadlineExceeded},
		{name: "callback error", body: func(w *bufio.Writer, flush func()) {
			aggChunk(w, 0, 10, true)
		}, fnErr: stop, wantIs: stop},
		{name: "server error mid-stream", body: func(w *bufio.Writer, flush func()) {
			aggChunk(w, 0, 10, false)
			w.WriteString(`{"results":[{"statement_id":0,"error":"query interrupted"}]}`)
		}, wantSub: "query interrupted"},
		{name: "bad number", body: func(w *bufio.Writer, flush func()) {
			w.WriteString(`{"results":[{"series":[{"tags":{"enterprise":"e","meter":"m"},"columns":["time","delta_sum","value_sum","n","value_max"],"values":[[1,"x",null,1,null]]}]}]}`)
		}, wantSub: "want a number"},
		{name: "float time", body: func(w *bufio.Writer, flush func()) {
			w.WriteString(`{"results":[{"series":[{"tags":{"enterprise":"e","meter":"m"},"columns":["time","delta_sum","value_sum","n","value_max"],"values":[[1.5,1,null,1,null]]}]}]}`)
		}, wantSub: "integer nanoseconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fakeQueryServer(t, tt.body)
			ctx := context.Background()
			if tt.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctx)
				defer cancel()
			}
			rows := 0
			err := s.EachAggregate(ctx, q, func(*Aggregate) error {
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
