package sim

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/cleanprod/cleanprod/registry"
)

// Config controls a simulation. The zero value is usable: the shipped
// profiles, readings every 5 minutes from now on in real time, no faults.
type Config struct {
	// Seed makes the run reproducible: the same seed, registry and Config
	// give byte-identical messages in the same order.
	Seed int64

	// Start is the simulated time of the first reading (truncated to
	// Interval). Zero: Now() minus Backfill.
	Start time.Time
	// Backfill, when Start is zero, starts the run this far in the past.
	Backfill time.Duration
	// Duration is the simulated time covered; the run ends after the
	// reading at Start+Duration. Zero: open-ended (Run until its context
	// is done; Next never ends).
	Duration time.Duration
	// Speed is simulated seconds per real second, e.g. 1440 for one
	// simulated day per real minute. Zero or negative: as fast as possible.
	// Run never lets simulated time pass the wall clock: once it catches
	// up (the end of a backfill), it continues in real time, so device
	// timestamps are never in the future.
	Speed float64

	// Interval is the simulated time between readings of a meter
	// (default 5m, 1s to 1h).
	Interval time.Duration
	// Intervals overrides Interval per quantity name, e.g. {"cod": time.Hour};
	// each must be a multiple of Interval.
	Intervals map[string]time.Duration
	// ReadingsPerMessage, if positive, makes every message carry exactly
	// that many readings (a gateway buffers across intervals; the last
	// message of a run may carry fewer). Zero: one message per gateway per
	// interval with the readings due.
	ReadingsPerMessage int

	// MaxRate limits Run to this many messages per real second (0: no limit).
	MaxRate float64
	// Workers is the number of concurrent publishers in Run (default 4).
	// Messages of one gateway always go through the same worker, in order.
	Workers int

	// Resets is the expected number of resets to zero per counter per
	// simulated day (default 0: none). A reset happens right after a
	// reading the service receives, so the next reading is the consumption
	// since. Counters with a declared rollover or a replacement ahead are
	// never reset, so that a drop in their register is unambiguous.
	Resets float64
	// Faults is the mix of injected faults.
	Faults Faults
	// Stations are the HJ 212 data loggers' settings and faults.
	Stations Stations

	// Profiles are the plant profiles (nil: DefaultProfiles()).
	Profiles *Profiles
	// DriftScale multiplies every enterprise's drift, e.g. 10 to see codes
	// move within a short demo (0: 1; negative: no drift).
	DriftScale float64
	// Location is the plants' local time for shifts, weekends and sun
	// (default China Standard Time, UTC+8).
	Location *time.Location
	// Now is the wall clock (default time.Now). It also places
	// future-timestamp faults; fix it for byte-identical runs with them.
	Now func() time.Time

	// Progress, if set, receives a progress line every ProgressEvery
	// (default 10s) during Run, and a summary at the end.
	Progress      io.Writer
	ProgressEvery time.Duration
	// Logger receives publish errors (nil: discarded).
	Logger *slog.Logger
}

// Faults is the fault mix in percent of the regular messages. Each message
// carries at most one fault, so the percentages must not add up to more
// than 100. Rejected faults name the ingest reason they must produce.
type Faults struct {
	Malformed      float64 // payload truncated: malformed_json (message)
	UnknownGateway float64 // a copy published by an unregistered gateway: unknown_gateway (message)
	Spoofed        float64 // one extra reading of another enterprise's meter: spoofed (reading)
	UnknownMeter   float64 // one extra reading of an unregistered meter: unknown_meter (reading)
	NaN            float64 // one reading's value is the string "NaN": invalid_value (reading)
	Future         float64 // one reading stamped FutureSkew ahead of the wall clock: future_timestamp (reading)
	Duplicate      float64 // the message is sent again verbatim, up to 2 messages later: absorbed, not rejected
	OutOfOrder     float64 // the message is held back and sent after 1-3 later ones: accepted
	// FutureSkew is how far ahead of the later of the simulated time and
	// the wall clock at New a future timestamp lies (default 24h).
	FutureSkew time.Duration
}

// Stations are the settings of the simulated HJ 212 data loggers: one per
// gateway that declares an hj212 station. Each sends minute data (2051)
// every Interval and hourly data (2061) at each full hour of its clock,
// Flag=5 (acknowledgement wanted). Faults are in percent of the minute
// frames, drawn from the station's own random stream.
type Stations struct {
	BadCRC float64 // a copy of the frame with a wrong CRC goes first: hj212_bad_crc (message)
	// DataFlag flags one value of the frame C, M or D (calibration,
	// maintenance, instrument fault): stored apart with its flag, counted
	// toward nothing (Ledger.Flagged).
	DataFlag float64
	// Offline is the expected number of offline periods per station per
	// simulated day; the logger keeps its frames meanwhile and sends them
	// as history when it is back (Ledger.Backlog).
	Offline float64
	// OfflineFor is how long an offline period lasts (default 2h).
	OfflineFor time.Duration
}

func (f Faults) shares() []float64 {
	return []float64{f.Malformed, f.UnknownGateway, f.Spoofed, f.UnknownMeter, f.NaN, f.Future, f.Duplicate, f.OutOfOrder}
}

func (f Faults) total() float64 {
	t := 0.0
	for _, s := range f.shares() {
		t += s
	}
	return t
}

// withDefaults returns c with its defaults filled in.
func (c Config) withDefaults() Config {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Interval == 0 {
		c.Interval = 5 * time.Minute
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.Location == nil {
		c.Location = time.FixedZone("CST", 8*3600)
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = 10 * time.Second
	}
	if c.Stations.OfflineFor == 0 {
		c.Stations.OfflineFor = 2 * time.Hour
	}
	if c.Faults.FutureSkew == 0 {
		c.Faults.FutureSkew = 24 * time.Hour
	}
	if c.Start.IsZero() {
		c.Start = c.Now().Add(-c.Backfill)
	}
	if c.Interval > 0 {
		c.Start = c.Start.UTC().Truncate(c.Interval)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate returns every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Interval != 0 && (c.Interval < time.Second || c.Interval > time.Hour || c.Interval%time.Second != 0) {
		bad("interval %v: want whole seconds from 1s to 1h", c.Interval)
	}
	for _, q := range slices.Sorted(maps.Keys(c.Intervals)) {
		d := c.Intervals[q]
		if _, ok := registry.LookupQuantity(q); !ok {
			bad("intervals: unknown quantity %q", q)
		}
		base := c.Interval
		if base == 0 {
			base = 5 * time.Minute
		}
		if d <= 0 || d%base != 0 {
			bad("intervals: %s every %v: want a positive multiple of the interval %v", q, d, base)
		}
	}
	if c.Duration < 0 {
		bad("duration %v: must not be negative", c.Duration)
	}
	if c.Backfill < 0 {
		bad("backfill %v: must not be negative", c.Backfill)
	}
	if c.ReadingsPerMessage < 0 {
		bad("readings per message %d: must not be negative", c.ReadingsPerMessage)
	}
	if c.MaxRate < 0 {
		bad("max rate %v: must not be negative", c.MaxRate)
	}
	if c.Resets < 0 {
		bad("resets %v: must not be negative", c.Resets)
	}
	names := []string{"malformed", "unknown gateway", "spoofed", "unknown meter", "NaN", "future", "duplicate", "out of order"}
	for i, s := range c.Faults.shares() {
		if s < 0 || s > 100 {
			bad("faults: %s %v%%: want 0 to 100", names[i], s)
		}
	}
	if t := c.Faults.total(); t > 100 {
		bad("faults: the percentages add up to %v, more than 100", t)
	}
	st := c.Stations
	for _, f := range []struct {
		name string
		v    float64
	}{{"bad CRC", st.BadCRC}, {"data flag", st.DataFlag}} {
		if f.v < 0 || f.v > 100 {
			bad("stations: %s %v%%: want 0 to 100", f.name, f.v)
		}
	}
	if st.Offline < 0 || st.Offline > 24 {
		bad("stations: offline %v periods a day: want 0 to 24", st.Offline)
	}
	if st.OfflineFor < 0 {
		bad("stations: offline for %v: must not be negative", st.OfflineFor)
	}
	if c.Faults.FutureSkew < 0 {
		bad("faults: future skew %v: must not be negative", c.Faults.FutureSkew)
	}
	return errors.Join(errs...)
}
