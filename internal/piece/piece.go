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
