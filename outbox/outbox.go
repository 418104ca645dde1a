package outbox

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanprod/cleanprod/internal/atomicfile"
	"github.com/cleanprod/cleanprod/internal/frame"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/store"
)

const (
	// FileName is the outbox's log in Config.Dir.
	FileName = "events.log"
	// RefusedName keeps, one JSON event a line, the events the store
	// refused for good.
	RefusedName = "refused.jsonl"
	// DefaultMaxBytes bounds the undelivered events (about 200,000 of
	// them): a day of a 2,000-plant fleet's events, or every meter of a
	// 100,000-meter fleet going stale during a long store outage.
	DefaultMaxBytes = 64 << 20
	// compactAt is the least file size that is compacted: below it,
	// delivered records cost less than rewriting the file.
	compactAt = 1 << 20
	// maxRecord bounds one record: a length beyond it is damage.
	maxRecord = 1 << 20
)

// Record kinds, the first byte of a record's payload.
const (
	recEvent     = 'E' // uvarint seq, then the event as JSON
	recStored    = 'S' // uvarint seq: every event up to it is in the store
	recPublished = 'P' // uvarint seq: every event up to it is published
)

// ErrFull is returned by Append when the undelivered events already take
// Config.MaxBytes.
var ErrFull = errors.New("outbox: full: events are not being delivered")

// Sink is the store's method the outbox writes events with.
type Sink interface {
	WritePoints(ctx context.Context, ps []store.Point) error
}

// PublishFunc publishes payload on topic (QoS 1) and returns once the
// broker acknowledged it.
type PublishFunc func(ctx context.Context, topic string, payload []byte) error

// Config configures an Outbox. Store is required.
type Config struct {
	// Dir holds the outbox's file ("": the outbox lives in memory only
	// and a crash loses what it holds; serve runs without a data_dir
	// only with an external broker and store).
	Dir string
	// MaxBytes bounds the undelivered events' records (default
	// DefaultMaxBytes); Append beyond it returns ErrFull.
	MaxBytes int64
	// Store receives the events as points of measurement "event".
	Store Sink
	// Publish publishes each stored event on cp/v1/{enterprise}/events
	// (nil: events are only stored).
	Publish PublishFunc
	// Batch is the most events in one store write (default 500).
	Batch int
	// WriteTimeout bounds one store write or publish (default 10s).
	WriteTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries (default
	// 200ms and 30s); a store's Retry-After is honoured.
	MinBackoff, MaxBackoff time.Duration
	// BacklogAge is how long the oldest event may wait before Status
	// reports the outbox as backing up (default 2m).
	BacklogAge time.Duration
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Outbox is a durable queue of events on their way to the store and to
// MQTT (see the package comment). Append, Flush, Status, Replayed and
// Close may be called from any goroutine; Run runs the delivery loops.
type Outbox struct {
	cfg  Config
	log  *slog.Logger
	m    *metrics
	path string // "" without Dir

	mu        sync.Mutex // guards the fields below
	f         *os.File   // the log, opened for appending (nil without Dir)
	size      int64      // bytes in the file
	entries   []entry    // appended and not yet published, in seq order
	live      int64      // bytes of entries' records
	last      uint64     // seq of the last event appended
	stored    uint64     // every event up to it is in the store
	published uint64     // every event up to it is published
	fileErr   error      // the last write to the file failed
	full      bool       // the last Append was refused for MaxBytes
	closed    bool
	progress  chan struct{} // closed (and replaced) when published advances
	buf       []byte

	replayed []scoring.Event // what the file held at Open

	storeWake chan struct{} // cap 1: events wait for the store
	pubWake   chan struct{} // cap 1: events wait for MQTT
}

// entry is an event not yet published.
type entry struct {
	seq  uint64
	ev   scoring.Event
	size int64     // bytes of its record
	at   time.Time // when it was appended (for a replayed one: Open)
}

// Open opens (or creates) the outbox in cfg.Dir and reads back what it
// holds: the events not yet delivered come first, before anything
// appended now. A damaged tail is truncated and logged; nothing in the
// file makes Open panic. Only a file that cannot be read or written is
// an error.
func Open(cfg Config) (*Outbox, error) {
	if cfg.Store == nil {
		return nil, errors.New("outbox: open: Store is required")
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.WriteTimeout, 10*time.Second)
	def(&cfg.MinBackoff, 200*time.Millisecond)
	def(&cfg.MaxBackoff, 30*time.Second)
	def(&cfg.BacklogAge, 2*time.Minute)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	o := &Outbox{cfg: cfg, log: cfg.Logger, progress: make(chan struct{}),
		storeWake: make(chan struct{}, 1), pubWake: make(chan struct{}, 1)}
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
		o.path = filepath.Join(cfg.Dir, FileName)
		if err := o.load(); err != nil {
			return nil, err
		}
	}
	o.m = newMetrics(cfg.Registerer, o)
	if len(o.entries) > 0 {
		o.log.Info("outbox: events of the last run not yet delivered are delivered first", "events", len(o.entries),
			"not_stored", o.countAbove(o.stored), "path", o.path)
		o.signal(o.storeWake)
		o.signal(o.pubWake)
	}
	return o, nil
}

// load reads the file at o.path, truncates a damaged tail and opens it
// for appending.
func (o *Outbox) load() error {
	data, err := os.ReadFile(o.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("outbox: %w", err)
	}
	now := o.cfg.Now()
	var events []entry
	off := 0
	for off < len(data) {
		block, next, whole, err := frame.Next(data[off:], maxRecord)
		var r record
		if whole && err == nil {
			r, err = decodeRecord(block)
		}
		if !whole || err != nil {
			// Damage followed by an intact record is not a write cut
			// short: skip it, loudly. Anything else ends the log.
			if whole && len(next) > 0 && intact(next) {
				o.log.Error("outbox: a damaged record in the middle of the file is skipped (the disk, not a crash)", "path", o.path, "offset", off, "err", err)
				off = len(data) - len(next)
				continue
			}
			why := "cut short"
			if err != nil {
				why = err.Error()
			}
			o.log.Warn("outbox: the file's last record was not written whole (the process stopped while writing it); it is truncated, and the scorer announces that event again if it still holds",
				"path", o.path, "offset", off, "bytes", len(data)-off, "why", why)
			break
		}
		switch r.kind {
		case recEvent:
			// Numbers only rise; one that does not is a batch written
			// twice (a failed append whose cut-back failed too).
			if len(events) == 0 || r.seq > events[len(events)-1].seq {
				events = append(events, entry{seq: r.seq, ev: r.ev, size: int64(len(data) - len(next) - off), at: now})
			}
		case recStored:
			o.stored = max(o.stored, r.seq)
		case recPublished:
			o.published = max(o.published, r.seq)
		}
		o.last = max(o.last, r.seq)
		off = len(data) - len(next)
	}
	o.stored = max(o.stored, o.published)
	for _, en := range events {
		if en.seq > o.published {
			o.entries = append(o.entries, en)
			o.live += en.size
			o.replayed = append(o.replayed, en.ev)
		}
	}
	f, err := os.OpenFile(o.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if int64(off) < int64(len(data)) {
		if err := f.Truncate(int64(off)); err != nil {
			f.Close()
			return fmt.Errorf("outbox: truncate the damaged tail: %w", err)
		}
		f.Sync()
	}
	o.f, o.size = f, int64(off)
	if err := o.compactLocked(); err != nil {
		o.log.Warn("outbox: compaction failed; the file keeps delivered events until the next one", "path", o.path, "err", err)
	}
	return nil
}

// keptEntries and keptBuf bound what the outbox keeps for reuse once a
// burst of events is delivered: a start's first grading announces the
// whole fleet's events at once, and at 2,000 enterprises the steady
// state's heap still held 60 MB of their entries and records a minute
// later (BENCHMARKS.md, "Restart on months of history").
const (
	keptEntries = 4096
	keptBuf     = 1 << 20
)

// Replayed returns the events the file held at Open that were not yet
// delivered: announced by the last process, so a start must count them
// announced (with those the store holds) before the scorer runs.
func (o *Outbox) Replayed() []scoring.Event { return slices.Clone(o.replayed) }

// Append stores evs durably, in order, and returns once they are on
// disk; they are then delivered by Run. It fails with ErrFull when the
// undelivered events take MaxBytes already (a batch is taken whole when
// the outbox is empty), or with the file's error: then nothing of evs is
// kept, and the caller holds them and tries again. Safe for concurrent
// use.
func (o *Outbox) Append(evs []scoring.Event) error {
	if len(evs) == 0 {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return errors.New("outbox: append: closed")
	}
	buf := o.buf[:0]
	add := make([]entry, len(evs))
	now := o.cfg.Now()
	for i, ev := range evs {
		start := len(buf)
		en := entry{seq: o.last + 1 + uint64(i), at: now}
		buf, en.ev = appendEvent(buf, en.seq, ev)
		en.size = int64(len(buf) - start)
		add[i] = en
	}
	o.buf = buf
	if cap(buf) > keptBuf {
		o.buf = nil // a burst's records: not kept as the high-water mark
	}
	n := int64(len(buf))
	if o.live > 0 && o.live+n > o.cfg.MaxBytes {
		o.m.refusals.WithLabelValues("full").Inc()
		o.full = true
		return ErrFull
	}
	if o.f != nil {
		_, err := o.f.Write(buf)
		if err == nil {
			err = o.f.Sync()
		}
		if err != nil {
			// Part of buf may be in the file: cut it back, so that a
			// retried batch is not there twice.
			o.f.Truncate(o.size)
			o.fileErr = err
			o.m.refusals.WithLabelValues("file").Inc()
			return fmt.Errorf("outbox: append: %w", err)
		}
		o.size += n
	}
	o.fileErr, o.full = nil, false
	o.entries = append(o.entries, add...)
	o.live += n
	o.last += uint64(len(evs))
	o.signal(o.storeWake)
	return nil
}

// Status returns nil while the outbox delivers, or why it does not: full,
// its file failing, or its oldest event waiting longer than BacklogAge
// (the store or the broker down). For /readyz.
func (o *Outbox) Status() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fileErr != nil {
		return fmt.Errorf("outbox: the file cannot be written; events are held by the scorer: %w", o.fileErr)
	}
	if len(o.entries) == 0 {
		return nil
	}
	if o.full {
		return fmt.Errorf("outbox full: %d events wait for delivery; new events are held by the scorer", len(o.entries))
	}
	if age := o.cfg.Now().Sub(o.entries[0].at); age > o.cfg.BacklogAge {
		return fmt.Errorf("outbox backing up: %d events wait for delivery (%d for the store), the oldest for %s",
			len(o.entries), o.countAbove(o.stored), age.Round(time.Second))
	}
	return nil
}

// Flush waits until every event appended before it was called is
// published (stored, without Publish), or ctx ends; then it returns how
// many of them are left. Run must be running for anything to move.
func (o *Outbox) Flush(ctx context.Context) (left int) {
	o.mu.Lock()
	target := o.last
	for {
		if o.published >= target {
			o.mu.Unlock()
			return 0
		}
		wait := o.progress
		o.mu.Unlock()
		select {
		case <-ctx.Done():
			o.mu.Lock()
			defer o.mu.Unlock()
			return o.countBetween(o.published, target)
		case <-wait:
		}
		o.mu.Lock()
	}
}

// Close closes the file; what is not delivered stays in it for the next
// Open. Call it after Run returned.
func (o *Outbox) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	if o.f == nil {
		return nil
	}
	err := o.f.Close()
	o.f = nil
	return err
}

func (o *Outbox) signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// countAbove counts the entries with a seq above seq. With o.mu held.
func (o *Outbox) countAbove(seq uint64) int {
	i, _ := slices.BinarySearchFunc(o.entries, seq+1, func(e entry, s uint64) int { return cmp.Compare(e.seq, s) })
	return len(o.entries) - i
}

// countBetween counts the entries with from < seq <= to. With o.mu held.
func (o *Outbox) countBetween(from, to uint64) int {
	return o.countAbove(from) - o.countAbove(to)
}

// take returns up to n entries with a seq above from and at most to.
// With o.mu held.
func (o *Outbox) take(from, to uint64, n int) []entry {
	i := len(o.entries) - o.countAbove(from)
	var out []entry
	for ; i < len(o.entries) && len(out) < n && o.entries[i].seq <= to; i++ {
		out = append(out, o.entries[i])
	}
	return out
}

// mark records that every event up to seq is stored (kind recStored) or
// published (recPublished), in memory and then in the file (synced). A
// file that fails is counted and logged: a restart then delivers those
// events again, which the store absorbs.
func (o *Outbox) mark(kind byte, seq uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch kind {
	case recStored:
		if seq <= o.stored {
			return
		}
		o.stored = seq
		o.signal(o.pubWake)
	case recPublished:
		if seq <= o.published {
			return
		}
		o.published = seq
		o.stored = max(o.stored, seq)
		i := len(o.entries) - o.countAbove(seq)
		for _, en := range o.entries[:i] {
			o.live -= en.size
		}
		o.entries = slices.Delete(o.entries, 0, i)
		if cap(o.entries) > keptEntries && len(o.entries) < cap(o.entries)/4 {
			// A burst (a first grading of the fleet) is delivered: its
			// backing array goes too, rather than stay as the high-water
			// mark.
			o.entries = slices.Clone(o.entries)
		}
		close(o.progress)
		o.progress = make(chan struct{})
	}
	if o.f == nil {
		return
	}
	o.buf = frame.Append(o.buf[:0], binary.AppendUvarint([]byte{kind}, seq))
	_, err := o.f.Write(o.buf)
	if err == nil {
		err = o.f.Sync()
	}
	if err != nil {
		o.f.Truncate(o.size)
		o.m.failures.WithLabelValues("file").Inc()
		o.log.Warn("outbox: recording delivery failed; a restart delivers these events again", "path", o.path, "err", err)
		return
	}
	o.size += int64(len(o.buf))
	if err := o.compactLocked(); err != nil {
		o.m.failures.WithLabelValues("file").Inc()
		o.log.Warn("outbox: compaction failed; the file keeps delivered events until the next one", "path", o.path, "err", err)
	}
}

// compactLocked rewrites the file with the undelivered events only, once
// delivered ones take more than half of a file over compactAt. With o.mu
// held.
func (o *Outbox) compactLocked() error {
	if o.f == nil || o.size < compactAt || o.size-o.live < o.size/2 {
		return nil
	}
	var buf []byte
	buf = frame.Append(buf, binary.AppendUvarint([]byte{recStored}, o.stored))
	buf = frame.Append(buf, binary.AppendUvarint([]byte{recPublished}, o.published))
	for i := range o.entries {
		buf, _ = appendEvent(buf, o.entries[i].seq, o.entries[i].ev)
	}
	if err := atomicfile.WriteFile(o.path, buf, 0o600); err != nil {
		return err
	}
	f, err := os.OpenFile(o.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		// The new file is in place but cannot be appended to: appends
		// fail (and are held by the scorer) until a restart.
		o.f.Close()
		o.f = nil
		o.fileErr = err
		return err
	}
	o.f.Close()
	o.f, o.size = f, int64(len(buf))
	return nil
}

// appendEvent appends ev's record with seq to buf; it returns the event
// as recorded (non-finite values, which neither JSON nor the store
// holds, become 0).
func appendEvent(buf []byte, seq uint64, ev scoring.Event) ([]byte, scoring.Event) {
	finite := func(v *float64) {
		if math.IsNaN(*v) || math.IsInf(*v, 0) {
			*v = 0
		}
	}
	finite(&ev.OldValue)
	finite(&ev.NewValue)
	p := binary.AppendUvarint([]byte{recEvent}, seq)
	js, err := json.Marshal(ev)
	if err != nil {
		// Reasons with values JSON cannot hold: the event goes without
		// them (the code still restores).
		ev.Reasons = nil
		js, _ = json.Marshal(ev)
	}
	return frame.Append(buf, append(p, js...)), ev
}

// record is one decoded record.
type record struct {
	kind byte
	seq  uint64
	ev   scoring.Event
}

func decodeRecord(b []byte) (record, error) {
	if len(b) < 2 {
		return record{}, errors.New("record too short")
	}
	r := record{kind: b[0]}
	seq, n := binary.Uvarint(b[1:])
	if n <= 0 {
		return record{}, errors.New("bad sequence number")
	}
	r.seq = seq
	rest := b[1+n:]
	switch r.kind {
	case recEvent:
		if err := json.Unmarshal(rest, &r.ev); err != nil {
			return record{}, fmt.Errorf("event: %w", err)
		}
		if r.ev.Enterprise == "" || r.ev.Kind == "" {
			return record{}, errors.New("event without enterprise or kind")
		}
	case recStored, recPublished:
		if len(rest) != 0 {
			return record{}, errors.New("bytes left over")
		}
	default:
		return record{}, fmt.Errorf("unknown record kind %q", r.kind)
	}
	return r, nil
}

// intact reports whether data starts with a whole record whose checksum
// matches and that decodes.
func intact(data []byte) bool {
	block, _, whole, err := frame.Next(data, maxRecord)
	if !whole || err != nil {
		return false
	}
	_, err = decodeRecord(block)
	return err == nil
}

// Announced merges the event points read back from the store (which may
// name a point twice) with the events an outbox replayed (Replayed),
// oldest first, each event once:
// what a start passes to scoring.Engine.Restore. An event in the outbox
// and not yet in the store was announced all the same; one in both (it
// was stored, and the outbox had not yet recorded it) is the same point,
// since the store keys points by tags and time.
func Announced(stored []store.Point, replayed []scoring.Event) []scoring.Event {
	type key struct {
		ent, kind, ind, meter string
		at                    int64
	}
	keyOf := func(e scoring.Event) key {
		return key{e.Enterprise, string(e.Kind), e.Indicator, e.Meter, e.Time.UnixNano()}
	}
	seen := make(map[key]bool, len(stored))
	events := make([]scoring.Event, 0, len(stored)+len(replayed))
	for _, p := range stored {
		if e, ok := scoring.EventFromPoint(p); ok && !seen[keyOf(e)] {
			events = append(events, e)
			seen[keyOf(e)] = true
		}
	}
	for _, e := range replayed {
		if k := keyOf(e); !seen[k] {
			seen[k] = true
			events = append(events, e)
		}
	}
	slices.SortStableFunc(events, func(a, b scoring.Event) int { return a.Time.Compare(b.Time) })
	return events
}
