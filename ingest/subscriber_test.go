package ingest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/store"
)

// TestResubscribeAfterBrokerRestart kills mosquitto (its session state is
// lost: nothing was saved) and starts it again: the subscriber must
// reconnect AND subscribe again, or it would sit connected and idle.
func TestResubscribeAfterBrokerRestart(t *testing.T) {
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	h := startIngest(t, broker.URL(), "cleanprod-resubscribe", testRegistry(t), openInflux(t, db))
	waitFor(t, 10*time.Second, "subscriber connected", h.sub.Connected)
	t0 := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	send := func(seq int) {
		c := connect(t, broker.URL(), fmt.Sprintf("gw-restart-%d", seq))
		publish(t, c, TelemetryTopic("ent-a", "gw-1"), payload(seq, reading("E-1", t0.Add(time.Duration(seq)*time.Minute), float64(100*seq))))
		c.Disconnect(100)
	}
	send(1)
	waitFor(t, 10*time.Second, "first reading written", func() bool { return testutil.ToFloat64(h.metrics.readings) == 1 })

	broker.Kill()
	waitFor(t, 10*time.Second, "subscriber noticing the loss", func() bool { return !h.sub.Connected() })
	broker.Start()
	waitFor(t, 30*time.Second, "subscriber connected again", h.sub.Connected)
	send(2)
	waitFor(t, 10*time.Second, "reading after the restart written", func() bool { return testutil.ToFloat64(h.metrics.readings) == 2 })
	if got := testutil.ToFloat64(h.metrics.connects); got < 2 {
		t.Errorf("connects: got %g, want at least 2", got)
	}
}

// fakeClient is a paho client whose connection looks up but delivers
// nothing: the failure the watchdog exists for.
type fakeClient struct {
	mu          sync.Mutex
	connects    int
	disconnects int
	onConnect   func()
}

func (f *fakeClient) Connect() mqtt.Token {
	f.mu.Lock()
	f.connects++
	f.mu.Unlock()
	go f.onConnect()
	return doneToken{}
}
func (f *fakeClient) Disconnect(uint) {
	f.mu.Lock()
	f.disconnects++
	f.mu.Unlock()
}
func (f *fakeClient) IsConnectionOpen() bool                     { return true }
func (f *fakeClient) Publish(string, byte, bool, any) mqtt.Token { return doneToken{} }
func (f *fakeClient) SubscribeMultiple(map[string]byte, mqtt.MessageHandler) mqtt.Token {
	return doneToken{}
}
func (f *fakeClient) Unsubscribe(...string) mqtt.Token { return doneToken{} }

func (f *fakeClient) counts() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connects, f.disconnects
}

type doneToken struct{}

func (doneToken) Wait() bool                     { return true }
func (doneToken) WaitTimeout(time.Duration) bool { return true }
func (doneToken) Done() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}
func (doneToken) Error() error { return nil }

// TestWatchdogForcesReconnect: no heartbeat comes back for three
// intervals, so the subscriber reconnects (and so resubscribes) by itself.
func TestWatchdogForcesReconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewMetrics(prometheus.NewRegistry())
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		p := NewPipeline(testRegistry(t), PipelineConfig{}, nil, nil, func([]store.Reading) {}, m, log)
		s := NewSubscriber(SubscriberConfig{Broker: "tcp://unused:1", ClientID: "wd", WatchdogInterval: 10 * time.Second}, p, m, log, nil)
		fake := &fakeClient{}
		fake.onConnect = func() { s.onConnect(nil) }
		s.c = fake
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()

		time.Sleep(25 * time.Second)
		synctest.Wait()
		if c, d := fake.counts(); c != 1 || d != 0 {
			t.Fatalf("after 25s: got %d connects and %d disconnects, want 1 and 0 (not silent long enough)", c, d)
		}
		time.Sleep(20 * time.Second)
		synctest.Wait()
		if c, d := fake.counts(); c != 2 || d != 1 {
			t.Fatalf("after 45s of silence: got %d connects and %d disconnects, want 2 and 1", c, d)
		}
		if got := testutil.ToFloat64(m.watchdogResets); got != 1 {
			t.Errorf("watchdog reconnects: got %g, want 1", got)
		}
		// A heartbeat arriving keeps the connection.
		s.lastBeat.Store(time.Now().UnixNano())
		time.Sleep(20 * time.Second)
		synctest.Wait()
		if c, _ := fake.counts(); c != 2 {
			t.Errorf("with a fresh heartbeat: got %d connects, want still 2", c)
		}
		cancel()
		<-done
	})
}
