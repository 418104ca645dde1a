package sim_test

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/cleanprod/cleanprod/sim"
)

// startBroker starts an embedded mochi-mqtt broker on a free local port
// and returns its URL.
func startBroker(t *testing.T) string {
	t.Helper()
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = 262144 // the defaults drop QoS 1 messages under load
	caps.MaximumInflight = 65535
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Capabilities: caps, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return "tcp://" + l.Address()
}

// TestRunOverMQTT publishes a run with faults through the paho adapter to
// an embedded broker and checks that a subscriber receives exactly the
// generated messages, in order per topic.
func TestRunOverMQTT(t *testing.T) {
	url := startBroker(t)
	var (
		mu  sync.Mutex
		got = map[string][][]byte{}
		n   int
	)
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("test-sub").
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			mu.Lock()
			defer mu.Unlock()
			got[m.Topic()] = append(got[m.Topic()], bytes.Clone(m.Payload()))
			n++
		}))
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	if tok := sub.SubscribeMultiple(map[string]byte{"cp/v1/+/+/telemetry": 1, "cp/v1/+/+/hj212": 1}, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}

	client, err := sim.Dial(t.Context(), url, "test-sim")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(100)
	now := time.Now()
	cfg := sim.Config{Seed: 21, Start: now.Add(-25 * time.Hour), Duration: 24 * time.Hour, Faults: allFaults, Resets: 1,
		Now: func() time.Time { return now }}
	want, wantN, _ := expected(t, cfg)
	s, err := sim.New(loadFleet(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(t.Context(), sim.NewMQTTPublisher(client, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		done := n >= wantN
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if n != wantN {
		t.Fatalf("subscriber got %d messages, want %d", n, wantN)
	}
	for topic, w := range want {
		g := got[topic]
		if len(g) != len(w) {
			t.Errorf("%s: got %d messages, want %d", topic, len(g), len(w))
			continue
		}
		for i := range w {
			if !bytes.Equal(g[i], w[i]) {
				t.Errorf("%s: message %d differs:\n got %s\nwant %s", topic, i, g[i], w[i])
				break
			}
		}
	}
	st := s.Stats()
	t.Logf("%s", st)
	if st.Messages != int64(wantN) || st.Errors != 0 {
		t.Errorf("stats: %d messages, %d errors; want %d, 0", st.Messages, st.Errors, wantN)
	}
}

func TestMQTTPublisherTimeout(t *testing.T) {
	pub := sim.NewMQTTPublisher(stuckClient{}, 20*time.Millisecond)
	if err := pub.Publish(t.Context(), "cp/v1/a/b/telemetry", []byte("{}")); err == nil {
		t.Fatal("got no error from a publish never acknowledged")
	}
}

// stuckClient never acknowledges a publish.
type stuckClient struct{}

func (stuckClient) Publish(string, byte, bool, any) paho.Token { return stuckToken{} }

type stuckToken struct{ paho.Token }

func (stuckToken) Done() <-chan struct{} { return nil }
