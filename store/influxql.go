package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// History queries go to InfluxDB's /query endpoint in InfluxQL with
// chunked=true and are decoded chunk by chunk as they arrive: memory
// stays bounded by one chunk whatever the size of the result. Measured
// against Flux through the client's CSV records on 200 enterprises × 50
// meters × 30 days hourly (7.2 million readings; InfluxDB 1.8.10 on a
// shared 2-core machine, TestMeasureHistoryQueries):
//
//	                                 InfluxQL            Flux
//	hourly, 20 enterprises (720k)    40 s,   4 MB alloc  7m28s, 2.3 GB alloc
//	daily+16h, all 200 (310k)        33 s,  37 MB alloc  5m42s, 1.0 GB alloc
//	latest 3/meter, all (30k)        1.2 s, 33 MB alloc  11.6 s,  46 MB alloc
//	hourly, all 200 (7.2M)           7m57s, 37 MB alloc  -
//
// (heap growth under 8 MB in every case; the 7.2-million-row answer
// streamed with the heap 3.3 MB up). The times are the server's: the
// client decodes some 280k rows/s (BenchmarkInfluxEachAggregateDecode). Flux needs one windowed query
// per aggregate (sum, count, gauge sum, max), InfluxQL one for all four.
// The same endpoint serves InfluxDB 2.x through its 1.x compatibility API
// (the bucket mapped to database/retention policy).

// influxChunkSize is the rows per chunk asked of the server: it bounds
// the server's buffering, not ours.
const influxChunkSize = 10000

// InfluxDB's smallest and largest representable times.
const (
	influxMinNanos = math.MinInt64 + 2
	influxMaxNanos = math.MaxInt64 - 1
)

// ErrIncomplete is returned (wrapped) when an InfluxQL answer ends before
// its last chunk: the connection was cut, or the server gave up.
var ErrIncomplete = errors.New("store: influx answer ended early")

// EachAggregate calls fn with the aggregates of the readings with
// q.From <= Time < q.To, one per enterprise, meter and bucket (and kind:
// a meter that was a gauge and an amount within a bucket has a row for
// each). Buckets without readings are left out. Rows of one series come
// together, ascending in time. Sum adds up Delta of every reading,
// ValueSum and Max look at gauge readings only (0 for counters and delta
// meters), Count counts every reading.
//
// Rows are streamed: fn runs while the answer is read, and a slow fn
// holds the connection open (the whole query must finish within the
// client's timeout). The *Aggregate is reused: fn must not keep it after
// it returns. A failure mid-stream (deadline, connection, server error)
// is returned after the rows before it were passed to fn.
//
// InfluxDB 1.8 spends about as long on one GROUP BY time row as on
// reading four or five raw points (TestMeasureAggregatePaths), so where
// buckets hold few readings (hourly readings in hourly buckets, as
// gateways that send hourly or a backfilled history leave them) the
// readings are asked for as they are and summed here, and where buckets
// hold many the server sums them. A count per meter over the range,
// which costs InfluxDB a fraction of either, says which, and which
// enterprises have readings in it at all. Where those have many, they are
// then asked for one at a time, grouped by meter alone: InfluxDB 1.8
// spends about a third less per row on that than on a group of
// enterprises grouped by enterprise and meter (TestMeasureAggregatePaths).
func (s *Influx) EachAggregate(ctx context.Context, q AggregateQuery, fn func(*Aggregate) error) error {
	return s.eachAggregate(ctx, q, aggAuto, fn)
}

// aggPath is how EachAggregate asks InfluxDB for a range's aggregates.
type aggPath int

const (
	aggAuto    aggPath = iota // count the readings first, then choose
	aggRaw                    // the readings themselves, summed here
	aggGrouped                // GROUP BY time, summed by the server
)

// aggRawPoints is how many raw points cost InfluxDB about one GROUP BY
// time row (measured 3.1 on hourly and 6.0 on five-minute data, asked an
// enterprise at a time).
const aggRawPoints = 4

func (s *Influx) eachAggregate(ctx context.Context, q AggregateQuery, path aggPath, fn func(*Aggregate) error) error {
	p, err := s.planAggregate(ctx, q, path)
	switch {
	case err != nil:
		return fmt.Errorf("influx aggregate: %w", err)
	case p.path == aggRaw:
		err = s.sumRaw(ctx, p, fn)
	case p.path == aggGrouped:
		err = s.sumGrouped(ctx, p, fn)
	}
	if err != nil {
		return fmt.Errorf("influx aggregate: %w", err)
	}
	return nil
}

// aggPlan is how an aggregate is asked for: the statement's FROM and
// WHERE on time, the enterprises (nil: all), whether they are asked for
// one at a time, the buckets, and the path (aggAuto: nothing to read).
type aggPlan struct {
	where         string
	ents          []string
	split         bool
	every, offset int64
	path          aggPath
}

// aggSplitPoints is how many readings an enterprise must have on average
// in an aggregate's range for its enterprises to be asked for one at a
// time: a query of its own saves InfluxDB about a third of its cost per
// row but costs a request, which is more at 50 readings an enterprise,
// about even between 150 and 600, and less from 1,200 on (both measured
// by TestMeasureAggregatePaths).
const aggSplitPoints = 1000

// planAggregate checks q and plans it by path, choosing one when path is
// aggAuto.
func (s *Influx) planAggregate(ctx context.Context, q AggregateQuery, path aggPath) (aggPlan, error) {
	offset, err := q.check()
	if err != nil {
		return aggPlan{}, err
	}
	fromNs, toNs := max(clampNanos(q.From), influxMinNanos), min(clampNanos(q.To), influxMaxNanos)
	if fromNs >= toNs || len(q.Enterprises) > 0 && len(enterpriseSet(q.Enterprises)) == 0 {
		return aggPlan{}, nil
	}
	p := aggPlan{
		where: fmt.Sprintf(`FROM %s WHERE time >= %d AND time < %d`, influxIdent(readingMeasurement), fromNs, toNs),
		every: q.Every.Nanoseconds(), offset: offset.Nanoseconds(), path: path,
	}
	if len(q.Enterprises) > 0 {
		p.ents, p.split = enterpriseSet(q.Enterprises), true
	}
	if path == aggAuto {
		buckets := (bucketStart(toNs-1, p.every, p.offset)-bucketStart(fromNs, p.every, p.offset))/p.every + 1
		var points int64
		if p.path, p.ents, points, err = s.choosePath(ctx, p.where+enterpriseCond(q.Enterprises), buckets); err != nil {
			return aggPlan{}, fmt.Errorf("count: %w", err)
		}
		p.split = len(p.ents) > 0 && points >= aggSplitPoints*int64(len(p.ents))
	}
	return p, nil
}

// choosePath counts the amounts and gauge values the readings selected by
// where hold, and how many aggregate rows they make at most in that many
// buckets (a meter has at most one row of each per bucket), and returns
// the cheaper path for them (aggAuto when there is nothing to read), the
// enterprises that have readings, in order, and how many readings.
func (s *Influx) choosePath(ctx context.Context, where string, buckets int64) (aggPath, []string, int64, error) {
	var (
		points, rows int64
		ents         []string
	)
	stmt := `SELECT count("delta") AS "nd", count("value") AS "nv" ` + where + ` GROUP BY "enterprise", "meter"`
	nd, nv := -1, -1
	err := s.influxQL(ctx, stmt, func(sr *influxSeries, row []json.RawMessage) error {
		if sr.fresh {
			// A field no reading has (no gauges yet) has no column.
			nd, nv = slices.Index(sr.columns, "nd"), slices.Index(sr.columns, "nv")
			if e := sr.tags["enterprise"]; len(ents) == 0 || ents[len(ents)-1] != e {
				ents = append(ents, e)
			}
		}
		for _, c := range []int{nd, nv} {
			if c < 0 || string(row[c]) == "null" {
				continue
			}
			n, err := rawInt(row[c])
			if err != nil {
				return err
			}
			points += n
			rows += min(n, buckets)
		}
		return nil
	})
	// A series cut by a chunk boundary comes again: its enterprise is
	// noted once more, and InfluxDB sorts series by their tags.
	slices.Sort(ents)
	ents = slices.Compact(ents)
	switch {
	case err != nil:
		return aggAuto, nil, 0, err
	case points == 0:
		return aggAuto, nil, 0, nil
	case points <= aggRawPoints*rows:
		return aggRaw, ents, points, nil
	}
	return aggGrouped, ents, points, nil
}

// eachMeterRow runs "SELECT fields" on p's range, grouped by groupBy (a
// time() and a comma, or nothing) and by meter, and calls row for every
// row with its series' enterprise and meter. It asks for p's enterprises
// one at a time if p is split, or for all at once, grouped by enterprise
// too, so rows come a meter at a time, in time order within it.
func (s *Influx) eachMeterRow(ctx context.Context, p aggPlan, fields, groupBy, tail string, row func(sr *influxSeries, ent, meter string, vals []json.RawMessage) error) error {
	var ent, meter string // the series' tags, looked up once per series
	if !p.split {
		stmt := `SELECT ` + fields + ` ` + p.where + enterpriseCond(p.ents) + ` GROUP BY ` + groupBy + `"enterprise", "meter"` + tail
		return s.influxQL(ctx, stmt, func(sr *influxSeries, vals []json.RawMessage) error {
			if sr.fresh {
				ent, meter = sr.tags["enterprise"], sr.tags["meter"]
			}
			return row(sr, ent, meter, vals)
		})
	}
	for _, e := range p.ents {
		stmt := `SELECT ` + fields + ` ` + p.where + ` AND "enterprise" = ` + influxString(e) + ` GROUP BY ` + groupBy + `"meter"` + tail
		err := s.influxQL(ctx, stmt, func(sr *influxSeries, vals []json.RawMessage) error {
			if sr.fresh {
				meter = sr.tags["meter"]
			}
			return row(sr, e, meter, vals)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// sumGrouped has the server sum the readings p selects.
func (s *Influx) sumGrouped(ctx context.Context, p aggPlan, fn func(*Aggregate) error) error {
	// InfluxDB 1.8 spends about as long on each aggregate function as on
	// the rest of the query, so counters and delta meters (sum of delta,
	// count) and gauges (sum, count and max of value) are asked for
	// apart: two and three functions instead of four for every series.
	var (
		a    Aggregate
		cols aggColumns
		err  error
	)
	for _, part := range []struct {
		fields string
		gauge  bool
	}{
		{`sum("delta") AS "delta_sum", count("delta") AS "n"`, false},
		{`sum("value") AS "value_sum", count("value") AS "n", max("value") AS "value_max"`, true},
	} {
		groupBy := fmt.Sprintf(`time(%dns, %dns), `, p.every, p.offset)
		err = s.eachMeterRow(ctx, p, part.fields, groupBy, ` fill(none)`, func(sr *influxSeries, ent, meter string, row []json.RawMessage) error {
			if sr.fresh {
				if cols, err = newAggColumns(sr.columns); err != nil {
					return err
				}
				a = Aggregate{Enterprise: ent, Meter: meter}
				cols.gauge = part.gauge
			}
			t, err := rawInt(row[cols.time])
			if err != nil {
				return err
			}
			a.Start = time.Unix(0, t).UTC()
			n, err := rawFloat(row[cols.n])
			if err != nil {
				return err
			}
			a.Count = int(n)
			a.Sum, a.ValueSum, a.Max = 0, 0, 0
			if cols.deltaSum >= 0 {
				if a.Sum, err = rawFloat(row[cols.deltaSum]); err != nil {
					return err
				}
			}
			if cols.gauge && cols.valueSum >= 0 && cols.valueMax >= 0 {
				if a.ValueSum, err = rawFloat(row[cols.valueSum]); err != nil {
					return err
				}
				if a.Max, err = rawFloat(row[cols.valueMax]); err != nil {
					return err
				}
			}
			return fn(&a)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// sumRaw asks for the readings p selects, a meter at a time in time
// order, and sums each bucket's amounts and gauge values as the server
// would: in time order, a row for each that the bucket has.
func (s *Influx) sumRaw(ctx context.Context, p aggPlan, fn func(*Aggregate) error) error {
	var (
		amount, gauge Aggregate
		start         int64
		cols          [3]int // time, delta, value
	)
	flush := func() error {
		for _, a := range []*Aggregate{&amount, &gauge} {
			if a.Count > 0 {
				if err := fn(a); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := s.eachMeterRow(ctx, p, `"delta", "value"`, "", "", func(sr *influxSeries, ent, meter string, row []json.RawMessage) error {
		if sr.fresh {
			// A field no reading has (no gauges yet) has no column.
			for i, name := range []string{"time", "delta", "value"} {
				cols[i] = slices.Index(sr.columns, name)
			}
			if cols[0] < 0 {
				return fmt.Errorf("columns %q, want time", sr.columns)
			}
		}
		t, err := rawInt(row[cols[0]])
		if err != nil {
			return err
		}
		bs := bucketStart(t, p.every, p.offset)
		if bs != start || meter != amount.Meter || ent != amount.Enterprise {
			if err := flush(); err != nil {
				return err
			}
			at := time.Unix(0, bs).UTC()
			amount = Aggregate{Enterprise: ent, Meter: meter, Start: at}
			gauge, start = amount, bs
		}
		if c := cols[1]; c >= 0 && string(row[c]) != "null" {
			d, err := rawFloat(row[c])
			if err != nil {
				return err
			}
			amount.Sum += d
			amount.Count++
		}
		if c := cols[2]; c >= 0 && string(row[c]) != "null" {
			v, err := rawFloat(row[c])
			if err != nil {
				return err
			}
			if gauge.Count == 0 || v > gauge.Max {
				gauge.Max = v
			}
			gauge.ValueSum += v
			gauge.Count++
		}
		return nil
	})
	if err != nil {
		return err // the bucket being summed may be short: not passed on
	}
	return flush()
}

type aggColumns struct {
	time, deltaSum, valueSum, n, valueMax int
	gauge                                 bool
}

func newAggColumns(cols []string) (aggColumns, error) {
	c := aggColumns{time: -1, deltaSum: -1, valueSum: -1, n: -1, valueMax: -1}
	for i, name := range cols {
		switch name {
		case "time":
			c.time = i
		case "delta_sum":
			c.deltaSum = i
		case "value_sum":
			c.valueSum = i
		case "n":
			c.n = i
		case "value_max":
			c.valueMax = i
		}
	}
	if c.time < 0 || c.n < 0 || c.deltaSum < 0 && (c.valueSum < 0 || c.valueMax < 0) {
		return c, fmt.Errorf("columns %q: want time, n and delta_sum or value_sum and value_max", cols)
	}
	return c, nil
}

// EachLatestReading calls fn with, for every meter, its q.PerMeter most
// recent readings with Time >= q.Since (fewer if it has fewer): a
// meter's readings come together, oldest first.
//
// Readings are streamed (at most PerMeter of them held at a time, but
// for the meters below): fn runs while the answer is read. The *Reading
// is reused: fn must not keep it after it returns. A failure mid-stream
// (deadline, connection, server error) is returned after the readings
// before it were passed to fn.
//
// Registers of chained counter readings (Reading.Chained) are rebuilt from
// the hour's first. A meter whose oldest reading asked for is a delta
// alone may be a counter's chained to readings before it: such meters are
// held until the answer ends and then completed with a second query per
// hour they start in (the readings themselves, from the hour's start),
// and passed to fn after the others. Asking for more readings per meter
// to reach back to the hour's first instead costs InfluxDB more: each
// reading of ORDER BY time DESC LIMIT costs it about three read in time
// order (TestMeasureLatestReadings).
func (s *Influx) EachLatestReading(ctx context.Context, q LatestQuery, fn func(*Reading) error) error {
	if err := q.check(); err != nil {
		return fmt.Errorf("influx latest readings: %w", err)
	}
	if len(q.Enterprises) > 0 && len(enterpriseSet(q.Enterprises)) == 0 {
		return nil
	}
	sinceNs := max(clampNanos(q.Since), influxMinNanos)
	// Newest first so that LIMIT keeps the latest, turned around per meter
	// here.
	limit := q.PerMeter
	stmt := fmt.Sprintf(`SELECT "register", "delta", "value", "flag"::field`+
		` FROM %s WHERE time >= %d%s GROUP BY "enterprise", "meter" ORDER BY time DESC LIMIT %d`,
		influxIdent(readingMeasurement), sinceNs, enterpriseCond(q.Enterprises), limit)
	var (
		meter   []Reading // the current meter's readings, newest first
		cols    readingColumns
		pending = map[meterKey][]Reading{} // meters whose register may start before the answer, oldest first
	)
	emit := func(rs []Reading) error {
		for i := range rs {
			if err := fn(&rs[i]); err != nil {
				return err
			}
		}
		return nil
	}
	flush := func() error {
		if len(meter) == 0 {
			return nil
		}
		slices.Reverse(meter)
		defer func() { meter = meter[:0] }()
		// A delta alone at the start of the answer may be a counter's
		// whose register is rebuilt from readings not read.
		if chainRegisters(meter) {
			pending[meterKey{meter[0].Enterprise, meter[0].Meter}] = slices.Clone(meter)
			return nil
		}
		return emit(meter)
	}
	err := s.influxQL(ctx, stmt, func(sr *influxSeries, row []json.RawMessage) error {
		if sr.fresh {
			if err := cols.find(sr.columns); err != nil {
				return err
			}
			if len(meter) > 0 && (meter[0].Enterprise != sr.tags["enterprise"] || meter[0].Meter != sr.tags["meter"]) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if len(meter) >= limit {
			return fmt.Errorf("more than %d readings for meter %s/%s", limit, sr.tags["enterprise"], sr.tags["meter"])
		}
		r, err := cols.reading(sr, row)
		if err != nil {
			return err
		}
		meter = append(meter, r)
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err == nil && len(pending) > 0 {
		err = s.completeChains(ctx, pending, emit)
	}
	if err != nil {
		return fmt.Errorf("influx latest readings: %w", err)
	}
	return nil
}

// meterKey names one meter of one enterprise.
type meterKey struct{ enterprise, meter string }

// completeChains reads, for the meters of pending (each its latest
// readings, oldest first, starting with a delta alone), their readings
// from the start of the hour of the first one, rebuilds the registers and
// passes the readings of pending to emit, meter by meter. One query per
// hour the meters start in, for their enterprises.
func (s *Influx) completeChains(ctx context.Context, pending map[meterKey][]Reading, emit func([]Reading) error) error {
	byHour := map[time.Time][]meterKey{}
	for k, rs := range pending {
		h := hourStart(rs[0].Time)
		byHour[h] = append(byHour[h], k)
	}
	hours := slices.SortedFunc(maps.Keys(byHour), time.Time.Compare)
	for _, h := range hours {
		keys := byHour[h]
		slices.SortFunc(keys, func(a, b meterKey) int {
			return cmp.Or(cmp.Compare(a.enterprise, b.enterprise), cmp.Compare(a.meter, b.meter))
		})
		var ents []string
		until := h // the latest first reading of these meters
		for _, k := range keys {
			ents = append(ents, k.enterprise)
			if f := pending[k][0].Time; f.After(until) {
				until = f
			}
		}
		before := map[meterKey][]Reading{}
		var cols readingColumns
		stmt := fmt.Sprintf(`SELECT "register", "delta", "value", "flag"::field FROM %s WHERE time >= %d AND time < %d%s GROUP BY "enterprise", "meter"`,
			influxIdent(readingMeasurement), h.UnixNano(), until.UnixNano(), enterpriseCond(ents))
		err := s.influxQL(ctx, stmt, func(sr *influxSeries, row []json.RawMessage) error {
			if sr.fresh {
				if err := cols.find(sr.columns); err != nil {
					return err
				}
			}
			k := meterKey{sr.tags["enterprise"], sr.tags["meter"]}
			rs, ok := pending[k]
			if !ok || !hourStart(rs[0].Time).Equal(h) {
				return nil
			}
			r, err := cols.reading(sr, row)
			if err != nil {
				return err
			}
			if r.Time.Before(rs[0].Time) {
				before[k] = append(before[k], r)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			rs := pending[k]
			all := append(before[k], rs...)
			chainRegisters(all)
			if err := emit(all[len(all)-len(rs):]); err != nil {
				return err
			}
			delete(pending, k)
		}
	}
	return nil
}

// readingColumns are the positions of a reading's columns in an InfluxQL
// series (-1: absent).
type readingColumns [5]int // time, register, delta, value, flag

// find locates the columns of a series.
func (c *readingColumns) find(columns []string) error {
	names := [5]string{"time", "register", "delta", "value", "flag"}
	for i, n := range names {
		c[i] = slices.Index(columns, n)
	}
	if c[0] < 0 {
		return fmt.Errorf("columns %q: no time", columns)
	}
	return nil
}

// reading decodes one row of a series of readings, its kind from the
// fields it has.
func (c *readingColumns) reading(sr *influxSeries, row []json.RawMessage) (Reading, error) {
	t, err := rawInt(row[c[0]])
	if err != nil {
		return Reading{}, err
	}
	r := Reading{Enterprise: sr.tags["enterprise"], Meter: sr.tags["meter"], Time: time.Unix(0, t).UTC()}
	present := func(i int) bool { return c[i] >= 0 && string(row[c[i]]) != "null" }
	r.Kind = readingFieldKind(present(1), present(2), present(3))
	if present(2) {
		if r.Delta, err = rawFloat(row[c[2]]); err != nil {
			return Reading{}, err
		}
	}
	switch {
	case present(1):
		r.Value, err = rawFloat(row[c[1]])
	case present(3):
		r.Value, err = rawFloat(row[c[3]])
	default:
		r.Value = r.Delta
	}
	if err != nil {
		return Reading{}, err
	}
	if present(4) {
		if r.Flag, err = rawString(row[c[4]]); err != nil {
			return Reading{}, err
		}
	}
	return r, nil
}

// enterpriseCond returns the WHERE clause part that keeps the given
// enterprises ("" for all).
func enterpriseCond(ents []string) string {
	if len(ents) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(" AND (")
	for i, e := range enterpriseSet(ents) {
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteString(`"enterprise" = `)
		b.WriteString(influxString(e))
	}
	b.WriteString(")")
	return b.String()
}

// influxString quotes s as an InfluxQL string literal.
func influxString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// influxIdent quotes s as an InfluxQL identifier.
func influxIdent(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// influxQL runs one InfluxQL statement with chunked=true and calls row for
// every row of every series, as the chunks arrive.
func (s *Influx) influxQL(ctx context.Context, stmt string, row func(*influxSeries, []json.RawMessage) error) error {
	db, rp, _ := strings.Cut(s.cfg.Bucket, "/")
	form := url.Values{
		"q": {stmt}, "db": {db}, "epoch": {"ns"},
		"chunked": {"true"}, "chunk_size": {strconv.Itoa(influxChunkSize)},
	}
	if rp != "" {
		form.Set("rp", rp)
	}
	u := strings.TrimSuffix(s.client.HTTPService().ServerURL(), "/") + "/query"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.HTTPService().DoHTTPRequestWithResponse(req, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// 1.x says {"error": "..."}, 2.x {"code": .., "message": ".."}.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var e struct{ Error, Message string }
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error+e.Message != "" {
			msg = e.Error + e.Message
		}
		return &QueryError{Status: resp.StatusCode, Message: msg}
	}
	return decodeChunks(resp.Body, row)
}

// QueryError is a query the server answered with an HTTP error status.
type QueryError struct {
	Status  int
	Message string
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
}

// influxSeries is the series whose rows are being decoded.
type influxSeries struct {
	tags    map[string]string
	columns []string
	fresh   bool // true for the first row after a series header
}

// decodeChunks reads InfluxQL's chunked JSON answer, one JSON object per
// chunk:
//
//	{"results":[{"statement_id":0,"series":[{"name":..,"tags":{..},
//	  "columns":[..],"values":[[..],..],"partial":true}],"partial":true}]}
//
// token by token, decoding each row on its own, so that no chunk is held
// whole. A series cut by a chunk boundary comes again, header and all, in
// the next chunk. An answer whose last result is still partial ended
// early (ErrIncomplete); an "error" anywhere is returned.
func decodeChunks(r io.Reader, row func(*influxSeries, []json.RawMessage) error) error {
	d := chunkDecoder{dec: json.NewDecoder(r), row: row}
	chunks := 0
	for {
		t, err := d.dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("decode chunk %d: %w", chunks, err)
		}
		if t != json.Delim('{') {
			return fmt.Errorf("decode chunk %d: got %v, want {", chunks, t)
		}
		chunks++
		if err := d.object(d.chunkField); err != nil {
			return fmt.Errorf("decode chunk %d: %w", chunks, err)
		}
	}
	if chunks == 0 || d.partial {
		return fmt.Errorf("%w after %d chunks", ErrIncomplete, chunks)
	}
	return nil
}

type chunkDecoder struct {
	dec     *json.Decoder
	row     func(*influxSeries, []json.RawMessage) error
	series  influxSeries
	raw     json.RawMessage // a chunk's values
	vals    []json.RawMessage
	partial bool // the last result said more is to come
}

// object reads the members of an object whose '{' was read, and its '}'.
func (d *chunkDecoder) object(member func(key string) error) error {
	for d.dec.More() {
		t, err := d.dec.Token()
		if err != nil {
			return err
		}
		key, ok := t.(string)
		if !ok {
			return fmt.Errorf("got %v, want an object key", t)
		}
		if err := member(key); err != nil {
			return err
		}
	}
	return d.delim('}')
}

// array reads an array, calling elem for each element.
func (d *chunkDecoder) array(elem func() error) error {
	if err := d.delim('['); err != nil {
		return err
	}
	for d.dec.More() {
		if err := elem(); err != nil {
			return err
		}
	}
	return d.delim(']')
}

func (d *chunkDecoder) delim(want json.Delim) error {
	t, err := d.dec.Token()
	if err != nil {
		return err
	}
	if t != want {
		return fmt.Errorf("got %v, want %v", t, want)
	}
	return nil
}

func (d *chunkDecoder) skip() error {
	var raw json.RawMessage
	return d.dec.Decode(&raw)
}

func (d *chunkDecoder) str() (string, error) {
	t, err := d.dec.Token()
	if err != nil {
		return "", err
	}
	s, ok := t.(string)
	if !ok {
		return "", fmt.Errorf("got %v, want a string", t)
	}
	return s, nil
}

func (d *chunkDecoder) boolean() (bool, error) {
	t, err := d.dec.Token()
	if err != nil {
		return false, err
	}
	b, ok := t.(bool)
	if !ok {
		return false, fmt.Errorf("got %v, want true or false", t)
	}
	return b, nil
}

func (d *chunkDecoder) chunkField(key string) error {
	switch key {
	case "results":
		return d.array(func() error {
			if err := d.delim('{'); err != nil {
				return err
			}
			d.partial = false
			return d.object(d.resultField)
		})
	case "error":
		return d.serverError()
	}
	return d.skip()
}

// serverError reads the error InfluxDB put in its answer.
func (d *chunkDecoder) serverError() error {
	msg, err := d.str()
	if err != nil {
		return err
	}
	return fmt.Errorf("influx: %s", msg)
}

func (d *chunkDecoder) resultField(key string) error {
	switch key {
	case "series":
		return d.array(func() error {
			if err := d.delim('{'); err != nil {
				return err
			}
			d.series = influxSeries{}
			return d.object(d.seriesField)
		})
	case "partial":
		p, err := d.boolean()
		d.partial = p
		return err
	case "error":
		return d.serverError()
	}
	return d.skip()
}

func (d *chunkDecoder) seriesField(key string) error {
	switch key {
	case "tags":
		if err := d.delim('{'); err != nil {
			return err
		}
		d.series.tags = map[string]string{}
		return d.object(func(k string) error {
			t, err := d.dec.Token()
			if err != nil {
				return err
			}
			switch v := t.(type) {
			case string:
				d.series.tags[k] = v
			case nil:
			default:
				return fmt.Errorf("tag %s: got %v, want a string", k, t)
			}
			return nil
		})
	case "columns":
		d.series.columns = d.series.columns[:0]
		return d.array(func() error {
			c, err := d.str()
			d.series.columns = append(d.series.columns, c)
			return err
		})
	case "values":
		if len(d.series.columns) == 0 {
			return errors.New("values before columns")
		}
		// One chunk's rows (influxChunkSize at most) are read whole and
		// split here: a row at a time through the decoder cost five times
		// as much (BenchmarkInfluxEachAggregateDecode).
		if err := d.dec.Decode(&d.raw); err != nil {
			return err
		}
		d.series.fresh = true
		return eachRow(d.raw, &d.vals, func(vals []json.RawMessage) error {
			if len(vals) != len(d.series.columns) {
				return fmt.Errorf("row of %d values for %d columns", len(vals), len(d.series.columns))
			}
			err := d.row(&d.series, vals)
			d.series.fresh = false
			return err
		})
	}
	return d.skip()
}

// eachRow calls fn with the values of each row of raw, a JSON array
// (valid: the decoder read it) of arrays of scalars. vals is reused.
func eachRow(raw json.RawMessage, vals *[]json.RawMessage, fn func([]json.RawMessage) error) error {
	at := func(i int) byte {
		for ; i < len(raw); i++ {
			if c := raw[i]; c != ' ' && c != '\t' && c != '\n' && c != '\r' {
				return c
			}
		}
		return 0
	}
	next := func(i int) int { // the index of the byte at returns
		for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
			i++
		}
		return i
	}
	i := next(0)
	if at(i) != '[' {
		return errors.New("values: want an array")
	}
	i = next(i + 1)
	if at(i) == ']' {
		return nil
	}
	for {
		if at(i) != '[' {
			return errors.New("row: want an array")
		}
		i = next(i + 1)
		v := (*vals)[:0]
		for at(i) != ']' {
			start := i
			switch raw[i] {
			case '"':
				for i++; i < len(raw) && raw[i] != '"'; i++ {
					if raw[i] == '\\' {
						i++
					}
				}
				i++
			case '[', '{':
				return errors.New("row: want scalar values")
			default: // a number, true, false or null
			scalar:
				for ; i < len(raw); i++ {
					switch raw[i] {
					case ',', ']', ' ', '\t', '\n', '\r':
						break scalar
					}
				}
			}
			v = append(v, raw[start:min(i, len(raw))])
			if i = next(i); at(i) == ',' {
				i = next(i + 1)
			} else if at(i) != ']' {
				return errors.New("row: want , or ]")
			}
		}
		*vals = v
		if err := fn(v); err != nil {
			return err
		}
		switch i = next(i + 1); at(i) {
		case ',':
			i = next(i + 1)
		case ']':
			return nil
		default:
			return errors.New("values: want , or ]")
		}
	}
}

// rawFloat parses a JSON number (null: 0).
func rawFloat(raw json.RawMessage) (float64, error) {
	if string(raw) == "null" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return 0, fmt.Errorf("value %.40q: want a number", raw)
	}
	return f, nil
}

// rawInt parses a JSON integer.
func rawInt(raw json.RawMessage) (int64, error) {
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("time %.40q: want integer nanoseconds", raw)
	}
	return n, nil
}

// rawString parses a JSON string (null: "").
func rawString(raw json.RawMessage) (string, error) {
	if string(raw) == "null" {
		return "", nil
	}
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && !strings.ContainsAny(string(raw[1:len(raw)-1]), `\"`) {
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("value %.40q: want a string", raw)
	}
	return s, nil
}
