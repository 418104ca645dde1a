package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type testStore interface {
	Writer
	HistorySource
	ReadingsOf(ctx context.Context, enterprise string, meters []string, from, to time.Time) ([]store.Reading, error)
}

// ingestHarness runs a Pipeline and Subscriber against a real broker.
type ingestHarness struct {
	pipe    *Pipeline
	sub     *Subscriber
	metrics *Metrics
	cancel  context.CancelFunc
	done    chan error
	mu      sync.Mutex
	seen    []store.Reading // what the scorer was told
}

func startIngest(t *testing.T, brokerURL, clientID string, reg *registry.Registry, st testStore, subOpts ...func(*SubscriberConfig)) *ingestHarness {
	t.Helper()
	return startIngestWith(t, brokerURL, clientID, reg, st, nil, subOpts...)
}

// startIngestWith is startIngest with pipeOpt (may be nil) changing the
// pipeline's configuration.
func startIngestWith(t *testing.T, brokerURL, clientID string, reg *registry.Registry, st testStore, pipeOpt func(*PipelineConfig), subOpts ...func(*SubscriberConfig)) *ingestHarness {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	h := &ingestHarness{metrics: NewMetrics(prometheus.NewRegistry()), done: make(chan error, 1)}
	var sub *Subscriber
	pcfg := PipelineConfig{
		Normaliser: NormaliserConfig{FutureHorizon: 5 * time.Minute, PastHorizon: 7 * 24 * time.Hour, History: 32, MaxPayload: 64 << 10, MaxReadings: 1000, Lookup: st.ReadingsOf},
		BatchSize:  500, BatchInterval: 100 * time.Millisecond, MaxInflight: 200,
		RetryMin: 50 * time.Millisecond, RetryMax: time.Second,
	}
	if pipeOpt != nil {
		pipeOpt(&pcfg)
	}
	h.pipe = NewPipeline(reg, pcfg, st, func(ctx context.Context, topic string, payload []byte) error { return sub.Publish(ctx, topic, payload) },
		func(rs []store.Reading) {
			h.mu.Lock()
			h.seen = append(h.seen, rs...)
			h.mu.Unlock()
		}, h.metrics, log)
	subCfg := SubscriberConfig{Broker: brokerURL, ClientID: clientID, WatchdogInterval: time.Second, MaxReconnectInterval: time.Second}
	for _, o := range subOpts {
		o(&subCfg)
	}
	sub = NewSubscriber(subCfg, h.pipe, h.metrics, log, nil)
	h.sub = sub
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	if err := h.pipe.Restore(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	go func() {
		errc := make(chan error, 2)
		go func() { errc <- h.pipe.Run(ctx) }()
		go func() { errc <- sub.Run(ctx) }()
		e1, e2 := <-errc, <-errc
		sub.Close()
		if e1 == nil {
			e1 = e2
		}
		h.done <- e1
	}()
	t.Cleanup(h.stop)
	return h
}

func (h *ingestHarness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	<-h.done
	h.cancel = nil
}

func (h *ingestHarness) observedSum(meter string) float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s float64
	for _, r := range h.seen {
		if r.Meter == meter {
			s += r.Delta
		}
	}
	return s
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitProgress polls count until it reaches want. It fails when count
// has not grown for stall: a drain that is slow on a loaded machine still
// passes, one that has stopped does not.
func waitProgress(t *testing.T, stall time.Duration, what string, want float64, count func() float64) {
	t.Helper()
	last, since := count(), time.Now()
	for last < want {
		time.Sleep(20 * time.Millisecond)
		if n := count(); n > last {
			last, since = n, time.Now()
		} else if time.Since(since) > stall {
			t.Fatalf("%s: stalled at %g of %g for %s", what, last, want, stall)
		}
	}
}

func connect(t *testing.T, url, id string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publish(t *testing.T, c mqtt.Client, topic string, payload []byte) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// deadLetters collects envelopes from cp/v1/deadletter/#.
func deadLetters(t *testing.T, url string) func() []DeadLetter {
	t.Helper()
	var mu sync.Mutex
	var got []DeadLetter
	c := connect(t, url, "test-deadletter-reader")
	tok := c.Subscribe(DeadLetterPrefix+"#", 1, func(_ mqtt.Client, m mqtt.Message) {
		var dl DeadLetter
		if err := json.Unmarshal(m.Payload(), &dl); err != nil {
			t.Errorf("dead-letter %s is not a DeadLetter: %v", m.Topic(), err)
			return
		}
		if m.Topic() != DeadLetterTopic(dl.Reason) {
			t.Errorf("dead-letter of reason %s on topic %s", dl.Reason, m.Topic())
		}
		mu.Lock()
		got = append(got, dl)
		mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	return func() []DeadLetter {
		mu.Lock()
		defer mu.Unlock()
		return append([]DeadLetter(nil), got...)
	}
}

func openInflux(t *testing.T, db *testenv.InfluxDB) *store.Influx {
	t.Helper()
	s, err := store.OpenInflux(store.InfluxConfig{URL: db.URL, Token: db.Token, Org: db.Org, Bucket: db.Bucket, GZip: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sumDelta(t *testing.T, db *testenv.InfluxDB, meter string) float64 {
	t.Helper()
	rows := db.QueryFlux(t, fmt.Sprintf(`from(bucket: %q) |> range(start: 0) |> filter(fn: (r) => r._measurement == "reading" and r.meter == %q and r._field == "delta") |> group() |> sum()`, db.Bucket, meter))
	if len(rows) != 1 {
		t.Fatalf("sum of %s: got %d rows, want 1", meter, len(rows))
	}
	v, _ := rows[0]["_value"].(float64)
	return v
}

// TestPipelineEndToEnd publishes through a real mosquitto into a real
// InfluxDB: canonical units, counter resets and rollovers, late and
// repeated readings, partial rejection and dead-letters.
func TestPipelineEndToEnd(t *testing.T) {
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	reg := testRegistry(t)
	h := startIngest(t, broker.URL(), "cleanprod-e2e", reg, openInflux(t, db))
	letters := deadLetters(t, broker.URL())
	waitFor(t, 10*time.Second, "subscriber connected", h.sub.Connected)

	gw := connect(t, broker.URL(), "gw-1-sim")
	t0 := time.Now().UTC().Truncate(time.Minute).Add(-2 * time.Hour)
	at := func(min int) string { return t0.Add(time.Duration(min) * time.Minute).Format(time.RFC3339) }
	msgs := []string{
		// E-1 in kWh shows at most 999999, then 0; E-MWH in MWh resets; W-FRESH in L.
		fmt.Sprintf(`{"gateway":"gw-1","seq":1,"readings":[{"meter":"E-1","ts":%q,"value":999900},{"meter":"E-MWH","ts":%q,"value":2.5},{"meter":"W-FRESH","ts":%q,"value":1000}]}`, at(0), at(0), at(0)),
		fmt.Sprintf(`{"gateway":"gw-1","seq":2,"readings":[{"meter":"E-1","ts":%q,"value":999990},{"meter":"E-MWH","ts":%q,"value":3.0},{"meter":"W-FRESH","ts":%q,"value":6000}]}`, at(15), at(15), at(15)),
		// 45 before 30: the late one splits the interval.
		fmt.Sprintf(`{"gateway":"gw-1","seq":4,"readings":[{"meter":"E-1","ts":%q,"value":60},{"meter":"E-MWH","ts":%q,"value":0.25}]}`, at(45), at(45)),
		fmt.Sprintf(`{"gateway":"gw-1","seq":3,"readings":[{"meter":"E-1","ts":%q,"value":10}]}`, at(30)),
		// A repeat of seq 2 and a message with bad readings among good ones.
		fmt.Sprintf(`{"gateway":"gw-1","seq":2,"readings":[{"meter":"E-1","ts":%q,"value":999990},{"meter":"E-MWH","ts":%q,"value":3.0},{"meter":"W-FRESH","ts":%q,"value":6000}]}`, at(15), at(15), at(15)),
		// E-MWH stays down: the drop at 45 was a reset, not a glitch.
		fmt.Sprintf(`{"gateway":"gw-1","seq":5,"readings":[{"meter":"W-FRESH","ts":%q,"value":8000},{"meter":"E-MWH","ts":%q,"value":0.5},{"meter":"NOPE","ts":%q,"value":1},{"meter":"E-B","ts":%q,"value":1},{"meter":"W-FRESH","ts":%q,"value":"NaN"},{"meter":"W-FRESH","ts":"2099-01-01T00:00:00Z","value":1}]}`, at(60), at(60), at(60), at(60), at(61)),
	}
	for _, m := range msgs {
		publish(t, gw, TelemetryTopic("ent-a", "gw-1"), []byte(m))
	}
	publish(t, gw, TelemetryTopic("ent-a", "gw-1"), []byte(`{"gateway":"gw-1","seq":6,"readings":[{"meter":"E-1"`))
	publish(t, gw, TelemetryTopic("ent-a", "gw-404"), []byte(`{}`))

	// 3+3+2+1+0+2 readings stored.
	waitFor(t, 20*time.Second, "11 readings written", func() bool { return testutil.ToFloat64(h.metrics.readings) == 11 })
	waitFor(t, 20*time.Second, "6 dead-letters", func() bool { return len(letters()) == 6 })

	wantSums := map[string]float64{
		"E-1":     (999999 - 999900) + 1 + 60, // 999900 -> 999990 -> 10 -> 60 with a rollover
		"E-MWH":   500 + 250 + 250,            // 2.5 -> 3.0 MWh, then a reset, 0.25 and 0.5 MWh
		"W-FRESH": 5 + 2,                      // 1000 -> 6000 -> 8000 L
	}
	for meter, want := range wantSums {
		if got := sumDelta(t, db, meter); got != want {
			t.Errorf("stored sum of deltas of %s: got %g, want %g", meter, got, want)
		}
		if got := h.observedSum(meter); got != want {
			t.Errorf("scorer's sum of %s: got %g, want %g", meter, got, want)
		}
	}
	// Read through the store, which rebuilds the registers InfluxDB keeps
	// as deltas alone (store.Reading.Chained).
	rs, err := openInflux(t, db).Readings(context.Background(), "ent-a", "E-MWH", time.Unix(0, 0), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var regs []float64
	for _, r := range rs {
		regs = append(regs, r.Value)
	}
	if len(rs) != 4 || rs[1].Value != 3000.0 || rs[1].Kind != "counter" {
		t.Errorf("E-MWH registers: got %v, want four, the second 3000 kWh", regs)
	}
	reasons := map[Reason]int{}
	for _, dl := range letters() {
		reasons[dl.Reason]++
		if dl.Topic == "" || dl.Received.IsZero() {
			t.Errorf("dead-letter without topic or time: %+v", dl)
		}
		switch dl.Reason {
		case ReasonMalformed:
			if !strings.Contains(dl.Payload, `"meter":"E-1"`) {
				t.Errorf("malformed dead-letter should carry the payload, got %q", dl.Payload)
			}
		case ReasonUnknownMeter:
			if len(dl.Readings) != 1 || dl.Readings[0].Index != 2 || !strings.Contains(string(dl.Readings[0].Reading), "NOPE") {
				t.Errorf("unknown_meter dead-letter: got %+v", dl.Readings)
			}
		}
	}
	want := map[Reason]int{ReasonMalformed: 1, ReasonUnknownGateway: 1, ReasonUnknownMeter: 1, ReasonSpoofed: 1, ReasonInvalidValue: 1, ReasonFuture: 1}
	for r, n := range want {
		if reasons[r] != n {
			t.Errorf("dead-letters with reason %s: got %d, want %d (all: %v)", r, reasons[r], n, reasons)
		}
	}
	if got := testutil.ToFloat64(h.metrics.rejected.WithLabelValues(string(ReasonSpoofed))); got != 1 {
		t.Errorf("rejected{spoofed}: got %g, want 1", got)
	}
	if got := testutil.ToFloat64(h.metrics.duplicates); got != 3 {
		t.Errorf("duplicates: got %g, want 3 (the repeated seq 2)", got)
	}
	if got := testutil.ToFloat64(h.metrics.inflight); got != 0 {
		t.Errorf("in-flight after everything was acknowledged: got %g, want 0", got)
	}
}

// TestShuffledBacklogThroughRealServers: a gateway's backlog arrives in
// random order, as paho re-sends its unacknowledged messages after a
// reconnect, through a real mosquitto into a real InfluxDB. Readings far
// older than the 32 kept per meter are placed from the store, counters
// included: every one stored, none rejected, the counter's total exactly
// its last register less its first. Sent again in another order, all of
// it is absorbed as duplicates while another gateway's fresh reading is
// stored meanwhile.
func TestShuffledBacklogThroughRealServers(t *testing.T) {
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	h := startIngest(t, broker.URL(), "cleanprod-shuffled", testRegistry(t), openInflux(t, db))
	letters := deadLetters(t, broker.URL())
	waitFor(t, 10*time.Second, "subscriber connected", h.sub.Connected)
	gw := connect(t, broker.URL(), "gw-1-backlog")

	const n = 300
	t0 := time.Now().UTC().Truncate(time.Minute).Add(-6 * time.Hour)
	msgs := make([][]byte, n)
	for i := range n {
		ts := t0.Add(time.Duration(i) * time.Minute).Format(time.RFC3339)
		msgs[i] = fmt.Appendf(nil, `{"gateway":"gw-1","seq":%d,"readings":[{"meter":"E-1","ts":%q,"value":%d},{"meter":"COD-OUT","ts":%q,"value":%d}]}`, i+1, ts, 10*i, ts, 40+i%7)
	}
	shuffled := func(seed uint64) [][]byte {
		out := slices.Clone(msgs)
		rand.New(rand.NewPCG(seed, 7)).Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out
	}
	began := time.Now()
	for _, m := range shuffled(1) {
		publish(t, gw, TelemetryTopic("ent-a", "gw-1"), m)
	}
	waitFor(t, 60*time.Second, "every reading written", func() bool { return testutil.ToFloat64(h.metrics.readings) >= 2*n })
	first := time.Since(began)
	if got := sumDelta(t, db, "E-1"); got != 10*(n-1) {
		t.Errorf("stored total of E-1 %g, want %d (its last register less its first)", got, 10*(n-1))
	}
	if got := h.observedSum("E-1"); got != 10*(n-1) {
		t.Errorf("scorer's total of E-1 %g, want %d", got, 10*(n-1))
	}
	if lookups := testutil.ToFloat64(h.metrics.lateLookups); lookups == 0 {
		t.Error("no store look-up: the test placed nothing from the store")
	}

	// The whole backlog again, in another order, while gw-2 reports.
	began = time.Now()
	dups := testutil.ToFloat64(h.metrics.duplicates)
	other := connect(t, broker.URL(), "gw-2-fresh")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, m := range shuffled(2) {
			if tok := gw.Publish(TelemetryTopic("ent-a", "gw-1"), 1, false, m); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Errorf("publish: %v", tok.Error())
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	fresh := time.Now()
	publish(t, other, TelemetryTopic("ent-a", "gw-2"), fmt.Appendf(nil, `{"gateway":"gw-2","seq":1,"readings":[{"meter":"V-1","ts":%q,"value":5}]}`, time.Now().UTC().Format(time.RFC3339)))
	waitFor(t, 10*time.Second, "the other gateway's reading stored", func() bool { return testutil.ToFloat64(h.metrics.readings) >= 2*n+1 })
	freshLatency := time.Since(fresh)
	<-done
	waitFor(t, 60*time.Second, "the backlog absorbed", func() bool {
		return testutil.ToFloat64(h.metrics.duplicates)-dups >= 2*n && testutil.ToFloat64(h.metrics.inflight) == 0
	})
	replay := time.Since(began)
	if got := sumDelta(t, db, "E-1"); got != 10*(n-1) {
		t.Errorf("stored total of E-1 after the replay %g, want %d", got, 10*(n-1))
	}
	if w := testutil.ToFloat64(h.metrics.readings); w != 2*n+1 {
		t.Errorf("%g readings written, want %d: the replay wrote something again", w, 2*n+1)
	}
	if l := letters(); len(l) != 0 {
		t.Errorf("%d dead-letters, the first %+v: nothing here is wrong", len(l), l[0])
	}
	t.Logf("shuffled backlog of %d messages stored in %s; replayed in %s (%.0f msg/s), another gateway's reading stored %s after it was sent; %g store look-ups",
		n, first.Round(time.Millisecond), replay.Round(time.Millisecond), float64(n)/replay.Seconds(), freshLatency.Round(time.Millisecond), testutil.ToFloat64(h.metrics.lateLookups))
}
