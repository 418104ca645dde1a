package ingest

// This file is a plain encoding/json implementation of Decode, the
// reference FuzzDecode holds the single-pass scanner in decode.go to: the
// same payloads accepted and rejected, with the same Reason, and the same
// readings and rejects. Keys match exactly (after decoding escapes) and a
// later duplicate key replaces an earlier one, as a map decodes them.
// Details are the contract's own texts, except for a syntax error, whose
// wording differs (encoding/json's here, the scanner's position there).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// jsonTypeRef names the JSON type of a value.
func jsonTypeRef(raw json.RawMessage) string {
	switch raw[0] {
	case '{':
		return "an object"
	case '"':
		return "a string"
	case 't', 'f':
		return "a bool"
	}
	return "a number"
}

// decodeRef is Decode as it was before the scanner.
func decodeRef(payload []byte, maxReadings int) (*Message, error) {
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
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(payload, &obj); err != nil {
		return nil, &DecodeError{ReasonMalformed, err.Error()}
	}
	var w struct {
		Gateway, Seq, Sent json.RawMessage
		Readings           []json.RawMessage
	}
	w.Gateway, w.Seq, w.Sent = obj["gateway"], obj["seq"], obj["sent"]
	if raw := obj["readings"]; raw != nil && string(raw) != "null" {
		if raw[0] != '[' {
			return nil, &DecodeError{ReasonInvalidMessage, "readings must be an array, not " + jsonTypeRef(raw)}
		}
		if err := json.Unmarshal(raw, &w.Readings); err != nil {
			return nil, &DecodeError{ReasonMalformed, err.Error()}
		}
	}
	m := &Message{}
	var err error
	if m.Gateway, err = jsonStringRef(w.Gateway); err != nil {
		return nil, &DecodeError{ReasonInvalidMessage, "gateway: " + err.Error()}
	}
	if len(w.Seq) == 0 || string(w.Seq) == "null" {
		return nil, &DecodeError{ReasonInvalidMessage, "seq is missing"}
	}
	if m.Seq, err = strconv.ParseInt(string(w.Seq), 10, 64); err != nil || m.Seq < 0 {
		return nil, &DecodeError{ReasonInvalidMessage, fmt.Sprintf("seq %s: want a non-negative integer", truncateRef(w.Seq))}
	}
	if len(w.Sent) > 0 && string(w.Sent) != "null" {
		s, err := jsonStringRef(w.Sent)
		if err != nil {
			return nil, &DecodeError{ReasonInvalidMessage, "sent: " + err.Error()}
		}
		if m.Sent, err = parseTimeRef(s); err != nil {
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
		r, reason, detail := decodeReadingRef(raw)
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

func decodeReadingRef(raw json.RawMessage) (RawReading, Reason, string) {
	var r RawReading
	if len(raw) == 0 || raw[0] != '{' {
		return r, ReasonInvalidReading, "reading is not a JSON object"
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return r, ReasonInvalidReading, err.Error()
	}
	w := struct{ Meter, TS, Value json.RawMessage }{obj["meter"], obj["ts"], obj["value"]}
	var err error
	if r.Meter, err = jsonStringRef(w.Meter); err != nil {
		return r, ReasonInvalidReading, "meter: " + err.Error()
	}
	ts, err := jsonStringRef(w.TS)
	if err != nil {
		return r, ReasonBadTimestamp, "ts: " + err.Error()
	}
	if r.Time, err = parseTimeRef(ts); err != nil {
		return r, ReasonBadTimestamp, "ts: " + err.Error()
	}
	if len(w.Value) == 0 || string(w.Value) == "null" {
		return r, ReasonInvalidReading, "value is missing"
	}
	if w.Value[0] == '"' || w.Value[0] == '{' || w.Value[0] == '[' || w.Value[0] == 't' || w.Value[0] == 'f' {
		return r, ReasonInvalidValue, fmt.Sprintf("value %s is not a number", truncateRef(w.Value))
	}
	v, err := strconv.ParseFloat(string(w.Value), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return r, ReasonInvalidValue, fmt.Sprintf("value %s is not a finite number", truncateRef(w.Value))
	}
	r.Value = v
	return r, "", ""
}

// jsonStringRef decodes a JSON string that must be present and non-empty.
func jsonStringRef(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", fmt.Errorf("missing")
	}
	if raw[0] != '"' {
		return "", fmt.Errorf("%s is not a string", truncateRef(raw))
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

func parseTimeRef(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not RFC 3339 with a zone (e.g. 2026-11-29T06:00:00Z)", truncateRefString(s))
	}
	return t, nil
}

func truncateRef(b []byte) string { return truncateRefString(string(b)) }

func truncateRefString(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
