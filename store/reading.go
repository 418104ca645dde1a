package store

import (
	"errors"
	"fmt"
	"time"
)

// Reading is one normalised meter reading, in canonical units.
type Reading struct {
	Enterprise string
	Gateway    string
	Meter      string
	Quantity   string // registry quantity name, e.g. "electricity"
	Workshop   string // optional workshop of the meter, e.g. "paint"
	Kind       string // "counter", "delta" or "gauge"
	Time       time.Time
	// Value is the register value for a counter, the amount for a delta
	// meter and the measured value for a gauge.
	Value float64
	// Delta is the amount since the meter's previous reading for counters
	// and delta meters (equal to Value for deltas); 0 for gauges.
	Delta float64
	// Flag is the data flag an analyser sent with the value (HJ 212: N, S,
	// F, M, D, C, T, B); empty when the protocol has none.
	Flag string
	// Chained marks a counter reading whose register is the register of
	// the meter's previous stored reading plus Delta, exactly in float64,
	// that reading being of the same UTC hour. InfluxDB then keeps its
	// delta alone and a read rebuilds the register from the hour's readings
	// before it (the first reading of every hour keeps its register, and so
	// does every reset, rollover, replacement or glitch, whose delta is not
	// the step of the registers). The normaliser sets it; the embedded
	// store keeps every register and ignores it.
	Chained bool
	// Invalid marks a value whose flag says it is not valid data. It is
	// kept apart from the readings (in FlaggedMeasurement, keyed by
	// enterprise, meter, flag and time, with its value): it tells a
	// supervisor why data are missing, and no sum, mean or meter history
	// ever reads it.
	Invalid bool
}

// FlaggedMeasurement holds the values analysers flagged as not valid data
// (store.Reading.Invalid), as points: tags enterprise, meter and flag
// (one of a few letters), field value.
const FlaggedMeasurement = "reading_flagged"

// FlaggedPoint is the point an invalid reading is kept as.
func FlaggedPoint(r *Reading) Point {
	return Point{
		Measurement: FlaggedMeasurement,
		Tags:        map[string]string{"enterprise": r.Enterprise, "flag": r.Flag, "meter": r.Meter},
		Fields:      map[string]any{"value": r.Value},
		Time:        r.Time,
	}
}

// Aggregate sums one meter's readings over one time bucket.
type Aggregate struct {
	Enterprise string
	Meter      string
	Start      time.Time // bucket start
	Sum        float64   // sum of Delta (counters and deltas)
	ValueSum   float64   // sum of Value (gauges)
	Count      int       // number of readings
	Max        float64   // largest Value (gauges)
}

// WriteError is a write the store did not accept. Permanent means the
// store refused the content (retrying the same points cannot succeed);
// otherwise the store was unreachable or overloaded and the write may be
// retried, not sooner than RetryAfter when that is set.
type WriteError struct {
	Err        error
	Permanent  bool
	RetryAfter time.Duration
	Status     int // HTTP status where there was one
}

func (e *WriteError) Error() string {
	kind := "temporary"
	if e.Permanent {
		kind = "permanent"
	}
	if e.Status != 0 {
		return fmt.Sprintf("store write (%s, HTTP %d): %v", kind, e.Status, e.Err)
	}
	return fmt.Sprintf("store write (%s): %v", kind, e.Err)
}

func (e *WriteError) Unwrap() error { return e.Err }

// IsPermanent reports whether err is a write the store refused for its
// content, so that retrying it is pointless.
func IsPermanent(err error) bool {
	var we *WriteError
	return errors.As(err, &we) && we.Permanent
}

// RetryAfter returns how long the store asked to wait before retrying err
// (0: no wish expressed).
func RetryAfter(err error) time.Duration {
	var we *WriteError
	if errors.As(err, &we) {
		return we.RetryAfter
	}
	return 0
}

// MeterMeasurement holds what the registry says of each meter, for
// dashboards and queries that group readings by what is not in them:
// one point per meter each time serve starts or reloads its registry,
// tagged enterprise, meter, gateway, quantity, kind and (when set)
// workshop, with the declared unit as field unit. A meter's latest point
// is its current description; a meter that moved has older points under
// its previous tags.
const MeterMeasurement = "meter"

// MeterPoint is the point that describes one meter at time at.
func MeterPoint(enterprise, meter, gateway, quantity, kind, workshop, unit string, at time.Time) Point {
	tags := map[string]string{"enterprise": enterprise, "meter": meter, "gateway": gateway, "quantity": quantity, "kind": kind}
	if workshop != "" {
		tags["workshop"] = workshop
	}
	return Point{Measurement: MeterMeasurement, Tags: tags, Fields: map[string]any{"unit": unit}, Time: at}
}
