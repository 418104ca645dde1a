package store

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/influxdata/influxdb-client-go/v2/api/write"
)

// lineBatch returns a batch of n readings as ingest hands them to the
// store: 50 meters of one enterprise, one in five a gauge (no delta field),
// the others counters, interleaved by time.
func lineBatch(n int) []Reading {
	rs := benchBatch(n)
	for i := range rs {
		rs[i].Value = 182734.5 + float64(i)*0.125
		rs[i].Delta = 0.125
		if i%5 == 0 {
			rs[i].Kind, rs[i].Quantity, rs[i].Workshop = "gauge", "cod", "wwtp-outlet"
			rs[i].Value, rs[i].Delta = 41.37, 0
		}
	}
	return rs
}

// BenchmarkAppendReadingLine measures building the line protocol of a
// write (store.Influx.WriteReadings) from a batch of 5000 readings:
// AppendReadingLine into a reused buffer ("append"), and for comparison
// the client library's points ("client_point": write.NewPoint and
// PointToLineProtocolBuffer, as WritePoint would).
func BenchmarkAppendReadingLine(b *testing.B) {
	const batch = 5000
	rs := lineBatch(batch)
	b.Run("append", func(b *testing.B) {
		buf := make([]byte, 0, batch*160)
		b.ReportAllocs()
		for b.Loop() {
			buf = buf[:0]
			for i := range rs {
				buf = AppendReadingLine(buf, &rs[i])
			}
		}
		b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "readings/s")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/reading")
		b.ReportMetric(float64(len(buf))/batch, "B/reading")
	})
	b.Run("client_point", func(b *testing.B) {
		var sb strings.Builder
		b.ReportAllocs()
		for b.Loop() {
			sb.Reset()
			for i := range rs {
				r := &rs[i]
				tags := map[string]string{"enterprise": r.Enterprise, "meter": r.Meter}
				fields := map[string]any{"value": r.Value}
				switch r.Kind {
				case "counter":
					fields = map[string]any{"register": r.Value, "delta": r.Delta}
				case "delta":
					fields = map[string]any{"delta": r.Delta}
				}
				write.PointToLineProtocolBuffer(write.NewPoint(readingMeasurement, tags, fields, r.Time), &sb, time.Nanosecond)
			}
		}
		b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "readings/s")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/reading")
		b.ReportMetric(float64(sb.Len())/batch, "B/reading")
	})
}

// TestAppendReadingLineMatchesClient checks that the benchmark compares
// like with like: both ways give the same points.
func TestAppendReadingLineMatchesClient(t *testing.T) {
	for i, r := range lineBatch(10) {
		got := strings.TrimSuffix(string(AppendReadingLine(nil, &r)), "\n")
		tags := map[string]string{"enterprise": r.Enterprise, "meter": r.Meter}
		fields := map[string]any{"value": r.Value}
		switch r.Kind {
		case "counter":
			fields = map[string]any{"register": r.Value, "delta": r.Delta}
		case "delta":
			fields = map[string]any{"delta": r.Delta}
		}
		want := strings.TrimSuffix(write.PointToLineProtocol(write.NewPoint(readingMeasurement, tags, fields, r.Time), time.Nanosecond), "\n")
		if canonicalLine(got) != canonicalLine(want) {
			t.Errorf("reading %d: got %q, want (up to field order) %q", i, got, want)
		}
	}
}

// canonicalLine sorts the fields of a line protocol line, which the
// client writes in its own order.
func canonicalLine(line string) string {
	parts := strings.SplitN(line, " ", 3)
	if len(parts) != 3 {
		return line
	}
	fields := strings.Split(parts[1], ",")
	for i := 1; i < len(fields); i++ {
		for j := i; j > 0 && fields[j] < fields[j-1]; j-- {
			fields[j], fields[j-1] = fields[j-1], fields[j]
		}
	}
	return fmt.Sprintf("%s %s %s", parts[0], strings.Join(fields, ","), parts[2])
}
