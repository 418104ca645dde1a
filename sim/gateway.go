package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/cleanprod/cleanprod/registry"
)

// gateway batches its meters' readings into messages, numbers them, and
// injects the configured faults. Its random stream decides faults only, so
// the signals do not change with the fault mix.
type gateway struct {
	g      *registry.Gateway
	reg    *registry.Registry
	topic  string
	meters []*meter
	rng    *rand.Rand
	enc    encoder
	seq    uint64
	buf    []reading
	held   []held
	shard  int

	faults     []float64 // cumulative percentages, by Fault-1
	anyFault   bool
	rpm        int       // readings per message (0: all due)
	futureBase time.Time // wall clock at New
	futureSkew time.Duration

	station *station // the HJ 212 data logger of a gateway that declares one: it sends frames instead of JSON

	rogue      string // an unregistered gateway id of the same enterprise, this gateway's own
	rogueTopic string
	rogueSeq   uint64
}

// held is a message sent later: after `after` more regular messages of
// the gateway; passed counts those already sent.
type held struct {
	msg           Message
	after, passed int
}

// Topic returns the telemetry topic of gateway gw of enterprise ent.
func Topic(ent, gw string) string { return "cp/v1/" + ent + "/" + gw + "/telemetry" }

func (g *gateway) setRogue() {
	for i := 1; ; i++ {
		id := fmt.Sprintf("unreg%d-%s", i, g.g.ID)
		if len(id) > 64 {
			id = id[:64]
		}
		if _, ok := g.reg.Gateway(g.g.Enterprise.ID, id); !ok {
			g.rogue, g.rogueTopic = id, Topic(g.g.Enterprise.ID, id)
			return
		}
	}
}

// tick advances the gateway's meters over the interval ending at t and
// appends the messages to send to out.
func (g *gateway) tick(t time.Time, out []Message) []Message {
	disc := false
	for _, mt := range g.meters {
		mt.advance(t)
		if mt.due() && !mt.skip {
			disc = disc || mt.disc
			g.buf = append(g.buf, mt.read(t))
		}
	}
	if g.station != nil {
		out = g.station.tick(t, g.buf, out)
		clear(g.buf)
		g.buf = g.buf[:0]
		return out
	}
	if disc {
		// A register dropped (reset, rollover, replacement): what was held
		// back goes first, so the service sees no late reading across it.
		out = g.release(out, true)
	}
	if g.rpm <= 0 {
		if len(g.buf) > 0 {
			out = g.emit(t, g.buf, out)
		}
		g.buf = g.buf[:0]
		return out
	}
	n := 0
	for len(g.buf)-n >= g.rpm {
		out = g.emit(t, g.buf[n:n+g.rpm], out)
		n += g.rpm
	}
	g.buf = append(g.buf[:0], g.buf[n:]...)
	return out
}

// flush sends what is buffered and held, at the end of a run.
func (g *gateway) flush(t time.Time, out []Message) []Message {
	if g.station != nil {
		return g.station.flush(t, out)
	}
	if len(g.buf) > 0 {
		out = g.emit(t, g.buf, out)
		g.buf = g.buf[:0]
	}
	return g.release(out, true)
}

// release appends held messages whose turn has come (all if all is set).
func (g *gateway) release(out []Message, all bool) []Message {
	kept := g.held[:0]
	for _, h := range g.held {
		if all || h.after <= 0 {
			if h.msg.Fault == FaultOutOfOrder && h.passed == 0 {
				h.msg.Fault = FaultNone // released before anything overtook it
			}
			out = append(out, h.msg)
		} else {
			kept = append(kept, h)
		}
	}
	clear(g.held[len(kept):])
	g.held = kept
	return out
}

func (g *gateway) drawFault() Fault {
	if !g.anyFault {
		return FaultNone
	}
	u := g.rng.Float64() * 100
	for i, c := range g.faults {
		if u < c {
			return Fault(i + 1)
		}
	}
	return FaultNone
}

// emit turns readings into a message, injects a fault, decides resets and
// appends what is to be sent now.
func (g *gateway) emit(t time.Time, rs []reading, out []Message) []Message {
	g.seq++
	f := g.drawFault()
	bad := -1
	var extra *extraReading
	var future time.Time
	switch f {
	case FaultNaN:
		bad = g.rng.IntN(len(rs))
	case FaultFuture:
		bad = g.rng.IntN(len(rs))
		future = t
		if g.futureBase.After(future) {
			future = g.futureBase
		}
		future = future.Add(g.futureSkew).Truncate(time.Second)
	case FaultSpoofed:
		if m := g.spoofMeter(); m != nil {
			extra = &extraReading{meter: m.ID, units: 1000 + g.rng.Int64N(100000)}
		} else {
			f = FaultNone
		}
	case FaultUnknownMeter:
		extra = &extraReading{meter: g.unknownMeter(), units: 1000 + g.rng.Int64N(100000)}
	}
	payload := g.enc.encode(g.g.ID, g.seq, t, rs, bad, f, future, extra)
	eff := &effects{}
	if f == FaultMalformed {
		payload = payload[:1+g.rng.IntN(len(payload)-2)]
	} else {
		eff.valid = make([]reading, 0, len(rs))
		for i, r := range rs {
			if i != bad {
				eff.valid = append(eff.valid, r)
			}
		}
	}
	n := len(rs)
	if extra != nil {
		n++
	}
	msg := Message{Topic: g.topic, Payload: payload, Sent: t, Readings: n, Fault: f, eff: eff, shard: g.shard}
	if f == FaultDuplicate || f == FaultUnknownGateway {
		msg.Fault = FaultNone // the copy carries the fault
	}

	// Resets happen right after a reading the service will have before any
	// later one: not after a lost or held-back message.
	if f != FaultMalformed && f != FaultOutOfOrder {
		for _, r := range eff.valid {
			mt := r.mt
			if p := mt.resetP; p > 0 && mt.resettable() && r.ts.Equal(mt.last) && mt.event.Float64() < p {
				mt.reg = 0
				mt.disc, mt.reset = true, true
			}
		}
	}

	if f == FaultOutOfOrder {
		g.held = append(g.held, held{msg: msg, after: 1 + g.rng.IntN(3)})
		return out
	}
	out = append(out, msg)
	for i := range g.held {
		g.held[i].after--
		if f != FaultMalformed { // an unreadable message overtakes nothing
			g.held[i].passed++
		}
	}
	out = g.release(out, false)
	switch f {
	case FaultUnknownGateway:
		g.rogueSeq++
		rogue := Message{
			Topic:    g.rogueTopic,
			Payload:  g.enc.encode(g.rogue, g.rogueSeq, t, rs, -1, FaultNone, time.Time{}, nil),
			Sent:     t,
			Readings: len(rs),
			Fault:    FaultUnknownGateway,
			eff:      &effects{},
			shard:    g.shard,
		}
		out = append(out, rogue)
	case FaultDuplicate:
		dup := msg
		dup.Payload = slices.Clone(msg.Payload)
		dup.Fault = FaultDuplicate
		dup.eff = &effects{}
		if k := g.rng.IntN(3); k == 0 {
			out = append(out, dup)
		} else {
			g.held = append(g.held, held{msg: dup, after: k})
		}
	}
	return out
}

// spoofMeter picks a meter registered elsewhere than on this gateway,
// preferably in another enterprise; nil if there is none.
func (g *gateway) spoofMeter() *registry.Meter {
	ents := g.reg.Enterprises
	for range 16 {
		e := ents[g.rng.IntN(len(ents))]
		if (e == g.g.Enterprise && len(ents) > 1) || len(e.Meters) == 0 {
			continue
		}
		m := e.Meters[g.rng.IntN(len(e.Meters))]
		if _, mine := g.g.Meter(m.ID); !mine {
			return m
		}
	}
	return nil
}

// unknownMeter returns a meter id registered nowhere.
func (g *gateway) unknownMeter() string {
	for {
		id := fmt.Sprintf("UNREG-%04d", g.rng.IntN(10000))
		if len(g.reg.MetersNamed(id)) == 0 {
			return id
		}
	}
}
