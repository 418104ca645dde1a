package scoring

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cleanprod/cleanprod/internal/atomicfile"
	"github.com/cleanprod/cleanprod/internal/frame"
	"github.com/cleanprod/cleanprod/store"
)

// Checkpoints: a restart that resumes rather than refills.
//
// Refilling the windows reads every bucket of every meter back from the
// store, which at fleet scale takes minutes (the store aggregates tens of
// thousands of rows a second). So the engine writes its windows to a file
// in Config.CheckpointDir every CheckpointEvery, and a start loads them and
// reads from the store only the buckets that changed after the file was
// written.
//
// Which buckets changed is kept by a journal beside the file. Ingest
// numbers its store writes in the order it hands them to the engine; before
// a write goes to the store, Intend appends to the journal (and syncs it)
// the enterprises and buckets of the write that the journal has not named
// since the last checkpoint. A checkpoint says through which write number
// the windows hold everything (every write up to it was observed and
// applied). At start, the buckets named by journal records after that
// number, or by a later process (a generation), are cleared and read again
// from the store; the rest of each window is exact as loaded. Reading a
// bucket again is idempotent, so a checkpoint may hold more than it claims
// but never less: whatever reached the store after it was named in the
// journal first.
//
// An enterprise whose layout changed (a registry or standard edit), one
// missing from the file, or one with more changed buckets than a refill
// would cost (resumeMaxDirty) is refilled as before. A damaged file or
// journal, or one written for other windows, is ignored: everything is
// refilled. Resumed enterprises are exact before ingest starts, so their
// readings are applied at once, with no ingest hold at the end.

const (
	checkpointName    = "scoring-windows.ckpt"
	journalName       = "scoring-windows.journal"
	checkpointMagic   = "cleanprod scoring windows\n"
	checkpointVersion = 1
	// resumeMaxDirty bounds the changed finest buckets of an enterprise
	// that is resumed rather than refilled: two days of hours.
	resumeMaxDirty = 48
)

// ckptHeader opens a checkpoint file (JSON, one line).
type ckptHeader struct {
	Version     int       `json:"version"`
	Windows     string    `json:"windows"` // windowsPrint of the standard
	Store       string    `json:"store"`   // Config.CheckpointStore
	Generation  uint64    `json:"generation"`
	Through     uint64    `json:"through"` // every write up to it applied
	Written     time.Time `json:"written"`
	Enterprises int       `json:"enterprises"`
}

// windowsPrint identifies the shape of std's windows: a checkpoint of
// other windows is not loaded.
func windowsPrint(std *Standard) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "v%d utc=%d", checkpointVersion, std.UTCOffset)
	for _, w := range std.Windows {
		fmt.Fprintf(h, " %d/%d", w.Length, w.Bucket)
	}
	return strconv.FormatUint(h.Sum64(), 16)
}

// layoutPrint identifies an enterprise's layout: a checkpoint of another
// layout is not loaded for it.
func layoutPrint(l *layout) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d %d %d %q %q", l.tracks, l.gauges, l.rows, l.names, l.meter)
	for _, id := range slices.Sorted(maps.Keys(l.meters)) {
		mb := l.meters[id]
		fmt.Fprintf(h, " %q %t %v %d", id, mb.gauge, mb.tracks, mb.row)
	}
	return h.Sum64()
}

// An enterprise's block in the file: its id, layout print and shape, then
// each window as encodeWindow writes it; blocks are framed with their
// length and checksum.

// enc appends varints and fixed words to a block.
type enc struct{ p []byte }

func (c *enc) uvarint(v uint64) { c.p = binary.AppendUvarint(c.p, v) }
func (c *enc) varint(v int64)   { c.p = binary.AppendVarint(c.p, v) }
func (c *enc) u64(v uint64)     { c.p = binary.LittleEndian.AppendUint64(c.p, v) }
func (c *enc) str(s string) {
	c.uvarint(uint64(len(s)))
	c.p = append(c.p, s...)
}

// dec reads what enc wrote; the first problem sticks in err.
type dec struct {
	p   []byte
	err error
}

var errShort = errors.New("cut short")

func (c *dec) uvarint() uint64 {
	if c.err != nil {
		return 0
	}
	v, n := binary.Uvarint(c.p)
	if n <= 0 {
		c.err = errShort
		return 0
	}
	c.p = c.p[n:]
	return v
}

// varint undoes binary.AppendVarint's zig-zag encoding.
func (c *dec) varint() int64 {
	u := c.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

func (c *dec) u64() uint64 {
	if c.err != nil {
		return 0
	}
	if len(c.p) < 8 {
		c.err = errShort
		return 0
	}
	v := binary.LittleEndian.Uint64(c.p)
	c.p = c.p[8:]
	return v
}

// count reads a length and checks it against limit.
func (c *dec) count(limit int) int {
	v := c.uvarint()
	if c.err == nil && v > uint64(limit) {
		c.err = fmt.Errorf("a count of %d where at most %d fit", v, limit)
		return 0
	}
	return int(v)
}

func (c *dec) str() string {
	n := c.count(len(c.p))
	if c.err != nil {
		return ""
	}
	s := string(c.p[:n])
	c.p = c.p[n:]
	return s
}

// encodeWindow writes w's contents: its head, each track's buckets with
// data (value bits and, on gauge tracks, readings) and each presence row's
// marked buckets, as bucket numbers relative to the one before.
func encodeWindow(c *enc, w *window) {
	if !w.init {
		c.uvarint(0)
		return
	}
	c.uvarint(1)
	c.varint(w.head)
	for tr := range w.data {
		t := &w.data[tr]
		from, to := w.span(t)
		n := 0
		for b := from; b <= to; b++ {
			if _, ok := t.index(b); ok {
				n++
			}
		}
		c.uvarint(uint64(n))
		prev := w.first() - 1
		for b := from; b <= to; b++ {
			i, ok := t.index(b)
			if !ok {
				continue
			}
			c.uvarint(uint64(b - prev))
			prev = b
			c.u64(math.Float64bits(t.vals[i]))
			if tr < w.gauges {
				c.uvarint(uint64(t.count(i)))
			}
		}
	}
	words := w.words() * 64
	for r := 0; r < w.rows; r++ {
		n := 0
		if w.seen != nil {
			n = int(w.seenN[r])
		}
		c.uvarint(uint64(n))
		prev := w.first() - 1
		for b := w.first(); n > 0 && b <= w.head; b++ {
			if w.seenBit(r*words + w.slot(b)) {
				c.uvarint(uint64(b - prev))
				prev = b
				n--
			}
		}
	}
}

// decodeWindow reads into w (empty, of the layout it was written with)
// what encodeWindow wrote.
func decodeWindow(c *dec, w *window) {
	if c.uvarint() == 0 || c.err != nil {
		return
	}
	w.alloc(c.varint())
	next := func(prev int64) int64 {
		d := c.uvarint()
		b := prev + int64(d)
		if c.err == nil && (d == 0 || d > uint64(w.n) || b > w.head) {
			c.err = fmt.Errorf("bucket %d outside the window (head %d, %d buckets)", b, w.head, w.n)
		}
		return b
	}
	for tr := 0; tr < w.tracks && c.err == nil; tr++ {
		n := c.count(w.n)
		prev := w.first() - 1
		for range n {
			b := next(prev)
			v := math.Float64frombits(c.u64())
			var k uint32
			if tr < w.gauges {
				k = uint32(c.count(math.MaxUint32))
			}
			if c.err != nil {
				return
			}
			w.add(tr, b, v, k)
			prev = b
		}
	}
	for r := 0; r < w.rows && c.err == nil; r++ {
		n := c.count(w.n)
		prev := w.first() - 1
		for range n {
			b := next(prev)
			if c.err != nil {
				return
			}
			w.mark(r, b)
			prev = b
		}
	}
	// Totals are summed again in the order of the window's slots at the
	// next evaluation, as after any eviction.
	w.stale = true
}

// writeCheckpoint writes every enterprise's windows to the checkpoint
// file, as holding every write up to through; then the journal forgets
// what the file holds. Engine goroutine, with no refill running.
func (e *Engine) writeCheckpoint(through uint64) error {
	j := e.journal
	start := time.Now()
	hdr, _ := json.Marshal(ckptHeader{Version: checkpointVersion, Windows: windowsPrint(e.std), Store: e.cfg.CheckpointStore, Generation: j.gen,
		Through: through, Written: e.cfg.Now().UTC(), Enterprises: len(e.order)})
	size := 0
	err := atomicfile.Write(filepath.Join(e.cfg.CheckpointDir, checkpointName), 0o600, func(w io.Writer) error {
		n, err := fmt.Fprintf(w, "%s%s\n", checkpointMagic, hdr)
		size += n
		var c enc
		var out []byte
		for _, es := range e.order {
			if err != nil {
				return err
			}
			c.p = c.p[:0]
			c.str(es.id)
			c.u64(layoutPrint(es.lay))
			c.uvarint(uint64(es.lay.tracks))
			c.uvarint(uint64(es.lay.gauges))
			c.uvarint(uint64(es.lay.rows))
			var newest int64 // 0: none
			if t := es.newest(); !t.IsZero() {
				newest = t.UnixNano()
			}
			c.varint(newest)
			c.uvarint(uint64(len(es.wins)))
			for _, w := range es.wins {
				encodeWindow(&c, w)
			}
			out = frame.Append(out[:0], c.p)
			n, err = w.Write(out)
			size += n
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := j.forget(through); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	e.m.checkpointSeconds.Set(time.Since(start).Seconds())
	e.m.checkpointBytes.Set(float64(size))
	e.m.checkpointTime.SetToCurrentTime()
	e.log.Debug("scoring: windows checkpointed", "enterprises", len(e.order), "bytes", size, "through", through,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// checkpoint writes a checkpoint if one is due and nothing is refilling.
// Engine goroutine.
func (e *Engine) checkpoint(force bool) {
	if e.journal == nil || e.journal.broken() {
		return
	}
	now := e.cfg.Now()
	if !force && now.Sub(e.lastCkpt) < e.cfg.CheckpointEvery {
		return
	}
	e.rmu.Lock()
	refilling := len(e.rbEnts) > 0
	e.rmu.Unlock()
	if refilling || len(e.rbQueue) > 0 {
		return
	}
	e.lastCkpt = now
	e.apply(now) // every observed write in the windows
	if err := e.writeCheckpoint(e.applied); err != nil {
		e.m.checkpointFailures.Inc()
		e.log.Warn("scoring: writing the windows' checkpoint failed; the next start refills from the store what the last one does not hold",
			"dir", e.cfg.CheckpointDir, "err", err)
	}
}

// readCheckpoint reads the checkpoint file's header and the windows of
// each enterprise of the engine whose layout is the one the file was
// written with, decoded into fresh windows, with the newest reading each
// enterprise's windows held. A damaged file is an error.
func (e *Engine) readCheckpoint(path string) (ckptHeader, map[*entState][]*window, map[*entState]time.Time, error) {
	var hdr ckptHeader
	data, err := os.ReadFile(path)
	if err != nil {
		return hdr, nil, nil, err
	}
	rest, ok := bytes.CutPrefix(data, []byte(checkpointMagic))
	if !ok {
		return hdr, nil, nil, errors.New("not a checkpoint of scoring windows")
	}
	line, rest, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return hdr, nil, nil, errors.New("header cut short")
	}
	if err := json.Unmarshal(line, &hdr); err != nil {
		return hdr, nil, nil, fmt.Errorf("header: %w", err)
	}
	if hdr.Version != checkpointVersion || hdr.Windows != windowsPrint(e.std) {
		return hdr, nil, nil, fmt.Errorf("written for other windows (version %d, windows %s)", hdr.Version, hdr.Windows)
	}
	if hdr.Store != e.cfg.CheckpointStore {
		return hdr, nil, nil, fmt.Errorf("written against another store (%s)", hdr.Store)
	}
	out := map[*entState][]*window{}
	held := map[*entState]time.Time{}
	for i := 0; i < hdr.Enterprises; i++ {
		block, next, whole, err := frame.Next(rest, 0)
		if err == nil && !whole {
			err = errShort
		}
		if err != nil {
			return hdr, nil, nil, fmt.Errorf("enterprise %d of %d: %w", i+1, hdr.Enterprises, err)
		}
		rest = next
		c := &dec{p: block}
		id, print := c.str(), c.u64()
		tracks, gauges, rows := c.count(1<<20), c.count(1<<20), c.count(1<<20)
		var newest time.Time
		if ns := c.varint(); ns != 0 {
			newest = time.Unix(0, ns)
		}
		nw := c.count(len(e.std.Windows))
		es := e.ents[id]
		if c.err != nil || es == nil || print != layoutPrint(es.lay) || nw != len(e.std.Windows) ||
			tracks != es.lay.tracks || gauges != es.lay.gauges || rows != es.lay.rows {
			continue // gone, or laid out otherwise: refilled
		}
		wins := make([]*window, nw)
		for wi, spec := range e.std.Windows {
			wins[wi] = newWindow(spec, e.std.UTCOffset, tracks, gauges, rows)
			decodeWindow(c, wins[wi])
		}
		if c.err == nil && len(c.p) != 0 {
			c.err = errors.New("bytes left over")
		}
		if c.err != nil {
			return hdr, nil, nil, fmt.Errorf("enterprise %s: %w", id, c.err)
		}
		out[es], held[es] = wins, newest
	}
	if len(rest) != 0 {
		return hdr, nil, nil, fmt.Errorf("%d bytes after the last enterprise", len(rest))
	}
	return hdr, out, held, nil
}

// newest returns the time of the newest reading of any of the
// enterprise's meters that the engine knows of (see NoteLatest).
func (es *entState) newest() time.Time {
	var t time.Time
	for _, s := range es.lastSeen {
		if s.After(t) {
			t = s
		}
	}
	return t
}

// journal names the buckets of each store write before it is made (see
// the comment at the top of this file). Intend runs on ingest's writers;
// forget on the engine goroutine.
type journal struct {
	mu     sync.Mutex
	path   string
	f      *os.File
	gen    uint64
	finest time.Duration // the standard's finest bucket
	offset time.Duration // its alignment (the local day)
	// named maps the enterprise and bucket start of each bucket written
	// to since the last checkpoint to the last write to it.
	named map[jpair]uint64
	err   error // the journal could not be written: checkpoints stop
	buf   []byte
}

type jpair struct {
	ent string
	at  int64 // bucket start, unix ns
}

type jrecord struct {
	gen, seq uint64
	pairs    []jpair
}

func (j *journal) broken() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err != nil
}

// bucketStart returns the start of t's finest bucket, unix ns.
func (j *journal) bucketStart(t time.Time) int64 {
	b, o := int64(j.finest), int64(j.offset)
	return floorDiv(t.UnixNano()+o, b)*b - o
}

// encode appends r as one framed record.
func (r *jrecord) encode(buf []byte) []byte {
	var c enc
	c.uvarint(r.gen)
	c.uvarint(r.seq)
	c.uvarint(uint64(len(r.pairs)))
	for _, x := range r.pairs {
		c.str(x.ent)
		c.varint(x.at)
	}
	return frame.Append(buf, c.p)
}

// readJournal reads the records of the journal at path; good is the
// length of its intact prefix. A record cut short at the end was being
// written when the process stopped: its write never reached the store
// (Intend returns only once a record is synced), so it is dropped. A
// damaged record is an error, wherever it is: what it named is unknown.
func readJournal(path string) (recs []jrecord, good int64, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	rest := data
	for len(rest) > 0 {
		block, next, whole, err := frame.Next(rest, 0)
		if !whole {
			break // the last record, cut short
		}
		off := len(data) - len(rest)
		if err != nil {
			return nil, 0, fmt.Errorf("journal %s: record at byte %d: %w", path, off, err)
		}
		c := &dec{p: block}
		r := jrecord{gen: c.uvarint(), seq: c.uvarint()}
		n := c.count(len(block))
		for range n {
			r.pairs = append(r.pairs, jpair{c.str(), c.varint()})
		}
		if c.err == nil && len(c.p) != 0 {
			c.err = errors.New("bytes left over")
		}
		if c.err != nil {
			return nil, 0, fmt.Errorf("journal %s: record at byte %d: %w", path, off, c.err)
		}
		recs = append(recs, r)
		rest = next
	}
	return recs, int64(len(data) - len(rest)), nil
}

// append writes r to the journal and syncs it.
func (j *journal) append(r jrecord) error {
	j.buf = r.encode(j.buf[:0])
	if _, err := j.f.Write(j.buf); err != nil {
		return err
	}
	return j.f.Sync()
}

// Intend is told the readings of store write seq before they are written;
// it returns once the journal durably names the buckets they fall in.
// Writes are numbered from 1 in the order Observed is told of them. Safe
// for concurrent use.
func (e *Engine) Intend(seq uint64, rs []store.Reading) {
	j := e.journal
	if j == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return
	}
	var fresh []jpair
	var last jpair
	for i := range rs {
		p := jpair{rs[i].Enterprise, j.bucketStart(rs[i].Time)}
		if p == last {
			continue
		}
		last = p
		if _, ok := j.named[p]; !ok {
			fresh = append(fresh, p)
		}
		j.named[p] = seq
	}
	if len(fresh) == 0 {
		return
	}
	r := jrecord{gen: j.gen, seq: seq, pairs: fresh}
	if err := j.append(r); err != nil {
		j.err = err
		e.m.checkpointFailures.Inc()
		e.log.Warn("scoring: the journal of changed buckets cannot be written; windows are no longer checkpointed and the next start refills them from the store",
			"path", j.path, "err", err)
		// The checkpoint on disk no longer covers what is stored.
		os.Remove(filepath.Join(filepath.Dir(j.path), checkpointName))
		return
	}
}

// Observed tells the engine that store write seq has been handed to
// Observe (or had no readings for it). Safe for concurrent use.
func (e *Engine) Observed(seq uint64) {
	e.mu.Lock()
	if seq == e.observed+1 {
		e.observed = seq
	}
	// else a write was never observed (its batch failed at shutdown):
	// the windows stay claimed only up to before it.
	e.mu.Unlock()
}

// forget rewrites the journal once a checkpoint holds every write up to
// through: it keeps one record naming the buckets of later writes (a
// write may be in flight while the checkpoint is written, and have found
// its buckets named by a record the checkpoint now covers).
func (j *journal) forget(through uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	var left jrecord
	for p, seq := range j.named {
		if seq <= through {
			delete(j.named, p)
			continue
		}
		if left.seq == 0 || seq < left.seq {
			left.seq = seq
		}
		left.pairs = append(left.pairs, p)
	}
	var buf []byte
	if len(left.pairs) > 0 {
		left.gen = j.gen
		buf = left.encode(nil)
	}
	if err := atomicfile.WriteFile(j.path, buf, 0o600); err != nil {
		j.err = err
		return err
	}
	j.f.Close()
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		j.err = err
		return err
	}
	j.f = f
	return nil
}

// Resume loads the windows of the last checkpoint in Config.CheckpointDir
// (nothing without one) and reads again from the store the buckets its
// journal names as changed after it; those enterprises are then not
// refilled. It opens the journal that Intend writes. Call it before Run and
// before anything is written to the store (ingest starts after). Only a
// store that refuses the reads (store.Refused) or ctx ending is an error;
// anything else leaves the enterprises to the refill.
//
// NoteLatest may run beside it: noted is closed once every meter's newest
// stored reading has been noted (nil: already). Resume reads the
// checkpoint and the changed buckets meanwhile, then waits for it, and
// refills any enterprise whose windows hold a reading newer than the
// store's newest (a store restored from a backup, or emptied).
func (e *Engine) Resume(ctx context.Context, noted <-chan struct{}) error {
	dir := e.cfg.CheckpointDir
	if dir == "" || e.cfg.History == nil {
		return nil
	}
	start := time.Now()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		e.log.Warn("scoring: no checkpoints: the folder cannot be made", "dir", dir, "err", err)
		return nil
	}
	// A write cut short by a crash leaves its temporary file (as large as
	// the checkpoint): gone, or repeated crashes fill the disk.
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".scoring-windows.*.tmp-*"))
	for _, name := range leftovers {
		os.Remove(name)
	}
	jpath := filepath.Join(dir, journalName)
	recs, good, jerr := readJournal(jpath)
	hdr, wins, held, cerr := e.readCheckpoint(filepath.Join(dir, checkpointName))
	read := time.Since(start)
	gen := hdr.Generation
	for _, r := range recs {
		gen = max(gen, r.gen)
	}
	gen++
	resumed := map[*entState]*entRebuild{}
	var changed map[string]map[int64]struct{} // per enterprise, the finest buckets written after the checkpoint
	switch {
	case cerr != nil && errors.Is(cerr, os.ErrNotExist):
		e.log.Info("scoring: no checkpoint of the windows yet; refilling them from the store", "dir", dir)
	case cerr != nil:
		e.log.Warn("scoring: the checkpoint of the windows is not usable; refilling them from the store", "dir", dir, "err", cerr)
	case jerr != nil:
		e.log.Warn("scoring: the journal of the checkpoint is damaged; refilling the windows from the store", "dir", dir, "err", jerr)
	default:
		changed = map[string]map[int64]struct{}{}
		for _, r := range recs {
			if r.gen > hdr.Generation || (r.gen == hdr.Generation && r.seq > hdr.Through) {
				for _, p := range r.pairs {
					if changed[p.ent] == nil {
						changed[p.ent] = map[int64]struct{}{}
					}
					changed[p.ent][p.at] = struct{}{}
				}
			}
		}
		for es, ws := range wins {
			ats := changed[es.id]
			if len(ats) > resumeMaxDirty {
				continue // cheaper refilled
			}
			rb := &entRebuild{dirty: make([]map[int64]struct{}, len(ws))}
			for wi, w := range ws {
				rb.dirty[wi] = map[int64]struct{}{}
				for at := range ats {
					t := time.Unix(0, at)
					rb.dirty[wi][w.bucketOf(t)] = struct{}{}
					rb.dirty[wi][w.bucketOf(t.Add(e.journalFinest()-1))] = struct{}{}
				}
			}
			es.wins = ws
			resumed[es] = rb
		}
	}
	var reread time.Duration
	if len(resumed) > 0 {
		t0 := time.Now()
		_, _, err := e.rereadDirty(ctx, resumed)
		reread = time.Since(t0)
		if err != nil {
			for es := range resumed {
				es.resetWindows(e.std)
			}
			if ctx.Err() != nil || store.Refused(err) {
				return err
			}
			e.log.Warn("scoring: reading the buckets changed after the checkpoint failed; refilling the windows", "err", err)
			resumed = nil
		}
	}
	var waited time.Duration
	if noted != nil {
		t0 := time.Now()
		select {
		case <-noted:
		case <-ctx.Done():
			for es := range resumed {
				es.resetWindows(e.std)
			}
			return ctx.Err()
		}
		waited = time.Since(t0)
	}
	behind := 0
	for es := range resumed {
		if held[es].After(es.newest()) {
			// The store lacks the newest reading the windows hold.
			es.resetWindows(e.std)
			delete(resumed, es)
			behind++
		}
	}
	if behind > 0 {
		e.log.Warn("scoring: the store lacks readings the checkpoint holds (restored from a backup, or emptied?); those enterprises are refilled",
			"enterprises", behind)
	}
	// The journal goes on from its intact records: they name what the
	// checkpoint on disk lacks until the next one (the buckets read again
	// just now among them). Without a usable checkpoint it starts empty.
	if len(resumed) == 0 {
		good = 0
	}
	f, err := os.OpenFile(jpath, os.O_WRONLY|os.O_CREATE, 0o600)
	if err == nil {
		err = f.Truncate(good)
		if err == nil {
			_, err = f.Seek(good, io.SeekStart)
		}
	}
	j := &journal{path: jpath, f: f, gen: gen, finest: e.journalFinest(), offset: e.std.UTCOffset, named: map[jpair]uint64{}}
	if err != nil {
		if f != nil {
			f.Close()
		}
		e.log.Warn("scoring: no checkpoints: the journal cannot be written", "path", jpath, "err", err)
		for es := range resumed {
			es.resetWindows(e.std)
		}
		return nil
	}
	if len(resumed) == 0 {
		os.Remove(filepath.Join(dir, checkpointName)) // its journal is gone
	}
	e.journal = j
	e.unqueue(resumed)
	e.m.resumed.Set(float64(len(resumed)))
	if len(resumed) > 0 {
		changedBuckets := 0
		for es := range resumed {
			changedBuckets += len(changed[es.id])
		}
		e.log.Info("scoring: windows resumed from the checkpoint", "enterprises", len(resumed), "of", len(e.order),
			"checkpoint_written", hdr.Written, "changed_buckets", changedBuckets, "took", time.Since(start).Round(time.Millisecond),
			"read", read.Round(time.Millisecond), "reread", reread.Round(time.Millisecond), "waited_for_meter_state", waited.Round(time.Millisecond))
	}
	return nil
}

// journalFinest is the standard's finest bucket, which the journal names.
func (e *Engine) journalFinest() time.Duration {
	if wi := e.finestWindow(); wi >= 0 {
		return e.std.Windows[wi].Bucket
	}
	return 0
}

// finestWindow is the index of the standard's window of the shortest
// bucket (the first of several; -1 without windows).
func (e *Engine) finestWindow() int {
	fine := -1
	for wi, w := range e.std.Windows {
		if fine < 0 || w.Bucket < e.std.Windows[fine].Bucket {
			fine = wi
		}
	}
	return fine
}

// unqueue takes resumed enterprises out of the refill: their windows are
// exact, and their readings are applied at once.
func (e *Engine) unqueue(resumed map[*entState]*entRebuild) {
	if len(resumed) == 0 {
		return
	}
	e.rmu.Lock()
	defer e.rmu.Unlock()
	e.rbQueue = slices.DeleteFunc(e.rbQueue, func(es *entState) bool { return resumed[es] != nil })
	for es := range resumed {
		es.rb = nil
		es.dirty = true
		delete(e.rbEnts, es.id)
	}
	e.rbActive.Store(len(e.rbEnts) > 0)
	if len(e.rbEnts) == 0 {
		e.progress.Store(nil)
	} else {
		e.progress.Store(&rebuildProgress{total: len(e.rbEnts)})
	}
	e.m.rebuildRemaining.Set(float64(len(e.rbEnts)))
}
