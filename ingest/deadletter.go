package ingest

import (
	"encoding/json"
	"time"
	"unicode/utf8"
)

// deadLetterPayloadLimit bounds the original payload copied into an
// envelope, so an oversized message does not become an oversized letter.
const deadLetterPayloadLimit = 64 << 10

// DeadLetter is the JSON envelope published to cp/v1/deadletter/{reason}.
// Message-level rejects carry the original payload; reading-level rejects
// carry the rejected readings only (the rest of the message was stored).
type DeadLetter struct {
	Reason        Reason            `json:"reason"`
	Detail        string            `json:"detail,omitempty"`
	Topic         string            `json:"topic"`
	Received      time.Time         `json:"received"`
	Payload       string            `json:"payload,omitempty"`
	PayloadBase64 []byte            `json:"payload_base64,omitempty"` // when the payload is not UTF-8
	PayloadBytes  int               `json:"payload_bytes"`
	Truncated     bool              `json:"truncated,omitempty"`
	Readings      []RejectedReading `json:"readings,omitempty"`
}

// RejectedReading is one rejected reading inside a DeadLetter.
type RejectedReading struct {
	Index   int             `json:"index"`
	Detail  string          `json:"detail"`
	Reading json.RawMessage `json:"reading,omitempty"`
}

// DeadLetterTopic returns the dead-letter topic of a reason.
func DeadLetterTopic(r Reason) string { return DeadLetterPrefix + string(r) }

func messageLetter(topic string, payload []byte, received time.Time, err *DecodeError) DeadLetter {
	dl := DeadLetter{Reason: err.Reason, Detail: err.Detail, Topic: topic, Received: received, PayloadBytes: len(payload)}
	p := payload
	if len(p) > deadLetterPayloadLimit {
		p, dl.Truncated = p[:deadLetterPayloadLimit], true
	}
	if utf8.Valid(p) {
		dl.Payload = string(p)
	} else {
		dl.PayloadBase64 = p
	}
	return dl
}

// readingLetters groups a message's rejected readings by reason, one
// envelope each.
func readingLetters(topic string, payloadLen int, received time.Time, rejects []Reject) []DeadLetter {
	var out []DeadLetter
	idx := map[Reason]int{}
	for _, r := range rejects {
		i, ok := idx[r.Reason]
		if !ok {
			i = len(out)
			idx[r.Reason] = i
			out = append(out, DeadLetter{Reason: r.Reason, Topic: topic, Received: received, PayloadBytes: payloadLen})
		}
		raw := r.Raw
		if !json.Valid(raw) {
			raw = nil
		}
		out[i].Readings = append(out[i].Readings, RejectedReading{Index: r.Index, Detail: r.Detail, Reading: raw})
	}
	return out
}
