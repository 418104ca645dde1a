package scoring

import (
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

// layout maps one enterprise's registered meters to the tracks of its
// windows and the standard's series to those tracks. It is built once from
// the registry and read-only afterwards.
//
// Which meters feed a series:
//   - an amount q@w: the enterprise's q meters of workshop w;
//   - an amount q: its site meters of q (no workshop) or, if it has none,
//     every q meter (the workshops then add up to the site);
//   - readings of a gauge q (mean, compliance), optionally @w: each q meter,
//     except analysers paired with a raw_wastewater flow meter, which see
//     wastewater before treatment, where discharge limits do not apply;
//   - load(q[@w][, flow]): each q meter paired with a flow meter (of
//     quantity flow, if given);
//   - abatement(in, out): the in and out meters paired with the same flow
//     meter.
//
// Gauge and flow tracks are per meter. An amount track adds up its meters,
// so each meter that shares one with others also gets a presence row (one
// bit per bucket) for the coverage of the worst meter.
type layout struct {
	tracks int
	gauges int                     // tracks [0, gauges) are per-meter gauge tracks
	rows   int                     // presence rows
	meters map[string]meterBinding // meter id -> tracks fed
	series []binding               // indexed like Standard.Series
	names  []string                // track names, for messages and tests
	meter  []string                // per track: the meter of a gauge or flow track ("" for an amount track)
	permit []float64               // per track: a gauge meter's discharge permit limit (0: none; the standard's limit applies)
	judged []bool                  // per track: a gauge read as itself (mean, compliance), not only as a load's concentration
	hourly []bool                  // per track: a gauge fed by an HJ 212 station's real-time, minute or hourly data, which owes a valid value every hour

	seriesNames []string // Standard.Series names (shared), for messages
}

// meterBinding says which tracks a meter's readings go to.
type meterBinding struct {
	meter  *registry.Meter
	gauge  bool
	tracks []int
	row    int // presence row, -1 if none
}

// add adds a reading of the meter to every window: v to each track it
// feeds (with n readings on gauge tracks, which are [0, gauges)), and its
// presence in the bucket of t. It reports whether a window kept it (false:
// older than every window).
func (mb *meterBinding) add(wins []*window, gauges int, t time.Time, v float64, n uint32) bool {
	kept := false
	for _, w := range wins {
		b := w.bucketOf(t)
		for _, tr := range mb.tracks {
			c := n
			if tr >= gauges {
				c = 0
			}
			kept = w.add(tr, b, v, c) || kept
		}
		if mb.row >= 0 {
			w.mark(mb.row, b)
		}
	}
	return kept
}

// addReading adds one stored reading as add does: the delta of a counter
// or delta meter, the value (one reading) of a gauge.
func (mb *meterBinding) addReading(wins []*window, gauges int, r *store.Reading) bool {
	v, n := r.Delta, uint32(0)
	if mb.gauge {
		v, n = r.Value, 1
	}
	return mb.add(wins, gauges, r.Time, v, n)
}

// binding says how to compute one series for the enterprise.
type binding struct {
	present bool       // the enterprise has at least one meter for it
	track   int        // SeriesSum: the total track
	meters  []meterRow // SeriesSum: the meters of the total
	gauges  []int      // SeriesGauge: one track per meter
	pairs   [][2]int   // SeriesLoad: (gauge track, flow track) per pair
	toKg    float64    // SeriesLoad: concentration x volume -> kg
}

// meterRow is a meter of an amount series and its presence row (-1 when it
// is the series' only meter: the track's own bits are its presence).
type meterRow struct {
	id  string
	row int
}

func newLayout(std *Standard, e *registry.Enterprise) *layout {
	l := &layout{meters: make(map[string]meterBinding), series: make([]binding, len(std.Series))}
	l.seriesNames = std.seriesNames
	gaugeTrack := map[string]int{} // meter id -> track
	flowTrack := map[string]int{}
	feed := func(m *registry.Meter, track int) {
		mb, ok := l.meters[m.ID]
		if !ok {
			mb.row = -1
		}
		mb.meter, mb.gauge = m, m.Kind == registry.Gauge
		mb.tracks = append(mb.tracks, track)
		l.meters[m.ID] = mb
	}
	rowOf := func(m *registry.Meter) int {
		mb := l.meters[m.ID]
		if mb.row < 0 {
			mb.row = l.rows
			l.rows++
			l.meters[m.ID] = mb
		}
		return mb.row
	}
	newTrack := func(name, meter string) int {
		l.names = append(l.names, name)
		l.meter = append(l.meter, meter)
		l.permit = append(l.permit, 0)
		l.judged = append(l.judged, false)
		l.hourly = append(l.hourly, false)
		l.tracks++
		return l.tracks - 1
	}
	gauge := func(m *registry.Meter) int {
		if t, ok := gaugeTrack[m.ID]; ok {
			return t
		}
		t := newTrack(m.ID, m.ID)
		l.permit[t] = m.PermitLimit
		l.hourly[t] = m.HJ212 != nil && registry.HJ212DataName(m.HJ212.CN) != "day"
		gaugeTrack[m.ID] = t
		feed(m, t)
		return t
	}
	inWorkshop := func(m *registry.Meter, ws string) bool { return ws == "" || m.Workshop == ws }
	loadPair := func(m *registry.Meter, s Series) bool {
		if m.Quantity.Name != s.Quantity || m.Kind != registry.Gauge || !inWorkshop(m, s.Workshop) || m.FlowMeter == nil {
			return false
		}
		if s.Flow != "" && m.FlowMeter.Quantity.Name != s.Flow {
			return false
		}
		if s.With != "" {
			for _, o := range e.Meters {
				if o.Quantity.Name == s.With && o.FlowMeter == m.FlowMeter {
					return true
				}
			}
			return false
		}
		return true
	}
	// Gauge tracks first, so that they are [0, gauges).
	for i, s := range std.Series {
		b := &l.series[i]
		switch s.Kind {
		case SeriesGauge:
			for _, m := range e.Meters {
				if m.Quantity.Name == s.Quantity && m.Kind == registry.Gauge && inWorkshop(m, s.Workshop) &&
					(m.FlowMeter == nil || m.FlowMeter.Quantity.Name != "raw_wastewater") {
					t := gauge(m)
					l.judged[t] = true
					b.gauges = append(b.gauges, t)
				}
			}
			b.present = len(b.gauges) > 0
		case SeriesLoad:
			for _, m := range e.Meters {
				if loadPair(m, s) {
					b.pairs = append(b.pairs, [2]int{gauge(m), -1})
				}
			}
			b.present = len(b.pairs) > 0
			b.toKg = 1e-3 // mg/L x m3 = g
			if q, ok := registry.LookupQuantity(s.Quantity); ok && q.Medium == registry.Gas {
				b.toKg = 1e-6 // mg/m3 x m3 = mg
			}
		}
	}
	l.gauges = l.tracks
	for i, s := range std.Series {
		b := &l.series[i]
		switch s.Kind {
		case SeriesSum:
			var feeders []*registry.Meter
			for _, m := range e.Meters {
				if m.Quantity.Name == s.Quantity && m.Kind != registry.Gauge && s.Workshop != "" && m.Workshop == s.Workshop {
					feeders = append(feeders, m)
				}
			}
			if s.Workshop == "" {
				var site, all []*registry.Meter
				for _, m := range e.Meters {
					if m.Quantity.Name == s.Quantity && m.Kind != registry.Gauge {
						all = append(all, m)
						if m.Workshop == "" {
							site = append(site, m)
						}
					}
				}
				feeders = site
				if len(site) == 0 {
					feeders = all
				}
			}
			if len(feeders) > 0 {
				b.present = true
				b.track = newTrack(s.String(), "")
				for _, m := range feeders {
					feed(m, b.track)
					row := -1
					if len(feeders) > 1 {
						row = rowOf(m)
					}
					b.meters = append(b.meters, meterRow{id: m.ID, row: row})
				}
			}
		case SeriesLoad:
			n := 0
			for _, m := range e.Meters {
				if loadPair(m, s) {
					f := m.FlowMeter
					t, ok := flowTrack[f.ID]
					if !ok {
						t = newTrack(f.ID+" (flow)", f.ID)
						flowTrack[f.ID] = t
						feed(f, t)
					}
					b.pairs[n][1] = t
					n++
				}
			}
		}
	}
	return l
}
