package sim

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"time"

	"github.com/cleanprod/cleanprod/registry"
)

const (
	meterNoise   = 0.04 // relative noise of a meter's share of its plant's amount
	gaugeAR      = 0.8  // AR(1) coefficient of an analyser's noise between readings
	maxDecimals  = 4
	replaceAhead = 400 * 24 * time.Hour // replacements further ahead are not simulated
)

// newRand returns a random stream for one entity, seeded from the run's
// seed and the entity's path, so each plant, meter and gateway draws from
// its own stream whatever else is simulated.
func newRand(seed uint64, path ...string) *rand.Rand {
	h := fnv.New64a()
	for _, p := range path {
		h.Write([]byte(p))
		h.Write([]byte{'/'})
	}
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// replacement is a registry.Replacement in register steps.
type replacement struct {
	at                   time.Time
	oldFinal, newInitial int64
}

// meter is one simulated device. Counters and deltas keep their register
// as an integer number of steps of 10^-dec raw units, so that what the
// meter reports and what the ledger counts are exact.
type meter struct {
	m      *registry.Meter
	pl     *plant
	qi     int
	share  float64 // share of the plant's amount of the quantity
	inlet  bool    // gauge before treatment
	vocGas bool    // voc or voc_inlet: derived from mass and stack flow
	every  int64   // ticks between readings
	dec    int     // decimals of a reported value
	res    float64 // raw units per register step: 10^-dec
	count  bool    // counts whole units (vehicles, bodies): no noise
	sigma  float64 // gauge noise
	resetP float64 // probability of a reset after a reading
	// resetMin is the least register that may be reset: far above what one
	// interval adds, so that the next reading is unmistakably a drop.
	resetMin int64
	noise    *rand.Rand
	event    *rand.Rand

	// counters and deltas
	// reg is the register and mod where it wraps: one grain above the
	// largest value it shows, its rollover (0: none), all in steps. A
	// register with a rollover moves in grains of its resolution.
	reg, mod, grain int64
	cum             int64 // steps consumed since the start: the ledger's truth
	acc             int64 // delta meters: steps since the previous reading
	pending         float64
	repl            []replacement // replacements still ahead
	probe           *int64        // pre-simulation: receives cum at the first replacement
	disc            bool          // reset, rollover or replacement since the previous reading
	reset           bool          // reset to zero since the previous reading
	skip            bool          // replaced exactly now: no reading at this tick
	step            time.Duration

	// gauges
	ar, gsum, gmass, gflow float64
	gn                     int

	ticks int64     // ticks advanced
	last  time.Time // time of the latest reading
	slot  int       // ledger slot
}

// reading is one reading of a meter before it is put into a message.
type reading struct {
	mt    *meter
	ts    time.Time
	units int64 // value in units of 10^-dec raw
	cum   int64 // counters: cum at ts
	reset bool  // counters: the first reading after a reset to zero
}

func (mt *meter) advance(t time.Time) {
	mt.ticks++
	mt.skip = false
	if mt.m.Kind == registry.Gauge {
		if mt.vocGas {
			mt.gmass += mt.pl.voc
			mt.gflow += mt.pl.flow
		} else {
			mt.gsum += mt.pl.gaugeMean(mt.m.Quantity.Name, mt.inlet, t)
			mt.gn++
		}
		return
	}
	c := mt.pl.amount[mt.qi] * mt.share
	if !mt.count {
		c *= max(0, 1+meterNoise*mt.noise.NormFloat64())
	}
	raw := c / mt.m.Factor
	if len(mt.repl) > 0 {
		r := mt.repl[0]
		if from := t.Add(-mt.step); r.at.After(from) && !r.at.After(t) {
			f := float64(r.at.Sub(from)) / float64(mt.step)
			mt.add(raw * f)
			raw *= 1 - f
			if mt.probe != nil {
				*mt.probe = mt.cum
				mt.probe = nil
			}
			mt.reg = r.newInitial
			mt.disc = true
			mt.skip = r.at.Equal(t) // which register a reading at the very instant shows is ambiguous
			mt.repl = mt.repl[1:]
		}
	}
	mt.add(raw)
}

func (mt *meter) add(raw float64) {
	mt.pending += raw
	n := int64(mt.pending/(mt.res*float64(mt.grain))) * mt.grain
	if n <= 0 {
		return
	}
	mt.pending -= float64(n) * mt.res
	mt.reg += n
	mt.cum += n
	mt.acc += n
	if mt.mod > 0 && mt.reg >= mt.mod {
		mt.reg %= mt.mod
		mt.disc = true
	}
}

// due reports whether the meter reports at the current tick.
func (mt *meter) due() bool { return (mt.ticks-1)%mt.every == 0 }

// read returns the meter's reading at t and starts its next period.
func (mt *meter) read(t time.Time) reading {
	r := reading{mt: mt, ts: t}
	mt.last = t
	switch mt.m.Kind {
	case registry.Counter:
		r.units, r.cum, r.reset = mt.reg, mt.cum, mt.reset
	case registry.Delta:
		r.units = mt.acc
		mt.acc = 0
	default:
		var v float64
		if mt.vocGas {
			if mt.gflow > 0 {
				v = mt.gmass / mt.gflow * 1000 // g/m3 -> mg/m3
			}
			if mt.m.Quantity.Name == "voc_inlet" {
				v /= 1 - mt.pl.prof.Abatement
			}
		} else if mt.gn > 0 {
			v = mt.gsum / float64(mt.gn)
		}
		mt.ar = gaugeAR*mt.ar + math.Sqrt(1-gaugeAR*gaugeAR)*mt.noise.NormFloat64()
		v *= math.Exp(mt.sigma*mt.ar - mt.sigma*mt.sigma/2)
		q := mt.m.Quantity
		if q.Max > 0 {
			v = min(v, q.Max)
		}
		v = max(v, q.Min)
		r.units = int64(math.Round(v / mt.m.Factor * math.Pow10(mt.dec)))
		mt.gsum, mt.gn, mt.gmass, mt.gflow = 0, 0, 0, 0
	}
	mt.disc, mt.reset = false, false
	return r
}

// canonical converts units of 10^-dec raw to canonical units.
func (mt *meter) canonical(units int64) float64 {
	return float64(units) / math.Pow10(mt.dec) * mt.m.Factor
}

// resettable reports whether the meter may be reset to zero: a counter
// without rollover (a drop is then unambiguously a reset) and without a
// replacement ahead (whose declared old_final must hold).
func (mt *meter) resettable() bool {
	return mt.m.Kind == registry.Counter && mt.mod == 0 && len(mt.repl) == 0 && mt.reg >= mt.resetMin
}

// decimalsOf returns the fewest decimals (up to maxDecimals) that write v
// exactly.
func decimalsOf(v float64) int {
	for d := 0; d < maxDecimals; d++ {
		x := v * math.Pow10(d)
		if math.Abs(x-math.Round(x)) <= max(1e-6, 1e-12*math.Abs(x)) {
			return d
		}
	}
	return maxDecimals
}

// steps converts a raw value to register steps of 10^-dec.
func steps(raw float64, dec int) int64 { return int64(math.Round(raw * math.Pow10(dec))) }
