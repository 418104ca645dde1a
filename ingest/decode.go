package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/cleanprod/cleanprod/registry"
)

// Topic layout of gateway contract v1.
const (
	topicPrefix     = "cp/v1/"
	telemetrySuffix = "/telemetry"
	// TelemetryFilter subscribes to every gateway's telemetry.
	TelemetryFilter = "cp/v1/+/+/telemetry"
	// HJ212Filter subscribes to the HJ 212 frames gateways forward.
	HJ212Filter = "cp/v1/+/+/hj212"
	// DeadLetterPrefix is the topic prefix of rejected input; the reason
	// is the last level.
	DeadLetterPrefix = "cp/v1/deadletter/"
)

// TelemetryTopic returns the telemetry topic of a gateway.
func TelemetryTopic(enterprise, gateway string) string {
	return topicPrefix + enterprise + "/" + gateway + telemetrySuffix
}

// ParseTopic returns the enterprise and gateway of a telemetry topic
// (brokers deliver shared-subscription messages on the plain topic).
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
	NoSeq    bool      // the protocol numbers no messages (HJ 212): no sequence to track
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
	// Flag is the data flag an analyser sent (HJ 212); empty otherwise.
	Flag string
	// Invalid says the flag marks the value as not valid data: it is
	// stored apart with its flag, and counts toward nothing.
	Invalid bool
	// Raw is the reading's JSON, for dead-letters. It aliases the payload
	// passed to Decode (capacity capped, so an append cannot write into
	// the payload): the payload must not be modified while Raw is in use.
	Raw json.RawMessage
}

// Reject is a rejected reading with its reason.
type Reject struct {
	Index  int
	Reason Reason
	Detail string
	Raw    json.RawMessage // aliases the payload, like RawReading.Raw
}

// DecodeError is a message rejected as a whole.
type DecodeError struct {
	Reason Reason
	Detail string
}

func (e *DecodeError) Error() string { return string(e.Reason) + ": " + e.Detail }

// Decode decodes a contract-v1 payload. Whole-message problems are returned
// as a *DecodeError; problems of single readings are listed in
// Message.Rejects and the other readings are kept. maxReadings bounds the
// readings array (0: no bound).
//
// The Raw of every reading and reject is a sub-slice of payload, not a
// copy: the caller must not modify payload afterwards. (The pipeline never
// does; paho allocates a fresh payload for every message.)
//
// Decode is a single pass over the payload that checks the JSON grammar of
// all of it while it extracts the contract's fields. Keys match exactly
// (escapes decoded: "\u0073eq" is "seq"); a later duplicate key replaces
// an earlier one. FuzzDecode holds it to a plain encoding/json decoder
// (decode_ref_test.go): the same payloads accepted, the same reasons and
// readings; a payload nesting objects and arrays more than maxDepth levels
// deep is malformed_json, where encoding/json allowed 10000.
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
	d := decoder{data: payload}
	m, derr := d.message(maxReadings)
	if derr != nil {
		return nil, derr // not "return m, derr": a nil *DecodeError is a non-nil error
	}
	return m, nil
}

// maxDepth bounds how deeply a payload may nest objects and arrays (the
// top-level object is level 1). The contract needs 3; the bound lets
// skipValue keep its stack of open containers in one uint64.
const maxDepth = 64

// tooDeepDetail is the detail of a payload nested beyond maxDepth.
const tooDeepDetail = "objects and arrays nested more than 64 levels deep"

// decoder scans one payload. pos only moves forward: every step either
// consumes at least one byte or fails, so the scan ends on any input.
// Its methods report ok=false when the payload is not valid JSON; the
// caller then gives up and returns malformed().
type decoder struct {
	data    []byte
	pos     int
	tooDeep bool // the scan stopped at a container nested beyond maxDepth
	meters  meterCache
}

// message decodes the top-level object.
func (d *decoder) message(maxReadings int) (*Message, *DecodeError) {
	m := &Message{}
	var (
		// The raw values of the scalar fields, nil when absent. They are
		// interpreted after the scan: a later duplicate key replaces an
		// earlier one, and a syntax error anywhere wins over any problem
		// of a field.
		gateway, seq, sent []byte
		// haveReadings: the last "readings" was an array; count is its
		// number of elements.
		haveReadings bool
		count        int
		// notArray is the JSON type of the last "readings" when it was
		// neither an array nor null.
		notArray string
	)
	d.skipSpace()
	if d.pos >= len(d.data) || d.data[d.pos] != '{' {
		return nil, d.malformed() // "\v{": Decode's TrimSpace skips more than JSON space
	}
	d.pos++
	for first := true; ; first = false {
		end, ok := d.member(first)
		if !ok {
			return nil, d.malformed()
		}
		if end {
			break
		}
		key, escaped, ok := d.memberKey()
		if !ok {
			return nil, d.malformed()
		}
		switch messageField(key, escaped) {
		case gatewayField:
			gateway, ok = d.value(1)
		case seqField:
			seq, ok = d.value(1)
		case sentField:
			sent, ok = d.value(1)
		case readingsField:
			m.Readings, m.Rejects = m.Readings[:0], m.Rejects[:0]
			haveReadings, count, notArray = false, 0, ""
			if d.pos < len(d.data) && d.data[d.pos] == '[' {
				haveReadings = true
				count, ok = d.readings(m, maxReadings)
				break
			}
			var raw []byte
			if raw, ok = d.value(1); ok && string(raw) != "null" {
				notArray = jsonType(raw[0])
			}
		default:
			_, ok = d.value(1)
		}
		if !ok {
			return nil, d.malformed()
		}
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return nil, d.malformed() // something after the object
	}

	// The payload is valid JSON: check the fields in the order the
	// encoding/json version did, so the first problem reported is the same.
	if notArray != "" {
		return nil, &DecodeError{ReasonInvalidMessage, "readings must be an array, not " + article(notArray)}
	}
	var buf [64]byte // unescaped strings, on the stack
	gw, problem := stringContent(gateway, buf[:0])
	if problem != "" {
		return nil, &DecodeError{ReasonInvalidMessage, "gateway: " + problem}
	}
	m.Gateway = string(gw)
	if len(seq) == 0 || string(seq) == "null" {
		return nil, &DecodeError{ReasonInvalidMessage, "seq is missing"}
	}
	// string(seq) does not allocate: the compiler converts short strings
	// that do not escape in a stack buffer (strconv copies the text it
	// keeps in its errors).
	n, err := strconv.ParseInt(string(seq), 10, 64)
	if err != nil || n < 0 {
		return nil, &DecodeError{ReasonInvalidMessage, fmt.Sprintf("seq %s: want a non-negative integer", truncate(seq))}
	}
	m.Seq = n
	if len(sent) > 0 && string(sent) != "null" {
		s, problem := stringContent(sent, buf[:0])
		if problem != "" {
			return nil, &DecodeError{ReasonInvalidMessage, "sent: " + problem}
		}
		if m.Sent, err = parseTimestamp(s); err != nil {
			return nil, &DecodeError{ReasonInvalidMessage, "sent: " + err.Error()}
		}
	}
	if !haveReadings {
		return nil, &DecodeError{ReasonInvalidMessage, "readings is missing"}
	}
	if count == 0 {
		return nil, &DecodeError{ReasonNoReadings, "readings is empty"}
	}
	if maxReadings > 0 && count > maxReadings {
		return nil, &DecodeError{ReasonTooManyReadings, fmt.Sprintf("%d readings, at most %d per message", count, maxReadings)}
	}
	return m, nil
}

// readings decodes the array at d.pos into m and returns its number of
// elements. Past maxReadings it only checks and counts: the message will
// be rejected anyway.
func (d *decoder) readings(m *Message, maxReadings int) (count int, ok bool) {
	d.pos++ // '['
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return 0, true
	}
	for i := 0; ; i++ {
		d.skipSpace()
		if maxReadings > 0 && i >= maxReadings {
			if _, ok := d.value(2); !ok {
				return 0, false
			}
		} else {
			start := d.pos
			r, reason, detail, ok := d.reading()
			if !ok {
				return 0, false
			}
			if i == 0 {
				// Size the slice once, guessing that the readings are
				// about as long as the first: gateways send uniform
				// readings, and growing by appending would copy the
				// slice several times per message. No valid reading is
				// shorter than minReading, which bounds the guess when
				// the first element is a short reject.
				const minReading = len(`{"meter":"x","ts":"2026-11-29T06:00:00Z","value":0},`)
				n := 1 + (len(d.data)-d.pos)/max(d.pos-start+1, minReading)
				if maxReadings > 0 && n > maxReadings {
					n = maxReadings
				}
				if cap(m.Readings) < n {
					m.Readings = make([]RawReading, 0, n)
				}
			}
			if reason != "" {
				m.Rejects = append(m.Rejects, Reject{Index: i, Reason: reason, Detail: detail, Raw: r.Raw})
			} else {
				r.Index = i
				m.Readings = append(m.Readings, r)
			}
		}
		d.skipSpace()
		if d.pos >= len(d.data) {
			return 0, false
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return i + 1, true
		default:
			return 0, false
		}
	}
}

// reading decodes one element of the readings array. A reading that is
// not an object or has a bad field comes back with a reason and detail;
// ok is false only for a syntax error.
func (d *decoder) reading() (r RawReading, reason Reason, detail string, ok bool) {
	start := d.pos
	if d.pos >= len(d.data) || d.data[d.pos] != '{' {
		if r.Raw, ok = d.value(2); !ok {
			return r, "", "", false
		}
		return r, ReasonInvalidReading, "reading is not a JSON object", true
	}
	d.pos++
	var meter, ts, value []byte // raw values; a duplicate key replaces
	for first := true; ; first = false {
		end, ok := d.member(first)
		if !ok {
			return r, "", "", false
		}
		if end {
			break
		}
		f, ok := d.readingKey()
		if !ok {
			return r, "", "", false
		}
		raw, ok := d.value(3)
		if !ok {
			return r, "", "", false
		}
		switch f {
		case meterField:
			meter = raw
		case tsField:
			ts = raw
		case valueField:
			value = raw
		}
	}
	r.Raw = d.data[start:d.pos:d.pos]

	var buf [64]byte // unescaped strings, on the stack
	id, problem := stringContent(meter, buf[:0])
	if problem != "" {
		return r, ReasonInvalidReading, "meter: " + problem, true
	}
	r.Meter = d.meters.intern(id) // before buf is reused for ts
	s, problem := stringContent(ts, buf[:0])
	if problem != "" {
		return r, ReasonBadTimestamp, "ts: " + problem, true
	}
	var err error
	if r.Time, err = parseTimestamp(s); err != nil {
		return r, ReasonBadTimestamp, "ts: " + err.Error(), true
	}
	if len(value) == 0 || string(value) == "null" {
		return r, ReasonInvalidReading, "value is missing", true
	}
	switch value[0] {
	case '"', '{', '[', 't', 'f':
		return r, ReasonInvalidValue, fmt.Sprintf("value %s is not a number", truncate(value)), true
	}
	v, err := parseNumber(value)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return r, ReasonInvalidValue, fmt.Sprintf("value %s is not a finite number", truncate(value)), true
	}
	r.Value = v
	return r, "", "", true
}

// parseNumber converts b, a number whose grammar the scan checked. Meter
// values are mostly short decimals ("182734.5"), which it converts itself:
// with at most 15 digits and no exponent, the digits as an integer and the
// power of ten for the fraction are both exact in a float64, so one
// division gives the correctly rounded value, the very bits
// strconv.ParseFloat returns (its own "exact" path does the same).
// Anything else goes to ParseFloat; string(b) does not allocate there, as
// the compiler converts short strings that do not escape on the stack.
func parseNumber(b []byte) (float64, error) {
	i := 0
	neg := b[0] == '-'
	if neg {
		i = 1
	}
	var mant uint64
	digits, frac := 0, -1 // frac counts digits after the '.', -1 before it
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case '0' <= c && c <= '9':
			mant = mant*10 + uint64(c-'0')
			digits++
			if frac >= 0 {
				frac++
			}
		case c == '.':
			frac = 0
		default: // an exponent
			return strconv.ParseFloat(string(b), 64)
		}
	}
	if digits > 15 {
		return strconv.ParseFloat(string(b), 64)
	}
	f := float64(mant)
	if frac > 0 {
		f /= exactPow10[frac]
	}
	if neg {
		f = -f
	}
	return f, nil
}

// exactPow10 are the powers of ten parseNumber divides by, all exact.
var exactPow10 = [16]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// malformed returns the error of a payload that is not valid JSON, naming
// where the scan stopped.
func (d *decoder) malformed() *DecodeError {
	switch {
	case d.tooDeep:
		return &DecodeError{ReasonMalformed, tooDeepDetail}
	case d.pos >= len(d.data):
		return &DecodeError{ReasonMalformed, "invalid JSON: the payload ends inside a value"}
	}
	return &DecodeError{ReasonMalformed, fmt.Sprintf("invalid JSON at byte %d of %d: unexpected %s", d.pos+1, len(d.data), describeByte(d.data[d.pos]))}
}

// describeByte names a byte for an error text.
func describeByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// article puts "a" or "an" before a JSON type name.
func article(t string) string {
	if t == "object" {
		return "an object"
	}
	return "a " + t
}

// member moves to the next member of the object being read, from just
// after its '{' (first) or after a member's value, and stops at the
// member's key; end reports the object's '}' instead, consumed.
func (d *decoder) member(first bool) (end, ok bool) {
	d.skipSpace()
	if d.pos >= len(d.data) {
		return false, false
	}
	switch d.data[d.pos] {
	case '}':
		d.pos++
		return true, true
	case ',':
		if first {
			return false, false
		}
		d.pos++
		d.skipSpace()
		return false, true
	}
	return false, first
}

// readingKey reads the key of a reading's member and the ':' after it.
// Gateways write the keys exactly as `"meter":`, `"ts":` and `"value":`;
// comparing the next bytes with those texts (one or two machine words)
// recognises them without scanning and matching a string, which saves an
// eighth of the work of a reading. Any other spelling (spaces, escapes,
// other case, unknown keys) takes the general way.
func (d *decoder) readingKey() (field, bool) {
	rest := d.data[d.pos:]
	f, n := otherField, 0
	switch {
	case len(rest) >= 8 && string(rest[:8]) == `"meter":`:
		f, n = meterField, 8
	case len(rest) >= 5 && string(rest[:5]) == `"ts":`:
		f, n = tsField, 5
	case len(rest) >= 8 && string(rest[:8]) == `"value":`:
		f, n = valueField, 8
	default:
		key, escaped, ok := d.memberKey()
		return readingField(key, escaped), ok
	}
	d.pos += n
	d.skipSpace()
	return f, true
}

// memberKey reads a member's `"key" :` and the space after it, returning
// the key between the quotes, escapes not decoded.
func (d *decoder) memberKey() (key []byte, escaped, ok bool) {
	if d.pos >= len(d.data) || d.data[d.pos] != '"' {
		return nil, false, false
	}
	if key, escaped, ok = d.str(); !ok {
		return nil, false, false
	}
	d.skipSpace()
	if d.pos >= len(d.data) || d.data[d.pos] != ':' {
		return nil, false, false
	}
	d.pos++
	d.skipSpace()
	return key, escaped, true
}

// value consumes the value at d.pos, of any type, and returns its bytes.
// depth is the number of containers around it. The result's capacity is
// capped so that appending to it cannot overwrite the payload.
func (d *decoder) value(depth int) ([]byte, bool) {
	start := d.pos
	ok := d.skipValue(depth)
	return d.data[start:d.pos:d.pos], ok
}

// skipValue consumes one value with everything nested in it, checking the
// grammar. It walks nested containers with a loop rather than recursion,
// remembering the kind of each open container as one bit of stack.
func (d *decoder) skipValue(depth int) bool {
	var stack uint64 // bit 0: the innermost open container is an object
	open := 0        // containers opened and not yet closed
	for {
		// d.pos is at the start of a value.
		if d.pos >= len(d.data) {
			return false
		}
		switch c := d.data[d.pos]; c {
		case '{', '[':
			if depth+open >= maxDepth {
				d.tooDeep = true
				return false
			}
			d.pos++
			open++
			stack <<= 1
			closer := byte(']')
			if c == '{' {
				stack |= 1
				closer = '}'
			}
			d.skipSpace()
			if d.pos < len(d.data) && d.data[d.pos] == closer {
				d.pos++
				open--
				stack >>= 1
				break // an empty container is a complete value
			}
			if c == '{' {
				if _, _, ok := d.memberKey(); !ok {
					return false
				}
			}
			continue // at the first value inside
		case '"':
			if _, _, ok := d.str(); !ok {
				return false
			}
		case 't':
			if !d.literal("true") {
				return false
			}
		case 'f':
			if !d.literal("false") {
				return false
			}
		case 'n':
			if !d.literal("null") {
				return false
			}
		default:
			if !d.number() {
				return false
			}
		}
		// A value is complete: close containers up to the next value.
		for {
			if open == 0 {
				return true
			}
			d.skipSpace()
			if d.pos >= len(d.data) {
				return false
			}
			c := d.data[d.pos]
			inObject := stack&1 == 1
			if c == ',' {
				d.pos++
				d.skipSpace()
				if inObject {
					if _, _, ok := d.memberKey(); !ok {
						return false
					}
				}
				break
			}
			if inObject && c != '}' || !inObject && c != ']' {
				return false
			}
			d.pos++
			open--
			stack >>= 1
		}
	}
}

// str consumes the string whose opening quote is at d.pos and returns
// what is between the quotes, undecoded, and whether it holds escapes.
// It checks what encoding/json checks: escapes are valid and there are no
// control characters. (UTF-8 was checked for the whole payload.)
func (d *decoder) str() (content []byte, escaped, ok bool) {
	start := d.pos + 1
	for i := start; ; {
		// Pass the run of plain bytes, mostly the whole string. Ranging
		// over the slice keeps bounds checks out of this, the hottest loop.
		for _, c := range d.data[i:] {
			if !plainStringByte[c] {
				break
			}
			i++
		}
		if i >= len(d.data) {
			return nil, false, false // unterminated
		}
		switch c := d.data[i]; {
		case c == '"':
			d.pos = i + 1
			return d.data[start:i], escaped, true
		case c == '\\' && i+1 < len(d.data):
			escaped = true
			switch d.data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d.data) || !isHex(d.data[i+2]) || !isHex(d.data[i+3]) || !isHex(d.data[i+4]) || !isHex(d.data[i+5]) {
					return nil, false, false
				}
				i += 6
			default:
				return nil, false, false
			}
		default:
			return nil, false, false // a control character, or '\' at the end
		}
	}
}

// plainStringByte says which bytes stand for themselves inside a string:
// all but '"', '\' and the control characters. A table lookup per byte
// keeps the common case, a short id without escapes, one test per byte.
var plainStringByte = func() (t [256]bool) {
	for c := ' '; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// number consumes a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
// What may follow it is the caller's business.
func (d *decoder) number() bool {
	i := d.pos
	if i < len(d.data) && d.data[i] == '-' {
		i++
	}
	switch {
	case i < len(d.data) && d.data[i] == '0':
		i++
	case i < len(d.data) && '1' <= d.data[i] && d.data[i] <= '9':
		i = d.digits(i + 1)
	default:
		return false
	}
	if i < len(d.data) && d.data[i] == '.' {
		j := d.digits(i + 1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(d.data) && (d.data[i] == 'e' || d.data[i] == 'E') {
		i++
		if i < len(d.data) && (d.data[i] == '+' || d.data[i] == '-') {
			i++
		}
		j := d.digits(i)
		if j == i {
			return false
		}
		i = j
	}
	d.pos = i
	return true
}

// digits returns the index of the first non-digit at or after i.
func (d *decoder) digits(i int) int {
	for i < len(d.data) && '0' <= d.data[i] && d.data[i] <= '9' {
		i++
	}
	return i
}

// literal consumes lit (true, false or null).
func (d *decoder) literal(lit string) bool {
	if len(d.data)-d.pos < len(lit) || string(d.data[d.pos:d.pos+len(lit)]) != lit {
		return false
	}
	d.pos += len(lit)
	return true
}

func (d *decoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// jsonType names the type of the value starting with c, as encoding/json's
// type errors did.
func jsonType(c byte) string {
	switch c {
	case '{':
		return "object"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	}
	return "number"
}

// field identifies the object keys Decode knows.
type field uint8

const (
	otherField field = iota
	gatewayField
	seqField
	sentField
	readingsField
	meterField
	tsField
	valueField
)

// messageField matches a key of the top-level object. Keys are matched
// exactly, as the contract writes them; a key written with escapes
// ("\u0073eq") is the same string and matches too.
func messageField(key []byte, escaped bool) field {
	var buf [32]byte
	if escaped {
		key = appendUnescaped(buf[:0], key)
	}
	switch string(key) {
	case "gateway":
		return gatewayField
	case "seq":
		return seqField
	case "sent":
		return sentField
	case "readings":
		return readingsField
	}
	return otherField
}

// readingField matches a key of a reading object, like messageField.
func readingField(key []byte, escaped bool) field {
	var buf [32]byte
	if escaped {
		key = appendUnescaped(buf[:0], key)
	}
	switch string(key) {
	case "meter":
		return meterField
	case "ts":
		return tsField
	case "value":
		return valueField
	}
	return otherField
}

// stringContent returns the text of raw, a value that must be a non-empty
// string, or the problem with it in the words of the encoding/json
// version ("missing", "42 is not a string", "empty"). Without escapes the
// text is a sub-slice of raw; with escapes it is decoded into buf.
func stringContent(raw, buf []byte) (text []byte, problem string) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, "missing"
	}
	if raw[0] != '"' {
		return nil, truncate(raw) + " is not a string"
	}
	text = raw[1 : len(raw)-1]
	if bytes.IndexByte(text, '\\') >= 0 {
		text = appendUnescaped(buf, text)
	}
	if len(text) == 0 {
		return nil, "empty"
	}
	return text, ""
}

// appendUnescaped appends the decoded form of s, the checked content of a
// JSON string, to dst, exactly as encoding/json decodes it: a \u escape of
// half a surrogate pair that is not followed by the other half becomes
// U+FFFD.
func appendUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		j := bytes.IndexByte(s[i:], '\\')
		if j < 0 {
			return append(dst, s[i:]...)
		}
		dst = append(dst, s[i:i+j]...)
		i += j
		switch c := s[i+1]; c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s[i+2 : i+6])
			i += 6
			if utf16.IsSurrogate(r) {
				next := rune(-1)
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					next = hex4(s[i+2 : i+6])
				}
				if dec := utf16.DecodeRune(r, next); dec != unicode.ReplacementChar {
					r = dec
					i += 6
				} else {
					r = unicode.ReplacementChar
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, c)
		}
		i += 2
	}
	return dst
}

// hex4 decodes four hex digits, checked by str.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a':
			r = r<<4 | rune(c-'a'+10)
		default:
			r = r<<4 | rune(c-'A'+10)
		}
	}
	return r
}

// meterCache gives the readings of one meter within a message one shared
// string. Gateways that batch send a meter once per interval, and sharing
// saves an allocation per repeat. It is direct-mapped: a collision costs
// an allocation, never a wrong id, since a hit is confirmed byte by byte.
type meterCache [32]string

func (c *meterCache) intern(b []byte) string {
	// A cheap hash of the length and the first, middle and last bytes: ids
	// in a plant differ mostly at the end ("E-PAINT-01", "E-PAINT-02").
	h := uint32(len(b)) | uint32(b[0])<<8 | uint32(b[len(b)-1])<<16 | uint32(b[len(b)/2])<<24
	slot := &c[(h*0x9E3779B1)>>27]
	if *slot == string(b) { // compares without converting
		return *slot
	}
	*slot = string(b)
	return *slot
}

// parseTimestamp parses an RFC 3339 timestamp with a zone. The form
// gateways send, UTC with an optional fraction, is parsed by hand without
// allocating; anything else goes to time.Parse (through parseTime), so
// results and error texts are time.Parse's.
func parseTimestamp(b []byte) (time.Time, error) {
	if t, ok := parseUTC(b); ok {
		return t, nil
	}
	return parseTime(string(b))
}

// parseUTC parses "2006-01-02T15:04:05Z" with an optional fraction of 1 to
// 9 digits, checking ranges as time.Parse does, and builds the time from
// the day number rather than through time.Date, which is general and
// slower. It reports false for anything else, valid or not.
func parseUTC(b []byte) (time.Time, bool) {
	const layout = "2006-01-02T15:04:05Z"
	if len(b) < len(layout) || b[len(b)-1] != 'Z' ||
		b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	century, year := twoDigits(b[0], b[1]), twoDigits(b[2], b[3])
	month, day := twoDigits(b[5], b[6]), twoDigits(b[8], b[9])
	hour, min, sec := twoDigits(b[11], b[12]), twoDigits(b[14], b[15]), twoDigits(b[17], b[18])
	if century < 0 || year < 0 {
		return time.Time{}, false
	}
	year += 100 * century
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour < 0 || hour > 23 || min < 0 || min > 59 || sec < 0 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := b[19 : len(b)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		for _, c := range frac[1:] {
			if c < '0' || c > '9' {
				return time.Time{}, false
			}
			nsec = nsec*10 + int(c-'0')
		}
		for range 10 - len(frac) {
			nsec *= 10
		}
	}
	secs := daysSinceEpoch(year, month, day)*86400 + int64(hour*3600+min*60+sec)
	return time.Unix(secs, int64(nsec)).UTC(), true
}

// twoDigits returns the value of two decimal digits, or -1.
func twoDigits(a, b byte) int {
	if a < '0' || a > '9' || b < '0' || b > '9' {
		return -1
	}
	return int(a-'0')*10 + int(b-'0')
}

// daysSinceEpoch returns the number of days from 1970-01-01 to the given
// date of the proleptic Gregorian calendar (Howard Hinnant's
// days_from_civil: years start in March, so the leap day is last).
func daysSinceEpoch(year, month, day int) int64 {
	y := int64(year)
	if month <= 2 {
		y--
	}
	era := y / 400
	if y < 0 {
		era = (y - 399) / 400 // round down: y is -1 for January 0000
	}
	yearOfEra := y - era*400
	m := int64(month) + 9 // months from March
	if month > 2 {
		m = int64(month) - 3
	}
	dayOfYear := (153*m+2)/5 + int64(day) - 1
	dayOfEra := yearOfEra*365 + yearOfEra/4 - yearOfEra/100 + dayOfYear
	return era*146097 + dayOfEra - 719468
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
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
