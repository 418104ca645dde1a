package hj212

import (
	"bytes"
	"strconv"
	"strings"
	"time"
)

// Command codes cleanprod handles itself.
const (
	CNRealTime = "2011" // real-time data
	CNMinute   = "2051" // minute data
	CNHourly   = "2061" // hourly data
	CNDaily    = "2031" // daily data
	CNReply    = "9011" // request reply, carries QnRtn
	CNAck      = "9014" // data acknowledgement
)

// IsData reports whether cn is one of the data uploads whose CP the Codec
// parses into Data (2011, 2051, 2061, 2031).
func IsData(cn string) bool {
	switch cn {
	case CNRealTime, CNMinute, CNHourly, CNDaily:
		return true
	}
	return false
}

// Flag is the Flag field: bits V5..V0 D A.
type Flag uint8

// Flag bits.
const (
	FlagAck   Flag = 1 // A: the sender wants an acknowledgement
	FlagSplit Flag = 2 // D: PNUM and PNO are present
)

// Version2017 is the version number HJ 212-2017 puts in the Flag's V bits.
const Version2017 = 1

// Version is the protocol version in bits V5..V0 (1 for HJ 212-2017).
func (f Flag) Version() int { return int(f >> 2) }

// Ack reports whether the sender asked for an acknowledgement.
func (f Flag) Ack() bool { return f&FlagAck != 0 }

// Split reports whether the packet carries PNUM/PNO.
func (f Flag) Split() bool { return f&FlagSplit != 0 }

// Packet is one data segment. Its strings are fields of the segment as
// sent; CP is the content between "CP=&&" and the closing "&&".
type Packet struct {
	QN   string // request id YYYYMMDDhhmmsszzz
	ST   string // system code, 2 digits
	CN   string // command code, 4 digits
	PW   string // access password
	MN   string // monitoring point id
	Flag Flag
	PNUM int // number of parts; 0 when not split
	PNO  int // this part's number, 1..PNUM; 0 when not split
	CP   string
}

// Codec decodes and encodes HJ 212 frames. The zero value uses the
// defaults; a Codec is read-only once in use and safe for concurrent use.
type Codec struct {
	// MaxSegment caps the data segment length in bytes. 0 means
	// DefaultMaxSegment. The 1024 of the standard is unverified, hence
	// a setting; the 4-digit length field caps it at 9999 anyway.
	MaxSegment int
	// MaxParts caps PNUM. 0 means DefaultMaxParts.
	MaxParts int
	// Location is the station's zone for DataTime and QN. nil means
	// UTC+8 (China time, no daylight saving).
	Location *time.Location
	// DataFlags lists the accepted data flags, one byte each. "" means
	// DataFlags2017.
	DataFlags string
	// KnownCode, when set, is asked about each pollutant code; a code it
	// refuses is rejected per value with ReasonUnknownCode.
	KnownCode func(code string) bool
}

// Defaults of the Codec.
const (
	DefaultMaxSegment = 1024
	DefaultMaxParts   = 64
	// DataFlags2017: N normal, F instrument stopped, M maintenance,
	// S manually set, D fault, C calibration, T over range, B
	// communication failure.
	DataFlags2017 = "NFMSDCTB"
	// ValidDataFlags are the flags implementations count as valid data
	// (in averages, compliance and totals); the others are stored to
	// explain gaps.
	ValidDataFlags = "NS"
	maxLengthField = 9999
	maxIDLen       = 64 // PW, MN
)

// ChinaTime is the default station zone, UTC+8.
var chinaTime = time.FixedZone("UTC+8", 8*3600)

func (c *Codec) maxSegment() int {
	if c.MaxSegment <= 0 {
		return DefaultMaxSegment
	}
	return min(c.MaxSegment, maxLengthField)
}

func (c *Codec) maxParts() int {
	if c.MaxParts <= 0 {
		return DefaultMaxParts
	}
	return min(c.MaxParts, maxLengthField)
}

func (c *Codec) location() *time.Location {
	if c.Location == nil {
		return chinaTime
	}
	return c.Location
}

func (c *Codec) dataFlags() string {
	if c.DataFlags == "" {
		return DataFlags2017
	}
	return c.DataFlags
}

// CheckFrame checks one whole frame, "##" + 4-digit length + segment + CRC
// + "\r\n", and returns its data segment (a sub-slice of frame).
func (c *Codec) CheckFrame(frame []byte) ([]byte, error) {
	if len(frame) < 12 || frame[0] != '#' || frame[1] != '#' {
		return nil, errorf(ReasonMalformed, "frame does not start with ## or is shorter than 12 bytes")
	}
	n, ok := parseLength(frame[2:6])
	if !ok {
		return nil, errorf(ReasonBadLength, "length field %q is not 4 decimal digits", frame[2:6])
	}
	if n > c.maxSegment() {
		return nil, errorf(ReasonTooLong, "declared segment length %d above the maximum %d", n, c.maxSegment())
	}
	if len(frame) != 6+n+6 {
		return nil, errorf(ReasonBadLength, "declared segment length %d, frame holds %d", n, len(frame)-12)
	}
	return checkBody(frame[6:])
}

// checkBody checks segment + CRC + "\r\n" where the length is known right.
func checkBody(body []byte) ([]byte, error) {
	n := len(body) - 6
	seg, tail := body[:n], body[n:]
	want, ok := parseHex4(tail[:4])
	if !ok || tail[4] != '\r' || tail[5] != '\n' {
		return nil, errorf(ReasonTrailer, "declared length %d is not followed by 4 hex digits and \\r\\n (got %q)", n, tail)
	}
	if got := CRC(seg); got != want {
		e := errorf(ReasonBadCRC, "CRC %s, segment's is %04X", tail[:4], got)
		e.QnRtn = QnRtnBadCRC
		e.QN, e.PW, e.MN = peekIDs(seg)
		return nil, e
	}
	return seg, nil
}

func parseLength(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, len(b) == 4
}

// peekIDs reads QN, PW and MN from the header of a segment that failed
// its checks, best effort: a value is returned only if it looks right.
func peekIDs(seg []byte) (qn, pw, mn string) {
	head := seg
	if i := bytes.Index(seg, []byte("CP=")); i >= 0 {
		head = seg[:i]
	}
	for len(head) > 0 {
		f := head
		if i := indexByte(head, ';'); i >= 0 {
			f, head = head[:i], head[i+1:]
		} else {
			head = nil
		}
		k, v, ok := cut(f, '=')
		if !ok {
			continue
		}
		switch string(k) {
		case "QN":
			if _, err := parseQN(string(v), time.UTC); err == nil {
				qn = string(v)
			}
		case "PW":
			if validID(string(v)) {
				pw = string(v)
			}
		case "MN":
			if validID(string(v)) {
				mn = string(v)
			}
		}
	}
	return qn, pw, mn
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func cut(b []byte, c byte) (before, after []byte, ok bool) {
	if i := indexByte(b, c); i >= 0 {
		return b[:i], b[i+1:], true
	}
	return b, nil, false
}

// Decode checks a whole frame and parses its data segment.
func (c *Codec) Decode(frame []byte) (Packet, error) {
	seg, err := c.CheckFrame(frame)
	if err != nil {
		return Packet{}, err
	}
	return c.ParseSegment(seg)
}

// ParseSegment parses and validates a data segment
// QN=..;ST=..;CN=..;PW=..;MN=..;Flag=..;[PNUM=..;PNO=..;]CP=&&..&&.
// Header fields may come in any order; CP must be last. The strings of
// the Packet share one allocation.
func (c *Codec) ParseSegment(seg []byte) (Packet, error) {
	p, err := c.parseSegment(string(seg))
	if err != nil {
		e := err.(*Error)
		if e.QN == "" && e.Reason != ReasonBadQN {
			e.QN, e.PW, e.MN = peekIDs(seg)
		}
		return Packet{}, e
	}
	return p, nil
}

func (c *Codec) parseSegment(s string) (Packet, error) {
	var p Packet
	i := strings.Index(s, "CP=&&")
	if i < 0 {
		return p, &Error{Reason: ReasonBadCP, Detail: "no CP=&&", QnRtn: QnRtnUnknown}
	}
	if i > 0 && s[i-1] != ';' {
		return p, &Error{Reason: ReasonBadCP, Detail: "CP=&& not preceded by ;", QnRtn: QnRtnUnknown}
	}
	cp := s[i+5:]
	if len(cp) < 2 || cp[len(cp)-2:] != "&&" {
		return p, &Error{Reason: ReasonBadCP, Detail: "CP not closed by && at the end of the segment", QnRtn: QnRtnUnknown}
	}
	p.CP = cp[:len(cp)-2]
	if strings.Contains(p.CP, "&&") {
		return p, &Error{Reason: ReasonBadCP, Detail: "&& inside CP", QnRtn: QnRtnUnknown}
	}
	var seen uint8
	var flag, pnum, pno string
	for head := s[:max(i-1, 0)]; head != ""; {
		var f string
		f, head, _ = strings.Cut(head, ";")
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return p, &Error{Reason: ReasonMalformed, Detail: "field " + strconv.Quote(f) + " has no =", QnRtn: QnRtnUnknown}
		}
		var bit uint8
		switch k {
		case "QN":
			bit, p.QN = 1, v
		case "ST":
			bit, p.ST = 2, v
		case "CN":
			bit, p.CN = 4, v
		case "PW":
			bit, p.PW = 8, v
		case "MN":
			bit, p.MN = 16, v
		case "Flag":
			bit, flag = 32, v
		case "PNUM":
			bit, pnum = 64, v
		case "PNO":
			bit, pno = 128, v
		default:
			return p, &Error{Reason: ReasonMalformed, Detail: "unknown field " + strconv.Quote(k), QnRtn: QnRtnUnknown}
		}
		if seen&bit != 0 {
			return p, &Error{Reason: ReasonMalformed, Detail: "field " + k + " twice", QnRtn: QnRtnUnknown}
		}
		seen |= bit
	}
	if _, err := parseQN(p.QN, c.location()); err != nil {
		return p, &Error{Reason: ReasonBadQN, Detail: err.Error(), QnRtn: QnRtnBadQN}
	}
	// From here on the QN is good: errors carry it for the 9011.
	fail := func(r Reason, q QnRtn, detail string) (Packet, error) {
		e := &Error{Reason: r, Detail: detail, QnRtn: q, QN: p.QN}
		if validID(p.PW) {
			e.PW = p.PW
		}
		if validID(p.MN) {
			e.MN = p.MN
		}
		return Packet{}, e
	}
	if !digits(p.ST, 2) {
		return fail(ReasonBadST, QnRtnBadST, "ST "+strconv.Quote(p.ST)+" is not 2 digits")
	}
	if !digits(p.CN, 4) {
		return fail(ReasonBadCN, QnRtnBadCN, "CN "+strconv.Quote(p.CN)+" is not 4 digits")
	}
	if !validID(p.PW) {
		return fail(ReasonBadPW, QnRtnBadPW, "PW missing, longer than 64 or not printable ASCII")
	}
	if !validID(p.MN) {
		return fail(ReasonBadMN, QnRtnBadMN, "MN missing, longer than 64 or not printable ASCII")
	}
	fv, err := strconv.ParseUint(flag, 10, 8)
	if err != nil {
		return fail(ReasonBadFlag, QnRtnBadFlag, "Flag "+strconv.Quote(flag)+" is not a number 0..255")
	}
	p.Flag = Flag(fv)
	hasParts := seen&(64|128) != 0
	if p.Flag.Split() != hasParts {
		return fail(ReasonBadFlag, QnRtnBadFlag, "Flag D bit and presence of PNUM/PNO disagree")
	}
	if hasParts {
		n, err1 := strconv.Atoi(pnum)
		o, err2 := strconv.Atoi(pno)
		switch {
		case err1 != nil || err2 != nil:
			return fail(ReasonBadPNUM, QnRtnUnknown, "PNUM "+strconv.Quote(pnum)+" or PNO "+strconv.Quote(pno)+" not a number")
		case n < 1 || n > c.maxParts():
			return fail(ReasonBadPNUM, QnRtnUnknown, "PNUM "+pnum+" out of 1.."+strconv.Itoa(c.maxParts()))
		case o < 1 || o > n:
			return fail(ReasonBadPNUM, QnRtnUnknown, "PNO "+pno+" out of 1..PNUM="+pnum)
		}
		p.PNUM, p.PNO = n, o
	}
	return p, nil
}

func digits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validID accepts 1..64 printable ASCII bytes other than ; = &.
func validID(s string) bool {
	if s == "" || len(s) > maxIDLen {
		return false
	}
	for i := range len(s) {
		if c := s[i]; c <= ' ' || c > '~' || c == ';' || c == '=' || c == '&' {
			return false
		}
	}
	return true
}

// parseQN reads YYYYMMDDhhmmsszzz in loc.
func parseQN(s string, loc *time.Location) (time.Time, error) {
	if !digits(s, 17) {
		return time.Time{}, errorf(ReasonBadQN, "QN %q is not 17 digits YYYYMMDDhhmmsszzz", clipString(s))
	}
	t, err := parseStamp(s[:14], loc)
	if err != nil {
		return time.Time{}, errorf(ReasonBadQN, "QN %s: %s", s, err.(*Error).Detail)
	}
	ms, _ := strconv.Atoi(s[14:])
	return t.Add(time.Duration(ms) * time.Millisecond), nil
}

// QNTime is the time a valid QN stands for, in loc (nil: UTC+8).
func QNTime(qn string, loc *time.Location) (time.Time, error) {
	if loc == nil {
		loc = chinaTime
	}
	return parseQN(qn, loc)
}

func clipString(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// parseStamp reads YYYYMMDDhhmmss in loc and rejects impossible dates
// (time.Date would silently normalise 20240231 to March 2).
func parseStamp(s string, loc *time.Location) (time.Time, error) {
	if !digits(s, 14) {
		if digits(s, 6) {
			return time.Time{}, errorf(ReasonBadTime, "%q is a time without a date, want YYYYMMDDhhmmss", s)
		}
		return time.Time{}, errorf(ReasonBadTime, "%q is not 14 digits YYYYMMDDhhmmss", clipString(s))
	}
	num := func(a, b int) int {
		n := 0
		for i := a; i < b; i++ {
			n = n*10 + int(s[i]-'0')
		}
		return n
	}
	y, mo, d, h, mi, se := num(0, 4), num(4, 6), num(6, 8), num(8, 10), num(10, 12), num(12, 14)
	if mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 59 ||
		d > time.Date(y, time.Month(mo)+1, 0, 0, 0, 0, 0, time.UTC).Day() {
		return time.Time{}, errorf(ReasonBadTime, "%s is not a possible date and time", s)
	}
	return time.Date(y, time.Month(mo), d, h, mi, se, 0, loc), nil
}
