package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltChunk is about how many rows one read transaction of EachAggregate
// or EachLatestReading collects before it ends and hands them to the
// callback: the callback runs outside any transaction, so that it may
// take its time (or write to the store) without holding back a writer
// that needs to grow the file, and memory stays bounded by one chunk.
const boltChunk = 4096

// readingScan walks the reading keys meter by meter, over all enterprises
// or only the prefixes of those asked (keys start with the enterprise, so
// other enterprises are never read), across several read transactions.
type readingScan struct {
	ranges [][]byte // key prefixes "enterprise 0x00", sorted; [nil]: all
	ri     int      // range being walked
	pos    []byte   // key the next transaction seeks in ranges[ri]
	hasPos bool     // false: start at the beginning of ranges[ri]
	prefix []byte   // meter prefix handed to visit
}

func newReadingScan(enterprises []string) *readingScan {
	if len(enterprises) == 0 {
		return &readingScan{ranges: [][]byte{nil}}
	}
	s := &readingScan{}
	for _, e := range enterpriseSet(enterprises) {
		s.ranges = append(s.ranges, append([]byte(e), 0))
	}
	return s
}

// meterVisit is called with the cursor on (k, v), the first key of the
// meter at or after the scan's position, and prefix, the meter's key
// prefix (enterprise 0x00 meter 0x00) in the scan's own memory. It
// returns a key of the meter to resume at in the next transaction, or nil
// when it is done with the meter; full ends the transaction.
type meterVisit func(c *bolt.Cursor, k, v, prefix []byte) (resume []byte, full bool, err error)

// step runs visit over meters until it reports full or the scan ends,
// and reports whether the scan is done.
func (s *readingScan) step(ctx context.Context, tx *bolt.Tx, visit meterVisit) (done bool, err error) {
	c := tx.Bucket(bucketReadings).Cursor()
	for ; s.ri < len(s.ranges); s.ri, s.hasPos = s.ri+1, false {
		rp := s.ranges[s.ri]
		var k, v []byte
		switch {
		case s.hasPos:
			k, v = c.Seek(s.pos)
		case rp == nil:
			k, v = c.First()
		default:
			k, v = c.Seek(rp)
		}
		for k != nil && bytes.HasPrefix(k, rp) {
			if err := ctx.Err(); err != nil {
				return false, err
			}
			p, _, _, err := splitReadingKey(k)
			if err != nil {
				return false, err
			}
			s.prefix = append(s.prefix[:0], p...)
			resume, full, err := visit(c, k, v, s.prefix)
			if err != nil {
				return false, err
			}
			if resume != nil {
				s.pos, s.hasPos = append(s.pos[:0], resume...), true
				return false, nil
			}
			k, v = seekPastMeter(c, s.prefix)
			if full {
				if k == nil || !bytes.HasPrefix(k, rp) {
					s.ri, s.hasPos = s.ri+1, false
					return s.ri == len(s.ranges), nil
				}
				s.pos, s.hasPos = append(s.pos[:0], k...), true
				return false, nil
			}
		}
	}
	return true, nil
}

// run walks the whole scan, one read transaction per chunk, calling
// flush after each transaction.
func (s *readingScan) run(ctx context.Context, db *bolt.DB, visit meterVisit, flush func() error) error {
	for {
		var done bool
		err := db.View(func(tx *bolt.Tx) error {
			var err error
			done, err = s.step(ctx, tx, visit)
			return err
		})
		if err != nil {
			return err
		}
		if err := flush(); err != nil {
			return err
		}
		if done {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// EachAggregate calls fn with the aggregates of the readings with
// q.From <= Time < q.To, one per enterprise, meter, quantity, workshop
// and bucket (and kind: a meter whose kind changed within a bucket has a
// row per kind, as in InfluxDB). Buckets without readings are left out.
// Rows come ordered by enterprise and meter and, within a meter, by
// bucket start; a meter that changed quantity or workshop inside a bucket
// has its rows of that bucket in the order the groups first appear. As
// the Aggregate fields say, Sum adds up Delta of every reading, while
// ValueSum and Max look at gauge readings only (they stay 0 for counters
// and delta meters); Count counts every reading.
//
// Only the asked enterprises' keys are read. Rows are collected in read
// transactions of about boltChunk rows and handed to fn between them, so
// fn may block or write to the store; rows of a later chunk may see
// writes made meanwhile. The *Aggregate is reused: fn must not keep it
// after it returns. An error from fn stops the walk and is returned.
func (b *Bolt) EachAggregate(ctx context.Context, q AggregateQuery, fn func(*Aggregate) error) error {
	offset, err := q.check()
	if err != nil {
		return fmt.Errorf("bolt aggregate: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt aggregate: %w", err)
	}
	fromNs, toNs := clampNanos(q.From), clampNanos(q.To)
	if fromNs >= toNs {
		return nil
	}
	step, off := int64(q.Every), int64(offset)
	var (
		dec   readingDecoder
		f     readingFields
		seek  []byte
		out   []Aggregate
		open  []aggGroup // groups of the bucket being summed
		start int64      // its start
	)
	flushBucket := func() {
		for i := range open {
			out = append(out, open[i].Aggregate)
		}
		open = open[:0]
	}
	visit := func(c *bolt.Cursor, k, v, prefix []byte) ([]byte, bool, error) {
		_, ent, meter, err := splitReadingKey(k)
		if err != nil {
			return nil, false, err
		}
		enterprise, meterName := dec.ent.get(ent), dec.meter.get(meter)
		if keyNanos(k) < fromNs {
			seek = binary.BigEndian.AppendUint64(append(seek[:0], prefix...), timeKey(fromNs))
			k, v = c.Seek(seek)
		}
		for ; k != nil && hasMeterPrefix(k, prefix); k, v = c.Next() {
			ns := keyNanos(k)
			if ns >= toNs {
				break
			}
			if err := decodeReadingValue(v, &f); err != nil {
				return nil, false, fmt.Errorf("key %q: %w", k, err)
			}
			bs := bucketStart(ns, step, off)
			if len(open) > 0 && bs != start {
				flushBucket()
				if len(out) >= boltChunk {
					return k, true, nil
				}
			}
			start = bs
			g := findGroup(open, &f)
			if g == nil {
				kind := f.kind
				if f.otherKind != nil {
					kind = dec.kind.get(f.otherKind)
				}
				open = append(open, aggGroup{Aggregate: Aggregate{
					Enterprise: enterprise, Meter: meterName,
					Start: time.Unix(0, bs).UTC(),
				}, gauge: isGaugeKind(kind)})
				g = &open[len(open)-1]
			}
			g.add(&f)
		}
		flushBucket()
		return nil, len(out) >= boltChunk, nil
	}
	err = newReadingScan(q.Enterprises).run(ctx, b.db, visit, func() error {
		open = open[:0] // a chunk ends on a bucket or meter boundary
		return handOn(&out, fn)
	})
	if err != nil {
		return fmt.Errorf("bolt aggregate: %w", err)
	}
	return nil
}

// aggGroup is one row being summed: the readings of one meter in one
// bucket that are amounts (counters and delta meters: their deltas are
// summed), or those that are gauges (their values are). As in InfluxDB,
// where amounts are the delta fields and gauges the value fields, a meter
// whose kind changed inside a bucket has a row for each.
type aggGroup struct {
	Aggregate
	gauge bool
}

// isGaugeKind reports whether readings of kind are measured values (any
// kind but counter and delta), as InfluxDB stores them: in a value field.
func isGaugeKind(kind string) bool { return kind != "counter" && kind != "delta" }

func findGroup(open []aggGroup, f *readingFields) *aggGroup {
	gauge := f.otherKind != nil || isGaugeKind(f.kind)
	for i := range open {
		if open[i].gauge == gauge {
			return &open[i]
		}
	}
	return nil
}

func (g *aggGroup) add(f *readingFields) {
	if !g.gauge {
		g.Sum += f.delta
		g.Count++
		return
	}
	g.ValueSum += f.value
	if g.Count == 0 || f.value > g.Max {
		g.Max = f.value
	}
	g.Count++
}

// EachLatestReading calls fn with, for every meter, its q.PerMeter most
// recent readings with Time >= q.Since (fewer if it has fewer), ordered by
// enterprise and meter and, within a meter, by time: a meter's readings
// come together, oldest first.
//
// Only the asked enterprises' keys are read. Readings are collected in
// read transactions of about boltChunk readings (whole meters) and handed
// to fn between them, so fn may block or write to the store. The *Reading
// is reused: fn must not keep it after it returns. An error from fn
// stops the walk and is returned.
func (b *Bolt) EachLatestReading(ctx context.Context, q LatestQuery, fn func(*Reading) error) error {
	if err := q.check(); err != nil {
		return fmt.Errorf("bolt latest readings: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt latest readings: %w", err)
	}
	sinceNs := clampNanos(q.Since)
	var (
		dec readingDecoder
		out []Reading
	)
	visit := func(c *bolt.Cursor, _, _, prefix []byte) ([]byte, bool, error) {
		// Seek just past the meter's range, step back to its newest
		// reading and walk back in time.
		var k, v []byte
		if next, _ := seekPastMeter(c, prefix); next == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		first := len(out)
		for n := 0; n < q.PerMeter && k != nil && hasMeterPrefix(k, prefix); n++ {
			if keyNanos(k) < sinceNs {
				break
			}
			r, err := dec.decode(k, v)
			if err != nil {
				return nil, false, err
			}
			out = append(out, r)
			k, v = c.Prev()
		}
		reverse(out[first:])
		return nil, len(out) >= boltChunk, nil
	}
	err := newReadingScan(q.Enterprises).run(ctx, b.db, visit, func() error { return handOn(&out, fn) })
	if err != nil {
		return fmt.Errorf("bolt latest readings: %w", err)
	}
	return nil
}

// handOn passes each row gathered in a read transaction to fn, outside
// it, and empties the buffer for the next.
func handOn[T any](buf *[]T, fn func(*T) error) error {
	for i := range *buf {
		if err := fn(&(*buf)[i]); err != nil {
			return err
		}
	}
	*buf = (*buf)[:0]
	return nil
}
