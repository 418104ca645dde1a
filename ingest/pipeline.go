package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanprod/cleanprod/internal/piece"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

// Writer is the store method the pipeline needs.
type Writer interface {
	WriteReadings(ctx context.Context, rs []store.Reading) error
}

// HistorySource streams the recent readings per meter that rebuild the
// normaliser's state at start (the store implements it).
type HistorySource interface {
	EachLatestReading(ctx context.Context, q store.LatestQuery, fn func(*store.Reading) error) error
}

// PublishFunc publishes a payload at QoS 1 and returns once the broker
// has it; the pipeline uses it for dead-letters.
type PublishFunc func(ctx context.Context, topic string, payload []byte) error

// ObserveFunc receives the amounts of a batch once the store accepted it
// (the scorer's input). It must not block for long and must not keep rs.
type ObserveFunc func(rs []store.Reading)

// Journal is told of each store write before it is made and once its
// readings were handed to the ObserveFunc, with the write's number: 1, 2,
// ... in the order the writes are observed. The scorer's checkpoints use
// it to know which buckets changed after one (scoring/checkpoint.go).
type Journal interface {
	// Intend returns once what it needs of rs is durable; it must not
	// keep rs.
	Intend(seq uint64, rs []store.Reading)
	Observed(seq uint64)
}

// Delivery is one MQTT message handed to the pipeline.
type Delivery struct {
	Topic      string
	Payload    []byte
	Redelivery bool // the MQTT DUP flag
	Received   time.Time
	Ack        func() // acknowledges the message to its sender; called at most once
	// Rejected, when set, is the receiver's verdict on a message it could
	// not hand on (an HJ 212 logger of an unknown MN, a frame with a bad
	// CRC): the message is dead-lettered with it, in order with the
	// others, and then acknowledged.
	Rejected *DecodeError
}

// PipelineConfig configures batching and retries.
type PipelineConfig struct {
	Normaliser NormaliserConfig
	// BatchSize is the number of readings that triggers a write.
	BatchSize int
	// BatchInterval bounds how long a reading waits in a partial batch
	// while a batch is being written; when none is, a writer takes the
	// partial batch at once.
	BatchInterval time.Duration
	// Writers is the number of batches written to the store at once
	// (default 2): a store answers one request slower than it accepts
	// several. Batches are still acknowledged, and handed to the scorer,
	// in order; a batch that rewrites a reading of an earlier one (an
	// out-of-order counter reading) waits until those are stored.
	Writers int
	// MaxInflight is the number of messages waiting to be processed above
	// which the pipeline warns (the normaliser or the store is behind).
	// What bounds the messages held unacknowledged is the Subscriber's
	// window (SubscriberConfig.MaxUnackedMessages and MaxUnackedBytes).
	MaxInflight int
	// RetryMin and RetryMax bound the back-off between failed writes.
	RetryMin, RetryMax time.Duration
	// ShutdownGrace is how long the final flush may take at shutdown.
	ShutdownGrace time.Duration
	// RestoreHistory is how many of each meter's latest readings Restore
	// reads (0 or above Normaliser.History: History). Fewer make a start
	// on a big fleet quicker; a late reading older than them is placed
	// from the store like any other (see lateWorker).
	RestoreHistory int
	// RestorePiece is how long one of Restore's store queries should take
	// (default piece.DefaultTarget); keep it well within the store
	// client's timeout.
	RestorePiece time.Duration
	// RestoreConcurrency is how many of Restore's queries run at once
	// (0: 1). InfluxDB answers one on about one core.
	RestoreConcurrency int
	// Journal, when not nil, is told of every store write (see Journal).
	Journal Journal
	// Now returns the current time (nil: time.Now).
	Now func() time.Time
	// Owns, when not nil, says which enterprises this replica's shard
	// owns (shard.Set.Owns); nil owns every enterprise. A message of
	// another shard's enterprise is acknowledged without being processed
	// and counted (cleanprod_ingest_not_owned_total): see notOwned.
	Owns func(enterprise string) bool
}

// Pipeline decodes, normalises, batches, stores and acknowledges
// telemetry. Submit may be called from any goroutine; Run must be called
// once and owns all state.
type Pipeline struct {
	cfg      PipelineConfig
	reg      *registry.Registry
	norm     *Normaliser
	writer   Writer
	publish  PublishFunc
	observe  ObserveFunc
	metrics  *Metrics
	log      *slog.Logger
	free     chan struct{} // cap 1: the writer finished a batch
	wake     chan struct{} // cap 1: the queue has messages
	reconf   chan reconfigure
	rejectLg *rateLog
	// notOwnedLg logs messages of other shards' enterprises, at most one
	// line per enterprise per interval.
	notOwnedLg *rateLog

	lastMessage map[*registry.Gateway]prometheus.Gauge // owned by Run's goroutine

	mu    sync.Mutex // guards queue
	queue []Delivery // received, not yet processed, in arrival order

	// Late readings: messages with readings older than their meters'
	// kept history wait in lateQ, unacknowledged, while lateWorker asks
	// the store about them off Run's goroutine; the answers come back on
	// lateDone. storedSeq is the number of the last batch stored and
	// acknowledged; sent (Run's) the last sent to the writers.
	lookup    LookupFunc
	lateMu    sync.Mutex
	lateQ     []lateItem
	lateWake  chan struct{} // cap 1
	lateDone  chan lateGroup
	storedSeq atomic.Uint64
	stored    chan struct{} // cap 1: a batch was stored
	sent      uint64

	// Readings the store refused for good, for Run to take out of the
	// meters' histories (refusedWake, cap 1, says there are some).
	refusedMu   sync.Mutex
	refused     []store.Reading
	refusedWake chan struct{}

	current   atomic.Pointer[registry.Registry] // the registry in force, for receivers on other goroutines
	storeOK   atomic.Bool                       // the last write (or ping) succeeded
	unacked   atomic.Int64                      // messages submitted and not yet acknowledged
	restoring atomic.Pointer[RestoreProgress]
}

// NewPipeline returns a pipeline writing to w. publish sends dead-letters;
// observe (may be nil) receives stored amounts.
func NewPipeline(reg *registry.Registry, cfg PipelineConfig, w Writer, publish PublishFunc, observe ObserveFunc, m *Metrics, log *slog.Logger) *Pipeline {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 5000
	}
	if cfg.BatchInterval <= 0 {
		cfg.BatchInterval = 250 * time.Millisecond
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 2
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 1000
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 100 * time.Millisecond
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = 30 * time.Second
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if observe == nil {
		observe = func([]store.Reading) {}
	}
	// The normaliser never asks the store itself: Run asks ahead, off its
	// goroutine, and provides the answer (see lateWorker).
	lookup := cfg.Normaliser.Lookup
	cfg.Normaliser.Lookup = nil
	p := &Pipeline{
		cfg: cfg, reg: reg, norm: NewNormaliser(reg, cfg.Normaliser), writer: w, publish: publish,
		lookup: lookup, lateWake: make(chan struct{}, 1), refusedWake: make(chan struct{}, 1), lateDone: make(chan lateGroup), stored: make(chan struct{}, 1),
		observe: observe, metrics: m, log: log,
		free:        make(chan struct{}, 1),
		wake:        make(chan struct{}, 1),
		reconf:      make(chan reconfigure),
		lastMessage: make(map[*registry.Gateway]prometheus.Gauge),
		rejectLg:    newRateLog(log, 10*time.Second),
		notOwnedLg:  newRateLog(log, 30*time.Second),
	}
	if h := p.norm.cfg.History; p.cfg.RestoreHistory <= 0 || p.cfg.RestoreHistory > h {
		p.cfg.RestoreHistory = h
	}
	p.storeOK.Store(true)
	p.current.Store(reg)
	return p
}

type reconfigure struct {
	reg  *registry.Registry
	held func() error
	stop <-chan struct{} // the caller's ctx.Done(): stop waiting for the batches in flight
	done chan error
}

// errInFlight says Reconfigure stopped waiting for batches in flight.
var errInFlight = errors.New("ingest: batches in flight are not stored yet")

// Reconfigure switches the running pipeline to reg (a reloaded registry;
// nil keeps the registry, to only hold ingest while held runs).
// It first waits until every batch taken so far is written and observed,
// then holds ingest (messages wait, unacknowledged, in the queue and the
// broker) while held runs, for example to reload the scorer from the
// store with nothing in flight. If held returns an error, the pipeline
// keeps its registry and returns the error.
//
// ctx bounds the wait for the batches in flight, which the store decides
// (they are retried until it accepts them): if it ends first, nothing
// changes and Reconfigure returns an error wrapping ctx's. Once held has
// started, Reconfigure returns held's result whatever ctx does, so that
// the caller never takes a switch that happened for one that did not.
func (p *Pipeline) Reconfigure(ctx context.Context, reg *registry.Registry, held func() error) error {
	r := reconfigure{reg: reg, held: held, stop: ctx.Done(), done: make(chan error, 1)}
	select {
	case p.reconf <- r:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	// Run answers every request it took.
	err := <-r.done
	if errors.Is(err, errInFlight) {
		return fmt.Errorf("%w: %w", err, context.Cause(ctx))
	}
	return err
}

// RestoreProgress says how far Restore is: enterprises done of total.
type RestoreProgress struct{ Done, Total int }

// restoreRecent is the span Restore asks the store for meters' latest
// readings in first; it asks within PastHorizon only for the enterprises
// with a meter that has fewer readings in it than RestoreHistory.
const restoreRecent = 24 * time.Hour

// Restore rebuilds per-meter state from the store's recent readings
// (RestoreHistory per meter, within PastHorizon; asked for within
// restoreRecent first), a group of enterprises per query,
// RestoreConcurrency queries at once, streamed;
// call it before Run. A failed query is retried with back-off in smaller
// groups until ctx ends: a slow or restarting store delays the start, it
// does not end it. newest, when not nil, is handed each meter's newest
// reading (for the meters view and the scorer's freshness); it is called
// from one goroutine at a time.
func (p *Pipeline) Restore(ctx context.Context, src HistorySource, newest func(*store.Reading)) error {
	start := time.Now()
	since := p.cfg.Now().Add(-p.cfg.Normaliser.PastHorizon)
	ents := p.reg.Enterprises
	p.restoring.Store(&RestoreProgress{Total: len(ents)})
	defer p.restoring.Store(nil)
	size := piece.Sizer{Size: 256, Max: 4096, Target: p.cfg.RestorePiece}
	conc := max(1, p.cfg.RestoreConcurrency)

	// Each meter's readings come together, oldest first, and are placed
	// together, the newest handed on; one group's at a time, as the
	// normaliser and newest are not safe for concurrent use. Placing a
	// reading twice (a retried group) changes nothing.
	var placeMu sync.Mutex
	place := func(rs []store.Reading) {
		if len(rs) == 0 {
			return
		}
		placeMu.Lock()
		defer placeMu.Unlock()
		p.norm.Restore(rs)
		if newest != nil {
			newest(&rs[len(rs)-1])
		}
	}
	type answer struct {
		part []*registry.Enterprise
		rows int
		took time.Duration
		err  error
	}
	// The latest readings are asked for within the last restoreRecent
	// first, and within PastHorizon only for the enterprises with a meter
	// that has fewer there: InfluxDB's cost of the query grows with the
	// span it covers (its shards), and most meters of a fleet report
	// every few minutes.
	recent := p.cfg.Now().Add(-restoreRecent)
	if !recent.After(since) {
		recent = since
	}
	query := func(ctx context.Context, part []*registry.Enterprise, from time.Time, seen map[*registry.Meter]int) (rows int, err error) {
		var ids []string // nil: everything, no filter to send
		if len(part) < len(ents) {
			ids = make([]string, len(part))
			for i, e := range part {
				ids[i] = e.ID
			}
		}
		var meter []store.Reading
		err = src.EachLatestReading(ctx, store.LatestQuery{Since: from, PerMeter: p.cfg.RestoreHistory, Enterprises: ids}, func(r *store.Reading) error {
			if n := len(meter); n > 0 && (r.Meter != meter[n-1].Meter || r.Enterprise != meter[n-1].Enterprise) {
				place(meter)
				meter = meter[:0]
			}
			meter = append(meter, *r)
			if m, ok := p.reg.Meter(r.Enterprise, r.Meter); ok && seen != nil {
				seen[m]++
			}
			rows++
			return nil
		})
		place(meter)
		return rows, err
	}
	fetch := func(ctx context.Context, part []*registry.Enterprise) answer {
		a := answer{part: part}
		t0 := time.Now()
		if recent.Equal(since) {
			a.rows, a.err = query(ctx, part, since, nil)
		} else {
			seen := make(map[*registry.Meter]int)
			a.rows, a.err = query(ctx, part, recent, seen)
			var short []*registry.Enterprise
			for _, e := range part {
				if slices.ContainsFunc(e.Meters, func(m *registry.Meter) bool { return seen[m] < p.cfg.RestoreHistory }) {
					short = append(short, e)
				}
			}
			if a.err == nil && len(short) > 0 {
				var n int
				n, a.err = query(ctx, short, since, nil)
				a.rows += n
			}
		}
		a.took = time.Since(t0)
		return a
	}

	fctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait() // nothing places readings once Restore returns
	}()
	answers := make(chan answer, conc)
	queue := piece.NewQueue(ents)
	var (
		inflight int
		done     int
		n        int
		backoff  <-chan time.Time // not nil: wait before the next query
	)
	for done < len(ents) {
		for inflight < conc && backoff == nil && queue.More() {
			part := queue.Take(size.Size)
			inflight++
			wg.Add(1)
			go func() {
				defer wg.Done()
				answers <- fetch(fctx, part)
			}()
		}
		var a answer
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-backoff:
			backoff = nil
			continue
		case a = <-answers:
		}
		inflight--
		if err := a.err; err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if store.Refused(err) {
				return fmt.Errorf("read meter state from the store: %w", err)
			}
			p.metrics.restoreRetries.Inc()
			queue.GiveBack(a.part)
			wait := size.Failed(len(a.part))
			p.log.Warn("reading meter state from the store failed; retrying in smaller pieces", "err", err, "enterprises", len(a.part), "next_group", size.Size, "retry_in", wait)
			backoff = time.After(wait)
			continue
		}
		size.Done(len(a.part), a.took)
		n += a.rows
		done += len(a.part)
		p.restoring.Store(&RestoreProgress{Done: done, Total: len(ents)})
	}
	p.log.Info("meter state restored from store", "readings", n, "meters", p.norm.Meters(), "took", time.Since(start).Round(time.Millisecond))
	if newest != nil {
		p.restoreSilent(ctx, src, newest)
	}
	return nil
}

// restoreSilent hands newest the newest reading of each meter of the
// enterprises none of whose meters has a reading within PastHorizon: the
// scorer still holds them in its windows, and what their freshness (the
// API's data_through) was before a restart must not be recomputed lower
// from the windows' buckets. One reading per meter, of those enterprises
// only; it is not placed in the meter state (older than PastHorizon, a
// new reading starts afresh). A failed query is logged, not retried: it
// only costs the freshness of silent enterprises.
func (p *Pipeline) restoreSilent(ctx context.Context, src HistorySource, newest func(*store.Reading)) {
	var silent []string
	for _, e := range p.reg.Enterprises {
		if !p.norm.hasHistory(e) {
			silent = append(silent, e.ID)
		}
	}
	if len(silent) == 0 {
		return
	}
	err := src.EachLatestReading(ctx, store.LatestQuery{PerMeter: 1, Enterprises: silent}, func(r *store.Reading) error {
		newest(r)
		return nil
	})
	if err != nil && ctx.Err() == nil {
		p.log.Warn("reading the last readings of enterprises silent beyond the past horizon failed; their data_through restarts from the scoring windows", "enterprises", len(silent), "err", err)
	}
}

// Restoring reports Restore's progress (nil: not restoring). Safe for
// concurrent use.
func (p *Pipeline) Restoring() *RestoreProgress { return p.restoring.Load() }

// Holding reports whether messages wait unacknowledged: the broker then
// rightly sends nothing more until they are acknowledged.
func (p *Pipeline) Holding() bool { return p.unacked.Load() > 0 }

// StoreHealthy reports whether the last store write succeeded.
func (p *Pipeline) StoreHealthy() bool { return p.storeOK.Load() }

// Submit hands a message to the pipeline in arrival order. It never
// blocks, so the MQTT client keeps reading (and answering pings) while the
// store is down; the caller bounds what it submits and does not yet see
// acknowledged (the Subscriber does, with its window), since no message is
// acknowledged until the store has it. Any goroutine may call Submit; the
// subscriber calls it from paho's ordered handler.
func (p *Pipeline) Submit(d Delivery) {
	p.metrics.messages.Inc()
	p.metrics.inflight.Inc()
	p.metrics.unackedBytes.Add(float64(msgSize(d.Topic, d.Payload)))
	p.unacked.Add(1)
	p.mu.Lock()
	p.queue = append(p.queue, d)
	n := len(p.queue)
	p.mu.Unlock()
	if n > p.cfg.MaxInflight {
		p.rejectLg.warn("inflight", "more messages wait to be processed than mqtt.max_inflight; the store or the normaliser is behind", "queued", n, "max_inflight", p.cfg.MaxInflight)
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// take moves the queued messages into buf.
func (p *Pipeline) take(buf []Delivery) []Delivery {
	p.mu.Lock()
	buf = append(buf[:0], p.queue...)
	clear(p.queue)
	p.queue = p.queue[:0]
	p.mu.Unlock()
	return buf
}

func (p *Pipeline) queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// batch is a set of messages whose readings are written together; its
// messages are acknowledged together once the store accepted it.
type batch struct {
	msgs     []batchMsg
	write    []store.Reading
	observe  []store.Reading
	letters  []DeadLetter
	accepted int
	rewrites int // readings rewriting one written before (same key)
	started  time.Time
	refused  []store.Reading // readings the store refused for good: to be taken out of the meters' histories
	seq      uint64          // the write's number (see Journal), set when sent
	stored   chan struct{}   // closed by the writer when done with it
	err      error           // set before stored is closed: ctx ended first
}

type batchMsg struct {
	d          Delivery
	fix        bool // rewrites after a refusal (see Normaliser.forget), no message of a sender
	start, end int  // the message's readings: write[start:end]
	obsStart   int
	obsEnd     int
}

func (b *batch) reset() {
	// Clear before truncating so the reused arrays do not keep old
	// payloads and letters alive.
	clear(b.msgs)
	clear(b.letters)
	b.msgs, b.write, b.observe, b.letters, b.refused = b.msgs[:0], b.write[:0], b.observe[:0], b.letters[:0], b.refused[:0]
	b.accepted, b.rewrites, b.err = 0, 0, nil
	b.stored = make(chan struct{})
}

// Run processes messages until ctx ends, then flushes the batch it holds
// (for at most ShutdownGrace) and returns. Messages not written by then,
// and those still queued, stay unacknowledged: the broker redelivers them.
func (p *Pipeline) Run(ctx context.Context) error {
	// Writers+1 batches go round: one filling (cur), the others with the
	// writers or waiting for their turn to be acknowledged. The completer
	// acknowledges them in the order they were sent.
	nw := p.cfg.Writers
	toWrite := make(chan *batch)
	order := make(chan *batch, nw+1)
	spare := make(chan *batch, nw+1)
	for range nw + 1 {
		b := &batch{}
		b.reset()
		spare <- b
	}
	writeCtx, cancelWrites := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWrites()
	var writers sync.WaitGroup
	for range nw {
		writers.Go(func() {
			for b := range toWrite {
				b.err = p.storeBatch(writeCtx, b)
				close(b.stored)
			}
		})
	}
	completed := make(chan struct{})
	go func() {
		defer close(completed)
		for b := range order {
			<-b.stored
			if b.err == nil {
				p.completeBatch(writeCtx, b)
				if len(b.refused) > 0 {
					p.refusedMu.Lock()
					p.refused = append(p.refused, b.refused...)
					p.refusedMu.Unlock()
					select {
					case p.refusedWake <- struct{}{}:
					default:
					}
				}
				p.storedSeq.Store(b.seq)
				select {
				case p.stored <- struct{}{}:
				default:
				}
			}
			b.reset()
			spare <- b
			select {
			case p.free <- struct{}{}:
			default:
			}
		}
	}()
	// idle says no batch is with the writers or waiting for its acks.
	idle := func() bool { return len(spare) == nw }
	// drain waits until idle, or until stop is closed (false).
	drain := func(stop <-chan struct{}) bool {
		for !idle() {
			select {
			case <-p.free:
			case <-stop:
				return false
			}
		}
		return true
	}

	cur := <-spare
	if p.lookup != nil {
		go p.lateWorker(ctx)
	}
	var items []Delivery
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	// send hands cur to a writer; wait says whether to block for one
	// (until stop is closed; nil: until a writer takes it).
	send := func(wait bool, stop <-chan struct{}) {
		if len(cur.msgs) == 0 {
			return
		}
		if cur.rewrites > 0 && !idle() {
			// It rewrites readings that a batch in flight may still be
			// writing: let those land first, or the older value could win.
			if !wait || !drain(stop) {
				return
			}
		}
		cur.seq = p.sent + 1
		if wait {
			select {
			case toWrite <- cur:
			case <-stop:
				return // the shutdown flush sends it
			}
		} else {
			// A partial batch goes only to writers with nothing else in
			// flight: under load batches fill up, and every store request
			// (an fsync of InfluxDB's WAL) carries a full batch.
			if !idle() {
				return
			}
			select {
			case toWrite <- cur:
			default:
				return
			}
		}
		p.sent++
		order <- cur
		timer.Stop()
		cur = <-spare
	}
	for {
		select {
		case <-p.wake:
			items = p.take(items)
			for _, d := range items {
				if len(cur.msgs) == 0 {
					cur.started = p.cfg.Now()
					timer.Reset(p.cfg.BatchInterval)
				}
				p.process(d, cur)
				if len(cur.write) >= p.cfg.BatchSize {
					send(true, ctx.Done())
				}
			}
			clear(items)
			if p.queued() == 0 {
				send(false, nil) // nothing else waiting: write now if a writer is idle
			}
		case <-p.refusedWake:
			// Readings the store refused never were: the readings that
			// counted from them count again from what was stored before.
			p.refusedMu.Lock()
			rs := p.refused
			p.refused = nil
			p.refusedMu.Unlock()
			m := batchMsg{fix: true, start: len(cur.write), obsStart: len(cur.observe)}
			n := p.norm.forget(rs, &cur.write, &cur.observe)
			if n > 0 {
				if len(cur.msgs) == 0 {
					cur.started = p.cfg.Now()
					timer.Reset(p.cfg.BatchInterval)
				}
				m.end, m.obsEnd = len(cur.write), len(cur.observe)
				cur.msgs = append(cur.msgs, m)
				cur.rewrites += n
				p.metrics.refusedRewrites.Add(float64(n))
			}
			if p.queued() == 0 {
				send(false, nil)
			}
		case g := <-p.lateDone:
			// The store's answer about waiting late readings: placed now
			// like any others, the histories then given back their limit.
			p.norm.provide(g.stored, g.asked)
			for _, it := range g.items {
				p.norm.unpin(it.spans)
				if len(cur.msgs) == 0 {
					cur.started = p.cfg.Now()
					timer.Reset(p.cfg.BatchInterval)
				}
				p.process(it.d, cur)
				if len(cur.write) >= p.cfg.BatchSize {
					send(true, ctx.Done())
				}
			}
			p.norm.endProvided()
			p.norm.trimExtended()
			p.metrics.lateWaiting.Set(float64(p.lateWaiting()))
			if p.queued() == 0 {
				send(false, nil)
			}
		case <-p.free:
			if p.queued() == 0 {
				send(false, nil)
			}
		case <-timer.C:
			send(true, ctx.Done())
		case r := <-p.reconf:
			// Every batch taken so far is written and observed first,
			// for as long as the pipeline runs and the caller waits.
			stop, drained := make(chan struct{}), make(chan struct{})
			go func() {
				select {
				case <-ctx.Done():
				case <-r.stop:
				case <-drained:
				}
				close(stop)
			}()
			send(true, stop)
			ok := drain(stop)
			close(drained)
			if !ok {
				if ctx.Err() != nil {
					r.done <- ctx.Err()
				} else {
					r.done <- errInFlight
				}
				continue
			}
			err := r.held()
			if err == nil && r.reg != nil {
				p.setRegistry(r.reg)
			}
			r.done <- err
		case <-ctx.Done():
			// The final flush: what is held goes to the writers, and
			// everything sent is acknowledged, within the grace.
			done := make(chan struct{})
			go func() {
				send(true, nil)
				close(toWrite)
				writers.Wait()
				close(order)
				<-completed
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(p.cfg.ShutdownGrace):
				p.log.Warn("store did not accept the last batch within the shutdown grace; its messages stay unacknowledged and will be redelivered", "grace", p.cfg.ShutdownGrace)
				cancelWrites()
				<-done
			}
			return nil
		}
	}
}

// setRegistry switches to reg on Run's goroutine; the gauges of gateways
// that left go.
func (p *Pipeline) setRegistry(reg *registry.Registry) {
	p.norm.SetRegistry(reg)
	p.reg = reg
	p.current.Store(reg)
	for gw := range p.lastMessage {
		if _, ok := reg.Gateway(gw.Enterprise.ID, gw.ID); !ok {
			p.metrics.lastMessage.DeleteLabelValues(gw.Enterprise.ID, gw.ID)
			p.metrics.seqGaps.DeleteLabelValues(gw.Enterprise.ID, gw.ID)
			p.metrics.seqRenumbered.DeleteLabelValues(gw.Enterprise.ID, gw.ID)
		}
	}
	clear(p.lastMessage) // keyed by the old registry's gateways
}

// process normalises one message into b.
func (p *Pipeline) process(d Delivery, b *batch) {
	m := batchMsg{d: d, start: len(b.write), obsStart: len(b.observe)}
	var out Outcome
	derr := d.Rejected
	if derr == nil && p.notOwned(d.Topic) {
		b.msgs = append(b.msgs, m) // acknowledged in order, nothing stored
		return
	}
	if derr == nil {
		var (
			gw  *registry.Gateway
			msg *Message
		)
		gw, msg, derr = p.norm.decode(d.Topic, d.Payload, d.Received)
		if derr == nil && p.lookup != nil {
			if spans := p.norm.lateSpans(gw, msg, d.Received, nil); len(spans) > 0 && (p.norm.asked == nil || !covered(spans, p.norm.asked)) {
				p.park(d, spans, len(b.msgs) > 0)
				return
			}
		}
		if derr == nil {
			out = p.norm.normaliseDecoded(gw, msg, d.Redelivery, d.Received, &b.write, &b.observe)
		}
	}
	m.end, m.obsEnd = len(b.write), len(b.observe)
	b.msgs = append(b.msgs, m)
	if derr != nil {
		p.reject(derr.Reason, 1, d.Topic, derr.Detail)
		b.letters = append(b.letters, messageLetter(d.Topic, d.Payload, d.Received, derr))
		return
	}
	// The topic was parsed and the gateway looked up by Process: take the
	// gateway from its outcome, and its gauge from a map the pipeline
	// goroutine owns, rather than hashing label values per message.
	last := p.lastMessage[out.Gateway]
	if last == nil {
		last = p.metrics.lastMessage.WithLabelValues(out.Gateway.Enterprise.ID, out.Gateway.ID)
		p.lastMessage[out.Gateway] = last
		// The gateway's lost-message counter exists from its first
		// message, at 0, so that increase() sees its first loss.
		p.metrics.seqGaps.WithLabelValues(out.Gateway.Enterprise.ID, out.Gateway.ID)
	}
	last.Set(float64(d.Received.UnixNano()) / 1e9)
	if out.SeqGap > 0 {
		p.metrics.seqGaps.WithLabelValues(out.Gateway.Enterprise.ID, out.Gateway.ID).Add(float64(out.SeqGap))
	}
	if out.SeqRepeat {
		p.metrics.seqRepeats.Inc()
	}
	if out.SeqRenumbered {
		p.metrics.seqRenumbered.WithLabelValues(out.Gateway.Enterprise.ID, out.Gateway.ID).Inc()
	}
	if out.SeqBackwards {
		p.metrics.seqBackwards.Inc()
	}
	b.accepted += out.Accepted
	b.rewrites += out.Rewrites
	if out.Duplicates > 0 {
		p.metrics.duplicates.Add(float64(out.Duplicates))
	}
	for flag, n := range out.Flagged {
		p.metrics.flagged.WithLabelValues(flag).Add(float64(n))
	}
	p.countEvents("reset", out.Resets)
	p.countEvents("rollover", out.Rollovers)
	p.countEvents("replacement", out.Replaced)
	p.countEvents("glitch", out.Glitches)
	p.countEvents("rebase", out.Rebased)
	if len(out.Rejects) > 0 {
		for _, r := range out.Rejects {
			p.reject(r.Reason, 1, d.Topic, r.Detail)
		}
		b.letters = append(b.letters, readingLetters(d.Topic, len(d.Payload), d.Received, out.Rejects)...)
	}
}

// notOwned reports whether topic is a gateway topic of an enterprise of
// another shard, and counts and logs it. Such a message reaches this
// replica only when its persistent session subscribed to the enterprise
// under another shard assignment (a reshard; a registry reload that moved
// nothing, since assignment is by id, cannot cause it) and queued it
// before being told otherwise. It is acknowledged without being
// processed, which loses nothing: the owner's session was subscribed to
// the same topic when the broker accepted the message (shards prepare
// subscribes the new shards' sessions before the old replicas stop), so
// the owner gets its own copy. Processing it here as well would have two
// replicas compute deltas for the same meter at once.
func (p *Pipeline) notOwned(topic string) bool {
	if p.cfg.Owns == nil {
		return false
	}
	ent, _, _, ok := parseGatewayTopic(topic)
	if !ok || p.cfg.Owns(ent) {
		return false // a bad topic is rejected as such
	}
	p.metrics.notOwned.WithLabelValues("mqtt").Inc()
	p.notOwnedLg.warn("not-owned", "message of an enterprise of another shard acknowledged without processing it (queued in this replica's session from before a reshard?); its owner's session receives it", "enterprise", truncateString(ent), "topic", truncateString(topic))
	return true
}

func (p *Pipeline) countEvents(event string, n int) {
	if n > 0 {
		p.metrics.counterEvents.WithLabelValues(event).Add(float64(n))
	}
}

func (p *Pipeline) reject(reason Reason, n int, topic, detail string) {
	p.metrics.rejected.WithLabelValues(string(reason)).Add(float64(n))
	p.rejectLg.warn(string(reason), "rejected input", "reason", reason, "topic", truncateString(topic), "detail", detail)
}

// writeBatch stores b (retrying until the store accepts it or ctx ends),
// publishes its dead-letters, then acknowledges its messages.
// storeBatch writes a batch's readings; an error means ctx ended first
// and its messages stay unacknowledged.
func (p *Pipeline) storeBatch(ctx context.Context, b *batch) error {
	if len(b.write) == 0 {
		return nil
	}
	if p.cfg.Journal != nil {
		p.cfg.Journal.Intend(b.seq, b.write)
	}
	err := p.writeRetrying(ctx, b.write)
	if store.IsPermanent(err) {
		err = p.writeEach(ctx, b)
	}
	if err != nil {
		return err
	}
	p.metrics.batchReadings.Observe(float64(len(b.write)))
	return nil
}

// completeBatch publishes a stored batch's dead-letters, then acknowledges
// its messages and hands its amounts to the scorer.
func (p *Pipeline) completeBatch(ctx context.Context, b *batch) {
	for _, dl := range b.letters {
		if err := p.publishLetter(ctx, dl); err != nil {
			return
		}
	}
	// Counted out before the acknowledgements: an acknowledgement makes
	// room in the subscriber's window for the next message, which must not
	// be counted while these still are.
	var size int64
	msgs := 0
	for _, m := range b.msgs {
		if !m.fix {
			size += msgSize(m.d.Topic, m.d.Payload)
			msgs++
		}
	}
	p.metrics.inflight.Sub(float64(msgs))
	p.metrics.unackedBytes.Sub(float64(size))
	p.unacked.Add(-int64(msgs))
	now := p.cfg.Now()
	for _, m := range b.msgs {
		if m.fix {
			continue
		}
		if m.d.Ack != nil {
			m.d.Ack()
		}
		p.metrics.ackLatency.Observe(now.Sub(m.d.Received).Seconds())
	}
	p.metrics.readings.Add(float64(b.accepted))
	if len(b.observe) > 0 {
		p.observe(b.observe)
	}
	if p.cfg.Journal != nil {
		p.cfg.Journal.Observed(b.seq)
	}
}

// writeRetrying writes rs until the store accepts them, refuses them
// permanently, or ctx ends.
func (p *Pipeline) writeRetrying(ctx context.Context, rs []store.Reading) error {
	backoff := p.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := p.writer.WriteReadings(ctx, rs)
		if err == nil {
			p.metrics.writeSeconds.Observe(time.Since(start).Seconds())
			if !p.storeOK.Swap(true) {
				p.log.Info("store accepts writes again", "attempts", attempt)
			}
			return nil
		}
		if store.IsPermanent(err) {
			p.metrics.storeErrors.WithLabelValues("permanent").Inc()
			return err
		}
		p.metrics.storeErrors.WithLabelValues("temporary").Inc()
		if p.storeOK.Swap(false) {
			p.log.Warn("store write failed; holding acknowledgements and retrying", "err", err, "readings", len(rs))
		}
		wait := backoff
		if ra := store.RetryAfter(err); ra > wait {
			wait = ra
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(backoff*2, p.cfg.RetryMax)
	}
}

// writeEach handles a batch the store refused: each message is written on
// its own, and a message the store refuses again reading by reading
// (writeReadings), so that what the store keeps of it is observed and only
// what it refuses is dead-lettered.
func (p *Pipeline) writeEach(ctx context.Context, b *batch) error {
	// Every counter reading of the batch keeps its register: one chained
	// to a reading the store refuses (store.Reading.Chained) would be read
	// back from the one before that.
	for i := range b.write {
		b.write[i].Chained = false
	}
	keepObs := b.observe[:0:0]
	for _, m := range b.msgs {
		if m.end == m.start {
			continue
		}
		err := p.writeRetrying(ctx, b.write[m.start:m.end])
		switch {
		case err == nil:
			keepObs = append(keepObs, b.observe[m.obsStart:m.obsEnd]...)
		case store.IsPermanent(err):
			if keepObs, err = p.writeReadings(ctx, b, m, err, keepObs); err != nil {
				return err
			}
		default:
			return err
		}
	}
	b.observe = keepObs
	return nil
}

// writeReadings writes a message the store refused one reading at a time:
// InfluxDB may have kept part of it (a partial write: points beyond the
// retention policy dropped, the rest stored), and what it kept must reach
// the scorer like any stored reading. Each reading it refuses again is
// dead-lettered on its own with the store's words. A message whose
// readings and amounts do not pair up one to one is dead-lettered whole,
// as before.
func (p *Pipeline) writeReadings(ctx context.Context, b *batch, m batchMsg, refused error, keepObs []store.Reading) ([]store.Reading, error) {
	ws, obs := b.write[m.start:m.end], b.observe[m.obsStart:m.obsEnd]
	if m.fix {
		// Rewrites the store refuses again: nothing to dead-letter, no
		// sender; the readings they rewrite stay as stored.
		p.reject(ReasonStoreRejected, len(ws), "", refused.Error())
		return keepObs, nil
	}
	if len(ws) != len(obs) || len(ws) == 1 {
		b.refused = append(b.refused, ws...)
		b.accepted -= m.end - m.start
		p.reject(ReasonStoreRejected, 1, m.d.Topic, refused.Error())
		b.letters = append(b.letters, messageLetter(m.d.Topic, m.d.Payload, m.d.Received, &DecodeError{ReasonStoreRejected, refused.Error()}))
		return keepObs, nil
	}
	var rejects []Reject
	for i := range ws {
		err := p.writeRetrying(ctx, ws[i:i+1])
		switch {
		case err == nil:
			keepObs = append(keepObs, obs[i])
		case store.IsPermanent(err):
			b.accepted--
			r := &ws[i]
			b.refused = append(b.refused, *r)
			raw, _ := json.Marshal(map[string]any{"meter": r.Meter, "ts": r.Time.Format(time.RFC3339Nano), "value": r.Value})
			rejects = append(rejects, Reject{Index: i, Reason: ReasonStoreRejected, Detail: fmt.Sprintf("meter %q at %s: %v", r.Meter, r.Time.Format(time.RFC3339Nano), err), Raw: raw})
			p.reject(ReasonStoreRejected, 1, m.d.Topic, err.Error())
		default:
			return keepObs, err
		}
	}
	b.letters = append(b.letters, readingLetters(m.d.Topic, len(m.d.Payload), m.d.Received, rejects)...)
	return keepObs, nil
}

// publishLetter publishes one dead-letter, retrying until the broker has
// it or ctx ends.
func (p *Pipeline) publishLetter(ctx context.Context, dl DeadLetter) error {
	payload, err := json.Marshal(dl)
	if err != nil {
		return fmt.Errorf("encode dead-letter: %w", err) // cannot happen for these types
	}
	backoff := p.cfg.RetryMin
	for {
		err := p.publish(ctx, DeadLetterTopic(dl.Reason), payload)
		if err == nil {
			p.metrics.deadLettered.Inc()
			return nil
		}
		p.metrics.deadLetterErrs.Inc()
		p.rejectLg.warn("deadletter-error", "dead-letter publish failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, p.cfg.RetryMax)
	}
}

// rateLog logs at most once per interval per key, counting what it held back.
type rateLog struct {
	log      *slog.Logger
	interval time.Duration
	mu       sync.Mutex
	last     map[string]time.Time
	held     map[string]int
}

func newRateLog(log *slog.Logger, interval time.Duration) *rateLog {
	return &rateLog{log: log, interval: interval, last: map[string]time.Time{}, held: map[string]int{}}
}

func (r *rateLog) warn(key, msg string, args ...any) {
	r.mu.Lock()
	now := time.Now()
	if now.Sub(r.last[key]) < r.interval {
		r.held[key]++
		r.mu.Unlock()
		return
	}
	held := r.held[key]
	r.last[key], r.held[key] = now, 0
	r.mu.Unlock()
	if held > 0 {
		args = append(args, "suppressed_since_last_log", held)
	}
	r.log.Warn(msg, args...)
}
