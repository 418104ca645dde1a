package deploycheck

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/cleanprod/cleanprod/gatewayauth"
	"github.com/cleanprod/cleanprod/registry"
)

// crashLoss is what a broker SIGKILL cost: messages the broker had
// acknowledged to a gateway and queued for the service's session, and how
// many of them the service got after the broker restarted.
type crashLoss struct {
	acked, delivered int
	rate             float64 // messages per second while publishing
}

// window is the loss expressed in seconds of acknowledged messages.
func (l crashLoss) window() time.Duration {
	return time.Duration(float64(l.acked-l.delivered) / l.rate * float64(time.Second))
}

// leaveSession subscribes cleanprod's persistent session to the
// telemetry and disconnects, so that the broker queues for it.
func (b *broker) leaveSession(t *testing.T) {
	t.Helper()
	svc, err := b.connect(t, "cleanprod", "cleanprod", "", false, func(paho.Client, paho.Message) {})
	if err != nil {
		t.Fatal(err)
	}
	if tok := svc.Subscribe("cp/v1/+/+/telemetry", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	svc.Disconnect(100)
}

// measureCrashLoss publishes QoS 1 telemetry at rate for d while the
// service's persistent session is away, kills the broker right after the
// last PUBACK, restarts it and counts what the session delivers.
func measureCrashLoss(t *testing.T, b *broker, rate int, d time.Duration) crashLoss {
	t.Helper()
	gw := b.reg.Enterprises[0].Gateways[0]
	topic := "cp/v1/" + gw.Enterprise.ID + "/" + gw.ID + "/telemetry"
	b.leaveSession(t)

	g, err := b.connect(t, "gateway", gatewayauth.UserName(gw), "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(fmt.Sprintf(`{"gateway": %q, "seq": 1, "readings": [{"meter": "M", "ts": "2026-01-01T00:00:00Z", "value": 1.25}]}`, gw.ID))
	var acked atomic.Int64
	start := time.Now()
	n := int(float64(rate) * d.Seconds())
	toks := make(chan paho.Token, 1000)
	go func() {
		for tok := range toks {
			if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
				acked.Add(1)
			}
		}
	}()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); wait > 0 {
			time.Sleep(wait)
		}
		toks <- g.Publish(topic, 1, false, payload)
	}
	close(toks)
	for acked.Load() < int64(n) && time.Since(start) < d+10*time.Second {
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	b.crash(t)
	g.Disconnect(0)
	b.start(t)

	var got atomic.Int64
	if _, err := b.connect(t, "cleanprod", "cleanprod", "", false, func(_ paho.Client, m paho.Message) { got.Add(1); m.Ack() }); err != nil {
		t.Fatal(err)
	}
	last, lastChange := int64(-1), time.Now()
	for time.Since(lastChange) < 2*time.Second {
		if c := got.Load(); c != last {
			last, lastChange = c, time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return crashLoss{acked: int(acked.Load()), delivered: int(got.Load()), rate: float64(n) / took.Seconds()}
}

// statedCrashWindow is the loss window README.md states for a broker
// SIGKILL with the shipped mosquitto.conf.
func statedCrashWindow(t *testing.T) time.Duration {
	t.Helper()
	data, err := os.ReadFile(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`SIGKILL[^.]*loses at most the last (\d+) s`).FindSubmatch(data)
	if m == nil {
		t.Fatal("README.md states no loss window for a broker SIGKILL (\"... loses at most the last N s ...\")")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return time.Duration(n) * time.Second
}

// A broker SIGKILL loses no more acknowledged telemetry than README.md
// states for the shipped persistence settings.
func TestBrokerCrashLoss(t *testing.T) {
	reg, err := registry.Load("../../gateway-config")
	if err != nil {
		t.Fatal(err)
	}
	b := startShippedMosquitto(t, reg, generateBrokerFiles(t, reg))
	stated := statedCrashWindow(t)
	rate, d := 500, 3*stated
	if v, _ := strconv.Atoi(os.Getenv("CRASH_RATE")); v > 0 {
		rate = v
	}
	l := measureCrashLoss(t, b, rate, d)
	t.Logf("broker SIGKILL: %d of %d acknowledged messages delivered after the restart (%.0f msg/s): lost %s of telemetry; README states at most %s",
		l.delivered, l.acked, l.rate, l.window().Round(10*time.Millisecond), stated)
	if l.window() > stated {
		t.Errorf("lost %s of acknowledged telemetry, README states at most %s", l.window(), stated)
	}
}

// What the shipped autosave costs: the broker writes its whole queue to
// disk every autosave_interval seconds, so the cost grows with the
// backlog. This publishes a backlog as fast as a gateway can while the
// service is away, with the shipped settings and with the 60 s of
// mosquitto's examples, and logs the rates (README.md, "Reliability").
// Set CLEANPROD_MEASURE_AUTOSAVE=N to publish N messages (default 20000).
func TestBrokerAutosaveCost(t *testing.T) {
	n := 20000
	if v, _ := strconv.Atoi(os.Getenv("CLEANPROD_MEASURE_AUTOSAVE")); v > 0 {
		n = v
	}
	reg, err := registry.Load("../../gateway-config")
	if err != nil {
		t.Fatal(err)
	}
	files := generateBrokerFiles(t, reg)
	for _, o := range [][]string{nil, {"autosave_interval 60"}} {
		b := startShippedMosquitto(t, reg, files, o...)
		b.leaveSession(t)
		gw := b.reg.Enterprises[0].Gateways[0]
		g, err := b.connect(t, "gateway", gatewayauth.UserName(gw), "", true, nil)
		if err != nil {
			t.Fatal(err)
		}
		topic := "cp/v1/" + gw.Enterprise.ID + "/" + gw.ID + "/telemetry"
		payload := make([]byte, 300) // a gateway message of about ten readings
		start := time.Now()
		toks := make([]paho.Token, 0, 1000)
		for range n {
			toks = append(toks, g.Publish(topic, 1, false, payload))
			if len(toks) == cap(toks) {
				for _, tok := range toks {
					tok.Wait()
				}
				toks = toks[:0]
			}
		}
		for _, tok := range toks {
			tok.Wait()
		}
		took := time.Since(start)
		b.crash(t)
		t.Logf("settings %v: a backlog of %d messages of %d bytes queued at %.0f msg/s", o, n, len(payload), float64(n)/took.Seconds())
	}
}
