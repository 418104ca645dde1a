package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/hj212"
	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/sim"
	"github.com/cleanprod/cleanprod/store"
)

// The fault tests run the real cleanprod binary against real servers (or
// on its embedded broker and store), stream two simulated days of the
// shipped fleet at a steady rate, break something on purpose, and then
// compare what the gateways had acknowledged with what the store holds,
// key by key, and the scorer's indicator values with an undisturbed run:
// nothing missing, nothing counted twice.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// cleanprodBinary builds cmd/cleanprod once per test run.
func cleanprodBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cleanprod-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "cleanprod")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is a running cleanprod serve process.
type proc struct {
	cmd  *exec.Cmd
	http string
	logs *syncBuffer
	done chan struct{}
}

func startProc(t *testing.T, args []string, env map[string]string) *proc {
	t.Helper()
	p, err := tryStartProc(t, args, env)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tryStartProc starts cleanprod serve and waits until it is ready; it
// calls no t.Fatal, so fault injectors may use it from their goroutine.
func tryStartProc(t *testing.T, args []string, env map[string]string) (*proc, error) {
	p := &proc{http: freeAddr(t), logs: &syncBuffer{}, done: make(chan struct{})}
	if i := slices.Index(args, "-http.listen"); i >= 0 && i+1 < len(args) {
		p.http = args[i+1] // the caller's address (a later flag wins)
	}
	args = withDataDir(t, args)
	all := append([]string{"serve", "-http.listen", p.http, "-gateway_config", "../../gateway-config",
		"-scoring.declarations", "../../scoring/declarations", "-scoring.interval", "200ms",
		"-ingest.past_horizon", "240h", "-log.level", "warn", "-mqtt.watchdog_interval", "5s"}, args...)
	p.cmd = exec.Command(cleanprodBinary(t), all...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.Env = os.Environ()
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(120 * time.Second)
	for {
		if resp, err := http.Get("http://" + p.http + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			return p, fmt.Errorf("cleanprod exited before ready:\n%s", p.logs)
		default:
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("cleanprod not ready within 120s:\n%s", p.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) metrics() *service { return &service{http: p.http} }

var testDataDirs sync.Map // test name -> its data folder

// withDataDir gives args the test's own data folder, the same for each
// start of serve in it, unless they name one: the scorer's checkpoints of
// one test are not another's.
func withDataDir(t testing.TB, args []string) []string {
	if slices.Contains(args, "-data_dir") {
		return args
	}
	d, ok := testDataDirs.Load(t.Name())
	if !ok {
		d, _ = testDataDirs.LoadOrStore(t.Name(), t.TempDir())
	}
	return append([]string{"-data_dir", d.(string)}, args...)
}

// peakRSS is the process's peak resident memory in bytes (VmHWM).
func (p *proc) peakRSS() int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("cleanprod did not stop within 30s of SIGTERM:\n%s", p.logs)
		p.kill()
	}
}

// recorder publishes the simulator's messages and remembers every reading
// key the broker acknowledged.
type recorder struct {
	pub      sim.Publisher
	mu       sync.Mutex
	keys     map[string]bool
	messages []sim.Message // acknowledged, for replays
	acked    atomic.Int64
	// ledger is what the simulator sent, per meter (set by publishAll
	// once the run is over).
	ledger *sim.Ledger
	// events are the scoring events announced during the run.
	events *eventListener
}

func newRecorder(pub sim.Publisher) *recorder { return &recorder{pub: pub, keys: map[string]bool{}} }

func (r *recorder) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := r.pub.Publish(ctx, topic, payload); err != nil {
		return err
	}
	parts := strings.Split(topic, "/")
	if len(parts) == 5 && parts[4] == "hj212" {
		keys := frameKeys(parts[2], parts[3], payload)
		r.mu.Lock()
		for _, k := range keys {
			r.keys[k] = true
		}
		r.messages = append(r.messages, sim.Message{Topic: topic, Payload: payload})
		r.mu.Unlock()
		r.acked.Add(int64(len(keys)))
		return nil
	}
	var m struct {
		Readings []struct {
			Meter string `json:"meter"`
			TS    string `json:"ts"`
		} `json:"readings"`
	}
	if json.Unmarshal(payload, &m) != nil || len(parts) != 5 {
		return nil
	}
	r.mu.Lock()
	for _, rd := range m.Readings {
		ts, err := time.Parse(time.RFC3339Nano, rd.TS)
		if err != nil {
			continue
		}
		r.keys[key(parts[2], rd.Meter, ts)] = true
	}
	r.messages = append(r.messages, sim.Message{Topic: topic, Payload: payload})
	r.mu.Unlock()
	r.acked.Add(int64(len(m.Readings)))
	return nil
}

// shippedStations is the shipped registry, for reading the stations'
// frames.
var shippedStations = sync.OnceValues(func() (*registry.Registry, error) { return registry.Load("../../gateway-config") })

// frameKeys returns the keys of the valid readings of a station's HJ 212
// frame, as ingest maps them to meters.
func frameKeys(ent, gwID string, frame []byte) []string {
	reg, err := shippedStations()
	if err != nil {
		return nil
	}
	gw, ok := reg.Gateway(ent, gwID)
	if !ok || gw.Station == nil {
		return nil
	}
	codec := hj212.Codec{Location: gw.Station.Location}
	p, err := codec.Decode(frame)
	if err != nil {
		return nil
	}
	d, err := codec.ParseData(p.CP)
	cn, _ := strconv.Atoi(p.CN)
	if err != nil {
		return nil
	}
	var keys []string
	for _, v := range d.Values {
		if m, ok := gw.Station.Meter(registry.HJ212Source{Code: v.Code, Field: v.Field, CN: cn}); ok && (v.Flag == "N" || v.Flag == "") {
			keys = append(keys, key(ent, m.ID, d.Time))
		}
	}
	return keys
}

func key(enterprise, meter string, ts time.Time) string {
	return enterprise + "/" + meter + "@" + ts.UTC().Format(time.RFC3339Nano)
}

// faultStart is where every fault run's history starts: two days that
// end two days before the hour the first run began. Fixed once for the
// test process, so that a run in a later hour replays the same readings
// as the undisturbed reference it is compared with.
var faultStart = sync.OnceValue(func() time.Time { return time.Now().UTC().Truncate(time.Hour).Add(-96 * time.Hour) })

// faultSim returns the simulator every fault run replays: two days of the
// shipped fleet, five-minute readings, 200 messages a second.
func faultSim(t *testing.T) *sim.Simulator {
	t.Helper()
	reg, err := registry.Load("../../gateway-config")
	if err != nil {
		t.Fatal(err)
	}
	start := faultStart()
	s, err := sim.New(reg, sim.Config{Seed: 42, Start: start, Duration: 48 * time.Hour, Interval: 5 * time.Minute,
		Workers: 4, MaxRate: 200, Now: func() time.Time { return start.Add(72 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// storeContents is what a store holds: each reading key with how often
// it is there, and per meter ("enterprise/meter") the sum of its deltas
// (counters and delta meters) or values (gauges).
type storeContents struct {
	keys map[string]int
	sums map[string]float64
}

// storedKeys lists the readings in a store.
func storedKeys(t *testing.T, st storeReader) storeContents {
	t.Helper()
	reg, err := registry.Load("../../gateway-config")
	if err != nil {
		t.Fatal(err)
	}
	out := storeContents{keys: map[string]int{}, sums: map[string]float64{}}
	for _, e := range reg.Enterprises {
		for _, m := range e.Meters {
			rs, err := st.Readings(context.Background(), e.ID, m.ID, time.Unix(0, 0), time.Now().Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				out.keys[key(e.ID, m.ID, r.Time)]++
				if m.Kind == registry.Gauge {
					out.sums[e.ID+"/"+m.ID] += r.Value
				} else {
					out.sums[e.ID+"/"+m.ID] += r.Delta
				}
			}
		}
	}
	return out
}

// indicatorValues scrapes the scorer's indicator values once they have
// stopped changing.
func indicatorValues(t *testing.T, p *proc) map[string]float64 {
	t.Helper()
	var prev map[string]float64
	for range 100 {
		cur := scrapeFamily(t, p.http, "cleanprod_scoring_indicator_value")
		if prev != nil && fmt.Sprint(cur) == fmt.Sprint(prev) && len(cur) > 0 {
			return cur
		}
		prev = cur
		time.Sleep(700 * time.Millisecond)
	}
	t.Fatal("indicator values did not settle")
	return nil
}

func scrapeFamily(t *testing.T, addr, family string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	out := map[string]float64{}
	for _, line := range strings.Split(b.String(), "\n") {
		if !strings.HasPrefix(line, family+"{") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, _ := strconv.ParseFloat(line[i+1:], 64)
		out[line[:i]] = v
	}
	return out
}

// restart SIGKILLs *p and starts a new one, recording the old one's peak
// memory and the time to ready; false if the new one did not get ready.
func restart(mu *sync.Mutex, p **proc, peak *int64, recoverMax *time.Duration, start func() (*proc, error)) bool {
	mu.Lock()
	defer mu.Unlock()
	*peak = max(*peak, (*p).peakRSS())
	(*p).kill()
	began := time.Now()
	np, err := start()
	if np != nil {
		*p = np
	}
	*recoverMax = max(*recoverMax, time.Since(began))
	return err == nil
}

// finish fills in the duplicates and the stored count from p and st and
// checks the store and the scores against rec and the undisturbed run.
func (r *faultReport) finish(t *testing.T, p *proc, rec *recorder, st storeReader, ref map[string]float64) {
	t.Helper()
	values := indicatorValues(t, p)
	r.duplicates = int(p.metrics().metricOrZero("cleanprod_ingest_duplicates_total"))
	r.stored = check(t, rec, storedKeys(t, st), values, ref)
	r.events = checkEventsOnce(t, st, rec.events)
}

// checkEventsOnce checks the scoring events in the store: each
// enterprise's code changes form one chain, each starting from the code
// the one before it left (a change announced twice, after a restart that
// forgot it, or one never stored would break it), and no event repeats the
// one before it of its kind, indicator and meter field for field; with
// ann, that every stored event was announced and every announced one is
// stored. It returns how many events it checked.
func checkEventsOnce(t *testing.T, st storeReader, ann *eventListener) int {
	t.Helper()
	pr, ok := st.(interface {
		Points(ctx context.Context, measurement string, tags map[string]string, from, to time.Time) ([]store.Point, error)
	})
	if !ok {
		t.Fatalf("the store %T does not read points", st)
	}
	reg, err := registry.Load("../../gateway-config")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	n := 0
	var ids []string
	for _, e := range reg.Enterprises {
		ids = append(ids, e.ID)
	}
	if ann != nil {
		ann.checkAnnounced(t, allEvents(t, pr, ids))
	}
	for _, e := range reg.Enterprises {
		ps := allEvents(t, pr, []string{e.ID})
		slices.SortStableFunc(ps, func(a, b store.Point) int { return a.Time.Compare(b.Time) })
		lastCode := ""
		codes := 0
		last := map[string]string{} // kind, indicator, meter: the fields of the latest
		for _, p := range ps {
			kind := p.Tags["kind"]
			kinds[kind]++
			n++
			if kind == string(scoring.EventCodeChange) {
				from, _ := p.Fields["old_code"].(string)
				to, _ := p.Fields["new_code"].(string)
				if codes > 0 && from != lastCode {
					t.Errorf("%s: code change at %s goes %s -> %s, but the one before it left %s: announced twice or one lost", e.ID, p.Time.Format(time.RFC3339), from, to, lastCode)
				}
				lastCode = to
				codes++
			}
			series := kind + "/" + p.Tags["indicator"] + "/" + p.Tags["meter"]
			fields := fmt.Sprint(p.Fields)
			if last[series] == fields && kind != string(scoring.EventStale) {
				t.Errorf("%s: %s event at %s repeats the one before it: %s", e.ID, series, p.Time.Format(time.RFC3339), fields)
			}
			last[series] = fields
		}
	}
	if n == 0 {
		t.Error("no scoring event stored: the check tests nothing")
	}
	t.Logf("scoring events stored, by kind: %v", kinds)
	return n
}

type storeReader interface {
	Readings(ctx context.Context, enterprise, meter string, from, to time.Time) ([]store.Reading, error)
}

func influxStore(t *testing.T, db *testenv.InfluxDB) *store.Influx {
	t.Helper()
	st, err := store.OpenInflux(store.InfluxConfig{URL: db.URL, Token: db.Token, Bucket: db.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// faultReport is what each fault test measures.
type faultReport struct {
	name                      string
	acked, stored, duplicates int
	events                    int // stored scoring events, checked once each
	recover                   time.Duration
	peakRSS                   int64
}

func (r faultReport) String() string {
	return fmt.Sprintf("%s: readings acknowledged by the broker %d, stored %d, duplicates absorbed %d, scoring events stored once each %d, time to recover %s, peak RSS %.0f MB",
		r.name, r.acked, r.stored, r.duplicates, r.events, r.recover.Round(10*time.Millisecond), float64(r.peakRSS)/(1<<20))
}

var (
	refOnce   sync.Once
	refValues map[string]float64
)

// reference runs the same simulation undisturbed and returns the scorer's
// indicator values.
func reference(t *testing.T) map[string]float64 {
	t.Helper()
	refOnce.Do(func() {
		broker := testenv.Mosquitto(t)
		db := testenv.Influx(t)
		p := startProc(t, []string{"-mqtt.url", broker.URL(), "-influx.url", db.URL, "-influx.bucket", db.Bucket, "-mqtt.client_id", "ref"},
			map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token})
		s := faultSim(t)
		rec := publishAll(t, s, broker.URL(), nil)
		waitWritten(t, p, int(rec.acked.Load()), 120*time.Second)
		refValues = indicatorValues(t, p)
		p.stop(t)
	})
	if refValues == nil {
		t.Fatal("no reference run")
	}
	return refValues
}

// publishAll runs s to the broker through a recorder while inject runs.
func publishAll(t *testing.T, s *sim.Simulator, brokerURL string, inject func()) *recorder {
	t.Helper()
	client, err := sim.Dial(context.Background(), brokerURL, "fault-gateways")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(100)
	rec := newRecorder(sim.NewMQTTPublisher(client, 10*time.Second))
	rec.events = listenEvents(t, brokerURL)
	var wg sync.WaitGroup
	if inject != nil {
		wg.Go(inject)
	}
	if err := s.Run(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	l := s.Ledger()
	rec.ledger = &l
	return rec
}

func waitWritten(t *testing.T, p *proc, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := p.metrics()
		written, inflight := m.metricOrZero("cleanprod_ingest_readings_written_total"), m.metricOrZero("cleanprod_ingest_inflight_messages")
		if written >= float64(n) && inflight == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %g of %d readings written, %g messages in flight, %g duplicates, rejected %v\n%s", timeout, written, n, inflight,
				m.metricOrZero("cleanprod_ingest_duplicates_total"), scrapeFamily(t, p.http, "cleanprod_ingest_rejected_total"), p.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// check compares the store with what the gateways had acknowledged and the
// final indicator values with the undisturbed run.
func check(t *testing.T, rec *recorder, st storeContents, values, ref map[string]float64) int {
	t.Helper()
	stored := st.keys
	missing, doubled := 0, 0
	for k := range rec.keys {
		switch stored[k] {
		case 0:
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged reading %s is not stored", k)
			}
		case 1:
		default:
			doubled++
		}
	}
	if missing > 0 || doubled > 0 || len(stored) != len(rec.keys) {
		t.Errorf("%d acknowledged readings, %d stored keys: %d missing, %d stored twice", len(rec.keys), len(stored), missing, doubled)
	}
	// Every meter's stored total is what the simulator sent: a counter's
	// deltas add up to its rise from its first reading to its last, a
	// delta meter's to what it reported, a gauge's values to theirs. Sums
	// in another order may differ in their last bits, hence 1e-9.
	if rec.ledger != nil {
		if len(rec.keys) != rec.ledger.Readings {
			t.Errorf("the gateways had %d readings acknowledged of the %d valid ones sent", len(rec.keys), rec.ledger.Readings)
		}
		off := 0
		for _, m := range rec.ledger.Meters {
			want := m.Stored()
			got := st.sums[m.Enterprise+"/"+m.Meter]
			if math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
				if off++; off <= 5 {
					t.Errorf("%s/%s: stored total %.12g, the simulator sent %.12g", m.Enterprise, m.Meter, got, want)
				}
			}
		}
		if off > 0 {
			t.Errorf("%d of %d meters' stored totals differ from the simulator's ledger", off, len(rec.ledger.Meters))
		}
	}
	names := make([]string, 0, len(ref))
	for k := range ref {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		w, g := ref[k], values[k]
		if !(math.IsNaN(w) && math.IsNaN(g)) && math.Abs(w-g) > 1e-9*math.Max(1, math.Abs(w)) {
			t.Errorf("%s: got %g after the fault, %g undisturbed", k, g, w)
		}
	}
	return len(stored)
}

// faultTestsWanted skips in -short mode and runs the fault tests in
// parallel: each mostly waits on its rate-limited stream.
func faultTestsWanted(t *testing.T) {
	if testing.Short() {
		t.Skip("fault tests stream simulated data for about a minute each")
	}
	t.Parallel()
}

// TestFaultInfluxKilled: InfluxDB is SIGKILLed for 30 s while readings flow.
func TestFaultInfluxKilled(t *testing.T) {
	faultTestsWanted(t)
	ref := reference(t)
	broker := testenv.Mosquitto(t)
	srv := testenv.NewInflux(t)
	db := srv.Database(t)
	p := startProc(t, []string{"-mqtt.url", broker.URL(), "-influx.url", db.URL, "-influx.bucket", db.Bucket, "-mqtt.client_id", "fault-influx"},
		map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token})
	var restarted time.Time
	rec := publishAll(t, faultSim(t), broker.URL(), func() {
		time.Sleep(5 * time.Second)
		srv.Kill()
		time.Sleep(30 * time.Second)
		srv.Start()
		restarted = time.Now()
	})
	waitWritten(t, p, int(rec.acked.Load()), 120*time.Second)
	report := faultReport{name: "InfluxDB SIGKILLed for 30 s", acked: int(rec.acked.Load()), recover: time.Since(restarted), peakRSS: p.peakRSS()}
	report.finish(t, p, rec, influxStore(t, db), ref)
	t.Log(report)
}

// throttle is a proxy in front of InfluxDB that, while on, delays every
// request and answers half the writes 503 or 429 with Retry-After.
type throttle struct {
	on    atomic.Bool
	calls atomic.Int64
	proxy *httputil.ReverseProxy
}

func (th *throttle) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if th.on.Load() && strings.Contains(r.URL.Path, "/write") {
		time.Sleep(500 * time.Millisecond)
		switch th.calls.Add(1) % 3 {
		case 0:
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"code":"unavailable","message":"throttled by test proxy"}`, http.StatusServiceUnavailable)
			return
		case 1:
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"code":"too many requests","message":"throttled by test proxy"}`, http.StatusTooManyRequests)
			return
		}
	}
	th.proxy.ServeHTTP(w, r)
}

// TestFaultInfluxThrottled: InfluxDB is slow and refuses two writes in
// three with 503/429 and Retry-After for 25 s; memory stays bounded.
func TestFaultInfluxThrottled(t *testing.T) {
	faultTestsWanted(t)
	ref := reference(t)
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	target, _ := url.Parse(db.URL)
	th := &throttle{proxy: httputil.NewSingleHostReverseProxy(target)}
	proxyAddr := freeAddr(t)
	srv := &http.Server{Addr: proxyAddr, Handler: th}
	go srv.ListenAndServe()
	defer srv.Close()
	p := startProc(t, []string{"-mqtt.url", broker.URL(), "-influx.url", "http://" + proxyAddr, "-influx.bucket", db.Bucket, "-mqtt.client_id", "fault-throttle"},
		map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token})
	var ended time.Time
	var peakInflight float64
	rec := publishAll(t, faultSim(t), broker.URL(), func() {
		time.Sleep(5 * time.Second)
		th.on.Store(true)
		for deadline := time.Now().Add(25 * time.Second); time.Now().Before(deadline); {
			peakInflight = max(peakInflight, p.metrics().metricOrZero("cleanprod_ingest_inflight_messages"))
			time.Sleep(200 * time.Millisecond)
		}
		th.on.Store(false)
		ended = time.Now()
	})
	waitWritten(t, p, int(rec.acked.Load()), 120*time.Second)
	report := faultReport{name: "InfluxDB throttled (0.5 s delay, 2 of 3 writes 503/429) for 25 s", acked: int(rec.acked.Load()), recover: time.Since(ended), peakRSS: p.peakRSS()}
	if peakInflight > 1000+2*5000 {
		t.Errorf("peak in-flight %g messages: not bounded by mqtt.max_inflight", peakInflight)
	}
	if errs := p.metrics().metricOrZero(`cleanprod_store_write_errors_total{kind="temporary"}`); errs == 0 {
		t.Error("the throttle refused no write: the test did not test")
	}
	report.finish(t, p, rec, influxStore(t, db), ref)
	t.Logf("%s; peak in-flight %g messages", report, peakInflight)
}

// slowQueries is a proxy in front of InfluxDB that holds the first two
// queries for the meters' latest readings and the first two for window
// aggregates longer than the service's client timeout, and answers every
// query late.
type slowQueries struct {
	mu      sync.Mutex
	seen    map[string]int // queries of each kind so far
	stalled atomic.Int64
	proxy   *httputil.ReverseProxy
}

func (sq *slowQueries) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.URL.Path, "query") {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		q := r.URL.Query().Get("q")
		if form, err := url.ParseQuery(string(body)); err == nil && form.Get("q") != "" {
			q = form.Get("q")
		}
		kind := ""
		switch {
		// The windows' history: counted per meter first, then asked for
		// grouped by time or as readings.
		case strings.Contains(q, "GROUP BY time("), strings.HasPrefix(q, `SELECT count("delta")`), strings.HasPrefix(q, `SELECT "delta", "value"`):
			kind = "aggregates"
		case strings.Contains(q, "ORDER BY time DESC LIMIT"):
			kind = "latest"
		case strings.HasPrefix(q, `SHOW FIELD KEYS FROM "event"`), strings.HasPrefix(q, `SELECT * FROM "event"`):
			kind = "events" // read while ingest runs, before the scorer does
		}
		sq.mu.Lock()
		sq.seen[kind]++
		stall := kind != "" && sq.seen[kind] <= 2
		sq.mu.Unlock()
		if stall {
			sq.stalled.Add(1)
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
			}
			http.Error(w, `{"error":"stalled by test proxy"}`, http.StatusServiceUnavailable)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	sq.proxy.ServeHTTP(w, r)
}

// TestFaultRestartSlowStore: cleanprod restarts on a store holding two
// days of history while InfluxDB answers its first queries for meter state,
// for window aggregates and for the events announced before not within
// the 2 s client timeout, and every query late. It retries rather than
// exiting, starts ingest (before the events are read), refills its
// windows and grades as the undisturbed run.
func TestFaultRestartSlowStore(t *testing.T) {
	faultTestsWanted(t)
	ref := reference(t)
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	args := []string{"-mqtt.url", broker.URL(), "-influx.bucket", db.Bucket, "-mqtt.client_id", "fault-slow-restart"}
	env := map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token}
	p := startProc(t, append(args, "-influx.url", db.URL), env)
	rec := publishAll(t, faultSim(t), broker.URL(), nil)
	waitWritten(t, p, int(rec.acked.Load()), 120*time.Second)
	p.kill()

	target, _ := url.Parse(db.URL)
	sq := &slowQueries{seen: map[string]int{}, proxy: httputil.NewSingleHostReverseProxy(target)}
	proxyAddr := freeAddr(t)
	srv := &http.Server{Addr: proxyAddr, Handler: sq}
	go srv.ListenAndServe()
	defer srv.Close()
	began := time.Now()
	p, err := tryStartProc(t, append(args, "-influx.url", "http://"+proxyAddr, "-influx.timeout", "2s", "-log.level", "info", "-log.format", "json"), env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cleanprod's log:\n%s", p.logs)
		}
	})
	ingestReady := time.Since(began)
	var loading []string
	eventsLoading := false // ingest ready while the past events were read
	waitFor(t, 120*time.Second, "the scoring windows refilled", func() bool {
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var body struct{ Loading []string }
		if json.NewDecoder(resp.Body).Decode(&body) != nil || resp.StatusCode != http.StatusOK {
			return false
		}
		if len(body.Loading) > 0 {
			loading = body.Loading
			if strings.Contains(strings.Join(body.Loading, ";"), "events announced before") {
				eventsLoading = true
			}
		}
		return len(body.Loading) == 0
	})
	graded := time.Since(began)
	select {
	case <-p.done:
		t.Fatalf("cleanprod exited:\n%s", p.logs)
	default:
	}
	if sq.stalled.Load() != 6 {
		t.Fatalf("%d queries stalled, want 6: the test did not test what it says", sq.stalled.Load())
	}
	if !eventsLoading {
		t.Errorf("/readyz never answered ready with the past events loading: ingest waited for them")
	}
	m := p.metrics()
	for _, name := range []string{"cleanprod_ingest_restore_retries_total", "cleanprod_scoring_refill_retries_total"} {
		if m.metricOrZero(name) == 0 {
			t.Errorf("%s = 0 after stalled queries", name)
		}
	}
	retries := m.metricOrZero("cleanprod_ingest_restore_retries_total") + m.metricOrZero("cleanprod_scoring_refill_retries_total")
	if !strings.Contains(p.logs.String(), "retrying") {
		t.Errorf("no retry in the log:\n%s", p.logs)
	}
	for _, line := range strings.Split(strings.TrimSpace(p.logs.String()), "\n") {
		if strings.HasPrefix(line, "cleanprod serving: ") {
			continue // the banner, on stdout
		}
		if !json.Valid([]byte(line)) {
			t.Errorf("a line on stderr is not a log record: %q", line)
		}
	}
	report := faultReport{name: "restart on 2 days of history, first history queries stalled past a 2 s timeout", acked: int(rec.acked.Load()), recover: graded, peakRSS: p.peakRSS()}
	report.finish(t, p, rec, influxStore(t, db), ref)
	t.Logf("%s; ingest ready after %s, %g retries, last loading %q", report, ingestReady.Round(10*time.Millisecond), retries, loading)
}

// TestFaultBrokerRestarted: mosquitto (persistence on) restarts mid-stream.
func TestFaultBrokerRestarted(t *testing.T) {
	faultTestsWanted(t)
	ref := reference(t)
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	p := startProc(t, []string{"-mqtt.url", broker.URL(), "-influx.url", db.URL, "-influx.bucket", db.Bucket, "-mqtt.client_id", "fault-broker"},
		map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token})
	var restarted time.Time
	rec := publishAll(t, faultSim(t), broker.URL(), func() {
		time.Sleep(8 * time.Second)
		broker.Stop()
		time.Sleep(3 * time.Second)
		broker.Start()
		restarted = time.Now()
	})
	waitWritten(t, p, 0, 10*time.Second)
	waitFor(t, 120*time.Second, "every acknowledged reading stored", func() bool {
		st, _ := store.OpenInflux(store.InfluxConfig{URL: db.URL, Token: db.Token, Bucket: db.Bucket})
		n, err := st.CountReadings(context.Background(), "")
		return err == nil && n >= len(rec.keys)
	})
	report := faultReport{name: "mosquitto restarted mid-stream", acked: int(rec.acked.Load()), recover: time.Since(restarted), peakRSS: p.peakRSS()}
	report.finish(t, p, rec, influxStore(t, db), ref)
	t.Log(report)
}

// TestFaultServiceKilled: cleanprod is SIGKILLed five times at random
// moments and restarted each time; the final scores equal the
// undisturbed run's.
func TestFaultServiceKilled(t *testing.T) {
	faultTestsWanted(t)
	ref := reference(t)
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	// Checkpoints every 2 s: kills land between them and during them, with
	// writes in flight; each start resumes the windows from the last one.
	args := []string{"-mqtt.url", broker.URL(), "-influx.url", db.URL, "-influx.bucket", db.Bucket, "-mqtt.client_id", "fault-kill",
		"-scoring.checkpoint_every", "2s"}
	env := map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token}
	var mu sync.Mutex
	p := startProc(t, args, env)
	var peak int64
	var recoverMax time.Duration
	rng := rand.New(rand.NewPCG(7, 7))
	rec := publishAll(t, faultSim(t), broker.URL(), func() {
		for range 5 {
			time.Sleep(time.Duration(2000+rng.IntN(5000)) * time.Millisecond)
			if !restart(&mu, &p, &peak, &recoverMax, func() (*proc, error) { return tryStartProc(t, args, env) }) {
				t.Error("cleanprod did not come back after a SIGKILL")
				return
			}
		}
	})
	mu.Lock()
	defer mu.Unlock()
	waitFor(t, 120*time.Second, "every acknowledged reading stored", func() bool {
		st, _ := store.OpenInflux(store.InfluxConfig{URL: db.URL, Token: db.Token, Bucket: db.Bucket})
		n, err := st.CountReadings(context.Background(), "")
		return err == nil && n >= len(rec.keys) && p.metrics().metricOrZero("cleanprod_ingest_inflight_messages") == 0
	})
	// The last start resumed the scorer's windows rather than refilling
	// them: the values checked below come from a checkpoint and the
	// buckets changed after it.
	if n := p.metrics().metricOrZero("cleanprod_scoring_resumed_enterprises"); n == 0 {
		t.Errorf("the last start resumed no enterprise from the checkpoint:\n%s", p.logs)
	}
	report := faultReport{name: "cleanprod SIGKILLed 5 times", acked: int(rec.acked.Load()), recover: recoverMax, peakRSS: max(peak, p.peakRSS())}
	report.finish(t, p, rec, influxStore(t, db), ref)
	t.Logf("%s (recover = restart to ready, worst of 5)", report)
}

// TestFaultGatewayReplay: after the run a gateway reconnects and replays a
// backlog: a tenth of everything again, in random order. Most of it is
// older than the per-meter history, so ingest checks it against the store.
func TestFaultGatewayReplay(t *testing.T) {
	faultTestsWanted(t)
	ref := reference(t)
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	p := startProc(t, []string{"-mqtt.url", broker.URL(), "-influx.url", db.URL, "-influx.bucket", db.Bucket, "-mqtt.client_id", "fault-replay"},
		map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token})
	rec := publishAll(t, faultSim(t), broker.URL(), nil)
	waitWritten(t, p, int(rec.acked.Load()), 120*time.Second)
	client, err := sim.Dial(context.Background(), broker.URL(), "fault-replayer")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(100)
	pub := sim.NewMQTTPublisher(client, 10*time.Second)
	rng := rand.New(rand.NewPCG(1, 2))
	msgs := append([]sim.Message(nil), rec.messages...)
	rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	msgs = msgs[:len(msgs)/10]
	replayed := 0
	began := time.Now()
	for _, m := range msgs {
		if err := pub.Publish(context.Background(), m.Topic, m.Payload); err != nil {
			t.Fatal(err)
		}
		var pl struct{ Readings []json.RawMessage }
		json.Unmarshal(m.Payload, &pl)
		replayed += len(pl.Readings)
	}
	deadline := time.Now().Add(300 * time.Second)
	for {
		m := p.metrics()
		dups, inflight := m.metricOrZero("cleanprod_ingest_duplicates_total"), m.metricOrZero("cleanprod_ingest_inflight_messages")
		if dups >= float64(replayed) && inflight == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replay not absorbed: %g of %d readings seen as duplicates, %g messages in flight, rejected %v\n%s",
				dups, replayed, inflight, scrapeFamily(t, p.http, "cleanprod_ingest_rejected_total"), p.logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	report := faultReport{name: fmt.Sprintf("gateway replayed %d messages out of order", len(msgs)), acked: int(rec.acked.Load()) + replayed, recover: time.Since(began), peakRSS: p.peakRSS()}
	if written := p.metrics().metricOrZero("cleanprod_ingest_readings_written_total"); written != float64(rec.acked.Load()) {
		t.Errorf("readings written %g, want %d: the replay was counted", written, rec.acked.Load())
	}
	report.finish(t, p, rec, influxStore(t, db), ref)
	t.Log(report)
}

// TestFaultEmbeddedKilled: on the embedded broker and store, the whole
// process (broker included) is SIGKILLed three times mid-stream.
func TestFaultEmbeddedKilled(t *testing.T) {
	faultTestsWanted(t)
	ref := reference(t)
	dataDir := t.TempDir()
	brokerAddr := freeAddr(t)
	args := []string{"-embedded_broker.listen", brokerAddr, "-data_dir", dataDir}
	var mu sync.Mutex
	p := startProc(t, args, nil)
	var peak int64
	var recoverMax time.Duration
	rng := rand.New(rand.NewPCG(3, 4))
	rec := publishAll(t, faultSim(t), "tcp://"+brokerAddr, func() {
		for range 3 {
			time.Sleep(time.Duration(3000+rng.IntN(5000)) * time.Millisecond)
			if !restart(&mu, &p, &peak, &recoverMax, func() (*proc, error) { return tryStartProc(t, args, nil) }) {
				t.Error("cleanprod did not come back after a SIGKILL")
				return
			}
		}
	})
	mu.Lock()
	defer mu.Unlock()
	want := len(rec.keys)
	// The process's counters start over at each restart, and the store is
	// locked while it runs: wait until nothing is in flight and nothing
	// more is written for five seconds.
	last, since := -1.0, time.Now()
	waitFor(t, 120*time.Second, "ingest settled", func() bool {
		w := p.metrics().metricOrZero("cleanprod_ingest_readings_written_total")
		if w != last || p.metrics().metricOrZero("cleanprod_ingest_inflight_messages") != 0 {
			last, since = w, time.Now()
		}
		return time.Since(since) > 5*time.Second
	})
	values := indicatorValues(t, p)
	report := faultReport{name: "embedded broker and store, process SIGKILLed 3 times", acked: int(rec.acked.Load()), recover: recoverMax, peakRSS: max(peak, p.peakRSS())}
	report.duplicates = int(p.metrics().metricOrZero("cleanprod_ingest_duplicates_total"))
	p.stop(t)
	st, err := store.OpenBolt(filepath.Join(dataDir, "readings.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	report.stored = check(t, rec, storedKeys(t, st), values, ref)
	report.events = checkEventsOnce(t, st, rec.events)
	if report.stored < want {
		t.Errorf("stored %d of %d acknowledged readings", report.stored, want)
	}
	t.Logf("%s (recover = restart to ready, worst of 3)", report)
}
