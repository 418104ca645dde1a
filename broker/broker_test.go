package broker

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.etcd.io/bbolt"
)

func start(t *testing.T, addr, dir string) *Broker {
	t.Helper()
	b, err := Start(Config{Addr: addr, DataDir: dir}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// collector is a persistent-session subscriber with manual acks.
type collector struct {
	mu  sync.Mutex
	got map[string]bool
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

func subscriber(t *testing.T, url string, c *collector) mqtt.Client {
	t.Helper()
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID("persistent-sub").SetCleanSession(false).
		SetAutoAckDisabled(true).SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
		c.mu.Lock()
		c.got[string(m.Payload())] = true
		c.mu.Unlock()
		m.Ack()
	})
	cl := mqtt.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	return cl
}

// queueWhileAway subscribes the persistent subscriber, disconnects it and
// publishes n messages for it; it returns the subscriber's collector.
func queueWhileAway(t *testing.T, b *Broker, n int) *collector {
	t.Helper()
	c := &collector{got: map[string]bool{}}
	sub := subscriber(t, b.URL(), c)
	if tok := sub.Subscribe("cp/v1/+/+/telemetry", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	sub.Disconnect(100)
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("gw"))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer pub.Disconnect(100)
	for i := range n {
		if tok := pub.Publish("cp/v1/e/g/telemetry", 1, false, fmt.Sprint(i)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	return c
}

// restartAndCollect closes b, starts the broker again on its address and
// data folder, connects the persistent subscriber and returns how many of
// the n messages it has within 20 s.
func restartAndCollect(t *testing.T, b *Broker, dir string, c *collector, n int) int {
	t.Helper()
	addr := b.Addr()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = start(t, addr, dir)
	defer b.Close()
	sub := subscriber(t, b.URL(), c)
	defer sub.Disconnect(100)
	deadline := time.Now().Add(20 * time.Second)
	for c.count() < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return c.count()
}

// Messages published while the subscriber was away survive a restart of
// the embedded broker and reach the subscriber's persistent session.
func TestSessionsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	b := start(t, "127.0.0.1:0", dir)
	const n = 500
	c := queueWhileAway(t, b, n)
	if got := restartAndCollect(t, b, dir, c, n); got != n {
		t.Errorf("got %d of %d messages after the restart", got, n)
	}
}

// A message recorded by the write-ahead hook but never queued (the crash
// window between PUBACK and queueing) is published again at start.
func TestWALReplaysAfterCrash(t *testing.T) {
	dir := t.TempDir()
	b := start(t, "127.0.0.1:0", dir)
	addr := b.Addr()
	c := &collector{got: map[string]bool{}}
	sub := subscriber(t, b.URL(), c)
	if tok := sub.Subscribe("cp/v1/+/+/telemetry", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	sub.Disconnect(100)
	b.Close()
	// Simulate the crash window: a record left behind in the WAL.
	w, err := openWAL(dir+"/broker-wal.db", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(walBucket).Put([]byte{0, 0, 0, 0, 0, 0, 0, 1}, encodeWAL(packets.Packet{
			FixedHeader: packets.FixedHeader{Qos: 1}, TopicName: "cp/v1/e/g/telemetry", Payload: []byte("lost-in-the-window"),
		}))
	}); err != nil {
		t.Fatal(err)
	}
	w.Stop()

	b = start(t, addr, dir)
	defer b.Close()
	sub = subscriber(t, b.URL(), c)
	defer sub.Disconnect(100)
	deadline := time.Now().Add(10 * time.Second)
	for c.count() < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !c.got["lost-in-the-window"] {
		t.Errorf("the recorded message was not delivered after the restart; got %v", c.got)
	}
}

// A session taken over by a new connection of the same client hands its
// queue on: mochi deletes the queued messages from the session store as
// it clears the old connection's, and stores each again only as it sends
// it on the new one. A consumer that reconnected and went away before
// that (or a process killed meanwhile) lost them at the broker's next
// start. They stay stored now until acknowledged.
func TestTakenOverSessionKeepsItsQueue(t *testing.T) {
	dir := t.TempDir()
	b := start(t, "127.0.0.1:0", dir)
	const n = 500
	c := queueWhileAway(t, b, n)

	// The consumer comes back and is gone at once: a CONNECT of its
	// persistent session, then the connection closed.
	conn, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	id := "persistent-sub"
	connect := []byte{0x10, byte(12 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, 0, 0, 60, 0, byte(len(id))}
	if _, err := conn.Write(append(connect, id...)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for atomic.LoadInt64(&b.srv.Info.ClientsConnected) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if got := restartAndCollect(t, b, dir, c, n); got != n {
		t.Errorf("got %d of %d messages after the session was taken over and the broker restarted", got, n)
	}
}
