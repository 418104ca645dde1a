package scoring

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

// historyFunc is a History made of a function.
type historyFunc func(ctx context.Context, q store.AggregateQuery, fn func(*store.Aggregate) error) error

func (f historyFunc) EachAggregate(ctx context.Context, q store.AggregateQuery, fn func(*store.Aggregate) error) error {
	return f(ctx, q, fn)
}

// refillFleet returns n enterprises (copies of lj-alpha) and a store
// holding 10 days of their hourly readings up to now: 5,760 hourly rows
// an enterprise, more than a batch.
func refillFleet(t *testing.T, n int, now time.Time) (*registry.Registry, *memHistory) {
	t.Helper()
	reg := fleetRegistry(t, n)
	hist := &memHistory{}
	for h := 10 * 24; h > 0; h-- { // in time order: memHistory.add appends
		for _, ent := range reg.Enterprises {
			hist.add(hourly(ent, now.Add(-time.Duration(h)*time.Hour+time.Minute), goodRates))
		}
	}
	return reg, hist
}

// refilled returns an engine over reg whose windows Rebuild refilled
// from hist, conc pieces of group enterprises at a time, and the error
// of Rebuild.
func refilled(t *testing.T, reg *registry.Registry, hist History, now time.Time, conc, group int) (*Engine, error) {
	t.Helper()
	fx := newFixture(t)
	eng, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: reg, Now: func() time.Time { return now },
		History: hist, RefillConcurrency: conc})
	if err != nil {
		t.Fatal(err)
	}
	eng.rbGroup = group
	return eng, eng.Rebuild(context.Background())
}

// TestRefillConcurrent refills the same store with one piece at a time
// and with several in flight, while pieces fail mid-stream: the windows
// are the same, every row is counted once, and no more pieces are asked
// for at once than the setting says.
func TestRefillConcurrent(t *testing.T) {
	now := time.Date(2026, 6, 1, 3, 30, 0, 0, time.UTC)
	reg, mem := refillFleet(t, 12, now)
	for _, tc := range []struct {
		name        string
		conc, group int
		fail        []string // enterprises whose first hourly answer breaks off after 5,000 rows
	}{
		{name: "2 fetchers", conc: 2, group: 1},
		{name: "3 fetchers, pieces of 2", conc: 3, group: 2},
		{name: "4 fetchers, one piece", conc: 4, group: 64},
		{name: "2 fetchers, one piece fails", conc: 2, group: 1, fail: []string{"lj-00003"}},
		{name: "3 fetchers, pieces of 4 fail", conc: 3, group: 4, fail: []string{"lj-00001", "lj-00006", "lj-00011"}},
		{name: "1 fetcher, one piece fails", conc: 1, group: 3, fail: []string{"lj-00004"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// The reference: one piece of one enterprise at a time
				// (made in the bubble, as sameWindows applies its
				// readings).
				ref, err := refilled(t, reg, mem, now, 1, 1)
				if err != nil {
					t.Fatal(err)
				}
				wantRows := testutil.ToFloat64(ref.m.rebuildAggregates)
				if wantRows < 12*5760 {
					t.Fatalf("reference refill read %v rows, want at least %d", wantRows, 12*5760)
				}
				var (
					mu             sync.Mutex // guards the rest
					inflight, most int
					failed         = map[string]bool{}
				)
				hist := historyFunc(func(ctx context.Context, q store.AggregateQuery, fn func(*store.Aggregate) error) error {
					mu.Lock()
					inflight++
					most = max(most, inflight)
					mu.Unlock()
					defer func() {
						mu.Lock()
						inflight--
						mu.Unlock()
					}()
					time.Sleep(time.Second) // every fetcher is in flight before any answers
					rows := map[string]int{}
					return mem.EachAggregate(ctx, q, func(a *store.Aggregate) error {
						if q.Every == time.Hour {
							if rows[a.Enterprise]++; rows[a.Enterprise] == 5000 {
								mu.Lock()
								fail := !failed[a.Enterprise] && slices.Contains(tc.fail, a.Enterprise)
								failed[a.Enterprise] = failed[a.Enterprise] || fail
								mu.Unlock()
								if fail {
									return errors.New("store: read timed out")
								}
							}
						}
						return fn(a)
					})
				})
				eng, err := refilled(t, reg, hist, now, tc.conc, tc.group)
				if err != nil {
					t.Fatal(err)
				}
				for _, ent := range reg.Enterprises {
					sameWindows(t, ref, eng, ent.ID, now)
				}
				if got := testutil.ToFloat64(eng.m.rebuildAggregates); got != wantRows {
					t.Errorf("rows counted: got %v, want %v", got, wantRows)
				}
				if got := testutil.ToFloat64(eng.m.rebuildRetries); got != float64(len(tc.fail)) {
					t.Errorf("retries: got %v, want %d", got, len(tc.fail))
				}
				pieces := (12 + tc.group - 1) / tc.group
				if want := min(tc.conc, pieces); most != want {
					t.Errorf("pieces in flight at most: got %d, want %d", most, want)
				}
			})
		})
	}
}

// TestRefillStops checks that a refill with several pieces in flight
// returns, its fetchers gone, when its context ends (whether answers are
// streaming or waiting) or the store refuses a query.
func TestRefillStops(t *testing.T) {
	now := time.Date(2026, 6, 1, 3, 30, 0, 0, time.UTC)
	reg := fleetRegistry(t, 6)
	for _, tc := range []struct {
		name   string
		answer func(ctx context.Context, q store.AggregateQuery, fn func(*store.Aggregate) error) error
		want   error
	}{
		{name: "cancelled while rows stream", want: context.Canceled,
			answer: func(ctx context.Context, q store.AggregateQuery, fn func(*store.Aggregate) error) error {
				a := store.Aggregate{Enterprise: q.Enterprises[0], Meter: "E-PAINT-01", Start: q.From, Sum: 1, Count: 1}
				for ctx.Err() == nil {
					if err := fn(&a); err != nil {
						return err
					}
					time.Sleep(time.Millisecond) // the clock moves on while rows stream
				}
				return ctx.Err()
			}},
		{name: "cancelled while waiting for the store", want: context.Canceled,
			answer: func(ctx context.Context, q store.AggregateQuery, fn func(*store.Aggregate) error) error {
				<-ctx.Done()
				return ctx.Err()
			}},
		{name: "cancelled during the back-off", want: context.Canceled,
			answer: func(ctx context.Context, q store.AggregateQuery, fn func(*store.Aggregate) error) error {
				return errors.New("store: connection refused")
			}},
		{name: "refused", want: &store.QueryError{Status: 400, Message: "error parsing query"},
			answer: func(ctx context.Context, q store.AggregateQuery, fn func(*store.Aggregate) error) error {
				if q.Enterprises[0] == "lj-00001" {
					return &store.QueryError{Status: 400, Message: "error parsing query"}
				}
				<-ctx.Done()
				return ctx.Err()
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fx := newFixture(t)
				eng, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: reg, Now: func() time.Time { return now },
					History: historyFunc(tc.answer), RefillConcurrency: 3})
				if err != nil {
					t.Fatal(err)
				}
				eng.rbGroup = 1
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				time.AfterFunc(time.Minute, cancel)
				err = eng.Rebuild(ctx)
				var qe *store.QueryError
				switch {
				case errors.As(tc.want, &qe):
					if !store.Refused(err) {
						t.Errorf("got %v, want the store's refusal", err)
					}
				case !errors.Is(err, tc.want):
					t.Errorf("got %v, want %v", err, tc.want)
				}
				// synctest.Test fails if a fetcher outlives Rebuild.
			})
		})
	}
}
