package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// BoltLockTimeout is how long OpenBolt waits for the lock on a file that
// another process holds before it gives up with ErrLocked.
const BoltLockTimeout = 2 * time.Second

var (
	// ErrLocked is returned (wrapped) by OpenBolt when another process
	// holds the bolt file open.
	ErrLocked = errors.New("store: bolt file is locked by another process")

	// ErrCorrupt is returned (wrapped) when a stored key or value cannot
	// be decoded.
	ErrCorrupt = errors.New("store: corrupt stored data")
)

// Bucket names and the on-disk format version this code reads and writes.
var (
	bucketMeta     = []byte("meta")
	bucketReadings = []byte("readings")
	bucketPoints   = []byte("points")
	metaFormatKey  = []byte("format")
)

const boltFormat = 1

// Bolt is the embedded store: one bbolt file holding readings and points.
//
// Readings live in one bucket, keyed
//
//	enterprise 0x00 meter 0x00 time
//
// where time is the reading's Unix nanoseconds, big-endian with the sign
// bit flipped so that keys sort by time within a meter (also before 1970).
// Writing the same (enterprise, meter, time) again overwrites the reading.
// Enterprise and meter names must therefore be non-empty and free of NUL
// bytes.
//
// All methods are safe for concurrent use. Writes (WriteReadings,
// WritePoints, PruneReadings) are serialised by bbolt, one writer at a
// time; reads run concurrently with each other and with the writer, each
// on a consistent snapshot. A read method holds its read transaction for
// the whole query; a long read can delay a writer that needs to grow the
// file. Close waits for running transactions to finish; methods called
// after Close return an error.
type Bolt struct {
	db *bolt.DB
}

// OpenBolt opens the bolt file at path, creating it and its parent
// directory if needed. The file is locked for exclusive use: when another
// process holds it, OpenBolt fails with an error wrapping ErrLocked after
// BoltLockTimeout instead of waiting forever. Every write is fsynced
// before it returns.
func OpenBolt(path string) (*Bolt, error) {
	return openBolt(path, BoltLockTimeout)
}

func openBolt(path string, lockTimeout time.Duration) (*Bolt, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open bolt %q: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: lockTimeout,
		// As etcd does: the map freelist keeps commits cheap as the file
		// grows, and not syncing the freelist saves its pages on every
		// commit; bbolt rebuilds it on open by scanning the file. Neither
		// weakens the durability of the data.
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open bolt %q: %w (gave up after %v): %w", path, ErrLocked, lockTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open bolt %q: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(metaFormatKey); {
		case v == nil:
			if err := meta.Put(metaFormatKey, []byte{boltFormat}); err != nil {
				return err
			}
		case len(v) != 1 || v[0] != boltFormat:
			return fmt.Errorf("unsupported format %v, want [%d]", v, boltFormat)
		}
		for _, name := range [][]byte{bucketReadings, bucketPoints} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open bolt %q: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

// Close waits for running transactions, then closes the file and releases
// its lock. Calling Close again does nothing.
func (b *Bolt) Close() error {
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("bolt close: %w", err)
	}
	return nil
}

// Ping reports whether the store is open and usable.
func (b *Bolt) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt ping: %w", err)
	}
	err := b.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketReadings) == nil || tx.Bucket(bucketPoints) == nil {
			return fmt.Errorf("%w: missing bucket", ErrCorrupt)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bolt ping: %w", err)
	}
	return nil
}

// WriteReadings stores rs in one transaction that is on disk when
// WriteReadings returns: either all readings are stored or none is. A
// reading whose (enterprise, meter, time) is already stored replaces it.
//
// A reading the store cannot hold (empty or NUL-containing enterprise or
// meter, a NaN or infinite value or delta, a time outside the years
// 1678-2262) fails the whole batch with a permanent *WriteError, as
// InfluxDB would refuse it; a failure of the file itself is a temporary
// *WriteError.
func (b *Bolt) WriteReadings(ctx context.Context, rs []Reading) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt write readings: %w", err)
	}
	if len(rs) == 0 {
		return nil
	}
	size, maxKey := 0, 0
	var flagged []Point // invalid readings, kept as points in the same transaction
	for i := range rs {
		r := &rs[i]
		err := checkReading(r)
		if err == nil && r.Invalid {
			flagged = append(flagged, FlaggedPoint(r))
			var n int
			n, err = checkPoint(&flagged[len(flagged)-1])
			size += n
		}
		if err != nil {
			return fmt.Errorf("bolt write readings: %w", &WriteError{
				Err:       fmt.Errorf("reading %d (%q/%q): %w", i, r.Enterprise, r.Meter, err),
				Permanent: true,
			})
		}
		if !r.Invalid {
			size += readingValueMaxLen(r)
		}
		maxKey = max(maxKey, len(r.Enterprise)+len(r.Meter)+10)
	}
	// bbolt copies keys but keeps values until the commit, so values go
	// into one arena for the whole batch and keys into one scratch buffer.
	arena := make([]byte, 0, size)
	key := make([]byte, 0, maxKey)
	err := b.db.Update(func(tx *bolt.Tx) error {
		if len(flagged) > 0 {
			pw := pointWriter{arena: arena}
			bp := tx.Bucket(bucketPoints)
			for i := range flagged {
				if err := pw.put(bp, &flagged[i]); err != nil {
					return fmt.Errorf("put flagged value %d: %w", i, err)
				}
			}
			arena = pw.arena[len(pw.arena):]
		}
		bk := tx.Bucket(bucketReadings)
		for i := range rs {
			r := &rs[i]
			if r.Invalid {
				continue
			}
			key = appendReadingKey(key[:0], r.Enterprise, r.Meter, r.Time.UnixNano())
			start := len(arena)
			arena = appendReadingValue(arena, r)
			if err := bk.Put(key, arena[start:len(arena):len(arena)]); err != nil {
				return fmt.Errorf("put reading %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bolt write readings: %w", &WriteError{Err: err})
	}
	return nil
}

// Readings returns the readings of one meter with from <= Time < to, in
// time order.
func (b *Bolt) Readings(ctx context.Context, enterprise, meter string, from, to time.Time) ([]Reading, error) {
	if err := checkName("enterprise", enterprise); err != nil {
		return nil, fmt.Errorf("bolt readings: %w", err)
	}
	if err := checkName("meter", meter); err != nil {
		return nil, fmt.Errorf("bolt readings: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bolt readings: %w", err)
	}
	fromNs, toNs := clampNanos(from), clampNanos(to)
	if fromNs >= toNs {
		return nil, nil
	}
	var out []Reading
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketReadings).Cursor()
		seek := appendReadingKey(nil, enterprise, meter, fromNs)
		prefix := seek[:len(seek)-8]
		var dec readingDecoder
		for k, v := c.Seek(seek); k != nil && hasMeterPrefix(k, prefix); k, v = c.Next() {
			if keyNanos(k) >= toNs {
				break
			}
			r, err := dec.decode(k, v)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bolt readings %s/%s: %w", enterprise, meter, err)
	}
	return out, nil
}

// CountReadings returns how many readings the store holds for enterprise,
// or in all when enterprise is "".
func (b *Bolt) CountReadings(ctx context.Context, enterprise string) (int, error) {
	if enterprise != "" {
		if err := checkName("enterprise", enterprise); err != nil {
			return 0, fmt.Errorf("bolt count readings: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("bolt count readings: %w", err)
	}
	n := 0
	err := b.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketReadings)
		if enterprise == "" {
			n = bk.Stats().KeyN
			return nil
		}
		prefix := append([]byte(enterprise), 0)
		c := bk.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			n++
			if n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("bolt count readings: %w", err)
	}
	return n, nil
}

// pruneBatch bounds the deletions of one PruneReadings transaction, so
// that retention never holds the writer lock (or memory) for long.
const pruneBatch = 10_000

// PruneReadings deletes the readings with Time < before and returns how
// many it deleted. It deletes in transactions of a bounded size, so a
// cancelled ctx or an error leaves the older part deleted; the count
// returned is then what was deleted so far. The file does not shrink:
// bbolt reuses the freed pages for later writes.
func (b *Bolt) PruneReadings(ctx context.Context, before time.Time) (int, error) {
	return b.prune(ctx, before, pruneBatch)
}

// prune is PruneReadings with chunks of up to limit deletions.
func (b *Bolt) prune(ctx context.Context, before time.Time, limit int) (int, error) {
	beforeNs := clampNanos(before)
	total := 0
	var resume []byte
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("bolt prune readings: %w", err)
		}
		n, next, err := b.pruneChunk(beforeNs, resume, limit)
		total += n
		if err != nil {
			return total, fmt.Errorf("bolt prune readings: %w", err)
		}
		if next == nil {
			return total, nil
		}
		resume = next
	}
}

// pruneChunk deletes up to limit readings older than beforeNs, looking at
// meters from the key from on (nil: the first). It returns where to
// resume, or nil when nothing older is left.
func (b *Bolt) pruneChunk(beforeNs int64, from []byte, limit int) (n int, resume []byte, err error) {
	err = b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketReadings)
		c := bk.Cursor()
		var (
			keys   []byte // the keys to delete, back to back
			ends   []int  // where each key in keys ends
			prefix []byte
		)
		k, _ := c.First()
		if from != nil {
			k, _ = c.Seek(from)
		}
		for k != nil && len(ends) < limit {
			p, _, _, err := splitReadingKey(k)
			if err != nil {
				return err
			}
			prefix = append(prefix[:0], p...)
			for ; k != nil && len(ends) < limit && hasMeterPrefix(k, prefix) && keyNanos(k) < beforeNs; k, _ = c.Next() {
				keys = append(keys, k...)
				ends = append(ends, len(keys))
			}
			if len(ends) == limit {
				// This meter may hold more; the next chunk starts here.
				resume = append([]byte(nil), prefix...)
				break
			}
			if k != nil && hasMeterPrefix(k, prefix) {
				k, _ = seekPastMeter(c, prefix)
			}
		}
		start := 0
		for _, end := range ends {
			if err := bk.Delete(keys[start:end]); err != nil {
				return err
			}
			start = end
		}
		n = len(ends)
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return n, resume, nil
}

// checkName reports whether s can be a key component: non-empty, no NUL.
func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s", what)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s %q contains a NUL byte", what, s)
	}
	return nil
}

var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// checkTime reports whether t fits Unix nanoseconds in an int64.
func checkTime(t time.Time) error {
	if t.Before(minTime) || t.After(maxTime) {
		return fmt.Errorf("time %v outside %v .. %v", t, minTime.UTC(), maxTime.UTC())
	}
	return nil
}

func checkReading(r *Reading) error {
	if err := checkName("enterprise", r.Enterprise); err != nil {
		return err
	}
	if err := checkName("meter", r.Meter); err != nil {
		return err
	}
	if n := len(r.Enterprise) + len(r.Meter) + 10; n > bolt.MaxKeySize {
		return fmt.Errorf("key of %d bytes, max %d", n, bolt.MaxKeySize)
	}
	if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) || math.IsNaN(r.Delta) || math.IsInf(r.Delta, 0) {
		return fmt.Errorf("value %v, delta %v: not finite", r.Value, r.Delta)
	}
	return checkTime(r.Time)
}

// clampNanos returns t in Unix nanoseconds, clamped to the int64 range, so
// that query bounds like the zero time mean "from the beginning".
func clampNanos(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return math.MinInt64
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// timeKey maps Unix nanoseconds to a uint64 whose big-endian bytes sort
// like the times.
func timeKey(ns int64) uint64 { return uint64(ns) ^ (1 << 63) }

// keyNanos returns the time of a key that ends in 8 time bytes.
func keyNanos(k []byte) int64 {
	return int64(binary.BigEndian.Uint64(k[len(k)-8:]) ^ (1 << 63))
}

// floorMultiple returns the largest multiple of step <= ns.
func floorMultiple(ns, step int64) int64 {
	m := ns % step
	if m < 0 {
		m += step
	}
	return ns - m
}

func appendReadingKey(dst []byte, enterprise, meter string, ns int64) []byte {
	dst = append(dst, enterprise...)
	dst = append(dst, 0)
	dst = append(dst, meter...)
	dst = append(dst, 0)
	return binary.BigEndian.AppendUint64(dst, timeKey(ns))
}

// splitReadingKey splits a reading key into its meter prefix
// (enterprise 0x00 meter 0x00) and the names in it.
func splitReadingKey(k []byte) (prefix, enterprise, meter []byte, err error) {
	if len(k) < 4+8 {
		return nil, nil, nil, fmt.Errorf("%w: reading key %q too short", ErrCorrupt, k)
	}
	prefix = k[:len(k)-8]
	i := bytes.IndexByte(prefix, 0)
	if i <= 0 || i+2 >= len(prefix) || bytes.IndexByte(prefix[i+1:], 0) != len(prefix)-i-2 {
		return nil, nil, nil, fmt.Errorf("%w: reading key %q malformed", ErrCorrupt, k)
	}
	return prefix, prefix[:i], prefix[i+1 : len(prefix)-1], nil
}

// hasMeterPrefix reports whether k is a reading key of the meter whose
// prefix (enterprise 0x00 meter 0x00) is given.
func hasMeterPrefix(k, prefix []byte) bool {
	return len(k) == len(prefix)+8 && bytes.HasPrefix(k, prefix)
}

// seekPastMeter moves c to the first key after the range of the meter
// whose prefix (enterprise 0x00 meter 0x00) is given: the prefix with its
// final 0x00 turned into 0x01 sorts after every key of the meter and not
// after any key of the next. prefix must be the caller's own memory,
// never a key from the cursor; it is restored before seekPastMeter returns.
func seekPastMeter(c *bolt.Cursor, prefix []byte) (k, v []byte) {
	prefix[len(prefix)-1] = 1
	k, v = c.Seek(prefix)
	prefix[len(prefix)-1] = 0
	return k, v
}

// Reading values are
//
//	version(1)=3 kind value(8) delta(8) flag
//
// with the kinds "counter", "delta" and "gauge" as one byte and any other
// kind as 0 followed by the string, the floats as big-endian IEEE 754
// bits and the flag (HJ 212's data flag, or empty) as uvarint length +
// bytes. Versions 1 (no flag) and 2 (a flag after the delta) came first
// and also held the meter's gateway, quantity and workshop after the
// version byte; they are still read, and those strings skipped: a
// reading is keyed by enterprise, meter and time, and what the registry
// knows of the meter is not part of it.
const (
	readingValueVersion     = 1
	readingValueFlagVersion = 2
	readingValueIDVersion   = 3
)

const (
	kindOther byte = iota
	kindCounter
	kindDelta
	kindGauge
)

func readingValueMaxLen(r *Reading) int {
	return 1 + 3*binary.MaxVarintLen64 + 1 + len(r.Kind) + 16 + len(r.Flag)
}

func appendReadingValue(dst []byte, r *Reading) []byte {
	dst = append(dst, readingValueIDVersion)
	switch r.Kind {
	case "counter":
		dst = append(dst, kindCounter)
	case "delta":
		dst = append(dst, kindDelta)
	case "gauge":
		dst = append(dst, kindGauge)
	default:
		dst = append(dst, kindOther)
		dst = appendString(dst, r.Kind)
	}
	dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(r.Value))
	dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(r.Delta))
	return appendString(dst, r.Flag)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// readingFields is a decoded reading value; its byte slices point into
// the value.
type readingFields struct {
	kind         string // for the known kinds
	otherKind    []byte // for any other kind
	flag         []byte // nil without a flag
	value, delta float64
}

func decodeReadingValue(v []byte, f *readingFields) error {
	d := decoder{b: v}
	ver := d.byte()
	if d.err == nil && (ver < readingValueVersion || ver > readingValueIDVersion) {
		return fmt.Errorf("%w: reading value version %d, want %d to %d", ErrCorrupt, ver, readingValueVersion, readingValueIDVersion)
	}
	if ver < readingValueIDVersion {
		d.bytes() // gateway, quantity and workshop: no longer read
		d.bytes()
		d.bytes()
	}
	f.kind, f.otherKind = "", nil
	switch kind := d.byte(); kind {
	case kindCounter:
		f.kind = "counter"
	case kindDelta:
		f.kind = "delta"
	case kindGauge:
		f.kind = "gauge"
	case kindOther:
		f.otherKind = d.bytes()
	default:
		if d.err == nil {
			return fmt.Errorf("%w: reading kind code %d", ErrCorrupt, kind)
		}
	}
	f.value = math.Float64frombits(d.uint64())
	f.delta = math.Float64frombits(d.uint64())
	f.flag = nil
	if ver >= readingValueFlagVersion {
		if f.flag = d.bytes(); len(f.flag) == 0 {
			f.flag = nil
		}
	}
	if d.err == nil && len(d.b) != 0 {
		return fmt.Errorf("%w: reading value has %d trailing bytes", ErrCorrupt, len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("reading value: %w", d.err)
	}
	return nil
}

// readingDecoder decodes reading keys and values, sharing the strings of
// consecutive readings (mostly of one meter) instead of allocating them
// again for every reading.
type readingDecoder struct {
	ent, meter, kind, flag interned
	f                      readingFields
}

func (d *readingDecoder) decode(k, v []byte) (Reading, error) {
	_, ent, meter, err := splitReadingKey(k)
	if err != nil {
		return Reading{}, err
	}
	if err := decodeReadingValue(v, &d.f); err != nil {
		return Reading{}, fmt.Errorf("key %q: %w", k, err)
	}
	kind := d.f.kind
	if d.f.otherKind != nil {
		kind = d.kind.get(d.f.otherKind)
	}
	return Reading{
		Enterprise: d.ent.get(ent),
		Meter:      d.meter.get(meter),
		Kind:       kind,
		Time:       time.Unix(0, keyNanos(k)).UTC(),
		Value:      d.f.value,
		Delta:      d.f.delta,
		Flag:       d.flag.get(d.f.flag),
	}, nil
}

// interned remembers the last string it made, so that runs of equal byte
// slices become one string.
type interned struct{ s string }

func (c *interned) get(b []byte) string {
	if string(b) != c.s { // no allocation for the comparison
		c.s = string(b)
	}
	return c.s
}

// decoder reads a stored value; the first problem sticks in err and
// later reads return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated %s", ErrCorrupt, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uint64() uint64 {
	if len(d.b) < 8 {
		d.fail("fixed 64-bit number")
		return 0
	}
	u := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return u
}

func (d *decoder) varint() int64 {
	x, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) uvarint() uint64 {
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("string")
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func reverse[S ~[]E, E any](s S) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}

// ReadingsOf returns the readings of several meters of one enterprise in
// [from, to] (both ends included), for ingest's check of old readings.
func (b *Bolt) ReadingsOf(ctx context.Context, enterprise string, meters []string, from, to time.Time) ([]Reading, error) {
	var out []Reading
	for _, m := range meters {
		rs, err := b.Readings(ctx, enterprise, m, from, to.Add(time.Nanosecond))
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}
