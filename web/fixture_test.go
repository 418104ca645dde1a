package web

import (
	"context"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanprod/cleanprod/ingest"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/review"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/sim"
	"github.com/cleanprod/cleanprod/store"
)

// The fixture is the shipped four-plant fleet, simulated for 31 days up
// to fixtureNow and scored by the real engine with the shipped standard,
// policy, solution library and declarations, all on a fixed clock.
var fixtureNow = time.Date(2026, 6, 1, 2, 0, 0, 0, time.UTC)

const (
	entA = "cq-lj-yuntai-auto"    // the enterprise token's own
	entB = "cq-lj-shanchuan-auto" // another enterprise

	supervisorToken = "test-supervisor-token"
	enterpriseToken = "test-enterprise-token" // entA
	otherToken      = "test-other-token"      // entB
)

var (
	fleetOnce     sync.Once
	fleetReg      *registry.Registry
	fleetReadings []store.Reading
	fleetErr      error
)

// fleet simulates the fleet once per test binary and returns the
// readings the pipeline would hand the engine.
func fleet(t testing.TB) (*registry.Registry, []store.Reading) {
	t.Helper()
	fleetOnce.Do(func() {
		fleetReg, fleetErr = registry.Load("../gateway-config")
		if fleetErr != nil {
			return
		}
		start := fixtureNow.Add(-31 * 24 * time.Hour)
		var s *sim.Simulator
		s, fleetErr = sim.New(fleetReg, sim.Config{Seed: 7, Start: start, Duration: 31*24*time.Hour - time.Hour, Interval: time.Hour,
			DriftScale: -1, Now: func() time.Time { return fixtureNow }})
		if fleetErr != nil {
			return
		}
		n := ingest.NewNormaliser(fleetReg, ingest.NormaliserConfig{FutureHorizon: time.Hour, PastHorizon: 40 * 24 * time.Hour, History: 32})
		for m := range s.Messages() {
			var write []store.Reading
			n.Process(m.Topic, m.Payload, false, fixtureNow, &write, &fleetReadings)
		}
	})
	if fleetErr != nil {
		t.Fatal(fleetErr)
	}
	return fleetReg, fleetReadings
}

// memPoints is an in-memory point store (the engine's Sink and the
// handler's PointReader).
// A point with the identity (measurement, tags, time) of a stored one
// replaces it, as in the real stores.
type memPoints struct {
	mu  sync.Mutex
	pts []store.Point
	idx map[string]int
}

func pointIdentity(p *store.Point) string {
	keys := slices.Sorted(maps.Keys(p.Tags))
	var b strings.Builder
	b.WriteString(p.Measurement)
	for _, k := range keys {
		if p.Tags[k] != "" {
			b.WriteString("," + k + "=" + p.Tags[k])
		}
	}
	b.WriteString(" " + strconv.FormatInt(p.Time.UnixNano(), 10))
	return b.String()
}

func (m *memPoints) WritePoints(ctx context.Context, ps []store.Point) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.idx == nil {
		m.idx = map[string]int{}
	}
	for _, p := range ps {
		id := pointIdentity(&p)
		if i, ok := m.idx[id]; ok {
			m.pts[i] = p
			continue
		}
		m.idx[id] = len(m.pts)
		m.pts = append(m.pts, p)
	}
	return nil
}

func (m *memPoints) Points(ctx context.Context, measurement string, tags map[string]string, from, to time.Time) ([]store.Point, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Point
	for _, p := range m.pts {
		if p.Measurement != measurement || p.Time.Before(from) || !p.Time.Before(to) {
			continue
		}
		ok := true
		for k, v := range tags {
			if p.Tags[k] != v {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, p)
		}
	}
	slices.SortStableFunc(out, func(a, b store.Point) int { return a.Time.Compare(b.Time) })
	return out, nil
}

func (m *memPoints) count(measurement string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, p := range m.pts {
		if p.Measurement == measurement {
			n++
		}
	}
	return n
}

type fixture struct {
	reg     *registry.Registry
	std     *scoring.Standard
	pol     *scoring.Policy
	lib     *scoring.Library
	eng     *scoring.Engine
	points  *memPoints
	seen    *ingest.LastSeen
	decl    *review.Book
	events  *Broadcaster
	handler http.Handler
	opts    Options
	now     time.Time
}

// handlerOptions returns the fixture's options with a PDF renderer.
func (f *fixture) handlerOptions(pdf PDFRenderer) Options {
	o := f.opts
	o.PDF = pdf
	o.Registerer = prometheus.NewRegistry()
	return o
}

// newFixture scores the fleet and returns a handler over it. The
// declarations live in a fresh copy of the shipped folder.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	reg, readings := fleet(t)
	return newFixtureWith(t, reg, readings)
}

// newFixtureWith is newFixture over the given readings of the fleet.
func newFixtureWith(t *testing.T, reg *registry.Registry, readings []store.Reading) *fixture {
	t.Helper()
	f := &fixture{reg: reg, points: &memPoints{}, now: fixtureNow}
	var err error
	if f.std, err = scoring.DefaultStandard(); err != nil {
		t.Fatal(err)
	}
	if f.pol, err = scoring.DefaultPolicy(f.std); err != nil {
		t.Fatal(err)
	}
	if f.lib, err = scoring.DefaultLibrary(f.std); err != nil {
		t.Fatal(err)
	}
	f.events = NewBroadcaster(prometheus.NewRegistry())
	// The shipped declarations seed the book, as serve does.
	f.decl = review.NewBook(f.points, f.std, func() time.Time { return fixtureNow }, f.events.Publish)
	ds, err := scoring.LoadDeclarations("../scoring/declarations", f.std)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.decl.Seed(context.Background(), ds, "scoring/declarations"); err != nil {
		t.Fatal(err)
	}
	f.eng, err = scoring.NewEngine(scoring.Config{Standard: f.std, Policy: f.pol, Registry: reg, Solutions: f.lib,
		Declarations: f.decl, Sink: f.points, OnEvent: f.events.Publish, Interval: 20 * time.Millisecond,
		Now: func() time.Time { return fixtureNow }})
	if err != nil {
		t.Fatal(err)
	}
	f.eng.Observe(readings)
	f.seen = ingest.NewLastSeen(reg)
	f.seen.Observe(readings)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	deadline := time.Now().Add(30 * time.Second)
	for len(f.eng.Snapshot().Results()) < len(reg.Enterprises) || f.points.count(scoring.MeasurementScore) < 2*len(reg.Enterprises) {
		if time.Now().After(deadline) {
			t.Fatal("the engine did not evaluate the fleet within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.addTrendHistory(entA)
	f.addTrendHistory(entB)
	tokens, err := NewTokens(
		Token{Name: "bureau", SHA256: HashToken(supervisorToken), Role: RoleSupervisor},
		Token{Name: "yuntai", SHA256: HashToken(enterpriseToken), Role: RoleEnterprise, Enterprise: entA},
		Token{Name: "shanchuan", SHA256: HashToken(otherToken), Role: RoleEnterprise, Enterprise: entB},
	)
	if err != nil {
		t.Fatal(err)
	}
	f.opts = Options{Gatherer: prometheus.NewRegistry(), Ready: func(context.Context) error { return nil },
		Scorer: f.eng, Registry: reg, Solutions: f.lib, Points: f.points, Meters: f.seen, Declarations: f.decl,
		Tokens: tokens, Events: f.events, Registerer: prometheus.NewRegistry(), Now: func() time.Time { return fixtureNow }}
	f.handler = NewHandler(f.opts)
	return f
}

// addTrendHistory stores 30 days of indicator values ending at the
// engine's (one a day, drifting towards today's value), as the engine
// would have written them, so the report has trends to draw.
func (f *fixture) addTrendHistory(ent string) {
	res, _ := f.eng.Snapshot().Result(ent)
	a, _ := res.Assessment(f.pol.Window)
	var ps []store.Point
	for d := 30; d >= 1; d-- {
		at := fixtureNow.Add(-time.Duration(d) * 24 * time.Hour)
		for i := range a.Indicators {
			r := &a.Indicators[i]
			if !r.HasValue() || !f.std.Indicators[i].Metered() {
				continue
			}
			v := r.Value * (1 + 0.15*float64(d)/30*math.Sin(float64(d)/3+float64(i)))
			ps = append(ps, store.Point{Measurement: scoring.MeasurementIndicator, Time: at,
				Tags:   map[string]string{"enterprise": ent, "window": f.pol.Window, "indicator": r.ID},
				Fields: map[string]any{"status": "graded", "value": v, "level": int64(f.std.Indicators[i].LevelOf(v)), "score": 50.0}})
		}
	}
	f.points.WritePoints(context.Background(), ps)
}

// do sends a request with a bearer token ("" none) and returns the
// response.
func (f *fixture) do(t *testing.T, method, target, token, body string) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, req)
	return w
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
