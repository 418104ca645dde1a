package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cleanprod/cleanprod/gatewayauth"
	"github.com/cleanprod/cleanprod/internal/testenv"
)

func randomSecret(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// passwordBroker starts mosquitto refusing anonymous clients, with the
// users and passwords given.
func passwordBroker(t *testing.T, users map[string]string) *testenv.Broker {
	t.Helper()
	var passwd strings.Builder
	for u, p := range users {
		h, err := gatewayauth.HashPassword(p)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&passwd, "%s:%s\n", u, h)
	}
	return testenv.Mosquitto(t, testenv.WithoutAnonymous(), testenv.WithFile("passwd", []byte(passwd.String())), testenv.WithConfig("password_file passwd"))
}

// httpText returns the status and body of GET http://addr/path, or the
// error's text.
func httpText(addr, path string) string {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Status + "\n" + string(b)
}

// checkNoSecret fails t if any secret occurs in any of the texts.
func checkNoSecret(t *testing.T, texts map[string]string, secrets map[string]string) {
	t.Helper()
	for where, text := range texts {
		for what, secret := range secrets {
			if secret != "" && strings.Contains(text, secret) {
				i := strings.Index(text, secret)
				t.Errorf("the %s shows in %s: ...%s...", what, where, text[max(0, i-120):min(len(text), i+len(secret)+40)])
			}
		}
	}
}

// TestSecretsStayOutOfLogsAndMetrics runs serve with a broker password and
// an InfluxDB token from the environment, at log level debug, through a
// broker restart (connection lost, reconnects), an InfluxDB outage (failed
// writes, retries) and readings in between; then, in a second run, with a
// wrong password and a wrong token (refused connects, refused writes).
// Neither the secrets nor the wrong ones (a typo of a secret is a secret)
// appear in the logs, in /metrics, or in /readyz and /healthz.
func TestSecretsStayOutOfLogsAndMetrics(t *testing.T) {
	password, gwPassword := randomSecret(t, "mqtt-pw-"), randomSecret(t, "gw-pw-")
	broker := passwordBroker(t, map[string]string{"cleanprod": password, "gw": gwPassword})
	influx := testenv.NewInflux(t)
	db := influx.Database(t)
	_, influxPassword, _ := strings.Cut(db.Token, ":")
	if len(influxPassword) < 6 {
		t.Fatalf("influx token %q: want user:password", db.Token)
	}
	wrongPassword, wrongToken := password+"x", "admin:"+randomSecret(t, "influx-pw-")
	secrets := map[string]string{
		"broker password": password, "InfluxDB token": db.Token, "InfluxDB password": influxPassword,
		"wrong broker password": wrongPassword, "wrong InfluxDB token": wrongToken,
	}
	args := []string{"-mqtt.url", broker.URL(), "-mqtt.username", "cleanprod", "-influx.url", db.URL, "-influx.bucket", db.Bucket,
		"-gateway_config", "testdata/gateway-config", "-log.level", "debug",
		"-mqtt.max_reconnect_interval", "1s", "-mqtt.watchdog_interval", "1s", "-influx.timeout", "2s"}
	env := map[string]string{"CLEANPROD_MQTT_PASSWORD": password, "CLEANPROD_INFLUX_TOKEN": db.Token}
	s := startServe(t, env, append(args, "-data_dir", t.TempDir())...)

	gw := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("test-gateway").SetUsername("gw").SetPassword(gwPassword).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond))
	if tok := gw.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("gateway connect: %v", tok.Error())
	}
	defer gw.Disconnect(100)
	now := time.Now().Truncate(time.Second)
	pub(t, gw, sampleTopic, sample(1, now.Add(-3*time.Minute), 100, 40))
	waitFor(t, 20*time.Second, "2 readings written", func() bool { return s.metricOrZero("cleanprod_ingest_readings_written_total") == 2 })

	// The broker restarts: serve loses the connection and reconnects.
	broker.Stop()
	waitFor(t, 20*time.Second, "connection lost", func() bool { return s.metricOrZero("cleanprod_mqtt_connected") == 0 })
	broker.Start()
	waitFor(t, 30*time.Second, "reconnected", func() bool { return s.metricOrZero("cleanprod_mqtt_connects_total") >= 2 })

	// InfluxDB goes away: writes fail and are retried until it is back.
	influx.Stop()
	pub(t, gw, sampleTopic, sample(2, now.Add(-2*time.Minute), 101, 41))
	waitFor(t, 30*time.Second, "a failed write", func() bool {
		return s.metricOrZero(`cleanprod_store_write_errors_total{kind="temporary"}`) > 0
	})
	influx.Start()
	waitFor(t, 60*time.Second, "4 readings written", func() bool { return s.metricOrZero("cleanprod_ingest_readings_written_total") == 4 })

	texts := map[string]string{
		"/metrics": httpText(s.http, "/metrics"), "/readyz": httpText(s.http, "/readyz"), "/healthz": httpText(s.http, "/healthz"),
	}
	s.stop(t)
	texts["logs"] = s.logs.String()
	for _, want := range []string{"connection to broker lost", "store write failed"} {
		if !strings.Contains(texts["logs"], want) {
			t.Errorf("the logs lack %q: the test did not provoke what it means to", want)
		}
	}
	checkNoSecret(t, texts, secrets)

	// A wrong password: the broker refuses every connect; serve runs, not
	// ready.
	bad := startServeUnready(t, map[string]string{"CLEANPROD_MQTT_PASSWORD": wrongPassword, "CLEANPROD_INFLUX_TOKEN": db.Token}, append(args, "-data_dir", t.TempDir())...)
	waitFor(t, 60*time.Second, "serve connecting to the broker", func() bool { return strings.Contains(bad.logs.String(), "connecting to broker") })
	time.Sleep(3 * time.Second) // connect attempts, refused
	texts = map[string]string{"/metrics (wrong password)": httpText(bad.http, "/metrics"), "/readyz (wrong password)": httpText(bad.http, "/readyz")}
	bad.stop(t)
	texts["logs (wrong password)"] = bad.logs.String()
	if strings.HasPrefix(texts["/readyz (wrong password)"], "200") {
		t.Errorf("ready with a wrong broker password")
	}

	// A wrong token: InfluxDB refuses serve's queries, and serve stops
	// with the error.
	bad = startServeUnready(t, map[string]string{"CLEANPROD_MQTT_PASSWORD": password, "CLEANPROD_INFLUX_TOKEN": wrongToken}, append(args, "-data_dir", t.TempDir())...)
	bad.cancel = nil // it stops by itself
	select {
	case err := <-bad.done:
		if err == nil {
			t.Errorf("serve with a wrong InfluxDB token returned no error")
		} else {
			texts["error (wrong token)"] = err.Error()
		}
	case <-time.After(30 * time.Second):
		t.Errorf("serve with a wrong InfluxDB token still runs after 30s")
	}
	texts["logs (wrong token)"] = bad.logs.String()
	checkNoSecret(t, texts, secrets)
}

// startServeUnready runs serve and returns once it answers /healthz,
// without waiting for it to be ready (it may never be).
func startServeUnready(t *testing.T, env map[string]string, args ...string) *service {
	t.Helper()
	s := &service{http: freeAddr(t), logs: &syncBuffer{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		s.done <- run(ctx, append([]string{"serve", "-http.listen", s.http, "-scoring.declarations", "../../scoring/declarations"}, withDataDir(t, args)...),
			func(k string) string { return env[k] }, s.logs, s.logs)
	}()
	t.Cleanup(func() { s.stop(t) })
	waitFor(t, 30*time.Second, "serve answering /healthz", func() bool { return strings.HasPrefix(httpText(s.http, "/healthz"), "200") })
	return s
}

// paho takes a password from the broker URL (tcp://user:password@host),
// and serve logs its broker and InfluxDB URLs: a password there would be
// logged. serve refuses such a URL, without repeating it.
func TestSecretInURLRefused(t *testing.T) {
	const secret = "s3cret-in-url"
	for _, args := range [][]string{
		{"-mqtt.url", "tcp://cleanprod:" + secret + "@127.0.0.1:1883"},
		{"-mqtt.url", "ssl://cleanprod:" + secret + "%zz@broker:8883/"}, // not even a valid URL
		{"-influx.url", "http://admin:" + secret + "@127.0.0.1:8086"},
	} {
		var out syncBuffer
		err := run(context.Background(), append([]string{"serve", "-http.listen", "127.0.0.1:0", "-data_dir", t.TempDir()}, args...), func(string) string { return "" }, &out, &out)
		if err == nil || !strings.Contains(err.Error(), "carries a password") {
			t.Errorf("%v: got %v, want a refusal", args, err)
			continue
		}
		if strings.Contains(err.Error()+out.String(), secret) {
			t.Errorf("%v: the refusal shows the password: %v\n%s", args, err, out.String())
		}
	}
	cfg := defaultConfig()
	cfg.MQTT.URL = "tcp://user-only@127.0.0.1:1883" // a user name alone is no secret
	for _, err := range cfg.validate() {
		t.Errorf("user name in mqtt.url: %v", err)
	}
}
