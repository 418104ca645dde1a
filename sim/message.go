package sim

import (
	"strconv"
	"time"
)

// Fault is the kind of fault a message carries.
type Fault uint8

// Faults the simulator injects.
const (
	FaultNone           Fault = iota
	FaultMalformed            // payload truncated
	FaultUnknownGateway       // published under an unregistered gateway
	FaultSpoofed              // one reading of a meter registered elsewhere
	FaultUnknownMeter         // one reading of a meter registered nowhere
	FaultNaN                  // one reading's value is the string "NaN"
	FaultFuture               // one reading stamped in the future
	FaultDuplicate            // verbatim re-send of an earlier message
	FaultOutOfOrder           // sent after messages generated later
	FaultBadCRC               // HJ 212: a copy of a station's frame with a wrong CRC, sent before the good one
	FaultDataFlag             // HJ 212: one value flagged C (calibration), M (maintenance) or D (fault)
	FaultBacklog              // HJ 212: a frame kept while the logger was offline, sent as history on reconnect
	numFaults
)

// String returns the fault's name, e.g. "out_of_order".
func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "none"
	case FaultMalformed:
		return "malformed"
	case FaultUnknownGateway:
		return "unknown_gateway"
	case FaultSpoofed:
		return "spoofed"
	case FaultUnknownMeter:
		return "unknown_meter"
	case FaultNaN:
		return "nan"
	case FaultFuture:
		return "future"
	case FaultDuplicate:
		return "duplicate"
	case FaultOutOfOrder:
		return "out_of_order"
	case FaultBadCRC:
		return "bad_crc"
	case FaultDataFlag:
		return "data_flag"
	case FaultBacklog:
		return "backlog"
	}
	return "fault(" + strconv.Itoa(int(f)) + ")"
}

// Reason returns the ingest rejection reason (an ingest.Reason value) the
// fault must produce, or "" for a fault the service accepts or absorbs
// (none, duplicate, out of order).
func (f Fault) Reason() string {
	switch f {
	case FaultMalformed:
		return "malformed_json"
	case FaultUnknownGateway:
		return "unknown_gateway"
	case FaultSpoofed:
		return "spoofed"
	case FaultUnknownMeter:
		return "unknown_meter"
	case FaultNaN:
		return "invalid_value"
	case FaultFuture:
		return "future_timestamp"
	case FaultBadCRC:
		return "hj212_bad_crc"
	}
	return ""
}

// MessageLevel reports whether the fault's reason rejects a whole message
// (counted in messages) rather than one reading (counted in readings).
func (f Fault) MessageLevel() bool {
	return f == FaultMalformed || f == FaultUnknownGateway || f == FaultBadCRC
}

// Message is one MQTT message of the gateway contract v1, or one HJ 212
// frame of a station's data logger.
type Message struct {
	Topic    string    // cp/v1/{enterprise}/{gateway}/telemetry, or .../hj212 for a station's frame
	Payload  []byte    // JSON or an HJ 212 frame; owned by the receiver
	Sent     time.Time // simulated time the gateway sent it
	Readings int       // readings in the payload, a faulty one included
	Fault    Fault     // FaultNone for a clean message
	eff      *effects
	shard    int // Run's worker for the gateway
	frame    *frameInfo
}

// frameInfo is what a station's transport needs to know of an HJ 212
// frame without parsing it.
type frameInfo struct {
	mn, qn    string
	reconnect bool // the first frame after an offline period: the link was down
}

// effects is what a message adds to the ledger once it is sent.
type effects struct {
	valid []reading // readings the service must store
}

// encoder builds payloads without reflection and keeps the last formatted
// timestamp, since most readings of a message share it.
type encoder struct {
	lastT  time.Time
	lastTS []byte
}

func (e *encoder) ts(b []byte, t time.Time) []byte {
	if !t.Equal(e.lastT) || e.lastTS == nil {
		e.lastT = t
		e.lastTS = t.UTC().AppendFormat(e.lastTS[:0], time.RFC3339)
	}
	return append(b, e.lastTS...)
}

// extraReading is a reading added by a spoofed or unknown-meter fault.
type extraReading struct {
	meter string
	units int64 // one decimal
}

// encode writes the message; readings[bad] (bad >= 0) is written as the
// fault says (NaN value or future timestamp); extra, if set, is appended.
func (e *encoder) encode(gw string, seq uint64, sent time.Time, rs []reading, bad int, f Fault, future time.Time, extra *extraReading) []byte {
	b := make([]byte, 0, 80+len(gw)+72*(len(rs)+1))
	b = append(b, `{"gateway":"`...)
	b = append(b, gw...)
	b = append(b, `","seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"sent":"`...)
	b = e.ts(b, sent)
	b = append(b, `","readings":[`...)
	for i, r := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"meter":"`...)
		b = append(b, r.mt.m.ID...)
		b = append(b, `","ts":"`...)
		if i == bad && f == FaultFuture {
			b = future.UTC().AppendFormat(b, time.RFC3339)
		} else {
			b = e.ts(b, r.ts)
		}
		b = append(b, `","value":`...)
		if i == bad && f == FaultNaN {
			b = append(b, `"NaN"`...)
		} else {
			b = appendFixed(b, r.units, r.mt.dec)
		}
		b = append(b, '}')
	}
	if extra != nil {
		if len(rs) > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"meter":"`...)
		b = append(b, extra.meter...)
		b = append(b, `","ts":"`...)
		b = e.ts(b, sent)
		b = append(b, `","value":`...)
		b = appendFixed(b, extra.units, 1)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendFixed writes units * 10^-dec with exactly dec decimals.
func appendFixed(b []byte, units int64, dec int) []byte {
	if units < 0 {
		b = append(b, '-')
		units = -units
	}
	if dec == 0 {
		return strconv.AppendInt(b, units, 10)
	}
	p := int64(1)
	for range dec {
		p *= 10
	}
	b = strconv.AppendInt(b, units/p, 10)
	b = append(b, '.')
	frac := units % p
	for q := p / 10; q > 1 && frac < q; q /= 10 {
		b = append(b, '0')
	}
	return strconv.AppendInt(b, frac, 10)
}
