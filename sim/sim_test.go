package sim_test

import (
	"bytes"
	"crypto/sha256"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/sim"
)

var allFaults = sim.Faults{Malformed: 2, UnknownGateway: 1.5, Spoofed: 2, UnknownMeter: 2, NaN: 2, Future: 2, Duplicate: 3, OutOfOrder: 3}

// digest returns a hash of every message (topic and payload, in order) and
// their number.
func digest(t *testing.T, reg *registry.Registry, cfg sim.Config) ([32]byte, int) {
	t.Helper()
	s, err := sim.New(reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n := 0
	for m := range s.Messages() {
		h.Write([]byte(m.Topic))
		h.Write([]byte{0})
		h.Write(m.Payload)
		h.Write([]byte{0})
		n++
	}
	var d [32]byte
	copy(d[:], h.Sum(nil))
	return d, n
}

func TestDeterminism(t *testing.T) {
	reg := loadFleet(t)
	start := time.Date(2026, 11, 14, 0, 0, 0, 0, time.UTC)
	base := sim.Config{Seed: 42, Start: start, Duration: 3 * 24 * time.Hour, Now: fixedNow(start)}
	tests := []struct {
		name string
		edit func(*sim.Config)
	}{
		{"plain", func(*sim.Config) {}},
		{"faults and resets", func(c *sim.Config) { c.Faults = allFaults; c.Resets = 1 }},
		{"batched", func(c *sim.Config) { c.ReadingsPerMessage = 25; c.Interval = time.Minute }},
		{"per-quantity intervals", func(c *sim.Config) {
			c.Intervals = map[string]time.Duration{"cod": time.Hour, "hazardous_waste": 24 * time.Hour}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := base
			tt.edit(&cfg)
			d1, n1 := digest(t, reg, cfg)
			d2, n2 := digest(t, reg, cfg)
			if d1 != d2 || n1 != n2 {
				t.Fatalf("same seed: got %d messages %x, then %d messages %x", n1, d1[:6], n2, d2[:6])
			}
			cfg.Seed++
			d3, _ := digest(t, reg, cfg)
			if d3 == d1 {
				t.Fatalf("seeds %d and %d gave the same messages", cfg.Seed-1, cfg.Seed)
			}
		})
	}
}

// TestCountersMatchLedger checks that the ledger's true consumption equals
// what a correct counter-delta computation over the emitted registers
// gives, through rollovers, resets and the declared replacement.
func TestCountersMatchLedger(t *testing.T) {
	reg := loadFleet(t)
	synth, err := sim.SyntheticFleet(6, 1)
	if err != nil {
		t.Fatal(err)
	}
	synthReg, err := registry.Parse(synth)
	if err != nil {
		t.Fatal(err)
	}
	// The run covers FW-MAIN-01's replacement on 2026-11-18.
	start := time.Date(2026, 11, 14, 0, 0, 0, 0, time.UTC)
	days5 := 5 * 24 * time.Hour
	tests := []struct {
		name       string
		reg        *registry.Registry
		cfg        sim.Config
		wantEvents []string
	}{
		{"shipped fleet", reg, sim.Config{Resets: 0.5, Duration: days5}, []string{"wrap", "reset", "replacement"}},
		{"batched across intervals", reg, sim.Config{Resets: 0.5, Duration: days5, ReadingsPerMessage: 7}, []string{"wrap", "reset", "replacement"}},
		{"faults", reg, sim.Config{Resets: 0.5, Duration: days5, Faults: allFaults}, []string{"wrap", "reset", "replacement"}},
		{"hourly analysers", synthReg, sim.Config{Resets: 1, Duration: days5, Interval: 15 * time.Minute,
			Intervals: map[string]time.Duration{"cod": time.Hour, "nh3n": time.Hour, "hazardous_waste": 24 * time.Hour}}, []string{"reset"}},
		// 03:17:30, the replacement, is on the 150 s grid.
		{"replacement on a tick", reg, sim.Config{Start: start.Add(3 * 24 * time.Hour), Duration: 2 * 24 * time.Hour, Interval: 150 * time.Second}, []string{"replacement"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			if cfg.Start.IsZero() {
				cfg.Start = start
			}
			cfg.Seed, cfg.Now = 9, fixedNow(cfg.Start)
			s, err := sim.New(tt.reg, cfg)
			if err != nil {
				t.Fatal(err)
			}
			ref := newRefIngest(tt.reg, cfg.Start.Add(cfg.Duration+time.Hour))
			for m := range s.Messages() {
				ref.handle(t, m.Topic, m.Payload)
			}
			checkLedger(t, ref, s.Ledger())
			for _, e := range tt.reg.Enterprises {
				for _, m := range e.Meters {
					for _, rp := range m.Replacements {
						for _, p := range ref.points[meterKey{e.ID, m.ID}] {
							if p.ts.Equal(rp.At) {
								t.Errorf("%s/%s: a reading at the very time of its replacement", e.ID, m.ID)
							}
						}
					}
				}
			}
			for _, e := range tt.wantEvents {
				if ref.events[e] == 0 {
					t.Errorf("no %s in the emitted registers", e)
				}
			}
			t.Logf("events %v", ref.events)
		})
	}
}

// TestFaultMix checks that each fault appears in its configured share of
// the messages and must be rejected with the right reason.
func TestFaultMix(t *testing.T) {
	reg := loadFleet(t)
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	now := start.Add(14 * 24 * time.Hour) // the wall clock during the run
	cfg := sim.Config{Seed: 5, Start: start, Duration: 14 * 24 * time.Hour, Interval: 10 * time.Minute, Faults: allFaults,
		Now: func() time.Time { return now }}
	s, err := sim.New(reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ref := newRefIngest(reg, now.Add(time.Hour))
	count := map[sim.Fault]int{}
	for m := range s.Messages() {
		ref.handle(t, m.Topic, m.Payload)
		if strings.HasSuffix(m.Topic, "/hj212") {
			continue // stations have faults of their own (TestStationFrames)
		}
		count[m.Fault]++
		if m.Fault == sim.FaultFuture && !bytes.Contains(m.Payload, []byte(now.Add(24*time.Hour).Format("2006-01-02T"))) {
			t.Errorf("future fault not a day after the wall clock: %s", m.Payload)
		}
	}
	checkLedger(t, ref, s.Ledger())

	// Regular messages: all but the copies (duplicates and the rogue
	// gateway's), whose originals count as clean.
	regular := 0
	for f, n := range count {
		if f != sim.FaultDuplicate && f != sim.FaultUnknownGateway {
			regular += n
		}
	}
	tests := []struct {
		fault  sim.Fault
		pct    float64
		reason string
	}{
		{sim.FaultMalformed, allFaults.Malformed, "malformed_json"},
		{sim.FaultUnknownGateway, allFaults.UnknownGateway, "unknown_gateway"},
		{sim.FaultSpoofed, allFaults.Spoofed, "spoofed"},
		{sim.FaultUnknownMeter, allFaults.UnknownMeter, "unknown_meter"},
		{sim.FaultNaN, allFaults.NaN, "invalid_value"},
		{sim.FaultFuture, allFaults.Future, "future_timestamp"},
		{sim.FaultDuplicate, allFaults.Duplicate, ""},
		{sim.FaultOutOfOrder, allFaults.OutOfOrder, ""},
	}
	l := s.Ledger()
	for _, tt := range tests {
		t.Run(tt.fault.String(), func(t *testing.T) {
			if got := tt.fault.Reason(); got != tt.reason {
				t.Errorf("reason %q, want %q", got, tt.reason)
			}
			share := 100 * float64(count[tt.fault]) / float64(regular)
			if share < 0.75*tt.pct || share > 1.25*tt.pct {
				t.Errorf("share %.2f%% of %d messages, want %.1f%% +-25%%", share, regular, tt.pct)
			}
			if tt.reason != "" && l.Rejected[tt.reason] != count[tt.fault] {
				t.Errorf("ledger expects %d %s rejections, %d messages carried the fault", l.Rejected[tt.reason], tt.reason, count[tt.fault])
			}
		})
	}
	if got := s.Faults(); got[sim.FaultNaN] != count[sim.FaultNaN] {
		t.Errorf("Faults()[nan] = %d, want %d", got[sim.FaultNaN], count[sim.FaultNaN])
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  sim.Config
		want []string
	}{
		{"zero", sim.Config{}, nil},
		{"interval", sim.Config{Interval: 2 * time.Hour}, []string{"interval 2h0m0s"}},
		{"per-quantity interval", sim.Config{Intervals: map[string]time.Duration{"cod": 7 * time.Minute, "nope": time.Hour}},
			[]string{"cod every 7m0s", `unknown quantity "nope"`}},
		{"faults over 100", sim.Config{Faults: sim.Faults{Malformed: 60, NaN: 50}}, []string{"add up to 110"}},
		{"negative", sim.Config{Duration: -1, Resets: -1, MaxRate: -1, ReadingsPerMessage: -1, Faults: sim.Faults{Spoofed: -1}},
			[]string{"duration", "resets", "max rate", "readings per message", "spoofed -1%"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

// TestRegistersWrapLikeRealOnes checks that a simulated register with a
// rollover shows what a real one does: whole steps of its resolution up
// to and including the rollover, then 0 (99998, 99999, 0, 1), and that the
// ledger's consumption across the wraps is what ingest's arithmetic
// gives from the bytes.
func TestRegistersWrapLikeRealOnes(t *testing.T) {
	plant := []byte(`enterprise: {id: wrap-plant, name: Wrap Plant}
gateways:
  - id: gw-1
    meters:
      - {id: VEH, quantity: vehicles, unit: vehicle, kind: counter, workshop: assembly, rollover: 999}
      - {id: E-PAINT, quantity: electricity, unit: MWh, kind: counter, workshop: paint, rollover: 99.999}
      - {id: FW, quantity: fresh_water, unit: m3, kind: counter, workshop: plant, rollover: 9999.5, resolution: 0.5}
      - {id: NG, quantity: natural_gas, unit: m3, kind: counter, workshop: paint, rollover: 999999}
`)
	synth, err := sim.SyntheticFleet(8, 4)
	if err != nil {
		t.Fatal(err)
	}
	synthReg, err := registry.Parse(synth)
	if err != nil {
		t.Fatal(err)
	}
	wrapReg, err := registry.Parse(map[string][]byte{"wrap-plant.yaml": plant})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		reg  *registry.Registry
	}{{"shipped fleet", loadFleet(t)}, {"synthetic fleet", synthReg}, {"small registers", wrapReg}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := sim.Config{Seed: 11, Start: start, Duration: 4 * 24 * time.Hour, Now: fixedNow(start)}
			s, err := sim.New(tt.reg, cfg)
			if err != nil {
				t.Fatal(err)
			}
			ref := newRefIngest(tt.reg, start.Add(cfg.Duration+time.Hour))
			for m := range s.Messages() {
				ref.handle(t, m.Topic, m.Payload)
			}
			checkLedger(t, ref, s.Ledger())
			wraps := 0
			for _, e := range tt.reg.Enterprises {
				for _, m := range e.Meters {
					if m.Rollover == 0 {
						continue
					}
					largest, step := m.Rollover/m.Factor, m.Resolution/m.Factor // raw, as the file writes them
					ps := ref.points[meterKey{e.ID, m.ID}]
					for i, p := range ps {
						if n := p.v / step; p.v > largest || math.Abs(n-math.Round(n)) > 1e-6 {
							t.Errorf("%s/%s: register %.10g: want a whole number of steps of %.10g, at most %.10g", e.ID, m.ID, p.v, step, largest)
						}
						if i > 0 && p.v < ps[i-1].v {
							wraps++
						}
					}
				}
			}
			if wraps == 0 {
				t.Error("no register wrapped")
			}
			t.Logf("%d wraps", wraps)
		})
	}
}

// endingOnResets is a short run whose resets are so frequent that some
// counters' last reading comes right after one.
func endingOnResets(start time.Time) sim.Config {
	end := start.Add(2 * time.Hour)
	return sim.Config{Seed: 5, Start: start, Duration: end.Sub(start), Interval: 15 * time.Minute, Resets: 40, Faults: allFaults,
		Now: func() time.Time { return end }}
}

// heldCounters counts the counters of l and those whose ledger holds a
// last reset.
func heldCounters(l sim.Ledger) (held, counters int) {
	for _, mt := range l.Meters {
		if mt.Kind != registry.Counter {
			continue
		}
		counters++
		if mt.Held > 0 {
			held++
		}
	}
	return held, counters
}

// TestLedgerHoldsALastReset: when a counter's last reading comes right
// after a reset, the ledger names its amount (Held), as the bytes do
// (checkLedger). TestIngestAgrees shows the service holds that amount.
func TestLedgerHoldsALastReset(t *testing.T) {
	reg := loadFleet(t)
	start := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	cfg := endingOnResets(start)
	s, err := sim.New(reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ref := newRefIngest(reg, start.Add(cfg.Duration+time.Hour))
	for m := range s.Messages() {
		ref.handle(t, m.Topic, m.Payload)
	}
	l := s.Ledger()
	checkLedger(t, ref, l)
	if held, counters := heldCounters(l); held == 0 || held == counters {
		t.Fatalf("%d of %d counters end on a reset: want some, not all", held, counters)
	}
}
