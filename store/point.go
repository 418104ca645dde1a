package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Point is one generic time-series point, the shape of an InfluxDB point:
// the scoring outputs (indicator values, scores, events) are stored as
// points so that the embedded store can hold them like InfluxDB
// measurements.
//
// A point is identified by its measurement, tags and time: writing a
// point with the same identity replaces the stored one, fields and all.
// A tag with an empty value counts as absent, as in InfluxDB.
type Point struct {
	Measurement string
	Tags        map[string]string
	// Fields holds float64, int64, string or bool values, which come back
	// with the same types. An int is accepted and comes back as int64, as
	// from InfluxDB; NaN and infinite floats are refused, as by InfluxDB.
	Fields map[string]any
	Time   time.Time
}

// WritePoints stores ps in one transaction that is on disk when
// WritePoints returns: either all points are stored or none is.
//
// A point the store cannot hold (empty measurement, tag key or field
// name; a NUL byte in a measurement, tag key or tag value; no fields; a
// field of another type or a NaN or infinite float; a time outside the
// years 1678-2262) fails the whole batch with a permanent *WriteError, as
// InfluxDB would refuse it; a failure of the file itself is a temporary
// *WriteError.
func (b *Bolt) WritePoints(ctx context.Context, ps []Point) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt write points: %w", err)
	}
	if len(ps) == 0 {
		return nil
	}
	size := 0
	for i := range ps {
		n, err := checkPoint(&ps[i])
		if err != nil {
			return fmt.Errorf("bolt write points: %w", &WriteError{
				Err:       fmt.Errorf("point %d (%q): %w", i, ps[i].Measurement, err),
				Permanent: true,
			})
		}
		size += n
	}
	pw := pointWriter{arena: make([]byte, 0, size)}
	err := b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketPoints)
		for i := range ps {
			if err := pw.put(bk, &ps[i]); err != nil {
				return fmt.Errorf("put point %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bolt write points: %w", &WriteError{Err: err})
	}
	return nil
}

// pointWriter puts points that checkPoint accepted into the points bucket.
// Their values go into one arena, which must outlive the transaction
// (bbolt keeps values until the commit), the keys into a scratch buffer.
type pointWriter struct {
	arena, key []byte
	names      []string
}

func (w *pointWriter) put(bk *bolt.Bucket, p *Point) error {
	w.key, w.names = appendSeriesKey(w.key[:0], p.Measurement, p.Tags, w.names)
	w.key = binary.BigEndian.AppendUint64(w.key, timeKey(p.Time.UnixNano()))
	start := len(w.arena)
	w.arena, w.names = appendFields(w.arena, p.Fields, w.names)
	return bk.Put(w.key, w.arena[start:len(w.arena):len(w.arena)])
}

// Points returns the points of measurement with from <= Time < to whose
// tags include all of tags (nil or empty: any point; a tag asked with the
// value "" matches points without that tag), in time order. Points at
// the same time come in a fixed order: by number of tags, then by tags.
func (b *Bolt) Points(ctx context.Context, measurement string, tags map[string]string, from, to time.Time) ([]Point, error) {
	var out []Point
	err := b.eachSeries(ctx, measurement, tags, from, to, func(c *bolt.Cursor, series []byte, stags []string, fromNs, toNs int64) error {
		for k, v := c.Seek(binary.BigEndian.AppendUint64(series, timeKey(fromNs))); inSeries(k, series); k, v = c.Next() {
			ns := keyNanos(k)
			if ns >= toNs {
				break
			}
			p, err := decodePoint(measurement, stags, k, v)
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bolt points %s: %w", measurement, err)
	}
	// Series come in key order; a stable sort by time keeps that order
	// among points at the same time.
	slices.SortStableFunc(out, func(a, b Point) int { return a.Time.Compare(b.Time) })
	return out, nil
}

// LatestPoints returns the newest points of measurement with from <= Time
// < to: the n newest of each group of points with the same values of the
// tags by (none: of each series, each set of tags), in time order as
// Points orders them. A start reads back what it announced before with
// it, bounded by the series and not by the history's length.
func (b *Bolt) LatestPoints(ctx context.Context, measurement string, by []string, n int, from, to time.Time) ([]Point, error) {
	if n <= 0 {
		return nil, nil
	}
	groups := map[string][]Point{}
	var order []string
	err := b.eachSeries(ctx, measurement, nil, from, to, func(c *bolt.Cursor, series []byte, stags []string, fromNs, toNs int64) error {
		group := string(series) // per series
		if len(by) > 0 {
			var g strings.Builder
			for _, t := range by {
				g.WriteString(seriesTag(stags, t))
				g.WriteByte(0)
			}
			group = g.String()
		}
		// The series' n newest, newest first: the group's n newest are
		// among its series'.
		k, v := c.Seek(binary.BigEndian.AppendUint64(series, timeKey(toNs)))
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for taken := 0; taken < n && inSeries(k, series) && keyNanos(k) >= fromNs; k, v = c.Prev() {
			p, err := decodePoint(measurement, stags, k, v)
			if err != nil {
				return err
			}
			if _, ok := groups[group]; !ok {
				order = append(order, group)
			}
			groups[group] = append(groups[group], p)
			taken++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bolt latest points %s: %w", measurement, err)
	}
	var out []Point
	for _, g := range order {
		ps := groups[g]
		// Within a group, series in key order, each newest first: the
		// stable sort keeps the key order among points at one time.
		slices.SortStableFunc(ps, func(a, b Point) int { return b.Time.Compare(a.Time) })
		out = append(out, ps[:min(n, len(ps))]...)
	}
	sortPoints(out)
	return out, nil
}

// eachSeries calls fn with a cursor and every series of measurement whose
// tags include tags (as Points matches them), in key order, within one
// read transaction; fromNs and toNs are from and to clamped. fn may
// append to series (a copy is made) and move the cursor.
func (b *Bolt) eachSeries(ctx context.Context, measurement string, tags map[string]string, from, to time.Time,
	fn func(c *bolt.Cursor, series []byte, stags []string, fromNs, toNs int64) error) error {
	if err := checkName("measurement", measurement); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fromNs, toNs := clampNanos(from), clampNanos(to)
	if fromNs >= toNs {
		return nil
	}
	return b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketPoints).Cursor()
		mprefix := append([]byte(measurement), 0)
		var (
			seek  []byte
			stags []string // the series' tags: key, value, key, value...
		)
		for k, _ := c.Seek(mprefix); k != nil && bytes.HasPrefix(k, mprefix); {
			if err := ctx.Err(); err != nil {
				return err
			}
			if len(k) < len(mprefix)+1+8 {
				return fmt.Errorf("%w: point key %q too short", ErrCorrupt, k)
			}
			series := k[:len(k)-8]
			var err error
			stags, err = parseSeriesTags(series[len(mprefix):], stags[:0])
			if err != nil {
				return fmt.Errorf("point key %q: %w", k, err)
			}
			seek = append(seek[:0], series...)
			series = seek
			if matchTags(stags, tags) {
				if err := fn(c, series[:len(series):len(series)], stags, fromNs, toNs); err != nil {
					return err
				}
			}
			// Past the series: keys are series + 8 time bytes and no
			// series is a prefix of another, so series + 9 x 0xff sorts
			// after this series' keys and before the next series.
			seek = append(seek[:len(series)], 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
			k, _ = c.Seek(seek)
		}
		return nil
	})
}

// inSeries reports whether k is a point key of series.
func inSeries(k, series []byte) bool {
	return k != nil && len(k) == len(series)+8 && bytes.HasPrefix(k, series)
}

// decodePoint decodes the point at key k (of a series with tags stags)
// with fields v.
func decodePoint(measurement string, stags []string, k, v []byte) (Point, error) {
	fields, err := decodeFields(v)
	if err != nil {
		return Point{}, fmt.Errorf("point key %q: %w", k, err)
	}
	p := Point{Measurement: measurement, Fields: fields, Time: time.Unix(0, keyNanos(k)).UTC()}
	if len(stags) > 0 {
		p.Tags = make(map[string]string, len(stags)/2)
		for i := 0; i < len(stags); i += 2 {
			p.Tags[stags[i]] = stags[i+1]
		}
	}
	return p, nil
}

// seriesTag returns the value of tag key in stags ("" if absent).
func seriesTag(stags []string, key string) string {
	for i := 0; i < len(stags); i += 2 {
		if stags[i] == key {
			return stags[i+1]
		}
	}
	return ""
}

// matchTags reports whether the series tags (key, value pairs, keys
// sorted) contain every tag in want.
func matchTags(stags []string, want map[string]string) bool {
	for k, v := range want {
		if seriesTag(stags, k) != v {
			return false
		}
	}
	return true
}

// checkPoint validates p and returns an upper bound of its encoded
// fields' length.
func checkPoint(p *Point) (int, error) {
	if err := checkName("measurement", p.Measurement); err != nil {
		return 0, err
	}
	keyLen := len(p.Measurement) + 1 + binary.MaxVarintLen64 + 8
	for k, v := range p.Tags {
		if err := checkName("tag key", k); err != nil {
			return 0, err
		}
		if strings.IndexByte(v, 0) >= 0 {
			return 0, fmt.Errorf("tag %s value %q contains a NUL byte", k, v)
		}
		keyLen += len(k) + len(v) + 2
	}
	if keyLen > bolt.MaxKeySize {
		return 0, fmt.Errorf("key of %d bytes, max %d", keyLen, bolt.MaxKeySize)
	}
	if err := checkTime(p.Time); err != nil {
		return 0, err
	}
	if len(p.Fields) == 0 {
		return 0, fmt.Errorf("no fields")
	}
	n := 1 + binary.MaxVarintLen64
	for name, v := range p.Fields {
		if name == "" {
			return 0, fmt.Errorf("empty field name")
		}
		n += binary.MaxVarintLen64 + len(name) + 1
		switch v := v.(type) {
		case float64:
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return 0, fmt.Errorf("field %s: %v is not finite", name, v)
			}
			n += 8
		case int64, int:
			n += binary.MaxVarintLen64
		case string:
			n += binary.MaxVarintLen64 + len(v)
		case bool:
			n++
		default:
			return 0, fmt.Errorf("field %s has type %T, want float64, int64 (or int), string or bool", name, v)
		}
	}
	return n, nil
}

// Point keys are the series followed by the time as in reading keys:
//
//	measurement 0x00 uvarint(number of tags) (key 0x00 value 0x00)...
//
// with tags sorted by key and empty tag values left out. Names hold no
// NUL and the tag count fixes where a series ends, so no series is a
// prefix of another.
func appendSeriesKey(dst []byte, measurement string, tags map[string]string, scratch []string) ([]byte, []string) {
	keys := scratch[:0]
	for k, v := range tags {
		if v != "" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	dst = append(dst, measurement...)
	dst = append(dst, 0)
	dst = binary.AppendUvarint(dst, uint64(len(keys)))
	for _, k := range keys {
		dst = append(dst, k...)
		dst = append(dst, 0)
		dst = append(dst, tags[k]...)
		dst = append(dst, 0)
	}
	return dst, keys
}

// parseSeriesTags parses the part of a series key after the measurement's
// 0x00 and appends its tags to dst as key, value pairs.
func parseSeriesTags(b []byte, dst []string) ([]string, error) {
	n, l := binary.Uvarint(b)
	if l <= 0 || n > uint64(len(b)) {
		return dst, fmt.Errorf("%w: series tag count", ErrCorrupt)
	}
	b = b[l:]
	for range n * 2 {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return dst, fmt.Errorf("%w: series tags truncated", ErrCorrupt)
		}
		dst = append(dst, string(b[:i]))
		b = b[i+1:]
	}
	if len(b) != 0 {
		return dst, fmt.Errorf("%w: series has %d trailing bytes", ErrCorrupt, len(b))
	}
	return dst, nil
}

// Point values are
//
//	version(1) uvarint(number of fields) (name type payload)...
//
// with fields sorted by name, names as uvarint length + bytes, and per
// type: float64 as 8 big-endian IEEE 754 bytes, int64 as a zig-zag
// varint, string as uvarint length + bytes, bool as one byte 0 or 1.
const pointValueVersion = 1

const (
	fieldFloat byte = iota + 1
	fieldInt
	fieldString
	fieldBool
)

// appendFields appends the encoding of fields, which checkPoint accepted.
func appendFields(dst []byte, fields map[string]any, scratch []string) ([]byte, []string) {
	names := slices.AppendSeq(scratch[:0], maps.Keys(fields))
	slices.Sort(names)
	dst = append(dst, pointValueVersion)
	dst = binary.AppendUvarint(dst, uint64(len(names)))
	for _, name := range names {
		dst = appendString(dst, name)
		switch v := fields[name].(type) {
		case float64:
			dst = append(dst, fieldFloat)
			dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(v))
		case int64:
			dst = append(dst, fieldInt)
			dst = binary.AppendVarint(dst, v)
		case int:
			dst = append(dst, fieldInt)
			dst = binary.AppendVarint(dst, int64(v))
		case string:
			dst = append(dst, fieldString)
			dst = appendString(dst, v)
		case bool:
			dst = append(dst, fieldBool)
			if v {
				dst = append(dst, 1)
			} else {
				dst = append(dst, 0)
			}
		}
	}
	return dst, names
}

func decodeFields(v []byte) (map[string]any, error) {
	d := decoder{b: v}
	if ver := d.byte(); d.err == nil && ver != pointValueVersion {
		return nil, fmt.Errorf("%w: point value version %d, want %d", ErrCorrupt, ver, pointValueVersion)
	}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b))/3 { // a field takes >= 3 bytes
		return nil, fmt.Errorf("%w: point value claims %d fields in %d bytes", ErrCorrupt, n, len(d.b))
	}
	fields := make(map[string]any, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		name := string(d.bytes())
		switch typ := d.byte(); typ {
		case fieldFloat:
			fields[name] = math.Float64frombits(d.uint64())
		case fieldInt:
			fields[name] = d.varint()
		case fieldString:
			fields[name] = string(d.bytes())
		case fieldBool:
			switch c := d.byte(); c {
			case 0, 1:
				fields[name] = c == 1
			default:
				if d.err == nil {
					return nil, fmt.Errorf("%w: field %s bool byte %d", ErrCorrupt, name, c)
				}
			}
		default:
			if d.err == nil {
				return nil, fmt.Errorf("%w: field %s type code %d", ErrCorrupt, name, typ)
			}
		}
	}
	if d.err != nil {
		return nil, fmt.Errorf("point value: %w", d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: point value has %d trailing bytes", ErrCorrupt, len(d.b))
	}
	return fields, nil
}
