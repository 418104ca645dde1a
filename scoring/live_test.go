package scoring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanprod/cleanprod/hj212"
	"github.com/cleanprod/cleanprod/ingest"
	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/sim"
	"github.com/cleanprod/cleanprod/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const liveEnterprise = "cq-lj-yuntai-auto"

// liveRig is ingest and scoring wired as serve wires them, on a clock that
// follows the simulated time.
type liveRig struct {
	pipe   *ingest.Pipeline
	sub    *ingest.Subscriber
	eng    *scoring.Engine
	cancel context.CancelFunc
	done   chan struct{}
}

type liveWorld struct {
	t      *testing.T
	broker string
	st     *store.Influx
	reg    *registry.Registry
	std    *scoring.Standard
	pol    *scoring.Policy
	clock  atomic.Int64 // simulated now, unix nanos
	// wall, when set, is the engine's clock instead of the simulated now.
	wall    func() time.Time
	mu      sync.Mutex
	events  []scoring.Event
	written atomic.Int64
}

func (w *liveWorld) now() time.Time { return time.Unix(0, w.clock.Load()).UTC() }

// advance moves the simulated clock to the newest reading ingest has
// stored and handed to the engine: the engine's "now" follows the data, as
// it does in production where ingestion keeps up with the wall clock.
func (w *liveWorld) advance(rs []store.Reading) {
	var latest int64
	for _, r := range rs {
		latest = max(latest, r.Time.UnixNano())
	}
	for {
		cur := w.clock.Load()
		if latest <= cur || w.clock.CompareAndSwap(cur, latest) {
			break
		}
	}
	w.written.Add(int64(len(rs)))
}

func (w *liveWorld) start(t *testing.T, run int) *liveRig {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("CLEANPROD_LIVE_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	clock := w.now
	if w.wall != nil {
		clock = w.wall
	}
	eng, err := scoring.NewEngine(scoring.Config{
		Standard: w.std, Policy: w.pol, Registry: w.reg, History: w.st, Sink: w.st,
		Declarations: scoring.DeclarationFiles{Dir: "declarations", Standard: w.std},
		OnEvent: func(e scoring.Event) {
			w.mu.Lock()
			w.events = append(w.events, e)
			w.mu.Unlock()
		},
		Registerer: prometheus.NewRegistry(), Logger: log, Now: clock,
		Interval: 20 * time.Millisecond, PointEvery: time.Nanosecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := eng.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	ps, err := w.st.Points(ctx, scoring.MeasurementEvent, nil, w.now().Add(-400*24*time.Hour), w.now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var past []scoring.Event
	for _, p := range ps {
		if e, ok := scoring.EventFromPoint(p); ok {
			past = append(past, e)
		}
	}
	eng.Restore(past)

	metrics := ingest.NewMetrics(prometheus.NewRegistry())
	var sub *ingest.Subscriber
	pipe := ingest.NewPipeline(w.reg, ingest.PipelineConfig{
		Normaliser: ingest.NormaliserConfig{FutureHorizon: time.Hour, PastHorizon: 400 * 24 * time.Hour, History: 32, MaxPayload: 1 << 20, MaxReadings: 5000},
		BatchSize:  2000, BatchInterval: 50 * time.Millisecond, MaxInflight: 500,
	}, w.st, func(ctx context.Context, topic string, payload []byte) error { return sub.Publish(ctx, topic, payload) },
		func(rs []store.Reading) {
			eng.Observe(rs)
			w.advance(rs)
		}, metrics, log)
	sub = ingest.NewSubscriber(ingest.SubscriberConfig{Broker: w.broker, ClientID: "cleanprod-live", MaxReconnectInterval: time.Second}, pipe, metrics, log, nil)
	if err := pipe.Restore(ctx, w.st, nil); err != nil {
		t.Fatal(err)
	}
	r := &liveRig{pipe: pipe, sub: sub, eng: eng, cancel: cancel, done: make(chan struct{})}
	engCtx, stopEng := context.WithCancel(context.Background())
	engDone := make(chan struct{})
	go func() { eng.Run(engCtx); close(engDone) }()
	go func() {
		var wg sync.WaitGroup
		wg.Go(func() { pipe.Run(ctx) })
		wg.Go(func() { sub.Run(ctx) })
		wg.Wait()
		stopEng()
		<-engDone
		sub.Close()
		close(r.done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !sub.Connected() {
		if time.Now().After(deadline) {
			t.Fatalf("run %d: subscriber did not connect", run)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return r
}

func (r *liveRig) stop() {
	r.cancel()
	<-r.done
}

// codeChanges returns the code_change events, as "old>new@day".
func (w *liveWorld) codeChanges(start time.Time) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, e := range w.events {
		if e.Enterprise == liveEnterprise && e.Kind == scoring.EventCodeChange && !e.Resolved {
			out = append(out, fmt.Sprintf("%s>%s@%d", e.OldCode, e.NewCode, int(e.Time.Sub(start).Hours()/24)))
		}
	}
	return out
}

// newLiveWorld starts a real mosquitto and InfluxDB for the Level-I
// plant's registry, with the shipped standard and policy.
func newLiveWorld(t *testing.T) *liveWorld {
	t.Helper()
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	st, err := store.OpenInflux(store.InfluxConfig{URL: db.URL, Token: db.Token, Org: db.Org, Bucket: db.Bucket, GZip: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	data, err := os.ReadFile("../gateway-config/" + liveEnterprise + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Parse(map[string][]byte{liveEnterprise + ".yaml": data})
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
	return &liveWorld{t: t, broker: broker.URL(), st: st, reg: reg, std: std, pol: pol}
}

// runLive plays 140 simulated days of the Level-I plant through a real
// mosquitto and InfluxDB into ingest and scoring. On days 65-67 its
// effluent COD analyser reads 900 mg/L (the sewer limit is 500): a
// restrictive exceedance. restartAt > 0 stops and restarts ingest and
// scoring when the simulated time reaches that day.
func runLive(t *testing.T, restartAt int) ([]string, *scoring.Result) {
	w := newLiveWorld(t)
	const days = 140
	wall := time.Now().UTC()
	start := wall.Add(-(days + 1) * 24 * time.Hour).Truncate(24 * time.Hour)
	w.clock.Store(start.UnixNano())
	rig := w.start(t, 1)
	defer func() { rig.stop() }()

	s, err := sim.New(w.reg, sim.Config{Seed: 11, Start: start, Duration: days * 24 * time.Hour, Interval: 15 * time.Minute,
		Workers: 1, DriftScale: 0, Now: func() time.Time { return wall }})
	if err != nil {
		t.Fatal(err)
	}
	client, err := sim.Dial(context.Background(), w.broker, "gateways")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(100)
	mqttPub := sim.NewMQTTPublisher(client, 30*time.Second)
	badFrom, badTo := start.Add(65*24*time.Hour), start.Add(68*24*time.Hour)
	restarted := restartAt == 0
	sent := 0
	pub := sim.PublisherFunc(func(ctx context.Context, topic string, payload []byte) error {
		if strings.HasSuffix(topic, "/"+ingest.LevelHJ212) {
			// The plant's outlet station: its COD analyser reads 900 too.
			out, n, err := editStationFrame(w.reg, payload, "w01018", 900, badFrom, badTo)
			if err != nil {
				return err
			}
			sent += n
			return mqttPub.Publish(ctx, topic, out)
		}
		var m struct {
			Gateway  string `json:"gateway"`
			Seq      int64  `json:"seq"`
			Sent     string `json:"sent"`
			Readings []struct {
				Meter string  `json:"meter"`
				TS    string  `json:"ts"`
				Value float64 `json:"value"`
			} `json:"readings"`
		}
		if err := json.Unmarshal(payload, &m); err != nil {
			return err
		}
		for i, r := range m.Readings {
			ts, _ := time.Parse(time.RFC3339, r.TS)
			if r.Meter == "WW-OUT-COD" && !ts.Before(badFrom) && ts.Before(badTo) {
				m.Readings[i].Value = 900
			}
		}
		if !restarted && len(m.Readings) > 0 && m.Readings[0].TS >= start.Add(time.Duration(restartAt)*24*time.Hour).Format(time.RFC3339) {
			// Let everything sent so far be stored and scored, then
			// restart ingest and scoring from the store.
			waitUntil(t, 60*time.Second, "stored before the restart", func() bool { return w.written.Load() >= int64(sent) })
			time.Sleep(200 * time.Millisecond)
			rig.stop()
			rig = w.start(t, 2)
			restarted = true
		}
		out, err := json.Marshal(m)
		if err != nil {
			return err
		}
		sent += len(m.Readings)
		return mqttPub.Publish(ctx, topic, out)
	})
	if err := s.Run(context.Background(), pub); err != nil {
		t.Fatal(err)
	}
	ledger := s.Ledger()
	waitUntil(t, 120*time.Second, "every reading stored and observed", func() bool { return w.written.Load() >= int64(ledger.Readings) })
	end := w.now()
	waitUntil(t, 30*time.Second, "the engine evaluating the last day", func() bool {
		r, ok := rig.eng.Snapshot().Result(liveEnterprise)
		return ok && !r.Time.Before(end)
	})
	res, _ := rig.eng.Snapshot().Result(liveEnterprise)
	if testing.Verbose() {
		w.mu.Lock()
		for _, e := range w.events {
			if e.Kind != scoring.EventStale {
				t.Logf("day %5.1f %s", e.Time.Sub(start).Hours()/24, e)
			}
		}
		w.mu.Unlock()
	}
	return w.codeChanges(start), res
}

// editStationFrame sets the values of pollutant code in an HJ 212 data
// frame of a station of reg to v when its DataTime is in [from, to), and
// returns the frame and how many of its values the station's meters store.
func editStationFrame(reg *registry.Registry, frame []byte, code string, v float64, from, to time.Time) ([]byte, int, error) {
	var c hj212.Codec
	p, err := c.Decode(frame)
	if err != nil {
		return nil, 0, err
	}
	gw, ok := reg.Station(p.MN)
	if !ok {
		return nil, 0, fmt.Errorf("frame of MN %q: no such station", p.MN)
	}
	c.Location = gw.Station.Location
	d, err := c.ParseData(p.CP)
	if err != nil {
		return nil, 0, err
	}
	cn, _ := strconv.Atoi(p.CN)
	n := 0
	for i, x := range d.Values {
		if x.Code == code && !d.Time.Before(from) && d.Time.Before(to) {
			d.Values[i].Value = v
		}
		if _, ok := gw.Station.Meter(registry.HJ212Source{Code: x.Code, Field: x.Field, CN: cn}); ok && (x.Flag == "" || x.Flag == "N") {
			n++
		}
	}
	p.CP = c.FormatData(d)
	out, err := c.Encode(p)
	return out, n, err
}

// TestBackfillThroughRealServers: the Level-I plant's gateways deliver 35
// days of backlog through a real mosquitto and InfluxDB as fast as they
// go, ending at the wall clock, which is the engine's clock here. While
// the plant catches up the engine follows the data's time: no stale
// events, no code until the window has enough data, and then green at
// once on data day 24, as when the same data arrives live
// (checkGreenRedGreen); at the end the plant is live, green, with nothing
// pending.
func TestBackfillThroughRealServers(t *testing.T) {
	if testing.Short() {
		t.Skip("plays 35 simulated days through real servers")
	}
	w := newLiveWorld(t)
	w.wall = time.Now
	wall := time.Now().UTC()
	start := wall.Add(-36 * 24 * time.Hour).Truncate(24 * time.Hour)
	w.clock.Store(start.UnixNano())
	rig := w.start(t, 1)
	defer rig.stop()
	s, err := sim.New(w.reg, sim.Config{Seed: 11, Start: start, Duration: wall.Sub(start).Truncate(15 * time.Minute), Interval: 15 * time.Minute,
		Workers: 1, DriftScale: 0, Now: func() time.Time { return wall }})
	if err != nil {
		t.Fatal(err)
	}
	client, err := sim.Dial(context.Background(), w.broker, "gateways")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(100)
	if err := s.Run(context.Background(), sim.NewMQTTPublisher(client, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	ledger := s.Ledger()
	waitUntil(t, 120*time.Second, "every reading stored and observed", func() bool { return w.written.Load() >= int64(ledger.Readings) })
	last := w.now()
	waitUntil(t, 30*time.Second, "the engine evaluating the last reading", func() bool {
		r, ok := rig.eng.Snapshot().Result(liveEnterprise)
		return ok && !r.DataThrough.Before(last) && !r.CatchingUp
	})
	res, _ := rig.eng.Snapshot().Result(liveEnterprise)
	changes := w.codeChanges(start)
	t.Logf("code changes: %v; final %s pending %q, data through %s (%s behind the clock)", changes, res.Code, res.PendingCode,
		res.DataThrough.Format(time.RFC3339), time.Since(res.DataThrough).Round(time.Minute))
	// The first code once hour 575 holds data: day 23.96, or day 24 when
	// the evaluation that sees it falls after midnight (checkGreenRedGreen).
	if len(changes) != 1 || (changes[0] != ">green@23" && changes[0] != ">green@24") {
		t.Errorf("code changes: got %v, want only [>green@23] or [>green@24]", changes)
	}
	if res.Code != "green" || res.PendingCode != "" {
		t.Errorf("after the backfill: got %s pending %q, want green with nothing pending", res.Code, res.PendingCode)
	}
	w.mu.Lock()
	var stale []string
	for _, e := range w.events {
		if e.Kind == scoring.EventStale {
			stale = append(stale, e.String())
		}
	}
	w.mu.Unlock()
	if len(stale) > 0 {
		t.Errorf("stale events during the backfill: got %d, want none: %v", len(stale), stale)
	}
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLiveCodeThroughRealServers: the plant has no code until its 30-day
// window has enough data, then turns green at once, turns red the day its
// effluent exceeds the limit, and comes back to green once the exceedance
// has left the 30-day window and green held for 30 days. A restart of ingest and scoring
// in the middle (day 85, everything rebuilt from InfluxDB) gives the same
// code changes.
func TestLiveCodeThroughRealServers(t *testing.T) {
	if testing.Short() {
		t.Skip("plays 110 simulated days through real servers")
	}
	if !testing.Verbose() {
		t.Log("run with -v to see every event")
	}
	undisturbed, final := runLive(t, 0)
	t.Logf("code changes: %v; final code %s", undisturbed, final.Code)
	checkGreenRedGreen(t, undisturbed)
	if final.Code != "green" {
		t.Errorf("final code %s, want green", final.Code)
	}
	restarted, final2 := runLive(t, 85)
	t.Logf("with a restart on day 85: %v; final code %s", restarted, final2.Code)
	// The engine evaluates on wall-clock ticks while the data clock runs
	// fast, so a change can land a tick earlier or later: the same
	// changes, each within a day, is the same outcome.
	if !sameChanges(restarted, undisturbed) {
		t.Errorf("a restart changed the outcome:\n got %v\nwant %v", restarted, undisturbed)
	}
	if final2.Code != final.Code {
		t.Errorf("final code after a restart %s, want %s", final2.Code, final.Code)
	}
}

// checkGreenRedGreen wants exactly: no code to green on day 23-24, when the
// window first has enough data (hourly inputs in 80 % of 720 buckets,
// analysers on 80 % of the days; the first code needs no hold); green to
// red on day 65 (an exceedance applies at once); red to green once the
// exceedance left the 30-day window (about day 98) and green held 30 days.
func checkGreenRedGreen(t *testing.T, changes []string) {
	t.Helper()
	type change struct {
		from, to string
		day      int
	}
	var got []change
	for _, c := range changes {
		var ch change
		codes, day, _ := strings.Cut(c, "@")
		ch.from, ch.to, _ = strings.Cut(codes, ">")
		ch.day, _ = strconv.Atoi(day)
		got = append(got, ch)
	}
	if len(got) != 3 {
		t.Fatalf("got code changes %v, want green, red, green", changes)
	}
	want := []struct {
		from, to       string
		minDay, maxDay int
	}{
		// 576 of 720 hourly buckets have data once the 576th bucket
		// (hour 575) holds a reading: day 23.96 or, evaluated a little
		// later, day 24.
		{"", "green", 23, 24},
		// The exceedance's hours are on day 65; the tick that sees them
		// may come after the fast data clock crossed into day 66 (seen
		// once on a loaded machine).
		{"green", "red", 65, 66},
		{"red", "green", 126, 130},
	}
	for i, w := range want {
		g := got[i]
		if g.from != w.from || g.to != w.to || g.day < w.minDay || g.day > w.maxDay {
			t.Errorf("change %d: got %s>%s on day %d, want %s>%s on day %d-%d", i, g.from, g.to, g.day, w.from, w.to, w.minDay, w.maxDay)
		}
	}
}

// sameChanges reports whether two lists of "old>new@day" changes have the
// same codes in the same order, each on the same day give or take one.
func sameChanges(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		ca, da, _ := strings.Cut(a[i], "@")
		cb, db, _ := strings.Cut(b[i], "@")
		na, _ := strconv.Atoi(da)
		nb, _ := strconv.Atoi(db)
		if ca != cb || na-nb > 1 || nb-na > 1 {
			return false
		}
	}
	return true
}

func TestSameChanges(t *testing.T) {
	a := []string{">yellow@0", "yellow>green@54", "green>red@65"}
	for _, tt := range []struct {
		b    []string
		want bool
	}{
		{[]string{">yellow@0", "yellow>green@53", "green>red@65"}, true},
		{[]string{">yellow@0", "yellow>green@52", "green>red@65"}, false},
		{[]string{">yellow@0", "yellow>red@54", "green>red@65"}, false},
		{[]string{">yellow@0", "yellow>green@54"}, false},
	} {
		if got := sameChanges(a, tt.b); got != tt.want {
			t.Errorf("sameChanges(%v, %v) = %v, want %v", a, tt.b, got, tt.want)
		}
	}
}
