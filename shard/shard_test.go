package shard

import (
	"fmt"
	"testing"
)

func TestOfIsStableAndSpreads(t *testing.T) {
	// FNV-1a 64 of "E001" is fixed by its definition; the owner must not
	// change between releases, or a rolling upgrade would move enterprises.
	if got := Of("", 3); got != int(uint64(0xcbf29ce484222325)%3) {
		t.Fatalf("Of(\"\", 3) = %d, want the FNV-1a offset basis mod 3", got)
	}
	counts := make([]int, 3)
	for i := range 3000 {
		counts[Of(fmt.Sprintf("E%04d", i), 3)]++
	}
	for i, c := range counts {
		if c < 800 || c > 1200 {
			t.Errorf("shard %d of 3 got %d of 3000 enterprises", i, c)
		}
	}
	for i := range 100 {
		id := fmt.Sprintf("E%04d", i)
		owners := 0
		for s := range 3 {
			if (Set{Index: s, Count: 3}).Owns(id) {
				owners++
			}
		}
		if owners != 1 {
			t.Errorf("%s has %d owners of 3", id, owners)
		}
		if !One.Owns(id) {
			t.Errorf("One does not own %s", id)
		}
	}
}

func TestNewAndOrdinal(t *testing.T) {
	for _, c := range []struct{ i, n int }{{0, 0}, {-1, 2}, {2, 2}, {0, MaxCount + 1}} {
		if _, err := New(c.i, c.n); err == nil {
			t.Errorf("New(%d, %d) accepted", c.i, c.n)
		}
	}
	if s, err := New(2, 3); err != nil || s.String() != "2/3" {
		t.Errorf("New(2, 3) = %v, %v", s, err)
	}
	for h, want := range map[string]int{"cleanprod-0": 0, "cleanprod-12": 12, "a-b-3": 3} {
		if got, err := OrdinalOf(h); err != nil || got != want {
			t.Errorf("OrdinalOf(%q) = %d, %v", h, got, err)
		}
	}
	for _, h := range []string{"cleanprod", "cleanprod-", "cleanprod-x", "node-1-a"} {
		if _, err := OrdinalOf(h); err == nil {
			t.Errorf("OrdinalOf(%q) accepted", h)
		}
	}
}
