package store

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/tls"
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
	"sync"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"
	"github.com/influxdata/influxdb-client-go/v2/api/query"
)

// Measurement that holds readings in InfluxDB. A reading's identity is its
// tags, enterprise and meter, and its time: nothing the registry knows of
// the meter (gateway, quantity, workshop, unit) is in the point, so a meter
// that moves to another gateway or workshop stays one series, and each
// point costs InfluxDB about what a plain (enterprise, meter) value does.
// The fields say the kind, one field per value that cannot be derived:
//
//   - counter: delta (the amount since the previous reading: not derivable
//     from the register across resets, rollovers and replacements), and
//     register (the meter's register) where the deltas do not give it: on
//     the first reading of each UTC hour and on any reading whose delta is
//     not the step from the register before it (see Reading.Chained and
//     chain.go). Reads rebuild the others from the hour's readings;
//   - delta meter: delta (the amount);
//   - gauge: value (the measured value);
//
// and flag (a string) where the protocol sent a data flag. So sums of
// amounts read delta, gauges read value, and neither needs a kind tag.
// The registry's facts about each meter are in MeterMeasurement.
const readingMeasurement = "reading"

// readingFieldKind returns the kind of a stored reading from the fields it
// has: a register makes a counter, a delta alone a delta meter, a value
// alone a gauge. A value with a delta is a reading stored before readings
// lost their registry tags (a counter's register or a delta meter's
// amount was value then): its value is what Value was, and it is taken
// for a counter (the registry, not the store, says what a meter is).
func readingFieldKind(hasRegister, hasDelta, hasValue bool) string {
	switch {
	case hasRegister, hasValue && hasDelta:
		return "counter"
	case hasDelta:
		return "delta"
	}
	return "gauge"
}

// InfluxConfig says how to reach InfluxDB. Against 1.8 the token is
// "user:password", the org is ignored and the bucket is "database/retention".
type InfluxConfig struct {
	URL     string
	Token   string
	Org     string
	Bucket  string
	GZip    bool
	Timeout time.Duration // per request; 0: 30 s
	TLS     *tls.Config
}

// Influx stores readings and points in InfluxDB (1.8 with Flux enabled, or
// 2.x/Cloud) through influxdb-client-go. All methods are safe for
// concurrent use.
type Influx struct {
	cfg      InfluxConfig
	client   influxdb2.Client
	writeURL string // .../api/v2/write?org=&bucket=&precision=ns
	query    api.QueryAPI
}

// Write bodies are compressed at gzip.BestSpeed with pooled writers: the
// client's own gzip (default level, a new writer and a goroutine per
// request) cost about 1 µs per reading, more than decoding and
// normalising it; BestSpeed costs 0.4 µs for 20% more bytes.
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return w
}}

var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// OpenInflux returns a store for cfg. It does not contact the server; use
// Ping for that.
func OpenInflux(cfg InfluxConfig) (*Influx, error) {
	if cfg.URL == "" || cfg.Bucket == "" {
		return nil, errors.New("influx: url and bucket are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	opts := influxdb2.DefaultOptions().
		SetUseGZip(cfg.GZip).
		SetPrecision(time.Nanosecond).
		SetHTTPRequestTimeout(uint(cfg.Timeout / time.Second)).
		SetLogLevel(0)
	if cfg.TLS != nil {
		opts.SetTLSConfig(cfg.TLS)
	}
	c := influxdb2.NewClientWithOptions(cfg.URL, cfg.Token, opts)
	u, err := url.Parse(c.HTTPService().ServerAPIURL())
	if err != nil {
		return nil, fmt.Errorf("influx: url %q: %w", cfg.URL, err)
	}
	u = u.JoinPath("write")
	u.RawQuery = url.Values{"org": {cfg.Org}, "bucket": {cfg.Bucket}, "precision": {"ns"}}.Encode()
	return &Influx{cfg: cfg, client: c, writeURL: u.String(), query: c.QueryAPI(cfg.Org)}, nil
}

// Close releases the client's connections.
func (s *Influx) Close() error {
	s.client.Close()
	return nil
}

// Ping checks that the server answers.
func (s *Influx) Ping(ctx context.Context) error {
	ok, err := s.client.Ping(ctx)
	if err != nil {
		return fmt.Errorf("influx ping: %w", err)
	}
	if !ok {
		return errors.New("influx ping: server not ready")
	}
	return nil
}

// WriteReadings writes rs in one request. Points are keyed by measurement,
// tags and time, so a reading written again overwrites itself. Errors are
// *WriteError: a 400/413/422 is permanent (the content), anything else
// (unreachable, 5xx, 429, and 401/403/404, which are configuration
// problems that an operator fixes) is temporary.
func (s *Influx) WriteReadings(ctx context.Context, rs []Reading) error {
	if len(rs) == 0 {
		return nil
	}
	bp := lineBuffers.Get().(*[]byte)
	buf := (*bp)[:0]
	for i := range rs {
		buf = AppendReadingLine(buf, &rs[i])
	}
	err := s.writeBody(ctx, buf)
	*bp = buf
	lineBuffers.Put(bp)
	return err
}

// lineBuffers keep the line protocol of a batch between writes, so a
// batch does not grow a new megabyte buffer each time.
var lineBuffers = sync.Pool{New: func() any { return new([]byte) }}

// WritePoints writes generic points (scoring outputs). Fields keep their
// types: float64, int64, string, bool.
func (s *Influx) WritePoints(ctx context.Context, ps []Point) error {
	if len(ps) == 0 {
		return nil
	}
	var buf []byte
	for i := range ps {
		var err error
		if buf, err = appendPointLine(buf, &ps[i]); err != nil {
			return &WriteError{Err: err, Permanent: true}
		}
	}
	return s.writeBody(ctx, buf)
}

func (s *Influx) writeBody(ctx context.Context, body []byte) error {
	encoding := ""
	if s.cfg.GZip {
		buf := bodyBuffers.Get().(*bytes.Buffer)
		buf.Reset()
		defer bodyBuffers.Put(buf)
		zw := gzipWriters.Get().(*gzip.Writer)
		zw.Reset(buf)
		_, _ = zw.Write(body) // a bytes.Buffer does not fail
		_ = zw.Close()
		gzipWriters.Put(zw)
		body, encoding = buf.Bytes(), "gzip"
	}
	perr := s.client.HTTPService().DoPostRequest(ctx, s.writeURL, bytes.NewReader(body), func(req *http.Request) {
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
		if encoding != "" {
			req.Header.Set("Content-Encoding", encoding)
		}
	}, func(resp *http.Response) error {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	})
	if perr != nil {
		return classify(perr)
	}
	return nil
}

// classify turns a client error into a *WriteError.
func classify(err error) error {
	we := &WriteError{Err: err}
	var he *ihttp.Error
	if errors.As(err, &he) {
		we.Status = he.StatusCode
		we.RetryAfter = time.Duration(he.RetryAfter) * time.Second
		switch he.StatusCode {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
			we.Permanent = true
		}
	}
	return we
}

// Refused reports whether err is the store refusing a request for good:
// bad credentials, no permission, or a request it cannot parse. Retrying
// the same request cannot succeed, so a start gives up on it with the
// error rather than retry forever.
func Refused(err error) bool {
	var qe *QueryError
	if errors.As(err, &qe) {
		return refusedStatus(qe.Status)
	}
	var he *ihttp.Error
	if errors.As(err, &he) {
		return refusedStatus(he.StatusCode)
	}
	var we *WriteError
	if errors.As(err, &we) {
		return we.Permanent || refusedStatus(we.Status)
	}
	return false
}

func refusedStatus(status int) bool {
	switch status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		return true
	}
	return false
}

// AppendReadingLine appends r as one line of InfluxDB line protocol.
func AppendReadingLine(b []byte, r *Reading) []byte {
	if r.Invalid {
		b = append(b, FlaggedMeasurement...)
		b = appendTagValue(b, ",enterprise=", r.Enterprise)
		b = appendTagValue(b, ",flag=", r.Flag)
		b = appendTagValue(b, ",meter=", r.Meter)
		b = append(b, " value="...)
		b = strconv.AppendFloat(b, r.Value, 'g', -1, 64)
		b = append(b, ' ')
		b = strconv.AppendInt(b, r.Time.UnixNano(), 10)
		return append(b, '\n')
	}
	b = append(b, readingMeasurement...)
	// The keys need no escaping: append them as they are.
	b = appendTagValue(b, ",enterprise=", r.Enterprise)
	b = appendTagValue(b, ",meter=", r.Meter)
	switch r.Kind {
	case "counter":
		if !r.Chained {
			b = append(b, " register="...)
			b = strconv.AppendFloat(b, r.Value, 'g', -1, 64)
			b = append(b, ',')
		} else {
			b = append(b, ' ')
		}
		b = append(b, "delta="...)
		b = strconv.AppendFloat(b, r.Delta, 'g', -1, 64)
	case "delta":
		b = append(b, " delta="...)
		b = strconv.AppendFloat(b, r.Delta, 'g', -1, 64)
	default:
		b = append(b, " value="...)
		b = strconv.AppendFloat(b, r.Value, 'g', -1, 64)
	}
	if r.Flag != "" {
		b = append(b, ",flag="...)
		b = strconv.AppendQuote(b, r.Flag)
	}
	b = append(b, ' ')
	b = strconv.AppendInt(b, r.Time.UnixNano(), 10)
	return append(b, '\n')
}

// appendTagValue appends ",key=" and the escaped value, unless it is empty.
func appendTagValue(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendEscaped(append(b, key...), v)
}

func appendTag(b []byte, k, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',')
	b = appendEscaped(b, k)
	b = append(b, '=')
	return appendEscaped(b, v)
}

// appendEscaped escapes commas, spaces and equals signs as line protocol
// requires for measurement names, tag keys and tag values.
func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',', ' ', '=', '\\', '\n', '\r':
			return appendEscapedSlow(b, s)
		}
	}
	return append(b, s...) // the usual case: nothing to escape
}

func appendEscapedSlow(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ',', ' ', '=', '\\':
			b = append(b, '\\', c)
		case '\n', '\r':
			b = append(b, ' ')
		default:
			b = append(b, c)
		}
	}
	return b
}

func appendPointLine(b []byte, p *Point) ([]byte, error) {
	if p.Measurement == "" || len(p.Fields) == 0 {
		return b, fmt.Errorf("point %q needs a measurement and a field", p.Measurement)
	}
	b = appendEscaped(b, p.Measurement)
	keys := make([]string, 0, len(p.Tags))
	for k := range p.Tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendTag(b, k, p.Tags[k])
	}
	keys = keys[:0]
	for k := range p.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i == 0 {
			b = append(b, ' ')
		} else {
			b = append(b, ',')
		}
		b = appendEscaped(b, k)
		b = append(b, '=')
		switch v := p.Fields[k].(type) {
		case float64:
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return b, fmt.Errorf("point %q field %q: %v is not finite", p.Measurement, k, v)
			}
			b = strconv.AppendFloat(b, v, 'g', -1, 64)
		case int64:
			b = strconv.AppendInt(b, v, 10)
			b = append(b, 'i')
		case int:
			b = strconv.AppendInt(b, int64(v), 10)
			b = append(b, 'i')
		case bool:
			b = strconv.AppendBool(b, v)
		case string:
			b = append(b, '"')
			for j := 0; j < len(v); j++ {
				if v[j] == '"' || v[j] == '\\' {
					b = append(b, '\\')
				}
				b = append(b, v[j])
			}
			b = append(b, '"')
		default:
			return b, fmt.Errorf("point %q field %q: unsupported type %T", p.Measurement, k, v)
		}
	}
	b = append(b, ' ')
	b = strconv.AppendInt(b, p.Time.UnixNano(), 10)
	return append(b, '\n'), nil
}

// fluxString quotes s as a Flux string literal.
func fluxString(s string) string { return strconv.Quote(s) }

func fluxTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// fluxFrom selects [from, to) of the bucket where every one of preds
// holds. The explicit _time < to works around InfluxDB 1.8 including a
// point exactly at stop; it comes after preds because 1.8 pushes a filter
// down to its storage (the series index) only while no filter it cannot
// push precedes it, and a _time filter it cannot: ahead of the
// measurement's, every series of the range is read and filtered in Flux
// (the declarations' query took over 30 s on a store of 100,000 meters).
// Pushable preds (comparisons of tags, _measurement and _field) go first.
func (s *Influx) fluxFrom(from, to time.Time, preds ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "from(bucket: %s)\n  |> range(start: %s, stop: %s)\n", fluxString(s.cfg.Bucket), fluxTime(from), fluxTime(to.Add(time.Nanosecond)))
	for _, p := range preds {
		fmt.Fprintf(&b, "  |> filter(fn: (r) => %s)\n", p)
	}
	fmt.Fprintf(&b, "  |> filter(fn: (r) => r._time < %s)\n", fluxTime(to))
	return b.String()
}

// Readings returns one meter's readings in [from, to), in time order.
// The read starts at from's hour, where the registers of chained counter
// readings are rebuilt from (Reading.Chained).
func (s *Influx) Readings(ctx context.Context, enterprise, meter string, from, to time.Time) ([]Reading, error) {
	q := s.fluxFrom(hourStart(from), to,
		fmt.Sprintf(`r._measurement == %q and r.enterprise == %s and r.meter == %s`, readingMeasurement, fluxString(enterprise), fluxString(meter)),
		readingFieldsFlux) + `  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> group()
  |> sort(columns: ["_time"])
`
	rs, err := s.queryReadings(ctx, q)
	if err != nil {
		return nil, err
	}
	chainRegisters(rs)
	return dropBefore(rs, from), nil
}

// dropBefore removes the readings before from, keeping the order.
func dropBefore(rs []Reading, from time.Time) []Reading {
	return slices.DeleteFunc(rs, func(r Reading) bool { return r.Time.Before(from) })
}

// readingFieldsFlux keeps the fields of readings.
const readingFieldsFlux = `r._field == "register" or r._field == "delta" or r._field == "value" or r._field == "flag"`

func (s *Influx) queryReadings(ctx context.Context, q string) ([]Reading, error) {
	res, err := s.query.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("influx query readings: %w", err)
	}
	defer res.Close()
	var out []Reading
	for res.Next() {
		rec := res.Record()
		hasReg := rec.ValueByKey("register") != nil
		hasDelta := rec.ValueByKey("delta") != nil
		hasValue := rec.ValueByKey("value") != nil
		r := Reading{
			Enterprise: str(rec, "enterprise"), Meter: str(rec, "meter"), Kind: readingFieldKind(hasReg, hasDelta, hasValue),
			Time: rec.Time().UTC(), Delta: num(rec, "delta"), Flag: str(rec, "flag"),
		}
		switch {
		case hasReg:
			r.Value = num(rec, "register")
		case hasValue:
			r.Value = num(rec, "value")
		default:
			r.Value = r.Delta
		}
		out = append(out, r)
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("influx query readings: %w", err)
	}
	return out, nil
}

// CountReadings counts stored readings (enterprise "" counts all).
func (s *Influx) CountReadings(ctx context.Context, enterprise string) (int, error) {
	filter := ""
	if enterprise != "" {
		filter = " and r.enterprise == " + fluxString(enterprise)
	}
	q := s.fluxFrom(time.Unix(0, 0), time.Now().Add(24*365*time.Hour),
		fmt.Sprintf(`r._measurement == %q and (r._field == "value" or r._field == "delta")%s`, readingMeasurement, filter)) + `  |> group()
  |> count()
`
	res, err := s.query.Query(ctx, q)
	if err != nil {
		return 0, fmt.Errorf("influx count readings: %w", err)
	}
	defer res.Close()
	n := 0
	for res.Next() {
		n += int(num(res.Record(), "_value"))
	}
	return n, res.Err()
}

// Points returns the points of a measurement whose tags match tags (nil:
// any; a tag asked with the value "" matches points without it) in
// [from, to), in time order; points at the same time by number of tags,
// then by tags, as the embedded store orders them.
//
// It asks in InfluxQL, as the history queries do: a start reads every
// event announced before (cmd/cleanprod pastEvents), and at fleet scale
// Flux's answer of a record per field cost several times as much of both
// processes' CPU.
func (s *Influx) Points(ctx context.Context, measurement string, tags map[string]string, from, to time.Time) ([]Point, error) {
	var where strings.Builder
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		fmt.Fprintf(&where, " AND %s = %s", influxIdent(k), influxString(tags[k]))
	}
	out, err := s.selectPoints(ctx, measurement, from, to, where.String(), " GROUP BY *", nil)
	if err != nil {
		return nil, fmt.Errorf("influx query points: %w", err)
	}
	return out, nil
}

// LatestPoints returns the newest points of measurement with from <= Time
// < to: the n newest of each group of points with the same values of the
// tags by (none: of each series, each set of tags), in time order as
// Points orders them. One InfluxQL query, GROUP BY the tags and ORDER BY
// time DESC LIMIT n, reads each series from its end.
func (s *Influx) LatestPoints(ctx context.Context, measurement string, by []string, n int, from, to time.Time) ([]Point, error) {
	if n <= 0 {
		return nil, nil
	}
	group := "*"
	if len(by) > 0 {
		quoted := make([]string, len(by))
		for i, t := range by {
			quoted[i] = influxIdent(t)
		}
		group = strings.Join(quoted, ", ")
	}
	out, err := s.selectPoints(ctx, measurement, from, to, "", fmt.Sprintf(" GROUP BY %s ORDER BY time DESC LIMIT %d", group, n), by)
	if err != nil {
		return nil, fmt.Errorf("influx latest points: %w", err)
	}
	return out, nil
}

// selectPoints runs SELECT * FROM measurement WHERE time in [from, to)
// and where, then tail (its GROUP BY), and returns the rows as points in
// Points' order. With GROUP BY * every column is a field; grouped by the
// tags by, the other columns that are not fields are the points' other
// tags. InfluxQL's JSON does not tell an integer from a float, so the
// field types are asked first (SHOW FIELD KEYS); a field new since then
// reads by its JSON value.
func (s *Influx) selectPoints(ctx context.Context, measurement string, from, to time.Time, where, tail string, by []string) ([]Point, error) {
	fromNs, toNs := max(clampNanos(from), influxMinNanos), min(clampNanos(to), influxMaxNanos)
	if fromNs >= toNs {
		return nil, nil
	}
	types, err := s.fieldTypes(ctx, measurement)
	if err != nil {
		return nil, err
	}
	if len(types) == 0 {
		return nil, nil // no field: no point
	}
	q := fmt.Sprintf("SELECT * FROM %s WHERE time >= %d AND time < %d%s%s", influxIdent(measurement), fromNs, toNs, where, tail)
	var (
		out    []Point
		tagset map[string]string // the series'
	)
	err = s.influxQL(ctx, q, func(sr *influxSeries, row []json.RawMessage) error {
		if sr.fresh {
			tagset = make(map[string]string, len(sr.tags))
			for k, v := range sr.tags {
				if v != "" { // GROUP BY names every tag key asked, "" where absent
					tagset[k] = v
				}
			}
		}
		p := Point{Measurement: measurement, Tags: maps.Clone(tagset), Fields: make(map[string]any, len(row)-1)}
		for i, c := range sr.columns {
			raw := row[i]
			if c == "time" {
				ns, err := rawInt(raw)
				if err != nil {
					return fmt.Errorf("time: %w", err)
				}
				p.Time = time.Unix(0, ns).UTC()
				continue
			}
			if string(raw) == "null" {
				continue // not a field or tag of this point
			}
			typ, field := types[c]
			if !field && len(by) > 0 {
				v, err := rawString(raw)
				if err != nil {
					return fmt.Errorf("tag %s: %w", c, err)
				}
				if v != "" {
					p.Tags[c] = v
				}
				continue
			}
			v, err := fieldValue(raw, typ)
			if err != nil {
				return fmt.Errorf("field %s: %w", c, err)
			}
			p.Fields[c] = v
		}
		if len(p.Tags) == 0 {
			p.Tags = nil // as the embedded store gives a point without tags
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortPoints(out)
	return out, nil
}

// sortPoints orders points by time, and points at one time by number of
// tags, then by tags, as the embedded store does.
func sortPoints(ps []Point) {
	slices.SortStableFunc(ps, func(a, b Point) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		if c := cmp.Compare(len(a.Tags), len(b.Tags)); c != 0 {
			return c
		}
		ka, _ := appendSeriesKey(nil, "", a.Tags, nil)
		kb, _ := appendSeriesKey(nil, "", b.Tags, nil)
		return bytes.Compare(ka, kb)
	})
}

// fieldTypes returns the type InfluxDB keeps for each field key of
// measurement ("float", "integer", "string", "boolean"; a key with
// several types across shards: the last listed).
func (s *Influx) fieldTypes(ctx context.Context, measurement string) (map[string]string, error) {
	types := map[string]string{}
	err := s.influxQL(ctx, "SHOW FIELD KEYS FROM "+influxIdent(measurement), func(sr *influxSeries, row []json.RawMessage) error {
		if len(row) < 2 {
			return fmt.Errorf("SHOW FIELD KEYS: row of %d columns", len(row))
		}
		k, err := rawString(row[0])
		if err != nil {
			return err
		}
		t, err := rawString(row[1])
		if err != nil {
			return err
		}
		types[k] = t
		return nil
	})
	return types, err
}

// fieldValue decodes one InfluxQL JSON field value of type typ.
func fieldValue(raw json.RawMessage, typ string) (any, error) {
	switch {
	case len(raw) > 0 && raw[0] == '"':
		return rawString(raw)
	case string(raw) == "true" || string(raw) == "false":
		return string(raw) == "true", nil
	case typ == "integer":
		return rawInt(raw)
	}
	return rawFloat(raw)
}

func str(rec *query.FluxRecord, k string) string {
	s, _ := rec.ValueByKey(k).(string)
	return s
}

func num(rec *query.FluxRecord, k string) float64 {
	switch v := rec.ValueByKey(k).(type) {
	case float64:
		return v
	case int64:
		return float64(v)
	case uint64:
		return float64(v)
	}
	return 0
}

// ReadingsOf returns the readings of several meters of one enterprise in
// [from, to] (both ends included), for ingest's check of old readings,
// meter by meter in time order. The read starts at from's hour, as
// Readings' does.
func (s *Influx) ReadingsOf(ctx context.Context, enterprise string, meters []string, from, to time.Time) ([]Reading, error) {
	quoted := make([]string, len(meters))
	for i, m := range meters {
		quoted[i] = fluxString(m)
	}
	// The measurement first, on its own: contains() on a series without a
	// meter tag (an event or score point of the same enterprise) is a type
	// error in Flux, not false.
	q := s.fluxFrom(hourStart(from), to.Add(time.Nanosecond),
		fmt.Sprintf(`r._measurement == %q and r.enterprise == %s`, readingMeasurement, fluxString(enterprise)),
		readingFieldsFlux,
		fmt.Sprintf(`contains(value: r.meter, set: [%s])`, strings.Join(quoted, ", "))) +
		`  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
`
	rs, err := s.queryReadings(ctx, q)
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(rs, func(a, b Reading) int {
		return cmp.Or(cmp.Compare(a.Meter, b.Meter), a.Time.Compare(b.Time))
	})
	for i := 0; i < len(rs); {
		j := i + 1
		for j < len(rs) && rs[j].Meter == rs[i].Meter {
			j++
		}
		chainRegisters(rs[i:j])
		i = j
	}
	return dropBefore(rs, from), nil
}
