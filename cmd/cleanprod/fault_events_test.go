package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/store"
)

// eventListener collects the scoring events cleanprod announces on
// cp/v1/{enterprise}/events, as a supervisor's client would: QoS 1 on a
// persistent session, so that what is announced while the broker
// restarts or cleanprod is killed is still delivered to it.
type eventListener struct {
	client mqtt.Client
	mu     sync.Mutex
	seen   map[string]int // event identity -> times announced
	bad    []string       // payloads that are not events
}

// listenEvents subscribes before the fleet publishes, so that every event
// the run announces reaches the listener.
func listenEvents(t *testing.T, brokerURL string) *eventListener {
	t.Helper()
	l := &eventListener{seen: map[string]int{}}
	handle := func(_ mqtt.Client, m mqtt.Message) {
		var ev scoring.Event
		l.mu.Lock()
		defer l.mu.Unlock()
		if err := json.Unmarshal(m.Payload(), &ev); err != nil || ev.Enterprise == "" || ev.Kind == "" {
			l.bad = append(l.bad, string(m.Payload()))
			return
		}
		l.seen[eventKey(ev.Enterprise, string(ev.Kind), ev.Indicator, ev.Meter, ev.Time)]++
	}
	opts := mqtt.NewClientOptions().AddBroker(brokerURL).SetClientID(fmt.Sprintf("fault-events-%d", time.Now().UnixNano())).
		SetCleanSession(false).SetAutoReconnect(true).SetMaxReconnectInterval(time.Second).SetConnectRetry(true).
		SetDefaultPublishHandler(handle).
		SetOnConnectHandler(func(c mqtt.Client) {
			// Again on every connection: a broker that lost the session
			// (it should not) still sends what comes after.
			c.Subscribe("cp/v1/+/events", 1, handle)
		})
	l.client = mqtt.NewClient(opts)
	if tok := l.client.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("event listener: connect %s: %v", brokerURL, tok.Error())
	}
	if tok := l.client.Subscribe("cp/v1/+/events", 1, handle); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("event listener: subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { l.client.Disconnect(100) })
	return l
}

// eventKey is an event's identity in the store: its tags and its time.
func eventKey(enterprise, kind, indicator, meter string, at time.Time) string {
	return fmt.Sprintf("%s|%s|%s|%s|%d", enterprise, kind, indicator, meter, at.UnixNano())
}

// checkAnnounced compares the events stored (ps, of every enterprise)
// with those announced: each stored one was announced, and each announced
// one is stored (once: a key is one point). The outbox stores first and
// announces after, so it waits up to a minute for the announcements to
// catch up. An event announced twice (a crash between the broker's
// acknowledgement and the outbox's note of it) is counted, not an error:
// MQTT delivery is at least once.
func (l *eventListener) checkAnnounced(t *testing.T, ps []store.Point) (announcedTwice int) {
	t.Helper()
	stored := map[string]bool{}
	for _, p := range ps {
		stored[eventKey(p.Tags["enterprise"], p.Tags["kind"], p.Tags["indicator"], p.Tags["meter"], p.Time)] = true
	}
	var unannounced, unstored []string
	deadline := time.Now().Add(time.Minute)
	for {
		l.mu.Lock()
		unannounced, unstored, announcedTwice = nil, nil, 0
		for k := range stored {
			if l.seen[k] == 0 {
				unannounced = append(unannounced, k)
			}
		}
		for k, n := range l.seen {
			if !stored[k] {
				unstored = append(unstored, k)
			}
			if n > 1 {
				announcedTwice++
			}
		}
		bad := slices.Clone(l.bad)
		l.mu.Unlock()
		if len(bad) > 0 {
			t.Errorf("announced on the events topic but not an event: %q", bad)
		}
		if len(unannounced) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	slices.Sort(unannounced)
	slices.Sort(unstored)
	if len(unannounced) > 0 {
		t.Errorf("%d of %d stored events never announced: %q", len(unannounced), len(stored), unannounced[:min(10, len(unannounced))])
	}
	if len(unstored) > 0 {
		t.Errorf("%d announced events not in the store: %q", len(unstored), unstored[:min(10, len(unstored))])
	}
	if len(stored) == 0 {
		t.Error("no event stored: the comparison tests nothing")
	}
	l.mu.Lock()
	t.Logf("scoring events: %d stored, %d announced (%d of them twice)", len(stored), len(slices.Collect(maps.Keys(l.seen))), announcedTwice)
	l.mu.Unlock()
	return announcedTwice
}

// allEvents reads the stored events of the given enterprises.
func allEvents(t *testing.T, pr interface {
	Points(ctx context.Context, measurement string, tags map[string]string, from, to time.Time) ([]store.Point, error)
}, enterprises []string) []store.Point {
	t.Helper()
	var all []store.Point
	for _, e := range enterprises {
		ps, err := pr.Points(context.Background(), scoring.MeasurementEvent, map[string]string{"enterprise": e}, time.Unix(0, 0), time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ps...)
	}
	return all
}
