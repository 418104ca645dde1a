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
// together, oldest first), failing the calls fail says.
type listSource struct {
	rs      []store.Reading
	fail    func(call int) error
	mu      sync.Mutex
	queries [][]string
}

func (s *listSource) EachLatestReading(ctx context.Context, q store.LatestQuery, fn func(*store.Reading) error) error {
	s.mu.Lock()
	s.queries = append(s.queries, q.Enterprises)
	call := len(s.queries)
	s.mu.Unlock()
	if err := s.fail(call); err != nil {
		return err
	}
	for i := range s.rs {
		if len(q.Enterprises) == 0 || slices.Contains(q.Enterprises, s.rs[i].Enterprise) {
			if err := fn(&s.rs[i]); err != nil {
				return err
			}
		}
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
	// The two groups of one are read at once, in either order.
	got := slices.Clone(src.queries)
	slices.SortFunc(got[1:], slices.Compare)
	want := [][]string{nil, {"ent-a"}, {"ent-b"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("queries for %q, want the whole fleet, then one enterprise at a time", src.queries)
	}
	if calls != 3 || !newest["ent-a/E-1"].Equal(at(2)) || !newest["ent-a/E-MWH"].Equal(at(2)) || !newest["ent-b/E-B"].Equal(at(1)) {
		t.Errorf("newest handed %d times: %v, want each meter's newest once", calls, newest)
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
