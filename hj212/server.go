package hj212

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Server receives HJ 212 frames from data loggers over TCP. Set its fields,
// then call Serve; the zero values of the limits are the defaults named
// beside them. Fields must not change once Serve has been called.
//
// Per connection one goroutine reads (framer, parser, joiner, Handler and
// OnError calls) and one writes replies; nothing else touches the
// connection. Memory per connection is bounded by one frame buffer, the
// Joiner's limits and MaxPending requests.
type Server struct {
	Codec Codec

	// Handler receives every complete packet (split parts joined) that is
	// valid: data uploads (IsData) with Data parsed, and every other
	// command with Data nil unless IgnoreCommands is set. It runs on the
	// connection's reader goroutine: it should hand the Request over and
	// return; the reader waits for it. It must settle each Request
	// exactly once with Confirm, Refuse or Drop, from any goroutine, at
	// any later time. Required.
	Handler func(*Request)

	// OnError, when set, receives every rejected frame, packet or
	// garbage run, with the first RawLimit bytes in err.Raw, on the
	// reader goroutine. The Server has already decided the reply: a 9011
	// with err.QnRtn when err.QN could be read.
	OnError func(remote net.Addr, err *Error)

	// IgnoreCommands drops packets whose CN is not a data upload (the
	// logger's own 9011/9013/9014 replies, 2021 status, 1xxx, ...)
	// without calling Handler or answering; they are counted in
	// Stats.Ignored.
	IgnoreCommands bool

	MaxConns     int           // open connections; beyond, closed at once (Stats.Refused); 0 means 1000
	MaxPending   int           // requests unsettled plus replies unwritten per connection; at the bound the connection stops reading; 0 means 16
	MaxBadFrames int           // consecutive rejected frames before the connection is closed; 0 means 10
	IdleTimeout  time.Duration // no byte for this long closes the connection; 0 means 10 minutes (loggers send every minute)
	FrameTimeout time.Duration // a frame must complete within this after its first byte; 0 means 30 seconds
	WriteTimeout time.Duration // for each reply write; 0 means 30 seconds
	KeepAlive    time.Duration // TCP keepalive idle time and probe interval; 0 means 1 minute, negative disables
	SplitPackets int           // incomplete split packets per connection (Joiner.MaxPackets); 0 means 4
	SplitTimeout time.Duration // Joiner.Timeout; 0 means 2 minutes

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	quit      chan struct{} // closed by Shutdown: stop accepting and reading
	force     chan struct{} // closed when Shutdown's ctx ends: stop waiting
	wg        sync.WaitGroup
	st        counters
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("hj212: server closed")

// Stats are the Server's counters since it started; the caller exports them
// as metrics. Gauges: Active, Pending, Stalled.
type Stats struct {
	Accepted      int64 // connections accepted
	Refused       int64 // connections closed at once: MaxConns reached or shutting down
	Active        int64 // connections open
	Frames        int64 // frames with a good length and CRC
	Packets       int64 // requests handed to Handler
	Ignored       int64 // packets not handed over (IgnoreCommands)
	Rejected      int64 // errors handed to OnError
	Confirmed     int64 // requests confirmed
	Refusals      int64 // requests refused by the Handler
	Dropped       int64 // requests dropped by the Handler
	Acks          int64 // 9014 written
	Replies       int64 // 9011 written
	WriteErrors   int64 // reply writes that failed (connection then closed)
	Pending       int64 // requests handed over and not settled
	Stalled       int64 // connections not reading because MaxPending is reached
	IdleTimeouts  int64 // connections closed for silence
	FrameTimeouts int64 // connections closed for a frame not completing in time
	BadCloses     int64 // connections closed after MaxBadFrames consecutive rejects
}

type counters struct {
	accepted, refused, active, frames, packets, ignored, rejected atomic.Int64
	confirmed, refusals, dropped, acks, replies, writeErrors      atomic.Int64
	pending, stalled, idleTimeouts, frameTimeouts, badCloses      atomic.Int64
}

// Stats returns a snapshot of the counters; safe for concurrent use.
func (s *Server) Stats() Stats {
	c := &s.st
	return Stats{
		Accepted: c.accepted.Load(), Refused: c.refused.Load(), Active: c.active.Load(),
		Frames: c.frames.Load(), Packets: c.packets.Load(), Ignored: c.ignored.Load(), Rejected: c.rejected.Load(),
		Confirmed: c.confirmed.Load(), Refusals: c.refusals.Load(), Dropped: c.dropped.Load(),
		Acks: c.acks.Load(), Replies: c.replies.Load(), WriteErrors: c.writeErrors.Load(),
		Pending: c.pending.Load(), Stalled: c.stalled.Load(), IdleTimeouts: c.idleTimeouts.Load(),
		FrameTimeouts: c.frameTimeouts.Load(), BadCloses: c.badCloses.Load(),
	}
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func (s *Server) init() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.quit == nil {
		s.quit = make(chan struct{})
		s.force = make(chan struct{})
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
	}
}

func (s *Server) shuttingDown() bool {
	select {
	case <-s.quit:
		return true
	default:
		return false
	}
}

// ListenAndServe listens on the TCP address addr and calls Serve.
func (s *Server) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// Serve accepts connections on l until Shutdown (then it returns
// ErrServerClosed) or l fails. It closes l.
func (s *Server) Serve(l net.Listener) error {
	if s.Handler == nil {
		l.Close()
		return errors.New("hj212: Server.Handler is nil")
	}
	s.init()
	s.mu.Lock()
	if s.shuttingDown() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	backoff := 5 * time.Millisecond
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.shuttingDown() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of descriptors and the like: wait and try again.
			select {
			case <-time.After(backoff):
			case <-s.quit:
				return ErrServerClosed
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		s.accept(nc)
	}
}

func (s *Server) accept(nc net.Conn) {
	s.mu.Lock()
	if s.shuttingDown() || len(s.conns) >= orDefault(s.MaxConns, 1000) {
		s.mu.Unlock()
		s.st.refused.Add(1)
		nc.Close()
		return
	}
	c := newConn(s, nc)
	s.conns[c] = struct{}{}
	s.wg.Add(2)
	s.mu.Unlock()
	s.st.accepted.Add(1)
	s.st.active.Add(1)
	if tc, ok := nc.(*net.TCPConn); ok && s.KeepAlive >= 0 {
		ka := orDefault(s.KeepAlive, time.Minute)
		_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: ka, Interval: ka, Count: 3})
	}
	go c.writeLoop()
	go c.serve()
}

// Shutdown stops accepting and reading, waits until every pending request
// is settled and its reply written, then closes the connections. If ctx
// ends first, it closes them at once and returns ctx.Err(); a Request
// settled later is a no-op. Serve returns ErrServerClosed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	if !s.shuttingDown() {
		close(s.quit)
	}
	for l := range s.listeners {
		l.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.stopReading()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		select {
		case <-s.force:
		default:
			close(s.force)
		}
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// Request is one valid, complete packet for the Handler.
type Request struct {
	Remote net.Addr
	Packet Packet
	Data   *Data  // parsed CP of a data upload (IsData(Packet.CN)); nil for other commands
	Raw    []byte // the frame as received; a joined packet's frames in PNO order
	c      *conn
	done   atomic.Bool
}

// Confirm says the packet is stored; the Server then writes the 9014
// acknowledgement if the packet's Flag asked for one. Like Refuse and
// Drop it may be called from any goroutine; only the first of the three
// counts, and a call after the connection closed does nothing.
func (r *Request) Confirm() {
	if !r.done.CompareAndSwap(false, true) {
		return
	}
	r.c.s.st.confirmed.Add(1)
	r.c.s.st.pending.Add(-1)
	if r.Packet.Flag.Ack() {
		r.c.enqueue(Ack(r.Packet), &r.c.s.st.acks)
		return
	}
	r.c.release()
}

// Refuse answers the packet with a 9011 carrying rtn (e.g. QnRtnBadPW,
// QnRtnBadMN).
func (r *Request) Refuse(rtn QnRtn) {
	if !r.done.CompareAndSwap(false, true) {
		return
	}
	r.c.s.st.refusals.Add(1)
	r.c.s.st.pending.Add(-1)
	r.c.enqueue(Reply(r.Packet.QN, r.Packet.PW, r.Packet.MN, rtn), &r.c.s.st.replies)
}

// Drop settles the packet without any reply.
func (r *Request) Drop() {
	if !r.done.CompareAndSwap(false, true) {
		return
	}
	r.c.s.st.dropped.Add(1)
	r.c.s.st.pending.Add(-1)
	r.c.release()
}

// conn is one logger connection. slots holds a token for each request
// unsettled or reply unwritten: the reader puts one in before handing a
// request over or queueing a reply, the writer (or Drop) takes it out.
type conn struct {
	s      *Server
	nc     net.Conn
	slots  chan struct{}
	wake   chan struct{} // cap 1: the queue has work
	stop   chan struct{} // closed when the writer may exit once the queue is empty
	exited chan struct{} // closed by the writer on exit

	mu     sync.Mutex // guards queue and closed
	queue  [][]byte
	closed bool

	dmu     sync.Mutex // guards stopped against Shutdown's deadline
	stopped bool

	// Reader goroutine only.
	frameStart time.Time // first byte of the frame being read; zero between frames
	joiner     Joiner
	bad        int // consecutive rejects
}

func newConn(s *Server, nc net.Conn) *conn {
	return &conn{s: s, nc: nc, joiner: Joiner{MaxPackets: s.SplitPackets, Timeout: s.SplitTimeout},
		slots: make(chan struct{}, orDefault(s.MaxPending, 16)),
		wake:  make(chan struct{}, 1), stop: make(chan struct{}), exited: make(chan struct{})}
}

var errStopped = errors.New("hj212: server shutting down")

// stopReading makes the reader's current and next Read fail.
func (c *conn) stopReading() {
	c.dmu.Lock()
	c.stopped = true
	_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	c.dmu.Unlock()
}

// Read sets the deadline for each read: IdleTimeout between frames,
// FrameTimeout from the first byte of a frame.
func (c *conn) Read(p []byte) (int, error) {
	now := time.Now()
	c.dmu.Lock()
	if c.stopped {
		c.dmu.Unlock()
		return 0, errStopped
	}
	deadline := now.Add(orDefault(c.s.IdleTimeout, 10*time.Minute))
	if !c.frameStart.IsZero() {
		if d := c.frameStart.Add(orDefault(c.s.FrameTimeout, 30*time.Second)); d.Before(deadline) {
			deadline = d
		}
	}
	_ = c.nc.SetReadDeadline(deadline)
	c.dmu.Unlock()
	n, err := c.nc.Read(p)
	if n > 0 && c.frameStart.IsZero() {
		c.frameStart = time.Now()
	}
	return n, err
}

// serve is the reader goroutine.
func (c *conn) serve() {
	s := c.s
	defer s.wg.Done()
	fr := NewFramer(c, &s.Codec)
	for {
		frame, err := fr.Next()
		var e *Error
		if err != nil && !errors.As(err, &e) {
			if errors.Is(err, os.ErrDeadlineExceeded) && !c.isStopped() {
				if c.frameStart.IsZero() {
					s.st.idleTimeouts.Add(1)
				} else {
					s.st.frameTimeouts.Add(1)
				}
			}
			break // io.EOF, reset, timeout, shutdown
		}
		// Bytes already buffered belong to the next frame: its clock runs.
		if fr.Buffered() == 0 {
			c.frameStart = time.Time{}
		} else {
			c.frameStart = time.Now()
		}
		var more bool
		if e != nil {
			more = c.reject(e, true)
		} else {
			s.st.frames.Add(1)
			more = c.handle(frame)
		}
		if !more {
			break
		}
	}
	for _, e := range c.joiner.Flush() {
		c.reject(e, false)
	}
	c.finish()
}

// handle takes one frame whose length and CRC are right; false means the
// connection is to be closed.
func (c *conn) handle(frame []byte) bool {
	s := c.s
	now := time.Now()
	for _, e := range c.joiner.Expire(now) {
		if !c.reject(e, false) {
			return false
		}
	}
	p, err := s.Codec.ParseSegment(frame[6 : len(frame)-6])
	if err != nil {
		e := err.(*Error)
		e.Raw = clip(frame)
		return c.reject(e, true)
	}
	raw := frame // the Joiner copies a part
	if p.PNUM == 0 {
		raw = append([]byte(nil), frame...)
	}
	p, raw, done, err := c.joiner.Add(p, raw, now)
	if err != nil {
		return c.reject(err.(*Error), true)
	}
	c.bad = 0
	if !done {
		return true
	}
	req := &Request{Remote: c.nc.RemoteAddr(), Packet: p, Raw: raw, c: c}
	if IsData(p.CN) {
		d, err := s.Codec.ParseData(p.CP)
		if err != nil {
			e := err.(*Error)
			e.QnRtn, e.QN, e.PW, e.MN, e.Raw = QnRtnUnknown, p.QN, p.PW, p.MN, clip(raw)
			return c.reject(e, true)
		}
		req.Data = &d
	} else if s.IgnoreCommands {
		s.st.ignored.Add(1)
		return true
	}
	if !c.acquire() {
		return false
	}
	s.st.packets.Add(1)
	s.st.pending.Add(1)
	s.Handler(req)
	return true
}

// reject reports e, answers it with a 9011 when its QN is known and, when
// it counts as a bad frame, closes the connection (false) after
// MaxBadFrames in a row. Expired split packets do not count: the logger
// may have been cut off.
func (c *conn) reject(e *Error, counts bool) bool {
	s := c.s
	s.st.rejected.Add(1)
	if s.OnError != nil {
		s.OnError(c.nc.RemoteAddr(), e)
	}
	if e.QN != "" && e.QnRtn != 0 {
		if !c.acquire() {
			return false
		}
		c.enqueue(Reply(e.QN, e.PW, e.MN, e.QnRtn), &s.st.replies)
	}
	if !counts {
		return true
	}
	c.bad++
	if c.bad >= orDefault(s.MaxBadFrames, 10) {
		s.st.badCloses.Add(1)
		return false
	}
	return true
}

func (c *conn) isStopped() bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	return c.stopped
}

// acquire takes a slot, waiting while MaxPending are taken; false when
// the server is shutting down.
func (c *conn) acquire() bool {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
	}
	c.s.st.stalled.Add(1)
	defer c.s.st.stalled.Add(-1)
	select {
	case c.slots <- struct{}{}:
		return true
	case <-c.s.quit:
		return false
	}
}

func (c *conn) release() { <-c.slots }

// enqueue queues reply p for the writer; the slot it holds is released
// once written, or at once if the connection is gone.
func (c *conn) enqueue(p Packet, count *atomic.Int64) {
	frame, err := c.s.Codec.Encode(p)
	c.mu.Lock()
	if c.closed || err != nil {
		c.mu.Unlock()
		c.release()
		return
	}
	c.queue = append(c.queue, frame)
	count.Add(1)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// finish waits until every slot is free (requests settled, replies
// written) unless the shutdown is forced, then stops the writer and closes.
func (c *conn) finish() {
	s := c.s
	for range cap(c.slots) {
		select {
		case c.slots <- struct{}{}:
			continue
		case <-s.force:
		}
		break
	}
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	close(c.stop)
	<-c.exited
	c.nc.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.st.active.Add(-1)
}

// writeLoop writes queued replies, several in one system call when they
// have piled up. After a write error it only releases slots.
func (c *conn) writeLoop() {
	defer c.s.wg.Done()
	defer close(c.exited)
	var batch [][]byte
	broken := false
	for {
		stopping := false
		select {
		case <-c.wake:
		case <-c.stop:
			stopping = true
		}
		c.mu.Lock()
		batch, c.queue = c.queue, batch[:0]
		c.mu.Unlock()
		if len(batch) > 0 && !broken {
			_ = c.nc.SetWriteDeadline(time.Now().Add(orDefault(c.s.WriteTimeout, 30*time.Second)))
			bufs := net.Buffers(batch)
			if _, err := bufs.WriteTo(c.nc); err != nil {
				broken = true
				c.s.st.writeErrors.Add(1)
				c.nc.Close() // the reader sees it and winds down
			}
		}
		for i := range batch {
			batch[i] = nil
			c.release()
		}
		if stopping {
			return
		}
	}
}

var _ io.Reader = (*conn)(nil)
