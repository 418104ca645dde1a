package sim

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/cleanprod/cleanprod/registry"
)

// Ledger is what a simulator has sent, to compare with what the service
// stored and rejected. Injected faults never count as readings.
type Ledger struct {
	Meters []MeterTotal // every simulated meter, in registry order
	// Rejected counts the expected rejections by ingest reason (the values
	// of ingest.Reason): messages for a message-level reason
	// (malformed_json, unknown_gateway), readings for a reading-level one
	// (spoofed, unknown_meter, invalid_value, future_timestamp).
	Rejected   map[string]int
	Duplicates int // messages re-sent verbatim: absorbed, not rejected
	Delayed    int // messages sent after later ones: accepted
	Backlog    int // HJ 212 frames kept by an offline logger and sent later as history: accepted
	Flagged    int // HJ 212 values flagged C, M or D: stored apart with their flag, counted toward nothing
	Messages   int // messages sent, faulty ones and duplicates included
	Readings   int // valid readings sent: what the service must store
}

// MeterTotal is what one meter sent, in canonical units.
type MeterTotal struct {
	Enterprise, Gateway, Meter string
	Quantity, Workshop         string
	Kind                       registry.Kind
	Readings                   int       // valid readings
	First, Last                time.Time // timestamps of the first and last valid reading
	// Sum is the true consumption: for a counter between its first valid
	// reading (a baseline, not counted) and its last; for a delta meter the
	// sum of its valid readings. Zero for gauges.
	Sum float64
	// ValueSum is the sum of a gauge's valid readings (zero otherwise).
	ValueSum float64
	// Held is the part of a counter's Sum that its last reading adds when
	// that reading is the first after a reset: the service holds such a
	// drop at delta 0 until a later reading shows it was not a glitch, so
	// it is not in the stored deltas yet. Zero otherwise.
	Held float64
}

// Stored returns what the service's stored readings of the meter add up
// to once it has taken every valid reading: a counter's or delta meter's
// deltas (Sum less Held), a gauge's values (ValueSum).
func (t MeterTotal) Stored() float64 {
	if t.Kind == registry.Gauge {
		return t.ValueSum
	}
	return t.Sum - t.Held
}

// Meter returns the total of one meter.
func (l *Ledger) Meter(enterprise, meter string) (MeterTotal, bool) {
	i := slices.IndexFunc(l.Meters, func(t MeterTotal) bool { return t.Enterprise == enterprise && t.Meter == meter })
	if i < 0 {
		return MeterTotal{}, false
	}
	return l.Meters[i], true
}

// Rejections returns the number of expected rejections of all reasons.
func (l *Ledger) Rejections() int {
	n := 0
	for _, v := range l.Rejected {
		n += v
	}
	return n
}

// meterLedger accumulates one meter's valid readings as they are sent.
type meterLedger struct {
	readings          int
	first, last       time.Time
	firstCum, lastCum int64
	units             int64   // delta meters
	valueSum          float64 // gauges
	held              int64   // counters: the last reading's register when it is the first after a reset
}

func (ml *meterLedger) add(r reading) {
	mt := r.mt
	if ml.readings == 0 || r.ts.Before(ml.first) {
		ml.first, ml.firstCum = r.ts, r.cum
	}
	if ml.readings == 0 || r.ts.After(ml.last) {
		ml.last, ml.lastCum, ml.held = r.ts, r.cum, 0
		if r.reset && ml.readings > 0 {
			// Reset right after the reading before it: the register is
			// what was consumed since.
			ml.held = r.units
		}
	}
	ml.readings++
	switch mt.m.Kind {
	case registry.Delta:
		ml.units += r.units
	case registry.Gauge:
		ml.valueSum += mt.canonical(r.units)
	}
}

// Stats is a snapshot of a simulator's progress.
type Stats struct {
	Messages int64         // messages sent, faulty ones and duplicates included
	Readings int64         // readings in them, faulty ones included
	Bytes    int64         // payload bytes sent
	Errors   int64         // failed publish attempts (each is retried)
	Faults   int64         // messages carrying an injected fault
	SimTime  time.Time     // simulated time reached
	Elapsed  time.Duration // real time since Run started
}

// Rate returns the messages sent per real second.
func (s Stats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Messages) / s.Elapsed.Seconds()
}

// String formats the stats as one progress line.
func (s Stats) String() string {
	return fmt.Sprintf("sim %s | %d msgs, %d readings, %.1f MB | %.0f msg/s | %d faults | %d errors",
		s.SimTime.UTC().Format("2006-01-02 15:04"), s.Messages, s.Readings, float64(s.Bytes)/1e6, s.Rate(), s.Faults, s.Errors)
}

// WriteSummary writes a summary of the run so far: the stats, the span
// simulated, and the faults with the rejections they must cause.
func (s *Simulator) WriteSummary(w io.Writer) error {
	st := s.Stats()
	l := s.Ledger()
	span := st.SimTime.Sub(s.cfg.Start)
	_, err := fmt.Fprintf(w, "simulated %s of %d enterprises, %d gateways, %d meters (%s to %s) in %s\n%s\nvalid readings %d; duplicates %d; delayed %d; backlog frames %d; flagged values %d; expected rejections %d",
		span, len(s.reg.Enterprises), len(s.gws), len(s.meters),
		s.cfg.Start.UTC().Format(time.RFC3339), st.SimTime.UTC().Format(time.RFC3339), st.Elapsed.Round(time.Millisecond),
		st, l.Readings, l.Duplicates, l.Delayed, l.Backlog, l.Flagged, l.Rejections())
	if err != nil {
		return err
	}
	for f := FaultNone + 1; f < numFaults; f++ {
		if r := f.Reason(); r != "" && l.Rejected[r] > 0 {
			if _, err := fmt.Fprintf(w, " %s=%d", r, l.Rejected[r]); err != nil {
				return err
			}
		}
	}
	_, err = fmt.Fprintln(w)
	return err
}
