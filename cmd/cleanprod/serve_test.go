package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cleanprod/cleanprod/ingest"
	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// syncBuffer is a bytes.Buffer safe for the service's and the test's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
}

// service is a running "cleanprod serve".
type service struct {
	http   string
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

func startServe(t testing.TB, env map[string]string, args ...string) *service {
	t.Helper()
	s := &service{http: freeAddr(t), logs: &syncBuffer{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	getenv := func(k string) string { return env[k] }
	go func() {
		s.done <- run(ctx, append([]string{"serve", "-http.listen", s.http, "-scoring.declarations", "../../scoring/declarations"}, withDataDir(t, args)...), getenv, s.logs, s.logs)
	}()
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get("http://" + s.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-s.done:
			t.Fatalf("serve exited before ready: %v\n%s", err, s.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready after 90s\n%s", s.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *service) stop(t testing.TB) {
	t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("serve returned %v\n%s", err, s.logs)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("serve did not stop within 30s\n%s", s.logs)
	}
}

func (s *service) metric(t *testing.T, name string) float64 {
	t.Helper()
	v, err := s.scrape(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// metricOrZero is metric for polling a service that may not listen yet.
func (s *service) metricOrZero(name string) float64 {
	v, _ := s.scrape(name)
	return v
}

func (s *service) scrape(name string) (float64, error) {
	resp, err := http.Get("http://" + s.http + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name+" ") {
			var v float64
			_, err := fmt.Sscanf(strings.TrimPrefix(line, name+" "), "%g", &v)
			return v, err
		}
	}
	return 0, nil
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mqttClient(t *testing.T, url, id string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(id))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func pub(t *testing.T, c mqtt.Client, topic, payload string) {
	t.Helper()
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

func sample(seq int, ts time.Time, paintMWh, cod float64) string {
	at := ts.UTC().Format(time.RFC3339)
	return fmt.Sprintf(`{"gateway": "gw-paint-01", "seq": %d, "sent": %q, "readings": [
  {"meter": "E-PAINT-01", "ts": %q, "value": %g},
  {"meter": "WW-OUT-COD", "ts": %q, "value": %g}]}`, seq, at, at, paintMWh, at, cod)
}

const sampleTopic = "cp/v1/test-plant/gw-paint-01/telemetry"

// TestServeWithRealServers runs the service against mosquitto and
// InfluxDB: a sample message lands in canonical units, a malformed one is
// dead-lettered with its reason, and the service keeps running.
func TestServeWithRealServers(t *testing.T) {
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	env := map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token}
	s := startServe(t, env,
		"-mqtt.url", broker.URL(), "-influx.url", db.URL, "-influx.bucket", db.Bucket,
		"-gateway_config", "testdata/gateway-config", "-data_dir", t.TempDir())

	gw := mqttClient(t, broker.URL(), "test-gateway")
	letters := make(chan ingest.DeadLetter, 4)
	if tok := gw.Subscribe("cp/v1/deadletter/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		var dl ingest.DeadLetter
		json.Unmarshal(m.Payload(), &dl)
		letters <- dl
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	now := time.Now().Truncate(time.Second)
	pub(t, gw, sampleTopic, sample(1042, now.Add(-time.Minute), 182.7345, 41.7))
	pub(t, gw, sampleTopic, `{"gateway": "gw-paint-01", "seq": 1043, "readings": [`)

	select {
	case dl := <-letters:
		if dl.Reason != ingest.ReasonMalformed || dl.Topic != sampleTopic {
			t.Errorf("got dead-letter %+v, want malformed_json from %s", dl, sampleTopic)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no dead-letter for the malformed message")
	}
	waitFor(t, 20*time.Second, "two readings in InfluxDB", func() bool {
		return db.MustCountReadings(t, "") == 2
	})
	rows := db.QueryInfluxQL(t, `SELECT register, delta FROM reading WHERE meter = 'E-PAINT-01'`)
	if len(rows) != 1 || rows[0][1] != 182734.5 {
		t.Errorf("E-PAINT-01: got %v, want the register 182734.5 kWh", rows)
	}
	// What the registry knows of the meter is beside the readings, not in
	// them.
	waitFor(t, 20*time.Second, "the meters described", func() bool {
		rows := db.QueryInfluxQL(t, `SELECT "unit", "quantity", "workshop", "gateway", "kind" FROM "meter" WHERE "meter" = 'E-PAINT-01'`)
		return len(rows) >= 1 && rows[0][2] == "electricity" && rows[0][3] == "paint" && rows[0][5] == "counter"
	})
	resp, err := http.Get("http://" + s.http + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("healthz after bad input: %v %v", resp, err)
	}
	if got := s.metric(t, `cleanprod_ingest_rejected_total{reason="malformed_json"}`); got != 1 {
		t.Errorf("rejected{malformed_json}: got %g, want 1", got)
	}
}

// TestServeEmbedded runs with nothing configured: embedded broker and
// store. After a restart the counter continues from the stored register.
func TestServeEmbedded(t *testing.T) {
	dataDir := t.TempDir()
	brokerAddr := freeAddr(t)
	args := []string{"-embedded_broker.listen", brokerAddr, "-gateway_config", "testdata/gateway-config", "-data_dir", dataDir}
	now := time.Now().Truncate(time.Second)

	pprofAddr := freeAddr(t)
	s := startServe(t, nil, append(args, "-debug.pprof_listen", pprofAddr)...)
	if resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/cmdline"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("pprof listener: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := http.Get("http://" + s.http + "/debug/pprof/cmdline"); err == nil {
		if resp.StatusCode == http.StatusOK {
			t.Error("the API port serves pprof")
		}
		resp.Body.Close()
	}
	gw := mqttClient(t, "tcp://"+brokerAddr, "test-gateway-1")
	pub(t, gw, sampleTopic, sample(1, now.Add(-2*time.Hour), 100, 40))
	pub(t, gw, sampleTopic, sample(2, now.Add(-time.Hour), 100.5, 50))
	waitFor(t, 20*time.Second, "4 readings written", func() bool {
		return s.metric(t, "cleanprod_ingest_readings_written_total") == 4
	})
	gw.Disconnect(100)
	s.stop(t)

	s = startServe(t, nil, args...)
	gw = mqttClient(t, "tcp://"+brokerAddr, "test-gateway-2")
	pub(t, gw, sampleTopic, sample(2, now.Add(-time.Hour), 100.5, 50)) // a repeat: absorbed
	pub(t, gw, sampleTopic, sample(3, now.Add(-time.Minute), 101.25, 60))
	waitFor(t, 20*time.Second, "2 more readings written", func() bool {
		return s.metric(t, "cleanprod_ingest_readings_written_total") == 2
	})
	if got := s.metric(t, "cleanprod_ingest_duplicates_total"); got != 2 {
		t.Errorf("duplicates after restart: got %g, want 2", got)
	}
	gw.Disconnect(100)
	s.stop(t)

	st, err := store.OpenBolt(dataDir + "/readings.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rs, err := st.Readings(context.Background(), "test-plant", "E-PAINT-01", now.Add(-3*time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	var deltas []float64
	for _, r := range rs {
		deltas = append(deltas, r.Delta)
	}
	if fmt.Sprint(deltas) != "[0 500 750]" {
		t.Errorf("E-PAINT-01 deltas across a restart: got %v kWh, want [0 500 750]", deltas)
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"bad registry", nil, []string{"-gateway_config", "testdata/bad-gateway-config"},
			[]string{`plant.yaml:7: meter "E-PAINT-01": unit "kW" is not declared`, `plant.yaml:8: flow_meter "WW-OUTLET"`}},
		{"bad values", map[string]string{"CLEANPROD_INGEST_BATCH_INTERVAL": "soon"}, []string{"-ingest.history", "0", "-log.level", "loud", "-ingest.future_horizon", "8760h"},
			[]string{"CLEANPROD_INGEST_BATCH_INTERVAL: want a duration", "ingest.history must be positive", `log.level "loud"`, "ingest.future_horizon 8760h0m0s is over 24h"}},
		{"unacked bounds", nil, []string{"-mqtt.max_unacked_messages", "0", "-mqtt.max_unacked_bytes", "1000"},
			[]string{"mqtt.max_unacked_messages must be positive", "mqtt.max_unacked_bytes (1000) is below ingest.max_payload_bytes (262144)"}},
		{"unknown flag", nil, []string{"-mqtt.uri", "tcp://x"}, []string{"flag provided but not defined: -mqtt.uri"}},
		{"stray argument", nil, []string{"-influx.gzip", "false", "-ingest.writers", "4"}, []string{`serve takes no arguments, got ["false" "-ingest.writers" "4"]`}},
		{"missing config file", nil, []string{"-config", "testdata/nope.yaml"}, []string{"nope.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), append([]string{"serve", "-http.listen", "127.0.0.1:0"}, tt.args...), func(k string) string { return tt.env[k] }, &out, &out)
			if err == nil {
				t.Fatal("serve started with a bad configuration")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error()+out.String(), w) {
					t.Errorf("got %q, want it to mention %q", err.Error()+out.String(), w)
				}
			}
		})
	}
}

func TestGatewaysCheck(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"gateways", "check", "testdata/gateway-config"}, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatalf("got %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "OK: 1 enterprises, 1 gateways, 3 meters") {
		t.Errorf("got %q", out.String())
	}
	out.Reset()
	err := run(context.Background(), []string{"gateways", "check", "testdata/bad-gateway-config"}, func(string) string { return "" }, &out, &out)
	if err == nil || !strings.Contains(out.String(), "2 problem(s)") {
		t.Errorf("got %v %q, want a failure listing 2 problems", err, out.String())
	}
}

func TestGatewaysMosquittoACL(t *testing.T) {
	dir := t.TempDir()
	args := []string{"gateways", "mosquitto-acl", "-dir", "testdata/gateway-config", "-credentials", dir + "/creds.txt", "-out", dir}
	var out bytes.Buffer
	if err := run(context.Background(), args, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	first, _ := os.ReadFile(dir + "/creds.txt")
	if err := run(context.Background(), args, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(dir + "/creds.txt")
	if string(first) != string(second) || !strings.Contains(string(first), "test-plant.gw-paint-01:") {
		t.Errorf("credentials changed between runs or miss the gateway:\n%s\n%s", first, second)
	}
	acl, _ := os.ReadFile(dir + "/acl")
	if !strings.Contains(string(acl), "user test-plant.gw-paint-01\ntopic write cp/v1/test-plant/gw-paint-01/telemetry") {
		t.Errorf("acl:\n%s", acl)
	}
}

// A fatal error is a structured log record in the configured format, not
// a plain line that a log collector cannot parse.
func TestFatalErrorIsALogRecord(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"serve", "-log.format", "json", "-gateway_config", filepath.Join(t.TempDir(), "missing"),
		"-data_dir", t.TempDir(), "-http.listen", freeAddr(t), "-embedded_broker.listen", freeAddr(t)}, func(string) string { return "" }, &out, &errOut)
	if err == nil {
		t.Fatal("serve with a missing registry folder started")
	}
	var rec struct {
		Level, Msg, Err string
	}
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); jerr != nil || rec.Level != "ERROR" || !strings.Contains(rec.Err, "gateway registry") {
		t.Fatalf("last stderr line %q (%v), want a JSON error record naming the registry", lines[len(lines)-1], jerr)
	}
	var logged loggedError
	if !errors.As(err, &logged) || err.Error() != rec.Err {
		t.Errorf("returned %v, want the logged error", err)
	}
}

// readyzStatus is the status of GET /readyz at addr (0: no answer).
func readyzStatus(addr string) int {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// writeRefuser stands in front of InfluxDB and, while refuse is set,
// answers every write as a full disk does (500), passing the rest on.
type writeRefuser struct {
	URL     string
	refuse  atomic.Bool
	refused atomic.Int64 // writes refused so far
}

func newWriteRefuser(t *testing.T, influxURL string) *writeRefuser {
	t.Helper()
	target, err := url.Parse(influxURL)
	if err != nil {
		t.Fatal(err)
	}
	f := &writeRefuser{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.refuse.Load() && strings.HasSuffix(r.URL.Path, "/write") {
			f.refused.Add(1)
			http.Error(w, `{"error":"engine: disk full"}`, http.StatusInternalServerError)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	f.URL = front.URL
	return f
}

// A store that answers pings but refuses writes makes serve not ready,
// and ready again once writes pass.
func TestReadyzFailsWhileWritesFail(t *testing.T) {
	testenv.NeedServers(t)
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	front := newWriteRefuser(t, db.URL)
	refuse, refused := &front.refuse, &front.refused
	env := map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token}
	s := startServe(t, env, "-mqtt.url", broker.URL(), "-influx.url", front.URL, "-influx.bucket", db.Bucket,
		"-gateway_config", "testdata/gateway-config", "-data_dir", t.TempDir())
	readyz := func() int { return readyzStatus(s.http) }
	refuse.Store(true)
	gw := mqttClient(t, broker.URL(), "test-gateway")
	now := time.Now().Truncate(time.Second)
	pub(t, gw, sampleTopic, sample(1042, now.Add(-time.Minute), 182.7345, 41.7))
	waitFor(t, 20*time.Second, "a refused write", func() bool { return refused.Load() > 0 })
	waitFor(t, 20*time.Second, "/readyz 503 while writes fail", func() bool { return readyz() == http.StatusServiceUnavailable })
	refuse.Store(false)
	waitFor(t, 60*time.Second, "/readyz 200 once writes pass", func() bool { return readyz() == http.StatusOK })
	waitFor(t, 20*time.Second, "the held readings stored", func() bool {
		return db.MustCountReadings(t, "") == 2
	})
}

// TestServeStopsPastAStalledClient: a client that opened a request and
// never finished it (or a connection pool's unused spare) must not turn
// a SIGTERM into a failed exit once the grace for requests has passed.
func TestServeStopsPastAStalledClient(t *testing.T) {
	s := startServe(t, nil, "-embedded_broker.listen", freeAddr(t), "-gateway_config", "testdata/gateway-config")
	c, err := net.Dial("tcp", s.http)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /api/v1/enterprises HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the server reads the first bytes: the connection is active
	s.stop(t)
	if !strings.Contains(s.logs.String(), "HTTP connections still open at shutdown are closed") {
		t.Errorf("the cut-off connection was not logged\n%s", s.logs)
	}
}
