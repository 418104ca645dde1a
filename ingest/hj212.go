package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/cleanprod/cleanprod/hj212"
	"github.com/cleanprod/cleanprod/registry"
)

// HJ 212 reasons. The codec's own reasons (bad_crc, bad_datatime, ...)
// become hj212_{reason}.
const (
	ReasonNoStation   Reason = "no_station"    // an HJ 212 frame from a gateway that declares no station
	ReasonUnknownMN   Reason = "unknown_mn"    // an HJ 212 logger's MN is registered nowhere
	ReasonBadPassword Reason = "bad_password"  // an HJ 212 frame's PW is not its station's
	ReasonNotData     Reason = "not_data"      // an HJ 212 command that carries no data (only 2011, 2051, 2061 and 2031 do)
	ReasonUnmapped    Reason = "unmapped_code" // a pollutant code that no meter of the station takes
)

// hj212Reason is the Reason of a codec rejection.
func hj212Reason(r hj212.Reason) Reason { return Reason("hj212_" + string(r)) }

// HJ212 decodes HJ 212 frames: one per message, or the frames of one split
// packet (PNUM/PNO) in one payload, as the TCP receiver hands them over.
// The frame's MN and PW must be those of the gateway's station. Each value
// goes to the meter that the station maps its code, field and data
// command to; fields no meter takes are skipped, a code none takes is
// rejected as unmapped_code. A value whose flag marks it not valid data
// (anything but N, and S where the station allows hand-set values) is
// kept with its flag as an invalid reading: stored apart, counted toward
// nothing.
type HJ212 struct {
	// MaxSegment bounds a frame's data segment (0: the codec's default).
	MaxSegment int
}

// Decode implements Protocol.
func (h HJ212) Decode(gw *registry.Gateway, payload []byte, _ time.Time) (*Message, *DecodeError) {
	st := gw.Station
	if st == nil {
		return nil, &DecodeError{ReasonNoStation, fmt.Sprintf("gateway %q of enterprise %q declares no hj212 station", gw.ID, gw.Enterprise.ID)}
	}
	codec := &hj212.Codec{MaxSegment: h.MaxSegment, Location: st.Location}
	p, err := decodeFrames(codec, payload)
	if err != nil {
		return nil, err
	}
	if p.MN != st.MN {
		return nil, &DecodeError{ReasonSpoofed, fmt.Sprintf("frame of MN %q on the topic of gateway %q, whose station is %q", truncateString(p.MN), gw.ID, st.MN)}
	}
	if p.PW != st.Password {
		return nil, &DecodeError{ReasonBadPassword, fmt.Sprintf("frame of MN %q: wrong PW", p.MN)}
	}
	if !hj212.IsData(p.CN) {
		return nil, &DecodeError{ReasonNotData, fmt.Sprintf("CN %s carries no data (2011, 2051, 2061 or 2031 do)", p.CN)}
	}
	d, derr := codec.ParseData(p.CP)
	if derr != nil {
		return nil, codecError(derr)
	}
	cn, _ := strconv.Atoi(p.CN)
	msg := &Message{Gateway: gw.ID, NoSeq: true}
	if t, err := hj212.QNTime(p.QN, st.Location); err == nil {
		msg.Sent = t
	}
	index := 0
	raw := func(code, field, value string) []byte {
		return strconv.AppendQuote(nil, code+"-"+field+"="+value)
	}
	for _, r := range d.Rejects {
		msg.Rejects = append(msg.Rejects, Reject{Index: index, Reason: hj212Reason(r.Reason), Detail: fmt.Sprintf("%s: %s", r.Raw, r.Reason), Raw: strconv.AppendQuote(nil, r.Raw)})
		index++
	}
	var unmapped map[string]bool // codes reported unmapped, once each; made on the first
	for _, v := range d.Values {
		i := index
		index++
		m, ok := st.Meter(registry.HJ212Source{Code: v.Code, Field: v.Field, CN: cn})
		if !ok {
			if !st.Maps(v.Code) && !unmapped[v.Code] {
				if unmapped == nil {
					unmapped = map[string]bool{}
				}
				unmapped[v.Code] = true
				msg.Rejects = append(msg.Rejects, Reject{Index: i, Reason: ReasonUnmapped, Detail: fmt.Sprintf("pollutant code %s: no meter of station %q takes it", v.Code, st.MN), Raw: raw(v.Code, v.Field, strconv.FormatFloat(v.Value, 'g', -1, 64))})
			}
			continue // a field or data command this station's meters do not take
		}
		msg.Readings = append(msg.Readings, RawReading{Index: i, Meter: m.ID, Time: d.Time, Value: v.Value, Flag: v.Flag, Invalid: !validFlag(v.Flag, st.ManualValid),
			Raw: raw(v.Code, v.Field, strconv.FormatFloat(v.Value, 'g', -1, 64))})
	}
	// A packet none of whose values a meter takes (minute data where the
	// meters take hourly data) is taken, with nothing to store.
	return msg, nil
}

// decodeFrames decodes the one frame of payload, or joins the frames of
// one split packet.
func decodeFrames(codec *hj212.Codec, payload []byte) (hj212.Packet, *DecodeError) {
	if len(payload) == 0 {
		return hj212.Packet{}, &DecodeError{ReasonEmptyPayload, "payload is empty"}
	}
	f := hj212.NewFramer(bytes.NewReader(payload), codec)
	var j hj212.Joiner
	for {
		frame, err := f.Next()
		if err == io.EOF {
			return hj212.Packet{}, &DecodeError{hj212Reason(hj212.ReasonIncomplete), "the frames do not make up one whole packet (a split packet's frames all go in one message)"}
		}
		if err != nil {
			return hj212.Packet{}, codecError(err)
		}
		p, err := codec.Decode(frame)
		if err != nil {
			return p, codecError(err)
		}
		joined, _, done, err := j.Add(p, frame, time.Time{})
		if err != nil {
			return p, codecError(err)
		}
		if !done {
			continue
		}
		if _, err := f.Next(); err != io.EOF {
			return p, &DecodeError{ReasonInvalidMessage, "more after a whole packet: one packet per message"}
		}
		return joined, nil
	}
}

// codecError turns the codec's rejection into the message's.
func codecError(err error) *DecodeError {
	var e *hj212.Error
	if errors.As(err, &e) {
		return &DecodeError{hj212Reason(e.Reason), e.Error()}
	}
	return &DecodeError{ReasonMalformed, err.Error()}
}

// validFlag says whether a value with data flag f counts: N (or no flag
// sent), and S where hand-set values are allowed.
func validFlag(f string, manual bool) bool {
	return f == "" || f == "N" || (manual && f == "S")
}
