package sim

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Model constants (ESTIMATES, see profiles.yaml for the sourced magnitudes).
const (
	meanTimeToRepair = 20 * time.Minute // mean length of a line stoppage
	tankTimeConstant = 6 * time.Hour    // wastewater equalisation tank
	excursionFactor  = 2.5              // outlet concentration during an excursion
	idleVOCShare     = 0.02             // VOC emitted per idle hour, share of a production hour's
	driftPeriod      = 30 * 24 * time.Hour
	// planMean is the mean of the daily production plan factor drawn in
	// newDay: 88 % normal days around 1.0, 9 % reduced days around 0.7,
	// 3 % days without production.
	planMean = 0.88*1.0 + 0.09*0.7
)

// window is a working period of a weekday, as offsets from local midnight.
type window struct{ from, to time.Duration }

func hm(h, m int) time.Duration { return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute }

// shiftWindows returns the working windows of a weekday for 1, 2 or 3
// shifts of 8 hours with a 30-minute break each.
func shiftWindows(shifts int) []window {
	switch shifts {
	case 1:
		return []window{{hm(8, 0), hm(12, 0)}, {hm(12, 30), hm(16, 30)}}
	case 3:
		return []window{{0, hm(4, 0)}, {hm(4, 30), hm(8, 0)}, {hm(8, 0), hm(12, 0)},
			{hm(12, 30), hm(16, 0)}, {hm(16, 0), hm(20, 0)}, {hm(20, 30), hm(24, 0)}}
	default:
		return []window{{hm(7, 0), hm(11, 0)}, {hm(11, 30), hm(15, 0)}, {hm(15, 30), hm(19, 30)}, {hm(20, 0), hm(23, 30)}}
	}
}

// amountKind says how the plant model produces an extensive quantity.
type amountKind uint8

const (
	amountLoad  amountKind = iota // base load plus an amount per job
	amountTank                    // like amountLoad, released through the equalisation tank
	amountJobs                    // jobs produced (vehicles, bodies)
	amountArea                    // jobs times e-coated area
	amountSolar                   // on-site PV generation
)

type amountSpec struct {
	qi       int // quantity index
	kind     amountKind
	baseRate float64 // canonical units per hour
	perJob   float64 // canonical units per job above the base load
	drifts   bool
	tank     float64 // amountTank: content of the equalisation tank
}

// plant is the physical model of one enterprise: production schedule, line
// stoppages, daily plan, weather, and the enterprise-wide amount of every
// quantity in each interval. Its random stream is its own, so a plant's
// signal does not depend on which meters or other plants exist.
type plant struct {
	id     string
	prof   Profile
	rng    *rand.Rand
	loc    *time.Location
	start  time.Time
	step   time.Duration
	stepH  float64
	wins   []window
	weekly float64 // nominal jobs in a normal week

	specs  []amountSpec
	amount []float64 // by quantity index: canonical amount in the current interval
	jobs   float64   // jobs in the current interval
	voc    float64   // g of VOC emitted in the current interval
	flow   float64   // m3 of stack gas in the current interval
	drift  float64   // intensity factor at the current interval

	// state
	day          int64 // local day number of plan and cloud
	plan, cloud  float64
	stopped      bool
	pStop, pRun  float64
	stackQI      int
	excursion    map[string]*excursion // outlet gauges with excursions, by quantity
	excursionQ   []string              // keys of excursion, sorted
	gaugeSpec    map[string]GaugeAt
	haveStackAmt bool
}

type excursion struct {
	perTick float64   // probability an episode starts in one interval
	until   time.Time // end of the current episode
}

// quantity indexes the plant model needs.
type quantityIndex map[string]int

func newPlant(id string, prof Profile, seed uint64, qidx quantityIndex, loc *time.Location, start time.Time, step time.Duration) *plant {
	p := &plant{
		id: id, prof: prof, loc: loc, start: start, step: step,
		stepH:     step.Hours(),
		rng:       newRand(seed, "plant", id),
		wins:      shiftWindows(prof.Shifts),
		amount:    make([]float64, len(qidx)),
		day:       math.MinInt64,
		gaugeSpec: prof.Gauges,
		stackQI:   qidx["stack_gas"],
	}
	var hours time.Duration
	for _, w := range p.wins {
		hours += w.to - w.from
	}
	p.weekly = prof.JPH * 5 * hours.Hours() * (1 - prof.Stoppage) * planMean
	hourly := p.weekly / 168
	if s := prof.Stoppage; s > 0 {
		mtbf := float64(meanTimeToRepair) * (1 - s) / s
		p.pStop = 1 - math.Exp(-float64(step)/mtbf)
	}
	p.pRun = 1 - math.Exp(-float64(step)/float64(meanTimeToRepair))

	for _, q := range slices.Sorted(maps.Keys(qidx)) {
		spec := amountSpec{qi: qidx[q]}
		switch q {
		case "vehicles", "bodies":
			spec.kind = amountJobs
		case "ecoat_area":
			spec.kind = amountArea
		case "pv_electricity":
			spec.kind = amountSolar
		default:
			a, ok := prof.Amounts[q]
			if !ok {
				continue
			}
			spec.kind = amountLoad
			spec.baseRate = a.Base * a.PerJob * hourly
			spec.perJob = (1 - a.Base) * a.PerJob
			spec.drifts = q != "green_electricity" && q != "stack_gas"
			if q == "wastewater" || q == "raw_wastewater" {
				spec.kind = amountTank
				spec.tank = a.PerJob * hourly * tankTimeConstant.Hours()
			}
			if q == "stack_gas" {
				p.haveStackAmt = true
			}
		}
		p.specs = append(p.specs, spec)
	}
	for _, q := range slices.Sorted(maps.Keys(prof.Gauges)) {
		if g := prof.Gauges[q]; g.Excursions > 0 {
			if p.excursion == nil {
				p.excursion = make(map[string]*excursion)
			}
			p.excursion[q] = &excursion{perTick: g.Excursions * float64(step) / float64(driftPeriod)}
			p.excursionQ = append(p.excursionQ, q)
		}
	}
	return p
}

// models reports whether the plant models quantity index qi.
func (p *plant) models(qi int) bool {
	for _, s := range p.specs {
		if s.qi == qi {
			return true
		}
	}
	return false
}

// expectedHourly returns the mean hourly amount of quantity index qi over a
// normal week, in canonical units (0 if the plant does not model it).
func (p *plant) expectedHourly(qi int) float64 {
	hourly := p.weekly / 168
	for _, s := range p.specs {
		if s.qi != qi {
			continue
		}
		switch s.kind {
		case amountJobs:
			return hourly
		case amountArea:
			return hourly * p.prof.Area
		case amountSolar:
			return p.prof.PVPeak * solarMeanFactor
		default:
			return s.baseRate + s.perJob*hourly
		}
	}
	return 0
}

// solarMeanFactor is the mean PV output as a share of peak: mean cloud
// factor times the mean of the daylight bell over 24 hours.
const solarMeanFactor = (0.08 + 0.25) * (12 * 2 / math.Pi) / 24

// advance computes the plant's amounts for the interval (t-step, t].
func (p *plant) advance(t time.Time) {
	from := t.Add(-p.step)
	mid := from.Add(p.step / 2).In(p.loc)
	_, off := mid.Zone()
	if day := (mid.Unix() + int64(off)) / 86400; day != p.day {
		p.day = day
		p.newDay()
	}
	// Line stoppages: a two-state Markov chain, drawn every interval.
	u := p.rng.Float64()
	if p.stopped {
		p.stopped = u >= p.pRun
	} else {
		p.stopped = u < p.pStop
	}
	jitter := 1 + 0.03*p.rng.NormFloat64()
	jobs := 0.0
	if !p.stopped {
		jobs = max(0, p.prof.JPH*p.plan*p.scheduled(from, t)*jitter)
	}
	p.jobs = jobs
	el := t.Sub(p.start)
	p.drift = min(3, max(0.3, 1+p.prof.Drift*float64(el)/float64(driftPeriod)))

	for i := range p.specs {
		s := &p.specs[i]
		var v float64
		switch s.kind {
		case amountJobs:
			v = jobs
		case amountArea:
			v = jobs * p.prof.Area
		case amountSolar:
			h := float64(mid.Hour()) + float64(mid.Minute())/60 + float64(mid.Second())/3600
			if h > 6.5 && h < 18.5 {
				v = p.prof.PVPeak * p.cloud * math.Sin(math.Pi*(h-6.5)/12) * p.stepH
			}
		default:
			v = s.baseRate*p.stepH + s.perJob*jobs
			if s.drifts {
				v *= p.drift
			}
			if s.kind == amountTank {
				s.tank += v
				v = s.tank * (1 - math.Exp(-p.stepH/tankTimeConstant.Hours()))
				s.tank -= v
			}
		}
		p.amount[s.qi] = v
	}
	nominalMass := p.prof.VOC * p.prof.Area * p.prof.JPH // g per production hour
	p.voc = (p.prof.VOC*p.prof.Area*jobs + idleVOCShare*nominalMass*p.stepH) * p.drift
	if p.haveStackAmt {
		p.flow = p.amount[p.stackQI]
	} else {
		p.flow = 0
	}
	for _, q := range p.excursionQ {
		x := p.excursion[q]
		if !t.Before(x.until) && p.rng.Float64() < x.perTick {
			x.until = t.Add(2*time.Hour + time.Duration(p.rng.Float64()*float64(6*time.Hour)))
		}
	}
}

// newDay draws the day's production plan and cloud cover.
func (p *plant) newDay() {
	switch u := p.rng.Float64(); {
	case u < 0.88:
		p.plan = 0.95 + 0.1*p.rng.Float64()
	case u < 0.97:
		p.plan = 0.6 + 0.2*p.rng.Float64()
	default:
		p.plan = 0
	}
	p.cloud = 0.08 + 0.5*p.rng.Float64()
}

// scheduled returns the working hours of the line in [from, to).
func (p *plant) scheduled(from, to time.Time) float64 {
	f := from.In(p.loc)
	day := time.Date(f.Year(), f.Month(), f.Day(), 0, 0, 0, 0, p.loc)
	var d time.Duration
	for day.Before(to) {
		if wd := day.Weekday(); wd != time.Saturday && wd != time.Sunday {
			for _, w := range p.wins {
				a, b := day.Add(w.from), day.Add(w.to)
				if a.Before(from) {
					a = from
				}
				if b.After(to) {
					b = to
				}
				if b.After(a) {
					d += b.Sub(a)
				}
			}
		}
		day = day.AddDate(0, 0, 1)
	}
	return d.Hours()
}

// gaugeMean returns the mean of gauge quantity q at the inlet or the outlet
// in the current interval, in canonical units.
func (p *plant) gaugeMean(q string, inlet bool, t time.Time) float64 {
	g := p.gaugeSpec[q]
	v := g.Outlet
	if inlet && g.Inlet > 0 {
		v = g.Inlet
	}
	if q != "ph" {
		v *= p.drift
	}
	if x, ok := p.excursion[q]; ok && !inlet && t.Before(x.until) {
		v *= excursionFactor
	}
	return v
}
