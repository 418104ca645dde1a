package deploycheck

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cleanprod/cleanprod/ingest"
	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/outbox"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/sim"
	"github.com/cleanprod/cleanprod/store"
)

// The simulated fleet behind the panel queries: the shipped registry's
// four plants, historyDays of hourly readings (with faults, counter resets
// and drift, so that codes, levels and regressions move), fed through the
// real ingest pipeline into InfluxDB; then the real scorer, rebuilt from
// the store, steps hour by hour through the last scoredHours, writing its
// indicator, score and event points. One gateway falls silent for the
// last silentHours (stale meters), another loses a few messages (seq
// gaps), and one store write fails (a retried temporary error). The
// pipeline's and scorer's metrics are served for a real Prometheus.
const (
	historyDays = 60
	scoredHours = 72
	silentHours = 10
)

type fleet struct {
	db          *testenv.InfluxDB
	reg         *registry.Registry
	metrics     *prometheus.Registry
	metricsURL  string    // /metrics of the pipeline and scorer
	end         time.Time // last simulated hour (the wall clock's hour)
	silent      string    // enterprise/gateway silent for the last silentHours
	gapped      string    // enterprise/gateway that lost messages
	enterprises []string

	mu     sync.Mutex
	events map[scoring.EventKind]int
}

// fakeClock is the scorer's clock, set by the test.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time  { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// pointSink writes the scorer's points and remembers the latest time
// written, so the test can wait for a step's points.
type pointSink struct {
	st   *store.Influx
	mu   sync.Mutex
	last time.Time
	errs int
}

func (s *pointSink) WritePoints(ctx context.Context, ps []store.Point) error {
	err := s.st.WritePoints(ctx, ps)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errs++
		return err
	}
	for i := range ps {
		if ps[i].Time.After(s.last) {
			s.last = ps[i].Time
		}
	}
	return nil
}

func (s *pointSink) written() (time.Time, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.errs
}

// flakyWriter fails one write with a temporary error when armed.
type flakyWriter struct {
	st   *store.Influx
	fail atomic.Bool
}

func (w *flakyWriter) WriteReadings(ctx context.Context, rs []store.Reading) error {
	if w.fail.CompareAndSwap(true, false) {
		return &store.WriteError{Err: errors.New("deploycheck: injected outage")}
	}
	return w.st.WriteReadings(ctx, rs)
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	reg, err := registry.Load("../../gateway-config")
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{db: testenv.Influx(t), reg: reg, metrics: prometheus.NewRegistry(), events: map[scoring.EventKind]int{}}
	for _, e := range reg.Enterprises {
		f.enterprises = append(f.enterprises, e.ID)
	}
	sort.Strings(f.enterprises)
	srv := httptest.NewServer(promhttp.HandlerFor(f.metrics, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	f.metricsURL = srv.URL
	return f
}

// fill runs the simulation through the pipeline and the scorer; it
// returns when the last scored hour's points are in InfluxDB. afterGap
// (may be nil) is called once the first message lost at the edge has been
// counted.
func (f *fleet) fill(t *testing.T, afterGap func()) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := f.reg
	std, err := scoring.DefaultStandard()
	if err != nil {
		t.Fatal(err)
	}
	pol, err := scoring.DefaultPolicy(std)
	if err != nil {
		t.Fatal(err)
	}
	lib, err := scoring.DefaultLibrary(std)
	if err != nil {
		t.Fatal(err)
	}

	st, err := store.OpenInflux(store.InfluxConfig{URL: f.db.URL, Token: f.db.Token, Org: f.db.Org, Bucket: f.db.Bucket, GZip: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// As serve does at start: the registry's facts about each meter, which
	// the dashboards join to the readings.
	dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
	ingest.DescribeMeters(dctx, st, reg, time.Now(), slog.New(slog.DiscardHandler))
	dcancel()

	// Gateways to silence and to lose messages from: the first gateways of
	// two different enterprises.
	var silentGW, gappedGW *registry.Gateway
	for _, e := range reg.Enterprises {
		if len(e.Gateways) == 0 {
			continue
		}
		switch {
		case gappedGW == nil:
			gappedGW = e.Gateways[0]
		case silentGW == nil:
			silentGW = e.Gateways[0]
		}
	}
	if silentGW == nil || gappedGW == nil {
		t.Fatal("the shipped registry needs two enterprises with gateways")
	}
	f.silent = silentGW.Enterprise.ID + "/" + silentGW.ID
	f.gapped = gappedGW.Enterprise.ID + "/" + gappedGW.ID

	f.end = time.Now().UTC().Truncate(time.Hour)
	simStart := f.end.Add(-historyDays * 24 * time.Hour)
	scoredFrom := f.end.Add(-scoredHours * time.Hour)
	wall := time.Now()
	// Drift per 30 days: one plant regresses fast (worsening against its
	// 12-month baseline, restrictive failures), one slowly (level drops
	// during the scored hours), one improves.
	profiles := sim.DefaultProfiles()
	// Every gateway reports here, the example's one for hand-sent readings
	// too: the test silences its own gateway (f.silent) to see staleness.
	for id, a := range profiles.Enterprises {
		a.Silent = nil
		profiles.Enterprises[id] = a
	}
	for id, drift := range map[string]float64{"cq-lj-jiahe-motors": 1, "cq-lj-yuntai-auto": 0.35, "cq-lj-shanchuan-auto": -0.5} {
		a := profiles.Enterprises[id]
		a.Drift = &drift
		profiles.Enterprises[id] = a
	}
	simulator, err := sim.New(reg, sim.Config{
		Seed: 6, Start: simStart, Duration: f.end.Sub(simStart), Interval: time.Hour,
		Resets: 0.3, Profiles: profiles,
		Faults:   sim.Faults{Malformed: 0.5, Spoofed: 0.5, UnknownMeter: 0.5, NaN: 0.5, Future: 0.5, Duplicate: 1, OutOfOrder: 1},
		Stations: sim.Stations{DataFlag: 2}, // values flagged C, M or D: kept apart, shown on the enterprise dashboard
		Now:      func() time.Time { return wall },
	})
	if err != nil {
		t.Fatal(err)
	}

	// The pipeline: the service's ingest path, minus MQTT.
	var (
		eng       atomic.Pointer[scoring.Engine]
		acked     atomic.Int64
		observed  atomic.Int64
		submitted int64
	)
	writer := &flakyWriter{st: st}
	pipe := ingest.NewPipeline(reg, ingest.PipelineConfig{
		Normaliser: ingest.NormaliserConfig{FutureHorizon: 5 * time.Minute, PastHorizon: (historyDays + 5) * 24 * time.Hour,
			History: 32, MaxPayload: 256 << 10, MaxReadings: 5000,
			// Hours of data pass in seconds here: a skipped seq is lost
			// by the gateway's next message.
			SeqLate: time.Nanosecond},
		BatchSize: 5000, BatchInterval: 10 * time.Millisecond, MaxInflight: 1000,
		RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
	}, writer, func(context.Context, string, []byte) error { return nil }, func(rs []store.Reading) {
		if e := eng.Load(); e != nil {
			e.Observe(rs)
		}
		observed.Store(acked.Load())
	}, ingest.NewMetrics(f.metrics), logger)
	pipeDone := make(chan struct{})
	go func() { defer close(pipeDone); pipe.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-pipeDone })

	submit := func(m sim.Message) {
		submitted++
		pipe.Submit(ingest.Delivery{Topic: m.Topic, Payload: m.Payload, Received: time.Now(),
			Ack: func() { acked.Add(1) }})
	}
	// settle waits until every submitted message is stored and acknowledged
	// and its readings reached the scorer.
	settle := func() {
		// Fail only when the pipeline stops making progress: under the race
		// detector on a busy machine the history takes a while.
		last, lastMove := acked.Load(), time.Now()
		for acked.Load() < submitted {
			if n := acked.Load(); n != last {
				last, lastMove = n, time.Now()
			}
			if time.Since(lastMove) > 30*time.Second {
				t.Fatalf("pipeline: %d of %d messages acknowledged, none for 30s", acked.Load(), submitted)
			}
			time.Sleep(time.Millisecond)
		}
		// Observe follows the acks of its batch on the writer's goroutine;
		// a batch of rejects only has no readings to observe.
		for i := 0; i < 100 && observed.Load() < submitted; i++ {
			time.Sleep(time.Millisecond)
		}
	}

	// The scorer. It takes the history through Observe, as the live
	// service does, and starts stepping at the scored hours (serve instead
	// refills the windows from InfluxDB at start; the fault and restart
	// tests cover that path).
	var clk fakeClock
	clk.Set(scoredFrom)
	sink := &pointSink{st: st}
	// Events go through an outbox to the store, as in serve.
	ob, err := outbox.Open(outbox.Config{Dir: t.TempDir(), Store: sink, Registerer: f.metrics, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	obDone := make(chan struct{})
	go func() { defer close(obDone); ob.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-obDone; ob.Close() })
	e, err := scoring.NewEngine(scoring.Config{
		Standard: std, Policy: pol, Registry: reg, Solutions: lib,
		Sink: sink, Outbox: ob,
		Declarations: scoring.DeclarationFiles{Dir: "../../scoring/declarations", Standard: std},
		OnEvent: func(ev scoring.Event) {
			f.mu.Lock()
			f.events[ev.Kind]++
			f.mu.Unlock()
		},
		Registerer: f.metrics, Logger: logger,
		Interval: 2 * time.Millisecond, FullEvery: time.Hour, PointEvery: time.Hour,
		MaxPending: 1 << 22, Workers: 1, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	eng.Store(e)
	// History: everything before the scored hours, as fast as it goes.
	var next *sim.Message
	for {
		m, ok := simulator.Next()
		if !ok {
			t.Fatal("the simulation ended before the scored hours")
		}
		if !m.Sent.Before(scoredFrom) {
			next = &m
			break
		}
		submit(m)
	}
	settle()
	historyTook := time.Since(start)

	engDone := make(chan struct{})
	go func() { defer close(engDone); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-engDone })

	// Scored hours: readings of the hour, then the scorer's step at its end.
	dropped := 0
	for h := 1; h <= scoredHours; h++ {
		stepAt := scoredFrom.Add(time.Duration(h) * time.Hour)
		if h == scoredHours/2 {
			writer.fail.Store(true)
		}
		for next != nil && next.Sent.Before(stepAt) {
			m := *next
			next = nil
			if nm, ok := simulator.Next(); ok {
				next = &nm
			}
			ent, gw, _ := ingest.ParseTopic(m.Topic)
			switch {
			case ent+"/"+gw == f.silent && !m.Sent.Before(f.end.Add(-silentHours*time.Hour)):
				continue
			case ent+"/"+gw == f.gapped && h%20 == 10 && dropped < h/20+1:
				dropped++ // lost at the edge: the next message's seq jumps
				continue
			}
			submit(m)
		}
		settle()
		if dropped == 1 && afterGap != nil {
			afterGap()
			afterGap = nil
		}
		clk.Set(stepAt)
		deadline := time.Now().Add(30 * time.Second)
		for {
			last, _ := sink.written()
			if s := e.Snapshot(); s != nil && !s.Time.Before(stepAt) && !last.Before(stepAt) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("scorer: no points for %s after 30s", stepAt)
			}
			time.Sleep(time.Millisecond)
		}
	}
	fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
	left := ob.Flush(fctx)
	fcancel()
	if left > 0 {
		t.Fatalf("scorer: %d events not stored after 30s", left)
	}
	if _, errs := sink.written(); errs > 0 {
		t.Fatalf("scorer: %d point writes failed", errs)
	}
	for _, result := range []string{"dropped", "failed"} {
		if n := gathered(t, f.metrics, "cleanprod_scoring_points_total", "result", result); n > 0 {
			t.Fatalf("scorer: %g points %s", n, result)
		}
	}
	t.Logf("fleet: %d messages (%d dropped at the edge), history in %s, scored %d hours in %s; events %v",
		submitted, dropped, historyTook.Round(time.Millisecond), scoredHours,
		(time.Since(start) - historyTook).Round(time.Millisecond), f.events)
	if f.events[scoring.EventCodeChange] == 0 || f.events[scoring.EventStale] == 0 {
		t.Fatalf("the scorer announced %v; the dashboards' proof needs code changes and stale meters at least", f.events)
	}
}

// gathered sums the counters and gauges of metric name whose label has
// value.
func gathered(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return v
}

// httpClient talks to the test servers; the timeout only stops a hung
// server from hanging the test.
var httpClient = &http.Client{Timeout: 30 * time.Second}
