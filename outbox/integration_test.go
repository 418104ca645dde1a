package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/outbox"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The integration tests run the real scorer on the shipped fleet with a
// clock they move: each jump of more than the policy's stale.after makes
// every silent meter stale (one event each), and a reading from every
// meter resolves them all (one event each again). Events go through the
// outbox to a real InfluxDB and a real mosquitto; the tests break the
// path on the way and then check, key by key, that every event the
// scorer announced is in the store exactly once and was published, and
// that a restart announces none of them again.

// world is the fleet, its clock and the servers.
type world struct {
	t      *testing.T
	reg    *registry.Registry
	std    *scoring.Standard
	pol    *scoring.Policy
	clock  atomic.Int64 // unix ns
	broker *testenv.Broker
	dir    string // the data folder of the outbox, kept across restarts
	got    *received
}

func newWorld(t *testing.T) *world {
	t.Helper()
	reg, err := registry.Load("../gateway-config")
	if err != nil {
		t.Fatal(err)
	}
	std, err := scoring.DefaultStandard()
	if err != nil {
		t.Fatal(err)
	}
	pol, err := scoring.DefaultPolicy(std)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, reg: reg, std: std, pol: pol, broker: testenv.Mosquitto(t), dir: t.TempDir(), got: &received{}}
	w.clock.Store(time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC).UnixNano())
	sub := mqttClient(t, w.broker.URL(), "events-watcher")
	tok := sub.Subscribe("cp/v1/+/events", 1, func(_ mqtt.Client, m mqtt.Message) {
		var ev scoring.Event
		if json.Unmarshal(m.Payload(), &ev) == nil {
			w.got.add(key(ev), m.Topic())
		}
	})
	if err := waitToken(tok); err != nil {
		t.Fatal(err)
	}
	return w
}

// now is the scorer's clock: each reading moves it a millisecond on, so
// that every tick is later than the last (a whole evaluation and new
// points each tick); jumps move it further.
func (w *world) now() time.Time { return time.Unix(0, w.clock.Add(int64(time.Millisecond))).UTC() }

func mqttClient(t *testing.T, url, id string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetConnectTimeout(5 * time.Second).SetAutoReconnect(true))
	if err := waitToken(c.Connect()); err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func waitToken(tok mqtt.Token) error {
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("no answer from the broker")
	}
	return tok.Error()
}

// received counts the events seen on MQTT.
type received struct {
	mu     sync.Mutex
	n      map[string]int
	topics map[string]string
}

func (r *received) add(k, topic string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n, r.topics = map[string]int{}, map[string]string{}
	}
	r.n[k]++
	r.topics[k] = topic
}

func (r *received) has(k string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[k] > 0
}

func key(ev scoring.Event) string {
	return fmt.Sprintf("%s/%s/%s/%s/%t@%s", ev.Enterprise, ev.Kind, ev.Indicator, ev.Meter, ev.Resolved, ev.Time.UTC().Format(time.RFC3339Nano))
}

// scorer is one run of the engine with its outbox (one process).
type scorer struct {
	eng   *scoring.Engine
	ob    *outbox.Outbox
	prom  *prometheus.Registry
	stop  func()
	mu    sync.Mutex
	anncd []scoring.Event
}

// start starts a scorer writing to st, as serve does: the outbox first,
// then the past events (store and outbox) restored, then both running.
func (w *world) start(st *store.Influx) *scorer {
	t := w.t
	t.Helper()
	pub := mqttClient(t, w.broker.URL(), fmt.Sprintf("scorer-%d", time.Now().UnixNano()))
	s := &scorer{prom: prometheus.NewRegistry()}
	ob, err := outbox.Open(outbox.Config{Dir: w.dir, Store: st, Batch: 20, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Publish: func(ctx context.Context, topic string, payload []byte) error {
			tok := pub.Publish(topic, 1, false, payload)
			select {
			case <-tok.Done():
				return tok.Error()
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		Registerer: s.prom})
	if err != nil {
		t.Fatal(err)
	}
	s.ob = ob
	eng, err := scoring.NewEngine(scoring.Config{Standard: w.std, Policy: w.pol, Registry: w.reg, Sink: st, Outbox: ob,
		OnEvent: func(ev scoring.Event) {
			s.mu.Lock()
			s.anncd = append(s.anncd, ev)
			s.mu.Unlock()
		},
		Registerer: s.prom, Interval: 5 * time.Millisecond, FullEvery: time.Nanosecond, PointEvery: time.Nanosecond,
		WriteTimeout: 5 * time.Second, Now: w.now})
	if err != nil {
		t.Fatal(err)
	}
	past, err := st.Points(t.Context(), scoring.MeasurementEvent, nil, w.now().Add(-400*24*time.Hour), w.now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	eng.Restore(outbox.Announced(past, ob.Replayed()))
	s.eng = eng
	ctx, cancel := context.WithCancel(context.Background())
	obCtx, obCancel := context.WithCancel(context.Background())
	engDone, obDone := make(chan struct{}), make(chan struct{})
	go func() { eng.Run(ctx); close(engDone) }()
	go func() { ob.Run(obCtx); close(obDone) }()
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			<-engDone
			obCancel()
			<-obDone
			ob.Close()
		})
	}
	t.Cleanup(s.stop)
	<-eng.Ready()
	return s
}

func (s *scorer) announced() []scoring.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]scoring.Event(nil), s.anncd...)
}

// metric reads a counter or gauge of the scorer's registry (0: absent).
func (s *scorer) metric(name string, labels map[string]string) float64 {
	mfs, _ := s.prom.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if !hasLabel(m, k, v) {
					continue metrics
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

// wave moves the clock past stale.after, so every meter heard of last
// before it goes stale, and waits until the scorer announced n more
// events than before.
func (w *world) staleWave(s *scorer) int {
	w.t.Helper()
	before := len(s.announced())
	w.clock.Add(int64(w.pol.StaleAfter + time.Hour))
	meters := w.reg.MeterCount()
	waitFor(w.t, 30*time.Second, "every meter announced stale", func() bool { return len(s.announced()) >= before+meters })
	return meters
}

// reportWave has every meter report once now, and waits until the
// scorer announced them all reporting again.
func (w *world) reportWave(s *scorer) {
	w.t.Helper()
	before := len(s.announced())
	w.clock.Add(int64(time.Minute))
	var rs []store.Reading
	for _, e := range w.reg.Enterprises {
		for _, m := range e.Meters {
			rs = append(rs, store.Reading{Enterprise: e.ID, Meter: m.ID, Quantity: m.Quantity.Name, Kind: string(m.Kind), Time: w.now()})
		}
	}
	s.eng.Observe(rs)
	waitFor(w.t, 30*time.Second, "every meter announced reporting again", func() bool { return len(s.announced()) >= before+len(rs) })
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkStored checks that every announced event is in the store exactly
// once and nothing else is, and that each was published on its
// enterprise's topic.
func (w *world) checkStored(st *store.Influx, announced []scoring.Event) {
	t := w.t
	t.Helper()
	ps := readEvents(t, st, w)
	stored := map[string]int{}
	for _, p := range ps {
		ev, ok := scoring.EventFromPoint(p)
		if !ok {
			t.Errorf("an event point that does not read back: %+v", p)
			continue
		}
		stored[key(ev)]++
	}
	want := map[string]bool{}
	missing := 0
	for _, ev := range announced {
		k := key(ev)
		if want[k] {
			t.Errorf("the scorer announced %s twice", k)
		}
		want[k] = true
		switch n := stored[k]; {
		case n == 0:
			if missing++; missing <= 5 {
				t.Errorf("announced event %s is not in the store", k)
			}
		case n > 1:
			t.Errorf("announced event %s is in the store %d times", k, n)
		}
	}
	for k := range stored {
		if !want[k] {
			t.Errorf("the store holds event %s that no scorer announced", k)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d announced events missing from the store", missing, len(announced))
	}
	waitFor(t, 30*time.Second, "every announced event published", func() bool {
		for _, ev := range announced {
			if !w.got.has(key(ev)) {
				return false
			}
		}
		return true
	})
	for _, ev := range announced {
		if topic := w.got.topics[key(ev)]; topic != "cp/v1/"+ev.Enterprise+"/events" {
			t.Errorf("%s published on %q", key(ev), topic)
		}
	}
}

// checkNotTwice checks that no condition was announced twice in a row:
// each stale (or resolved) event of a meter follows the other state.
func checkNotTwice(t *testing.T, announced []scoring.Event) {
	t.Helper()
	last := map[string]bool{} // subject -> resolved of its last event
	for _, ev := range announced {
		subj := ev.Enterprise + "/" + string(ev.Kind) + "/" + ev.Indicator + "/" + ev.Meter
		if ev.Kind == scoring.EventCodeChange {
			continue
		}
		if r, ok := last[subj]; ok && r == ev.Resolved {
			t.Errorf("%s announced twice (resolved=%t again, at %s)", subj, ev.Resolved, ev.Time.Format(time.RFC3339))
		}
		last[subj] = ev.Resolved
	}
}

// flushed waits until the scorer's outbox has delivered everything.
func (s *scorer) flushed(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if left := s.ob.Flush(ctx); left > 0 {
		t.Fatalf("%d events still in the outbox after a minute", left)
	}
}

// storedEvents counts the event points in the store.
func storedEvents(t *testing.T, st *store.Influx, w *world) int {
	t.Helper()
	return len(readEvents(t, st, w))
}

// readEvents reads the stored event points. The tests' proxy in front of
// InfluxDB has cut an answer short under load ("unexpected EOF", seen
// twice in some ten runs, cause not found): a read is tried three times,
// each failure logged, before the test fails on it.
func readEvents(t *testing.T, st *store.Influx, w *world) []store.Point {
	t.Helper()
	var err error
	for range 3 {
		var ps []store.Point
		ps, err = st.Points(context.Background(), scoring.MeasurementEvent, nil, w.now().Add(-400*24*time.Hour), w.now().Add(time.Hour))
		if err == nil {
			return ps
		}
		t.Logf("reading the stored events: %v", err)
	}
	t.Fatal(err)
	return nil
}

func influxStore(t *testing.T, url, token, bucket string) *store.Influx {
	t.Helper()
	st, err := store.OpenInflux(store.InfluxConfig{URL: url, Token: token, Bucket: bucket, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestEventsSurviveInfluxStopped: events announced while InfluxDB is
// stopped (its writes fail) are all stored once it is back, each once,
// and published only then.
func TestEventsSurviveInfluxStopped(t *testing.T) {
	w := newWorld(t)
	srv := testenv.NewInflux(t)
	db := srv.Database(t)
	st := influxStore(t, db.URL, db.Token, db.Bucket)
	s := w.start(st)
	w.staleWave(s)
	s.flushed(t)

	srv.Stop()
	w.reportWave(s)
	w.staleWave(s)
	waitFor(t, 30*time.Second, "store writes failing", func() bool {
		return s.metric("cleanprod_events_outbox_failures_total", map[string]string{"target": "store"})+
			s.metric("cleanprod_scoring_points_total", map[string]string{"result": "failed"}) > 0
	})
	waiting := s.metric("cleanprod_events_outbox_events", map[string]string{"stage": "store"})
	for _, ev := range s.announced()[w.reg.MeterCount():] {
		if w.got.has(key(ev)) {
			t.Fatalf("%s published while InfluxDB was stopped: before it was stored", key(ev))
		}
	}
	srv.Start()
	s.flushed(t)
	w.checkStored(st, s.announced())
	checkNotTwice(t, s.announced())
	t.Logf("%d events announced, %g waited for the store while InfluxDB was stopped", len(s.announced()), waiting)
}

// slowProxy sits in front of InfluxDB and delays every write while on.
type slowProxy struct {
	delay  atomic.Int64 // ns
	writes atomic.Int64
	proxy  *httputil.ReverseProxy
	closed chan struct{} // at the test's end: no write waits any longer
}

func (p *slowProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d := time.Duration(p.delay.Load()); d > 0 && strings.Contains(r.URL.Path, "write") {
		p.writes.Add(1)
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		case <-p.closed:
			return
		}
	}
	p.proxy.ServeHTTP(w, r)
}

func newSlowProxy(t *testing.T, target string) (*slowProxy, string) {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &slowProxy{proxy: httputil.NewSingleHostReverseProxy(u), closed: make(chan struct{})}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(p.closed) }) // runs first
	return p, srv.URL
}

// TestEventsSurviveFullQueue: InfluxDB is slow, so the scorer's point
// queue fills and drops indicator and score points; no event is lost
// with them.
func TestEventsSurviveFullQueue(t *testing.T) {
	w := newWorld(t)
	db := testenv.Influx(t)
	slow, proxyURL := newSlowProxy(t, db.URL)
	st := influxStore(t, proxyURL, db.Token, db.Bucket)
	slow.delay.Store(int64(300 * time.Millisecond))
	s := w.start(st)
	for range 3 {
		w.staleWave(s)
		w.reportWave(s)
	}
	waitFor(t, 30*time.Second, "the point queue full", func() bool {
		return s.metric("cleanprod_scoring_points_total", map[string]string{"result": "dropped"}) > 0
	})
	dropped := s.metric("cleanprod_scoring_points_total", map[string]string{"result": "dropped"})
	slow.delay.Store(0)
	s.flushed(t)
	w.checkStored(st, s.announced())
	checkNotTwice(t, s.announced())
	t.Logf("%d events announced; %g points dropped from the full queue", len(s.announced()), dropped)
}

// TestEventsSurviveShutdownUnderLoad: the scorer stops while InfluxDB is
// slow and events wait in the outbox; the next start stores and
// publishes them, each once, and announces none of them again.
func TestEventsSurviveShutdownUnderLoad(t *testing.T) {
	w := newWorld(t)
	db := testenv.Influx(t)
	slow, proxyURL := newSlowProxy(t, db.URL)
	st := influxStore(t, proxyURL, db.Token, db.Bucket)
	s := w.start(st)
	w.staleWave(s)
	s.flushed(t)
	slow.delay.Store(int64(300 * time.Millisecond))
	w.reportWave(s)
	// InfluxDB stops answering writes before the second wave: its events
	// cannot reach the store before the shutdown, however slowly a
	// loaded machine runs the waves. (A write already under way took its
	// batch before the wave began.)
	slow.delay.Store(int64(time.Hour))
	w.staleWave(s)
	// The shutdown: the engine stops, the outbox gets a short grace.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	s.ob.Flush(ctx)
	cancel()
	s.stop()
	slow.delay.Store(int64(300 * time.Millisecond))
	first := s.announced()
	if n := storedEvents(t, st, w); n >= len(first) {
		t.Fatalf("all %d events were stored within the grace: the shutdown had nothing to lose, the test did not test", n)
	}
	gone, end := context.WithCancel(t.Context())
	end()
	left := s.ob.Flush(gone) // what the outbox kept at its close

	s2 := w.start(st)
	if n := len(s2.ob.Replayed()); n != left {
		t.Errorf("the start replayed %d events, want the %d left at shutdown", n, left)
	}
	// Ticks on the clock of the shutdown and a minute on: every
	// enterprise evaluated a few times, nothing to announce.
	evals := func() float64 { return s2.metric("cleanprod_scoring_evaluations_total", nil) }
	ents := float64(len(w.reg.Enterprises))
	waitFor(t, 30*time.Second, "evaluations after the start", func() bool { return evals() >= 3*ents })
	w.clock.Add(int64(time.Minute))
	base := evals()
	waitFor(t, 30*time.Second, "evaluations a minute later", func() bool { return evals() >= base+3*ents })
	if again := s2.announced(); len(again) > 0 {
		t.Errorf("the restarted scorer announced %d events again, the first %s", len(again), again[0])
	}
	slow.delay.Store(0)
	s2.flushed(t)
	all := append(first, s2.announced()...)
	w.checkStored(st, all)
	checkNotTwice(t, all)
	t.Logf("%d events announced before the shutdown, %d left in the outbox at it", len(first), left)
}
