package store

// AggregateQuery and LatestQuery let a reader ask the store for history in
// pieces: a span of time and a group of enterprises at a time. Both stores
// stream the answer to a callback, so that memory stays bounded by a
// chunk of rows whatever the size of the result (at 100,000 meters a
// 30-day hourly aggregate is some 72 million rows).

import (
	"fmt"
	"slices"
	"time"
)

// AggregateQuery asks for aggregates of readings in [From, To), bucketed
// at Every (buckets start at multiples of Every shifted by Offset: with
// Every 24h and Offset 16h a bucket runs from 16:00 UTC to 16:00 UTC, a
// local day at UTC+8), for the given enterprises (all when empty).
type AggregateQuery struct {
	From, To    time.Time
	Every       time.Duration
	Offset      time.Duration
	Enterprises []string
}

// LatestQuery asks for each meter's latest PerMeter readings since Since,
// for the given enterprises (all when empty).
type LatestQuery struct {
	Since       time.Time
	PerMeter    int
	Enterprises []string
}

// bucketStart returns the start of the bucket of length every, shifted by
// offset (in [0, every)), that holds ns.
func bucketStart(ns, every, offset int64) int64 {
	return floorMultiple(ns-offset, every) + offset
}

// check validates q and returns its offset reduced to [0, Every).
func (q *AggregateQuery) check() (offset time.Duration, err error) {
	if q.Every <= 0 {
		return 0, fmt.Errorf("bucket length %v, want > 0", q.Every)
	}
	offset = q.Offset % q.Every
	if offset < 0 {
		offset += q.Every
	}
	return offset, nil
}

func (q *LatestQuery) check() error {
	if q.PerMeter <= 0 {
		return fmt.Errorf("perMeter %d, want > 0", q.PerMeter)
	}
	return nil
}

// enterpriseSet returns the distinct names of ents in sorted order,
// leaving out names no reading can have (empty, or with a NUL byte).
func enterpriseSet(ents []string) []string {
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		if checkName("enterprise", e) == nil {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
