package scoring

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// IndicatorResult is one indicator of one enterprise over one window.
type IndicatorResult struct {
	ID     string
	Unit   string
	Status Status
	// Value is the indicator's value (quantitative, Graded only).
	Value float64
	Level Level   // Graded only
	Score float64 // continuous 0-100, Graded only
	// Weight is the indicator's effective share of the index after
	// renormalisation (0 when it is left out).
	Weight float64
	// Coverage is the share of window buckets (days, for analysers) with
	// data of the worst meter feeding the formula's inputs, 0-1; metered
	// indicators only. A sub-meter that fell silent lowers it even when
	// the other meters of its quantity report.
	Coverage float64
	// Short names the meters that keep the indicator from being graded:
	// those with data in less of the window than its min_coverage, or
	// with none, worst first (metered indicators only).
	Short  []string
	Source string // "metered" or "declared"
	// Reason says why an indicator is not graded, e.g. "no meter for
	// vehicles" or "declaration expired".
	Reason string
	// Evidence is the declaration's evidence (declared indicators).
	Evidence string
	// Notes flag how the value was obtained, e.g. a grid factor fallback.
	Notes []string

	valued bool
}

// HasValue reports whether Value holds a computed or declared value. A
// metered indicator with too little data still has a provisional value
// when its formula could be computed; Status says whether it is graded.
func (r *IndicatorResult) HasValue() bool { return r.valued }

// Assessment grades one enterprise over one window.
type Assessment struct {
	Window     string
	From, To   time.Time // the window's first bucket start and the evaluation time
	Indicators []IndicatorResult
	Y          [3]float64 // Y_I, Y_II, Y_III
	Level      Level
	Score      float64
	Capped     string // why the level is below what Y alone gives
	// Completeness is the share of applicable metered indicators with
	// enough data, 0-1 (1 when none is metered).
	Completeness float64
	// Restrictive is the worst level of the applicable restrictive
	// indicators (NoLevel when one lacks data or there is none).
	Restrictive        Level
	RestrictiveMissing bool
	// Exceedance lists the compliance indicators below 100 %.
	Exceedance []string
	// Totals are the window totals of the quantities the enterprise
	// meters (totals.go).
	Totals []Total
}

// Indicator returns the result of the indicator with the given id.
func (a *Assessment) Indicator(std *Standard, id string) (*IndicatorResult, bool) {
	ind, ok := std.Indicator(id)
	if !ok || ind.Index >= len(a.Indicators) {
		return nil, false
	}
	return &a.Indicators[ind.Index], true
}

// env evaluates formulas over one enterprise's window. It caches the
// coverage of each series for the evaluation; reset it with reset.
type env struct {
	lay    *layout
	win    *window
	consts []float64

	cov     []coverage // per series, valid where done
	done    []bool
	days    []dayMeans // per gauge track, valid where dayDone
	dayDone []bool
	absent  []*Declaration // per series: the Absent declaration that holds (nil: none)

	// Scratch of assessMetered: the meters short of data and their
	// coverage, worst first.
	shortIDs []string
	shortCov []float64
	// shortOut backs IndicatorResult.Short of one assessment, so that its
	// indicators share one allocation; reset with reset.
	shortOut []string
}

// dayMeans are a gauge track's daily means over the window.
type dayMeans struct {
	means   []float64 // days with readings, oldest first
	spanned int       // local days the window spans
}

type coverage struct {
	cov           float64
	data, present bool
}

func (v *env) reset(lay *layout, win *window, consts []float64, series int) {
	v.lay, v.win, v.consts = lay, win, consts
	v.cov = grow(v.cov, series)
	v.done = grow(v.done, series)
	clear(v.done)
	v.days = grow(v.days, lay.gauges)
	v.dayDone = grow(v.dayDone, lay.gauges)
	clear(v.dayDone)
	v.absent = grow(v.absent, series)
	clear(v.absent)
	v.shortOut = nil // the previous assessment's results keep theirs
}

// declareAbsent applies the Absent declarations of decls that hold at now
// to the series they cover. A series the enterprise meters keeps its
// meters; a declaration of q@w wins over one of q.
func (v *env) declareAbsent(std *Standard, decls declarationIndex, now time.Time) {
	for k := range decls {
		name, ok := strings.CutPrefix(k, absentKey)
		if !ok {
			continue
		}
		d, _ := decls.at(k, now)
		if d == nil {
			continue
		}
		for _, i := range std.absentSeries[name] {
			if cur := v.absent[i]; cur == nil || name == v.lay.seriesNames[i] {
				v.absent[i] = d
			}
		}
	}
}

// isAbsent reports whether series i is declared absent and not metered:
// it then counts as 0 with full coverage.
func (v *env) isAbsent(i int) bool { return v.absent[i] != nil && !v.lay.series[i].present }

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// dailyMeans returns the daily means of gauge track g, computed once per
// evaluation.
func (v *env) dailyMeans(g int) *dayMeans {
	d := &v.days[g]
	if !v.dayDone[g] {
		d.means = d.means[:0]
		d.spanned = v.win.days(g, func(sum float64, n uint32) { d.means = append(d.means, sum/float64(n)) })
		v.dayDone[g] = true
	}
	return d
}

// gaugeCoverage returns the coverage of gauge track g: for an analyser
// fed by an HJ 212 station's real-time, minute or hourly data, the share
// of the window's buckets (hours, in an hourly window) with a valid value
// (the effective data rate: a value flagged invalid, M, C, D and the like,
// never reaches the window, so flagging an hour away costs its coverage);
// for any other analyser its day coverage.
func (v *env) gaugeCoverage(g int) float64 {
	if v.lay.hourly[g] {
		return v.win.coverage(g)
	}
	return v.dayCoverage(g)
}

// dayCoverage returns the share of local days in the window on which gauge
// track g has at least one reading (analysers report every hour or two,
// and limits are judged on daily means).
func (v *env) dayCoverage(g int) float64 {
	d := v.dailyMeans(g)
	if d.spanned == 0 {
		return 0
	}
	return float64(len(d.means)) / float64(d.spanned)
}

func (v *env) sum(i int) (float64, bool) {
	b := &v.lay.series[i]
	if !b.present {
		return 0, v.isAbsent(i)
	}
	return v.win.sum(b.track), true
}

func (v *env) load(i int) (float64, bool) {
	b := &v.lay.series[i]
	if !b.present {
		return 0, false
	}
	var kg float64
	for _, p := range b.pairs {
		kg += v.win.load(p[0], p[1]) * b.toKg
	}
	return kg, true
}

func (v *env) mean(i int) (float64, bool) {
	b := &v.lay.series[i]
	if !b.present {
		return 0, false
	}
	var s float64
	var n uint64
	for _, g := range b.gauges {
		gs, gn := v.win.gaugeSums(g)
		s += gs
		n += gn
	}
	if n == 0 {
		return math.NaN(), true
	}
	return s / float64(n), true
}

// compliance returns the share of meter-days whose daily mean lies within
// [lo, hi], in percent. With permit, a meter's own permit limit replaces
// hi, the standard's default limit.
func (v *env) compliance(i int, lo, hi float64, permit bool) (float64, bool) {
	b := &v.lay.series[i]
	if !b.present {
		return 0, false
	}
	ok, all := 0, 0
	for _, g := range b.gauges {
		hi := hi
		if permit && v.lay.permit[g] > 0 {
			hi = v.lay.permit[g]
		}
		tol := 1e-9 * math.Max(1, math.Abs(hi))
		for _, m := range v.dailyMeans(g).means {
			all++
			if m >= lo-tol && m <= hi+tol {
				ok++
			}
		}
	}
	if all == 0 {
		return math.NaN(), true
	}
	return 100 * float64(ok) / float64(all), true
}

func (v *env) coverage(i int) (float64, bool) {
	c, _, present := v.inputCoverage(i)
	return 100 * c, present
}

func (v *env) constant(i int) float64 { return v.consts[i] }

// inputCoverage returns the coverage of series i (the worst of its meters:
// bucket coverage for amounts and flows, day coverage for analysers),
// whether every meter feeding it has data in the window, and whether the
// enterprise meters it at all.
func (v *env) inputCoverage(i int) (cov float64, data, present bool) {
	if v.done[i] {
		c := v.cov[i]
		return c.cov, c.data, c.present
	}
	cov, data, present = v.computeCoverage(i)
	v.cov[i], v.done[i] = coverage{cov, data, present}, true
	return cov, data, present
}

func (v *env) computeCoverage(i int) (cov float64, data, present bool) {
	if !v.lay.series[i].present {
		if v.isAbsent(i) {
			return 1, true, true
		}
		return 0, false, false
	}
	cov, data = 1, true
	v.eachMeter(i, func(_ string, c float64, d bool) {
		cov = math.Min(cov, c)
		data = data && d
	})
	return cov, data, true
}

// eachMeter calls f for every meter feeding series i with its coverage
// (bucket coverage for amounts, flows and HJ 212 analysers, day coverage
// for other analysers) and
// whether it has data in the window. The meters of an amount series are
// seen one by one (their presence rows), although their amounts share one
// track.
func (v *env) eachMeter(i int, f func(meter string, cov float64, data bool)) {
	b := &v.lay.series[i]
	switch {
	case b.pairs != nil:
		for _, p := range b.pairs {
			f(v.lay.meter[p[0]], v.gaugeCoverage(p[0]), v.win.anyData(p[0]))
			f(v.lay.meter[p[1]], v.win.coverage(p[1]), v.win.anyData(p[1]))
		}
	case b.gauges != nil:
		for _, g := range b.gauges {
			f(v.lay.meter[g], v.gaugeCoverage(g), v.win.anyData(g))
		}
	default:
		for _, m := range b.meters {
			if m.row < 0 {
				f(m.id, v.win.coverage(b.track), v.win.anyData(b.track))
				continue
			}
			c, d := v.win.rowCoverage(m.row)
			f(m.id, c, d)
		}
	}
}

// assessInput is what assess needs besides the window.
type assessInput struct {
	env    *env // scratch, reused across evaluations
	std    *Standard
	lay    *layout
	win    *window
	spec   Window
	consts []float64
	notes  []string // constant fallbacks of this enterprise
	decls  declarationIndex
	policy DataPolicy
	now    time.Time
}

// assess computes every indicator of one enterprise over one window and
// grades the result.
func assess(in assessInput) Assessment {
	std := in.std
	a := Assessment{
		Window:     in.spec.Name,
		To:         in.now,
		Indicators: make([]IndicatorResult, len(std.Indicators)),
	}
	if in.win.init {
		a.From = in.win.bucketStart(in.win.first())
	} else {
		a.From = in.now.Add(-in.spec.Length)
	}
	marks := make([]Mark, len(std.Indicators))
	ev := in.env
	if ev == nil {
		ev = &env{}
	}
	ev.reset(in.lay, in.win, in.consts, len(std.Series))
	ev.declareAbsent(std, in.decls, in.now)
	metered, sufficient := 0, 0
	for _, ind := range std.Indicators {
		r := &a.Indicators[ind.Index]
		r.ID, r.Unit = ind.ID, ind.Unit
		m := &marks[ind.Index]
		d, expired := in.decls.at(ind.ID, in.now)
		switch {
		case d != nil && d.NotApplicable:
			r.Status, r.Source, r.Evidence, r.Reason = NotApplicable, "declared", d.Evidence, "declared not applicable"
		case ind.Metered():
			r.Source = "metered"
			assessMetered(ev, ind, r, in.notes)
			if r.Status != NotApplicable {
				metered++
			}
			if r.Status == Graded {
				sufficient++
			}
		case d != nil && ind.Kind == Quantitative && d.Value != nil:
			r.Status, r.Source, r.Evidence = Graded, "declared", d.Evidence
			r.Value, r.valued = *d.Value, true
			r.Level = ind.LevelOf(r.Value)
			r.Score = ind.IndicatorScore(r.Value)
		case d != nil && ind.Kind == Qualitative && d.Level != NoLevel:
			r.Status, r.Source, r.Evidence = Graded, "declared", d.Evidence
			r.Level = d.Level
			r.Score = LevelScore(d.Level)
		default:
			r.Status, r.Source = Insufficient, "declared"
			r.Reason = "no declaration"
			if expired {
				r.Reason = "declaration expired or not yet valid"
			}
		}
		*m = Mark{Status: r.Status, Level: r.Level, Score: r.Score}
		if r.Status == Graded && ind.Compliance() && r.Value < 100 {
			a.Exceedance = append(a.Exceedance, ind.ID)
		}
	}
	a.Totals = windowTotals(ev, std)
	g := std.Grade(marks, in.policy)
	for i := range a.Indicators {
		a.Indicators[i].Weight = g.Weights[i]
	}
	a.Y, a.Level, a.Score, a.Capped = g.Y, g.Level, g.Score, g.Capped
	a.Restrictive, a.RestrictiveMissing = g.Restrictive, g.RestrictiveMissing
	a.Completeness = 1
	if metered > 0 {
		a.Completeness = float64(sufficient) / float64(metered)
	}
	return a
}

// assessMetered evaluates a metered indicator's formula and grades it if
// every input has enough data in the window. An input without a meter
// leaves it insufficient, unless the input is optional or declared absent
// (it then counts as 0); an applies_if_metered amount declared absent makes
// it not applicable.
func assessMetered(ev *env, ind *Indicator, r *IndicatorResult, notes []string) {
	for _, s := range ind.appliesIf {
		switch {
		case ev.isAbsent(s):
			d := ev.absent[s]
			r.Status, r.Source, r.Evidence = NotApplicable, "declared", d.Evidence
			r.Reason = "not applicable: " + d.Absent + " declared absent"
			return
		case !ev.lay.series[s].present:
			r.Status, r.Reason = Insufficient, "no meter for "+ev.lay.seriesNames[s]
			return
		}
	}
	for _, in := range ind.inputs {
		if d := ev.absent[in.series]; d != nil {
			name := ev.lay.seriesNames[in.series]
			if ev.lay.series[in.series].present {
				r.Notes = append(r.Notes, name+" is declared absent but metered: its meters count")
			} else {
				r.Notes = append(r.Notes, name+" counts as 0: declared absent ("+d.Evidence+")")
			}
		}
	}
	r.Coverage = 1
	// The meters short of data, worst first, and the worst of them: its
	// series and coverage (-1: no data), and the meter unless every meter
	// of the series is alike.
	ev.shortIDs, ev.shortCov = ev.shortIDs[:0], ev.shortCov[:0]
	worst, worstSeries, worstMeter := 2.0, "", ""
	for _, in := range ind.inputs {
		cov, data, present := ev.inputCoverage(in.series)
		switch {
		case !present && in.optional:
			continue
		case !present:
			r.Status, r.Reason, r.Coverage = Insufficient, "no meter for "+ev.lay.seriesNames[in.series], 0
			return
		}
		r.Coverage = math.Min(r.Coverage, cov)
		if data && cov >= ind.MinCoverage {
			continue
		}
		lo, hi, loID := 2.0, -2.0, ""
		ev.eachMeter(in.series, func(id string, c float64, d bool) {
			if !d {
				c = -1 // no data at all: worst
			}
			if c < lo {
				lo, loID = c, id
			}
			hi = max(hi, c)
			if c >= ind.MinCoverage || slices.Contains(ev.shortIDs, id) {
				return
			}
			k, _ := slices.BinarySearch(ev.shortCov, c)
			for k < len(ev.shortCov) && ev.shortCov[k] == c {
				k++ // ties keep the order of the formula
			}
			ev.shortIDs = slices.Insert(ev.shortIDs, k, id)
			ev.shortCov = slices.Insert(ev.shortCov, k, c)
		})
		if lo < worst {
			worst, worstSeries, worstMeter = lo, ev.lay.seriesNames[in.series], ""
			if hi > lo {
				worstMeter = loID
			}
		}
	}
	var short string // why the indicator is not graded
	if worstSeries != "" {
		if ev.shortOut == nil {
			ev.shortOut = make([]string, 0, 4*len(ind.inputs)+16)
		}
		n := len(ev.shortOut)
		ev.shortOut = append(ev.shortOut, ev.shortIDs...)
		r.Short = ev.shortOut[n:len(ev.shortOut):len(ev.shortOut)]
		who := worstSeries
		if worstMeter != "" {
			who = worstMeter + " (" + worstSeries + ")"
		}
		if worst < 0 {
			short = "no readings of " + who + " in the window"
		} else {
			short = fmt.Sprintf("%s has data in %.0f%% of the window, needs %.0f%%", who, 100*worst, 100*ind.MinCoverage)
		}
	}
	v, ok := ind.expr.eval(ev)
	switch {
	case !ok:
		r.Status, r.Reason = Insufficient, "no meter for any input"
		return
	case math.IsNaN(v) || math.IsInf(v, 0):
		r.Status, r.Reason = Insufficient, "division by zero (e.g. no output in the window)"
		if short != "" {
			r.Reason = short
		}
		return
	}
	r.Value, r.valued = v, true
	for _, c := range ind.regional {
		if notes[c] != "" {
			r.Notes = append(r.Notes, notes[c])
		}
	}
	if short != "" {
		r.Status, r.Reason = Insufficient, short
		return
	}
	r.Status = Graded
	r.Level = ind.LevelOf(v)
	r.Score = ind.IndicatorScore(v)
}
