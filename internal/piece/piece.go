// Package piece sizes the pieces in which history is read from the store:
// groups of enterprises that grow while a piece finishes well within its
// target time, shrink when one is slow, and are halved, after a back-off,
// when one fails.
package piece

import "time"

// Sizer is the size of the next piece. The zero value is not usable: set
// Size (the first piece), Max and Target.
type Sizer struct {
	Size    int           // enterprises in the next piece
	Max     int           // largest piece
	Target  time.Duration // how long one piece should take
	backoff time.Duration
}

// DefaultTarget is a piece's target time when none is configured: well
// within the store client's default 30 s timeout.
const DefaultTarget = 5 * time.Second

// maxBackoff bounds the wait between attempts.
const maxBackoff = 30 * time.Second

// Done records that a piece of n enterprises took took: pieces that
// finish in under a quarter of the target double, slower than the target
// halve.
func (s *Sizer) Done(n int, took time.Duration) {
	s.backoff = 0
	switch {
	case took > s.target() && s.Size > 1:
		s.Size = max(1, s.Size/2)
	case took < s.target()/4 && n == s.Size:
		s.Size = min(2*s.Size, s.Max)
	}
}

// Failed records that a piece of n enterprises failed and returns how long
// to wait before the next attempt (1 s, doubling to 30 s while attempts
// keep failing); the next piece is half as large.
func (s *Sizer) Failed(n int) time.Duration {
	s.Size = max(1, n/2)
	if s.backoff == 0 {
		s.backoff = time.Second
	} else {
		s.backoff = min(2*s.backoff, maxBackoff)
	}
	return s.backoff
}

func (s *Sizer) target() time.Duration {
	if s.Target <= 0 {
		return DefaultTarget
	}
	return s.Target
}

// Queue hands out a list in pieces, the pieces given back (failed, to be
// read again) first. The zero value is empty; make one with NewQueue.
type Queue[T any] struct {
	items []T
	next  int // items[next:] not handed out yet
	again []T
}

// NewQueue returns a Queue of items.
func NewQueue[T any](items []T) *Queue[T] { return &Queue[T]{items: items} }

// More reports whether anything is left to hand out.
func (q *Queue[T]) More() bool { return len(q.again) > 0 || q.next < len(q.items) }

// Take hands out the next piece of at most n (at least 1) items: of those
// given back if any, else of the list. The piece must not be appended to.
func (q *Queue[T]) Take(n int) []T {
	n = max(1, n)
	if len(q.again) > 0 {
		k := min(n, len(q.again))
		p := q.again[:k:k]
		q.again = q.again[k:]
		return p
	}
	k := min(n, len(q.items)-q.next)
	p := q.items[q.next : q.next+k : q.next+k]
	q.next += k
	return p
}

// GiveBack queues part to be handed out again, before the rest.
func (q *Queue[T]) GiveBack(part []T) { q.again = append(q.again, part...) }
