package ingest

import (
	"errors"
	"fmt"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

// rateError is a counter amount above the meter's max_rate.
type rateError struct{ error }

func isRate(err error) bool {
	if err == nil {
		return false // errors.As's target would escape for nothing
	}
	var re rateError
	return errors.As(err, &re)
}

// placeCounter puts counter reading e at index i of h and decides the
// deltas from there on (walk): its own, and those of later readings it
// changes (an out-of-order reading splits its successor's interval, a
// reading decides a held drop before it), emitting each change as a
// rewrite. A reading whose delta, or a later one's, cannot be decided
// (above max_rate) is rejected and changes nothing. It reports whether e
// was placed.
func (n *Normaliser) placeCounter(m *registry.Meter, h *meterHistory, i int, e histEntry, r *RawReading, out *Outcome, write, observe *[]store.Reading, reject func(*RawReading, Reason, string, ...any)) bool {
	// The walk starts from the settled register at or before the reading's
	// predecessor; what is before it is as decided.
	s := i - 1
	for s >= 0 && h.entries[s].state != settled && h.entries[s].state != rebased {
		s--
	}
	tail := n.walk[:0] // reused: the Normaliser's goroutine owns it
	if s >= 0 {
		tail = append(tail, h.entries[s:i]...)
	} else {
		tail = append(tail, h.entries[:i]...)
	}
	at := len(tail) // e's index in tail
	tail = append(tail, e)
	tail = append(tail, h.entries[i:]...)
	n.walk = tail
	events, err := walkCounter(m, tail, s >= 0, at, n.events[:0])
	n.events = events
	if isRate(err) && i == len(h.entries) && h.jump.t != 0 && h.jump.t < e.t {
		// The register rose beyond max_rate at the rejected reading and
		// this one continues from it: it moved there. Count from the
		// rejected reading, never the jump itself.
		if d, ev, jerr := counterDelta(m, h.jump.t, h.jump.value, e.t, e.value); jerr == nil && ev == noEvent {
			e.delta, e.state = d, rebased
			tail[at] = e
			events, err = []counterEvent{rebaseEvent}, nil
		}
	}
	if err != nil {
		if isRate(err) && i == len(h.entries) {
			h.jump.t, h.jump.value = e.t, e.value
		}
		reject(r, ReasonCounterJump, "%v", err)
		return false
	}
	if i == len(h.entries) {
		h.jump.t = 0
	}
	for _, ev := range events {
		countEvent(out, ev)
	}
	// Emit what changed: e itself, and every later or earlier reading
	// whose delta or state the walk changed, as a rewrite (same key, so
	// it overwrites) with the difference for the scorer.
	off := i - at // tail[k] is h.entries[k+off] for k < at, h.entries[k+off-1] after
	next := false // the reading after e was rewritten
	for k := range tail {
		if k == at {
			continue
		}
		j := k + off
		if k > at {
			j--
		}
		if old, nw := h.entries[j], tail[k]; nw.delta != old.delta || nw.state != old.state {
			h.entries[j] = nw
			emitReading(m, nw, before(tail, k), nw.delta-old.delta, write, observe)
			out.Rewrites++
			next = next || k == at+1
		}
	}
	e = tail[at]
	emitReading(m, e, before(tail, at), e.delta, write, observe)
	if at+1 < len(tail) && !next && keepChain(m, &e, tail[at+1], write, observe) {
		out.Rewrites++
	}
	n.keep(m, h, i, e)
	return true
}

// before returns the reading before rs[k] (nil for the first: what was
// before it is not known here).
func before(rs []histEntry, k int) *histEntry {
	if k == 0 {
		return nil
	}
	return &rs[k-1]
}

// walkCounter decides the delta and state of every reading of rs after
// the first (a settled register, or, when first is false, nothing before
// rs is known and rs[0] is the meter's baseline), in time order:
//
//   - a rise, a rollover or a declared replacement counts from the last
//     settled register;
//   - a drop that would be a reset is held (delta 0) until the next
//     reading: back at or above the register before the drop, the drop
//     was a glitch (delta 0 for good, and the next reading counts from
//     the register before it); still down, the meter was reset, and the
//     held reading counts its register since the reset;
//   - a rebased reading keeps its delta.
//
// It appends to events those of the readings the walk settled and
// returns them, or an error naming the reading at index at (or, "against
// the following reading", a later one) whose amount is above max_rate.
func walkCounter(m *registry.Meter, rs []histEntry, first bool, at int, events []counterEvent) ([]counterEvent, error) {
	reg, hold := 0, -1 // the last settled register; the held drop (-1: none)
	if !first {
		rs[0].delta, rs[0].state = 0, settled
	}
	for k := 1; k < len(rs); k++ {
		e := &rs[k]
		if e.state == rebased && k != at {
			reg, hold = k, -1
			continue
		}
		if hold >= 0 {
			base := rs[reg]
			if _, ev, err := counterDelta(m, base.t, base.value, e.t, e.value); err == nil && (ev == noEvent || ev == replacementEvent) {
				rs[hold].delta, rs[hold].state = 0, glitch
				events = append(events, glitchEvent)
			} else {
				d, ev, err := counterDelta(m, base.t, base.value, rs[hold].t, rs[hold].value)
				if err != nil {
					return nil, against(err, k, at)
				}
				rs[hold].delta, rs[hold].state = d, settled
				events = append(events, ev)
				reg = hold
			}
			hold = -1
		}
		base := rs[reg]
		d, ev, err := counterDelta(m, base.t, base.value, e.t, e.value)
		if err != nil {
			return nil, against(err, k, at)
		}
		if ev == resetEvent {
			e.delta, e.state, hold = 0, held, k
			continue
		}
		e.delta, e.state, reg = d, settled, k
		if k == at && ev != noEvent {
			events = append(events, ev)
		}
	}
	return events, nil
}

// against names an error found at a reading after the one placed.
func against(err error, k, at int) error {
	if k > at {
		return fmt.Errorf("%w (against the following reading)", err)
	}
	return err
}

// settleRestored marks the held drops and glitches of a counter's
// restored history, whose states the store does not keep: a reading
// stored with delta 0 below the settled register before it, as a reset
// would be, was held; the reading after it, back at or above that
// register, made it a glitch. Deltas are kept as stored.
func settleRestored(m *registry.Meter, h *meterHistory) {
	reg, hold := -1, -1
	for k := range h.entries {
		e := &h.entries[k]
		if hold >= 0 {
			base := h.entries[reg]
			if _, ev, err := counterDelta(m, base.t, base.value, e.t, e.value); err == nil && (ev == noEvent || ev == replacementEvent) {
				h.entries[hold].state = glitch
			} else {
				reg = hold
			}
			hold = -1
		}
		if reg >= 0 && e.delta == 0 {
			base := h.entries[reg]
			if _, ev, err := counterDelta(m, base.t, base.value, e.t, e.value); err == nil && ev == resetEvent {
				e.state, hold = held, k
				continue
			}
		}
		reg = k
	}
}
