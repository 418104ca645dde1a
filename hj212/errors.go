package hj212

import "fmt"

// Reason says in one word why a frame, a packet or a value was rejected.
// It is meant as a metric label and a dead-letter key.
type Reason string

// Frame-level reasons, from the Framer and CheckFrame.
const (
	ReasonGarbage   Reason = "garbage"     // bytes outside any frame (before the next "##")
	ReasonBadLength Reason = "bad_length"  // the 4 characters after "##" are not decimal digits
	ReasonTooLong   Reason = "too_long"    // declared segment length above the configured maximum
	ReasonTrailer   Reason = "bad_trailer" // no 4 hex digits and "\r\n" where the declared length ends
	ReasonTruncated Reason = "truncated"   // the stream ended inside a frame
	ReasonBadCRC    Reason = "bad_crc"     // checksum does not match the data segment
)

// Packet-level reasons, from parsing the data segment or joining parts.
const (
	ReasonMalformed  Reason = "malformed"        // not a sequence of KEY=value; fields, unknown or repeated key
	ReasonBadQN      Reason = "bad_qn"           // QN missing or not YYYYMMDDhhmmsszzz
	ReasonBadST      Reason = "bad_st"           // ST missing or not 2 digits
	ReasonBadCN      Reason = "bad_cn"           // CN missing or not 4 digits
	ReasonBadPW      Reason = "bad_pw"           // PW missing, too long or not printable
	ReasonBadMN      Reason = "bad_mn"           // MN missing, too long or not printable
	ReasonBadFlag    Reason = "bad_flag"         // Flag missing, not a number 0..255, or D bit and PNUM/PNO disagree
	ReasonBadPNUM    Reason = "bad_pnum"         // PNUM/PNO not numbers, out of 1..MaxParts, or PNO > PNUM
	ReasonBadCP      Reason = "bad_cp"           // CP=&&...&& missing, not last or not closed
	ReasonBadTime    Reason = "bad_datatime"     // DataTime missing, not YYYYMMDDhhmmss, or an impossible date
	ReasonSplitFull  Reason = "split_overflow"   // too many split packets pending on one connection
	ReasonSplitDup   Reason = "split_duplicate"  // the same PNO of a QN twice, or parts disagreeing on PNUM
	ReasonIncomplete Reason = "split_incomplete" // a split packet whose parts did not all arrive in time
)

// Value-level reasons: only that value is rejected, the packet is kept.
const (
	ReasonUnknownField Reason = "unknown_field" // not code-Rtd/Avg/Min/Max/Cou/ZsRtd/ZsAvg/ZsMin/ZsMax/Flag
	ReasonBadCode      Reason = "bad_code"      // pollutant code empty or not letters and digits
	ReasonUnknownCode  Reason = "unknown_code"  // Codec.KnownCode said no
	ReasonBadValue     Reason = "bad_value"     // not a finite decimal number
	ReasonDuplicate    Reason = "duplicate"     // the same code and field twice in one packet
	ReasonBadDataFlag  Reason = "bad_data_flag" // the code's flag is not one of Codec.DataFlags
	ReasonFlagConflict Reason = "flag_conflict" // two different flags for one code
)

// QnRtn is the result code of a 9011 request reply.
type QnRtn int

// QnRtn values of HJ 212-2017.
const (
	QnRtnReady   QnRtn = 1
	QnRtnRefused QnRtn = 2
	QnRtnBadPW   QnRtn = 3
	QnRtnBadMN   QnRtn = 4
	QnRtnBadST   QnRtn = 5
	QnRtnBadFlag QnRtn = 6
	QnRtnBadQN   QnRtn = 7
	QnRtnBadCN   QnRtn = 8
	QnRtnBadCRC  QnRtn = 9
	QnRtnUnknown QnRtn = 100
)

// Error is a rejected frame or packet. QN, PW and MN are filled when they
// could be read from the frame, even one whose CRC failed, so that a 9011
// reply can carry them; QnRtn is the code for that reply, 0 when the
// request cannot be answered (no QN).
type Error struct {
	Reason Reason
	Detail string
	QnRtn  QnRtn
	QN     string
	PW     string
	MN     string
	// Raw holds up to RawLimit bytes of the offending input (set by the
	// Framer and the Server; nil from the pure decoding functions).
	Raw []byte
}

// RawLimit bounds Error.Raw, so that a hostile peer cannot make dead
// letters large.
const RawLimit = 512

func (e *Error) Error() string {
	if e.Detail == "" {
		return "hj212: " + string(e.Reason)
	}
	return "hj212: " + string(e.Reason) + ": " + e.Detail
}

func errorf(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// clip copies at most RawLimit bytes of b.
func clip(b []byte) []byte {
	return append([]byte(nil), b[:min(len(b), RawLimit)]...)
}
