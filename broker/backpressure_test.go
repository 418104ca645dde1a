package broker

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// TestBackpressureInsteadOfDrops: a consumer that acknowledges nothing
// (cleanprod with its store down) and a gateway publishing far more than
// the queue limit. The consumer's queue stops at the limit, the gateway's
// publishes wait unacknowledged instead of being dropped, and once the
// consumer acknowledges again every message reaches it.
func TestBackpressureInsteadOfDrops(t *testing.T) {
	const limit, total = 300, 2000
	b, err := Start(Config{Addr: "127.0.0.1:0", Consumers: []string{"consumer"}, QueueLimit: limit}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	// The consumer holds every message unacknowledged.
	var received atomic.Int64
	hold := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("consumer").SetCleanSession(false).
		SetAutoAckDisabled(true).SetOrderMatters(false).SetDefaultPublishHandler(func(mqtt.Client, mqtt.Message) { received.Add(1) }))
	if tok := hold.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if tok := hold.Subscribe("cp/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	// The gateway publishes without waiting for each acknowledgement; a
	// long keep-alive, since its publishes wait behind the full queue.
	gw := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("gw").SetKeepAlive(5 * time.Minute))
	if tok := gw.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer gw.Disconnect(100)
	var acked atomic.Int64
	var wg sync.WaitGroup
	for i := range total {
		tok := gw.Publish("cp/v1/e/g/telemetry", 1, false, fmt.Sprintf("m%05d", i))
		wg.Go(func() {
			if tok.Wait(); tok.Error() == nil {
				acked.Add(1)
			}
		})
	}

	peak := 0
	deadline := time.Now().Add(60 * time.Second)
	for b.HeldPublishes() == 0 || received.Load() < limit {
		peak = max(peak, b.Queued("consumer"))
		if n := received.Load(); n > limit {
			t.Fatalf("consumer was sent %d messages it has not acknowledged, want at most the limit %d", n, limit)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queue never filled: %d held publishes, %d received", b.HeldPublishes(), received.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Full: watch it stay at the limit for a while.
	for range 100 {
		peak = max(peak, b.Queued("consumer"))
		time.Sleep(5 * time.Millisecond)
	}
	if peak > limit {
		t.Errorf("consumer's queue reached %d, want at most the limit %d", peak, limit)
	}
	if n := acked.Load(); n >= total {
		t.Errorf("all %d publishes acknowledged while the consumer's queue was full: no back-pressure", n)
	}
	if d := b.Dropped(); d != 0 {
		t.Errorf("broker dropped %d messages", d)
	}

	// The consumer comes back acknowledging: everything arrives.
	hold.Disconnect(100)
	c := &collector{got: map[string]bool{}}
	opts := mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("consumer").SetCleanSession(false).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			c.mu.Lock()
			c.got[string(m.Payload())] = true
			c.mu.Unlock()
		})
	sub := mqtt.NewClient(opts)
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer sub.Disconnect(100)
	wg.Wait()
	for c.count() < total && time.Now().Before(deadline.Add(60*time.Second)) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := c.count(); got != total {
		t.Errorf("consumer received %d distinct messages, want %d", got, total)
	}
	if n := acked.Load(); n != total {
		t.Errorf("gateway got %d acknowledgements, want %d", n, total)
	}
	if d := b.Dropped(); d != 0 {
		t.Errorf("broker dropped %d messages", d)
	}
	t.Logf("peak queue %d of limit %d; %d publishes waited", peak, limit, b.HeldPublishes())
}
