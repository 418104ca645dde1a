package sim

import (
	"errors"
	"fmt"
	"hash/fnv"
	"iter"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/cleanprod/cleanprod/registry"
)

// Simulator generates the messages of a fleet of plants. Generation (Next,
// Messages, Run) belongs to one goroutine at a time; Ledger and Stats may
// be called from any goroutine, also while Run is running.
type Simulator struct {
	// progressMu serialises the lines Run writes to Config.Progress from
	// its progress ticker and from the producer (the history line).
	progressMu sync.Mutex
	cfg        Config
	reg        *registry.Registry
	plants     []*plant
	gws        []*gateway
	meters     []*meter // ledger slots, registry order
	step       time.Duration
	t          time.Time // time of the next tick
	end        time.Time // time of the last tick; zero: open-ended
	ended      bool
	out        []Message // messages of the current tick (reused)
	queue      []Message // Next: what is left of the current tick
	running    bool      // Run has been called

	mu      sync.Mutex    // guards everything below
	began   time.Time     // real time Run started
	elapsed time.Duration // real duration of a finished Run
	ledger  []meterLedger
	faults  [numFaults]int
	stats   Stats
}

// New prepares a simulation of every enterprise, gateway and meter in reg.
// It returns every configuration problem at once.
func New(reg *registry.Registry, cfg Config) (*Simulator, error) {
	if reg == nil || len(reg.Enterprises) == 0 {
		return nil, errors.New("sim: empty registry")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	cfg = cfg.withDefaults()
	if cfg.Profiles == nil {
		cfg.Profiles = DefaultProfiles()
	}
	s := &Simulator{cfg: cfg, reg: reg, step: cfg.Interval, t: cfg.Start}
	if cfg.Duration > 0 {
		s.end = cfg.Start.Add(cfg.Duration)
	}
	s.stats.SimTime = cfg.Start

	qidx := make(quantityIndex)
	for i, q := range registry.Quantities() {
		qidx[q.Name] = i
	}
	seed := uint64(cfg.Seed)
	cum := make([]float64, 0, numFaults-1)
	c := 0.0
	for _, f := range cfg.Faults.shares() {
		c += f
		cum = append(cum, c)
	}
	now := cfg.Now().UTC()
	var errs []error
	for _, e := range reg.Enterprises {
		prof := cfg.Profiles.For(e)
		switch {
		case cfg.DriftScale < 0:
			prof.Drift = 0
		case cfg.DriftScale > 0:
			prof.Drift *= cfg.DriftScale
		}
		pl := newPlant(e.ID, prof, seed, qidx, cfg.Location, cfg.Start, s.step)
		s.plants = append(s.plants, pl)
		shares := meterShares(e, prof)
		for _, g := range e.Gateways {
			if cfg.Profiles.Silent(g) {
				continue
			}
			gw := &gateway{
				g: g, reg: reg, topic: Topic(e.ID, g.ID),
				rng:        newRand(seed, "gateway", e.ID, g.ID),
				faults:     cum,
				anyFault:   c > 0,
				rpm:        cfg.ReadingsPerMessage,
				futureBase: now,
				futureSkew: cfg.Faults.FutureSkew,
				shard:      shardOf(e.ID, g.ID, cfg.Workers),
			}
			gw.setRogue()
			for _, m := range g.Meters {
				mt, err := s.newMeter(m, pl, qidx, shares[m], true)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if g.Station != nil && (m.HJ212 == nil || m.HJ212.CN != 2051) {
					errs = append(errs, fmt.Errorf("meter %s/%s: the simulated HJ 212 logger of gateway %s sends its meters' values as minute data (give it hj212: {data: minute})", e.ID, m.ID, g.ID))
					continue
				}
				mt.slot = len(s.meters)
				s.meters = append(s.meters, mt)
				gw.meters = append(gw.meters, mt)
			}
			if g.Station != nil {
				gw.station = newStation(gw, seed, cfg)
			}
			s.gws = append(s.gws, gw)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	s.ledger = make([]meterLedger, len(s.meters))
	return s, nil
}

func shardOf(ent, gw string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(ent))
	h.Write([]byte{'/'})
	h.Write([]byte(gw))
	return int(h.Sum32() % uint32(n))
}

// meterShares splits each extensive quantity of an enterprise over its
// meters: paint-shop meters share the profile's paint share, the others the
// rest, so that the meters of a quantity add up to the plant's total.
func meterShares(e *registry.Enterprise, prof Profile) map[*registry.Meter]float64 {
	type group struct{ paint, other []*registry.Meter }
	groups := make(map[string]*group)
	var names []string
	for _, m := range e.Meters {
		if m.Kind == registry.Gauge {
			continue
		}
		q := m.Quantity.Name
		g := groups[q]
		if g == nil {
			g = &group{}
			groups[q] = g
			names = append(names, q)
		}
		if m.Workshop == "paint" {
			g.paint = append(g.paint, m)
		} else {
			g.other = append(g.other, m)
		}
	}
	shares := make(map[*registry.Meter]float64)
	for _, q := range names {
		g := groups[q]
		p := prof.Amounts[q].Paint
		switch {
		case len(g.paint) == 0:
			p = 0
		case len(g.other) == 0:
			p = 1
		}
		for _, m := range g.paint {
			shares[m] = p / float64(len(g.paint))
		}
		for _, m := range g.other {
			shares[m] = (1 - p) / float64(len(g.other))
		}
	}
	return shares
}

// newMeter builds the simulated device of m. With anchor set, a counter
// with a replacement ahead gets the initial register that makes its old
// register read exactly old_final at the replacement.
func (s *Simulator) newMeter(m *registry.Meter, pl *plant, qidx quantityIndex, share float64, anchor bool) (*meter, error) {
	seed := uint64(s.cfg.Seed)
	ent := m.Enterprise.ID
	q := m.Quantity.Name
	prof := pl.prof
	mt := &meter{
		m: m, pl: pl, qi: qidx[q], share: share, step: s.step, every: 1, grain: 1,
		noise: newRand(seed, "noise", ent, m.ID),
		event: newRand(seed, "event", ent, m.ID),
	}
	if d, ok := s.cfg.Intervals[q]; ok {
		mt.every = int64(d / s.step)
	}
	readingsPerDay := float64(24*time.Hour) / float64(s.step) / float64(mt.every)
	mt.resetP = s.cfg.Resets / readingsPerDay

	if m.Kind == registry.Gauge {
		var mean float64
		switch q {
		case "voc", "voc_inlet":
			mt.vocGas, mt.sigma = true, 0.12
			mean = 40
			if q == "voc_inlet" {
				mean /= 1 - prof.Abatement
			}
		default:
			g, ok := prof.Gauges[q]
			if !ok {
				return nil, fmt.Errorf("meter %s/%s: the profile has no level for gauge quantity %s", ent, m.ID, q)
			}
			mt.inlet = isInlet(m)
			mean, mt.sigma = g.Outlet, g.Noise
			if mt.inlet && g.Inlet > 0 {
				mean = g.Inlet
			}
		}
		switch raw := mean / m.Factor; {
		case raw >= 100:
			mt.dec = 1
		case raw >= 1:
			mt.dec = 2
		case raw >= 0.01:
			mt.dec = 3
		default:
			mt.dec = 4
		}
		mt.res = math.Pow10(-mt.dec)
		return mt, nil
	}

	hourly := pl.expectedHourly(mt.qi) * share / m.Factor // raw units per hour
	if !pl.models(mt.qi) {
		return nil, fmt.Errorf("meter %s/%s: the profile has no amount for %s", ent, m.ID, q)
	}
	perReading := hourly * s.step.Hours() * float64(mt.every)
	mt.count = q == "vehicles" || q == "bodies" || (q == "ecoat_area" && m.Scale > 1)
	switch {
	case mt.count:
		mt.dec = 0
	case perReading > 0:
		mt.dec = min(3, max(0, int(math.Ceil(2-math.Log10(perReading)))))
	default:
		mt.dec = 2
	}
	rollover, resolution := m.Rollover/m.Factor, m.Resolution/m.Factor // raw units
	if m.Rollover > 0 {
		// The register shows whole steps of its resolution, however little
		// one reading adds.
		mt.dec = decimalsOf(resolution)
	}
	for _, r := range m.Replacements {
		mt.dec = max(mt.dec, decimalsOf(r.OldFinal/m.Factor), decimalsOf(r.NewInitial/m.Factor))
	}
	mt.res = math.Pow10(-mt.dec)
	if m.Kind != registry.Counter {
		return mt, nil
	}

	if m.Rollover > 0 {
		// It shows 0 ... rollover in steps of grain, then 0 again.
		mt.grain = steps(resolution, mt.dec)
		if mt.grain < 1 || math.Abs(r64(mt.grain, mt.dec)-resolution) > 1e-9*resolution {
			return nil, fmt.Errorf("meter %s/%s: resolution %v %s: the simulator writes registers with at most %d decimals", ent, m.ID, resolution, m.Unit, maxDecimals)
		}
		mt.mod = steps(rollover, mt.dec) + mt.grain
	}
	perStep := perReading / mt.res // steps per reading
	mt.resetMin = max(100, int64(100*perStep))
	if mt.mod > 0 && 3*perStep >= float64(mt.mod)/2 {
		return nil, fmt.Errorf("meter %s/%s: rollover %v %s is too small: about %.0f %s per reading would wrap it more than once",
			ent, m.ID, rollover, m.Unit, perReading, m.Unit)
	}
	first := s.cfg.Start.Add(-s.step) // replacements after this happen during the run
	var past *registry.Replacement
	for i, r := range m.Replacements {
		if !r.At.After(first) {
			past = &m.Replacements[i]
			continue
		}
		if r.At.After(s.cfg.Start.Add(replaceAhead)) {
			break
		}
		mt.repl = append(mt.repl, replacement{
			at:         r.At,
			oldFinal:   steps(r.OldFinal/m.Factor, mt.dec),
			newInitial: steps(r.NewInitial/m.Factor, mt.dec),
		})
	}
	daily := perStep * readingsPerDay
	u := mt.event.Float64()
	switch {
	case len(mt.repl) > 0 && anchor:
		c, err := s.consumedUntilReplacement(m, prof, qidx, share)
		if err != nil {
			return nil, err
		}
		mt.reg = mt.repl[0].oldFinal - c
		if mt.mod > 0 {
			mt.reg = (mt.reg%mt.mod + mt.mod) % mt.mod
		} else if mt.reg < 0 {
			return nil, fmt.Errorf("meter %s/%s: replacement at %s: old_final %v %s is below what the meter would use from the start %s; start later",
				ent, m.ID, mt.repl[0].at.Format(time.RFC3339), r64(mt.repl[0].oldFinal, mt.dec), m.Unit, s.cfg.Start.Format(time.RFC3339))
		}
	case past != nil:
		days := min(365, s.cfg.Start.Sub(past.At).Hours()/24)
		mt.reg = steps(past.NewInitial/m.Factor, mt.dec) + int64(u*days*daily)
	case mt.mod > 0:
		// Near the top, so that it wraps within the first days.
		if back := int64((0.5 + 2.5*u) * daily); back > 0 && back < mt.mod {
			mt.reg = mt.mod - back
		} else {
			mt.reg = int64(u * float64(mt.mod))
		}
	default:
		// A register that has run for one to a hundred months, within
		// eight digits before the decimals.
		mt.reg = min(int64((30+2970*u)*daily), int64((0.1+0.9*u)*1e8/mt.res))
		if mt.reg < 1000 {
			mt.reg = 1000 + int64(u*1e6)
		}
	}
	if mt.mod > 0 {
		mt.reg %= mt.mod
	}
	if len(mt.repl) == 0 || !anchor {
		mt.reg -= mt.reg % mt.grain // anchored, it reads old_final at the replacement, as declared
	}
	if mt.reg == 0 && len(mt.repl) == 0 {
		mt.reg = mt.grain
	}
	return mt, nil
}

func r64(units int64, dec int) float64 { return float64(units) / math.Pow10(dec) }

// isInlet reports whether a gauge analyses the inflow to treatment: paired
// with a raw_wastewater flow meter, or placed in a workshop named "*inlet*".
func isInlet(m *registry.Meter) bool {
	if m.FlowMeter != nil {
		return m.FlowMeter.Quantity.Name == "raw_wastewater"
	}
	return strings.Contains(strings.ToLower(m.Workshop), "inlet")
}

// consumedUntilReplacement replays the meter's plant from the start up to
// its first replacement ahead and returns the register steps it consumes
// until then. Plant and meter draw from their own streams, so the replay
// is exactly what the run will produce.
func (s *Simulator) consumedUntilReplacement(m *registry.Meter, prof Profile, qidx quantityIndex, share float64) (int64, error) {
	pl := newPlant(m.Enterprise.ID, prof, uint64(s.cfg.Seed), qidx, s.cfg.Location, s.cfg.Start, s.step)
	mt, err := s.newMeter(m, pl, qidx, share, false)
	if err != nil {
		return 0, err
	}
	mt.mod = 0
	c := int64(-1)
	mt.probe = &c
	for t := s.cfg.Start; c < 0; t = t.Add(s.step) {
		pl.advance(t)
		mt.advance(t)
	}
	return c, nil
}

// generate advances the simulation by one interval and returns the
// messages to send at simulated time t; ok is false after the end.
func (s *Simulator) generate() (t time.Time, msgs []Message, ok bool) {
	if s.ended {
		return time.Time{}, nil, false
	}
	out := s.out[:0]
	t = s.t
	if !s.end.IsZero() && t.After(s.end) {
		for _, g := range s.gws {
			out = g.flush(s.end, out)
		}
		s.ended = true
		s.out = out
		return s.end, out, true
	}
	for _, p := range s.plants {
		p.advance(t)
	}
	for _, g := range s.gws {
		out = g.tick(t, out)
	}
	s.t = t.Add(s.step)
	s.out = out
	return t, out, true
}

// Next returns the next message and records it as sent (in the ledger and
// the stats); ok is false once a run with a Duration is over. Next does not
// wait for simulated time to pass: it generates as fast as it is called.
func (s *Simulator) Next() (msg Message, ok bool) {
	for len(s.queue) == 0 {
		t, msgs, ok := s.generate()
		if !ok {
			return Message{}, false
		}
		s.setSimTime(t)
		s.queue = msgs
	}
	msg = s.queue[0]
	s.queue[0] = Message{}
	s.queue = s.queue[1:]
	s.commit(&msg)
	return msg, true
}

// Messages returns an iterator over the messages Next returns.
func (s *Simulator) Messages() iter.Seq[Message] {
	return func(yield func(Message) bool) {
		for {
			m, ok := s.Next()
			if !ok || !yield(m) {
				return
			}
		}
	}
}

func (s *Simulator) setSimTime(t time.Time) {
	s.mu.Lock()
	s.stats.SimTime = t
	s.mu.Unlock()
}

// commit records a sent message in the ledger and the stats.
func (s *Simulator) commit(m *Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Messages++
	s.stats.Readings += int64(m.Readings)
	s.stats.Bytes += int64(len(m.Payload))
	if m.Fault != FaultNone {
		s.stats.Faults++
		s.faults[m.Fault]++
	}
	if m.eff == nil {
		return
	}
	for _, r := range m.eff.valid {
		s.ledger[r.mt.slot].add(r)
	}
}

// Ledger returns what the simulator has sent so far: a snapshot, safe to
// keep.
func (s *Simulator) Ledger() Ledger {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := Ledger{Rejected: make(map[string]int), Meters: make([]MeterTotal, len(s.meters))}
	for f := FaultNone + 1; f < numFaults; f++ {
		n := s.faults[f]
		switch {
		case f == FaultDuplicate:
			l.Duplicates = n
		case f == FaultOutOfOrder:
			l.Delayed = n
		case f == FaultBacklog:
			l.Backlog = n
		case f == FaultDataFlag:
			l.Flagged = n
		case n > 0:
			l.Rejected[f.Reason()] += n
		}
	}
	l.Messages = int(s.stats.Messages)
	for i, mt := range s.meters {
		ml := s.ledger[i]
		m := mt.m
		t := MeterTotal{
			Enterprise: m.Enterprise.ID, Gateway: m.Gateway.ID, Meter: m.ID,
			Quantity: m.Quantity.Name, Workshop: m.Workshop, Kind: m.Kind,
			Readings: ml.readings, First: ml.first, Last: ml.last,
		}
		switch m.Kind {
		case registry.Counter:
			t.Sum = mt.canonical(ml.lastCum - ml.firstCum)
			t.Held = mt.canonical(ml.held)
		case registry.Delta:
			t.Sum = mt.canonical(ml.units)
		default:
			t.ValueSum = ml.valueSum
		}
		l.Readings += ml.readings
		l.Meters[i] = t
	}
	return l
}

// Stats returns a snapshot of the progress counters.
func (s *Simulator) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	switch {
	case s.elapsed > 0:
		st.Elapsed = s.elapsed
	case !s.began.IsZero():
		st.Elapsed = time.Since(s.began)
	}
	return st
}

// Faults returns how many messages carried each injected fault so far.
func (s *Simulator) Faults() map[Fault]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[Fault]int)
	for f := FaultNone + 1; f < numFaults; f++ {
		if s.faults[f] > 0 {
			out[f] = s.faults[f]
		}
	}
	return out
}

// Registry returns the registry being simulated.
func (s *Simulator) Registry() *registry.Registry { return s.reg }

// Start returns the simulated time of the first reading.
func (s *Simulator) Start() time.Time { return s.cfg.Start }
