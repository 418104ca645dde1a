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
// gateways' JSON) through Next. Each station has its own connection,
// opened when it first sends and again after a failure or an offline
// period. A frame is published once the platform acknowledged it (9014
// with its QN): a frame not acknowledged within AckTimeout is sent again,
// Retries times, then the connection is dropped and Publish fails, so
// that Run retries with back-off while the frames behind wait: the
// logger's backlog, sent as history once the platform answers again. A
// frame the platform refuses (9011) is not sent again, as a logger gives
// up on a refused frame; Refused counts them.
//
// Run calls Publish for the frames of one station from one goroutine, in
// order; different stations may publish concurrently.
type StationLink struct {
	Addr       string        // the platform's host:port
	Next       Publisher     // for messages that are not HJ 212 frames; nil: they fail
	AckTimeout time.Duration // wait for a 9014 this long before sending again (default 10s)
	Retries    int           // resends before the connection is dropped (default 2)
	Dial       func(ctx context.Context, addr string) (net.Conn, error)

	mu      sync.Mutex // guards conns and the counters
	conns   map[string]*loggerConn
	refused int
	resent  int
}

// StationLinkStats are a StationLink's counters.
type StationLinkStats struct {
	Refused int // frames answered with a 9011 other than a bad CRC's
	Resent  int // frames sent again after no acknowledgement
}

// Stats returns the link's counters; safe at any time.
func (l *StationLink) Stats() StationLinkStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return StationLinkStats{Refused: l.refused, Resent: l.resent}
}

// loggerConn is one station's connection and its reader: replies arrive
// on replies until the connection fails, then dead is closed.
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

// publishMessage sends a station's frame and waits for its answer.
func (l *StationLink) publishMessage(ctx context.Context, m *Message) error {
	if m.frame == nil {
		return l.Publish(ctx, m.Topic, m.Payload)
	}
	fi := m.frame
	if fi.reconnect {
		// Back from an offline period: the old connection died with the link.
		l.drop(fi.mn, nil)
	}
	timeout, retries := l.AckTimeout, l.Retries
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if retries <= 0 {
		retries = 2
	}
	for attempt := 0; attempt <= retries; attempt++ {
		c, err := l.conn(ctx, fi.mn)
		if err != nil {
			return err
		}
		if attempt > 0 {
			l.mu.Lock()
			l.resent++
			l.mu.Unlock()
		}
		c.nc.SetWriteDeadline(time.Now().Add(timeout))
		if _, err := c.nc.Write(m.Payload); err != nil {
			l.drop(fi.mn, c)
			return fmt.Errorf("sim: station %s: send: %w", fi.mn, err)
		}
		reply, err := l.await(ctx, c, fi.qn, timeout)
		switch {
		case err == errNoAnswer:
			if m.Fault == FaultBadCRC {
				return nil // a garbled frame need not be answered
			}
			continue
		case err != nil:
			l.drop(fi.mn, c)
			return fmt.Errorf("sim: station %s: %w", fi.mn, err)
		case reply.CN == hj212.CNAck:
			return nil
		default: // a 9011
			if m.Fault != FaultBadCRC {
				l.mu.Lock()
				l.refused++
				l.mu.Unlock()
			}
			return nil
		}
	}
	l.drop(fi.mn, nil)
	return fmt.Errorf("sim: station %s: frame %s not acknowledged after %d sends", fi.mn, fi.qn, retries+1)
}

var errNoAnswer = errors.New("no answer")

// await waits for the answer to the frame with QN qn: a 9014 or a 9011.
func (l *StationLink) await(ctx context.Context, c *loggerConn, qn string, timeout time.Duration) (hj212.Packet, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case p := <-c.replies:
			if p.QN == qn && (p.CN == hj212.CNAck || p.CN == hj212.CNReply) {
				return p, nil
			}
			// An answer to an earlier send of a frame already settled.
		case <-c.dead:
			return hj212.Packet{}, errors.New("the platform closed the connection")
		case <-t.C:
			return hj212.Packet{}, errNoAnswer
		case <-ctx.Done():
			return hj212.Packet{}, ctx.Err()
		}
	}
}

// conn returns the station's connection, dialling it if needed.
func (l *StationLink) conn(ctx context.Context, mn string) (*loggerConn, error) {
	l.mu.Lock()
	c := l.conns[mn]
	l.mu.Unlock()
	if c != nil {
		select {
		case <-c.dead:
			l.drop(mn, c)
		default:
			return c, nil
		}
	}
	dial := l.Dial
	if dial == nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	nc, err := dial(dctx, l.Addr)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("sim: station %s: connect to %s: %w", mn, l.Addr, err)
	}
	c = &loggerConn{nc: nc, replies: make(chan hj212.Packet, 16), dead: make(chan struct{})}
	go c.read()
	l.mu.Lock()
	if l.conns == nil {
		l.conns = make(map[string]*loggerConn)
	}
	l.conns[mn] = c
	l.mu.Unlock()
	return c, nil
}

// read hands the platform's answers over until the connection fails.
// Answers nobody waits for are dropped when the buffer is full.
func (c *loggerConn) read() {
	defer close(c.dead)
	codec := &hj212.Codec{}
	f := hj212.NewFramer(c.nc, codec)
	for {
		frame, err := f.Next()
		var e *hj212.Error
		switch {
		case errors.As(err, &e):
			continue // a garbled answer: the frame is sent again on timeout
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

// drop closes the station's connection (c, or whichever it has if c is nil).
func (l *StationLink) drop(mn string, c *loggerConn) {
	l.mu.Lock()
	cur := l.conns[mn]
	if c == nil {
		c = cur
	}
	if c != nil && cur == c {
		delete(l.conns, mn)
	}
	l.mu.Unlock()
	if c != nil {
		c.nc.Close()
	}
}

// Close closes every station's connection.
func (l *StationLink) Close() error {
	l.mu.Lock()
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for _, c := range conns {
		c.nc.Close()
	}
	return nil
}
