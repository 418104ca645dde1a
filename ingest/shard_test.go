package ingest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanprod/cleanprod/internal/testenv"
)

// TestShardSubscriptions runs the replica of a shard that owns ent-a but
// not ent-b against a real mosquitto: it subscribes to ent-a's topics
// only; a message of ent-b queued in its session from before (a reshard)
// is acknowledged without being stored and counted; a reload that changes
// its enterprises subscribes and unsubscribes at once.
func TestShardSubscriptions(t *testing.T) {
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	const id = "cleanprod-0of2"
	t0 := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)

	// The session as an earlier assignment left it: subscribed to every
	// enterprise, with a message of ent-b queued.
	old := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID(id).SetCleanSession(false))
	if tok := old.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if tok := old.Subscribe(TelemetryFilter, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	old.Disconnect(100)
	gw := connect(t, broker.URL(), "gw-shard-test")
	publish(t, gw, TelemetryTopic("ent-b", "gw-b"), payload(1, reading("E-B", t0, 10)))

	owns := func(e string) bool { return e == "ent-a" }
	h := startIngestWith(t, broker.URL(), id, testRegistry(t).Only(owns), openInflux(t, db),
		func(c *PipelineConfig) { c.Owns = owns },
		func(c *SubscriberConfig) { c.Enterprises = []string{"ent-a"} })
	notOwned := func() float64 { return testutil.ToFloat64(h.metrics.notOwned.WithLabelValues("mqtt")) }
	waitFor(t, 10*time.Second, "the queued message of ent-b counted as not owned", func() bool { return notOwned() == 1 })
	waitFor(t, 10*time.Second, "subscriber connected", h.sub.Connected)

	// The session still has the old wildcard filter (nothing unsubscribes
	// it), so ent-b's messages keep coming and are counted; ent-a's are
	// stored once, though two filters match them.
	publish(t, gw, TelemetryTopic("ent-a", "gw-1"), payload(1, reading("E-1", t0, 100)))
	publish(t, gw, TelemetryTopic("ent-a", "gw-1"), payload(2, reading("E-1", t0.Add(time.Minute), 150)))
	waitFor(t, 10*time.Second, "ent-a's readings written", func() bool { return testutil.ToFloat64(h.metrics.readings) == 2 })
	if got := sumDelta(t, db, "E-1"); got != 50 {
		t.Errorf("E-1's deltas sum to %g, want 50", got)
	}

	// A new session of the same shard has its filters only.
	h.stop()
	clean := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID(id).SetCleanSession(true))
	if tok := clean.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	clean.Disconnect(100)
	h = startIngestWith(t, broker.URL(), id, testRegistry(t).Only(owns), openInflux(t, db),
		func(c *PipelineConfig) { c.Owns = owns },
		func(c *SubscriberConfig) { c.Enterprises = []string{"ent-a"} })
	notOwned = func() float64 { return testutil.ToFloat64(h.metrics.notOwned.WithLabelValues("mqtt")) }
	waitFor(t, 10*time.Second, "subscriber connected", h.sub.Connected)
	publish(t, gw, TelemetryTopic("ent-b", "gw-b"), payload(2, reading("E-B", t0.Add(time.Minute), 20)))
	publish(t, gw, TelemetryTopic("ent-a", "gw-1"), payload(3, reading("E-1", t0.Add(2*time.Minute), 170)))
	waitFor(t, 10*time.Second, "ent-a's reading written", func() bool { return testutil.ToFloat64(h.metrics.readings) == 1 })
	if got := testutil.ToFloat64(h.metrics.messages); got != 1 {
		t.Errorf("messages received: got %g, want 1 (ent-b is not subscribed to)", got)
	}

	// A reload: ent-b's topics subscribed (its messages come, and this
	// pipeline, which does not own it, counts them), ent-a's dropped.
	h.sub.SetEnterprises([]string{"ent-b"})
	publish(t, gw, TelemetryTopic("ent-a", "gw-1"), payload(4, reading("E-1", t0.Add(3*time.Minute), 190)))
	publish(t, gw, TelemetryTopic("ent-b", "gw-b"), payload(3, reading("E-B", t0.Add(2*time.Minute), 30)))
	waitFor(t, 10*time.Second, "ent-b's message received", func() bool { return notOwned() == 1 })
	if got := testutil.ToFloat64(h.metrics.messages); got != 2 {
		t.Errorf("messages received: got %g, want 2 (ent-a unsubscribed)", got)
	}
	if rows := db.QueryFlux(t, fmt.Sprintf(`from(bucket: %q) |> range(start: 0) |> filter(fn: (r) => r._measurement == "reading" and r.meter == "E-B")`, db.Bucket)); len(rows) != 0 {
		t.Errorf("E-B has %d stored values, want none: not owned, never stored", len(rows))
	}
}

// TestReplicaStatusHolds: a replica of shard count 3 starts while a
// replica of count 1 is live (its retained status on the broker): it
// takes no telemetry, leaves it unacknowledged and says why, until that
// status is cleared; then it reconnects and takes everything, the queued
// message first.
func TestReplicaStatusHolds(t *testing.T) {
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	const prefix, id = "cleanprod/replicas/test/", "test-1of3"
	t0 := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	gw := connect(t, broker.URL(), "gw-status-test")
	old := StatusTopic(prefix, 0, 1)
	if tok := gw.Publish(old, 1, true, `{"count":1,"index":0,"run":"old"}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	// The session exists with a message queued from before.
	pre := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID(id).SetCleanSession(false))
	if tok := pre.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if tok := pre.Subscribe(TelemetryFilter, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	pre.Disconnect(100)
	publish(t, gw, TelemetryTopic("ent-a", "gw-1"), payload(1, reading("E-1", t0, 100)))

	h := startIngestWith(t, broker.URL(), id, testRegistry(t), openInflux(t, db), nil,
		func(c *SubscriberConfig) { c.Status = &ReplicaStatus{Prefix: prefix, Index: 1, Count: 3} })
	waitFor(t, 10*time.Second, "the subscriber saying why it waits", func() bool {
		return strings.Contains(h.sub.Waiting(), "0of1 (shard count 1)")
	})
	publish(t, gw, TelemetryTopic("ent-a", "gw-1"), payload(2, reading("E-1", t0.Add(time.Minute), 150)))
	waitFor(t, 10*time.Second, "both messages held back", func() bool { return testutil.ToFloat64(h.metrics.statusHeld) >= 2 })
	if n := testutil.ToFloat64(h.metrics.messages); n != 0 {
		t.Fatalf("%g messages taken while a replica of count 1 is live, want 0", n)
	}

	// The old replica stops: its status is cleared.
	if tok := gw.Publish(old, 1, true, []byte{}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	waitFor(t, 20*time.Second, "both readings written after the hold", func() bool { return testutil.ToFloat64(h.metrics.readings) == 2 })
	if w := h.sub.Waiting(); w != "" {
		t.Errorf("still waiting: %s", w)
	}
	if got := sumDelta(t, db, "E-1"); got != 50 {
		t.Errorf("E-1's deltas sum to %g, want 50", got)
	}
	// Its own status is on the broker, retained, for the next replica.
	var got []byte
	c := connect(t, broker.URL(), "status-reader")
	done := make(chan struct{})
	c.Subscribe(StatusTopic(prefix, 1, 3), 1, func(_ mqtt.Client, m mqtt.Message) { got = m.Payload(); close(done) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no retained status of the replica")
	}
	if !strings.Contains(string(got), `"count":3`) {
		t.Errorf("status %s, want count 3", got)
	}
}

// TestReplicaStatusRefusedByACL: a broker whose ACL predates the
// replicas' statuses (mosquitto 2.0 grants the subscription and sends
// nothing on it) never sends the replica's own status back; after a
// while the replica says so and takes telemetry rather than wait for
// good: an upgrade must not stop ingest.
func TestReplicaStatusRefusedByACL(t *testing.T) {
	broker := testenv.Mosquitto(t,
		testenv.WithFile("acl", []byte("topic readwrite cp/v1/#\ntopic readwrite cleanprod/watchdog/#\n")),
		testenv.WithConfig("acl_file acl"))
	db := testenv.Influx(t)
	t0 := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	h := startIngestWith(t, broker.URL(), "test-acl", testRegistry(t), openInflux(t, db), nil,
		func(c *SubscriberConfig) {
			c.Status = &ReplicaStatus{Prefix: "cleanprod/replicas/test/", Index: 0, Count: 1}
			c.ConnectTimeout = 2 * time.Second // the echo is overdue after two
		})
	waitFor(t, 10*time.Second, "subscriber connected", h.sub.Connected)
	gw := connect(t, broker.URL(), "gw-acl-test")
	publish(t, gw, TelemetryTopic("ent-a", "gw-1"), payload(1, reading("E-1", t0, 100)))
	waitFor(t, 30*time.Second, "the reading written", func() bool { return testutil.ToFloat64(h.metrics.readings) == 1 })
	if w := h.sub.Waiting(); w != "" {
		t.Errorf("still waiting: %s", w)
	}
}
