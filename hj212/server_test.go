package hj212

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

type harness struct {
	s     *Server
	addr  string
	reqs  chan *Request
	errs  chan *Error
	serve chan error
}

// start runs s on 127.0.0.1:0. Without a Handler, requests go to h.reqs
// unsettled; OnError feeds h.errs.
func start(t *testing.T, s *Server) *harness {
	t.Helper()
	h := &harness{s: s, reqs: make(chan *Request, 10000), errs: make(chan *Error, 1000), serve: make(chan error, 1)}
	if s.Handler == nil {
		s.Handler = func(r *Request) { h.reqs <- r }
	}
	s.OnError = func(_ net.Addr, e *Error) { h.errs <- e }
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = l.Addr().String()
	go func() { h.serve <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		if a := s.Stats().Active; a != 0 {
			t.Errorf("%d connections still active after Shutdown", a)
		}
	})
	return h
}

func (h *harness) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (h *harness) req(t *testing.T) *Request {
	t.Helper()
	select {
	case r := <-h.reqs:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the handler")
		return nil
	}
}

// waitFor polls cond; the 10 s bound only keeps a broken test from hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func qnOf(i int) string { return fmt.Sprintf("20261206%09d", 101500000+i) }

func dataSeg(qn string, flag int) string {
	return fmt.Sprintf("QN=%s;ST=32;CN=2051;PW=p;MN=M1;Flag=%d;CP=&&DataTime=20261206101400;w01018-Avg=1.5,w01018-Flag=N&&", qn, flag)
}

func ackOf(qn string) string {
	return refFrame("QN=" + qn + ";ST=91;CN=9014;PW=p;MN=M1;Flag=4;CP=&&&&")
}

func replyOf(qn string, rtn int) string {
	return refFrame(fmt.Sprintf("QN=%s;ST=91;CN=9011;PW=p;MN=M1;Flag=4;CP=&&QnRtn=%d&&", qn, rtn))
}

// expect reads exactly want from c.
func expect(t *testing.T, c net.Conn, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %q: %v (got %q)", want, err, got)
	}
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// expectClosed reads until the server closes c.
func expectClosed(t *testing.T, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("connection not closed by the server: %v", err)
	}
	return b
}

func send(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

func TestServerManyLoggers(t *testing.T) {
	h := start(t, &Server{Handler: func(r *Request) {
		if r.Data == nil || len(r.Data.Values) != 1 || r.Data.Values[0].Value != 1.5 {
			r.Drop()
			return
		}
		go r.Confirm()
	}})
	const loggers, frames = 40, 25
	var wg sync.WaitGroup
	errs := make(chan error, loggers)
	for l := range loggers {
		wg.Go(func() {
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			var out bytes.Buffer
			want := map[string]bool{}
			for i := range frames {
				qn := qnOf(l*1000 + i)
				out.WriteString(refFrame(dataSeg(qn, 5)))
				want[ackOf(qn)] = true
			}
			if _, err := c.Write(out.Bytes()); err != nil {
				errs <- err
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, len(ackOf(qnOf(0))))
			for range frames {
				if _, err := io.ReadFull(c, buf); err != nil {
					errs <- err
					return
				}
				if !want[string(buf)] {
					errs <- fmt.Errorf("logger %d: unexpected reply %q", l, buf)
					return
				}
				delete(want, string(buf))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := h.s.Stats()
	if st.Packets != loggers*frames || st.Acks != loggers*frames || st.Confirmed != loggers*frames || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestServerSplitWrites(t *testing.T) {
	h := start(t, &Server{Handler: func(r *Request) { r.Confirm() }})
	c := h.dial(t)
	f := refFrame(dataSeg(qnOf(1), 5))
	for i := range len(f) { // one byte per write
		send(t, c, f[i:i+1])
	}
	expect(t, c, ackOf(qnOf(1)))
	send(t, c, refFrame(dataSeg(qnOf(2), 5))+refFrame(dataSeg(qnOf(3), 5))) // two in one write
	expect(t, c, ackOf(qnOf(2)))
	expect(t, c, ackOf(qnOf(3)))
}

// TestServerAckAfterConfirm: the 9011 for a later bad frame overtakes the
// 9014 of an unconfirmed packet, which comes only after Confirm.
func TestServerAckAfterConfirm(t *testing.T) {
	h := start(t, &Server{})
	c := h.dial(t)
	send(t, c, refFrame(dataSeg(qnOf(1), 5)))
	r := h.req(t)
	send(t, c, badCRC(refFrame(dataSeg(qnOf(2), 5))))
	expect(t, c, replyOf(qnOf(2), 9)) // first bytes on the wire: no 9014 before them
	got := make(chan []byte)
	go func() {
		b := make([]byte, len(ackOf(qnOf(1))))
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _ := io.ReadFull(c, b)
		got <- b[:n]
	}()
	select {
	case b := <-got:
		t.Fatalf("%q arrived before the handler confirmed", b)
	case <-time.After(50 * time.Millisecond): // a chance for a wrong 9014 to show
	}
	r.Confirm()
	if b := <-got; string(b) != ackOf(qnOf(1)) {
		t.Fatalf("got %q, want the 9014", b)
	}
	r.Confirm() // a second settle is ignored
	r.Refuse(QnRtnBadPW)
	if st := h.s.Stats(); st.Acks != 1 || st.Replies != 1 || st.Confirmed != 1 || st.Refusals != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestServerBadCRCKeepsConnection(t *testing.T) {
	h := start(t, &Server{Handler: func(r *Request) { r.Confirm() }})
	c := h.dial(t)
	bad := badCRC(refFrame(dataSeg(qnOf(7), 5)))
	send(t, c, bad)
	expect(t, c, replyOf(qnOf(7), 9))
	e := <-h.errs
	if e.Reason != ReasonBadCRC || string(e.Raw) != bad {
		t.Fatalf("OnError got %s %q", e.Reason, e.Raw)
	}
	send(t, c, "\x00\x01garbage"+modbusFrame(dataSeg(qnOf(8), 5))+refFrame(dataSeg(qnOf(9), 5)))
	expect(t, c, replyOf(qnOf(8), 9))
	expect(t, c, ackOf(qnOf(9)))
	if e := <-h.errs; e.Reason != ReasonGarbage {
		t.Fatalf("got %s, want garbage", e.Reason)
	}
}

func TestServerRefuseAndDrop(t *testing.T) {
	h := start(t, &Server{})
	c := h.dial(t)
	send(t, c, refFrame(dataSeg(qnOf(1), 5))+refFrame(dataSeg(qnOf(2), 5))+refFrame(dataSeg(qnOf(3), 5)))
	r1, r2, r3 := h.req(t), h.req(t), h.req(t)
	r1.Drop()
	r2.Refuse(QnRtnBadMN)
	r3.Confirm()
	expect(t, c, replyOf(qnOf(2), 4)) // nothing for the dropped one
	expect(t, c, ackOf(qnOf(3)))
}

func TestServerTooManyBadFrames(t *testing.T) {
	h := start(t, &Server{MaxBadFrames: 3})
	c := h.dial(t)
	send(t, c, strings.Repeat(badCRC(refFrame(dataSeg(qnOf(1), 5))), 5))
	if b := expectClosed(t, c); string(b) != strings.Repeat(replyOf(qnOf(1), 9), 3) {
		t.Fatalf("got %q before close", b)
	}
	waitFor(t, "the close to be counted", func() bool { return h.s.Stats().BadCloses == 1 })
}

func TestServerIdleTimeout(t *testing.T) {
	h := start(t, &Server{IdleTimeout: 50 * time.Millisecond, FrameTimeout: time.Minute})
	c := h.dial(t)
	expectClosed(t, c)
	waitFor(t, "idle close", func() bool { return h.s.Stats().Active == 0 })
	if st := h.s.Stats(); st.IdleTimeouts != 1 || st.FrameTimeouts != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestServerSlowSender: a byte every 10 ms keeps the idle timer happy but
// the frame never completes within FrameTimeout.
func TestServerSlowSender(t *testing.T) {
	h := start(t, &Server{IdleTimeout: time.Minute, FrameTimeout: 100 * time.Millisecond})
	c := h.dial(t)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		f := vectorMin
		for i := 0; ; i = (i + 1) % len(f) {
			if _, err := c.Write([]byte{f[i]}); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	expectClosed(t, c)
	waitFor(t, "frame-timeout close", func() bool { return h.s.Stats().Active == 0 })
	if st := h.s.Stats(); st.FrameTimeouts != 1 || st.IdleTimeouts != 0 || st.Packets != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestServerMaxConns(t *testing.T) {
	h := start(t, &Server{MaxConns: 2, Handler: func(r *Request) { r.Confirm() }})
	c1, c2 := h.dial(t), h.dial(t)
	waitFor(t, "two connections", func() bool { return h.s.Stats().Active == 2 })
	c3 := h.dial(t)
	expectClosed(t, c3)
	waitFor(t, "the refusal", func() bool { return h.s.Stats().Refused == 1 })
	send(t, c1, refFrame(dataSeg(qnOf(1), 5)))
	expect(t, c1, ackOf(qnOf(1)))
	c2.Close()
	waitFor(t, "a free place", func() bool { return h.s.Stats().Active == 1 })
	c4 := h.dial(t)
	send(t, c4, refFrame(dataSeg(qnOf(2), 5)))
	expect(t, c4, ackOf(qnOf(2)))
}

// TestServerBackPressure: with MaxPending unsettled requests the server
// stops reading; each settlement lets one more in.
func TestServerBackPressure(t *testing.T) {
	h := start(t, &Server{MaxPending: 2})
	c := h.dial(t)
	var all bytes.Buffer
	for i := range 6 {
		all.WriteString(refFrame(dataSeg(qnOf(i), 4)))
	}
	send(t, c, all.String())
	r0, r1 := h.req(t), h.req(t)
	waitFor(t, "the reader to stall", func() bool { return h.s.Stats().Stalled == 1 })
	if n := len(h.reqs); n != 0 {
		t.Fatalf("%d requests beyond MaxPending", n)
	}
	if st := h.s.Stats(); st.Frames != 3 || st.Pending != 2 {
		t.Fatalf("stats %+v: want 3 frames read, 2 pending", st)
	}
	r0.Confirm()
	r2 := h.req(t)
	if r2.Packet.QN != qnOf(2) {
		t.Fatalf("got %s, want the third packet", r2.Packet.QN)
	}
	waitFor(t, "the reader to stall again", func() bool { return h.s.Stats().Stalled == 1 })
	r1.Confirm()
	r2.Confirm()
	for range 3 {
		h.req(t).Confirm()
	}
	if st := h.s.Stats(); st.Confirmed != 6 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestServerShutdownWaitsForConfirmations(t *testing.T) {
	h := start(t, &Server{})
	c := h.dial(t)
	send(t, c, refFrame(dataSeg(qnOf(1), 5))+refFrame(dataSeg(qnOf(2), 5)))
	r1, r2 := h.req(t), h.req(t)
	done := make(chan error, 1)
	go func() { done <- h.s.Shutdown(context.Background()) }()
	if err := <-h.serve; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	if _, err := net.Dial("tcp", h.addr); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with 2 requests pending", err)
	default:
	}
	go r1.Confirm()
	go r2.Confirm()
	b := expectClosed(t, c)
	if s := string(b); !strings.Contains(s, ackOf(qnOf(1))) || !strings.Contains(s, ackOf(qnOf(2))) || len(s) != 2*len(ackOf(qnOf(1))) {
		t.Fatalf("got %q, want both 9014", b)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestServerShutdownForced(t *testing.T) {
	h := start(t, &Server{})
	c := h.dial(t)
	send(t, c, refFrame(dataSeg(qnOf(1), 5)))
	r := h.req(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.s.Shutdown(ctx) }()
	<-h.serve
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown returned %v, want context.Canceled", err)
	}
	if a := h.s.Stats().Active; a != 0 {
		t.Fatalf("%d connections left", a)
	}
	r.Confirm() // after the close: no panic, no write
	if b := expectClosed(t, c); len(b) != 0 {
		t.Fatalf("got %q after a forced close", b)
	}
}

func TestServerSplitAndCommands(t *testing.T) {
	h := start(t, &Server{})
	c := h.dial(t)
	qn := qnOf(1)
	part := func(pno int, cp string) string {
		return refFrame(fmt.Sprintf("QN=%s;ST=32;CN=2061;PW=p;MN=M1;Flag=7;PNUM=2;PNO=%d;CP=&&%s&&", qn, pno, cp))
	}
	p2, p1 := part(2, "w21003-Avg=0.5,w21003-Flag=N"), part(1, "DataTime=20261206100000;w01018-Avg=1,w01018-Flag=N")
	send(t, c, p2+p1)
	r := h.req(t)
	if r.Data == nil || len(r.Data.Values) != 2 || string(r.Raw) != p1+p2 || r.Packet.PNUM != 0 {
		t.Fatalf("joined request %+v data %+v raw %q", r.Packet, r.Data, r.Raw)
	}
	r.Confirm()
	expect(t, c, ackOf(qn))
	// A logger's 9013 reaches the handler with no Data.
	cmd := refFrame("QN=" + qnOf(2) + ";ST=91;CN=9013;PW=p;MN=M1;Flag=4;CP=&&&&")
	send(t, c, cmd)
	r = h.req(t)
	if r.Packet.CN != "9013" || r.Data != nil || string(r.Raw) != cmd {
		t.Fatalf("command request %+v", r)
	}
	r.Confirm()
	// A split packet left incomplete is reported when the logger leaves.
	lone := refFrame(fmt.Sprintf("QN=%s;ST=32;CN=2061;PW=p;MN=M1;Flag=7;PNUM=3;PNO=2;CP=&&x=1&&", qnOf(3)))
	send(t, c, lone)
	c.Close()
	if e := <-h.errs; e.Reason != ReasonIncomplete || e.QN != qnOf(3) || string(e.Raw) != lone {
		t.Fatalf("got %s %q %q", e.Reason, e.QN, e.Raw)
	}
}

func TestServerIgnoreCommands(t *testing.T) {
	h := start(t, &Server{IgnoreCommands: true, Handler: func(r *Request) { r.Confirm() }})
	c := h.dial(t)
	send(t, c, refFrame("QN="+qnOf(2)+";ST=91;CN=9013;PW=p;MN=M1;Flag=5;CP=&&&&")+refFrame(dataSeg(qnOf(3), 5)))
	expect(t, c, ackOf(qnOf(3)))
	if st := h.s.Stats(); st.Ignored != 1 || st.Packets != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestServerBadData(t *testing.T) {
	h := start(t, &Server{})
	c := h.dial(t)
	f := refFrame(strings.Replace(dataSeg(qnOf(4), 5), "DataTime=20261206101400", "DataTime=101400", 1))
	send(t, c, f)
	expect(t, c, replyOf(qnOf(4), 100))
	if e := <-h.errs; e.Reason != ReasonBadTime || string(e.Raw) != f {
		t.Fatalf("OnError %s %q", e.Reason, e.Raw)
	}
}

// TestServerEndlessGarbage: noise is reported per buffer and the
// connection closed after MaxBadFrames reports.
func TestServerEndlessGarbage(t *testing.T) {
	h := start(t, &Server{MaxBadFrames: 3, Codec: Codec{MaxSegment: 100}})
	c := h.dial(t)
	go func() {
		noise := bytes.Repeat([]byte("#\x00\xff"), 1<<12)
		for {
			if _, err := c.Write(noise); err != nil {
				return
			}
		}
	}()
	expectClosed(t, c)
	waitFor(t, "the close to be counted", func() bool { return h.s.Stats().BadCloses == 1 })
	for range 3 {
		if e := <-h.errs; e.Reason != ReasonGarbage || len(e.Raw) > RawLimit {
			t.Fatalf("got %s with %d raw bytes", e.Reason, len(e.Raw))
		}
	}
}

// TestServerPeerGoneWithPending: the logger leaves while its packets
// await confirmation; late confirmations neither panic nor leak the
// connection.
func TestServerPeerGoneWithPending(t *testing.T) {
	h := start(t, &Server{})
	c := h.dial(t)
	send(t, c, refFrame(dataSeg(qnOf(1), 5))+refFrame(dataSeg(qnOf(2), 5)))
	r1, r2 := h.req(t), h.req(t)
	c.Close()
	time.Sleep(20 * time.Millisecond) // a chance for a wrong early close to happen
	if a := h.s.Stats().Active; a != 1 {
		t.Fatalf("%d active: the connection must wait for its confirmations", a)
	}
	r1.Confirm()
	r2.Refuse(QnRtnBadPW)
	waitFor(t, "the connection to finish", func() bool { return h.s.Stats().Active == 0 })
	if st := h.s.Stats(); st.Pending != 0 || st.Confirmed != 1 || st.Refusals != 1 {
		t.Fatalf("stats %+v", st)
	}
}
