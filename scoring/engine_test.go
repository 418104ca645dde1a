package scoring

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

// goodRates are the per-hour rates of the "good" scenario profile
// (testdata/scenarios/profiles.inc): Level II on every metered indicator.
var goodRates = map[string]float64{
	"E-PLANT": 15000, "E-PAINT": 15000, "NG-PAINT": 1800, "NG-UTIL": 450, "FW-PLANT": 65, "FW-PAINT": 60,
	"RW": 1437.5, "RCW": 25, "PV": 8000, "VEH": 50, "AREA": 5000, "PAINT": 400, "PAINT-LV": 320,
	"STACK-FLOW": 2e6, "STACK-VOC": 62.5, "STACK-VOCIN": 893, "WW-IN-FLOW": 100, "WW-IN-COD": 800,
	"WW-OUT-FLOW": 90, "WW-OUT-COD": 100, "WW-OUT-NH3N": 8, "HW": 200, "SW": 1000, "SWR": 960,
}

// hourly returns an hour of readings of ent at t from rates.
func hourly(ent *registry.Enterprise, t time.Time, rates map[string]float64) []store.Reading {
	var rs []store.Reading
	for _, m := range ent.Meters {
		v, ok := rates[m.ID]
		if !ok {
			continue
		}
		r := store.Reading{Enterprise: ent.ID, Gateway: m.Gateway.ID, Meter: m.ID, Quantity: m.Quantity.Name, Workshop: m.Workshop, Kind: string(m.Kind), Time: t}
		if m.Kind == registry.Gauge {
			r.Value = v
		} else {
			r.Delta, r.Value = v, v
		}
		rs = append(rs, r)
	}
	return rs
}

// declSource is a Declarations whose content tests change.
type declSource struct {
	mu sync.Mutex
	ds []Declaration
}

func (d *declSource) Declarations(context.Context) ([]Declaration, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.ds), nil
}

func (d *declSource) set(ds []Declaration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ds = ds
}

// levelIIDeclarations declares every declared indicator of ent at Level II
// (permit at permit).
func levelIIDeclarations(std *Standard, ent string, permit Level) []Declaration {
	from := time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)
	var ds []Declaration
	for _, ind := range std.Indicators {
		if ind.Metered() {
			continue
		}
		d := Declaration{Enterprise: ent, Indicator: ind.ID, Evidence: "test", ValidFrom: from}
		switch {
		case ind.ID == "permit_compliance":
			d.Level = permit
		case ind.Kind == Qualitative:
			d.Level = LevelII
		default:
			v := ind.Benchmark(LevelII)
			d.Value = &v
		}
		ds = append(ds, d)
	}
	return ds
}

type fixture struct {
	std *Standard
	pol *Policy
	reg *registry.Registry
	lib *Library
}

func newFixture(t testing.TB) fixture {
	t.Helper()
	std := mustStandard(t, "standards/auto-manufacturing.yaml")
	pol, err := LoadPolicy("policy/default.yaml", std)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Load("testdata/registry")
	if err != nil {
		t.Fatal(err)
	}
	lib, err := LoadLibrary("solutions", std)
	if err != nil {
		t.Fatal(err)
	}
	return fixture{std, pol, reg, lib}
}

// eventLog collects events from OnEvent.
type eventLog struct {
	mu  sync.Mutex
	evs []Event
}

func (l *eventLog) add(ev Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, ev)
}

func (l *eventLog) of(kind EventKind, ent string) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, ev := range l.evs {
		if ev.Kind == kind && ev.Enterprise == ent {
			out = append(out, ev)
		}
	}
	return out
}

// TestCodeHysteresis runs the real engine loop in a synctest bubble: a
// restrictive failure turns the code red at once; after the fix the
// better code waits for the upgrade hold (2 evaluations and 30 days in
// the shipped policy; 1 h and 3 evaluations here).
func TestCodeHysteresis(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fx := newFixture(t)
		pol := *fx.pol
		pol.Upgrade = Hold{For: time.Hour, Evaluations: 3}
		decls := &declSource{}
		decls.set(levelIIDeclarations(fx.std, "lj-alpha", LevelI))
		var log eventLog
		eng, err := NewEngine(Config{Standard: fx.std, Policy: &pol, Registry: fx.reg, Declarations: decls,
			OnEvent: log.add, Interval: 10 * time.Second, FullEvery: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ent, _ := fx.reg.Enterprise("lj-alpha")
		now := time.Now()
		for h := 30 * 24; h > 0; h-- {
			eng.Observe(hourly(ent, now.Add(-time.Duration(h)*time.Hour), goodRates))
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- eng.Run(ctx) }()
		keepFeeding := func(d time.Duration) {
			for end := time.Now().Add(d); time.Now().Before(end); {
				time.Sleep(10 * time.Minute)
				eng.Observe(hourly(ent, time.Now(), map[string]float64{"VEH": 8.3, "E-PLANT": 2500, "E-PAINT": 2500}))
			}
		}
		code := func() Code {
			synctest.Wait()
			r, ok := eng.Snapshot().Result("lj-alpha")
			if !ok {
				t.Fatal("no result for lj-alpha")
			}
			return r.Code
		}

		time.Sleep(time.Second)
		if got := code(); got != "green" {
			t.Fatalf("initial: got %s, want green", got)
		}

		// The permit is withdrawn: restrictive failure, red at the next tick.
		decls.set(levelIIDeclarations(fx.std, "lj-alpha", BelowIII))
		eng.ReloadDeclarations()
		time.Sleep(10 * time.Second)
		if got := code(); got != "red" {
			t.Fatalf("after the restrictive failure: got %s, want red at once", got)
		}

		// Fixed: green is the candidate, but must hold 1 h.
		decls.set(levelIIDeclarations(fx.std, "lj-alpha", LevelI))
		eng.ReloadDeclarations()
		keepFeeding(59 * time.Minute)
		if got := code(); got != "red" {
			t.Fatalf("59 min after the fix: got %s, want still red", got)
		}
		keepFeeding(2 * time.Minute)
		if got := code(); got != "green" {
			t.Fatalf("61 min after the fix: got %s, want green", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: got %v, want nil", err)
		}
		var got []string
		for _, ev := range log.of(EventCodeChange, "lj-alpha") {
			got = append(got, string(ev.OldCode)+"->"+string(ev.NewCode))
		}
		if want := []string{"->green", "green->red", "red->green"}; !slices.Equal(got, want) {
			t.Errorf("code changes: got %v, want %v", got, want)
		}
	})
}

func TestPolicyStep(t *testing.T) {
	fx := newFixture(t)
	pol := *fx.pol
	pol.Upgrade = Hold{For: 24 * time.Hour, Evaluations: 2}
	pol.Downgrade = Hold{For: time.Hour}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		at      time.Duration
		cand    Code
		matched []Condition
		want    Code
		pending Code
	}
	tests := []struct {
		name  string
		start Code
		steps []step
	}{
		{"first evaluation sets the code at once", "", []step{{0, "green", nil, "green", ""}}},
		{"upgrade waits for time and evaluations", "red", []step{
			{0, "green", nil, "red", "green"},
			{23 * time.Hour, "green", nil, "red", "green"},
			{24 * time.Hour, "green", nil, "green", ""},
		}},
		{"one evaluation is not enough even after the hold", "red", []step{
			{0, "yellow", nil, "red", "yellow"},
			{48 * time.Hour, "red", nil, "red", ""},
			{49 * time.Hour, "yellow", nil, "red", "yellow"},
		}},
		{"upgrade lands on the worst code held throughout", "red", []step{
			{0, "green", nil, "red", "green"},
			{time.Hour, "yellow", nil, "red", "yellow"},
			{24 * time.Hour, "green", nil, "yellow", ""},
		}},
		{"a relapse cancels the pending upgrade", "red", []step{
			{0, "green", nil, "red", "green"},
			{12 * time.Hour, "red", nil, "red", ""},
			{30 * time.Hour, "green", nil, "red", "green"},
		}},
		{"restrictive failure downgrades at once", "green", []step{
			{0, "red", []Condition{CondRestrictiveFail}, "red", ""},
		}},
		{"other downgrades wait for the downgrade hold", "green", []step{
			{0, "yellow", []Condition{CondLevelIII}, "green", "yellow"},
			{30 * time.Minute, "yellow", []Condition{CondLevelIII}, "green", "yellow"},
			{time.Hour, "yellow", []Condition{CondLevelIII}, "yellow", ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := CodeState{Code: tt.start, Since: t0.Add(-time.Hour)}
			for i, s := range tt.steps {
				pol.Step(&st, s.cand, s.matched, t0.Add(s.at))
				if st.Code != s.want || st.Pending != s.pending {
					t.Fatalf("step %d (%s at +%v): got code %q pending %q, want %q pending %q", i, s.cand, s.at, st.Code, st.Pending, s.want, s.pending)
				}
			}
		})
	}
}

func TestObserveConcurrentAndBackPressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fx := newFixture(t)
		eng, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: fx.reg, MaxPending: 100, Interval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ent, _ := fx.reg.Enterprise("lj-alpha")
		start := time.Now().Add(-10 * 24 * time.Hour)
		blocked := observeBlocked(t, eng, ent, start)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- eng.Run(ctx) }()
		<-blocked
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for h := range 60 {
					eng.Observe(hourly(ent, start.Add(time.Duration(10+g*60+h)*time.Hour), map[string]float64{"VEH": 1}))
					_ = eng.Snapshot().Results()
				}
			})
		}
		wg.Wait()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		r, _ := eng.Snapshot().Result("lj-alpha")
		cancel()
		<-done
		// 10 hours of 50 vehicles plus 240 hours of 1.
		if r == nil {
			t.Fatal("no result for lj-alpha")
		}
		if want := start.Add((10 + 3*60 + 59) * time.Hour); !r.DataThrough.Equal(want) {
			t.Errorf("DataThrough = %v, want the newest reading's time %v", r.DataThrough, want)
		}
		var vehicles float64
		es := eng.ents["lj-alpha"]
		w := es.wins[0]
		for i, s := range fx.std.Series {
			if s.String() == "vehicles" {
				vehicles = w.sum(es.lay.series[i].track)
			}
		}
		if vehicles != 10*50+240 {
			t.Errorf("vehicles in the live window: got %v, want %v (every reading counted once)", vehicles, 10*50+240)
		}
		// After Run returned, Observe drops instead of blocking.
		for range 5 {
			eng.Observe(hourly(ent, time.Now(), goodRates))
		}
	})
}

type fakeSink struct {
	mu     sync.Mutex
	points []store.Point
	err    error
}

func (f *fakeSink) WritePoints(ctx context.Context, ps []store.Point) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.points = append(f.points, ps...)
	return nil
}

func (f *fakeSink) measurement(name string, tags map[string]string) []store.Point {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.Point
	for _, p := range f.points {
		if p.Measurement != name {
			continue
		}
		ok := true
		for k, v := range tags {
			ok = ok && p.Tags[k] == v
		}
		if ok {
			out = append(out, p)
		}
	}
	return out
}

func TestSinkAndMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fx := newFixture(t)
		sink := &fakeSink{}
		reg := prometheus.NewRegistry()
		decls := &declSource{}
		decls.set(levelIIDeclarations(fx.std, "lj-alpha", LevelI))
		eng, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: fx.reg, Sink: sink, Registerer: reg,
			Declarations: decls, Interval: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ent, _ := fx.reg.Enterprise("lj-alpha")
		for h := 30 * 24; h > 0; h-- {
			eng.Observe(hourly(ent, time.Now().Add(-time.Duration(h)*time.Hour), goodRates))
		}
		eng.Observe([]store.Reading{{Enterprise: "nobody", Meter: "X", Time: time.Now()}})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- eng.Run(ctx) }()
		time.Sleep(time.Second)
		synctest.Wait()

		scores := sink.measurement(MeasurementScore, map[string]string{"enterprise": "lj-alpha", "window": "live"})
		if len(scores) != 1 {
			t.Fatalf("score points of lj-alpha live: got %d, want 1", len(scores))
		}
		if got := scores[0].Fields["level"]; got != int64(LevelII) {
			t.Errorf("score level field: got %v, want %d", got, LevelII)
		}
		if got := scores[0].Fields["code"]; got != "green" {
			t.Errorf("score code field: got %v, want green", got)
		}
		inds := sink.measurement(MeasurementIndicator, map[string]string{"enterprise": "lj-alpha", "window": "live", "indicator": "energy_per_vehicle"})
		if len(inds) != 1 || math.Abs(inds[0].Fields["value"].(float64)-128.3835) > 1e-6 {
			t.Errorf("energy_per_vehicle point: got %v, want value 128.3835", inds)
		}
		evs := sink.measurement(MeasurementEvent, map[string]string{"enterprise": "lj-alpha", "kind": "code_change"})
		if len(evs) != 1 || evs[0].Fields["new_code"] != "green" {
			t.Errorf("code_change event point: got %v, want one to green", evs)
		}
		for _, tc := range []struct {
			name string
			c    prometheus.Collector
			want float64
		}{
			{"readings applied", eng.m.readings.WithLabelValues("applied"), 30 * 24 * float64(len(goodRates))},
			{"readings of unknown meters", eng.m.readings.WithLabelValues("unknown_meter"), 1},
			{"level of lj-alpha live", eng.m.level.WithLabelValues("lj-alpha", "live"), 2},
			{"green code of lj-alpha", eng.m.code.WithLabelValues("lj-alpha", "green"), 1},
			{"red code of lj-alpha", eng.m.code.WithLabelValues("lj-alpha", "red"), 0},
			{"enterprises scored (other-foundry is of another industry)", eng.m.enterprises, 3},
		} {
			if got := testutil.ToFloat64(tc.c); got != tc.want {
				t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
			}
		}
		if n, err := testutil.GatherAndCount(reg, "cleanprod_scoring_indicator_value"); err != nil || n != 3*len(fx.std.Indicators) {
			t.Errorf("indicator_value series: got %d (%v), want %d", n, err, 3*len(fx.std.Indicators))
		}

		// A failing sink is counted, and scoring goes on.
		sink.mu.Lock()
		sink.err = errors.New("store down")
		sink.mu.Unlock()
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if got := testutil.ToFloat64(eng.m.points.WithLabelValues("failed")); got == 0 {
			t.Errorf("failed points: got 0, want some")
		}
		cancel()
		<-done
	})
}

// TestRebuildEqualsLive checks that windows rebuilt from the store's
// aggregates grade exactly like windows fed live.
func TestRebuildEqualsLive(t *testing.T) {
	fx := newFixture(t)
	now := time.Date(2026, 6, 1, 3, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	hist := &memHistory{}
	live, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: fx.reg, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ent, _ := fx.reg.Enterprise("lj-alpha")
	for m := 40 * 24 * 4; m > 0; m-- { // every 15 min for 40 days
		at := now.Add(-time.Duration(m) * 15 * time.Minute)
		rs := hourly(ent, at, goodRates)
		for i := range rs {
			if rs[i].Kind != "gauge" {
				rs[i].Delta /= 4
			}
		}
		hist.add(rs)
		live.Observe(rs)
	}
	rebuilt, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: fx.reg, Now: clock, History: hist})
	if err != nil {
		t.Fatal(err)
	}
	if err := rebuilt.Rebuild(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	live.step(ctx, now)
	rebuilt.step(ctx, now)
	a, _ := live.Snapshot().Result("lj-alpha")
	b, _ := rebuilt.Snapshot().Result("lj-alpha")
	for wi := range a.Assessments {
		wa, wb := &a.Assessments[wi], &b.Assessments[wi]
		if wa.Y != wb.Y || wa.Level != wb.Level || wa.Completeness != wb.Completeness {
			t.Errorf("%s: rebuilt Y %v level %q completeness %v, want %v %q %v", wa.Window, wb.Y, wb.Level, wb.Completeness, wa.Y, wa.Level, wa.Completeness)
		}
		for i := range wa.Indicators {
			ra, rb := &wa.Indicators[i], &wb.Indicators[i]
			if math.Abs(ra.Value-rb.Value) > 1e-9*math.Max(1, math.Abs(ra.Value)) || ra.Status != rb.Status || ra.Coverage != rb.Coverage {
				t.Errorf("%s %s: rebuilt %v %s cov %v, want %v %s cov %v", wa.Window, ra.ID, rb.Value, rb.Status, rb.Coverage, ra.Value, ra.Status, ra.Coverage)
			}
		}
	}
}

// TestAbandonReleasesObserve: serve stops before the scorer ever ran
// (it was still reading the events announced before) while ingest's last
// flush is blocked in Observe on a full queue; Abandon lets that flush
// end, its readings dropped and counted, not applied.
func TestAbandonReleasesObserve(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fx := newFixture(t)
		reg := prometheus.NewRegistry()
		eng, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: fx.reg, MaxPending: 100, Interval: time.Second, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		ent, _ := fx.reg.Enterprise("lj-alpha")
		blocked := observeBlocked(t, eng, ent, time.Now().Add(-10*24*time.Hour))
		eng.Abandon()
		<-blocked
		if dropped := testutil.ToFloat64(eng.m.readings.WithLabelValues("dropped")); dropped == 0 {
			t.Error("no reading counted dropped after Abandon")
		}
		if applied := testutil.ToFloat64(eng.m.readings.WithLabelValues("applied")); applied != 0 {
			t.Errorf("%v readings applied by an engine that never ran", applied)
		}
	})
}

// observeBlocked observes 10 hours of ent's 24 readings from start
// (240) on an engine with MaxPending 100 and no Run, inside a synctest
// bubble, and checks that Observe blocks; the channel closes once it
// returns.
func observeBlocked(t *testing.T, eng *Engine, ent *registry.Enterprise, start time.Time) <-chan struct{} {
	t.Helper()
	blocked := make(chan struct{})
	go func() {
		for h := range 10 {
			eng.Observe(hourly(ent, start.Add(time.Duration(h)*time.Hour), goodRates))
		}
		close(blocked)
	}()
	synctest.Wait()
	select {
	case <-blocked:
		t.Fatal("Observe of 240 readings with MaxPending 100 and no Run: got return, want it to block")
	default:
	}
	return blocked
}
