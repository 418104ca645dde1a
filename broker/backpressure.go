package broker

import (
	"slices"
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

// backpressure makes gateways wait instead of mochi dropping: while a
// consumer's session (cleanprod's subscriber) holds QueueLimit messages
// unacknowledged, sent or waiting to be sent, a QoS 1 or 2 publish of
// another client is held before mochi acknowledges or queues it. That
// client's reader waits, so its gateway gets no PUBACK and keeps the
// message (and, if it gives up and reconnects, sends it again). The
// consumers' own publishes (dead-letters) never wait: they share the
// connection that acknowledges the queue.
//
// mochi gives a hook no signal when a session's queue shrinks, so a held
// publish looks again every 5 ms.
type backpressure struct {
	mqtt.HookBase
	srv       *mqtt.Server
	consumers []string
	limit     int
	held      atomic.Int64 // publishes that had to wait
	stop      chan struct{}
	stopped   atomic.Bool
}

func newBackpressure(srv *mqtt.Server, consumers []string, limit int) *backpressure {
	return &backpressure{srv: srv, consumers: consumers, limit: limit, stop: make(chan struct{})}
}

// ID names the hook.
func (b *backpressure) ID() string { return "cleanprod-backpressure" }

// Provides says which events the hook handles.
func (b *backpressure) Provides(x byte) bool { return x == mqtt.OnPublish }

// Stop releases the publishes still held.
func (b *backpressure) Stop() error {
	if b.stopped.CompareAndSwap(false, true) {
		close(b.stop)
	}
	return nil
}

// OnPublish holds a QoS 1 or 2 publish while a consumer's queue is full.
// It runs on the publishing client's reader.
func (b *backpressure) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Qos == 0 || cl.Net.Inline || slices.Contains(b.consumers, cl.ID) || !b.full() {
		return pk, nil
	}
	b.held.Add(1)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for b.full() {
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

func (b *backpressure) full() bool {
	for _, id := range b.consumers {
		if c, ok := b.srv.Clients.Get(id); ok && c.State.Inflight.Len() >= b.limit {
			return true
		}
	}
	return false
}
