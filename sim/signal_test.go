package sim_test

import (
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/sim"
)

// Conversion factors of the domain notes §3.1 (GB/T 2589-2020).
const (
	kgcePerKWh = 0.1229
	kgcePerM3  = 1.2143
	kgcePerKg  = 0.1286 // steam
)

// simulate runs cfg over the shipped fleet and reads the bytes back.
func simulate(t *testing.T, cfg sim.Config) (*registry.Registry, *refIngest) {
	t.Helper()
	reg := loadFleet(t)
	s, err := sim.New(reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ref := newRefIngest(reg, cfg.Start.Add(cfg.Duration+time.Hour))
	for m := range s.Messages() {
		ref.handle(t, m.Topic, m.Payload)
	}
	return reg, ref
}

// plantTotals sums an enterprise's meters by quantity over (from, to];
// paint-shop meters are summed again under "paint:" + quantity.
func plantTotals(ref *refIngest, e *registry.Enterprise, from, to time.Time) map[string]float64 {
	tot := map[string]float64{}
	for _, m := range e.Meters {
		if m.Kind == registry.Gauge {
			continue
		}
		v := ref.between(m, from, to)
		tot[m.Quantity.Name] += v
		if m.Workshop == "paint" {
			tot["paint:"+m.Quantity.Name] += v
		}
	}
	return tot
}

// gaugeMean returns the mean of an enterprise's gauges of quantity q in a
// workshop (all workshops if ""), and the VOC mass they and their paired
// stack flow meters give, in g.
func gaugeMean(ref *refIngest, e *registry.Enterprise, q, workshop string) (mean, vocGrams float64) {
	n := 0
	for _, m := range e.Meters {
		if m.Quantity.Name != q || (workshop != "" && m.Workshop != workshop) {
			continue
		}
		flow := map[time.Time]float64{}
		if m.FlowMeter != nil {
			for _, a := range ref.amounts(m.FlowMeter) {
				flow[a.ts] = a.v
			}
		}
		for _, a := range ref.amounts(m) {
			mean += a.v
			n++
			vocGrams += a.v * flow[a.ts] / 1000 // mg/m3 x m3
		}
	}
	return mean / float64(max(n, 1)), vocGrams
}

func energyKgce(tot map[string]float64, prefix string) float64 {
	return tot[prefix+"electricity"]*kgcePerKWh + tot[prefix+"natural_gas"]*kgcePerM3 + tot[prefix+"steam"]*kgcePerKg
}

// TestSignals checks the signals of a simulated week against the
// magnitudes of the domain notes (§5) and the level each shipped plant is
// designed for (benchmarks of the §7 proposal).
func TestSignals(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	start := time.Date(2026, 11, 16, 0, 0, 0, 0, cst) // a Monday
	end := start.Add(7 * 24 * time.Hour)
	reg, ref := simulate(t, sim.Config{Seed: 11, Start: start, Duration: 7 * 24 * time.Hour, Now: fixedNow(start)})
	saturday := start.Add(5 * 24 * time.Hour)

	type band struct{ lo, hi float64 }
	in := func(t *testing.T, what string, got float64, b band) {
		t.Helper()
		if got < b.lo || got > b.hi {
			t.Errorf("%s: got %.3f, want %g to %g", what, got, b.lo, b.hi)
		}
	}
	vehiclePlants := []struct {
		id                      string
		kgce, fresh, voc, hazKg band // designed level
	}{
		{"cq-lj-yuntai-auto", band{90, 120}, band{1.5, 2.0}, band{15, 20}, band{2, 3}},      // Level I
		{"cq-lj-jiahe-motors", band{120, 160}, band{2.0, 3.5}, band{20, 35}, band{3, 5}},    // Level II
		{"cq-lj-shanchuan-auto", band{160, 220}, band{5.0, 6.5}, band{45, 55}, band{8, 10}}, // below Level III
	}
	for _, p := range vehiclePlants {
		t.Run(p.id, func(t *testing.T) {
			e, _ := reg.Enterprise(p.id)
			tot := plantTotals(ref, e, start, end)
			weekdays := plantTotals(ref, e, start, saturday)
			weekend := plantTotals(ref, e, saturday, end)
			veh := tot["vehicles"]
			in(t, "JPH over the scheduled hours (5 days x 15 h)", weekdays["vehicles"]/75, band{30, 70})
			if weekend["vehicles"] != 0 {
				t.Errorf("weekend production: got %v vehicles, want 0", weekend["vehicles"])
			}
			in(t, "weekend electricity per hour / weekday's (base load)", weekend["electricity"]/48/(weekdays["electricity"]/120), band{0.15, 0.6})
			in(t, "electricity kWh/vehicle", tot["electricity"]/veh, band{500, 950})
			in(t, "natural gas m3/vehicle", tot["natural_gas"]/veh, band{30, 75})
			in(t, "e-coat m2/vehicle", tot["ecoat_area"]/veh, band{80, 120})
			in(t, "wastewater / fresh water", tot["wastewater"]/tot["fresh_water"], band{0.6, 0.8})
			in(t, "paint-shop share of electricity", tot["paint:electricity"]/tot["electricity"], band{0.45, 0.6})
			cod, _ := gaugeMean(ref, e, "cod", "wwtp-outlet")
			in(t, "effluent COD mg/L", cod, band{40, 260})
			nh3n, _ := gaugeMean(ref, e, "nh3n", "")
			in(t, "effluent NH3-N mg/L", nh3n, band{2, 20})
			_, vocG := gaugeMean(ref, e, "voc", "")

			in(t, "comprehensive energy kgce/vehicle", energyKgce(tot, "")/veh, p.kgce)
			in(t, "fresh water m3/vehicle", tot["fresh_water"]/veh, p.fresh)
			in(t, "VOC g/m2", vocG/tot["ecoat_area"], p.voc)
			in(t, "hazardous waste kg/vehicle", tot["hazardous_waste"]/veh, p.hazKg)
			t.Logf("%.0f vehicles, %.0f kWh/veh, %.1f m3 gas/veh, %.1f kgce/veh, %.2f m3 fresh/veh, %.1f g VOC/m2, %.2f kgce/m2 paint, COD %.0f",
				veh, tot["electricity"]/veh, tot["natural_gas"]/veh, energyKgce(tot, "")/veh, tot["fresh_water"]/veh, vocG/tot["ecoat_area"],
				energyKgce(tot, "paint:")/tot["ecoat_area"], cod)
		})
	}
	t.Run("cq-lj-hengrun-parts", func(t *testing.T) {
		e, _ := reg.Enterprise("cq-lj-hengrun-parts")
		tot := plantTotals(ref, e, start, end)
		area := tot["ecoat_area"]
		_, vocG := gaugeMean(ref, e, "voc", "")
		// Level III by design: kgce/m2 <= 1.4, L/m2 <= 30, g/m2 <= 45.
		in(t, "paint-shop kgce/m2", energyKgce(tot, "paint:")/area, band{1.0, 1.4})
		in(t, "paint-shop fresh water L/m2", 1000*tot["paint:fresh_water"]/area, band{20, 30})
		in(t, "VOC g/m2", vocG/area, band{35, 45})
		if tot["vehicles"] != 0 {
			t.Errorf("a parts plant made %v vehicles", tot["vehicles"])
		}
	})
}

// TestDrift checks that the regressing plant's intensity rises and the
// improving plant's falls over three simulated months. Coating used per
// e-coated m2 has no base load, so the ratio shows the drift alone, free
// of the month-to-month swings of output.
func TestDrift(t *testing.T) {
	start := time.Date(2026, 8, 31, 16, 0, 0, 0, time.UTC)
	month := 30 * 24 * time.Hour
	reg, ref := simulate(t, sim.Config{Seed: 2, Start: start, Duration: 3 * month, Interval: time.Hour, Now: fixedNow(start)})
	tests := []struct {
		id     string
		lo, hi float64 // third month / first month
	}{
		{"cq-lj-jiahe-motors", 1.08, 1.12},   // +5 % per 30 days: (1+0.05*2.5)/(1+0.05*0.5) = 1.098
		{"cq-lj-shanchuan-auto", 0.90, 0.94}, // -4 % per 30 days: 0.90/0.98 = 0.918
		{"cq-lj-yuntai-auto", 0.99, 1.01},    // steady
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			e, _ := reg.Enterprise(tt.id)
			first := plantTotals(ref, e, start, start.Add(month))
			third := plantTotals(ref, e, start.Add(2*month), start.Add(3*month))
			ratio := (third["paint_used"] / third["ecoat_area"]) / (first["paint_used"] / first["ecoat_area"])
			if ratio < tt.lo || ratio > tt.hi {
				t.Errorf("coating kg/m2, third month / first: got %.3f, want %g to %g", ratio, tt.lo, tt.hi)
			}
			t.Logf("kgce/vehicle third month / first: %.3f", (energyKgce(third, "")/third["vehicles"])/(energyKgce(first, "")/first["vehicles"]))
		})
	}
}

func TestDriftScale(t *testing.T) {
	start := time.Date(2026, 8, 31, 16, 0, 0, 0, time.UTC)
	month := 30 * 24 * time.Hour
	reg, ref := simulate(t, sim.Config{Seed: 2, Start: start, Duration: 2 * month, Interval: time.Hour, DriftScale: -1, Now: fixedNow(start)})
	e, _ := reg.Enterprise("cq-lj-jiahe-motors")
	first := plantTotals(ref, e, start, start.Add(month))
	second := plantTotals(ref, e, start.Add(month), start.Add(2*month))
	ratio := (second["paint_used"] / second["ecoat_area"]) / (first["paint_used"] / first["ecoat_area"])
	if ratio < 0.99 || ratio > 1.01 {
		t.Errorf("coating kg/m2 without drift, second month / first: got %.3f, want 0.99 to 1.01", ratio)
	}
}
