package hj212

import (
	"strconv"
	"strings"
	"time"
)

// AppendFrame appends p as a whole frame to dst: "##", the segment length,
// the segment, its CRC and "\r\n". Header fields are written in the
// standard's order; an empty PW or MN is left out (a 9011 reply to a frame
// whose PW or MN could not be read). It checks what it writes, so that
// cleanprod never sends what it would itself reject.
func (c *Codec) AppendFrame(dst []byte, p Packet) ([]byte, error) {
	switch {
	case !digits(p.QN, 17):
		return dst, errorf(ReasonBadQN, "encode: QN %q is not 17 digits", clipString(p.QN))
	case !digits(p.ST, 2):
		return dst, errorf(ReasonBadST, "encode: ST %q is not 2 digits", clipString(p.ST))
	case !digits(p.CN, 4):
		return dst, errorf(ReasonBadCN, "encode: CN %q is not 4 digits", clipString(p.CN))
	case p.PW != "" && !validID(p.PW):
		return dst, errorf(ReasonBadPW, "encode: PW is not printable ASCII of at most 64 bytes")
	case p.MN != "" && !validID(p.MN):
		return dst, errorf(ReasonBadMN, "encode: MN is not printable ASCII of at most 64 bytes")
	case p.Flag.Split() != (p.PNUM > 0):
		return dst, errorf(ReasonBadFlag, "encode: Flag D bit and PNUM disagree")
	case p.PNUM > 0 && (p.PNUM > c.maxParts() || p.PNO < 1 || p.PNO > p.PNUM):
		return dst, errorf(ReasonBadPNUM, "encode: PNUM %d / PNO %d out of range", p.PNUM, p.PNO)
	case strings.Contains(p.CP, "&&"):
		return dst, errorf(ReasonBadCP, "encode: CP content holds &&")
	}
	start := len(dst)
	dst = append(dst, "##0000QN="...)
	dst = append(dst, p.QN...)
	dst = append(dst, ";ST="...)
	dst = append(dst, p.ST...)
	dst = append(dst, ";CN="...)
	dst = append(dst, p.CN...)
	if p.PW != "" {
		dst = append(dst, ";PW="...)
		dst = append(dst, p.PW...)
	}
	if p.MN != "" {
		dst = append(dst, ";MN="...)
		dst = append(dst, p.MN...)
	}
	dst = append(dst, ";Flag="...)
	dst = strconv.AppendUint(dst, uint64(p.Flag), 10)
	if p.PNUM > 0 {
		dst = append(dst, ";PNUM="...)
		dst = strconv.AppendInt(dst, int64(p.PNUM), 10)
		dst = append(dst, ";PNO="...)
		dst = strconv.AppendInt(dst, int64(p.PNO), 10)
	}
	dst = append(dst, ";CP=&&"...)
	dst = append(dst, p.CP...)
	dst = append(dst, "&&"...)
	n := len(dst) - start - 6
	if n > c.maxSegment() {
		return dst[:start], errorf(ReasonTooLong, "encode: segment of %d bytes above the maximum %d", n, c.maxSegment())
	}
	for i, d := 5, n; i >= 2; i, d = i-1, d/10 {
		dst[start+i] = byte('0' + d%10)
	}
	dst = appendCRC(dst, CRC(dst[start+6:]))
	return append(dst, '\r', '\n'), nil
}

// Encode returns p as a new frame.
func (c *Codec) Encode(p Packet) ([]byte, error) {
	return c.AppendFrame(make([]byte, 0, 64+len(p.CP)), p)
}

// Ack is the 9014 data acknowledgement of req: its QN, ST=91, its PW and
// MN, Flag=4 (2017, no acknowledgement wanted), empty CP.
func Ack(req Packet) Packet {
	return Packet{QN: req.QN, ST: "91", CN: CNAck, PW: req.PW, MN: req.MN, Flag: Version2017 << 2}
}

// Reply is the 9011 request reply carrying rtn for a request with this
// QN, PW and MN: ST=91, Flag=4, CP=&&QnRtn=rtn&&.
func Reply(qn, pw, mn string, rtn QnRtn) Packet {
	return Packet{QN: qn, ST: "91", CN: CNReply, PW: pw, MN: mn, Flag: Version2017 << 2,
		CP: "QnRtn=" + strconv.Itoa(int(rtn))}
}

// FormatData writes d as the CP content of a data upload: DataTime in the
// Codec's Location, then per code (in order of first appearance) its
// fields separated by "," and its flag (the first non-empty Flag of its
// values) last; codes separated by ";". d.Rejects is ignored.
func (c *Codec) FormatData(d Data) string {
	b := make([]byte, 0, 24+len(d.Values)*24)
	b = append(b, "DataTime="...)
	b = d.Time.In(c.location()).AppendFormat(b, "20060102150405")
	done := make([]bool, len(d.Values))
	for i, v := range d.Values {
		if done[i] {
			continue
		}
		b = append(b, ';')
		flag := ""
		for j := i; j < len(d.Values); j++ {
			w := d.Values[j]
			if done[j] || w.Code != v.Code {
				continue
			}
			done[j] = true
			if j > i {
				b = append(b, ',')
			}
			b = append(b, w.Code...)
			b = append(b, '-')
			b = append(b, w.Field...)
			b = append(b, '=')
			b = strconv.AppendFloat(b, w.Value, 'f', -1, 64)
			if flag == "" {
				flag = w.Flag
			}
		}
		if flag != "" {
			b = append(b, ',')
			b = append(b, v.Code...)
			b = append(b, "-Flag="...)
			b = append(b, flag...)
		}
	}
	return string(b)
}

// NewQN is the QN for a request sent at t, in loc (nil: UTC+8).
func NewQN(t time.Time, loc *time.Location) string {
	if loc == nil {
		loc = chinaTime
	}
	t = t.In(loc)
	b := t.AppendFormat(make([]byte, 0, 17), "20060102150405")
	ms := t.Nanosecond() / 1e6
	return string(append(b, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10)))
}
