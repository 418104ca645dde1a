package ingest

import (
	"bytes"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// window bounds what the subscriber holds unacknowledged, in messages and
// bytes (topic plus payload), whichever broker it talks to.
//
// The broker's in-flight window cannot be the bound: mosquitto 2.0.11 with
// max_inflight_messages 1000 let 71,297 messages wait unacknowledged in a
// 4-million-reading run, mochi grants an MQTT 3.1.1 client 65,535, and
// each reconnect while the store was down added another window, since the
// broker sends its unacknowledged messages again and acknowledgements
// for the old connection's copies are dropped by paho.
//
// Blocking paho's ordered handler would bound memory too, but it stops
// paho's reader: the PINGRESP behind a blocked PUBLISH is never read and
// paho drops the connection ("pingresp not received"). So the handler
// never blocks. A message that does not fit is deferred instead: neither
// kept nor acknowledged, so it stays in the broker's session as in flight,
// and so does every later message of that connection, which keeps arrival
// order. Once what is held has fallen to half the bound, the subscriber
// reconnects and the broker sends its unacknowledged messages again
// (MQTT-4.4.0-1, clean session off): a copy of a message still held only
// hands the held message its acknowledgement on the new connection (same
// packet id, topic and payload), the deferred ones are taken in order.
//
// All methods are safe for concurrent use; mu guards every field below it.
type window struct {
	maxMsgs  int
	maxBytes int64

	mu        sync.Mutex
	held      map[uint16][]*heldMsg // by MQTT packet id
	n         int
	bytes     int64
	deferring bool // a message of the current connection was deferred
	asked     bool // the reconnect that ends deferring was requested
	onLow     func()
}

type heldMsg struct {
	w       *window
	id      uint16
	topic   string
	payload []byte
	size    int64
	ack     func() // acknowledges on the connection of the latest copy
	done    bool
}

// offer outcomes.
type offerResult int

const (
	offerHeld        offerResult = iota // taken: hand it to the pipeline
	offerRedelivered                    // a copy of a held message: drop it
	offerDeferred                       // no room: the broker keeps it
	offerDropped                        // no room for a QoS 0 message, which no broker keeps
)

// newWindow returns a window of at most maxMsgs messages and maxBytes
// bytes; onLow is called (without locks held, at most once per deferring
// connection) when a deferring window has drained to half the bound.
func newWindow(maxMsgs int, maxBytes int64, onLow func()) *window {
	return &window{maxMsgs: maxMsgs, maxBytes: maxBytes, held: map[uint16][]*heldMsg{}, onLow: onLow}
}

func msgSize(topic string, payload []byte) int64 { return int64(len(topic) + len(payload)) }

// offer decides what to do with a delivery (acked: QoS 1 or 2, which the
// broker keeps until acknowledged). For offerHeld it returns the held
// message, whose release acknowledges and frees it.
func (w *window) offer(id uint16, topic string, payload []byte, ack func(), acked bool) (*heldMsg, offerResult) {
	w.mu.Lock()
	for _, h := range w.held[id] {
		if acked && h.topic == topic && bytes.Equal(h.payload, payload) {
			h.ack = ack
			w.mu.Unlock()
			return nil, offerRedelivered
		}
	}
	size := msgSize(topic, payload)
	// One message larger than the byte bound is still taken alone, or it
	// would wait forever.
	fits := w.n == 0 || (w.n+1 <= w.maxMsgs && w.bytes+size <= w.maxBytes)
	switch {
	case !acked && !fits:
		w.mu.Unlock()
		return nil, offerDropped
	case acked && (w.deferring || !fits):
		w.deferring = true
		// Deferring while already drained to half (the window emptied
		// before this message of the connection came, or a message of
		// the connection just closed came after the new one began): no
		// release is left to ask for the reconnect that ends it, so ask
		// now, or the broker would keep every later message for good.
		low := !w.asked && w.n <= w.maxMsgs/2 && w.bytes <= w.maxBytes/2
		if low {
			w.asked = true
		}
		w.mu.Unlock()
		if low && w.onLow != nil {
			w.onLow()
		}
		return nil, offerDeferred
	}
	// A QoS 0 message is taken whenever it fits: deferring it would lose
	// it, and it has no place in the broker's order anyway.
	h := &heldMsg{w: w, id: id, topic: topic, payload: payload, size: size, ack: ack}
	w.held[id] = append(w.held[id], h)
	w.n++
	w.bytes += size
	w.mu.Unlock()
	return h, offerHeld
}

// release acknowledges h on the connection of its latest copy and frees
// its room. A second call does nothing.
func (h *heldMsg) release() {
	w := h.w
	w.mu.Lock()
	if h.done {
		w.mu.Unlock()
		return
	}
	h.done = true
	ack := h.ack
	list := w.held[h.id]
	for i, x := range list {
		if x == h {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(w.held, h.id)
	} else {
		w.held[h.id] = list
	}
	w.n--
	w.bytes -= h.size
	low := w.deferring && !w.asked && w.n <= w.maxMsgs/2 && w.bytes <= w.maxBytes/2
	if low {
		w.asked = true
	}
	w.mu.Unlock()
	if ack != nil {
		ack()
	}
	if low && w.onLow != nil {
		w.onLow()
	}
}

// newConnection is called when the connection that deferred messages is
// gone: the next one starts taking messages again.
func (w *window) newConnection() {
	w.mu.Lock()
	w.deferring, w.asked = false, false
	w.mu.Unlock()
}

// usage returns what is held.
func (w *window) usage() (msgs int, bytes int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, w.bytes
}

// newBacklogMetrics adds the window's metrics to m and registers them.
func newBacklogMetrics(reg prometheus.Registerer, m *Metrics) {
	m.unackedBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "cleanprod_ingest_inflight_bytes", Help: "Bytes (topic plus payload) of the messages received and not yet acknowledged.",
	})
	m.deferred = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cleanprod_ingest_deferred_messages_total", Help: "Messages left unacknowledged with the broker because the unacknowledged backlog was full (sent again after a reconnect).",
	})
	m.redelivered = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cleanprod_ingest_redeliveries_absorbed_total", Help: "Copies of messages still held that the broker sent again after a reconnect; the held message is acknowledged on the new connection.",
	})
	m.qos0Dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cleanprod_ingest_qos0_dropped_total", Help: "QoS 0 messages dropped because the unacknowledged backlog was full.",
	})
	m.backlogReconnects = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cleanprod_mqtt_backlog_reconnects_total", Help: "Reconnects made to have the broker send again the messages deferred while the unacknowledged backlog was full.",
	})
	reg.MustRegister(m.unackedBytes, m.deferred, m.redelivered, m.qos0Dropped, m.backlogReconnects)
}
