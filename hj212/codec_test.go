package hj212

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// The two vectors of the facts file, byte for byte.
const (
	vectorStd = "##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&1C80\r\n"
	vectorMin = "##0252QN=20240601120000123;ST=32;CN=2051;PW=123456;MN=ENT0001WW01;Flag=5;CP=&&DataTime=20240601115900;w01018-Avg=23.4,w01018-Min=21.0,w01018-Max=25.9,w01018-Cou=1.87,w01018-Flag=N;w21003-Avg=1.21,w21003-Flag=N;w00000-Avg=12.3,w00000-Cou=738.0,w00000-Flag=N&&B2C1\r\n"
)

// refFrame is an encoder written from the facts file alone, independent of
// AppendFrame: it must agree with the vectors and feed the decoder.
func refFrame(seg string) string {
	return fmt.Sprintf("##%04d%s%04X\r\n", len(seg), seg, refCRC(seg, false))
}

// modbusFrame frames seg with CRC-16/MODBUS, which must be rejected.
func modbusFrame(seg string) string {
	return fmt.Sprintf("##%04d%s%04X\r\n", len(seg), seg, refCRC(seg, true))
}

// refCRC is the facts file's CRC, bit by bit, or CRC-16/MODBUS: they differ
// only in how a byte enters the register.
func refCRC(seg string, modbus bool) int {
	crc := 0xFFFF
	for i := 0; i < len(seg); i++ {
		if modbus {
			crc ^= int(seg[i])
		} else {
			crc = (crc >> 8) ^ int(seg[i])
		}
		for k := 0; k < 8; k++ {
			if crc&1 == 1 {
				crc = (crc >> 1) ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// badCRC changes the last CRC digit of a frame.
func badCRC(frame string) string {
	b := []byte(frame)
	i := len(b) - 3
	if b[i] == '0' {
		b[i] = '1'
	} else {
		b[i] = '0'
	}
	return string(b)
}

func seg(frame string) string { return frame[6 : len(frame)-6] }

func TestVectors(t *testing.T) {
	for _, tc := range []struct {
		name, frame, crc string
		n                int
	}{
		{"standard example", vectorStd, "1C80", 101},
		{"minute data", vectorMin, "B2C1", 252},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := seg(tc.frame)
			if len(s) != tc.n {
				t.Fatalf("segment length %d, want %d", len(s), tc.n)
			}
			if got := fmt.Sprintf("%04X", CRC([]byte(s))); got != tc.crc {
				t.Fatalf("CRC got %s, want %s", got, tc.crc)
			}
			if got := refFrame(s); got != tc.frame {
				t.Fatalf("reference encoder disagrees with the vector:\n%q", got)
			}
			var c Codec
			p, err := c.Decode([]byte(tc.frame))
			if err != nil {
				t.Fatal(err)
			}
			if p.Flag != 5 || !p.Flag.Ack() || p.Flag.Version() != Version2017 || p.Flag.Split() {
				t.Fatalf("flag %d decoded wrong", p.Flag)
			}
		})
	}
}

func TestModbusCRCRejected(t *testing.T) {
	f := modbusFrame(seg(vectorMin))
	if !strings.HasSuffix(f, "A84E\r\n") {
		t.Fatalf("Modbus frame %q does not end with A84E", f[len(f)-6:])
	}
	var c Codec
	_, err := c.Decode([]byte(f))
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonBadCRC || e.QnRtn != QnRtnBadCRC {
		t.Fatalf("got %v, want bad_crc with QnRtn 9", err)
	}
	if e.QN != "20240601120000123" || e.PW != "123456" || e.MN != "ENT0001WW01" {
		t.Fatalf("ids from the bad-CRC frame: QN %q PW %q MN %q", e.QN, e.PW, e.MN)
	}
}

func TestDecodeMinuteData(t *testing.T) {
	var c Codec
	p, err := c.Decode([]byte(vectorMin))
	if err != nil {
		t.Fatal(err)
	}
	if p.QN != "20240601120000123" || p.ST != "32" || p.CN != "2051" || p.PW != "123456" || p.MN != "ENT0001WW01" {
		t.Fatalf("header %+v", p)
	}
	d, err := c.ParseData(p.CP)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2024, 6, 1, 3, 59, 0, 0, time.UTC); !d.Time.Equal(want) {
		t.Fatalf("time got %v, want %v (UTC+8 local)", d.Time, want)
	}
	want := []Value{
		{"w01018", "Avg", 23.4, "N"}, {"w01018", "Min", 21.0, "N"}, {"w01018", "Max", 25.9, "N"}, {"w01018", "Cou", 1.87, "N"},
		{"w21003", "Avg", 1.21, "N"}, {"w00000", "Avg", 12.3, "N"}, {"w00000", "Cou", 738.0, "N"},
	}
	if fmt.Sprint(d.Values) != fmt.Sprint(want) || len(d.Rejects) != 0 {
		t.Fatalf("got %v rejects %v, want %v", d.Values, d.Rejects, want)
	}
}

// TestIndependentFrames decodes frames built by refFrame from segments
// written by hand, including split parts and every value field.
func TestIndependentFrames(t *testing.T) {
	loc := time.FixedZone("UTC+8", 8*3600)
	for _, tc := range []struct {
		name string
		seg  string
		want Packet
		vals string
	}{
		{"real-time stack",
			"QN=20261206101500001;ST=31;CN=2011;PW=654321;MN=STACK01;Flag=4;CP=&&DataTime=20261206101500;a21026-Rtd=35.2,a21026-ZsRtd=40.1,a21026-Flag=N;a19001-Rtd=9.8,a19001-Flag=C&&",
			Packet{QN: "20261206101500001", ST: "31", CN: "2011", PW: "654321", MN: "STACK01", Flag: 4},
			"[{a21026 Rtd 35.2 N} {a21026 ZsRtd 40.1 N} {a19001 Rtd 9.8 C}]"},
		{"hourly all fields",
			"QN=20261206110000000;ST=31;CN=2061;PW=x;MN=M;Flag=5;CP=&&DataTime=20261206100000;a34013-Avg=1,a34013-Min=0.5,a34013-Max=2,a34013-Cou=-3e-2,a34013-ZsAvg=1.1,a34013-ZsMin=0.6,a34013-ZsMax=2.2,a34013-Flag=M&&",
			Packet{QN: "20261206110000000", ST: "31", CN: "2061", PW: "x", MN: "M", Flag: 5},
			"[{a34013 Avg 1 M} {a34013 Min 0.5 M} {a34013 Max 2 M} {a34013 Cou -0.03 M} {a34013 ZsAvg 1.1 M} {a34013 ZsMin 0.6 M} {a34013 ZsMax 2.2 M}]"},
		{"daily, flag first, no flag on second code",
			"QN=20261207000000999;ST=32;CN=2031;PW=p;MN=M2;Flag=4;CP=&&DataTime=20261206000000;w01001-Flag=S,w01001-Avg=7.2;w01010-Avg=18&&",
			Packet{QN: "20261207000000999", ST: "32", CN: "2031", PW: "p", MN: "M2", Flag: 4},
			"[{w01001 Avg 7.2 S} {w01010 Avg 18 }]"},
		{"split part",
			"QN=20261206101500001;ST=32;CN=2051;PW=p;MN=M;Flag=7;PNUM=3;PNO=2;CP=&&w01018-Avg=1,w01018-Flag=N&&",
			Packet{QN: "20261206101500001", ST: "32", CN: "2051", PW: "p", MN: "M", Flag: 7, PNUM: 3, PNO: 2},
			""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Codec{Location: loc}
			p, err := c.Decode([]byte(refFrame(tc.seg)))
			if err != nil {
				t.Fatal(err)
			}
			cp := p.CP
			p.CP = ""
			if p != tc.want {
				t.Fatalf("got %+v, want %+v", p, tc.want)
			}
			if tc.vals == "" {
				return
			}
			d, err := c.ParseData(cp)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(d.Values); got != tc.vals || len(d.Rejects) > 0 {
				t.Fatalf("values got %s rejects %v, want %s", got, d.Rejects, tc.vals)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	c := Codec{}
	at := time.Date(2026, 12, 6, 10, 15, 0, 0, time.UTC)
	d := Data{Time: at, Values: []Value{
		{"w01018", "Avg", 23.4, "N"}, {"w21003", "Avg", 0.125, "D"}, {"w01018", "Cou", 1e-7, "N"},
		{"a00000", "Rtd", 123456789.5, "T"}, {"w01001", "ZsMax", -1.5, ""},
	}}
	p := Packet{QN: NewQN(at, nil), ST: "32", CN: CNMinute, PW: "pw", MN: "MN1", Flag: 5, CP: c.FormatData(d)}
	f, err := c.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := refFrame(seg(string(f))); got != string(f) {
		t.Fatalf("encoder and reference disagree:\n%q\n%q", f, got)
	}
	q, err := c.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if q != p {
		t.Fatalf("packet got %+v, want %+v", q, p)
	}
	got, err := c.ParseData(q.CP)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Time.Equal(at) || len(got.Rejects) > 0 {
		t.Fatalf("time %v rejects %v", got.Time, got.Rejects)
	}
	// Values come back grouped by code, each with its code's flag.
	want := "[{w01018 Avg 23.4 N} {w01018 Cou 1e-07 N} {w21003 Avg 0.125 D} {a00000 Rtd 1.234567895e+08 T} {w01001 ZsMax -1.5 }]"
	if fmt.Sprint(got.Values) != want {
		t.Fatalf("got %v\nwant %s", got.Values, want)
	}
	for _, r := range []Packet{Ack(q), Reply(q.QN, q.PW, q.MN, QnRtnBadPW)} {
		f, err := c.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		back, err := c.Decode(f)
		if err != nil || back != r {
			t.Fatalf("reply %q decoded to %+v, %v", f, back, err)
		}
	}
	if f, _ := c.Encode(Ack(q)); string(f) != refFrame("QN="+q.QN+";ST=91;CN=9014;PW=pw;MN=MN1;Flag=4;CP=&&&&") {
		t.Fatalf("9014 frame %q", f)
	}
}

func TestEncodeRefuses(t *testing.T) {
	c := Codec{MaxSegment: 80}
	ok := Packet{QN: "20261206101500001", ST: "32", CN: "2051", PW: "p", MN: "m", Flag: 4}
	for name, mut := range map[string]func(*Packet){
		"bad QN":       func(p *Packet) { p.QN = "2026" },
		"CP with &&":   func(p *Packet) { p.CP = "a&&b" },
		"too long":     func(p *Packet) { p.CP = strings.Repeat("x", 80) },
		"D without PN": func(p *Packet) { p.Flag = 6 },
		"PNO > PNUM":   func(p *Packet) { p.Flag, p.PNUM, p.PNO = 6, 2, 3 },
		"MN with ;":    func(p *Packet) { p.MN = "a;b" },
	} {
		p := ok
		mut(&p)
		if f, err := c.Encode(p); err == nil {
			t.Errorf("%s: encoded %q", name, f)
		}
	}
	if _, err := c.Encode(ok); err != nil {
		t.Fatalf("the valid packet: %v", err)
	}
}

// TestHostile is the table of bad input: each case names the reason it
// must be rejected with and, where the standard has one, the QnRtn.
func TestHostile(t *testing.T) {
	good := "QN=20261206101500001;ST=32;CN=2051;PW=p;MN=M;Flag=5;CP=&&DataTime=20261206101400;w01018-Avg=1,w01018-Flag=N&&"
	withCP := func(cp string) string {
		return strings.Replace(good, "DataTime=20261206101400;w01018-Avg=1,w01018-Flag=N", cp, 1)
	}
	for _, tc := range []struct {
		name   string
		frame  string
		reason Reason
		rtn    QnRtn
		qn     bool // the QN must be readable for the 9011
	}{
		{"length not digits", "##01a1" + good + "0000\r\n", ReasonBadLength, 0, false},
		{"length one short", fmt.Sprintf("##%04d", len(good)-1) + refFrame(good)[6:], ReasonBadLength, 0, false},
		{"length one long", fmt.Sprintf("##%04d", len(good)+1) + refFrame(good)[6:], ReasonBadLength, 0, false},
		{"bad CRC", badCRC(refFrame(good)), ReasonBadCRC, QnRtnBadCRC, true},
		{"Modbus CRC", modbusFrame(good), ReasonBadCRC, QnRtnBadCRC, true},
		{"missing \\r\\n", strings.TrimSuffix(refFrame(good), "\r\n") + "xx", ReasonTrailer, 0, false},
		{"huge CP", refFrame(withCP(strings.Repeat("w01018-Avg=1,", 100))), ReasonTooLong, 0, false},
		{"missing &&", refFrame(strings.Replace(good, "CP=&&", "CP=", 1)), ReasonBadCP, QnRtnUnknown, true},
		{"CP not closed", refFrame(strings.TrimSuffix(good, "&&")), ReasonBadCP, QnRtnUnknown, true},
		{"QN short", refFrame(strings.Replace(good, "QN=20261206101500001", "QN=2026120610150000", 1)), ReasonBadQN, QnRtnBadQN, false},
		{"QN impossible date", refFrame(strings.Replace(good, "QN=20261206101500001", "QN=20260231101500001", 1)), ReasonBadQN, QnRtnBadQN, false},
		{"no QN", refFrame(strings.Replace(good, "QN=20261206101500001;", "", 1)), ReasonBadQN, QnRtnBadQN, false},
		{"ST letters", refFrame(strings.Replace(good, "ST=32", "ST=3x", 1)), ReasonBadST, QnRtnBadST, true},
		{"CN 3 digits", refFrame(strings.Replace(good, "CN=2051", "CN=205", 1)), ReasonBadCN, QnRtnBadCN, true},
		{"PW empty", refFrame(strings.Replace(good, "PW=p", "PW=", 1)), ReasonBadPW, QnRtnBadPW, true},
		{"MN missing", refFrame(strings.Replace(good, "MN=M;", "", 1)), ReasonBadMN, QnRtnBadMN, true},
		{"Flag garbage", refFrame(strings.Replace(good, "Flag=5", "Flag=5x", 1)), ReasonBadFlag, QnRtnBadFlag, true},
		{"Flag 256", refFrame(strings.Replace(good, "Flag=5", "Flag=256", 1)), ReasonBadFlag, QnRtnBadFlag, true},
		{"D bit without PNUM", refFrame(strings.Replace(good, "Flag=5", "Flag=7", 1)), ReasonBadFlag, QnRtnBadFlag, true},
		{"PNUM without D bit", refFrame(strings.Replace(good, "Flag=5", "Flag=5;PNUM=2;PNO=1", 1)), ReasonBadFlag, QnRtnBadFlag, true},
		{"PNUM 0", refFrame(strings.Replace(good, "Flag=5", "Flag=7;PNUM=0;PNO=1", 1)), ReasonBadPNUM, QnRtnUnknown, true},
		{"PNUM above max", refFrame(strings.Replace(good, "Flag=5", "Flag=7;PNUM=65;PNO=1", 1)), ReasonBadPNUM, QnRtnUnknown, true},
		{"PNO above PNUM", refFrame(strings.Replace(good, "Flag=5", "Flag=7;PNUM=2;PNO=3", 1)), ReasonBadPNUM, QnRtnUnknown, true},
		{"PNO negative", refFrame(strings.Replace(good, "Flag=5", "Flag=7;PNUM=2;PNO=-1", 1)), ReasonBadPNUM, QnRtnUnknown, true},
		{"unknown header field", refFrame(strings.Replace(good, "Flag=5", "Flag=5;XX=1", 1)), ReasonMalformed, QnRtnUnknown, true},
		{"field twice", refFrame(strings.Replace(good, "Flag=5", "Flag=5;ST=32", 1)), ReasonMalformed, QnRtnUnknown, true},
		{"field without =", refFrame(strings.Replace(good, "Flag=5", "Flag=5;junk", 1)), ReasonMalformed, QnRtnUnknown, true},
		{"binary", refFrame("\x00\xff\x01QN=\x80"), ReasonBadCP, QnRtnUnknown, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Codec
			_, err := c.Decode([]byte(tc.frame))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want an *Error", err)
			}
			if e.Reason != tc.reason || e.QnRtn != tc.rtn {
				t.Fatalf("got %s/%d (%v), want %s/%d", e.Reason, e.QnRtn, err, tc.reason, tc.rtn)
			}
			if tc.qn && e.QN != "20261206101500001" {
				t.Fatalf("QN %q not kept for the 9011", e.QN)
			}
			if !strings.Contains(err.Error(), string(tc.reason)) {
				t.Fatalf("message %q does not say %s", err, tc.reason)
			}
		})
	}
}

// TestDataRejects: bad items are refused one by one, the rest is kept.
func TestDataRejects(t *testing.T) {
	c := Codec{KnownCode: func(code string) bool { return code != "w99999" }}
	cp := "DataTime=20261206101400;" +
		"w01018-Avg=1.5,w01018-Bogus=2,w01018-Avg=1.6,w01018-Flag=N;" + // unknown suffix, duplicate
		"w21003-Avg=NaN,w21003-Min=Inf,w21003-Max=0x1p3,w21003-Cou=1e309,w21003-Rtd=abc,w21003-ZsAvg=2,w21003-Flag=N;" +
		"w21011-Avg=3,w21011-Flag=Q;" + // flag garbage: its values go too
		"w21001-Avg=4,w21001-Flag=N,w21001-Flag=D;" + // contradicting flags
		"w99999-Avg=5;w0!-Avg=6;RtdInterval=30;junk"
	d, err := c.ParseData(cp)
	if err != nil {
		t.Fatal(err)
	}
	if want := "[{w01018 Avg 1.5 N} {w21003 ZsAvg 2 N}]"; fmt.Sprint(d.Values) != want {
		t.Fatalf("kept %v, want %s", d.Values, want)
	}
	count := map[Reason]int{}
	for _, r := range d.Rejects {
		count[r.Reason]++
	}
	want := map[Reason]int{ReasonUnknownField: 3, ReasonDuplicate: 1, ReasonBadValue: 5,
		ReasonBadDataFlag: 3, ReasonFlagConflict: 1, ReasonUnknownCode: 1, ReasonBadCode: 1}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Fatalf("rejects %v\ngot %v, want %v", d.Rejects, count, want)
	}
	for _, v := range d.Values {
		if math.IsNaN(v.Value) || math.IsInf(v.Value, 0) {
			t.Fatalf("non-finite kept: %v", v)
		}
	}
}

func TestDataTime(t *testing.T) {
	for _, tc := range []struct{ cp, want string }{
		{"DataTime=115900;w01018-Avg=1", "time without a date"},
		{"DataTime=20240231115900;w01018-Avg=1", "not a possible date"},
		{"DataTime=20240601245900;w01018-Avg=1", "not a possible date"},
		{"DataTime=2024-06-01 11:59;w01018-Avg=1", "not 14 digits"},
		{"w01018-Avg=1", "no DataTime"},
		{"DataTime=20240601115900;DataTime=20240601120000", "two different DataTime"},
	} {
		var c Codec
		_, err := c.ParseData(tc.cp)
		var e *Error
		if !errors.As(err, &e) || e.Reason != ReasonBadTime || !strings.Contains(e.Detail, tc.want) {
			t.Errorf("%q: got %v, want bad_datatime %q", tc.cp, err, tc.want)
		}
	}
	d, err := (&Codec{Location: time.UTC}).ParseData("DataTime=20240229235959")
	if err != nil || !d.Time.Equal(time.Date(2024, 2, 29, 23, 59, 59, 0, time.UTC)) {
		t.Fatalf("leap day: %v %v", d.Time, err)
	}
}

// TestCRCMatchesReference checks the table CRC against the bitwise
// reference on segments of every byte value and many lengths.
func TestCRCMatchesReference(t *testing.T) {
	b := make([]byte, 0, 1024)
	for i := range 1024 {
		b = append(b, byte(i*131+i/7))
		if got, want := CRC(b), refCRC(string(b), false); int(got) != want {
			t.Fatalf("length %d: got %04X, want %04X", len(b), got, want)
		}
	}
}

// TestDataMany exercises a joined packet of many codes: duplicates and
// flags are still found once the index switches to a map.
func TestDataMany(t *testing.T) {
	var b strings.Builder
	b.WriteString("DataTime=20261206100000")
	for i := range 200 {
		fmt.Fprintf(&b, ";w%05d-Avg=%d,w%05d-Max=%d,w%05d-Flag=%c", i, i, i, i+1, i, "NQ"[i%2])
	}
	b.WriteString(";w00198-Avg=1;w00010-Flag=D") // a duplicate, a conflicting flag
	var c Codec
	d, err := c.ParseData(b.String())
	if err != nil {
		t.Fatal(err)
	}
	// Odd codes have flag Q (garbage): their 2 values go; code 10 loses
	// its 2 values to the conflict.
	if len(d.Values) != 2*100-2 {
		t.Fatalf("%d values kept, want 198", len(d.Values))
	}
	count := map[Reason]int{}
	for _, r := range d.Rejects {
		count[r.Reason]++
	}
	if count[ReasonDuplicate] != 1 || count[ReasonFlagConflict] != 1 || count[ReasonBadDataFlag] != 100+200+2 {
		t.Fatalf("rejects %v", count)
	}
	for _, v := range d.Values {
		if v.Flag != "N" || v.Code == "w00010" {
			t.Fatalf("kept %+v", v)
		}
	}
}
