package sim_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cleanprod/cleanprod/sim"
)

// fakePublisher records what it is given; fail, if set, decides whether a
// call fails.
type fakePublisher struct {
	mu    sync.Mutex
	got   map[string][][]byte // by topic, in order
	n     int
	calls atomic.Int64
	fail  func(call int64) error
}

func (p *fakePublisher) Publish(ctx context.Context, topic string, payload []byte) error {
	if p.fail != nil {
		if err := p.fail(p.calls.Add(1)); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.got == nil {
		p.got = map[string][][]byte{}
	}
	p.got[topic] = append(p.got[topic], payload)
	p.n++
	return nil
}

// expected returns the messages a twin simulator generates, by topic.
func expected(t *testing.T, cfg sim.Config) (map[string][][]byte, int, sim.Ledger) {
	t.Helper()
	s, err := sim.New(loadFleet(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][][]byte{}
	n := 0
	for m := range s.Messages() {
		want[m.Topic] = append(want[m.Topic], m.Payload)
		n++
	}
	return want, n, s.Ledger()
}

func TestRunPacing(t *testing.T) {
	tests := []struct {
		name        string
		cfg         func(now time.Time) sim.Config
		wantElapsed time.Duration
	}{
		{"one simulated hour per second", func(now time.Time) sim.Config {
			return sim.Config{Start: now.Add(-3 * time.Hour), Duration: 2 * time.Hour, Speed: 3600}
		}, 2 * time.Second},
		{"backfill as fast as possible", func(now time.Time) sim.Config {
			return sim.Config{Backfill: 24 * time.Hour, Duration: 24 * time.Hour}
		}, 0},
		{"never ahead of the wall clock", func(now time.Time) sim.Config {
			return sim.Config{Backfill: 10 * time.Minute, Duration: 25 * time.Minute, Speed: 1000}
		}, 15 * time.Minute},
		{"message rate", func(now time.Time) sim.Config {
			return sim.Config{Start: now.Add(-2 * time.Hour), Duration: time.Hour, MaxRate: 314.0 / 3} // 13 ticks x 23 gateways, and 8 stations x 2 hourly frames
		}, 3 * time.Second}, // the first message goes at once
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := tt.cfg(time.Now())
				cfg.Seed = 1
				s, err := sim.New(loadFleet(t), cfg)
				if err != nil {
					t.Fatal(err)
				}
				var pub fakePublisher
				began := time.Now()
				if err := s.Run(t.Context(), &pub); err != nil {
					t.Fatal(err)
				}
				elapsed := time.Since(began)
				if d := elapsed - tt.wantElapsed; d < -50*time.Millisecond || d > 50*time.Millisecond {
					t.Errorf("run took %v, want %v", elapsed, tt.wantElapsed)
				}
				st := s.Stats()
				if st.Messages != int64(pub.n) || st.Elapsed != elapsed {
					t.Errorf("stats %d messages in %v, want %d in %v", st.Messages, st.Elapsed, pub.n, elapsed)
				}
				if want := s.Start().Add(cfg.Duration); !st.SimTime.Equal(want) {
					t.Errorf("simulated time reached %v, want %v", st.SimTime, want)
				}
			})
		})
	}
}

// TestRunDelivers checks that Run publishes exactly the messages Next
// generates, in order per gateway, retrying failed publishes, and that the
// ledgers agree.
func TestRunDelivers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		cfg := sim.Config{Seed: 8, Start: now.Add(-13 * time.Hour), Duration: 12 * time.Hour, Faults: allFaults, Resets: 2,
			Workers: 3, Now: func() time.Time { return now }}
		want, n, wantLedger := expected(t, cfg)
		s, err := sim.New(loadFleet(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		pub := &fakePublisher{fail: func(call int64) error {
			if call%97 == 0 {
				return errors.New("broker unavailable")
			}
			return nil
		}}
		if err := s.Run(t.Context(), pub); err != nil {
			t.Fatal(err)
		}
		if pub.n != n {
			t.Fatalf("published %d messages, want %d", pub.n, n)
		}
		for topic, w := range want {
			g := pub.got[topic]
			if len(g) != len(w) {
				t.Errorf("%s: published %d messages, want %d", topic, len(g), len(w))
				continue
			}
			for i := range w {
				if !bytes.Equal(g[i], w[i]) {
					t.Errorf("%s: message %d is\n%s\nwant\n%s", topic, i, g[i], w[i])
					break
				}
			}
		}
		if got := s.Ledger(); !reflect.DeepEqual(got, wantLedger) {
			t.Errorf("ledger after Run differs from the generated one:\n got %+v\nwant %+v", got.Rejected, wantLedger.Rejected)
		}
		if st := s.Stats(); st.Errors == 0 || st.Errors != pub.calls.Load()-int64(n) {
			t.Errorf("stats count %d errors, want %d", st.Errors, pub.calls.Load()-int64(n))
		}
	})
}

func TestRunStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		var progress bytes.Buffer
		cfg := sim.Config{Seed: 4, Start: now.Add(-time.Hour), Speed: 60, Faults: allFaults,
			Progress: &progress, ProgressEvery: 10 * time.Second}
		s, err := sim.New(loadFleet(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 95*time.Second)
		defer cancel()
		var pub fakePublisher
		if err := s.Run(ctx, &pub); err != nil {
			t.Fatalf("Run stopped by its context: got %v, want nil", err)
		}
		st := s.Stats()
		if st.Messages != int64(pub.n) {
			t.Errorf("stats count %d messages, the publisher got %d", st.Messages, pub.n)
		}
		// 95 s at 60x is 95 simulated minutes: the first hour catches up
		// with the wall clock, then real time.
		if got, want := st.SimTime, s.Start().Add(time.Hour+30*time.Second); got.Sub(want) > 0 || want.Sub(got) > 5*time.Minute {
			t.Errorf("simulated time reached %v, want about %v", got, want)
		}
		out := progress.String()
		if strings.Count(out, "msgs") < 9 || !strings.Contains(out, "expected rejections") {
			t.Errorf("progress output lacks progress lines or the summary:\n%s", out)
		}
		if !strings.Contains(out, "history loaded: 1h0m0s of ") || !strings.Contains(out, "; now live, each meter every 5m0s") {
			t.Errorf("progress output does not say when the history is sent and the data live:\n%s", out)
		}
		if err := s.Run(t.Context(), &pub); err == nil {
			t.Error("a second Run returned no error")
		}
	})
}
