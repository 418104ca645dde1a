package hj212

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

type item struct {
	frame  string
	reason Reason
}

// readAll runs a Framer to the end and lists frames and rejects.
func readAll(t *testing.T, r io.Reader, c *Codec) []item {
	t.Helper()
	f := NewFramer(r, c)
	var got []item
	for range 10000 {
		b, err := f.Next()
		var e *Error
		switch {
		case err == nil:
			got = append(got, item{frame: string(b)})
		case errors.As(err, &e):
			if len(e.Raw) > RawLimit {
				t.Fatalf("raw of %d bytes", len(e.Raw))
			}
			got = append(got, item{reason: e.Reason})
		case err == io.EOF:
			return got
		default:
			t.Fatalf("reader error %v", err)
		}
	}
	t.Fatal("framer does not end")
	return nil
}

func TestFramer(t *testing.T) {
	a, b := vectorStd, vectorMin
	huge := "##9999" + strings.Repeat("x", 3000)
	for _, tc := range []struct {
		name string
		in   string
		want []item
	}{
		{"two frames", a + b, []item{{frame: a}, {frame: b}}},
		{"garbage between", "\x00\xff\r\nhello#" + a + "\x01\x02#" + b + "#", []item{{reason: ReasonGarbage}, {frame: a}, {reason: ReasonGarbage}, {frame: b}, {reason: ReasonGarbage}}},
		{"bad CRC then good", badCRC(a) + b, []item{{reason: ReasonBadCRC}, {frame: b}}},
		{"huge declared length", huge + a, []item{{reason: ReasonTooLong}, {frame: a}}},
		{"length not digits", "##abcd" + a, []item{{reason: ReasonBadLength}, {frame: a}}},
		{"run of #", "####" + a, []item{{reason: ReasonGarbage}, {frame: a}}},
		{"no \\r\\n", strings.TrimSuffix(a, "\r\n") + "ZZ" + b, []item{{reason: ReasonTrailer}, {frame: b}}},
		{"length too long swallows next", "##0102" + a[6:] + b, []item{{reason: ReasonTrailer}, {frame: b}}},
		{"truncated at end", a + b[:100], []item{{frame: a}, {reason: ReasonTruncated}}},
		{"lone # at end", a + "#", []item{{frame: a}, {reason: ReasonGarbage}}},
		{"endless garbage", strings.Repeat("\xAA", 5000) + a, []item{{reason: ReasonGarbage}, {reason: ReasonGarbage}, {reason: ReasonGarbage}, {reason: ReasonGarbage}, {reason: ReasonGarbage}, {frame: a}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []struct {
				name string
				r    io.Reader
			}{{"whole", strings.NewReader(tc.in)}, {"byte by byte", iotest.OneByteReader(strings.NewReader(tc.in))}} {
				got := readAll(t, r.r, nil)
				if len(got) != len(tc.want) {
					t.Fatalf("%s: got %d items %v, want %v", r.name, len(got), got, tc.want)
				}
				for i := range got {
					if got[i] != tc.want[i] {
						t.Fatalf("%s: item %d got %+v, want %+v", r.name, i, got[i], tc.want[i])
					}
				}
			}
		})
	}
}

// TestFramerBounded: the buffer never grows past the maximum frame,
// whatever the peer sends.
func TestFramerBounded(t *testing.T) {
	c := &Codec{MaxSegment: 200}
	f := NewFramer(io.MultiReader(strings.NewReader("##0199"), bytes.NewReader(bytes.Repeat([]byte("a"), 1<<20))), c)
	if f.r.Size() != 212 {
		t.Fatalf("buffer %d bytes, want 212", f.r.Size())
	}
	n := 0
	for {
		_, err := f.Next()
		if err == io.EOF {
			break
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("got %v", err)
		}
		n++
	}
	if f.r.Size() != 212 {
		t.Fatalf("buffer grew to %d", f.r.Size())
	}
	if n < (1<<20)/212-1 {
		t.Fatalf("%d garbage reports for 1 MiB, want one per buffer", n)
	}
}

func TestFramerReaderError(t *testing.T) {
	boom := errors.New("reset")
	f := NewFramer(io.MultiReader(strings.NewReader(vectorStd[:50]), iotest.ErrReader(boom)), nil)
	if _, err := f.Next(); !errors.Is(err, boom) {
		t.Fatalf("got %v, want the reader's error", err)
	}
}

func TestJoiner(t *testing.T) {
	c := Codec{}
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	part := func(qn string, pnum, pno int, cp string) (Packet, []byte) {
		p := Packet{QN: qn, ST: "32", CN: "2051", PW: "p", MN: "M", Flag: 7, PNUM: pnum, PNO: pno, CP: cp}
		f, err := c.Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		q, err := c.Decode(f)
		if err != nil {
			t.Fatal(err)
		}
		return q, f
	}
	j := Joiner{MaxPackets: 2, Timeout: time.Minute}
	qn := "20261206100000000"
	p3, f3 := part(qn, 3, 3, "w21003-Avg=2")
	p1, f1 := part(qn, 3, 1, "DataTime=20261206095900;w01018-Avg=1")
	p2, f2 := part(qn, 3, 2, "w01018-Flag=N")
	for i, in := range []struct {
		p Packet
		f []byte
	}{{p3, f3}, {p1, f1}} {
		if _, _, done, err := j.Add(in.p, in.f, t0); done || err != nil {
			t.Fatalf("part %d: done %v err %v", i, done, err)
		}
	}
	if _, _, _, err := j.Add(p1, f1, t0); !isReason(err, ReasonSplitDup) {
		t.Fatalf("duplicate PNO: got %v", err)
	}
	joined, raw, done, err := j.Add(p2, f2, t0)
	if !done || err != nil {
		t.Fatalf("done %v err %v", done, err)
	}
	want := Packet{QN: qn, ST: "32", CN: "2051", PW: "p", MN: "M", Flag: 5, CP: "DataTime=20261206095900;w01018-Avg=1;w01018-Flag=N;w21003-Avg=2"}
	if joined != want {
		t.Fatalf("joined %+v, want %+v", joined, want)
	}
	if string(raw) != string(f1)+string(f2)+string(f3) {
		t.Fatalf("raw not the frames in PNO order: %q", raw)
	}
	if j.Pending() != 0 {
		t.Fatalf("%d still pending", j.Pending())
	}
	// Bounds: two incomplete packets held, a third refused, both expire.
	a, fa := part("20261206100000001", 2, 1, "x=1")
	b, fb := part("20261206100000002", 2, 1, "x=1")
	x, fx := part("20261206100000003", 2, 1, "x=1")
	j.Add(a, fa, t0)
	j.Add(b, fb, t0.Add(30*time.Second))
	if _, _, _, err := j.Add(x, fx, t0); !isReason(err, ReasonSplitFull) {
		t.Fatalf("third packet: got %v", err)
	}
	if errs := j.Expire(t0.Add(59 * time.Second)); len(errs) != 0 {
		t.Fatalf("expired early: %v", errs)
	}
	errs := j.Expire(t0.Add(time.Minute))
	if len(errs) != 1 || errs[0].Reason != ReasonIncomplete || errs[0].QN != a.QN || !strings.Contains(errs[0].Detail, "1 of 2") {
		t.Fatalf("expired: %v", errs)
	}
	if errs := j.Flush(); len(errs) != 1 || errs[0].QN != b.QN {
		t.Fatalf("flush: %v", errs)
	}
	// Parts disagreeing on PNUM.
	m1, fm1 := part("20261206100000004", 2, 1, "x=1")
	m2, fm2 := part("20261206100000004", 3, 2, "x=1")
	j.Add(m1, fm1, t0)
	if _, _, _, err := j.Add(m2, fm2, t0); !isReason(err, ReasonSplitDup) {
		t.Fatalf("PNUM mismatch: got %v", err)
	}
}

func isReason(err error, r Reason) bool {
	var e *Error
	return errors.As(err, &e) && e.Reason == r
}
