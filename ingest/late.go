package ingest

import (
	"cmp"
	"context"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

// LateMargin is how far before its earliest late reading a store look-up
// reads a meter's stored readings: a counter reading is placed after the
// stored register before it only when that lies within LateMargin.
const LateMargin = 6 * time.Hour

// meterID names a meter across registry reloads.
type meterID struct{ enterprise, meter string }

// lateSpan is the time span of one meter's late readings, or of what the
// store was asked about one meter; first says the store holds no reading
// of it before the span (within the past horizon).
type lateSpan struct {
	meter    meterID
	from, to time.Time
	first    bool
}

// lateSpans returns, per meter, the span from the earliest reading of msg
// that the meter's kept history cannot place (older than the readings it
// will keep once the message's newer readings of that meter are placed:
// the store must be asked about it) to the oldest reading kept, so that
// the stored readings asked for join the history without a gap. It
// changes nothing.
func (n *Normaliser) lateSpans(gw *registry.Gateway, msg *Message, now time.Time, spans []lateSpan) []lateSpan {
	latest := now.Add(n.cfg.FutureHorizon)
	earliest := now.Add(-n.cfg.PastHorizon)
	cand := n.lateScratch[:0]
	for i := range msg.Readings {
		r := &msg.Readings[i]
		if r.Invalid || r.Time.After(latest) || r.Time.Before(earliest) {
			continue
		}
		m, ok := gw.Meter(r.Meter)
		if !ok {
			continue
		}
		cand = append(cand, lateCand{m, r.Time.UnixNano()})
	}
	n.lateScratch = cand
	// Meters with several readings in the message: their other readings,
	// placed first or not, push older ones out of the history once it is
	// full; what it keeps is the History newest of both.
	var several map[*registry.Meter][]int64
	if len(cand) > 1 {
		clear(n.lateCount)
		if n.lateCount == nil {
			n.lateCount = map[*registry.Meter]int{}
		}
		for _, c := range cand {
			n.lateCount[c.m]++
		}
		for _, c := range cand {
			if n.lateCount[c.m] > 1 {
				if several == nil {
					several = map[*registry.Meter][]int64{}
				}
				several[c.m] = append(several[c.m], c.t)
			}
		}
	}
	for _, c := range cand {
		var entries []histEntry
		baseline := true // a meter without history: no stored reading older than its first
		if h := n.meters[c.m]; h != nil {
			entries, baseline = h.entries, h.baseline
		}
		cutoff := int64(math.MinInt64)
		switch times := several[c.m]; {
		case len(times) > 0:
			cutoff = keptCutoff(entries, times, n.cfg.History, baseline)
		case len(entries) > 0 && !(baseline && len(entries) < n.cfg.History):
			cutoff = entries[0].t
		}
		if c.t >= cutoff {
			continue
		}
		to := cutoff // the oldest reading kept: the answer joins the history there
		if len(entries) > 0 {
			to = min(to, entries[0].t)
		}
		id := meterID{c.m.Enterprise.ID, c.m.ID}
		k := slices.IndexFunc(spans, func(s lateSpan) bool { return s.meter == id })
		if k < 0 {
			spans = append(spans, lateSpan{meter: id, from: time.Unix(0, c.t).UTC(), to: time.Unix(0, to).UTC()})
			continue
		}
		spans[k].from = minTime(spans[k].from, time.Unix(0, c.t).UTC())
	}
	return spans
}

// lateCand is a reading of a meter with a kept history.
type lateCand struct {
	m *registry.Meter
	t int64
}

// keptCutoff returns the oldest time the history keeps once the times are
// placed in it: the limit-th newest of both (a reading before it cannot
// be placed from memory). A baseline history not filled keeps all.
func keptCutoff(entries []histEntry, times []int64, limit int, baseline bool) int64 {
	all := make([]int64, 0, len(entries)+len(times))
	for _, e := range entries {
		all = append(all, e.t)
	}
	all = append(all, times...)
	slices.Sort(all)
	all = slices.Compact(all)
	switch {
	case len(all) > limit:
		if len(entries) > 0 {
			return max(all[len(all)-limit], entries[0].t)
		}
		return all[len(all)-limit]
	case baseline || len(entries) == 0:
		return math.MinInt64 // the meter's first readings: an older one is its new baseline
	}
	return entries[0].t
}

// covered reports whether every span lies within the spans the store was
// asked about.
func covered(spans, asked []lateSpan) bool {
	for _, s := range spans {
		if !slices.ContainsFunc(asked, func(a lateSpan) bool {
			return a.meter == s.meter && !s.from.Before(a.from) && !s.to.After(a.to)
		}) {
			return false
		}
	}
	return true
}

// widen returns the store look-up of spans: one query per enterprise, for
// its meters from the earliest late reading less LateMargin to the oldest
// reading kept.
func widen(spans []lateSpan) (queries []lateQuery) {
	for _, s := range spans {
		k := slices.IndexFunc(queries, func(q lateQuery) bool { return q.enterprise == s.meter.enterprise })
		if k < 0 {
			queries = append(queries, lateQuery{enterprise: s.meter.enterprise, from: s.from, to: s.to})
			k = len(queries) - 1
		}
		q := &queries[k]
		if !slices.Contains(q.meters, s.meter.meter) {
			q.meters = append(q.meters, s.meter.meter)
		}
		q.from, q.to = minTime(q.from, s.from), maxTime(q.to, s.to)
	}
	for i := range queries {
		queries[i].from = queries[i].from.Add(-LateMargin)
	}
	return queries
}

// lateQuery is one store look-up: some meters of one enterprise over
// [from, to].
type lateQuery struct {
	enterprise string
	meters     []string
	from, to   time.Time
}

// asked returns the spans a look-up answers completely.
func (q lateQuery) asked(dst []lateSpan) []lateSpan {
	for _, m := range q.meters {
		dst = append(dst, lateSpan{meter: meterID{q.enterprise, m}, from: q.from, to: q.to})
	}
	return dst
}

// lookupLate asks the store about the late readings of spans: their
// meters' readings from LateMargin before the earliest to the oldest
// kept, one query per enterprise. A counter reading needs the register
// before it: where none is within LateMargin, the store is asked further
// back, four times as far each time, up to horizon; with none there
// either, the reading is the meter's first (first in the span asked).
func lookupLate(ctx context.Context, lookup LookupFunc, reg *registry.Registry, spans []lateSpan, horizon time.Time) (stored []store.Reading, asked []lateSpan, err error) {
	for _, q := range widen(spans) {
		rs, err := lookup(ctx, q.enterprise, q.meters, q.from, q.to)
		if err != nil {
			return nil, nil, err
		}
		stored = append(stored, rs...)
		asked = q.asked(asked)
	}
	for _, s := range spans {
		if m, ok := reg.Meter(s.meter.enterprise, s.meter.meter); !ok || m.Kind != registry.Counter {
			continue
		}
		if slices.ContainsFunc(stored, func(r store.Reading) bool {
			return !r.Invalid && r.Enterprise == s.meter.enterprise && r.Meter == s.meter.meter && r.Time.Before(s.from)
		}) {
			continue
		}
		hi := s.from.Add(-LateMargin)
		step := 4 * LateMargin
		for {
			if !hi.After(horizon) {
				asked = append(asked, lateSpan{meter: s.meter, from: horizon, to: s.from, first: true})
				break
			}
			lo := maxTime(hi.Add(-step), horizon)
			rs, err := lookup(ctx, s.meter.enterprise, []string{s.meter.meter}, lo, hi.Add(-time.Nanosecond))
			if err != nil {
				return nil, nil, err
			}
			asked = append(asked, lateSpan{meter: s.meter, from: lo, to: s.from})
			if len(rs) > 0 {
				stored = append(stored, rs...)
				break
			}
			hi, step = lo, min(4*step, 365*24*time.Hour)
		}
	}
	return stored, asked, nil
}

// provide extends the kept histories with stored readings older than
// what each meter keeps, so that late readings are placed between their
// stored neighbours like any others (a counter's delta from the register
// before it, the next reading's delta rewritten), and keeps stored as the
// answer for readings older still (checked as duplicates, or written when
// they need no neighbour). The extension stays until trimExtended.
func (n *Normaliser) provide(stored []store.Reading, asked []lateSpan) {
	n.provided, n.asked = stored, asked
	// The entries to add before each asked meter's history: its stored
	// readings older than what it keeps, and those written lately that
	// it no longer keeps (recentOld: their batch may not be stored yet),
	// which know their delta and state better.
	type ext struct {
		m       *registry.Meter
		oldest  int64 // the oldest entry kept; math.MaxInt64 without history
		entries map[int64]histEntry
	}
	exts := map[meterID]*ext{}
	for _, s := range asked {
		if exts[s.meter] != nil {
			continue
		}
		m, ok := n.reg.Meter(s.meter.enterprise, s.meter.meter)
		if !ok {
			continue
		}
		x := &ext{m: m, oldest: math.MaxInt64, entries: map[int64]histEntry{}}
		if h := n.meters[m]; h != nil && len(h.entries) > 0 {
			x.oldest = h.entries[0].t
		}
		exts[s.meter] = x
	}
	for _, r := range stored {
		x := exts[meterID{r.Enterprise, r.Meter}]
		if r.Invalid || x == nil || r.Time.UnixNano() >= x.oldest {
			continue // what the history holds, it knows better
		}
		x.entries[r.Time.UnixNano()] = histEntry{t: r.Time.UnixNano(), value: r.Value, delta: r.Delta, flag: flagByte(r.Flag)}
	}
	if len(exts) > 0 {
		for k, e := range n.recentOld.values {
			if x := exts[meterID{k.enterprise, k.meter}]; x != nil && k.t < x.oldest {
				x.entries[k.t] = e
			}
		}
	}
	for id, x := range exts {
		first := slices.ContainsFunc(asked, func(s lateSpan) bool { return s.meter == id && s.first })
		if len(x.entries) == 0 {
			if h := n.meters[x.m]; first && h != nil && len(h.entries) > 0 {
				// Nothing stored before what it keeps: an older reading
				// is the meter's new first register.
				h.baseline = true
				n.markExtended(x.m)
			}
			continue
		}
		prefix := &meterHistory{entries: slices.SortedFunc(maps.Values(x.entries), func(a, b histEntry) int { return cmp.Compare(a.t, b.t) })}
		if x.m.Kind == registry.Counter {
			settleRestored(x.m, prefix)
		}
		h := n.meters[x.m]
		if h == nil {
			h = &meterHistory{}
			n.meters[x.m] = h
		}
		h.entries = append(prefix.entries, h.entries...)
		h.baseline = first // else the store may hold older readings still
		n.markExtended(x.m)
	}
}

// markExtended notes that m's history may hold more than the limit until
// trimExtended.
func (n *Normaliser) markExtended(m *registry.Meter) {
	if n.extended == nil {
		n.extended = map[*registry.Meter]bool{}
	}
	n.extended[m] = true
}

// endProvided forgets the store's answer once the messages it was asked
// for are normalised.
func (n *Normaliser) endProvided() { n.provided, n.asked = nil, nil }

// pin keeps the meters' whole histories (nothing dropped at the limit)
// while a message with late readings of them waits for the store: what is
// placed meanwhile stays where the late readings will find it, even if
// its batch is not stored by the time the store is asked. unpin undoes
// one pin.
func (n *Normaliser) pin(spans []lateSpan) {
	if n.pinned == nil {
		n.pinned = map[meterID]int{}
	}
	for _, s := range spans {
		n.pinned[s.meter]++
	}
}

func (n *Normaliser) unpin(spans []lateSpan) {
	for _, s := range spans {
		if n.pinned[s.meter]--; n.pinned[s.meter] <= 0 {
			delete(n.pinned, s.meter)
		}
	}
}

// limit is how many readings the meter's history keeps at most now:
// everything while a message waits for the store about it (pinned), or
// while the store's answer about it is being used (asked), so that
// placing a message's newer readings never pushes out the stored
// neighbours of its older ones.
func (n *Normaliser) limit(m *registry.Meter) int {
	if len(n.pinned) > 0 || len(n.asked) > 0 {
		id := meterID{m.Enterprise.ID, m.ID}
		if n.pinned[id] > 0 || slices.ContainsFunc(n.asked, func(s lateSpan) bool { return s.meter == id }) {
			return int(^uint(0) >> 1)
		}
	}
	return n.cfg.History
}

// trimExtended gives the histories of unpinned meters back their limit,
// remembering what they drop as keep does.
func (n *Normaliser) trimExtended() {
	for m := range n.extended {
		if n.limit(m) != n.cfg.History {
			continue
		}
		h := n.meters[m]
		if h != nil && len(h.entries) > n.cfg.History {
			drop := len(h.entries) - n.cfg.History
			for _, e := range h.entries[:drop] {
				n.recentOld.add(oldKey{m.Enterprise.ID, m.ID, e.t}, e)
			}
			h.entries = slices.Delete(h.entries, 0, drop)
			h.baseline = false
		}
		delete(n.extended, m)
	}
}

// Extended reports how many meters' histories hold more than the limit
// (stored readings brought in to place late ones, or pinned).
func (n *Normaliser) Extended() int { return len(n.extended) }

// lateItem is a message waiting, unacknowledged, for the store's answer
// about its late readings.
type lateItem struct {
	d     Delivery
	spans []lateSpan
	after uint64 // the last batch that must be stored before the store is asked
}

// lateGroup is the store's answer for some waiting messages.
type lateGroup struct {
	items  []lateItem
	stored []store.Reading
	asked  []lateSpan
}

// maxLateGroup bounds the messages answered by one round of look-ups.
const maxLateGroup = 2000

// park sets d aside until the store has answered about its late
// readings: Run's goroutine goes on with other messages meanwhile. The
// batches that may hold readings of the same meters (all sent so far, and
// the one filling when it has messages) are stored before the store is
// asked, and the meters' histories keep everything placed meanwhile.
func (p *Pipeline) park(d Delivery, spans []lateSpan, filling bool) {
	after := p.sent
	if filling {
		after++
	}
	p.norm.pin(spans)
	p.lateMu.Lock()
	p.lateQ = append(p.lateQ, lateItem{d: d, spans: spans, after: after})
	n := len(p.lateQ)
	p.lateMu.Unlock()
	p.metrics.lateWaiting.Set(float64(n))
	select {
	case p.lateWake <- struct{}{}:
	default:
	}
}

func (p *Pipeline) lateWaiting() int {
	p.lateMu.Lock()
	defer p.lateMu.Unlock()
	return len(p.lateQ)
}

// lateWorker answers waiting messages: it takes them a group at a time,
// waits until the batches before them are stored, asks the store once per
// enterprise for their meters' readings from LateMargin before their
// earliest late reading to the oldest reading kept, and hands the answer
// to Run. A store that does not answer is asked again with back-off for
// as long as it takes: the messages wait unacknowledged (the broker keeps
// them across a restart), never dead-lettered for it.
func (p *Pipeline) lateWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.lateWake:
		}
		for {
			p.lateMu.Lock()
			n := min(len(p.lateQ), maxLateGroup)
			items := slices.Clone(p.lateQ[:n])
			p.lateMu.Unlock()
			if n == 0 {
				break
			}
			var after uint64
			var spans []lateSpan
			for _, it := range items {
				after = max(after, it.after)
				spans = append(spans, it.spans...)
			}
			for p.storedSeq.Load() < after {
				select {
				case <-ctx.Done():
					return
				case <-p.stored:
				case <-time.After(100 * time.Millisecond):
				}
			}
			wait := p.cfg.RetryMin
			var (
				stored []store.Reading
				asked  []lateSpan
			)
			for {
				start := time.Now()
				lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				var err error
				stored, asked, err = lookupLate(lctx, p.lookup, p.current.Load(), spans, time.Now().Add(-p.cfg.Normaliser.PastHorizon))
				cancel()
				p.metrics.lateLookups.Inc()
				p.metrics.lateLookupSeconds.Observe(time.Since(start).Seconds())
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					return
				}
				p.metrics.lateLookupFailures.Inc()
				p.rejectLg.warn("late-lookup", "the store did not answer about late readings; their messages wait unacknowledged and it is asked again", "messages", n, "retry_in", wait, "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
				wait = min(2*wait, p.cfg.RetryMax)
			}
			// Out of the queue as they go to Run (at shutdown they stay
			// unacknowledged, for the broker to deliver again).
			p.lateMu.Lock()
			p.lateQ = slices.Delete(p.lateQ, 0, n)
			p.lateMu.Unlock()
			select {
			case p.lateDone <- lateGroup{items: items, stored: stored, asked: asked}:
			case <-ctx.Done():
				return
			}
		}
	}
}
