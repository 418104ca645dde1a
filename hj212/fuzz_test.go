package hj212

import (
	"bytes"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
)

func FuzzFramer(f *testing.F) {
	f.Add([]byte(vectorStd + vectorMin))
	f.Add([]byte("\x00##0010abc" + vectorStd + "####0" + badCRC(vectorMin)))
	f.Add([]byte("##9999" + vectorStd[6:]))
	f.Add([]byte(modbusFrame(seg(vectorMin)) + vectorStd[:40]))
	c := &Codec{MaxSegment: 300}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 1<<14 {
			// Many buffers of 312 bytes already; larger inputs only make
			// the fuzzer's minimisation crawl.
			return
		}
		fr := NewFramer(bytes.NewReader(in), c)
		for n := 0; ; n++ {
			if n > len(in)+2 {
				t.Fatalf("%d results from %d bytes", n, len(in))
			}
			frame, err := fr.Next()
			if err == io.EOF {
				return
			}
			var e *Error
			if err != nil {
				if !errors.As(err, &e) || e.Reason == "" || len(e.Raw) > RawLimit {
					t.Fatalf("error %v (%T)", err, err)
				}
				continue
			}
			if _, err := c.CheckFrame(frame); err != nil {
				t.Fatalf("framer returned %q that CheckFrame rejects: %v", frame, err)
			}
		}
	})
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(seg(vectorStd)))
	f.Add([]byte(seg(vectorMin)))
	f.Add([]byte("QN=20261206101500001;ST=32;CN=2051;PW=p;MN=M;Flag=7;PNUM=2;PNO=1;CP=&&DataTime=20261206101400;w01018-Avg=NaN,w01018-Flag=X;a-Rtd=1e309&&"))
	f.Add([]byte("QN=20260231101500001;CP=&&&&"))
	c := &Codec{}
	f.Fuzz(func(t *testing.T, seg []byte) {
		p, err := c.ParseSegment(seg)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Reason == "" {
				t.Fatalf("error %v (%T)", err, err)
			}
			if e.QN != "" && !digits(e.QN, 17) {
				t.Fatalf("QN %q handed out for a reply", e.QN)
			}
			return
		}
		// What decodes must encode, and decode back the same.
		frame, err := c.Encode(p)
		if err != nil {
			if isReason(err, ReasonTooLong) {
				return
			}
			t.Fatalf("decoded %+v does not encode: %v", p, err)
		}
		q, err := c.Decode(frame)
		if err != nil || q != p {
			t.Fatalf("round trip: %+v -> %q -> %+v, %v", p, frame, q, err)
		}
		d, err := c.ParseData(p.CP)
		if err != nil {
			return
		}
		for _, v := range d.Values {
			if math.IsNaN(v.Value) || math.IsInf(v.Value, 0) || (v.Flag != "" && !strings.Contains(DataFlags2017, v.Flag)) || !knownField(v.Field) {
				t.Fatalf("kept %+v", v)
			}
		}
	})
}
