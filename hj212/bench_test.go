package hj212

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time (user + system) used by this process so far:
// with other work on the machine, it says more than the wall clock.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds CPU-ns per frame and CPU seconds per million values.
func reportCPU(b *testing.B, cpu time.Duration, frames, values int) {
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(frames), "cpu-ns/frame")
	b.ReportMetric(cpu.Seconds()/float64(values)*1e6, "cpu-s/Mvalues")
}

// cycle repeats its content forever.
type cycle struct {
	b   []byte
	off int
}

func (c *cycle) Read(p []byte) (int, error) {
	n := copy(p, c.b[c.off:])
	c.off = (c.off + n) % len(c.b)
	return n, nil
}

// BenchmarkDecode: framer, segment parser and CP parser on the 7-value
// minute frame of the facts file.
func BenchmarkDecode(b *testing.B) {
	c := &Codec{}
	fr := NewFramer(&cycle{b: []byte(vectorMin)}, c)
	values := 0
	b.ReportAllocs()
	b.SetBytes(int64(len(vectorMin)))
	cpu0 := cpuTime(b)
	for b.Loop() {
		frame, err := fr.Next()
		if err != nil {
			b.Fatal(err)
		}
		p, err := c.ParseSegment(frame[6 : len(frame)-6])
		if err != nil {
			b.Fatal(err)
		}
		d, err := c.ParseData(p.CP)
		if err != nil {
			b.Fatal(err)
		}
		values += len(d.Values)
	}
	reportCPU(b, cpuTime(b)-cpu0, b.N, values)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkServer: one logger pushes minute frames over loopback; the
// handler confirms at once and the 9014s are read back.
func BenchmarkServer(b *testing.B) {
	s := &Server{MaxPending: 64, Handler: func(r *Request) { r.Confirm() }}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(l)
	defer s.Shutdown(b.Context())
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ack := len(refFrame("QN=20240601120000123;ST=91;CN=9014;PW=123456;MN=ENT0001WW01;Flag=4;CP=&&&&"))
	const batch = 64
	out := make([]byte, 0, batch*len(vectorMin))
	for range batch {
		out = append(out, vectorMin...)
	}
	in := make([]byte, batch*ack)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	sent := 0
	for sent < b.N {
		n := min(batch, b.N-sent)
		if _, err := c.Write(out[:n*len(vectorMin)]); err != nil {
			b.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.ReadFull(c, in[:n*ack]); err != nil {
			b.Fatal(err)
		}
		sent += n
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	if st := s.Stats(); st.Acks != int64(b.N) {
		b.Fatalf("%d acks for %d frames: %+v", st.Acks, b.N, st)
	}
	reportCPU(b, cpu, b.N, 7*b.N) // client and server: both in this process
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}
