package hj212

import (
	"strconv"
	"strings"
	"time"
)

// Joiner puts split packets (Flag D, PNUM/PNO) back together. Parts of one
// MN and QN are joined in PNO order once all PNUM parts arrived; their CP
// contents are joined with ";" (an assumption: the standard's examples
// split at item boundaries). The joined Packet is as if sent whole: the
// first part's header, D bit cleared, PNUM and PNO 0.
//
// It is bounded: at most MaxPackets incomplete packets, each at most
// Codec.MaxParts parts of at most one frame; an incomplete packet older
// than Timeout is dropped by Expire. A Joiner is meant for one connection
// and is not safe for concurrent use; time is passed in, so tests need no
// clock.
type Joiner struct {
	MaxPackets int           // incomplete packets held; 0 means 4
	Timeout    time.Duration // 0 means 2 minutes
	pending    []*split
}

type split struct {
	head    Packet
	started time.Time
	cps     []string // by PNO-1
	raws    [][]byte // by PNO-1
	got     int
}

func (j *Joiner) maxPackets() int {
	if j.MaxPackets <= 0 {
		return 4
	}
	return j.MaxPackets
}

func (j *Joiner) timeout() time.Duration {
	if j.Timeout <= 0 {
		return 2 * time.Minute
	}
	return j.Timeout
}

// Pending is the number of incomplete packets held.
func (j *Joiner) Pending() int { return len(j.pending) }

// Add takes one packet and its raw frame. A packet that is not split is
// returned as is with done set. A part is kept (raw is copied) until its
// packet is complete, then the joined packet and the parts' frames
// concatenated in PNO order are returned with done set. A part that cannot
// be kept is an *Error: a duplicate PNO or a PNUM, CN or PW differing from
// the first part's (ReasonSplitDup), or MaxPackets incomplete packets
// already held (ReasonSplitFull).
func (j *Joiner) Add(p Packet, raw []byte, now time.Time) (joined Packet, joinedRaw []byte, done bool, err error) {
	if p.PNUM == 0 {
		return p, raw, true, nil
	}
	idx := -1
	for i, s := range j.pending {
		if s.head.QN == p.QN && s.head.MN == p.MN {
			idx = i
			break
		}
	}
	fail := func(r Reason, detail string) (Packet, []byte, bool, error) {
		return Packet{}, nil, false, &Error{Reason: r, Detail: detail, QnRtn: QnRtnUnknown,
			QN: p.QN, PW: p.PW, MN: p.MN, Raw: clip(raw)}
	}
	if idx < 0 {
		if len(j.pending) >= j.maxPackets() {
			return fail(ReasonSplitFull, strconv.Itoa(len(j.pending))+" split packets already incomplete")
		}
		j.pending = append(j.pending, &split{head: p, started: now,
			cps: make([]string, p.PNUM), raws: make([][]byte, p.PNUM)})
		idx = len(j.pending) - 1
	}
	s := j.pending[idx]
	switch {
	case p.PNUM != s.head.PNUM || p.CN != s.head.CN || p.PW != s.head.PW:
		return fail(ReasonSplitDup, "part "+strconv.Itoa(p.PNO)+" disagrees with the first part on PNUM, CN or PW")
	case s.raws[p.PNO-1] != nil:
		return fail(ReasonSplitDup, "part "+strconv.Itoa(p.PNO)+" of "+strconv.Itoa(p.PNUM)+" twice")
	}
	if p.PNO == 1 {
		s.head = p
	}
	s.cps[p.PNO-1] = p.CP
	s.raws[p.PNO-1] = append([]byte(nil), raw...)
	s.got++
	if s.got < s.head.PNUM {
		return Packet{}, nil, false, nil
	}
	j.pending = append(j.pending[:idx], j.pending[idx+1:]...)
	joined = s.head
	joined.Flag &^= FlagSplit
	joined.PNUM, joined.PNO = 0, 0
	var cp strings.Builder
	size := 0
	for i := range s.raws {
		size += len(s.raws[i])
	}
	joinedRaw = make([]byte, 0, size)
	for i, c := range s.cps {
		if c != "" {
			if cp.Len() > 0 {
				cp.WriteByte(';')
			}
			cp.WriteString(c)
		}
		joinedRaw = append(joinedRaw, s.raws[i]...)
	}
	joined.CP = cp.String()
	return joined, joinedRaw, true, nil
}

// Expire drops the incomplete packets started before now - Timeout and
// returns one ReasonIncomplete *Error for each.
func (j *Joiner) Expire(now time.Time) []*Error {
	return j.drop(func(s *split) bool { return now.Sub(s.started) >= j.timeout() })
}

// Flush drops every incomplete packet (the connection is closing) and
// returns one ReasonIncomplete *Error for each.
func (j *Joiner) Flush() []*Error {
	return j.drop(func(*split) bool { return true })
}

func (j *Joiner) drop(expired func(*split) bool) []*Error {
	var errs []*Error
	kept := j.pending[:0]
	for _, s := range j.pending {
		if !expired(s) {
			kept = append(kept, s)
			continue
		}
		var raw []byte
		for _, r := range s.raws {
			if len(raw) < RawLimit {
				raw = append(raw, r...)
			}
		}
		errs = append(errs, &Error{Reason: ReasonIncomplete, QnRtn: QnRtnUnknown,
			Detail: strconv.Itoa(s.got) + " of " + strconv.Itoa(s.head.PNUM) + " parts arrived",
			QN:     s.head.QN, PW: s.head.PW, MN: s.head.MN, Raw: clip(raw)})
	}
	clear(j.pending[len(kept):])
	j.pending = kept
	return errs
}
