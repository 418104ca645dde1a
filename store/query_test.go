package store

import (
	"cmp"
	"context"
	"slices"
	"strings"
)

// history is what both stores offer readers of history.
type history interface {
	EachAggregate(ctx context.Context, q AggregateQuery, fn func(*Aggregate) error) error
	EachLatestReading(ctx context.Context, q LatestQuery, fn func(*Reading) error) error
}

var (
	_ history = (*Bolt)(nil)
	_ history = (*Influx)(nil)
)

// collectLatest gathers what EachLatestReading streams.
func collectLatest(ctx context.Context, h history, q LatestQuery) ([]Reading, error) {
	var out []Reading
	err := h.EachLatestReading(ctx, q, func(r *Reading) error {
		out = append(out, *r)
		return nil
	})
	return out, err
}

// collectAggregates gathers what EachAggregate streams.
func collectAggregates(ctx context.Context, h history, q AggregateQuery) ([]Aggregate, error) {
	var out []Aggregate
	err := h.EachAggregate(ctx, q, func(a *Aggregate) error {
		out = append(out, *a)
		return nil
	})
	return out, err
}

func compareAggregates(a, b Aggregate) int {
	return cmp.Or(strings.Compare(a.Enterprise, b.Enterprise), strings.Compare(a.Meter, b.Meter),
		a.Start.Compare(b.Start), cmp.Compare(a.ValueSum, b.ValueSum), cmp.Compare(a.Sum, b.Sum))
}

func compareReadings(a, b Reading) int {
	return cmp.Or(strings.Compare(a.Enterprise, b.Enterprise), strings.Compare(a.Meter, b.Meter), a.Time.Compare(b.Time))
}

// sortedAggregates returns aggs sorted, for comparing as sets.
func sortedAggregates(aggs []Aggregate) []Aggregate {
	return slices.SortedFunc(slices.Values(aggs), compareAggregates)
}

func sortedReadings(rs []Reading) []Reading {
	return slices.SortedFunc(slices.Values(rs), compareReadings)
}

// asStored returns r as a store gives it back: identity (enterprise,
// meter, time), kind, value, delta and flag; the registry's facts about
// the meter are not stored.
func asStored(r Reading) Reading {
	r.Gateway, r.Quantity, r.Workshop, r.Chained = "", "", "", false
	return r
}
