package ingest

import (
	"math/bits"
	"time"
)

// seqWindow is how many sequence numbers below a gateway's highest one are
// remembered: a message that comes at most this many numbers late (a
// backlog replayed out of order, as paho re-sends its in-flight messages
// after a reconnect) fills its hole instead of counting as lost.
const seqWindow = 4096

// DefaultSeqLate is how long after a gap appears its messages may still
// come (NormaliserConfig.SeqLate): a backlog replayed out of order after
// a reconnect arrives within it.
const DefaultSeqLate = 5 * time.Minute

// maxGaps bounds the gaps a gateway has open at once; beyond it the oldest
// is judged at once.
const maxGaps = 64

// seqState tracks one gateway's message sequence. A number skipped when a
// higher one arrives is a hole; a hole is counted lost when its message
// has not come within the late time after the gap appeared, or when it
// leaves the window, seqWindow numbers later, whichever is first.
// A jump of more than the window, up or down, is a gateway that numbered
// anew (a restart, or a hostile value): nothing is counted for the jump
// itself, so one seq near 2^63 cannot add 9e18 lost messages.
type seqState struct {
	hi    int64                  // the highest seq seen
	lo    int64                  // the first seq of the current numbering
	seen  bool                   // hi is set
	holes [seqWindow / 64]uint64 // bit s%seqWindow: seq s in (hi-seqWindow, hi) has not come
	gaps  []seqGap               // open gaps, oldest first
}

// seqGap is a run of skipped numbers and when it appeared.
type seqGap struct {
	from, to int64 // inclusive
	at       int64 // arrival time, unix ns
}

// seqStep is what one message's seq says.
type seqStep struct {
	lost    int64 // holes that left the window unfilled: messages lost at the edge
	repeat  bool  // seen before: a redelivery or a duplicate
	late    bool  // filled a hole: came out of order, not lost
	renewed bool  // jumped beyond the window: the gateway numbers anew
	before  bool  // below the first number seen: older than what is tracked, or a gateway numbering anew from a low number
}

func (s *seqState) bit(seq int64) (word int, mask uint64) {
	i := uint64(seq) % seqWindow
	return int(i / 64), 1 << (i % 64)
}

// step records seq, arrived at now, and reports what it means; gaps
// older than late are judged.
func (s *seqState) step(seq int64, now time.Time, late time.Duration) seqStep {
	var st seqStep
	st.lost += s.judge(now.UnixNano() - int64(late))
	switch {
	case !s.seen:
	case seq == s.hi:
		st.repeat = true
		return st
	case seq > s.hi && seq-s.hi <= seqWindow:
		if seq > s.hi+1 {
			if len(s.gaps) == maxGaps {
				st.lost += s.count(s.gaps[0])
				s.gaps = s.gaps[1:]
			}
			s.gaps = append(s.gaps, seqGap{from: s.hi + 1, to: seq - 1, at: now.UnixNano()})
		}
		// Each number passed becomes a hole, after its slot's previous
		// number (seqWindow below) leaves the window: lost if still a hole.
		for n := s.hi + 1; n <= seq; n++ {
			w, m := s.bit(n)
			if s.holes[w]&m != 0 {
				st.lost++
			}
			if n == seq {
				s.holes[w] &^= m
			} else {
				s.holes[w] |= m
			}
		}
		s.hi = seq
		return st
	case seq < s.lo && s.hi-seq < seqWindow:
		st.before = true
		return st
	case seq < s.hi && s.hi-seq < seqWindow:
		w, m := s.bit(seq)
		if s.holes[w]&m == 0 {
			st.repeat = true
			return st
		}
		s.holes[w] &^= m
		st.late = true
		return st
	default:
		// More than the window away: the holes left can no longer be
		// told from the new numbering.
		for _, w := range s.holes {
			st.lost += int64(bits.OnesCount64(w))
		}
		st.renewed = true
	}
	s.hi, s.lo, s.seen = seq, seq, true
	clear(s.holes[:])
	s.gaps = s.gaps[:0]
	return st
}

// judge counts and clears the holes of the gaps that appeared before the
// given time.
func (s *seqState) judge(before int64) int64 {
	var lost int64
	for len(s.gaps) > 0 && s.gaps[0].at <= before {
		lost += s.count(s.gaps[0])
		s.gaps = s.gaps[1:]
	}
	return lost
}

// count counts and clears the holes of g still in the window.
func (s *seqState) count(g seqGap) int64 {
	var lost int64
	for n := max(g.from, s.hi-seqWindow+1); n <= g.to; n++ {
		if w, m := s.bit(n); s.holes[w]&m != 0 {
			s.holes[w] &^= m
			lost++
		}
	}
	return lost
}
