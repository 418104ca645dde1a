package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/cleanprod/cleanprod/hj212"
)

// StationLink is a Publisher that sends the stations' HJ 212 frames to a
// platform over TCP, as data loggers do, and every other message (the
// gateways' JSON) through Next.
//
// Each station has its own connection, opened when it first sends and
// again after a failure or an offline period. A frame stays pending until
// the platform answers its QN (9014, or a 9011 refusal: a logger does not
// send a refused frame again). A frame not answered within AckTimeout is
// sent again, Retries times; then the connection is dropped, dialled
// again with back-off, and every pending frame is sent again first, as
// history. Up to Window frames of a station may be pending at once (1,
// the default, is the strict logger that waits for each 9014); Publish
// blocks while the window is full, so a platform that does not answer
// holds the simulation back instead of growing memory. The platform
// stores each reading once however often it is sent.
//
// Run calls Publish for the frames of one station from one goroutine, in
// order; different stations may publish concurrently. Call Flush after
// Run to wait for the last answers, and Close at the end.
type StationLink struct {
	Addr       string        // the platform's host:port
	Next       Publisher     // for messages that are not HJ 212 frames; nil: they fail
	AckTimeout time.Duration // wait for an answer this long before sending again (default 10s)
	Retries    int           // resends of a frame before the connection is dropped (default 2)
	Window     int           // frames of a station pending at once (default 1)
	// Dial opens a connection (default: net.Dialer over TCP).
	Dial func(ctx context.Context, addr string) (net.Conn, error)

	mu       sync.Mutex // guards stations and stats
	stations map[string]*linkStation
	stats    StationLinkStats
}

// StationLinkStats are a StationLink's counters.
type StationLinkStats struct {
	Acked    int // frames answered with a 9014
	Refused  int // intact frames answered with a 9011
	Resent   int // frames sent again: not answered in time, or pending when a connection was dropped
	Dials    int // connections opened
	Failures int // connections that failed or were dropped
}

// Stats returns the link's counters; safe at any time.
func (l *StationLink) Stats() StationLinkStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// linkStation is one station's connection and pending frames. Only the
// goroutine publishing the station's frames touches it.
type linkStation struct {
	mn      string
	conn    *loggerConn
	pending []*pendingFrame // in the order sent
}

type pendingFrame struct {
	qn      string
	payload []byte
	garbled bool // a bad-CRC copy: nobody sends it again
	sent    time.Time
	sends   int
}

// loggerConn is a connection and its reader: answers arrive on replies
// until the connection fails, then dead is closed.
type loggerConn struct {
	nc      net.Conn
	replies chan hj212.Packet
	dead    chan struct{}
}

// Publish sends payload through Next; frames come through publishMessage.
func (l *StationLink) Publish(ctx context.Context, topic string, payload []byte) error {
	if l.Next == nil {
		return fmt.Errorf("sim: station link: no publisher for %s", topic)
	}
	return l.Next.Publish(ctx, topic, payload)
}

func (l *StationLink) timeout() time.Duration {
	if l.AckTimeout <= 0 {
		return 10 * time.Second
	}
	return l.AckTimeout
}

func (l *StationLink) count(f func(*StationLinkStats)) {
	l.mu.Lock()
	f(&l.stats)
	l.mu.Unlock()
}

// publishMessage sends a station's frame, then waits while the station's
// window is full. An error before the frame is written (no connection)
// lets Run try it again; once written, the frame is the link's to deliver.
func (l *StationLink) publishMessage(ctx context.Context, m *Message) error {
	if m.frame == nil {
		return l.Publish(ctx, m.Topic, m.Payload)
	}
	st := l.station(m.frame.mn)
	if m.frame.reconnect && st.conn != nil {
		// Back from an offline period: the old connection died with the link.
		l.fail(st)
	}
	if st.conn == nil {
		if err := l.connect(ctx, st); err != nil {
			return err
		}
	}
	p := &pendingFrame{qn: m.frame.qn, payload: m.Payload, garbled: m.Fault == FaultBadCRC}
	st.pending = append(st.pending, p)
	l.send(st, p)
	return l.settle(ctx, st, max(1, l.Window))
}

// Flush waits until every station's pending frames are answered or ctx
// is done. Call it after Run, not concurrently with it.
func (l *StationLink) Flush(ctx context.Context) error {
	l.mu.Lock()
	var all []*linkStation
	for _, st := range l.stations {
		all = append(all, st)
	}
	l.mu.Unlock()
	for _, st := range all {
		if err := l.settle(ctx, st, 1); err != nil {
			return err
		}
	}
	return nil
}

func (l *StationLink) station(mn string) *linkStation {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stations == nil {
		l.stations = make(map[string]*linkStation)
	}
	st := l.stations[mn]
	if st == nil {
		st = &linkStation{mn: mn}
		l.stations[mn] = st
	}
	return st
}

// send writes one frame; a failed write fails the connection, and the
// frame goes again on the next.
func (l *StationLink) send(st *linkStation, p *pendingFrame) {
	p.sent = time.Now()
	p.sends++
	if st.conn == nil {
		return
	}
	st.conn.nc.SetWriteDeadline(time.Now().Add(l.timeout()))
	if _, err := st.conn.nc.Write(p.payload); err != nil {
		l.fail(st)
	}
}

// settle waits until fewer than window frames of st are pending,
// resending and reconnecting as needed, or ctx is done.
func (l *StationLink) settle(ctx context.Context, st *linkStation, window int) error {
	backoff := 100 * time.Millisecond
	for len(st.pending) >= window {
		if st.conn == nil {
			if err := l.connect(ctx, st); err != nil {
				if !sleep(ctx, backoff) {
					return ctx.Err()
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
		}
		oldest := st.pending[0]
		wait := time.Until(oldest.sent.Add(l.timeout()))
		if wait <= 0 {
			l.expire(st, oldest)
			continue
		}
		t := time.NewTimer(wait)
		select {
		case r := <-st.conn.replies:
			l.answer(st, r)
		case <-st.conn.dead:
			l.drain(st)
			l.fail(st)
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
	return nil
}

// expire handles a frame not answered in time.
func (l *StationLink) expire(st *linkStation, p *pendingFrame) {
	switch {
	case p.garbled:
		l.remove(st, p.qn, true) // a garbled frame need not be answered
	case p.sends > max(0, l.retries()):
		l.fail(st) // the platform is not answering: start over
	default:
		l.count(func(s *StationLinkStats) { s.Resent++ })
		l.send(st, p)
	}
}

func (l *StationLink) retries() int {
	if l.Retries <= 0 {
		return 2
	}
	return l.Retries
}

// drain handles the answers already read from a connection that failed.
func (l *StationLink) drain(st *linkStation) {
	for {
		select {
		case r := <-st.conn.replies:
			l.answer(st, r)
		default:
			return
		}
	}
}

// answer settles the pending frame the platform answered.
func (l *StationLink) answer(st *linkStation, r hj212.Packet) {
	switch r.CN {
	case hj212.CNAck:
		if l.remove(st, r.QN, false) {
			l.count(func(s *StationLinkStats) { s.Acked++ })
		}
	case hj212.CNReply:
		// A garbled copy shares the QN of the intact frame sent after it:
		// the 9011 settles the garbled one first.
		if !l.remove(st, r.QN, true) && l.remove(st, r.QN, false) {
			l.count(func(s *StationLinkStats) { s.Refused++ })
		}
	}
	// Anything else answers a frame already settled, or is a command
	// a logger may ignore.
}

// remove drops the first pending frame with qn whose garbled mark is
// garbled; it reports whether there was one.
func (l *StationLink) remove(st *linkStation, qn string, garbled bool) bool {
	for i, p := range st.pending {
		if p.qn == qn && p.garbled == garbled {
			st.pending = append(st.pending[:i], st.pending[i+1:]...)
			return true
		}
	}
	return false
}

// connect dials the platform and sends the station's pending frames
// again, in order, as history.
func (l *StationLink) connect(ctx context.Context, st *linkStation) error {
	dial := l.Dial
	if dial == nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, l.timeout())
	nc, err := dial(dctx, l.Addr)
	cancel()
	if err != nil {
		l.count(func(s *StationLinkStats) { s.Failures++ })
		return fmt.Errorf("sim: station %s: connect to %s: %w", st.mn, l.Addr, err)
	}
	l.count(func(s *StationLinkStats) { s.Dials++ })
	st.conn = &loggerConn{nc: nc, replies: make(chan hj212.Packet, 256), dead: make(chan struct{})}
	go st.conn.read()
	kept := st.pending[:0]
	for _, p := range st.pending {
		if p.garbled {
			continue // the line garbled it once; it is not sent again
		}
		kept = append(kept, p)
	}
	clear(st.pending[len(kept):])
	st.pending = kept
	for _, p := range st.pending {
		if st.conn == nil {
			break
		}
		l.count(func(s *StationLinkStats) { s.Resent++ })
		p.sends = 0
		l.send(st, p)
	}
	return nil
}

// fail closes the station's connection.
func (l *StationLink) fail(st *linkStation) {
	if st.conn == nil {
		return
	}
	st.conn.nc.Close()
	st.conn = nil
	l.count(func(s *StationLinkStats) { s.Failures++ })
}

// read hands the platform's answers over until the connection fails.
// Answers that find the buffer full are dropped: their frames are sent
// again on timeout.
func (c *loggerConn) read() {
	defer close(c.dead)
	codec := &hj212.Codec{}
	f := hj212.NewFramer(c.nc, codec)
	for {
		frame, err := f.Next()
		var e *hj212.Error
		switch {
		case errors.As(err, &e):
			continue // a garbled answer: its frame is sent again on timeout
		case err != nil:
			return
		}
		p, err := codec.Decode(bytes.Clone(frame))
		if err != nil {
			continue
		}
		select {
		case c.replies <- p:
		default:
		}
	}
}

// Close closes every station's connection. Call it after Run and Flush.
func (l *StationLink) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, st := range l.stations {
		if st.conn != nil {
			st.conn.nc.Close()
			st.conn = nil
		}
	}
	return nil
}
