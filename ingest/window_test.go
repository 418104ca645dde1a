package ingest

import (
	"fmt"
	"testing"
)

// TestWindow walks the window through a store outage: it fills, defers in
// order, absorbs the broker's copies after a reconnect, and asks for the
// reconnect that brings the deferred messages back once half is free.
func TestWindow(t *testing.T) {
	lows := 0
	w := newWindow(4, 1000, func() { lows++ })
	acks := map[string]int{}
	ackOf := func(conn, name string) func() { return func() { acks[conn+"/"+name]++ } }
	payload := func(i int) []byte { return fmt.Appendf(nil, `{"seq":%d}`, i) }

	var held []*heldMsg
	for i := 1; i <= 6; i++ {
		h, res := w.offer(uint16(i), "t", payload(i), ackOf("c1", fmt.Sprint(i)), true)
		switch {
		case i <= 4 && res != offerHeld:
			t.Fatalf("message %d: got %v, want held", i, res)
		case i > 4 && res != offerDeferred:
			t.Fatalf("message %d: got %v, want deferred", i, res)
		}
		if h != nil {
			held = append(held, h)
		}
	}
	if n, b := w.usage(); n != 4 || b != 4*int64(1+len(payload(1))) {
		t.Fatalf("usage: got %d messages %d bytes, want 4 and %d", n, b, 4*(1+len(payload(1))))
	}
	// A QoS 0 message that does not fit is dropped, never deferred.
	if _, res := w.offer(0, "t", payload(99), nil, false); res != offerDropped {
		t.Fatalf("QoS 0 on a full window: got %v, want dropped", res)
	}

	// The broker reconnects and sends its unacknowledged messages again.
	w.newConnection()
	for i := 1; i <= 4; i++ {
		if _, res := w.offer(uint16(i), "t", payload(i), ackOf("c2", fmt.Sprint(i)), true); res != offerRedelivered {
			t.Fatalf("copy of held message %d: got %v, want redelivered", i, res)
		}
	}
	// Same packet id, other payload: another message (the broker lost the
	// session), which does not fit.
	if _, res := w.offer(1, "t", payload(100), ackOf("c2", "x"), true); res != offerDeferred {
		t.Fatalf("other message with a held id: got %v, want deferred", res)
	}
	if n, _ := w.usage(); n != 4 {
		t.Fatalf("after the reconnect: got %d held, want 4", n)
	}

	held[0].release()
	held[0].release() // a second release does nothing
	if lows != 0 {
		t.Fatalf("3 of 4 held: got %d low calls, want 0", lows)
	}
	held[1].release()
	if lows != 1 {
		t.Fatalf("2 of 4 held: got %d low calls, want 1", lows)
	}
	held[2].release()
	if lows != 1 {
		t.Fatalf("low is asked once per connection: got %d calls", lows)
	}
	// Acknowledged on the connection of the latest copy, once.
	for i := 1; i <= 3; i++ {
		if got := acks[fmt.Sprintf("c2/%d", i)]; got != 1 {
			t.Errorf("message %d: acknowledged %d times on the new connection, want 1", i, got)
		}
		if got := acks[fmt.Sprintf("c1/%d", i)]; got != 0 {
			t.Errorf("message %d: acknowledged %d times on the old connection, want 0", i, got)
		}
	}
	// Still deferring until the next connection, to keep arrival order.
	if _, res := w.offer(7, "t", payload(7), nil, true); res != offerDeferred {
		t.Fatalf("before the reconnect: got %v, want deferred", res)
	}
	w.newConnection()
	if _, res := w.offer(5, "t", payload(5), nil, true); res != offerHeld {
		t.Fatalf("after the reconnect: got %v, want held", res)
	}

	// One message larger than the byte bound is taken when nothing is held.
	big := newWindow(10, 8, nil)
	if _, res := big.offer(1, "t", make([]byte, 100), nil, true); res != offerHeld {
		t.Fatalf("oversized message on an empty window: got %v, want held", res)
	}
	if _, res := big.offer(2, "t", []byte("x"), nil, true); res != offerDeferred {
		t.Fatalf("next message: got %v, want deferred", res)
	}
}

// TestWindowDeferringWhenDrained: a message deferred on a window already
// drained to half the bound (a message of the closed connection coming
// after the new one began, or the window emptied before it) asks for the
// reconnect at once: no release is left to ask, and the broker would keep
// every later message for good.
func TestWindowDeferringWhenDrained(t *testing.T) {
	lows := 0
	w := newWindow(4, 1000, func() { lows++ })
	var held []*heldMsg
	for i := 1; i <= 5; i++ {
		if h, _ := w.offer(uint16(i), "t", []byte{byte(i)}, func() {}, true); h != nil {
			held = append(held, h)
		}
	}
	for _, h := range held {
		h.release()
	}
	if lows != 1 {
		t.Fatalf("drained: %d low calls, want 1", lows)
	}
	w.newConnection()
	// A late message of the old connection finds the window empty but
	// makes it defer (as a full window would have): it asks at once.
	w.deferring = true
	if _, res := w.offer(9, "t", []byte{9}, func() {}, true); res != offerDeferred {
		t.Fatalf("got %v, want deferred", res)
	}
	if lows != 2 {
		t.Fatalf("deferring with nothing held: %d low calls, want 2", lows)
	}
}
