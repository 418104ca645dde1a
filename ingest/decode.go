package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cleanprod/cleanprod/registry"
)

// Topic layout of gateway contract v1.
const (
	topicPrefix     = "cp/v1/"
	telemetrySuffix = "/telemetry"
	// TelemetryFilter subscribes to every gateway's telemetry.
	TelemetryFilter = "cp/v1/+/+/telemetry"
	// DeadLetterPrefix is the topic prefix of rejected input; the reason
	// is the last level.
	DeadLetterPrefix = "cp/v1/deadletter/"
)

// TelemetryTopic returns the telemetry topic of a gateway.
func TelemetryTopic(enterprise, gateway string) string {
	return topicPrefix + enterprise + "/" + gateway + telemetrySuffix
}

// ParseTopic returns the enterprise and gateway of a telemetry topic. The
// topic may carry a shared-subscription prefix ($share/group/).
func ParseTopic(topic string) (enterprise, gateway string, ok bool) {
	rest, found := strings.CutPrefix(topic, topicPrefix)
	if !found {
		return "", "", false
	}
	rest, found = strings.CutSuffix(rest, telemetrySuffix)
	if !found {
		return "", "", false
	}
	enterprise, gateway, found = strings.Cut(rest, "/")
	if !found || !registry.ValidID(enterprise) || !registry.ValidID(gateway) {
		return "", "", false
	}
	return enterprise, gateway, true
}

// Message is a decoded telemetry message.
type Message struct {
	Gateway  string
	Seq      int64
	Sent     time.Time // zero if the gateway did not say
	Readings []RawReading
	Rejects  []Reject // readings that failed decoding
}

// RawReading is one reading as the gateway sent it, decoded but not yet
// checked against the registry.
type RawReading struct {
	Index int // position in the message's readings array
	Meter string
	Time  time.Time
	Value float64
	Raw   json.RawMessage // the reading's JSON, for dead-letters
}

// Reject is a rejected reading with its reason.
type Reject struct {
	Index  int
	Reason Reason
	Detail string
	Raw    json.RawMessage
}

// DecodeError is a message rejected as a whole.
type DecodeError struct {
	Reason Reason
	Detail string
}

func (e *DecodeError) Error() string { return string(e.Reason) + ": " + e.Detail }

type wireMessage struct {
	Gateway  json.RawMessage   `json:"gateway"`
	Seq      json.RawMessage   `json:"seq"`
	Sent     json.RawMessage   `json:"sent"`
	Readings []json.RawMessage `json:"readings"`
}

type wireReading struct {
	Meter json.RawMessage `json:"meter"`
	TS    json.RawMessage `json:"ts"`
	Value json.RawMessage `json:"value"`
}

// Decode decodes a contract-v1 payload. Whole-message problems are returned
// as a *DecodeError; problems of single readings are listed in
// Message.Rejects and the other readings are kept. maxReadings bounds the
// readings array (0: no bound).
func Decode(payload []byte, maxReadings int) (*Message, error) {
	if len(payload) == 0 {
		return nil, &DecodeError{ReasonEmptyPayload, "payload is empty"}
	}
	if !utf8.Valid(payload) {
		return nil, &DecodeError{ReasonMalformed, "payload is not valid UTF-8"}
	}
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, &DecodeError{ReasonMalformed, "payload is not a JSON object"}
	}
	var w wireMessage
	if err := json.Unmarshal(payload, &w); err != nil {
		if _, ok := err.(*json.UnmarshalTypeError); ok {
			return nil, &DecodeError{ReasonInvalidMessage, fmt.Sprintf("readings must be an array: %v", err)}
		}
		return nil, &DecodeError{ReasonMalformed, err.Error()}
	}
	m := &Message{}
	var err error
	if m.Gateway, err = jsonString(w.Gateway); err != nil {
		return nil, &DecodeError{ReasonInvalidMessage, "gateway: " + err.Error()}
	}
	if len(w.Seq) == 0 || string(w.Seq) == "null" {
		return nil, &DecodeError{ReasonInvalidMessage, "seq is missing"}
	}
	if m.Seq, err = strconv.ParseInt(string(w.Seq), 10, 64); err != nil || m.Seq < 0 {
		return nil, &DecodeError{ReasonInvalidMessage, fmt.Sprintf("seq %s: want a non-negative integer", truncate(w.Seq))}
	}
	if len(w.Sent) > 0 && string(w.Sent) != "null" {
		s, err := jsonString(w.Sent)
		if err != nil {
			return nil, &DecodeError{ReasonInvalidMessage, "sent: " + err.Error()}
		}
		if m.Sent, err = parseTime(s); err != nil {
			return nil, &DecodeError{ReasonInvalidMessage, "sent: " + err.Error()}
		}
	}
	if w.Readings == nil {
		return nil, &DecodeError{ReasonInvalidMessage, "readings is missing"}
	}
	if len(w.Readings) == 0 {
		return nil, &DecodeError{ReasonNoReadings, "readings is empty"}
	}
	if maxReadings > 0 && len(w.Readings) > maxReadings {
		return nil, &DecodeError{ReasonTooManyReadings, fmt.Sprintf("%d readings, at most %d per message", len(w.Readings), maxReadings)}
	}
	m.Readings = make([]RawReading, 0, len(w.Readings))
	for i, raw := range w.Readings {
		r, reason, detail := decodeReading(raw)
		if reason != "" {
			m.Rejects = append(m.Rejects, Reject{Index: i, Reason: reason, Detail: detail, Raw: raw})
			continue
		}
		r.Index = i
		r.Raw = raw
		m.Readings = append(m.Readings, r)
	}
	return m, nil
}

func decodeReading(raw json.RawMessage) (RawReading, Reason, string) {
	var r RawReading
	if len(raw) == 0 || raw[0] != '{' {
		return r, ReasonInvalidReading, "reading is not a JSON object"
	}
	var w wireReading
	if err := json.Unmarshal(raw, &w); err != nil {
		return r, ReasonInvalidReading, err.Error()
	}
	var err error
	if r.Meter, err = jsonString(w.Meter); err != nil {
		return r, ReasonInvalidReading, "meter: " + err.Error()
	}
	ts, err := jsonString(w.TS)
	if err != nil {
		return r, ReasonBadTimestamp, "ts: " + err.Error()
	}
	if r.Time, err = parseTime(ts); err != nil {
		return r, ReasonBadTimestamp, "ts: " + err.Error()
	}
	if len(w.Value) == 0 || string(w.Value) == "null" {
		return r, ReasonInvalidReading, "value is missing"
	}
	if w.Value[0] == '"' || w.Value[0] == '{' || w.Value[0] == '[' || w.Value[0] == 't' || w.Value[0] == 'f' {
		return r, ReasonInvalidValue, fmt.Sprintf("value %s is not a number", truncate(w.Value))
	}
	v, err := strconv.ParseFloat(string(w.Value), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return r, ReasonInvalidValue, fmt.Sprintf("value %s is not a finite number", truncate(w.Value))
	}
	r.Value = v
	return r, "", ""
}

// jsonString decodes a JSON string that must be present and non-empty.
func jsonString(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", fmt.Errorf("missing")
	}
	if raw[0] != '"' {
		return "", fmt.Errorf("%s is not a string", truncate(raw))
	}
	var s string
	// Fast path: no escapes.
	if bytes.IndexByte(raw[1:len(raw)-1], '\\') < 0 {
		s = string(raw[1 : len(raw)-1])
	} else if err := json.Unmarshal(raw, &s); err != nil {
		return "", err
	}
	if s == "" {
		return "", fmt.Errorf("empty")
	}
	return s, nil
}

// parseTime accepts RFC 3339 with a zone (Z or an offset), as the contract
// says; a local time without a zone would be a guess.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not RFC 3339 with a zone (e.g. 2026-11-29T06:00:00Z)", truncateString(s))
	}
	return t, nil
}

func truncate(b []byte) string { return truncateString(string(b)) }

func truncateString(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
