package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"

	"github.com/cleanprod/cleanprod/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const waitFor = 10 * time.Second

// connect connects a paho client to url; handler, if not nil, receives every
// message (it is registered before Connect, so queued messages reach it).
func connect(t *testing.T, url, clientID string, handler mqtt.MessageHandler) (mqtt.Client, error) {
	t.Helper()
	opts := mqtt.NewClientOptions().
		AddBroker(url).
		SetClientID(clientID).
		SetAutoReconnect(false).
		SetConnectTimeout(5 * time.Second)
	if handler != nil {
		opts.SetDefaultPublishHandler(handler)
	}
	c := mqtt.NewClient(opts)
	if err := wait(c.Connect()); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func wait(tok mqtt.Token) error {
	if !tok.WaitTimeout(waitFor) {
		return fmt.Errorf("no answer within %v", waitFor)
	}
	return tok.Error()
}

func mustConnect(t *testing.T, url, clientID string, handler mqtt.MessageHandler) mqtt.Client {
	t.Helper()
	c, err := connect(t, url, clientID, handler)
	if err != nil {
		t.Fatalf("connect %s to %s: %v", clientID, url, err)
	}
	return c
}

// receive subscribes c to topic at QoS 1 and returns the channel messages
// arrive on.
func receive(t *testing.T, c mqtt.Client, topic string) <-chan mqtt.Message {
	t.Helper()
	got := make(chan mqtt.Message, 10)
	if err := wait(c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) { got <- m })); err != nil {
		t.Fatalf("subscribe %s: %v", topic, err)
	}
	return got
}

func expectMessage(t *testing.T, got <-chan mqtt.Message, topic, payload string) {
	t.Helper()
	select {
	case m := <-got:
		if m.Topic() != topic || string(m.Payload()) != payload {
			t.Fatalf("got %s %q, want %s %q", m.Topic(), m.Payload(), topic, payload)
		}
	case <-time.After(waitFor):
		t.Fatalf("no message on %s within %v", topic, waitFor)
	}
}

func TestMosquittoPublishReceive(t *testing.T) {
	start := time.Now()
	b := testenv.Mosquitto(t)
	t.Logf("mosquitto started on %s in %v", b.URL(), time.Since(start))

	sub := mustConnect(t, b.URL(), "sub", nil)
	got := receive(t, sub, "factory/+/reading")
	pub := mustConnect(t, b.URL(), "pub", nil)
	if err := wait(pub.Publish("factory/f1/reading", 1, false, "42")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	expectMessage(t, got, "factory/f1/reading", "42")
}

func TestMosquittoRestartKeepsRetained(t *testing.T) {
	b := testenv.Mosquitto(t)
	pub := mustConnect(t, b.URL(), "pub", nil)
	if err := wait(pub.Publish("factory/f1/status", 1, true, "online")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	pub.Disconnect(100)

	addr := b.Addr()
	b.Stop()
	if _, err := connect(t, b.URL(), "early", nil); err == nil {
		t.Fatal("connected to a stopped broker")
	}
	start := time.Now()
	b.Start()
	t.Logf("mosquitto restarted in %v", time.Since(start))
	if b.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", b.Addr(), addr)
	}

	sub := mustConnect(t, b.URL(), "sub", nil)
	expectMessage(t, receive(t, sub, "factory/+/status"), "factory/f1/status", "online")
	if log := b.LogText(); !strings.Contains(log, "mosquitto version") {
		t.Errorf("log has no start line:\n%s", log)
	}
}

func TestMosquittoKill(t *testing.T) {
	b := testenv.Mosquitto(t)
	c := mustConnect(t, b.URL(), "c", nil)
	b.Kill()
	if err := wait(c.Publish("x", 1, false, "lost")); err == nil {
		t.Error("publish to a killed broker succeeded")
	}
	b.Start()
	mustConnect(t, b.URL(), "c2", nil)
}

func TestMosquittoOptions(t *testing.T) {
	t.Run("without anonymous", func(t *testing.T) {
		b := testenv.Mosquitto(t, testenv.WithoutAnonymous())
		if _, err := connect(t, b.URL(), "anon", nil); err == nil {
			t.Fatal("anonymous client connected, want refused")
		}
	})
	t.Run("file and config", func(t *testing.T) {
		// The broker must read the ACL file to start; it lets anonymous
		// clients use allowed/# only.
		b := testenv.Mosquitto(t,
			testenv.WithFile("acl", []byte("topic readwrite allowed/#\n")),
			testenv.WithConfig("acl_file acl"),
		)
		c := mustConnect(t, b.URL(), "c", nil)
		got := receive(t, c, "allowed/#")
		if err := wait(c.Publish("allowed/x", 1, false, "ok")); err != nil {
			t.Fatalf("publish: %v", err)
		}
		expectMessage(t, got, "allowed/x", "ok")
	})
}

func TestInflux(t *testing.T) {
	start := time.Now()
	db := testenv.Influx(t)
	t.Logf("shared influxd ready at %s in %v", db.URL, time.Since(start))
	if db.Bucket != db.Database+"/autogen" {
		t.Errorf("got bucket %q, want %q", db.Bucket, db.Database+"/autogen")
	}

	ts := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	client := influxdb2.NewClient(db.URL, db.Token)
	defer client.Close()
	p := influxdb2.NewPoint("reading", map[string]string{"meter": "m1"}, map[string]any{"value": 42.5}, ts)
	if err := client.WriteAPIBlocking(db.Org, db.Bucket).WritePoint(context.Background(), p); err != nil {
		t.Fatalf("write: %v", err)
	}

	rows := db.QueryFlux(t, fmt.Sprintf(`from(bucket: %q)
  |> range(start: 2024-01-01T00:00:00Z, stop: 2024-01-02T00:00:00Z)
  |> filter(fn: (r) => r._measurement == "reading")`, db.Bucket))
	if len(rows) != 1 {
		t.Fatalf("Flux: got %d rows, want 1: %v", len(rows), rows)
	}
	want := map[string]any{"_time": ts, "_value": 42.5, "_field": "value", "meter": "m1", "table": int64(0)}
	for k, v := range want {
		if got := rows[0][k]; !reflect.DeepEqual(got, v) {
			t.Errorf("Flux: got %s = %#v, want %#v", k, got, v)
		}
	}

	got := db.QueryInfluxQL(t, `SELECT "value", "meter" FROM "reading"`)
	if want := [][]any{{"2024-01-01T12:00:00Z", 42.5, "m1"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("InfluxQL: got %v, want %v", got, want)
	}

	// A second database on the same server is separate.
	other := testenv.Influx(t)
	if other.Database == db.Database || other.URL != db.URL {
		t.Fatalf("second database %s on %s, first %s on %s", other.Database, other.URL, db.Database, db.URL)
	}
	if got := other.QueryInfluxQL(t, `SELECT * FROM "reading"`); len(got) != 0 {
		t.Errorf("fresh database has rows: %v", got)
	}
}

func TestNewInfluxKillStart(t *testing.T) {
	start := time.Now()
	s := testenv.NewInflux(t)
	t.Logf("dedicated influxd ready at %s in %v", s.URL(), time.Since(start))
	db := s.Database(t)
	db.Write(t, "reading,meter=m1 value=1 1704110400000000000\nreading,meter=m1 value=2 1704110460000000000\n")

	s.Kill()
	start = time.Now()
	s.Start()
	t.Logf("influxd restarted after SIGKILL in %v", time.Since(start))

	got := db.QueryInfluxQL(t, `SELECT sum("value") FROM "reading"`)
	if want := [][]any{{"1970-01-01T00:00:00Z", 3.0}}; !reflect.DeepEqual(got, want) {
		t.Errorf("after Kill and Start: got %v, want %v", got, want)
	}

	s.Stop()
	s.Start()
	rows := db.QueryFlux(t, fmt.Sprintf(`from(bucket: %q) |> range(start: 2024-01-01T00:00:00Z) |> count()`, db.Bucket))
	if len(rows) != 1 || rows[0]["_value"] != int64(2) {
		t.Errorf("after Stop and Start: got %v, want one row with _value 2", rows)
	}
}

// TestStartWithoutTest starts and stops both servers through the functions
// for programs, which take a directory instead of a testing.TB.
func TestStartWithoutTest(t *testing.T) {
	testenv.NeedServers(t)
	dir := t.TempDir()

	b, err := testenv.StartMosquitto(filepath.Join(dir, "mosquitto"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() }) // in case the test fails before Close
	c := mustConnect(t, b.URL(), "c", nil)
	got := receive(t, c, "factory/#")
	if err := wait(c.Publish("factory/f1/reading", 1, false, "42")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	expectMessage(t, got, "factory/f1/reading", "42")
	if err := b.Close(); err != nil {
		t.Errorf("close mosquitto: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("close mosquitto again: %v", err)
	}
	if _, err := connect(t, b.URL(), "late", nil); err == nil {
		t.Error("connected to a closed broker")
	}

	s, err := testenv.StartInflux(filepath.Join(dir, "influxd"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.CreateDatabase("bad name"); err == nil {
		t.Error(`CreateDatabase("bad name"): no error`)
	}
	db, err := s.CreateDatabase("bench_1")
	if err != nil {
		t.Fatal(err)
	}
	if db.Bucket != "bench_1/autogen" {
		t.Errorf("got bucket %q, want bench_1/autogen", db.Bucket)
	}
	db.Write(t, "reading,meter=m1 value=1 1704110400000000000\n")
	if got := db.QueryInfluxQL(t, `SELECT count("value") FROM "reading"`); len(got) != 1 || got[0][1] != 1.0 {
		t.Errorf("got %v, want a count of 1", got)
	}
	if err := db.Drop(); err != nil {
		t.Fatal(err)
	}
	if got := db.QueryInfluxQL(t, `SHOW DATABASES`); slices.ContainsFunc(got, func(r []any) bool { return r[0] == "bench_1" }) {
		t.Errorf("bench_1 still listed after Drop: %v", got)
	}
	if err := s.Close(); err != nil {
		t.Errorf("close influxd: %v", err)
	}
}

func TestStartNotInstalled(t *testing.T) {
	t.Setenv("CLEANPROD_MOSQUITTO", filepath.Join(t.TempDir(), "no-such-mosquitto"))
	t.Setenv("CLEANPROD_INFLUXD", filepath.Join(t.TempDir(), "no-such-influxd"))
	if _, err := testenv.StartMosquitto(filepath.Join(t.TempDir(), "m")); !errors.Is(err, testenv.ErrNotInstalled) {
		t.Errorf("StartMosquitto: got %v, want ErrNotInstalled", err)
	}
	if _, err := testenv.StartInflux(filepath.Join(t.TempDir(), "i")); !errors.Is(err, testenv.ErrNotInstalled) {
		t.Errorf("StartInflux: got %v, want ErrNotInstalled", err)
	}
}
