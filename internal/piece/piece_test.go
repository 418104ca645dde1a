package piece

import (
	"slices"
	"testing"
	"time"
)

func TestSizer(t *testing.T) {
	s := Sizer{Size: 8, Max: 32, Target: 4 * time.Second}
	s.Done(8, 500*time.Millisecond) // under a quarter: grows
	if s.Size != 16 {
		t.Fatalf("after a fast piece: %d, want 16", s.Size)
	}
	s.Done(16, 2*time.Second) // within the target: stays
	if s.Size != 16 {
		t.Fatalf("after a piece within the target: %d, want 16", s.Size)
	}
	s.Done(16, 5*time.Second) // slow: shrinks
	if s.Size != 8 {
		t.Fatalf("after a slow piece: %d, want 8", s.Size)
	}
	s.Done(3, time.Millisecond) // a short last piece does not grow it
	if s.Size != 8 {
		t.Fatalf("after a short piece: %d, want 8", s.Size)
	}
	var waits []time.Duration
	for range 7 {
		waits = append(waits, s.Failed(s.Size))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for i, w := range want {
		if waits[i] != w*time.Second {
			t.Fatalf("waits %v, want 1s doubling to 30s", waits)
		}
	}
	if s.Size != 1 {
		t.Fatalf("after failures: %d, want 1", s.Size)
	}
	s.Done(1, time.Millisecond)
	if got := s.Failed(1); got != time.Second {
		t.Fatalf("back-off after a success: %s, want 1s again", got)
	}
	for range 10 {
		s.Done(s.Size, time.Millisecond)
	}
	if s.Size != 32 {
		t.Fatalf("grown to %d, want the maximum 32", s.Size)
	}
}

// A queue hands out its list in pieces, the pieces given back first.
func TestQueue(t *testing.T) {
	q := NewQueue([]int{1, 2, 3, 4, 5})
	var got [][]int
	a := q.Take(2)
	got = append(got, a)
	got = append(got, q.Take(2))
	q.GiveBack(a) // failed: read again, in smaller pieces
	for q.More() {
		got = append(got, q.Take(1))
	}
	want := [][]int{{1, 2}, {3, 4}, {1}, {2}, {5}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("pieces %v, want %v", got, want)
	}
	if p := q.Take(3); len(p) != 0 {
		t.Errorf("an empty queue handed out %v", p)
	}
}
