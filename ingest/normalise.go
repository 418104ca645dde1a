package ingest

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

// NormaliserConfig bounds what the Normaliser accepts.
type NormaliserConfig struct {
	// FutureHorizon: readings later than now+FutureHorizon are rejected.
	FutureHorizon time.Duration
	// PastHorizon: readings earlier than now-PastHorizon are rejected.
	PastHorizon time.Duration
	// History is how many recent readings per meter are kept to place
	// out-of-order readings and recognise duplicates.
	History int
	// MaxPayload bounds a message's size in bytes (0: no bound).
	MaxPayload int
	// MaxReadings bounds the readings of one message (0: no bound).
	MaxReadings int
	// SeqLate is how long after a gap in a gateway's seq its messages may
	// still come before they count as lost (0: DefaultSeqLate).
	SeqLate time.Duration
	// Protocols decode messages by their topic's last level (nil:
	// gateway contract v1 on telemetry, with MaxReadings, and HJ 212
	// frames on hj212).
	Protocols map[string]Protocol
	// Lookup, when set, finds stored readings for readings older than the
	// history kept: a gateway replaying an old backlog is then absorbed
	// as duplicates, and an old gauge or delta reading is stored. Without
	// it such readings are rejected as out_of_order_window.
	Lookup LookupFunc
}

// LookupFunc returns the stored readings of the given meters of one
// enterprise in [from, to].
type LookupFunc func(ctx context.Context, enterprise string, meters []string, from, to time.Time) ([]store.Reading, error)

// Normaliser validates decoded readings against the registry and turns
// them into canonical store readings. It keeps per-meter history and
// per-gateway sequence state and is NOT safe for concurrent use: one
// goroutine (the Pipeline's) owns it.
type Normaliser struct {
	reg       *registry.Registry
	cfg       NormaliserConfig
	protocols map[string]Protocol
	meters    map[*registry.Meter]*meterHistory // keyed by the registry's meter: hashing a pointer, not two strings
	gateways  map[gatewayKey]*seqState
	msgSeq    uint64 // numbers the messages, to tell in-message duplicates (64 bits: never wraps)
	// recentOld are the readings written lately that the history no
	// longer holds: those older than it, and those it dropped. The store
	// look-up cannot see them until their batch is stored, and a second
	// copy meanwhile (a redelivery, a backlog replayed twice) would be
	// written and counted again.
	recentOld recentOld
	// walk and events are placeCounter's scratch space.
	walk   []histEntry
	events []counterEvent
	// provided is the store's answer about the late readings of the
	// messages being normalised, for the spans asked (see provide);
	// extended are the meters whose histories it extended, pinned those
	// whose histories keep everything while a message waits for the
	// store (see pin).
	provided []store.Reading
	asked    []lateSpan
	extended map[*registry.Meter]bool
	pinned   map[meterID]int
	// lateScratch and lateCount are lateSpans' scratch space.
	lateScratch []lateCand
	lateCount   map[*registry.Meter]int
}

// recentOld remembers the last recentOldLimit such readings, the oldest
// forgotten first (about 6 MB when full): more than the batches in flight
// hold, unless a store outage holds back more readings than that, when a
// copy arriving before the store has its original could still be counted
// twice.
type recentOld struct {
	values map[oldKey]histEntry
	ring   []oldKey
	next   int
}

type oldKey struct {
	enterprise, meter string
	t                 int64
}

const recentOldLimit = 1 << 16

func (r *recentOld) get(k oldKey) (float64, bool) {
	e, ok := r.values[k]
	return e.value, ok
}

// add remembers entry e of k's meter, as written (value, delta, state).
func (r *recentOld) add(k oldKey, e histEntry) {
	if r.values == nil {
		r.values = make(map[oldKey]histEntry)
	}
	if _, ok := r.values[k]; !ok {
		if len(r.ring) < recentOldLimit {
			r.ring = append(r.ring, k)
		} else {
			delete(r.values, r.ring[r.next])
			r.ring[r.next] = k
			r.next = (r.next + 1) % recentOldLimit
		}
	}
	e.msg = 0
	r.values[k] = e
}

type gatewayKey struct{ enterprise, gateway string }

// meterHistory is the recent readings of one meter, sorted by time.
type meterHistory struct {
	entries []histEntry
	// jump is the newest counter reading rejected for rising beyond
	// max_rate from the register before it (t 0: none): if the next
	// reading continues from it, the register moved there.
	jump struct {
		t     int64
		value float64
	}
	// baseline says entries[0] is the first reading this meter ever
	// sent (no stored history older than it), so an older reading may
	// still take its place as the new baseline.
	baseline bool
}

type histEntry struct {
	t     int64   // unix nanoseconds
	value float64 // canonical value (register, amount or gauge value)
	delta float64 // counters: amount since the previous entry
	msg   uint64  // Normaliser.msgSeq of the message that brought it (0: restored)
	state entryState
	flag  byte // the valid data flag it came with (HJ 212 N or S), 0 for none
}

// flagByte and flagText convert a valid one-letter data flag to the byte
// a histEntry keeps (in what was padding) and back without allocating.
func flagByte(f string) byte {
	if len(f) == 1 && f[0] < 128 {
		return f[0]
	}
	return 0
}

var flagTexts = func() (t [128]string) {
	for c := range t {
		t[c] = string(rune(c))
	}
	return t
}()

func flagText(b byte) string {
	if b == 0 || b >= 128 {
		return ""
	}
	return flagTexts[b]
}

// entryState says how a counter reading's delta was decided.
type entryState uint8

const (
	// settled: a register the next reading counts from.
	settled entryState = iota
	// held: the register dropped as if the meter were reset. Stored with
	// delta 0 until the next reading says which it was: still down, a
	// reset (the held reading then counts its register since the reset);
	// back at or above the register before the drop, a glitch.
	held
	// glitch: a held drop the next reading contradicted. Its delta stays
	// 0 and no reading counts from its register.
	glitch
	// rebased: the first reading after a rise beyond max_rate that it
	// confirmed (the register moved: an undeclared meter exchange or a
	// reprogrammed register). It counts from the rejected rise, so the
	// jump itself is never counted; its delta is kept as it is.
	rebased
)

// NewNormaliser returns a Normaliser for reg.
func NewNormaliser(reg *registry.Registry, cfg NormaliserConfig) *Normaliser {
	if cfg.History < 2 {
		cfg.History = 2
	}
	protocols := cfg.Protocols
	if protocols == nil {
		protocols = map[string]Protocol{LevelTelemetry: ContractV1{MaxReadings: cfg.MaxReadings}, LevelHJ212: HJ212{}}
	}
	return &Normaliser{
		reg:       reg,
		cfg:       cfg,
		protocols: protocols,
		meters:    make(map[*registry.Meter]*meterHistory),
		gateways:  make(map[gatewayKey]*seqState),
	}
}

// SetRegistry switches the normaliser to reg (a reloaded registry).
// Meters and gateways that stay keep their history and sequence state;
// those gone, or whose kind or quantity changed, forget it: their next
// reading starts afresh, as a new meter's would.
func (n *Normaliser) SetRegistry(reg *registry.Registry) {
	meters := make(map[*registry.Meter]*meterHistory, len(n.meters))
	for o, h := range n.meters {
		if m, ok := reg.Meter(o.Enterprise.ID, o.ID); ok && m.Kind == o.Kind && m.Quantity.Name == o.Quantity.Name {
			meters[m] = h
		}
	}
	n.meters = meters
	extended := make(map[*registry.Meter]bool, len(n.extended))
	for o := range n.extended {
		if m, ok := reg.Meter(o.Enterprise.ID, o.ID); ok && meters[m] != nil {
			extended[m] = true
		}
	}
	n.extended = extended
	for k := range n.gateways {
		if _, ok := reg.Gateway(k.enterprise, k.gateway); !ok {
			delete(n.gateways, k)
		}
	}
	n.reg = reg
}

// Restore seeds the per-meter history from readings already stored (in
// time order per meter), so that after a restart a redelivered message is
// recognised as a duplicate and counters continue from their last register.
func (n *Normaliser) Restore(rs []store.Reading) {
	touched := make(map[*registry.Meter]*meterHistory)
	for _, r := range rs {
		k, ok := n.reg.Meter(r.Enterprise, r.Meter)
		if !ok {
			continue // no longer registered: its readings are refused anyway
		}
		h := n.meters[k]
		if h == nil {
			h = &meterHistory{entries: make([]histEntry, 0, n.cfg.History)}
			n.meters[k] = h
		}
		if k.Kind == registry.Counter {
			touched[k] = h
		}
		e := histEntry{t: r.Time.UnixNano(), value: r.Value, delta: r.Delta, flag: flagByte(r.Flag)}
		i := h.search(e.t)
		if i < len(h.entries) && h.entries[i].t == e.t {
			h.entries[i] = e
			continue
		}
		h.insert(i, e, n.cfg.History)
	}
	for m, h := range touched {
		settleRestored(m, h)
	}
}

// hasHistory reports whether a meter of e has a kept history.
func (n *Normaliser) hasHistory(e *registry.Enterprise) bool {
	for _, m := range e.Meters {
		if _, ok := n.meters[m]; ok {
			return true
		}
	}
	return false
}

// Meters returns how many meters have a kept history.
func (n *Normaliser) Meters() int { return len(n.meters) }

// Process handles one message end to end without I/O: topic, registry,
// decoding by the topic's protocol, validation and normalisation. A
// message rejected as a whole returns a *DecodeError; otherwise Outcome
// lists what became of each reading.
func (n *Normaliser) Process(topic string, payload []byte, redelivery bool, now time.Time, write, observe *[]store.Reading) (Outcome, *DecodeError) {
	gw, msg, derr := n.decode(topic, payload, now)
	if derr != nil {
		return Outcome{}, derr
	}
	return n.normaliseDecoded(gw, msg, redelivery, now, write, observe), nil
}

// decode checks topic and payload size and decodes the payload by the
// topic's protocol.
func (n *Normaliser) decode(topic string, payload []byte, now time.Time) (*registry.Gateway, *Message, *DecodeError) {
	enterprise, gateway, level, ok := parseGatewayTopic(topic)
	proto := n.protocols[level]
	if !ok || proto == nil {
		return nil, nil, &DecodeError{ReasonBadTopic, fmt.Sprintf("topic %q is not cp/v1/{enterprise}/{gateway}/{%s} with valid ids", truncateString(topic), strings.Join(slices.Sorted(maps.Keys(n.protocols)), "|"))}
	}
	gw, ok := n.reg.Gateway(enterprise, gateway)
	if !ok {
		return nil, nil, &DecodeError{ReasonUnknownGateway, fmt.Sprintf("gateway %q of enterprise %q is not registered", gateway, enterprise)}
	}
	if n.cfg.MaxPayload > 0 && len(payload) > n.cfg.MaxPayload {
		return nil, nil, &DecodeError{ReasonPayloadTooLarge, fmt.Sprintf("payload of %d bytes, at most %d", len(payload), n.cfg.MaxPayload)}
	}
	msg, derr := proto.Decode(gw, payload, now)
	if derr != nil {
		return nil, nil, derr
	}
	return gw, msg, nil
}

// normaliseDecoded normalises a decoded message and lists its rejects,
// the decoder's and the normaliser's, in reading order.
func (n *Normaliser) normaliseDecoded(gw *registry.Gateway, msg *Message, redelivery bool, now time.Time, write, observe *[]store.Reading) Outcome {
	out := n.Normalise(gw, msg, redelivery, now, write, observe)
	out.Gateway = gw
	out.Rejects = append(msg.Rejects, out.Rejects...)
	slices.SortFunc(out.Rejects, func(a, b Reject) int { return cmp.Compare(a.Index, b.Index) })
	return out
}

// Outcome is what became of one message.
type Outcome struct {
	Gateway       *registry.Gateway // the registered gateway the message came from
	Accepted      int               // readings written
	Duplicates    int               // readings seen before with the same value, absorbed
	Rejects       []Reject          // readings rejected with their reason
	SeqGap        int64             // messages now known lost at the edge: skipped numbers still missing SeqLate after the gap, or seqWindow numbers later
	SeqRepeat     bool              // seq seen before (a redelivery)
	SeqBackwards  bool              // out of order (a late message filling its gap) or numbered anew (a gateway restart)
	SeqRenumbered bool              // seq jumped beyond the window kept, up or down: the gateway numbers anew (nothing counted lost for the jump)
	Rewrites      int               // readings written before, written again with a new delta (an earlier reading arrived late)
	Resets        int               // counter resets confirmed (a held drop the next reading kept down)
	Glitches      int               // held counter drops the next reading contradicted: counted as nothing
	Rebased       int               // counter registers that moved beyond max_rate, confirmed by the next reading: the jump counted as nothing
	Rollovers     int               // counter rollovers detected
	Replaced      int               // declared meter replacements crossed
	Flagged       map[string]int    // values flagged as not valid data, by flag: stored apart, counted toward nothing
}

// Normalise checks msg (decoded from a topic of gateway gw) and appends
// the readings to write to write and the amounts for the scorer to observe.
// redelivery is the MQTT DUP flag. now is the arrival time.
func (n *Normaliser) Normalise(gw *registry.Gateway, msg *Message, redelivery bool, now time.Time, write, observe *[]store.Reading) Outcome {
	var out Outcome
	if !msg.NoSeq {
		n.trackSeq(gw, msg.Seq, now, &out)
	}
	var lookupErr error
	if n.cfg.Lookup != nil && n.asked == nil {
		// Asked here, at once: the Pipeline asks the store ahead, off its
		// goroutine, and provides the answer before normalising.
		if spans := n.lateSpans(gw, msg, now, nil); len(spans) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			stored, asked, err := lookupLate(ctx, n.cfg.Lookup, n.reg, spans, now.Add(-n.cfg.PastHorizon))
			cancel()
			if err != nil {
				lookupErr = err
			} else {
				n.provide(stored, asked)
				defer n.trimExtended()
				defer n.endProvided()
			}
		}
	}
	// Readings are placed one by one in message order; a meter's readings
	// listed newest first are simply late arrivals, placed like any other.
	n.msgSeq++
	var deferred []oldReading
	latest := now.Add(n.cfg.FutureHorizon)
	earliest := now.Add(-n.cfg.PastHorizon)
	reject := func(r *RawReading, reason Reason, format string, args ...any) {
		out.Rejects = append(out.Rejects, Reject{Index: r.Index, Reason: reason, Detail: fmt.Sprintf(format, args...), Raw: r.Raw})
	}
	for i := range msg.Readings {
		r := &msg.Readings[i]
		m, ok := gw.Meter(r.Meter)
		if !ok {
			if homes := n.reg.MetersNamed(r.Meter); len(homes) > 0 {
				reject(r, ReasonSpoofed, "meter %q is not registered on gateway %q of enterprise %q", r.Meter, gw.ID, gw.Enterprise.ID)
			} else {
				reject(r, ReasonUnknownMeter, "meter %q is not registered", r.Meter)
			}
			continue
		}
		if r.Time.After(latest) {
			reject(r, ReasonFuture, "ts %s is more than %s ahead of the server clock", r.Time.Format(time.RFC3339Nano), n.cfg.FutureHorizon)
			continue
		}
		if r.Time.Before(earliest) {
			reject(r, ReasonTooOld, "ts %s is more than %s old", r.Time.Format(time.RFC3339Nano), n.cfg.PastHorizon)
			continue
		}
		v := r.Value * m.Factor
		if r.Invalid && !math.IsInf(v, 0) {
			// Kept with its flag for the supervisor, outside the meter's
			// history: it is no reading of the meter, so no range or
			// order applies to it (T: over the measuring range).
			*write = append(*write, store.Reading{
				Enterprise: m.Enterprise.ID, Gateway: m.Gateway.ID, Meter: m.ID,
				Quantity: m.Quantity.Name, Workshop: m.Workshop, Kind: string(m.Kind),
				Time: r.Time.UTC(), Value: v, Flag: r.Flag, Invalid: true,
			})
			if out.Flagged == nil {
				out.Flagged = map[string]int{}
			}
			out.Flagged[r.Flag]++
			continue
		}
		if math.IsInf(v, 0) {
			// A finite raw value can overflow in the unit conversion
			// (1e306 MWh); stored, +Inf would turn every later delta and
			// sum into Inf or NaN.
			reject(r, ReasonOutOfRange, "%s %s reads %g %s: beyond any float in %s", m.Kind, m.ID, r.Value, m.Unit, m.Quantity.Unit)
			continue
		}
		switch m.Kind {
		case registry.Gauge:
			if v < m.Quantity.Min || v > m.Quantity.Max {
				reject(r, ReasonOutOfRange, "%s %g %s outside the plausible range %g..%g", m.Quantity.Name, v, m.Quantity.Unit, m.Quantity.Min, m.Quantity.Max)
				continue
			}
		default:
			if v < 0 {
				reject(r, ReasonOutOfRange, "%s %s reads %g: a register or amount cannot be negative", m.Kind, m.ID, r.Value)
				continue
			}
			if m.MaxRegister > 0 && v > m.MaxRegister {
				// A register above the largest value it shows cannot be:
				// a misdeclared range or a glitch. Taken as a first
				// reading it would be the baseline every delta counts
				// from; above a rollover, the next reading would make a
				// negative "rollover" delta.
				what := "max_register"
				if m.Rollover > 0 {
					what = "rollover"
				}
				reject(r, ReasonOutOfRange, "counter %s reads %g %s, above its declared %s %g", m.ID, v, m.Quantity.Unit, what, m.MaxRegister)
				continue
			}
		}
		if old := n.place(m, r, v, &out, write, observe, reject); old {
			deferred = append(deferred, oldReading{m, r, v})
		}
	}
	if len(deferred) > 0 {
		n.resolveOld(gw, deferred, &out, write, observe, reject, lookupErr)
	}
	return out
}

// oldReading is a reading older than its meter's history, to be checked
// against the store.
type oldReading struct {
	m *registry.Meter
	r *RawReading
	v float64
}

// resolveOld checks readings older than the history, even as extended
// from the store (provide), against the store's answer: the same value
// stored is a duplicate, another value a conflict; a gauge or delta
// reading not stored is new and written (it needs no neighbour); a
// counter reading not stored has no stored register before it within
// LateMargin to count from and is rejected.
func (n *Normaliser) resolveOld(gw *registry.Gateway, old []oldReading, out *Outcome, write, observe *[]store.Reading, reject func(*RawReading, Reason, string, ...any), lookupErr error) {
	outside := func(o oldReading, why string) {
		reject(o.r, ReasonOutsideHistory, "meter %q: ts %s is older than the %d readings kept to place it%s", o.m.ID, o.r.Time.Format(time.RFC3339Nano), n.cfg.History, why)
	}
	if lookupErr != nil {
		for _, o := range old {
			outside(o, fmt.Sprintf(" (the store could not be asked: %v)", lookupErr))
		}
		return
	}
	var asked []lateSpan
	for _, o := range old {
		asked = append(asked, lateSpan{meter: meterID{gw.Enterprise.ID, o.m.ID}, from: o.r.Time, to: o.r.Time})
	}
	if n.asked == nil || !covered(asked, n.asked) {
		for _, o := range old {
			outside(o, "")
		}
		return
	}
	stored := n.provided
	type key struct {
		meter string
		t     int64
	}
	have := make(map[key]float64, len(stored))
	for _, s := range stored {
		have[key{s.Meter, s.Time.UnixNano()}] = s.Value
	}
	// A second reading of one meter and time in this message is a
	// duplicate within the message, whatever the store holds: the same
	// rule as for readings the history places (place).
	inMsg := make(map[key]bool, len(old))
	for _, o := range old {
		t := o.r.Time.UnixNano()
		k := key{o.m.ID, t}
		if inMsg[k] {
			reject(o.r, ReasonDuplicate, "meter %q has two readings at %s in one message", o.m.ID, o.r.Time.Format(time.RFC3339Nano))
			continue
		}
		inMsg[k] = true
		v, ok := have[k]
		if !ok {
			v, ok = n.recentOld.get(oldKey{gw.Enterprise.ID, o.m.ID, t}) // written, maybe not yet stored
		}
		switch {
		case ok && v == o.v:
			out.Duplicates++
		case ok:
			reject(o.r, ReasonConflict, "meter %q already has %g %s at %s; got %g", o.m.ID, v, o.m.Quantity.Unit, o.r.Time.Format(time.RFC3339Nano), o.v)
		case o.m.Kind == registry.Counter:
			outside(o, fmt.Sprintf(" and the store has no reading of it within %s before it to count from", LateMargin))
		default:
			e := histEntry{t: t, value: o.v, flag: flagByte(o.r.Flag)}
			if o.m.Kind == registry.Delta {
				e.delta = o.v
			}
			emitReading(o.m, e, nil, e.delta, write, observe)
			n.recentOld.add(oldKey{gw.Enterprise.ID, o.m.ID, t}, e) // a second copy, in this message or before the store has it, is a duplicate
			out.Accepted++
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// emitReading appends a reading to write and its amount to observe. For
// a counter, prev is the reading stored before it (nil: none known): a
// register that prev's and the delta rebuild exactly is marked
// store.Reading.Chained, and InfluxDB keeps the delta alone.
func emitReading(m *registry.Meter, e histEntry, prev *histEntry, amount float64, write, observe *[]store.Reading) {
	rd := readingOf(m, e, prev)
	*write = append(*write, rd)
	rd.Delta, rd.Chained = amount, false
	*observe = append(*observe, rd)
}

// readingOf is the stored reading of e (see emitReading for prev).
func readingOf(m *registry.Meter, e histEntry, prev *histEntry) store.Reading {
	return store.Reading{
		Enterprise: m.Enterprise.ID, Gateway: m.Gateway.ID, Meter: m.ID,
		Quantity: m.Quantity.Name, Workshop: m.Workshop, Kind: string(m.Kind),
		Time: time.Unix(0, e.t).UTC(), Value: e.value, Delta: e.delta, Flag: flagText(e.flag),
		Chained: m.Kind == registry.Counter && prev != nil && store.Chains(prev.t, prev.value, e.t, e.value, e.delta),
	}
}

// keepChain rewrites counter reading next with its register when it no
// longer chains to prev, the reading now stored before it (nil: none
// known): a reading placed or refused before next changed which one that
// is, and next may have been stored chained to another (its delta, when
// it changed, is rewritten anyway). The scorer is told an amount of 0,
// so that writes and amounts stay one to one. It reports whether it
// rewrote next.
func keepChain(m *registry.Meter, prev *histEntry, next histEntry, write, observe *[]store.Reading) bool {
	if prev != nil && store.Chains(prev.t, prev.value, next.t, next.value, next.delta) {
		return false
	}
	emitReading(m, next, nil, 0, write, observe)
	return true
}

func (n *Normaliser) trackSeq(gw *registry.Gateway, seq int64, now time.Time, out *Outcome) {
	k := gatewayKey{gw.Enterprise.ID, gw.ID}
	s := n.gateways[k]
	if s == nil {
		s = &seqState{}
		n.gateways[k] = s
	}
	late := n.cfg.SeqLate
	if late <= 0 {
		late = DefaultSeqLate
	}
	st := s.step(seq, now, late)
	out.SeqGap, out.SeqRepeat, out.SeqBackwards, out.SeqRenumbered = st.lost, st.repeat, st.late || st.renewed || st.before, st.renewed
}

// place puts one valid reading into its meter's history and emits what to
// write and observe. It reports old when the reading is older than the
// history kept, for the caller to check against the store.
func (n *Normaliser) place(m *registry.Meter, r *RawReading, v float64, out *Outcome, write, observe *[]store.Reading, reject func(*RawReading, Reason, string, ...any)) (old bool) {
	h := n.meters[m]
	if h == nil {
		h = &meterHistory{entries: make([]histEntry, 0, n.cfg.History), baseline: true}
		n.meters[m] = h
	}
	t := r.Time.UnixNano()
	i := h.search(t)
	if i < len(h.entries) && h.entries[i].t == t {
		if h.entries[i].msg == n.msgSeq {
			reject(r, ReasonDuplicate, "meter %q has two readings at %s in one message", m.ID, r.Time.Format(time.RFC3339Nano))
			return
		}
		if h.entries[i].value == v {
			out.Duplicates++
			return
		}
		reject(r, ReasonConflict, "meter %q already has %g %s at %s; got %g", m.ID, h.entries[i].value, m.Quantity.Unit, r.Time.Format(time.RFC3339Nano), v)
		return
	}
	if i == 0 && len(h.entries) > 0 && !(h.baseline && len(h.entries) < n.limit(m)) {
		return true
	}
	e := histEntry{t: t, value: v, msg: n.msgSeq, flag: flagByte(r.Flag)}
	emit := func(e histEntry, amount float64) { emitReading(m, e, nil, amount, write, observe) }
	switch m.Kind {
	case registry.Gauge:
		n.keep(m, h, i, e)
		emit(e, 0)
	case registry.Delta:
		e.delta = v
		if i > 0 && m.MaxRate > 0 && v > m.MaxRate*hours(h.entries[i-1].t, t) {
			reject(r, ReasonCounterJump, "delta meter %q reports %g %s in %s, above max_rate %g per hour", m.ID, v, m.Quantity.Unit, time.Duration(t-h.entries[i-1].t), m.MaxRate)
			return
		}
		n.keep(m, h, i, e)
		emit(e, v)
	case registry.Counter:
		if !n.placeCounter(m, h, i, e, r, out, write, observe, reject) {
			return
		}
	}
	out.Accepted++
	return false
}

type counterEvent int

const (
	noEvent counterEvent = iota
	resetEvent
	rolloverEvent
	replacementEvent
	glitchEvent // a held drop the next reading contradicted
	rebaseEvent // a rise beyond max_rate the next reading confirmed
)

func countEvent(out *Outcome, ev counterEvent) {
	switch ev {
	case resetEvent:
		out.Resets++
	case rolloverEvent:
		out.Rollovers++
	case replacementEvent:
		out.Replaced++
	case glitchEvent:
		out.Glitches++
	case rebaseEvent:
		out.Rebased++
	}
}

// counterDelta returns the amount a counter measured between register a
// (at ta) and register b (at tb), in canonical units:
//   - declared replacements between the two readings are crossed exactly;
//   - otherwise a rise is the amount;
//   - a drop is a rollover if the meter declares one and wrapping is the
//     smaller explanation (less than half a turn of the register), else a
//     reset to zero, after which b is the amount counted since the reset.
//
// An amount above the meter's max_rate is an error: a glitch or an
// undeclared meter exchange, never silently counted.
func counterDelta(m *registry.Meter, ta int64, a float64, tb int64, b float64) (float64, counterEvent, error) {
	var d float64
	ev := noEvent
	v := a
	for _, rep := range m.Replacements {
		rt := rep.At.UnixNano()
		if rt > ta && rt <= tb {
			d += rep.OldFinal - v
			v = rep.NewInitial
			ev = replacementEvent
		}
	}
	switch {
	case ev == replacementEvent:
		d += b - v
		if d < 0 {
			return 0, ev, fmt.Errorf("counter %q: registers %g then %g do not fit the declared replacement", m.ID, a, b)
		}
	case b >= a:
		d = b - a
	case m.Rollover > 0 && wrapped(m, a, b) < (m.Rollover+m.Resolution)/2:
		d, ev = wrapped(m, a, b), rolloverEvent
	default:
		d, ev = b, resetEvent
	}
	if !(d >= 0) || math.IsInf(d, 0) {
		// Cannot happen for registers Normalise accepted (finite, not
		// negative, not above the rollover) unless declared replacements
		// overflow; a stored delta must be a finite amount whatever comes.
		return 0, noEvent, fmt.Errorf("counter %q: registers %g then %g give no finite, non-negative amount", m.ID, a, b)
	}
	if m.MaxRate > 0 && d > m.MaxRate*hours(ta, tb) {
		return 0, noEvent, rateError{fmt.Errorf("counter %q rose %g %s in %s (from %g to %g), above max_rate %g per hour", m.ID, d, m.Quantity.Unit, time.Duration(tb-ta), a, b, m.MaxRate)}
	}
	return d, ev, nil
}

// wrapped returns what a counter's register counted from a through 0 to
// b (canonical units): up to its rollover, the largest value it shows,
// one step (its resolution) to 0, and b. Rollover 99999 from 99980 to 30
// is 19 + 1 + 30.
//
// Registers are raw values times Factor, a little off in float64
// (999999.8 is 999999.80000000005), so the sum is off by some 1e-10 of
// the amount: a delta is snapped to whole steps when it is within
// wrapSnap steps of them. The registry bounds a register to 10^12 steps,
// whose float64 error stays below 10^-3 of one; a reading off the
// register's grid by more is left as it is.
func wrapped(m *registry.Meter, a, b float64) float64 {
	d := (m.Rollover - a) + m.Resolution + b
	steps := d / m.Resolution
	if n := math.Round(steps); math.Abs(steps-n) <= wrapSnap {
		return n * m.Resolution
	}
	return d
}

// wrapSnap is how far from a whole number of steps a wrap may be and
// still be taken as one: float64 error, not a register off its grid.
const wrapSnap = 1e-3

func hours(ta, tb int64) float64 { return float64(tb-ta) / float64(time.Hour) }

// search returns the index of the first entry at or after t.
func (h *meterHistory) search(t int64) int {
	// Readings almost always arrive in order: check the end first.
	n := len(h.entries)
	if n == 0 || h.entries[n-1].t < t {
		return n
	}
	i, _ := slices.BinarySearchFunc(h.entries, t, func(e histEntry, t int64) int { return cmp.Compare(e.t, t) })
	return i
}

// insert puts e at index i, dropping the oldest entry when full; it
// returns the entry dropped.
func (h *meterHistory) insert(i int, e histEntry, limit int) (dropped histEntry, ok bool) {
	if len(h.entries) >= limit {
		if i == 0 {
			return e, true
		}
		dropped = h.entries[0]
		copy(h.entries, h.entries[1:i])
		h.entries[i-1] = e
		h.baseline = false
		return dropped, true
	}
	h.entries = slices.Insert(h.entries, i, e)
	return histEntry{}, false
}

// keep inserts e into h at i. The entry the history drops is remembered in
// recentOld: its batch may not be stored yet, and a copy arriving before it
// is (a redelivery, a backlog replayed twice) must find it.
func (n *Normaliser) keep(m *registry.Meter, h *meterHistory, i int, e histEntry) {
	limit := n.limit(m)
	if limit != n.cfg.History && len(h.entries) >= n.cfg.History {
		if n.extended == nil {
			n.extended = map[*registry.Meter]bool{}
		}
		n.extended[m] = true // pinned: trimmed once the store has answered
	}
	if dropped, ok := h.insert(i, e, limit); ok {
		n.recentOld.add(oldKey{m.Enterprise.ID, m.ID, dropped.t}, dropped)
	}
}
