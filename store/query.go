package store

// AggregateQuery and LatestQuery let a reader ask the store for history in
// pieces: a span of time and a group of enterprises at a time.

import (
	"context"
	"slices"
	"time"
)

// AggregateQuery asks for aggregates of readings in [From, To), bucketed
// at Every (buckets start at multiples of Every shifted by Offset), for the
// given enterprises (all when empty).
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

func (b *Bolt) EachAggregate(ctx context.Context, q AggregateQuery, fn func(*Aggregate) error) error {
	aggs, err := b.AggregateReadings(ctx, q.From, q.To, q.Every)
	if err != nil {
		return err
	}
	for i := range aggs {
		if len(q.Enterprises) > 0 && !slices.Contains(q.Enterprises, aggs[i].Enterprise) {
			continue
		}
		if err := fn(&aggs[i]); err != nil {
			return err
		}
	}
	return nil
}

func (s *Influx) EachAggregate(ctx context.Context, q AggregateQuery, fn func(*Aggregate) error) error {
	aggs, err := s.AggregateReadings(ctx, q.From, q.To, q.Every)
	if err != nil {
		return err
	}
	for i := range aggs {
		if len(q.Enterprises) > 0 && !slices.Contains(q.Enterprises, aggs[i].Enterprise) {
			continue
		}
		if err := fn(&aggs[i]); err != nil {
			return err
		}
	}
	return nil
}

func (b *Bolt) EachLatestReading(ctx context.Context, q LatestQuery, fn func(*Reading) error) error {
	rs, err := b.LatestReadings(ctx, q.Since, q.PerMeter)
	if err != nil {
		return err
	}
	for i := range rs {
		if len(q.Enterprises) > 0 && !slices.Contains(q.Enterprises, rs[i].Enterprise) {
			continue
		}
		if err := fn(&rs[i]); err != nil {
			return err
		}
	}
	return nil
}

func (s *Influx) EachLatestReading(ctx context.Context, q LatestQuery, fn func(*Reading) error) error {
	rs, err := s.LatestReadings(ctx, q.Since, q.PerMeter)
	if err != nil {
		return err
	}
	for i := range rs {
		if len(q.Enterprises) > 0 && !slices.Contains(q.Enterprises, rs[i].Enterprise) {
			continue
		}
		if err := fn(&rs[i]); err != nil {
			return err
		}
	}
	return nil
}
