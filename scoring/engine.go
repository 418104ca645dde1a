package scoring

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

// Sink receives the engine's outputs as points: measurements "indicator",
// "score" and "event" (see doc.go). The store implements it.
type Sink interface {
	WritePoints(ctx context.Context, ps []store.Point) error
}

// Outbox keeps events durably until they are delivered (package outbox
// implements it).
type Outbox interface {
	// Append returns once evs are durable, or an error and nothing of
	// them is kept.
	Append(evs []Event) error
}

// Config wires an Engine. Standard, Policy and Registry are required; the
// rest is optional.
type Config struct {
	Standard *Standard
	Policy   *Policy
	Registry *registry.Registry
	// Solutions matches lagging indicators to measures (nil: none).
	Solutions *Library
	// History refills the windows at start (and for enterprises a reload
	// changed): by Rebuild before Run, or else by Run while ingest goes
	// on (nil: start empty).
	History History
	// RefillPiece is how long one piece of a refill (a group of
	// enterprises' queries) should take; pieces grow and shrink toward it
	// (default piece.DefaultTarget). Keep it well within the store
	// client's timeout.
	RefillPiece time.Duration
	// RefillConcurrency is how many pieces of a refill are read from the
	// store at once (default 2: InfluxDB answers one query on about one
	// core; see rebuild.go). The rows in flight are bounded whatever it
	// is.
	RefillConcurrency int
	// Hold, when Run refills windows while ingest goes on, runs held with
	// ingest held: every reading stored so far observed, none stored
	// until it returns (see rebuild.go). nil: Observe is not called
	// during the refill.
	Hold func(ctx context.Context, held func() error) error
	// CheckpointDir, when not empty, is where the windows are checkpointed
	// so that a start resumes them (see Resume and checkpoint.go).
	CheckpointDir string
	// CheckpointStore names the store History reads (its URL and bucket,
	// say): a checkpoint written against another store is not loaded.
	CheckpointStore string
	// CheckpointEvery is how often the windows are checkpointed (default
	// 5m); also after every refill and when Run returns.
	CheckpointEvery time.Duration
	// Declarations supplies enterprise declarations, read when Run starts
	// and after ReloadDeclarations (nil: none).
	Declarations Declarations
	// Sink receives indicator, score and event points (nil: none). Writes
	// happen on a separate goroutine with a bounded queue: a slow sink
	// drops points (counted) rather than stall scoring.
	Sink Sink
	// Outbox, when set, takes every tick's events before they count as
	// announced: Append must return once they are durable (see package
	// outbox), and the outbox, not the Sink queue, writes them to the
	// store. When Append fails (full, or its file failing) the engine
	// holds the events and offers them again on its next tick; they are
	// announced (OnEvent, the events metric) only once it took them. nil:
	// event points go through the Sink queue with the indicator and score
	// points, and are lost with them when it is full or a write fails.
	Outbox Outbox
	// OnEvent is called for every event, in order, on the engine's
	// goroutine, once the Outbox took it: it must not block (hand the
	// event to a queue).
	OnEvent func(Event)
	// Registerer registers the engine's metrics (nil: not registered).
	Registerer prometheus.Registerer
	Logger     *slog.Logger

	// Interval is the tick on which enterprises with new data are
	// evaluated (default 10s).
	Interval time.Duration
	// FullEvery is how often every enterprise is evaluated even without
	// new data, so that windows slide and silent meters go stale
	// (default 1m).
	FullEvery time.Duration
	// PointEvery is the least time between two writes of an enterprise's
	// indicator and score points (default 1m).
	PointEvery time.Duration
	// MaxPending bounds the readings observed but not yet applied; Observe
	// blocks beyond it (default 100000).
	MaxPending int
	// WriteTimeout bounds one Sink write (default 10s).
	WriteTimeout time.Duration
	// Workers evaluate disjoint enterprises in parallel during a tick
	// (default GOMAXPROCS); the engine goroutine waits for them, so the
	// state still has one owner at any time.
	Workers int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Engine scores enterprises continuously. One goroutine, the one running
// Run, owns all scoring state; Observe, ReloadDeclarations, Snapshot and
// Result may be called from any goroutine.
type Engine struct {
	cfg  Config
	std  *Standard
	pol  *Policy
	log  *slog.Logger
	m    *metrics
	loc  *time.Location
	cwin int // index of the policy's window
	bwin int // index of the baseline window

	// Owned by the engine goroutine (Run, or Rebuild before Run).
	ents     map[string]*entState
	order    []*entState
	started  time.Time // a meter never heard of goes stale stale.after after it
	lastFull time.Time
	events   []Event // raised, not yet taken by the Outbox
	heldWarn time.Time
	points   []store.Point
	envs     []env // formula scratch, one per worker
	running  atomic.Bool

	mu       sync.Mutex // guards pending, spare, space, observed
	pending  []store.Reading
	observed uint64 // every store write up to it is in pending or applied (see Observed)
	applied  uint64 // every store write up to it is applied (engine goroutine)
	journal  *journal
	lastCkpt time.Time
	spare    []store.Reading // the last drained pending, reused
	space    chan struct{}   // closed when pending drains below MaxPending
	wake     chan struct{}   // cap 1: readings or a reload are waiting
	reload   atomic.Bool
	stopped  chan struct{} // closed when Run returns
	stopOnce sync.Once

	snap    atomic.Pointer[Snapshot]
	writes  chan []store.Point
	reloads chan reloadRequest
	ready   chan struct{} // closed once the windows are refilled and graded

	rebuildFields
}

// entState is one enterprise's scoring state.
type entState struct {
	id       string
	ent      *registry.Enterprise
	lay      *layout
	wins     []*window
	decls    declarationIndex
	meterIdx map[string]meterSlot // meter id -> its index and tracks
	lastSeen []time.Time          // per meter; zero: nothing since the engine started
	stale    []alert              // per meter
	// exceeded is, per analyser meter, the newest code-window bucket
	// checked for an exceedance of its limit.
	exceeded map[string]int64
	gws      []gwState // per gateway, indexed like ent.Gateways
	lastStep time.Time // data time of the latest code step
	year     int
	consts   []float64
	notes    []string
	code     CodeState
	inds     []indState // per indicator
	dirty    bool
	lastPt   time.Time
	gauges   *entGauges
	result   *Result
	out      []Event       // events of the last evaluation
	pts      []store.Point // points of the last evaluation
	rb       *entRebuild   // not nil while its windows are refilled (guarded by Engine.rmu)
}

func (es *entState) emit(ev Event) { es.out = append(es.out, ev) }

// meterSlot is a meter of an enterprise: its index in ent.Meters, its
// gateway's index in ent.Gateways and the tracks it feeds (nil: no
// formula reads it).
type meterSlot struct {
	idx int
	gw  int
	mb  *meterBinding
}

// gwState is what the engine knows of one gateway's deliveries: the
// newest reading time of its meters (its data time) and the engine clock
// when it last delivered a reading. A gateway that delivered within the
// policy's stale.after is active; one active whose data time lags the
// clock by more than stale.after is catching up (a backfill).
type gwState struct {
	data time.Time
	recv time.Time // zero: not since the engine started (see newStates)
}

// catchingUp reports whether g delivers but lags now by more than after.
func (g *gwState) catchingUp(now time.Time, after time.Duration) bool {
	return g.active(now, after) && now.Sub(g.data) > after
}

// active reports whether g has data and delivered within after of now.
func (g *gwState) active(now time.Time, after time.Duration) bool {
	return !g.data.IsZero() && !g.recv.IsZero() && now.Sub(g.recv) < after
}

// indState is the regression state of one indicator.
type indState struct {
	ref         Level // last announced (or first seen) level
	pendSince   time.Time
	pendWorse   bool
	worsening   alert
	restrictive alert
}

// alert is a condition announced once it has held for a while, and
// announced again only after it has resolved.
type alert struct {
	firing bool
	since  time.Time // the condition has differed from firing since then
}

// step feeds the condition's current state; it returns +1 when the alert
// starts firing, -1 when it resolves, 0 otherwise.
func (a *alert) step(cond bool, now time.Time, hold time.Duration) int {
	if cond == a.firing {
		a.since = time.Time{}
		return 0
	}
	if a.since.IsZero() {
		a.since = now
	}
	if now.Sub(a.since) < hold && cond {
		return 0
	}
	a.firing, a.since = cond, time.Time{}
	if cond {
		return 1
	}
	return -1
}

// NewEngine checks cfg and builds the engine's state for every registry
// enterprise of the standard's industries (or of no declared industry).
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Standard == nil || cfg.Policy == nil || cfg.Registry == nil {
		return nil, errors.New("scoring: new engine: Standard, Policy and Registry are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Interval, 10*time.Second)
	def(&cfg.FullEvery, time.Minute)
	def(&cfg.PointEvery, time.Minute)
	def(&cfg.WriteTimeout, 10*time.Second)
	def(&cfg.CheckpointEvery, 5*time.Minute)
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 100_000
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.RefillConcurrency <= 0 {
		cfg.RefillConcurrency = 2
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	std, pol := cfg.Standard, cfg.Policy
	_, cwin, ok1 := std.Window(pol.Window)
	_, bwin, ok2 := std.Window(pol.Baseline)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("scoring: new engine: policy %s names windows %q and %q; standard %s has %s", pol.ID, pol.Window, pol.Baseline, std.ID, windowNames(std))
	}
	e := &Engine{
		cfg: cfg, std: std, pol: pol, log: cfg.Logger, m: newMetrics(cfg.Registerer),
		loc:  time.FixedZone("local", int(std.UTCOffset/time.Second)),
		cwin: cwin, bwin: bwin,
		ents:    make(map[string]*entState),
		space:   make(chan struct{}),
		wake:    make(chan struct{}, 1),
		stopped: make(chan struct{}),
		writes:  make(chan []store.Point, 8),
		reloads: make(chan reloadRequest),
		ready:   make(chan struct{}),
		envs:    make([]env, cfg.Workers),
	}
	// The first piece is small: a piece too large for the timeout costs a
	// whole timeout; the sizer grows pieces that finish fast.
	e.rbGroup = 8
	e.started = cfg.Now()
	e.ents, e.order = e.newStates(cfg.Registry, std)
	for _, es := range e.order {
		es.gauges = e.m.forEnterprise(es.id, std, pol)
	}
	e.m.enterprises.Set(float64(len(e.order)))
	e.snap.Store(&Snapshot{Standard: std, Policy: pol, Registry: cfg.Registry, Solutions: cfg.Solutions, results: map[string]*Result{}})
	if cfg.History != nil {
		e.startRebuild(e.order)
	}
	return e, nil
}

// newStates builds empty state for every registry enterprise of the
// standard's industries (or of no declared industry), in registry order,
// without metrics (see gauge).
func (e *Engine) newStates(reg *registry.Registry, std *Standard) (map[string]*entState, []*entState) {
	ents := make(map[string]*entState, len(reg.Enterprises))
	var order []*entState
	var skipped []string
	for _, ent := range reg.Enterprises {
		if ent.Industry != "" && len(std.Industries) > 0 && !slices.Contains(std.Industries, ent.Industry) {
			skipped = append(skipped, ent.ID)
			continue
		}
		es := &entState{
			id: ent.ID, ent: ent, lay: newLayout(std, ent),
			meterIdx: make(map[string]meterSlot, len(ent.Meters)),
			lastSeen: make([]time.Time, len(ent.Meters)),
			stale:    make([]alert, len(ent.Meters)),
			exceeded: make(map[string]int64),
			gws:      make([]gwState, len(ent.Gateways)+1), // the last for a meter of no known gateway
			inds:     make([]indState, len(std.Indicators)),
			dirty:    true,
		}
		gwIdx := make(map[string]int, len(ent.Gateways))
		for gi := range es.gws {
			if gi < len(ent.Gateways) {
				gwIdx[ent.Gateways[gi].ID] = gi
			}
			// Until it delivers, a gateway with history counts as having
			// delivered when the engine started: a restart in the middle
			// of a backfill (or with a broker backlog) goes on in data
			// time rather than judging the history against the wall
			// clock. Restore withdraws this from gateways whose meters
			// were announced stale.
			es.gws[gi].recv = e.started
		}
		for i, m := range ent.Meters {
			slot := meterSlot{idx: i, gw: len(ent.Gateways)}
			if m.Gateway != nil {
				if gi, ok := gwIdx[m.Gateway.ID]; ok {
					slot.gw = gi
				}
			}
			if mb, ok := es.lay.meters[m.ID]; ok {
				slot.mb = &mb
			}
			es.meterIdx[m.ID] = slot
		}
		for _, w := range std.Windows {
			es.wins = append(es.wins, newWindow(w, std.UTCOffset, es.lay.tracks, es.lay.gauges, es.lay.rows))
		}
		ents[ent.ID] = es
		order = append(order, es)
	}
	if len(skipped) > 0 {
		e.log.Info("scoring: enterprises of other industries are not scored", "standard", std.ID, "industries", std.Industries, "skipped", skipped)
	}
	return ents, order
}

// Observe hands the engine readings that the store has durably accepted.
// For counters and delta meters, Delta is the amount to add (a correction
// of an out-of-order insert arrives as a reading whose Delta is the
// difference); for gauges, Value is the reading. Every reading passed is
// counted exactly once: do not pass a reading both here and through the
// store's history before Rebuild.
//
// Observe copies the readings and returns at once, unless MaxPending
// readings are already waiting: then it blocks until the engine catches
// up, which back-pressures ingest. After Run has returned it drops the
// readings (counted). Safe for concurrent use.
func (e *Engine) Observe(readings []store.Reading) {
	if e.rbActive.Load() {
		readings = e.observeRebuilding(readings)
	}
	if len(readings) == 0 {
		return
	}
	for {
		e.mu.Lock()
		if len(e.pending) < e.cfg.MaxPending {
			e.pending = append(e.pending, readings...)
			n := len(e.pending)
			e.mu.Unlock()
			e.m.pending.Set(float64(n))
			e.signal()
			return
		}
		space := e.space
		e.mu.Unlock()
		select {
		case <-space:
		case <-e.stopped:
			e.m.readings.WithLabelValues("dropped").Add(float64(len(readings)))
			return
		}
	}
}

// Abandon tells the engine that Run will not be called (serve stopped
// before the scorer could start): Observe then drops readings, counted,
// instead of waiting for Run to take them. Their buckets are named in
// the journal, so the next start reads them again.
func (e *Engine) Abandon() { e.stopOnce.Do(func() { close(e.stopped) }) }

func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// ReloadDeclarations asks the engine to read its Declarations again (after
// the API stored one) and re-evaluate the enterprises whose declarations
// changed. It does not block.
func (e *Engine) ReloadDeclarations() {
	e.reload.Store(true)
	e.signal()
}

// Restore seeds the engine's announcement state from the events it
// announced before a restart (oldest first; for example read back from
// the store's "event" measurement with EventFromPoint), so that a restart
// neither re-announces codes, failures and stale meters nor restarts the
// hysteresis of a code: code_change events restore the code, its start
// (in data time) and its reasons (a first code announced without a
// graded level, as earlier versions set one before any data, is not
// restored); restrictive_fail, worsening and stale events (resolved or
// not) restore whether each is firing (a gateway with a meter still stale
// is not presumed to be catching up); level_drop events restore the level
// an indicator is compared with. A pending change is not restored: its
// hold starts again. Call it after Rebuild and before Run.
func (e *Engine) Restore(events []Event) {
	for _, ev := range events {
		es, ok := e.ents[ev.Enterprise]
		if !ok {
			continue
		}
		ind, hasInd := e.std.Indicator(ev.Indicator)
		switch ev.Kind {
		case EventCodeChange:
			if ev.OldCode == "" && ev.NewLevel == NoLevel {
				// A first code set before the data sufficed (as earlier
				// versions did): the enterprise has no code until it
				// does.
				es.code, es.lastStep = CodeState{}, time.Time{}
				continue
			}
			if e.pol.rank(ev.NewCode) >= 0 {
				es.code = CodeState{Enterprise: es.id, Code: ev.NewCode, Since: ev.Time, Reasons: ev.Reasons}
				es.lastStep = ev.Time
			}
		case EventLevelDrop:
			if hasInd {
				es.inds[ind.Index].ref = ev.NewLevel
			}
		case EventRestrictiveFail:
			if hasInd {
				es.inds[ind.Index].restrictive = alert{firing: !ev.Resolved}
			}
		case EventWorsening:
			if hasInd {
				es.inds[ind.Index].worsening = alert{firing: !ev.Resolved}
			}
		case EventExceedance:
			// Hours up to the last one announced were checked.
			if w := es.wins[e.cwin]; w.bucket > 0 {
				if b := floorDiv(ev.Time.UnixNano()+w.offset, w.bucket); b > es.exceeded[ev.Meter] {
					es.exceeded[ev.Meter] = b
				}
			}
		case EventStale:
			if slot, ok := es.meterIdx[ev.Meter]; ok {
				mi := slot.idx
				es.stale[mi] = alert{firing: !ev.Resolved}
				// Silent since at least stale.after before the event,
				// unless the rebuilt history says otherwise.
				if silent := ev.Time.Add(-e.pol.StaleAfter); !ev.Resolved && es.lastSeen[mi].IsZero() {
					es.lastSeen[mi] = silent
				}
			}
		}
	}
	for _, es := range e.order {
		for _, slot := range es.meterIdx {
			if es.stale[slot.idx].firing {
				es.gws[slot.gw].recv = time.Time{}
			}
		}
	}
}

// exceedances announces each complete bucket (hour) of the code window,
// through data time at, in which an analyser's mean exceeded its limit,
// once per meter and bucket: the buckets already checked are not checked
// again (a reading arriving for one later does not announce it).
func (e *Engine) exceedances(es *entState, at time.Time) {
	w := es.wins[e.cwin]
	if !w.init {
		return
	}
	last := w.bucketOf(at) - 1 // the newest complete bucket
	for _, m := range es.ent.Meters {
		mb, ok := es.lay.meters[m.ID]
		if !ok || !mb.gauge || len(mb.tracks) == 0 {
			continue
		}
		// An analyser before treatment (only a load's concentration) is
		// held to no limit unless its registry entry gives one.
		if m.PermitLimit == 0 && !es.lay.judged[mb.tracks[0]] {
			continue
		}
		limit, what := e.limitOf(m)
		if !(limit > 0) {
			continue
		}
		for b := max(w.first(), es.exceeded[m.ID]+1); b <= last; b++ {
			sum, n, ok := w.at(mb.tracks[0], b)
			if !ok || n == 0 {
				continue
			}
			if mean := sum / float64(n); mean > limit*(1+1e-9) {
				es.emit(Event{Time: w.bucketStart(b), Enterprise: es.id, Kind: EventExceedance, Meter: m.ID, NewValue: mean, OldValue: limit,
					Reason: fmt.Sprintf("%s mean %.4g %s over %s, above %s %.4g %s", m.Quantity.Name, mean, m.Quantity.Unit, time.Duration(w.bucket), what, limit, m.Quantity.Unit)})
			}
		}
		es.exceeded[m.ID] = max(es.exceeded[m.ID], last)
	}
}

// limitOf returns the limit an analyser is held to: its discharge permit
// limit, or else the standard's first limit of its quantity (0: none).
func (e *Engine) limitOf(m *registry.Meter) (float64, string) {
	if m.PermitLimit > 0 {
		return m.PermitLimit, "the discharge permit limit"
	}
	for _, l := range e.std.Limits {
		if l.Quantity == m.Quantity.Name {
			return l.Value, "limit." + l.ID
		}
	}
	return 0, ""
}

// Snapshot returns the latest published results. It never blocks and the
// snapshot is immutable; safe for concurrent use.
func (e *Engine) Snapshot() *Snapshot { return e.snap.Load() }

// apply drains the pending readings into the windows; now is the engine
// clock, when the readings arrived.
func (e *Engine) apply(now time.Time) {
	e.mu.Lock()
	batch := e.pending
	e.applied = e.observed
	e.pending, e.spare = e.spare[:0], nil // Observe appends to the spare's capacity meanwhile
	close(e.space)
	e.space = make(chan struct{})
	e.mu.Unlock()
	e.m.pending.Set(0)
	var applied, unknown, old int
	var es *entState // the last reading's: a message's readings come together
	for i := range batch {
		r := &batch[i]
		if es == nil || es.id != r.Enterprise {
			if es = e.ents[r.Enterprise]; es == nil {
				unknown++
				continue
			}
		}
		slot, ok := es.meterIdx[r.Meter]
		if !ok {
			unknown++
			continue
		}
		if r.Time.After(es.lastSeen[slot.idx]) {
			es.lastSeen[slot.idx] = r.Time
		}
		g := &es.gws[slot.gw]
		if r.Time.After(g.data) {
			g.data = r.Time
		}
		g.recv = now
		es.dirty = true
		mb := slot.mb
		if mb == nil {
			applied++ // a meter no formula reads: it only keeps the meter fresh
			continue
		}
		if mb.addReading(es.wins, es.lay.gauges, r) {
			applied++
		} else {
			old++
		}
	}
	e.m.readings.WithLabelValues("applied").Add(float64(applied))
	e.m.readings.WithLabelValues("unknown_meter").Add(float64(unknown))
	e.m.readings.WithLabelValues("too_old").Add(float64(old))
	if cap(batch) <= 4*e.cfg.MaxPending { // keep its capacity for the next round
		clear(batch)
		e.mu.Lock()
		e.spare = batch[:0]
		e.mu.Unlock()
	}
}

// Run evaluates enterprises with new data every Interval, and every
// enterprise every FullEvery, until ctx is done. It reads the
// declarations first. Run returns nil when ctx is cancelled.
func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("scoring: run: already running")
	}
	defer e.stopOnce.Do(func() { close(e.stopped) })
	e.loadDeclarations(ctx)
	var wg sync.WaitGroup
	if e.cfg.Sink != nil {
		wg.Go(func() { e.writeLoop(ctx) })
	}
	defer wg.Wait()
	if err := e.refill(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	tick := time.NewTicker(e.cfg.Interval)
	defer tick.Stop()
	e.markReady()
	// The windows as they are when Run returns: what ingest stores after
	// it (its last flush) is named in the journal.
	defer e.checkpoint(true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-e.wake:
			e.apply(e.cfg.Now())
			if e.reload.Swap(false) {
				e.loadDeclarations(ctx)
			}
		case <-tick.C:
			e.step(ctx, e.cfg.Now())
			e.checkpoint(false)
		case r := <-e.reloads:
			r.done <- e.applyUpdate(ctx, r.u)
			// The reload has let ingest go: its enterprises refill now.
			if err := e.refill(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
	}
}

// refill refills the enterprises queued for it (if any) while ingest goes
// on, grades them, and only then says it is done (Loading turns empty).
func (e *Engine) refill(ctx context.Context) error {
	refilled := len(e.rbQueue) > 0
	if refilled {
		if err := e.rebuild(ctx, e.holdServing); err != nil {
			return err
		}
	}
	e.step(ctx, e.cfg.Now())
	e.progress.Store(nil)
	e.m.rebuildRemaining.Set(0)
	if refilled {
		e.checkpoint(true) // a restart now resumes rather than refills them
	}
	return nil
}

// Ready is closed once the engine has refilled its windows from History
// and graded every enterprise (at once without History).
func (e *Engine) Ready() <-chan struct{} { return e.ready }

func (e *Engine) markReady() {
	select {
	case <-e.ready:
	default:
		close(e.ready)
	}
}

// holdServing runs f through Config.Hold on the engine goroutine, applying
// the readings observed until ingest is held (the pipeline waits for its
// batches to be observed before it holds).
func (e *Engine) holdServing(ctx context.Context, f func() error) error {
	if e.cfg.Hold == nil {
		return f()
	}
	req := make(chan chan error)
	errc := make(chan error, 1)
	go func() {
		errc <- e.cfg.Hold(ctx, func() error {
			done := make(chan error, 1)
			select {
			case req <- done:
			case <-ctx.Done():
				return ctx.Err()
			}
			return <-done
		})
	}()
	for {
		select {
		case <-e.wake:
			e.apply(e.cfg.Now())
		case done := <-req:
			done <- f()
			return <-errc
		case err := <-errc:
			if err == nil {
				err = errors.New("scoring: ingest released its hold before the refill ended")
			}
			return err
		}
	}
}

// Update is a new configuration for a running engine; see Reload.
type Update struct {
	Standard     *Standard
	Policy       *Policy
	Registry     *registry.Registry
	Solutions    *Library
	Declarations Declarations
}

type reloadRequest struct {
	u    Update
	done chan error
}

// Reload switches the running engine to u and returns when the snapshot
// uses it. Enterprises that stay keep their code with its hysteresis,
// their announced alerts and the freshness of their meters. The windows
// of enterprises that are new, whose registry entry changed, or of every
// enterprise when the standard changed, are refilled from History right
// after, as at start: while ingest goes on, and those enterprises are not
// graded until then (Loading says how far it is). The caller must hold
// ingest from before Reload until it returns, so that the switch sees
// nothing in flight. On an error (a policy naming windows the standard
// lacks) the engine keeps its configuration and state.
func (e *Engine) Reload(ctx context.Context, u Update) error {
	if u.Standard == nil || u.Policy == nil || u.Registry == nil {
		return errors.New("scoring: reload: Standard, Policy and Registry are required")
	}
	r := reloadRequest{u: u, done: make(chan error, 1)}
	select {
	case e.reloads <- r:
	case <-e.stopped:
		return errors.New("scoring: reload: the engine has stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err() // the engine still finishes the reload
	}
}

// applyUpdate applies u on the engine goroutine.
func (e *Engine) applyUpdate(ctx context.Context, u Update) error {
	start := time.Now()
	_, cwin, ok1 := u.Standard.Window(u.Policy.Window)
	_, bwin, ok2 := u.Standard.Window(u.Policy.Baseline)
	if !ok1 || !ok2 {
		return fmt.Errorf("scoring: reload: policy %s names windows %q and %q; standard %s has %s", u.Policy.ID, u.Policy.Window, u.Policy.Baseline, u.Standard.ID, windowNames(u.Standard))
	}
	e.apply(e.cfg.Now()) // what ingest handed over before it was held
	sameStd := u.Standard == e.std
	ents, order := e.newStates(u.Registry, u.Standard)
	refill := make(map[string]*entState)
	for id, es := range ents {
		old, ok := e.ents[id]
		if !ok {
			refill[id] = es
			continue
		}
		es.carry(old, e.std, u.Standard)
		if sameStd && reflect.DeepEqual(old.ent, es.ent) {
			es.lay, es.wins = old.lay, old.wins
		} else {
			refill[id] = es
		}
	}
	// Series of enterprises that left, and of indicators, windows or codes
	// that went, disappear from the metrics.
	sameShape := sameStd && u.Policy == e.pol
	for id := range e.ents {
		if _, stays := ents[id]; !stays || !sameShape {
			e.m.dropEnterprise(id)
		}
	}
	for _, es := range order {
		es.gauges = e.m.forEnterprise(es.id, u.Standard, u.Policy)
	}
	e.cfg.Standard, e.cfg.Policy, e.cfg.Registry, e.cfg.Solutions, e.cfg.Declarations = u.Standard, u.Policy, u.Registry, u.Solutions, u.Declarations
	e.std, e.pol, e.cwin, e.bwin = u.Standard, u.Policy, cwin, bwin
	e.loc = time.FixedZone("local", int(u.Standard.UTCOffset/time.Second))
	e.ents, e.order = ents, order
	e.m.enterprises.Set(float64(len(order)))
	if len(refill) > 0 && e.cfg.History != nil {
		// Ingest is held (see Reload) until this returns; Run refills the
		// windows right after, as at start, while ingest goes on.
		list := make([]*entState, 0, len(refill))
		for _, es := range order {
			if refill[es.id] != nil {
				list = append(list, es)
			}
		}
		e.startRebuild(list)
	}
	e.loadDeclarations(ctx)
	prev := e.snap.Load()
	e.snap.Store(&Snapshot{Time: prev.Time, Standard: u.Standard, Policy: u.Policy, Registry: u.Registry, Solutions: u.Solutions, results: map[string]*Result{}})
	e.lastFull = time.Time{} // evaluate everyone now
	e.step(ctx, e.cfg.Now())
	e.log.Info("scoring: configuration reloaded", "standard", u.Standard.ID, "policy", u.Policy.ID, "enterprises", len(order),
		"refilled", len(refill), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// carry takes over what an enterprise's scoring remembers beyond its
// windows from its state before a reload: the code and its hysteresis,
// declarations, announced alerts, meter freshness and gateways' data
// time. Indicator state follows indicator ids when the standard changed.
func (es *entState) carry(old *entState, oldStd, std *Standard) {
	es.code, es.decls, es.lastPt, es.lastStep = old.code, old.decls, old.lastPt, old.lastStep
	es.exceeded = old.exceeded
	for mi, m := range es.ent.Meters {
		if slot, ok := old.meterIdx[m.ID]; ok {
			oi := slot.idx
			es.lastSeen[mi], es.stale[mi] = old.lastSeen[oi], old.stale[oi]
		}
	}
	for gi, g := range es.ent.Gateways {
		if oi := slices.IndexFunc(old.ent.Gateways, func(o *registry.Gateway) bool { return o.ID == g.ID }); oi >= 0 {
			es.gws[gi] = old.gws[oi]
		}
	}
	if oldStd == std {
		copy(es.inds, old.inds)
		return
	}
	for i, ind := range std.Indicators {
		if oi, ok := oldStd.Indicator(ind.ID); ok {
			es.inds[i] = old.inds[oi.Index]
		}
	}
}

// loadDeclarations reads the declarations and marks the enterprises whose
// declarations changed.
func (e *Engine) loadDeclarations(ctx context.Context) {
	e.reload.Store(false)
	if e.cfg.Declarations == nil {
		return
	}
	ds, err := e.cfg.Declarations.Declarations(ctx)
	if err != nil {
		e.log.Error("scoring: read declarations; keeping the previous ones", "err", err)
		return
	}
	valid := ds[:0:0]
	for _, d := range ds {
		if _, ok := e.ents[d.Enterprise]; !ok {
			e.m.declInvalid.Inc()
			e.log.Warn("scoring: declaration for an enterprise that is not scored", "enterprise", d.Enterprise, "indicator", d.Indicator)
			continue
		}
		if err := d.Check(e.std); err != nil {
			e.m.declInvalid.Inc()
			e.log.Warn("scoring: invalid declaration skipped", "err", err)
			continue
		}
		valid = append(valid, d)
	}
	idx := indexDeclarations(valid)
	for id, es := range e.ents {
		if !maps.EqualFunc(es.decls, idx[id], slices.Equal) {
			es.decls = idx[id]
			es.dirty = true
		}
	}
}

// step applies waiting readings and evaluates the dirty enterprises (all
// of them every FullEvery), then publishes a snapshot and the outputs.
func (e *Engine) step(ctx context.Context, now time.Time) {
	e.apply(now)
	if e.reload.Swap(false) {
		e.loadDeclarations(ctx)
	}
	full := now.Sub(e.lastFull) >= e.cfg.FullEvery
	if full {
		e.lastFull = now
		for _, es := range e.order {
			es.dirty = true
		}
	}
	start := time.Now()
	var changed []*entState
	for _, es := range e.order {
		if es.dirty && es.rb == nil { // not from half-refilled windows
			es.dirty = false
			changed = append(changed, es)
		}
	}
	if len(changed) == 0 {
		if len(e.events) > 0 { // held by a failing Outbox
			e.announce()
			e.queuePoints()
		}
		return
	}
	e.evaluateAll(changed, now)
	for _, es := range changed { // in id order, whatever worker evaluated it
		e.events = append(e.events, es.out...)
		e.points = append(e.points, es.pts...)
		es.out, es.pts = es.out[:0], nil
	}
	prev := e.snap.Load()
	next := &Snapshot{Time: now, Standard: e.std, Policy: e.pol, Registry: e.cfg.Registry, Solutions: e.cfg.Solutions, results: maps.Clone(prev.results)}
	for _, es := range changed {
		next.results[es.id] = es.result
	}
	e.snap.Store(next)
	e.m.evaluations.Add(float64(len(changed)))
	e.m.tickSeconds.Observe(time.Since(start).Seconds())
	e.announce()
	e.queuePoints()
	if full {
		e.m.stateBytes.Set(float64(e.StateBytes()))
	}
}

// announce hands the raised events to the Outbox and, once it took them,
// announces them. Events the Outbox refuses stay in e.events, ahead of
// those of later ticks: nothing is announced before it is durable, and
// nothing is dropped.
func (e *Engine) announce() {
	if len(e.events) == 0 {
		return
	}
	if e.cfg.Outbox != nil {
		if err := e.cfg.Outbox.Append(e.events); err != nil {
			e.m.eventsHeld.Set(float64(len(e.events)))
			if time.Since(e.heldWarn) >= time.Minute {
				e.log.Warn("scoring: the outbox does not take events; they are held and announced once it does", "events", len(e.events), "err", err)
				e.heldWarn = time.Now()
			}
			return
		}
		e.m.eventsHeld.Set(0)
	}
	for _, ev := range e.events {
		e.m.events.WithLabelValues(string(ev.Kind)).Inc()
		if e.cfg.OnEvent != nil {
			e.cfg.OnEvent(ev)
		}
		if e.cfg.Outbox == nil {
			e.points = append(e.points, EventPoint(ev))
		}
	}
	e.events = e.events[:0]
}

// queuePoints hands the tick's points to the write loop; a full queue
// drops them (counted): the next PointEvery writes fresh ones.
func (e *Engine) queuePoints() {
	if len(e.points) > 0 && e.cfg.Sink != nil {
		select {
		case e.writes <- e.points:
		default:
			e.m.points.WithLabelValues("dropped").Add(float64(len(e.points)))
		}
	}
	e.points = nil
}

// pointChunk is the most points the engine writes in one request.
const pointChunk = 5000

func (e *Engine) writeLoop(ctx context.Context) {
	var lastWarn time.Time
	suppressed := 0
	for {
		var ps []store.Point
		select {
		case <-ctx.Done():
			e.flushPoints(nil)
			return
		case ps = <-e.writes:
			if ctx.Err() != nil {
				e.flushPoints(ps)
				return
			}
		}
		// In requests of pointChunk points, so that one write never
		// holds the store (shared with ingest) for long.
		var err error
		for len(ps) > 0 && err == nil {
			n := min(len(ps), pointChunk)
			wctx, cancel := context.WithTimeout(ctx, e.cfg.WriteTimeout)
			err = e.cfg.Sink.WritePoints(wctx, ps[:n])
			cancel()
			if err == nil {
				e.m.points.WithLabelValues("written").Add(float64(n))
				ps = ps[n:]
			}
		}
		if err != nil {
			e.m.points.WithLabelValues("failed").Add(float64(len(ps)))
			// Log once a minute at most; the metric counts every failure.
			if time.Since(lastWarn) >= time.Minute {
				e.log.Warn("scoring: write points failed; later ticks write fresh ones", "points", len(ps), "err", err, "failures_not_logged", suppressed)
				lastWarn, suppressed = time.Now(), 0
			} else {
				suppressed++
			}
		}
	}
}

// flushPoints writes ps and the points still queued when Run stops,
// within one WriteTimeout in all; what is left is counted dropped.
func (e *Engine) flushPoints(ps []store.Point) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.WriteTimeout)
	defer cancel()
	for {
		if ps == nil {
			select {
			case ps = <-e.writes:
			default:
				return
			}
		}
		for len(ps) > 0 {
			n := min(len(ps), pointChunk)
			if ctx.Err() != nil || e.cfg.Sink.WritePoints(ctx, ps[:n]) != nil {
				e.m.points.WithLabelValues("dropped").Add(float64(len(ps)))
				break
			}
			e.m.points.WithLabelValues("written").Add(float64(n))
			ps = ps[n:]
		}
		ps = nil
	}
}

// StateBytes returns the bytes held by all enterprises' windows. Call it
// on the engine goroutine (or when the engine is not running).
func (e *Engine) StateBytes() int {
	n := 0
	for _, es := range e.order {
		for _, w := range es.wins {
			n += w.bytes()
		}
	}
	return n
}

// evaluateAll evaluates ents, split among the workers when there are
// enough of them to be worth it. Each worker owns a disjoint slice of
// enterprises and its own scratch; everything they share is read-only (or
// a Prometheus metric).
func (e *Engine) evaluateAll(ents []*entState, now time.Time) {
	w := min(e.cfg.Workers, len(ents)/32)
	if w <= 1 {
		for _, es := range ents {
			e.evaluate(es, now, &e.envs[0])
		}
		return
	}
	var wg sync.WaitGroup
	chunk := (len(ents) + w - 1) / w
	for i := range w {
		part := ents[min(i*chunk, len(ents)):min((i+1)*chunk, len(ents))]
		wg.Go(func() {
			for _, es := range part {
				e.evaluate(es, now, &e.envs[i])
			}
		})
	}
	wg.Wait()
}

// evaluate recomputes one enterprise at now: both windows, the code with
// its hysteresis, regressions, lagging indicators and outputs. Everything
// but the result's Time and the point throttle runs on the enterprise's
// data time (see dataTime).
func (e *Engine) evaluate(es *entState, now time.Time, scratch *env) {
	std, pol := e.std, e.pol
	at, catchingUp := e.dataTime(es, now)
	if y := at.In(e.loc).Year(); y != es.year || es.consts == nil {
		es.year = y
		es.consts, es.notes = std.constants(es.ent.Region, y)
	}
	res := &Result{Enterprise: es.id, Time: now, DataTime: at, CatchingUp: catchingUp, Assessments: make([]Assessment, len(std.Windows))}
	for wi, spec := range std.Windows {
		w := es.wins[wi]
		w.sync(at)
		a := assess(assessInput{env: scratch, std: std, lay: es.lay, win: w, spec: spec, consts: es.consts, notes: es.notes,
			decls: es.decls, policy: pol.Data, now: at})
		if a.Completeness < pol.MinCompleteness && a.Level != NoLevel {
			a.Capped = fmt.Sprintf("not graded: %.0f%% of metered indicators have enough data, the policy needs %.0f%%", 100*a.Completeness, 100*pol.MinCompleteness)
			a.Level = NoLevel
		}
		res.Assessments[wi] = a
	}
	ca, ba := &res.Assessments[e.cwin], &res.Assessments[e.bwin]
	// While catching up, a window already reaching beyond the data time
	// (another gateway ahead, or a window that slid during a silence)
	// shows a gap the backfill has yet to fill: hold the code.
	if w := es.wins[e.cwin]; catchingUp && w.init && w.bucketStart(w.head).Sub(at) > pol.StaleAfter {
		res.CodeHeld = true
	}

	// Stale meters: a meter is stale when silent for stale.after in the
	// data time of its gateway while that gateway catches up, else on the
	// wall clock; so a backfill raises none, a silent meter or gateway
	// still does.
	for mi, m := range es.ent.Meters {
		if es.lastSeen[mi].After(res.DataThrough) {
			res.DataThrough = es.lastSeen[mi]
		}
		ref := now
		if g := &es.gws[es.meterIdx[m.ID].gw]; g.catchingUp(now, pol.StaleAfter) {
			ref = g.data
		}
		last, since := es.lastSeen[mi], "no reading since "+es.lastSeen[mi].UTC().Format(time.RFC3339)
		if last.IsZero() {
			last, since = e.started, "no reading since the scorer started"
		}
		switch es.stale[mi].step(ref.Sub(last) >= pol.StaleAfter, at, 0) {
		case 1:
			es.emit(Event{Time: at, Enterprise: es.id, Kind: EventStale, Meter: m.ID, Reason: since})
		case -1:
			es.emit(Event{Time: at, Enterprise: es.id, Kind: EventStale, Meter: m.ID, Resolved: true, Reason: "reporting again"})
		}
		if es.stale[mi].firing {
			res.StaleMeters = append(res.StaleMeters, m.ID)
		}
	}

	// Dynamic code.
	holds, why := e.conditions(ca, res.StaleMeters)
	cand, matched := pol.Classify(holds)
	if !res.CodeHeld {
		e.stepCode(es, ca, holds, cand, reasonsOf(matched, why), matched, at)
	}
	st := &es.code
	res.Code, res.CodeSince, res.CodeReasons = st.Code, st.Since, st.Reasons
	res.PendingCode, res.PendingSince, res.PendingReasons = st.Pending, st.PendingSince, st.PendingReasons
	res.PendingDue = pol.PendingDue(st)
	if pol.LastAuditIndicator != "" {
		// Only an audit record (auditor and report) restarts the cycle; the
		// engine sees accepted declarations only.
		for _, d := range es.decls[pol.LastAuditIndicator] {
			if d.AuditRecord() && !d.ValidFrom.After(at) && d.ValidFrom.After(res.LastAudit) {
				res.LastAudit = d.ValidFrom
			}
		}
	}
	switch {
	case res.Code == "":
	case res.LastAudit.IsZero():
		res.NextAuditDue = res.CodeSince
	default:
		res.NextAuditDue = res.LastAudit.AddDate(0, pol.AuditInterval(res.Code), 0)
	}

	if !res.CodeHeld {
		e.regressions(es, ca, ba, at)
	}
	e.exceedances(es, at)
	res.Lagging = LaggingIndicators(std, ca, e.cfg.Solutions)
	es.result = res
	e.observeMetrics(es, res)
	if e.cfg.Sink != nil && now.Sub(es.lastPt) >= e.cfg.PointEvery {
		if es.lastPt.IsZero() {
			// Spread the enterprises over PointEvery after their first
			// write, so that a fleet does not write all its points in one
			// tick every PointEvery.
			h := fnv.New64a()
			h.Write([]byte(es.id))
			es.lastPt = now.Add(-time.Duration(h.Sum64() % uint64(e.cfg.PointEvery)))
		} else {
			es.lastPt = now
		}
		es.pts = appendPoints(es.pts, std, e.cwin, res)
	}
}

// dataTime returns the time an enterprise is evaluated at and whether it
// is catching up. An enterprise catches up while a gateway that delivered
// within the policy's stale.after (of the engine clock) has data that lags
// the clock by more than stale.after: then its data time is the oldest
// data time of its active gateways, the time through which everything
// still arriving has arrived. Otherwise (live, or silent: nothing
// arriving) it is now, so that silence ages the windows and the code.
func (e *Engine) dataTime(es *entState, now time.Time) (time.Time, bool) {
	after := e.pol.StaleAfter
	var oldest time.Time
	for i := range es.gws {
		g := &es.gws[i]
		if g.active(now, after) && (oldest.IsZero() || g.data.Before(oldest)) {
			oldest = g.data
		}
	}
	if oldest.IsZero() || now.Sub(oldest) <= after {
		return now, false
	}
	return oldest, true
}

// stepCode advances an enterprise's code by one evaluation at data time
// at whose rules gave cand with reasons. An enterprise gets its first code
// only from an assessment with enough data (graded, completeness at least
// the policy's minimum), at once; and no candidate better than the code in
// force counts while data is insufficient, so that missing data never
// improves a code (a pending upgrade is cancelled).
func (e *Engine) stepCode(es *entState, ca *Assessment, holds map[Condition]bool, cand Code, reasons []Reason, matched []Condition, at time.Time) {
	pol, st := e.pol, &es.code
	old := st.Code
	if old == "" && (ca.Level == NoLevel || ca.Completeness < pol.MinCompleteness) {
		return
	}
	at = later(at, es.lastStep) // data time may step back a little when a lagging gateway resumes
	es.lastStep = at
	st.Enterprise = es.id
	stepCand, stepMatched, fresh := cand, matched, true
	if old != "" && pol.rank(cand) < pol.rank(old) && holds[CondInsufficientData] {
		stepCand, stepMatched, fresh = old, nil, false
	}
	pendingReasons := st.PendingReasons
	changed := pol.Step(st, stepCand, stepMatched, at)
	switch {
	case fresh && st.Code == cand:
		st.Reasons = reasons
	case changed:
		// An upgrade lands on the worst code held throughout, whose
		// reasons are those it was pending with.
		st.Reasons = pendingReasons
	}
	switch {
	case st.Pending == "":
		st.PendingReasons = nil
	case fresh && st.Pending == cand:
		st.PendingReasons = reasons
	}
	if changed {
		reason := reasonsText(st.Reasons)
		if old == "" {
			reason = "initial: " + reason
		}
		es.emit(Event{Time: at, Enterprise: es.id, Kind: EventCodeChange, Window: ca.Window, OldCode: old, NewCode: st.Code,
			OldLevel: NoLevel, NewLevel: ca.Level, Reason: reason, Reasons: slices.Clone(st.Reasons)})
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func levelName(l Level) string {
	if l == NoLevel {
		return "not graded"
	}
	return l.String()
}

// regressions raises level_drop, worsening and restrictive_fail events on
// the policy's window, each announced once per change.
func (e *Engine) regressions(es *entState, ca, ba *Assessment, now time.Time) {
	pol := e.pol
	for _, ind := range e.std.Indicators {
		st := &es.inds[ind.Index]
		r := &ca.Indicators[ind.Index]
		if r.Status != Graded {
			continue
		}
		// Level drop.
		switch {
		case st.ref == NoLevel:
			st.ref = r.Level
		case r.Level == st.ref:
			st.pendSince = time.Time{}
		default:
			worse := r.Level > st.ref
			if st.pendSince.IsZero() || st.pendWorse != worse {
				st.pendSince, st.pendWorse = now, worse
			}
			if now.Sub(st.pendSince) >= pol.LevelDrop {
				if worse {
					es.emit(Event{Time: now, Enterprise: es.id, Kind: EventLevelDrop, Window: ca.Window, Indicator: ind.ID,
						OldLevel: st.ref, NewLevel: r.Level, NewValue: r.Value,
						Reason: fmt.Sprintf("%s fell from Level %s to %s", ind.ID, st.ref, r.Level)})
				}
				st.ref, st.pendSince = r.Level, time.Time{}
			}
		}
		// Restrictive failure.
		if ind.Restrictive {
			switch st.restrictive.step(r.Level == BelowIII, now, pol.RestrictiveFail) {
			case 1:
				es.emit(Event{Time: now, Enterprise: es.id, Kind: EventRestrictiveFail, Window: ca.Window, Indicator: ind.ID,
					NewLevel: r.Level, NewValue: r.Value, Reason: fmt.Sprintf("restrictive %s below Level III (%s)", ind.ID, formatValue(ind, r))})
			case -1:
				es.emit(Event{Time: now, Enterprise: es.id, Kind: EventRestrictiveFail, Window: ca.Window, Indicator: ind.ID, Resolved: true,
					NewLevel: r.Level, NewValue: r.Value, Reason: fmt.Sprintf("restrictive %s back at Level %s", ind.ID, r.Level)})
			}
		}
		// Worsening against the trailing baseline.
		b := &ba.Indicators[ind.Index]
		if !ind.Metered() || ca.Window == ba.Window || !b.HasValue() || b.Value == 0 {
			continue
		}
		rel := (r.Value - b.Value) / math.Abs(b.Value)
		if ind.Direction == HigherBetter {
			rel = -rel
		}
		thr := pol.Worsening.Fraction
		if st.worsening.firing {
			thr = pol.Worsening.ClearFraction
		}
		switch st.worsening.step(rel > thr, now, pol.Worsening.For) {
		case 1:
			es.emit(Event{Time: now, Enterprise: es.id, Kind: EventWorsening, Window: ca.Window, Indicator: ind.ID,
				OldValue: b.Value, NewValue: r.Value, OldLevel: b.Level, NewLevel: r.Level,
				Reason: fmt.Sprintf("%s %.1f%% worse than its %s baseline (%.4g -> %.4g %s)", ind.ID, 100*rel, ba.Window, b.Value, r.Value, ind.Unit)})
		case -1:
			es.emit(Event{Time: now, Enterprise: es.id, Kind: EventWorsening, Window: ca.Window, Indicator: ind.ID, Resolved: true,
				OldValue: b.Value, NewValue: r.Value, Reason: fmt.Sprintf("%s back within %.0f%% of its baseline", ind.ID, 100*pol.Worsening.ClearFraction)})
		}
	}
}

func formatValue(ind *Indicator, r *IndicatorResult) string {
	if ind.Kind == Qualitative {
		return "declared " + r.Level.String()
	}
	return fmt.Sprintf("%.4g %s", r.Value, ind.Unit)
}

func (e *Engine) observeMetrics(es *entState, res *Result) {
	g := es.gauges
	for wi := range res.Assessments {
		a := &res.Assessments[wi]
		g.level[wi].Set(float64(a.Level))
		g.score[wi].Set(a.Score)
		g.complete[wi].Set(a.Completeness)
		for k := range a.Y {
			g.y[wi][k].Set(a.Y[k])
		}
	}
	for i, c := range e.pol.Codes {
		v := 0.0
		if c.Code == res.Code {
			v = 1
		}
		g.code[i].Set(v)
	}
	due := math.NaN() // no code, no audit interval: not due (and no alert)
	if !res.NextAuditDue.IsZero() {
		due = float64(res.NextAuditDue.Unix())
	}
	g.auditDue.Set(due)
	g.stale.Set(float64(len(res.StaleMeters)))
	ca := &res.Assessments[e.cwin]
	for i := range ca.Indicators {
		r := &ca.Indicators[i]
		v := math.NaN()
		if r.HasValue() && r.Status == Graded {
			v = r.Value
		}
		g.indValue[i].Set(v)
		g.indLevel[i].Set(float64(r.Level))
	}
}
