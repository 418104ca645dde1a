package ingest

import (
	"slices"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

// forget takes readings the store refused for good out of their meters'
// histories: they never were, and no later reading may count from them.
// A counter's readings after a refused one are walked again from the
// register before it, and each whose delta changes is rewritten into
// write, with the difference for the scorer in observe; it returns how
// many. Where the register before it is no longer kept (the refused
// reading was the oldest kept and not the meter's first), the readings
// after it stay as they are.
func (n *Normaliser) forget(rs []store.Reading, write, observe *[]store.Reading) (rewrites int) {
	for _, r := range rs {
		if r.Invalid {
			continue
		}
		m, ok := n.reg.Meter(r.Enterprise, r.Meter)
		if !ok {
			continue
		}
		h := n.meters[m]
		if h == nil {
			continue
		}
		t := r.Time.UnixNano()
		i := h.search(t)
		if i == 0 && len(h.entries) > 0 && h.entries[0].t != t && m.Kind == registry.Counter && store.SameHour(h.entries[0].t, t) {
			// No longer kept, but the oldest kept reading of its hour may
			// have been stored chained to it: it keeps its register.
			if keepChain(m, nil, h.entries[0], write, observe) {
				rewrites++
			}
			continue
		}
		if i >= len(h.entries) || h.entries[i].t != t || h.entries[i].value != r.Value {
			continue
		}
		if m.Kind != registry.Counter || i == len(h.entries)-1 {
			h.entries = slices.Delete(h.entries, i, i+1)
			continue
		}
		if i == 0 && !h.baseline {
			// What is stored before the next one is not kept: it keeps its
			// register.
			if keepChain(m, nil, h.entries[1], write, observe) {
				rewrites++
			}
			h.entries = slices.Delete(h.entries, 0, 1)
			continue
		}
		// The walk starts from the settled register at or before the
		// refused reading's predecessor, as placeCounter's does.
		s := i - 1
		for s >= 0 && h.entries[s].state != settled && h.entries[s].state != rebased {
			s--
		}
		start := max(s, 0)
		tail := append(n.walk[:0], h.entries[start:i]...)
		tail = append(tail, h.entries[i+1:]...)
		n.walk = tail
		events, err := walkCounter(m, tail, s >= 0, -1, n.events[:0])
		n.events = events
		if err != nil {
			// Counting from the register before it would exceed max_rate:
			// the readings after it keep their deltas.
			if keepChain(m, before(h.entries, i), h.entries[i+1], write, observe) {
				rewrites++
			}
			h.entries = slices.Delete(h.entries, i, i+1)
			continue
		}
		next := false // the reading after the refused one was rewritten
		for k := range tail {
			j := start + k
			if j >= i {
				j++ // past the refused one
			}
			if old, nw := h.entries[j], tail[k]; nw.delta != old.delta || nw.state != old.state {
				prev := before(tail, k)
				if k == 0 && start > 0 {
					prev = &h.entries[start-1]
				}
				emitReading(m, nw, prev, nw.delta-old.delta, write, observe)
				rewrites++
				next = next || j == i+1
			}
		}
		if !next {
			k := i - start // the one after it, in tail
			if keepChain(m, before(tail, k), tail[k], write, observe) {
				rewrites++
			}
		}
		h.entries = append(h.entries[:start], tail...)
	}
	return rewrites
}
