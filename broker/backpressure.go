package broker

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// DefaultQueueLimit is the default of Config.QueueLimit: mochi keeps a
// session's queue in its in-flight table, at most MaximumInflight (65,535,
// the packet ids there are) and drops QoS 1 messages past it; the 5,535
// between are for publishes that pass the check at the same moment (one
// per gateway connection at most).
const DefaultQueueLimit = 60000

// Headroom returns the queue limit to give the broker for a consumer that
// holds at most n unacknowledged: nine tenths of it. What the broker
// publishes again from its WAL at start passes the check; the tenth
// keeps it from filling the consumer past its own bound, where it would
// defer messages that mochi can only send again, out of order, after a
// reconnect.
func Headroom(n int) int { return max(1, n-n/10) }

// backpressure makes gateways wait instead of mochi dropping: while a
// consumer's session (cleanprod's subscriber) holds QueueLimit messages
// or QueueBytes bytes unacknowledged, sent or waiting to be sent, a QoS 1
// or 2 publish of another client is held before mochi acknowledges or
// queues it. That client's reader waits, so its gateway gets no PUBACK
// and keeps the message (and, if it gives up and reconnects, sends it
// again). The consumers' own publishes (dead-letters) never wait: they
// share the connection that acknowledges the queue.
//
// The check and the publish that passes it count as one: a publish that
// passed is pending until mochi has queued it (OnPublished), so gateways
// publishing at once cannot overshoot the limit together.
//
// mochi gives a hook no signal when a session's queue shrinks, so a held
// publish looks again every 5 ms.
type backpressure struct {
	mqtt.HookBase
	srv        *mqtt.Server
	consumers  []string
	limit      int
	limitBytes int64
	held       atomic.Int64 // publishes that had to wait
	stop       chan struct{}
	stopped    atomic.Bool

	mu      sync.Mutex
	pending map[string]int64            // client -> size of its publish that passed, not yet queued
	sizes   map[string]map[uint16]int64 // consumer -> packet id -> size of a queued message
	bytes   map[string]int64            // consumer -> bytes queued
}

func newBackpressure(srv *mqtt.Server, consumers []string, limit int, limitBytes int64) *backpressure {
	b := &backpressure{srv: srv, consumers: consumers, limit: limit, limitBytes: limitBytes, stop: make(chan struct{}),
		pending: map[string]int64{}, sizes: map[string]map[uint16]int64{}, bytes: map[string]int64{}}
	for _, id := range consumers {
		b.sizes[id] = map[uint16]int64{}
	}
	return b
}

// ID names the hook.
func (b *backpressure) ID() string { return "cleanprod-backpressure" }

// Provides says which events the hook handles.
func (b *backpressure) Provides(x byte) bool {
	switch x {
	case mqtt.OnPublish, mqtt.OnPublished, mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped, mqtt.OnDisconnect:
		return true
	}
	return false
}

// Stop releases the publishes still held.
func (b *backpressure) Stop() error {
	if b.stopped.CompareAndSwap(false, true) {
		close(b.stop)
	}
	return nil
}

func size(pk packets.Packet) int64 { return int64(len(pk.TopicName) + len(pk.Payload)) }

// OnPublish holds a QoS 1 or 2 publish while a consumer's queue is full.
// It runs on the publishing client's reader.
func (b *backpressure) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Qos == 0 || cl.Net.Inline || slices.Contains(b.consumers, cl.ID) {
		return pk, nil
	}
	n := size(pk)
	var tick *time.Ticker
	for !b.pass(cl.ID, n) {
		if tick == nil {
			b.held.Add(1)
			tick = time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
		}
		select {
		case <-tick.C:
		case <-b.stop:
			return pk, packets.ErrRejectPacket // not acknowledged: the gateway sends it again
		}
		if cl.Closed() {
			return pk, packets.ErrRejectPacket
		}
	}
	return pk, nil
}

// pass reports whether a publish of n bytes fits every consumer's queue,
// counting the publishes that passed and are not queued yet; if it does,
// it is counted among them.
func (b *backpressure) pass(client string, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.pending, client) // its previous publish is done, queued or not
	var msgs, bytes int64
	for _, p := range b.pending {
		msgs++
		bytes += p
	}
	for _, id := range b.consumers {
		c, ok := b.srv.Clients.Get(id)
		if !ok || c.Closed() {
			// The consumer is away (not yet connected, or between a
			// disconnect and its session's takeover): a message routed
			// to its closed client in that window can be lost as mochi
			// moves the session to the new connection. The publish waits
			// until the consumer is back.
			return false
		}
		if int64(c.State.Inflight.Len())+msgs+1 > int64(b.limit) || (b.bytes[id]+bytes+n > b.limitBytes && c.State.Inflight.Len() > 0) {
			return false
		}
	}
	b.pending[client] = n
	return true
}

// OnPublished: the publish that passed is queued.
func (b *backpressure) OnPublished(cl *mqtt.Client, _ packets.Packet) {
	b.mu.Lock()
	delete(b.pending, cl.ID)
	b.mu.Unlock()
}

// OnDisconnect: a publish that passed is not pending any more.
func (b *backpressure) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	b.OnPublished(cl, packets.Packet{})
}

// OnQosPublish counts a message queued for (or sent again to) a consumer.
func (b *backpressure) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if pk.FixedHeader.Type == packets.Publish {
		b.count(cl.ID, pk.PacketID, size(pk))
	}
}

// count adds a message of n bytes to a consumer's queue, once.
func (b *backpressure) count(client string, id uint16, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m, ok := b.sizes[client]; ok {
		if _, seen := m[id]; !seen {
			m[id] = n
			b.bytes[client] += n
		}
	}
}

// restored counts a message of a consumer's queue loaded from the
// session store at start.
func (b *backpressure) restored(client string, id uint16, n int64) { b.count(client, id, n) }

// OnQosComplete: a consumer acknowledged a message.
func (b *backpressure) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	b.forget(cl.ID, pk.PacketID)
}

// OnQosDropped: a message left a consumer's queue unacknowledged. A
// session taken over hands its queue on to the new connection of the same
// client (same packet ids): those messages are still queued.
func (b *backpressure) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if cl.IsTakenOver() {
		return
	}
	b.forget(cl.ID, pk.PacketID)
}

func (b *backpressure) forget(client string, id uint16) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m, ok := b.sizes[client]; ok {
		b.bytes[client] -= m[id]
		delete(m, id)
	}
}
