package sim_test

import (
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/sim"
)

// BenchmarkNext measures message generation (signals, registers, faults,
// JSON encoding, ledger) without publishing.
func BenchmarkNext(b *testing.B) {
	synth, err := sim.SyntheticFleet(100, 1)
	if err != nil {
		b.Fatal(err)
	}
	synthReg, err := registry.Parse(synth)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	benches := []struct {
		name string
		reg  *registry.Registry
		cfg  sim.Config
	}{
		{"shipped", loadFleet(b), sim.Config{}},
		{"shipped-faults", loadFleet(b), sim.Config{Faults: allFaults, Resets: 1}},
		{"shipped-100-readings", loadFleet(b), sim.Config{ReadingsPerMessage: 100, Interval: time.Minute}},
		{"synthetic-100", synthReg, sim.Config{}},
	}
	for _, bc := range benches {
		b.Run(bc.name, func(b *testing.B) {
			cfg := bc.cfg
			cfg.Seed, cfg.Start, cfg.Now = 1, start, fixedNow(start)
			s, err := sim.New(bc.reg, cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			readings, size := 0, 0
			for b.Loop() {
				m, _ := s.Next()
				readings += m.Readings
				size += len(m.Payload)
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N)/sec, "msgs/s")
			b.ReportMetric(float64(readings)/sec, "readings/s")
			b.ReportMetric(float64(size)/float64(b.N), "B/msg")
		})
	}
}
