package ingest

// Reason says why a message or a reading was rejected. It is the label of
// cleanprod_ingest_rejected_total and the last level of the dead-letter
// topic cp/v1/deadletter/{reason}.
type Reason string

// Message-level reasons: the whole message is rejected.
const (
	ReasonBadTopic        Reason = "bad_topic"         // topic is not cp/v1/{enterprise}/{gateway}/{telemetry|hj212} with valid ids
	ReasonUnknownGateway  Reason = "unknown_gateway"   // topic's enterprise/gateway is not registered
	ReasonEmptyPayload    Reason = "empty_payload"     // zero bytes
	ReasonPayloadTooLarge Reason = "payload_too_large" // over ingest.max_payload_bytes
	ReasonMalformed       Reason = "malformed_json"    // not valid UTF-8 JSON, or not a JSON object
	ReasonInvalidMessage  Reason = "invalid_message"   // fields missing or of the wrong type (gateway, seq, sent, readings)
	ReasonGatewayMismatch Reason = "gateway_mismatch"  // payload gateway differs from the topic's
	ReasonNoReadings      Reason = "no_readings"       // readings is empty
	ReasonTooManyReadings Reason = "too_many_readings" // over ingest.max_readings
)

// Reading-level reasons: only that reading is rejected; the others of the
// message are stored.
const (
	ReasonUnknownMeter   Reason = "unknown_meter"         // meter is registered nowhere
	ReasonSpoofed        Reason = "spoofed"               // meter is registered, but not under this topic's enterprise and gateway
	ReasonInvalidReading Reason = "invalid_reading"       // meter, ts or value missing or of the wrong type
	ReasonInvalidValue   Reason = "invalid_value"         // value not a finite number (NaN, Inf, 1e309, string)
	ReasonOutOfRange     Reason = "out_of_range"          // negative counter or delta, counter above its rollover, value overflowing in unit conversion, gauge outside its plausible range
	ReasonBadTimestamp   Reason = "bad_timestamp"         // ts not RFC 3339 with a zone
	ReasonFuture         Reason = "future_timestamp"      // ts later than now + ingest.future_horizon
	ReasonTooOld         Reason = "stale_timestamp"       // ts earlier than now - ingest.past_horizon
	ReasonDuplicate      Reason = "duplicate_in_message"  // same meter and ts twice in one message
	ReasonConflict       Reason = "conflicting_duplicate" // same meter and ts seen before with another value
	ReasonCounterJump    Reason = "counter_jump"          // counter or delta rose faster than the meter's max_rate
	ReasonOutsideHistory Reason = "out_of_order_window"   // counter reading older than the history kept to place it
	ReasonStoreRejected  Reason = "store_rejected"        // the store refused the points (permanent error)
)
