// Package shard says which replica owns which enterprise.
//
// A fleet too big for one machine runs several replicas of serve. Each
// enterprise belongs to exactly one shard: its telemetry is received,
// normalised, stored and scored by that shard's replica alone, which keeps
// the enterprise's counter state and its scoring windows. The assignment is
// a pure function of the enterprise id and the shard count (FNV-1a 64 of the
// id, modulo the count), so every replica, and every tool, computes the same
// owner without asking anyone.
package shard

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// MaxCount is the largest shard count accepted.
const MaxCount = 1024

// Of returns the shard of enterprise among count shards (count >= 1).
func Of(enterprise string, count int) int {
	if count <= 1 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(enterprise))
	return int(h.Sum64() % uint64(count))
}

// Set is one replica's part of the fleet: shard Index of Count. The zero
// value is not valid; One is the single replica that owns everything.
type Set struct {
	Index, Count int
}

// One is the assignment of a single replica.
var One = Set{Index: 0, Count: 1}

// New checks index and count.
func New(index, count int) (Set, error) {
	if count < 1 || count > MaxCount {
		return Set{}, fmt.Errorf("shard count %d: want 1 to %d", count, MaxCount)
	}
	if index < 0 || index >= count {
		return Set{}, fmt.Errorf("shard index %d: want 0 to %d for %d shards", index, count-1, count)
	}
	return Set{Index: index, Count: count}, nil
}

// Owns reports whether enterprise belongs to s.
func (s Set) Owns(enterprise string) bool {
	return s.Count <= 1 || Of(enterprise, s.Count) == s.Index
}

// Single reports whether s is the only shard.
func (s Set) Single() bool { return s.Count <= 1 }

// String is "i/n", e.g. "0/3".
func (s Set) String() string { return strconv.Itoa(s.Index) + "/" + strconv.Itoa(s.Count) }

// OrdinalOf returns the number after the last '-' of a host name, the
// ordinal a Kubernetes StatefulSet gives its pods ("cleanprod-2": 2).
func OrdinalOf(hostname string) (int, error) {
	i := strings.LastIndexByte(hostname, '-')
	if i < 0 || i == len(hostname)-1 {
		return 0, fmt.Errorf("host name %q has no ordinal (want name-N)", hostname)
	}
	n, err := strconv.Atoi(hostname[i+1:])
	if err != nil || n < 0 {
		return 0, fmt.Errorf("host name %q has no ordinal (want name-N)", hostname)
	}
	return n, nil
}
