package ingest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanprod/cleanprod/store"
)

// listSource answers EachLatestReading from a list (each meter's readings
// together, oldest first) as the stores do (each meter's latest PerMeter
// since Since), failing the calls fail says.
type listSource struct {
	rs      []store.Reading
	fail    func(call int) error
	mu      sync.Mutex
	queries [][]string
	since   []time.Time
}

func (s *listSource) EachLatestReading(ctx context.Context, q store.LatestQuery, fn func(*store.Reading) error) error {
	s.mu.Lock()
	s.queries = append(s.queries, q.Enterprises)
	s.since = append(s.since, q.Since)
	call := len(s.queries)
	s.mu.Unlock()
	if err := s.fail(call); err != nil {
		return err
	}
	for i := 0; i < len(s.rs); {
		j := i
		for j < len(s.rs) && s.rs[j].Enterprise == s.rs[i].Enterprise && s.rs[j].Meter == s.rs[i].Meter {
			j++
		}
		var meter []store.Reading
		for _, r := range s.rs[i:j] {
			if !r.Time.Before(q.Since) && (len(q.Enterprises) == 0 || slices.Contains(q.Enterprises, r.Enterprise)) {
				meter = append(meter, r)
			}
		}
		for k := range meter[max(0, len(meter)-q.PerMeter):] {
			if err := fn(&meter[max(0, len(meter)-q.PerMeter)+k]); err != nil {
				return err
			}
		}
		i = j
	}
	return nil
}

// Restore reads meter state a group of enterprises at a time: a failed
// query is retried in a smaller group and counted, each meter's newest
// reading is handed on once per answer, and a query the store refuses for
// good ends it.
func TestRestoreRetriesInSmallerPieces(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Minute)
	at := func(m int) time.Time { return now.Add(time.Duration(-m) * time.Minute) }
	src := &listSource{rs: []store.Reading{
		{Enterprise: "ent-a", Meter: "E-1", Time: at(3), Value: 10}, {Enterprise: "ent-a", Meter: "E-1", Time: at(2), Value: 11},
		{Enterprise: "ent-a", Meter: "E-MWH", Time: at(2), Value: 1},
		{Enterprise: "ent-b", Meter: "E-B", Time: at(5), Value: 7}, {Enterprise: "ent-b", Meter: "E-B", Time: at(1), Value: 8},
	}}
	src.fail = func(call int) error {
		if call == 1 {
			return context.DeadlineExceeded // the store too slow for the whole fleet at once
		}
		return nil
	}
	m := NewMetrics(prometheus.NewRegistry())
	p := NewPipeline(testRegistry(t), PipelineConfig{Normaliser: testConfig, RestoreConcurrency: 2}, nil, nil, func([]store.Reading) {}, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	newest := map[string]time.Time{}
	calls := 0
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.Restore(ctx, src, func(r *store.Reading) { calls++; newest[r.Enterprise+"/"+r.Meter] = r.Time }); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.restoreRetries); got != 1 {
		t.Errorf("retries counted %v, want 1", got)
	}
	// The two groups of one are read at once, in either order; each is
	// asked twice (its meters have fewer readings than RestoreHistory in
	// the last day, so they are asked for within PastHorizon too).
	got := slices.Clone(src.queries)
	slices.SortFunc(got[1:], slices.Compare)
	want := [][]string{nil, {"ent-a"}, {"ent-a"}, {"ent-b"}, {"ent-b"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("queries for %q, want the whole fleet, then one enterprise at a time, twice", src.queries)
	}
	if calls != 6 || !newest["ent-a/E-1"].Equal(at(2)) || !newest["ent-a/E-MWH"].Equal(at(2)) || !newest["ent-b/E-B"].Equal(at(1)) {
		t.Errorf("newest handed %d times: %v, want each meter's newest once per answer", calls, newest)
	}
	if got := p.norm.Meters(); got != 3 {
		t.Errorf("%d meters with restored history, want 3", got)
	}

	refused := &listSource{fail: func(int) error { return &store.QueryError{Status: 401, Message: "authorization failed"} }}
	err := p.Restore(ctx, refused, nil)
	var qe *store.QueryError
	if !errors.As(err, &qe) || len(refused.queries) != 1 {
		t.Errorf("refused store: %v after %d queries, want its error after one", err, len(refused.queries))
	}
}

// Restore asks for the latest readings within the last day first, and
// within PastHorizon only for the enterprises with a meter short of
// RestoreHistory there: a meter silent for days is restored all the same.
func TestRestoreAsksRecentFirst(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	reg := testRegistry(t)
	var rs []store.Reading
	for _, e := range reg.Enterprises {
		for _, m := range e.Meters {
			switch {
			case e.ID == "ent-a" && m.ID == "HW": // silent for three days
				for k := range 2 {
					rs = append(rs, store.Reading{Enterprise: e.ID, Meter: m.ID, Kind: "delta", Time: now.Add(-72*time.Hour + time.Duration(k)*time.Hour), Value: 1, Delta: 1})
				}
			default: // every five minutes, the last hour
				for k := range 12 {
					rs = append(rs, store.Reading{Enterprise: e.ID, Meter: m.ID, Kind: "gauge", Time: now.Add(-time.Hour + time.Duration(k)*5*time.Minute), Value: float64(k)})
				}
			}
		}
	}
	src := &listSource{rs: rs, fail: func(int) error { return nil }}
	cfg := testConfig
	p := NewPipeline(reg, PipelineConfig{Normaliser: cfg, RestoreHistory: 4, RestoreConcurrency: 1, Now: func() time.Time { return now }}, nil, nil, func([]store.Reading) {}, NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	newest := map[string]time.Time{}
	if err := p.Restore(t.Context(), src, func(r *store.Reading) { newest[r.Enterprise+"/"+r.Meter] = r.Time }); err != nil {
		t.Fatal(err)
	}
	wantQueries := [][]string{nil, {"ent-a"}}
	wantSince := []time.Time{now.Add(-restoreRecent), now.Add(-cfg.PastHorizon)}
	if !slices.EqualFunc(src.queries, wantQueries, slices.Equal) || !slices.EqualFunc(src.since, wantSince, time.Time.Equal) {
		t.Errorf("queries for %q since %v, want the fleet since a day ago, then ent-a (its HW silent) within the past horizon", src.queries, src.since)
	}
	meters := 0
	for _, e := range reg.Enterprises {
		meters += len(e.Meters)
	}
	if got := p.norm.Meters(); got != meters {
		t.Errorf("%d meters with restored history, want all %d", got, meters)
	}
	if got, want := newest["ent-a/HW"], now.Add(-71*time.Hour); !got.Equal(want) {
		t.Errorf("HW's newest %v, want %v", got, want)
	}
}
