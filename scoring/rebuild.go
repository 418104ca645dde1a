package scoring

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cleanprod/cleanprod/internal/piece"
	"github.com/cleanprod/cleanprod/store"
)

// History is the store's read side the engine refills its windows from:
// per meter and per time bucket, the sums of the stored readings, streamed
// (see store.AggregateQuery). The store implements it.
type History interface {
	EachAggregate(ctx context.Context, q store.AggregateQuery, fn func(*store.Aggregate) error) error
}

// How the engine refills windows from History.
//
// At start (and for the enterprises a reload changed) the windows are
// empty while the store holds their history. The engine asks the store for
// it in pieces: a group of enterprises at a time, each window's range at
// that window's own bucket (a coarser window takes the part a finer one
// covers from the finer one's rows, since its buckets are whole multiples
// of the finer buckets), each answer streamed into the windows. Up to
// Config.RefillConcurrency pieces are read at once, each by a goroutine
// of its own that hands its rows in bounded batches to the engine
// goroutine, which alone applies them. Memory is that of the windows and
// of those batches, whatever the history's length.
//
// Ingest need not wait: a reading observed for an enterprise that is being
// refilled is not added to its windows, since the store has it (it is
// observed only once stored) and the refill may or may not read it. Its
// bucket is marked instead. When every group is done, the engine asks ingest
// to hold (Config.Hold: nothing in flight, nothing new stored), clears the
// marked buckets and reads them again from the store, which now holds every
// reading observed, then lets ingest go on. So each stored reading counts
// once, and ingest is held only for the buckets that changed meanwhile.
//
// A piece that fails (a timeout, the store restarting) is retried with
// back-off, in smaller pieces, after the group's windows are emptied (a
// piece may have been half applied); the refill never gives up before its
// context ends.

// entRebuild is what Observe recorded of an enterprise while its windows
// were being refilled. Guarded by Engine.rmu.
type entRebuild struct {
	dirty []map[int64]struct{} // per window: buckets that received readings
	// live holds the readings observed meanwhile, per window as the
	// enterprise's own windows would: for a marked
	// bucket that the store's answer left empty, no reading of it was in
	// the answer, so these are what it holds and it need not be read
	// again. A backlog or a fresh store's first burst thus costs no
	// second read under the ingest hold.
	live   []*window
	seen   []time.Time // per meter: newest reading time observed
	gwData []time.Time // per gateway (as entState.gws)
	gwRecv []time.Time
}

// rebuildItem is one query range of a refill and the windows it feeds:
// rows with feed.from <= Start < feed.to go to window feed.win.
type rebuildItem struct {
	from, to      time.Time
	every, offset time.Duration
	feeds         []rebuildFeed
}

type rebuildFeed struct {
	win      int
	from, to time.Time
}

// rebuildProgress is what /readyz and the snapshot say while refilling.
type rebuildProgress struct {
	total, done int
}

// bucketOffset returns where buckets of length every start, as
// store.AggregateQuery wants it: local buckets start at k*every - utc.
func bucketOffset(every, utc time.Duration) time.Duration {
	o := (-utc) % every
	if o < 0 {
		o += every
	}
	return o
}

// rebuildPlan returns the queries that refill std's windows at now: the
// finest window's range at its bucket, feeding it and the part of every
// coarser window whose buckets it covers whole; the rest of each coarser
// window at that window's bucket.
func rebuildPlan(std *Standard, now time.Time) []rebuildItem {
	type span struct {
		wi       int
		from, to time.Time
		bucket   time.Duration
	}
	spans := make([]span, len(std.Windows))
	for wi, w := range std.Windows {
		win := newWindow(w, std.UTCOffset, 0, 0, 0)
		head := win.bucketOf(now)
		spans[wi] = span{wi, win.bucketStart(head - int64(win.n) + 1), win.bucketStart(head + 1), w.Bucket}
	}
	slices.SortStableFunc(spans, func(a, b span) int { return int(a.bucket - b.bucket) })
	if len(spans) == 0 {
		return nil
	}
	fine := spans[0]
	base := rebuildItem{from: fine.from, to: fine.to, every: fine.bucket, offset: bucketOffset(fine.bucket, std.UTCOffset),
		feeds: []rebuildFeed{{win: fine.wi, from: fine.from, to: fine.to}}}
	items := []rebuildItem{base}
	for _, s := range spans[1:] {
		if s.bucket%fine.bucket != 0 || !s.to.After(fine.from) {
			items = append(items, rebuildItem{from: s.from, to: s.to, every: s.bucket, offset: bucketOffset(s.bucket, std.UTCOffset),
				feeds: []rebuildFeed{{win: s.wi, from: s.from, to: s.to}}})
			continue
		}
		// The first of this window's buckets that the finer rows cover
		// whole: its boundaries are boundaries of the finer buckets.
		w := newWindow(std.Windows[s.wi], std.UTCOffset, 0, 0, 0)
		cut := w.bucketStart(w.bucketOf(fine.from.Add(-1)) + 1)
		if cut.Before(s.from) {
			cut = s.from
		}
		items[0].feeds = append(items[0].feeds, rebuildFeed{win: s.wi, from: cut, to: fine.to})
		if cut.After(s.from) {
			items = append(items, rebuildItem{from: s.from, to: cut, every: s.bucket, offset: bucketOffset(s.bucket, std.UTCOffset),
				feeds: []rebuildFeed{{win: s.wi, from: s.from, to: cut}}})
		}
	}
	return items
}

// startRebuild marks ents as being refilled: from now on Observe marks
// their buckets instead of queuing their readings. Call it on the engine
// goroutine (or before Run).
func (e *Engine) startRebuild(ents []*entState) {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	if e.rbEnts == nil {
		e.rbEnts = make(map[string]*entState, len(ents))
	}
	for _, es := range ents {
		es.rb = &entRebuild{
			dirty:  make([]map[int64]struct{}, len(es.wins)),
			live:   make([]*window, len(es.wins)),
			seen:   make([]time.Time, len(es.ent.Meters)),
			gwData: make([]time.Time, len(es.gws)),
			gwRecv: make([]time.Time, len(es.gws)),
		}
		for wi, spec := range e.std.Windows { // storage comes with data
			es.rb.live[wi] = newWindow(spec, e.std.UTCOffset, es.lay.tracks, es.lay.gauges, es.lay.rows)
		}
		e.rbEnts[es.id] = es
	}
	e.rbActive.Store(true)
	e.rbQueue = append(e.rbQueue, ents...)
	e.progress.Store(&rebuildProgress{total: len(e.rbEnts)})
	e.m.rebuildRemaining.Set(float64(len(e.rbEnts)))
}

// observeRebuilding takes the readings of enterprises being refilled out
// of rs, recording their buckets and freshness, and returns the rest.
// Safe for concurrent use.
func (e *Engine) observeRebuilding(rs []store.Reading) []store.Reading {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	if len(e.rbEnts) == 0 {
		return rs
	}
	now := e.cfg.Now()
	var rest []store.Reading
	var es *entState
	for i := range rs {
		r := &rs[i]
		if es == nil || es.id != r.Enterprise {
			es = e.rbEnts[r.Enterprise]
		}
		if es == nil {
			rest = append(rest, *r)
			continue
		}
		slot, ok := es.meterIdx[r.Meter]
		if !ok {
			continue // not a meter of the enterprise: apply would drop it too
		}
		rb := es.rb
		if r.Time.After(rb.seen[slot.idx]) {
			rb.seen[slot.idx] = r.Time
		}
		if r.Time.After(rb.gwData[slot.gw]) {
			rb.gwData[slot.gw] = r.Time
		}
		rb.gwRecv[slot.gw] = now
		for wi, w := range rb.live {
			if rb.dirty[wi] == nil {
				rb.dirty[wi] = make(map[int64]struct{})
			}
			rb.dirty[wi][w.bucketOf(r.Time)] = struct{}{}
		}
		if mb := slot.mb; mb != nil {
			mb.addReading(rb.live, es.lay.gauges, r)
		}
	}
	e.m.readings.WithLabelValues("refilling").Add(float64(len(rs) - len(rest)))
	return rest
}

// Loading says what the scorer still refills from the store ("" when
// nothing). Safe for concurrent use.
func (e *Engine) Loading() string {
	p := e.progress.Load()
	if p == nil {
		return ""
	}
	return fmt.Sprintf("scoring windows (%d of %d enterprises)", p.done, p.total)
}

// Rebuild refills every enterprise's windows from History; Run grades
// them. Call it before Run, with nothing calling Observe
// meanwhile; serve instead lets Run refill while ingest goes on (see
// Config.Hold).
func (e *Engine) Rebuild(ctx context.Context) error {
	if e.running.Load() {
		return errors.New("scoring: rebuild: the engine is running")
	}
	if e.cfg.History == nil {
		return nil
	}
	if len(e.rbQueue) == 0 {
		return nil
	}
	if err := e.rebuild(ctx, nil); err != nil {
		return err
	}
	e.progress.Store(nil)
	e.m.rebuildRemaining.Set(0)
	return nil
}

// rebuild refills the queued enterprises; hold, when not nil, runs f
// with ingest held. It runs on the engine goroutine.
func (e *Engine) rebuild(ctx context.Context, hold func(ctx context.Context, f func() error) error) error {
	start := time.Now()
	ents := e.rbQueue
	e.rbQueue = nil
	now := e.cfg.Now()
	plan := rebuildPlan(e.std, now)
	rows, err := e.refillGroups(ctx, ents, plan, func(done int) {
		e.progress.Store(&rebuildProgress{total: len(ents), done: done})
		e.m.rebuildRemaining.Set(float64(len(ents) - done))
	})
	if err != nil {
		return err
	}
	main := time.Now()
	var (
		heldFrom                     time.Time
		merged, readAgain, fromFiner int
	)
	finish := func() (err error) {
		heldFrom = time.Now()
		merged, readAgain, fromFiner, err = e.finishRebuild(ctx, ents)
		return err
	}
	if hold != nil {
		err = hold(ctx, finish)
	} else {
		err = finish()
	}
	if err != nil {
		return err
	}
	e.m.rebuildSeconds.Set(time.Since(start).Seconds())
	// held_ingest: from the end of the reading to ingest going on, of it
	// waiting for the writes in flight and then the marked buckets.
	e.log.Info("scoring: windows refilled from the store", "enterprises", len(ents), "aggregates", rows,
		"took", time.Since(start).Round(time.Millisecond), "held_ingest", time.Since(main).Round(time.Millisecond),
		"hold_wait", heldFrom.Sub(main).Round(time.Millisecond), "buckets_merged", merged, "buckets_read_again", readAgain, "buckets_from_finer", fromFiner)
	return nil
}

// refillBatch is the most rows a fetcher hands the engine goroutine at
// once. A row is about 100 bytes (two shared strings, a time, four
// numbers), so a batch is about 400 KB and 2*RefillConcurrency of them
// bound what a refill holds in flight, whatever the history's length.
const refillBatch = 4096

// refillJob is one attempt at one piece: every item of the plan for the
// enterprises of part, in spans of at most span (0: whole). byID and ids
// are read by its fetcher and the engine goroutine, never written after
// the job is made; rows is the engine goroutine's.
type refillJob struct {
	part  []*entState
	byID  map[string]*entState
	ids   []string // nil: every enterprise (the query names none)
	span  time.Duration
	start time.Time
	rows  int // rows applied
}

func newRefillJob(part []*entState, all bool, span time.Duration) *refillJob {
	j := &refillJob{part: part, byID: make(map[string]*entState, len(part)), span: span, start: time.Now()}
	for _, es := range part {
		j.byID[es.id] = es
		if !all {
			j.ids = append(j.ids, es.id)
		}
	}
	return j
}

// refillMsg is what a fetcher sends the engine goroutine: rows of job to
// apply through feeds or, last, the outcome of the job's attempt (done).
// A fetcher sends them on one channel, in order: the engine has applied
// every row of an attempt when it learns the attempt failed, so emptying
// the piece's windows then leaves nothing of that attempt behind.
type refillMsg struct {
	job   *refillJob
	feeds []rebuildFeed
	rows  []store.Aggregate
	done  bool
	err   error
}

// refillGroups streams plan into the windows of ents, a group of
// enterprises at a time, retrying failed groups with back-off in smaller
// pieces; progress is told how many enterprises are done.
//
// Up to Config.RefillConcurrency groups are read at once, each by a
// fetcher goroutine that copies its answer into batches for the engine
// goroutine, which alone applies them (and the readings ingest observes
// meanwhile). InfluxDB answers one query on about one core (BENCHMARKS.md,
// "Restart on months of history"), so a second query in flight uses a
// second core.
func (e *Engine) refillGroups(ctx context.Context, ents []*entState, plan []rebuildItem, progress func(done int)) (int, error) {
	conc := max(1, e.cfg.RefillConcurrency)
	size := piece.Sizer{Size: max(1, e.rbGroup), Max: 4096, Target: e.cfg.RefillPiece}
	span := time.Duration(0) // 0: an item's whole range

	fctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	// Batches in flight: each fetcher fills one while the engine applies
	// another; out holds the rest. A fetcher waits for a free batch, and
	// so holds its answer's connection, while the engine is behind.
	free := make(chan []store.Aggregate, 2*conc)
	for range cap(free) {
		free <- make([]store.Aggregate, 0, refillBatch)
	}
	out := make(chan refillMsg, cap(free))

	queue := piece.NewQueue(ents) // failed pieces are read again first
	var (
		inflight int
		done     int
		rows     int
		backoff  <-chan time.Time // not nil: wait before the next piece
	)
	for done < len(ents) {
		for inflight < conc && backoff == nil && queue.More() {
			part := queue.Take(size.Size)
			job := newRefillJob(part, len(part) == len(ents), span)
			inflight++
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.fetchPiece(fctx, job, plan, free, out)
			}()
		}
		select {
		case <-ctx.Done():
			return rows, ctx.Err()
		case <-backoff:
			backoff = nil
		case <-e.wake:
			e.apply(e.cfg.Now()) // other enterprises' readings keep flowing
		case m := <-out:
			job := m.job
			if !m.done {
				for i := range m.rows {
					if es := job.byID[m.rows[i].Enterprise]; es != nil {
						es.applyRow(&m.rows[i], m.feeds, nil)
						job.rows++
					}
				}
				free <- m.rows[:0]
				continue
			}
			inflight--
			if m.err == nil {
				size.Done(len(job.part), time.Since(job.start))
				e.rbGroup = size.Size
				e.m.rebuildAggregates.Add(float64(job.rows))
				rows += job.rows
				done += len(job.part)
				progress(done)
				continue
			}
			if ctx.Err() != nil {
				return rows, ctx.Err()
			}
			if store.Refused(m.err) {
				return rows, m.err
			}
			// Every row of the attempt is applied (see refillMsg): empty
			// the windows and read the piece again.
			for _, es := range job.part {
				es.resetWindows(e.std)
			}
			queue.GiveBack(job.part)
			e.m.rebuildRetries.Inc()
			wait := size.Failed(len(job.part))
			if len(job.part) == 1 {
				// Pieces in flight may fail too: halve the span
				// the failed one had, not each time.
				if s := e.smallerSpan(plan, job.span); span == 0 || s < span {
					span = s
				}
			}
			e.log.Warn("scoring: refill from the store failed; retrying in smaller pieces", "err", m.err,
				"enterprises", len(job.part), "next_group", size.Size, "next_span", span, "retry_in", wait)
			backoff = time.After(wait)
		}
	}
	return rows, nil
}

// smallerSpan halves the time span of a piece, down to one bucket of the
// plan's coarsest query.
func (e *Engine) smallerSpan(plan []rebuildItem, span time.Duration) time.Duration {
	if span == 0 {
		for _, it := range plan {
			span = max(span, it.to.Sub(it.from))
		}
	}
	var least time.Duration
	for _, it := range plan {
		least = max(least, it.every)
	}
	return max(least, span/2)
}

// fetchPiece reads every item of plan for job's enterprises and sends
// the rows to out in batches taken from free, then the outcome. It runs
// on a goroutine of its own and touches no engine state: job's byID is
// only read.
func (e *Engine) fetchPiece(ctx context.Context, job *refillJob, plan []rebuildItem, free chan []store.Aggregate, out chan<- refillMsg) {
	var buf []store.Aggregate
	err := e.fetchItems(ctx, job, plan, free, out, &buf)
	if buf != nil {
		free <- buf[:0] // the rows of a failed attempt are not sent
	}
	select {
	case out <- refillMsg{job: job, done: true, err: err}:
	case <-ctx.Done(): // the refill returned
	}
}

// fetchItems is fetchPiece's reading: *buf is the batch being filled
// (nil: none taken), left to the caller on an error.
func (e *Engine) fetchItems(ctx context.Context, job *refillJob, plan []rebuildItem, free chan []store.Aggregate, out chan<- refillMsg, buf *[]store.Aggregate) error {
	var feeds []rebuildFeed
	send := func() error {
		if len(*buf) == 0 {
			return nil
		}
		select {
		case out <- refillMsg{job: job, feeds: feeds, rows: *buf}:
			*buf = nil
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, it := range plan {
		feeds = it.feeds
		step := it.to.Sub(it.from)
		if job.span > 0 && job.span < step {
			step = job.span.Truncate(it.every)
			step = max(step, it.every)
		}
		for from := it.from; from.Before(it.to); from = from.Add(step) {
			to := from.Add(step)
			if to.After(it.to) {
				to = it.to
			}
			q := store.AggregateQuery{From: from, To: to, Every: it.every, Offset: it.offset, Enterprises: job.ids}
			err := e.cfg.History.EachAggregate(ctx, q, func(a *store.Aggregate) error {
				if job.byID[a.Enterprise] == nil {
					return nil
				}
				if *buf == nil {
					select {
					case *buf = <-free:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				*buf = append(*buf, *a)
				if len(*buf) == cap(*buf) {
					return send()
				}
				return nil
			})
			if err == nil {
				err = send() // a batch holds the rows of one item
			}
			if err != nil {
				return fmt.Errorf("scoring: refill %s..%s every %v: %w", from.Format(time.RFC3339), to.Format(time.RFC3339), it.every, err)
			}
		}
	}
	return nil
}

// applyRow adds one aggregate to the windows its feeds say, and the
// meter's freshness; with dirty not nil, only to the buckets it marks.
func (es *entState) applyRow(a *store.Aggregate, feeds []rebuildFeed, dirty []map[int64]struct{}) {
	slot, known := es.meterIdx[a.Meter]
	if !known {
		return
	}
	es.noteData(slot, a.Start)
	mb := slot.mb
	if mb == nil || a.Count == 0 {
		return
	}
	v, n := a.Sum, uint32(0)
	if mb.gauge {
		v, n = a.ValueSum, uint32(a.Count)
	}
	for _, f := range feeds {
		if a.Start.Before(f.from) || !a.Start.Before(f.to) {
			continue
		}
		w := es.wins[f.win]
		b := w.bucketOf(a.Start)
		if dirty != nil {
			if _, ok := dirty[f.win][b]; !ok {
				continue
			}
		}
		for _, tr := range mb.tracks {
			c := n
			if tr >= es.lay.gauges {
				c = 0
			}
			w.add(tr, b, v, c)
		}
		if mb.row >= 0 {
			w.mark(mb.row, b)
		}
	}
	es.dirty = true
}

// resetWindows empties the enterprise's windows.
func (es *entState) resetWindows(std *Standard) {
	for wi, w := range std.Windows {
		es.wins[wi] = newWindow(w, std.UTCOffset, es.lay.tracks, es.lay.gauges, es.lay.rows)
	}
}

// finishRebuild runs with ingest held (nothing in flight): it takes what
// Observe recorded for ents, reads their marked buckets again and hands
// them back to live observation. It returns how many marked buckets took
// the readings observed, how many were read again from the store and how
// many were made of the finest window's buckets (see rereadDirty).
func (e *Engine) finishRebuild(ctx context.Context, ents []*entState) (merged, reread, fromFiner int, err error) {
	e.apply(e.cfg.Now()) // readings of other enterprises, queued meanwhile
	e.rmu.Lock()
	marked := make(map[*entState]*entRebuild, len(ents))
	for _, es := range ents {
		if es.rb != nil {
			marked[es] = es.rb
		}
	}
	e.rmu.Unlock()
	// A marked bucket the store's answer left empty takes the readings
	// observed for it (see entRebuild.live); only the others are read
	// again.
	for es, rb := range marked {
		for wi, dirty := range rb.dirty {
			for _, b := range slices.Sorted(maps.Keys(dirty)) {
				if es.wins[wi].hasBucket(b) {
					continue // read again below
				}
				es.wins[wi].mergeBucket(rb.live[wi], b)
				delete(dirty, b)
				merged++
			}
		}
	}
	reread, fromFiner, err = e.rereadDirty(ctx, marked)
	if err != nil {
		return merged, reread, fromFiner, err
	}
	e.rmu.Lock()
	for es, rb := range marked {
		for mi, t := range rb.seen {
			if t.After(es.lastSeen[mi]) {
				es.lastSeen[mi] = t
			}
		}
		for gi := range es.gws {
			if g := &es.gws[gi]; rb.gwData[gi].After(g.data) {
				g.data = rb.gwData[gi]
			}
			if g := &es.gws[gi]; rb.gwRecv[gi].After(g.recv) {
				g.recv = rb.gwRecv[gi]
			}
		}
		es.rb = nil
		es.dirty = true
		delete(e.rbEnts, es.id)
	}
	for _, es := range ents {
		es.rb = nil
		delete(e.rbEnts, es.id)
	}
	e.rbActive.Store(len(e.rbEnts) > 0)
	e.rmu.Unlock()
	return merged, reread, fromFiner, nil
}

// A query of rereadDirty covers at most rereadRun consecutive buckets and
// names at most rereadGroup enterprises (or none: all of them), so that
// it finishes well within a store's timeout whatever was marked.
const (
	rereadRun   = 24
	rereadGroup = 256
)

// rereadDirty clears the marked buckets of every enterprise of marked and
// reads them again from the store, per window in runs of consecutive
// buckets, at most rereadRun buckets and rereadGroup enterprises a query.
//
// The finest window is read first; a coarser window's marked bucket that
// the finest window spans whole (today's, under a steady stream) is then
// made of the finest window's buckets, as the refill makes it, and not read
// again: reading a day of the fleet's readings again held ingest for most
// of the hold. It returns how many buckets it read again and how many it
// made of the finest window's.
func (e *Engine) rereadDirty(ctx context.Context, marked map[*entState]*entRebuild) (reread, fromFiner int, err error) {
	fine := e.finestWindow()
	wins := make([]int, 0, len(e.std.Windows)) // the finest first
	if fine >= 0 {
		wins = append(wins, fine)
	}
	for wi := range e.std.Windows {
		if wi != fine {
			wins = append(wins, wi)
		}
	}
	// Per window, the marked buckets of every enterprise left, cleared and
	// then read again in runs of consecutive buckets.
	for _, wi := range wins {
		spec := e.std.Windows[wi]
		buckets := map[int64][]*entState{}
		for es, rb := range marked {
			w := es.wins[wi]
			for b := range rb.dirty[wi] {
				if w.init && b <= w.head-int64(w.n) {
					continue // older than the window: gone anyway
				}
				w.clearBucket(b) // a bucket newer than the head holds nothing yet
				if wi != fine && w.fillFrom(es.wins[fine], b) {
					fromFiner++
					continue
				}
				buckets[b] = append(buckets[b], es)
				reread++
			}
		}
		if len(buckets) == 0 {
			continue
		}
		order := slices.Sorted(maps.Keys(buckets))
		w := newWindow(spec, e.std.UTCOffset, 0, 0, 0)
		// The window's queries, up to RefillConcurrency at once; their
		// rows are applied one query's at a time (applyMu), as they may
		// share enterprises.
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(max(1, e.cfg.RefillConcurrency))
		for i := 0; i < len(order); {
			j := i + 1
			for j < len(order) && order[j] == order[j-1]+1 && j-i < rereadRun {
				j++
			}
			run := order[i:j]
			seen := map[*entState]bool{}
			var part []*entState
			for _, b := range run {
				for _, es := range buckets[b] {
					if !seen[es] {
						seen[es] = true
						part = append(part, es)
					}
				}
			}
			slices.SortFunc(part, func(a, b *entState) int { return strings.Compare(a.id, b.id) })
			from, to := w.bucketStart(run[0]), w.bucketStart(run[len(run)-1]+1)
			item := rebuildItem{from: from, to: to, every: spec.Bucket, offset: bucketOffset(spec.Bucket, e.std.UTCOffset),
				feeds: []rebuildFeed{{win: wi, from: from, to: to}}}
			for k := 0; k < len(part); k += rereadGroup {
				group := part[k:min(k+rereadGroup, len(part))]
				all := len(group) == len(e.order)
				g.Go(func() error { return e.rereadMarked(gctx, group, all, item, marked) })
			}
			i = j
		}
		if err := g.Wait(); err != nil {
			return reread, fromFiner, err
		}
	}
	return reread, fromFiner, nil
}

// rereadMarked reads item for part into the marked buckets, retrying with
// back-off; a failed attempt clears the buckets again first. It changes
// windows only with applyMu held.
func (e *Engine) rereadMarked(ctx context.Context, part []*entState, all bool, item rebuildItem, marked map[*entState]*entRebuild) error {
	byID := make(map[string]*entState, len(part))
	var ids []string
	for _, es := range part {
		byID[es.id] = es
		if !all {
			ids = append(ids, es.id)
		}
	}
	wi := item.feeds[0].win
	backoff := time.Second
	var batch []store.Aggregate
	apply := func() {
		e.applyMu.Lock()
		defer e.applyMu.Unlock()
		for i := range batch {
			es := byID[batch[i].Enterprise]
			es.applyRow(&batch[i], item.feeds, marked[es].dirty)
		}
		batch = batch[:0]
	}
	for {
		q := store.AggregateQuery{From: item.from, To: item.to, Every: item.every, Offset: item.offset, Enterprises: ids}
		err := e.cfg.History.EachAggregate(ctx, q, func(a *store.Aggregate) error {
			if byID[a.Enterprise] != nil {
				if batch = append(batch, *a); len(batch) == refillBatch {
					apply()
				}
			}
			return nil
		})
		apply()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if store.Refused(err) {
			return err
		}
		e.m.rebuildRetries.Inc()
		e.log.Warn("scoring: reading the buckets that changed during the refill failed; retrying", "err", err, "retry_in", backoff)
		e.applyMu.Lock()
		for _, es := range part {
			w := es.wins[wi]
			for b := range marked[es].dirty[wi] {
				if !item.from.After(w.bucketStart(b)) && w.bucketStart(b).Before(item.to) {
					w.clearBucket(b)
				}
			}
		}
		e.applyMu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// rebuildFields are the Engine's refill state (embedded in Engine).
type rebuildFields struct {
	rmu      sync.Mutex                      // guards rbEnts and every entState.rb
	rbEnts   map[string]*entState            // enterprises being refilled
	rbActive atomic.Bool                     // rbEnts is not empty
	rbQueue  []*entState                     // enterprises waiting to be refilled (engine goroutine)
	rbGroup  int                             // enterprises per piece, adapted (engine goroutine)
	progress atomic.Pointer[rebuildProgress] // nil: nothing refilling
	// applyMu guards the windows and freshness of enterprises whose
	// buckets are read again while rows come from several queries at
	// once, and freshness while NoteLatest runs beside Resume.
	applyMu sync.Mutex
}

// NoteLatest tells the engine a meter's newest stored reading (read from
// the store at start), so that the meter's freshness and its gateway's data
// time are exact from the first evaluation: the refill only knows the
// buckets readings fall in. Call it before Run; it may run beside Resume.
func (e *Engine) NoteLatest(r *store.Reading) {
	es := e.ents[r.Enterprise]
	if es == nil {
		return
	}
	slot, ok := es.meterIdx[r.Meter]
	if !ok {
		return
	}
	e.applyMu.Lock()
	es.noteData(slot, r.Time)
	e.applyMu.Unlock()
}

// noteData moves the freshness of slot's meter and gateway to t if later.
func (es *entState) noteData(slot meterSlot, t time.Time) {
	if t.After(es.lastSeen[slot.idx]) {
		es.lastSeen[slot.idx] = t
	}
	if g := &es.gws[slot.gw]; t.After(g.data) {
		g.data = t
	}
}
