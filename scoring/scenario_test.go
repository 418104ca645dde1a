package scoring

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

// Scenario files (testdata/scenarios/*.txt) drive the engine through
// simulated time, like prometheus promqltest. One command per line; "#"
// starts a comment. Paths are relative to the scenario's folder.
//
//	include <file>                   run the commands of another file
//	registry <dir>                   gateway registry (default ../registry)
//	declarations <dir>               declaration files (optional)
//	declare <ent> <indicator> level=II|value=65|na [from=<date>] [to=<date>]
//	declare <ent> absent=<series> [from=<date>] [to=<date>]
//	start <RFC 3339 time>            the clock (required before run)
//	profile <name> <meter>=<v> ...   a named set of rates
//	rates <ent> profile=<name> | <meter>=<v>|off ... | off
//	                                 per-hour amounts of counters and delta
//	                                 meters, values of gauges; off silences
//	run <duration> [every <step>]    feed the rates every step (default 1h),
//	                                 evaluating after each step
//	restart                          a new engine rebuilt from the readings
//	                                 stored so far and restored from the
//	                                 events announced so far
//	expect level <ent> <window> <I|II|III|below_III|none>
//	expect code <ent> <code>|none [pending=<code>|none]
//	expect indicator <ent> <window> <id> [value=<x>[±<tol>]] [level=<l>] [status=<s>]
//	                 [coverage=<x>[±<tol>]] [short=<meter>,...|short=none]
//	expect event <kind> <ent> [indicator=<id>] [meter=<id>] [old=<x>] [new=<x>] [resolved]
//	                                 the next unconsumed event must match
//	expect no events                 every event has been consumed
//	clear events
//	expect rank <window> <ent> <rank>            (0: unranked)
//	expect lagging <ent> <indicator> [first] [solution=<id>]
//	expect total <ent> <window> <id> <value>[±<tol>] [coverage=<x>[±<tol>]]
//	expect no total <ent> <window> <id>
//	expect due <ent> <date>

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			t.Parallel()
			runScenario(t, f)
		})
	}
}

type scenario struct {
	t        *testing.T
	file     string
	line     int
	dir      string
	std      *Standard
	pol      *Policy
	lib      *Library
	reg      *registry.Registry
	regDir   string
	declDir  string
	inline   []Declaration
	now      time.Time
	eng      *Engine
	hist     *memHistory
	pending  []Event // not yet consumed by expect event
	all      []Event // every event, for restart
	profiles map[string]map[string]float64
	rates    map[string]map[string]float64 // enterprise -> meter -> rate
}

func runScenario(t *testing.T, path string) {
	s := &scenario{
		t: t, file: filepath.Base(path), dir: filepath.Dir(path),
		std:      mustStandard(t, "standards/auto-manufacturing.yaml"),
		hist:     &memHistory{},
		profiles: map[string]map[string]float64{}, rates: map[string]map[string]float64{},
		regDir: filepath.Join(filepath.Dir(path), "../registry"),
	}
	pol, err := LoadPolicy("policy/default.yaml", s.std)
	if err != nil {
		t.Fatal(err)
	}
	s.pol = pol
	if s.lib, err = LoadLibrary("solutions", s.std); err != nil {
		t.Fatal(err)
	}
	s.execFile(path)
}

// execFile runs the commands of a scenario file (or an included one).
func (s *scenario) execFile(path string) {
	s.t.Helper()
	f, err := os.Open(path)
	if err != nil {
		s.fatalf("%v", err)
	}
	defer f.Close()
	file, line := s.file, s.line
	s.file, s.line = filepath.Base(path), 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		s.line++
		text := strings.TrimSpace(sc.Text())
		if i := strings.Index(text, "#"); i >= 0 {
			text = strings.TrimSpace(text[:i])
		}
		if text == "" {
			continue
		}
		s.exec(strings.Fields(text))
	}
	s.file, s.line = file, line
}

func (s *scenario) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("%s:%d: %s", s.file, s.line, fmt.Sprintf(format, args...))
}

func (s *scenario) errorf(format string, args ...any) {
	s.t.Helper()
	s.t.Errorf("%s:%d: %s", s.file, s.line, fmt.Sprintf(format, args...))
}

func kv(args []string) map[string]string {
	out := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			v = "true"
		}
		out[k] = v
	}
	return out
}

func (s *scenario) exec(f []string) {
	s.t.Helper()
	switch f[0] {
	case "include":
		s.execFile(filepath.Join(s.dir, f[1]))
	case "registry":
		s.regDir = filepath.Join(s.dir, f[1])
	case "declarations":
		s.declDir = filepath.Join(s.dir, f[1])
	case "declare":
		s.declare(f[1:])
	case "start":
		t, err := time.Parse(time.RFC3339, f[1])
		if err != nil {
			s.fatalf("start: %v", err)
		}
		s.now = t
	case "profile":
		p := map[string]float64{}
		for k, v := range kv(f[2:]) {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				s.fatalf("profile %s: %s=%s: %v", f[1], k, v, err)
			}
			p[k] = x
		}
		s.profiles[f[1]] = p
	case "rates":
		s.setRates(f[1], f[2:])
	case "run":
		s.run(f[1:])
	case "restart":
		s.restart()
	case "clear":
		s.pending = nil
	case "expect":
		s.expect(f[1:])
	default:
		s.fatalf("unknown command %q", f[0])
	}
}

func (s *scenario) declare(args []string) {
	if len(args) < 2 || (len(args) < 3 && !strings.HasPrefix(args[1], "absent=")) {
		s.fatalf("declare <ent> <indicator> level=|value=|na ... or declare <ent> absent=<series> ...")
	}
	d := Declaration{Enterprise: args[0], Evidence: "scenario " + s.file, ValidFrom: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}
	opts := args[1:]
	if !strings.HasPrefix(args[1], "absent=") {
		d.Indicator, opts = args[1], args[2:]
	}
	for k, v := range kv(opts) {
		switch k {
		case "absent":
			d.Absent = v
		case "level":
			l, err := ParseLevel(v)
			if err != nil {
				s.fatalf("%v", err)
			}
			d.Level = l
		case "value":
			x, _ := strconv.ParseFloat(v, 64)
			d.Value = &x
		case "na":
			d.NotApplicable = true
		case "auditor":
			d.Auditor = v
		case "report":
			d.ReportRef = v
		case "from", "to":
			tm, err := parseDate(v, time.FixedZone("local", 8*3600))
			if err != nil {
				s.fatalf("%s: %v", k, err)
			}
			if k == "from" {
				d.ValidFrom = tm
			} else {
				d.ValidTo = tm
			}
		default:
			s.fatalf("declare: unknown %q", k)
		}
	}
	if err := d.Check(s.std); err != nil {
		s.fatalf("%v", err)
	}
	s.inline = append(s.inline, d)
	if s.eng != nil {
		s.eng.ReloadDeclarations()
	}
}

// Declarations implements Declarations: the files, then the inline ones.
func (s *scenario) Declarations(ctx context.Context) ([]Declaration, error) {
	var ds []Declaration
	if s.declDir != "" {
		var err error
		if ds, err = LoadDeclarations(s.declDir, s.std); err != nil {
			return nil, err
		}
	}
	return append(ds, s.inline...), nil
}

func (s *scenario) setRates(ent string, args []string) {
	if len(args) == 1 && args[0] == "off" {
		delete(s.rates, ent)
		return
	}
	r := s.rates[ent]
	if r == nil {
		r = map[string]float64{}
		s.rates[ent] = r
	}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		switch {
		case k == "profile":
			p, ok := s.profiles[v]
			if !ok {
				s.fatalf("unknown profile %q", v)
			}
			maps.Copy(r, p)
		case v == "off":
			delete(r, k)
		default:
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				s.fatalf("rates %s: %v", a, err)
			}
			r[k] = x
		}
	}
}

func (s *scenario) engine() *Engine {
	if s.eng != nil {
		return s.eng
	}
	if s.now.IsZero() {
		s.fatalf("no start time")
	}
	if s.reg == nil {
		reg, err := registry.Load(s.regDir)
		if err != nil {
			s.fatalf("registry: %v", err)
		}
		s.reg = reg
	}
	eng, err := NewEngine(Config{
		Standard: s.std, Policy: s.pol, Registry: s.reg, Solutions: s.lib,
		History: s.hist, Declarations: s, Now: func() time.Time { return s.now },
		OnEvent: func(ev Event) {
			s.pending = append(s.pending, ev)
			// Restart restores from events as the store holds them.
			back, ok := EventFromPoint(EventPoint(ev))
			if !ok {
				s.t.Errorf("event %v does not survive the round trip through a point", ev)
			}
			s.all = append(s.all, back)
		},
	})
	if err != nil {
		s.fatalf("new engine: %v", err)
	}
	if err := eng.Rebuild(context.Background()); err != nil {
		s.fatalf("rebuild: %v", err)
	}
	eng.Restore(s.all)
	eng.loadDeclarations(context.Background())
	s.eng = eng
	return eng
}

func (s *scenario) restart() {
	if s.eng == nil {
		s.fatalf("restart before the engine ran")
	}
	s.eng = nil
	s.engine()
}

func (s *scenario) run(args []string) {
	d, err := ParseDuration(args[0])
	if err != nil {
		s.fatalf("run: %v", err)
	}
	step := time.Hour
	if len(args) == 3 && args[1] == "every" {
		if step, err = ParseDuration(args[2]); err != nil {
			s.fatalf("run: %v", err)
		}
	}
	eng := s.engine()
	ctx := context.Background()
	for end := s.now.Add(d); s.now.Before(end); {
		var batch []store.Reading
		for _, ent := range slices.Sorted(maps.Keys(s.rates)) {
			e, ok := s.reg.Enterprise(ent)
			if !ok {
				s.fatalf("rates for unknown enterprise %q", ent)
			}
			for _, m := range e.Meters {
				rate, ok := s.rates[ent][m.ID]
				if !ok {
					continue
				}
				r := store.Reading{Enterprise: ent, Gateway: m.Gateway.ID, Meter: m.ID, Quantity: m.Quantity.Name,
					Workshop: m.Workshop, Kind: string(m.Kind), Time: s.now}
				if m.Kind == registry.Gauge {
					r.Value = rate
				} else {
					r.Delta = rate * step.Hours()
					r.Value = r.Delta
				}
				batch = append(batch, r)
			}
		}
		for ent := range s.rates {
			if _, ok := s.reg.Enterprise(ent); !ok {
				s.fatalf("rates for unknown enterprise %q", ent)
			}
		}
		s.hist.add(batch)
		eng.Observe(batch)
		s.now = s.now.Add(step)
		eng.step(ctx, s.now)
	}
}

func (s *scenario) result(ent string) *Result {
	r, ok := s.engine().Snapshot().Result(ent)
	if !ok {
		s.fatalf("no result for %q", ent)
	}
	return r
}

func (s *scenario) assessment(ent, window string) *Assessment {
	a, ok := s.result(ent).Assessment(window)
	if !ok {
		s.fatalf("no window %q", window)
	}
	return a
}

// noneArg maps "none" (no code) to "".
func noneArg(v string) string {
	if v == "none" {
		return ""
	}
	return v
}

func levelArg(v string) string {
	if v == "none" {
		return ""
	}
	return strings.ReplaceAll(strings.ReplaceAll(v, "below_III", "below III"), "below_iii", "below III")
}

func (s *scenario) expect(f []string) {
	s.t.Helper()
	switch f[0] {
	case "level":
		a := s.assessment(f[1], f[2])
		if got, want := a.Level.String(), levelArg(f[3]); got != want {
			s.errorf("level of %s (%s): got %q, want %q (Y=%v, capped %q)", f[1], f[2], got, want, a.Y, a.Capped)
		}
	case "code":
		r := s.result(f[1])
		if string(r.Code) != noneArg(f[2]) {
			s.errorf("code of %s: got %q, want %s (reasons %v)", f[1], r.Code, f[2], r.CodeReasons)
		}
		if p, ok := kv(f[3:])["pending"]; ok && string(r.PendingCode) != noneArg(p) {
			s.errorf("pending code of %s: got %q, want %s", f[1], r.PendingCode, p)
		}
	case "indicator":
		a := s.assessment(f[1], f[2])
		ir, ok := a.Indicator(s.std, f[3])
		if !ok {
			s.fatalf("unknown indicator %q", f[3])
		}
		for k, v := range kv(f[4:]) {
			switch k {
			case "value":
				want, tol := v, "1e-9"
				if i := strings.Index(v, "±"); i >= 0 {
					want, tol = v[:i], v[i+len("±"):]
				}
				w, _ := strconv.ParseFloat(want, 64)
				tl, _ := strconv.ParseFloat(tol, 64)
				if !ir.HasValue() || math.Abs(ir.Value-w) > tl {
					s.errorf("%s of %s (%s): got value %v (has value %v, %s), want %v±%v", f[3], f[1], f[2], ir.Value, ir.HasValue(), ir.Reason, w, tl)
				}
			case "level":
				if got := ir.Level.String(); got != levelArg(v) {
					s.errorf("%s of %s (%s): got level %q, want %q (value %v, %s %s)", f[3], f[1], f[2], got, levelArg(v), ir.Value, ir.Status, ir.Reason)
				}
			case "status":
				if string(ir.Status) != v {
					s.errorf("%s of %s (%s): got status %s (%s), want %s", f[3], f[1], f[2], ir.Status, ir.Reason, v)
				}
			case "coverage":
				want, tol := v, "1e-9"
				if i := strings.Index(v, "±"); i >= 0 {
					want, tol = v[:i], v[i+len("±"):]
				}
				w, _ := strconv.ParseFloat(want, 64)
				tl, _ := strconv.ParseFloat(tol, 64)
				if math.Abs(ir.Coverage-w) > tl {
					s.errorf("%s of %s (%s): got coverage %v, want %v±%v", f[3], f[1], f[2], ir.Coverage, w, tl)
				}
			case "short":
				want := strings.Split(v, ",")
				if v == "none" {
					want = nil
				}
				if !slices.Equal(ir.Short, want) {
					s.errorf("%s of %s (%s): got short meters %q (%s), want %q", f[3], f[1], f[2], ir.Short, ir.Reason, want)
				}
			default:
				s.fatalf("expect indicator: unknown %q", k)
			}
		}
	case "event":
		s.expectEvent(f[1:])
	case "exceedances":
		s.expectExceedances(f[1:])
	case "no":
		if len(f) == 5 && f[1] == "total" {
			a := s.assessment(f[2], f[3])
			if slices.ContainsFunc(a.Totals, func(t Total) bool { return t.ID == f[4] }) {
				s.errorf("total %s of %s (%s): got %v, want none", f[4], f[2], f[3], a.Totals)
			}
			return
		}
		if len(s.pending) > 0 {
			var b strings.Builder
			for _, ev := range s.pending {
				b.WriteString("\n\t" + ev.String())
			}
			s.errorf("got %d unexpected events:%s\nwant none", len(s.pending), b.String())
			s.pending = nil
		}
	case "rank":
		rk := s.engine().Snapshot().Ranking(f[1])
		want, _ := strconv.Atoi(f[3])
		got := 0
		for _, e := range rk.Entries {
			if e.Enterprise == f[2] {
				got = e.Rank
			}
		}
		if got != want {
			s.errorf("rank of %s (%s): got %d, want %d (%+v)", f[2], f[1], got, want, rk)
		}
	case "lagging":
		r := s.result(f[1])
		opts := kv(f[3:])
		i := slices.IndexFunc(r.Lagging, func(l Lagging) bool { return l.Indicator == f[2] })
		var got []string
		for _, l := range r.Lagging {
			got = append(got, l.Indicator)
		}
		switch {
		case i < 0:
			s.errorf("lagging of %s: got %v, want it to include %s", f[1], got, f[2])
			return
		case opts["first"] == "true" && i != 0:
			s.errorf("lagging of %s: got %v, want %s first", f[1], got, f[2])
		}
		if want, ok := opts["solution"]; ok {
			l := r.Lagging[i]
			if len(l.Solutions) == 0 || l.Solutions[0].Solution.ID != want {
				var ids []string
				for _, m := range l.Solutions {
					ids = append(ids, fmt.Sprintf("%s(%.3f)", m.Solution.ID, m.Benefit))
				}
				s.errorf("best solution for %s of %s: got %v, want %s first", f[2], f[1], ids, want)
			}
		}
	case "total":
		a := s.assessment(f[1], f[2])
		i := slices.IndexFunc(a.Totals, func(t Total) bool { return t.ID == f[3] })
		if i < 0 {
			s.errorf("total %s of %s (%s): missing (got %v)", f[3], f[1], f[2], a.Totals)
			return
		}
		got := a.Totals[i]
		if w, tl := valueTol(f[4]); math.Abs(got.Value-w) > tl {
			s.errorf("total %s of %s (%s): got %v %s, want %v±%v", f[3], f[1], f[2], got.Value, got.Unit, w, tl)
		}
		if c, ok := kv(f[5:])["coverage"]; ok {
			if w, tl := valueTol(c); math.Abs(got.Coverage-w) > tl {
				s.errorf("total %s of %s (%s): got coverage %v, want %v±%v", f[3], f[1], f[2], got.Coverage, w, tl)
			}
		}
	case "due":
		want, err := parseDate(f[2], time.FixedZone("local", 8*3600))
		if err != nil {
			s.fatalf("due: %v", err)
		}
		if got := s.result(f[1]).NextAuditDue; !got.Equal(want) {
			s.errorf("next audit due of %s: got %v, want %v", f[1], got, want)
		}
	default:
		s.fatalf("unknown expectation %q", f[0])
	}
}

func (s *scenario) expectEvent(f []string) {
	s.t.Helper()
	if len(s.pending) == 0 {
		s.errorf("got no event, want %s", strings.Join(f, " "))
		return
	}
	ev := s.pending[0]
	s.pending = s.pending[1:]
	var bad []string
	if string(ev.Kind) != f[0] || ev.Enterprise != f[1] {
		bad = append(bad, "kind/enterprise")
	}
	for k, v := range kv(f[2:]) {
		switch k {
		case "indicator":
			if ev.Indicator != v {
				bad = append(bad, k)
			}
		case "meter":
			if ev.Meter != v {
				bad = append(bad, k)
			}
		case "resolved":
			if !ev.Resolved {
				bad = append(bad, k)
			}
		case "old", "new":
			code, level := ev.OldCode, ev.OldLevel
			if k == "new" {
				code, level = ev.NewCode, ev.NewLevel
			}
			got := string(code)
			if ev.Kind == EventLevelDrop {
				got = level.String()
			}
			if got != levelArg(v) && !(v == "none" && got == "") {
				bad = append(bad, k)
			}
		default:
			s.fatalf("expect event: unknown %q", k)
		}
	}
	if !strings.Contains(strings.Join(f[2:], " "), "resolved") && ev.Resolved {
		bad = append(bad, "resolved")
	}
	if len(bad) > 0 {
		s.errorf("got event %s, want %s (mismatch: %v)", ev, strings.Join(f, " "), bad)
	}
}

// expectExceedances takes the pending exceedance events of an enterprise's
// meter, wherever they are among the others, and checks their number and,
// when given, the mean and limit of each: exceedances ENT meter=M count=N
// [value=V] [limit=L].
func (s *scenario) expectExceedances(f []string) {
	s.t.Helper()
	args := kv(f[1:])
	var got []Event
	s.pending = slices.DeleteFunc(s.pending, func(ev Event) bool {
		if ev.Kind == EventExceedance && ev.Enterprise == f[0] && ev.Meter == args["meter"] {
			got = append(got, ev)
			return true
		}
		return false
	})
	if n, _ := strconv.Atoi(args["count"]); len(got) != n {
		s.errorf("exceedances of %s %s: got %d, want %s: %v", f[0], args["meter"], len(got), args["count"], got)
	}
	for i, ev := range got {
		if i > 0 && !ev.Time.Equal(got[i-1].Time.Add(time.Hour)) {
			s.errorf("exceedance at %v after one at %v: want one per hour, each once", ev.Time, got[i-1].Time)
		}
		if v, ok := args["value"]; ok && strconv.FormatFloat(ev.NewValue, 'g', -1, 64) != v {
			s.errorf("exceedance at %v: mean %g, want %s", ev.Time, ev.NewValue, v)
		}
		if l, ok := args["limit"]; ok && strconv.FormatFloat(ev.OldValue, 'g', -1, 64) != l {
			s.errorf("exceedance at %v: limit %g, want %s", ev.Time, ev.OldValue, l)
		}
	}
}

// memHistory is an in-memory History over every reading a scenario fed.
type memHistory struct {
	mu       sync.Mutex
	readings []store.Reading
	queries  atomic.Int64
	// fail, when set, is asked before each row of an answer: an error
	// breaks the answer off there (a store timing out mid-stream).
	fail func(row int) error
}

func (h *memHistory) add(rs []store.Reading) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range rs {
		// Kept in time order; late readings go where they belong.
		i := len(h.readings)
		for i > 0 && h.readings[i-1].Time.After(r.Time) {
			i--
		}
		h.readings = slices.Insert(h.readings, i, r)
	}
}

func (h *memHistory) EachAggregate(ctx context.Context, q store.AggregateQuery, fn func(*store.Aggregate) error) error {
	h.mu.Lock()
	type key struct {
		ent, meter string
		start      int64
	}
	aggs := map[key]*store.Aggregate{}
	lo := sort.Search(len(h.readings), func(i int) bool { return !h.readings[i].Time.Before(q.From) })
	hi := sort.Search(len(h.readings), func(i int) bool { return !h.readings[i].Time.Before(q.To) })
	for _, r := range h.readings[lo:hi] {
		if len(q.Enterprises) > 0 && !slices.Contains(q.Enterprises, r.Enterprise) {
			continue
		}
		start := floorDiv(r.Time.UnixNano()-int64(q.Offset), int64(q.Every))*int64(q.Every) + int64(q.Offset)
		k := key{r.Enterprise, r.Meter, start}
		a := aggs[k]
		if a == nil {
			a = &store.Aggregate{Enterprise: r.Enterprise, Meter: r.Meter, Start: time.Unix(0, start).UTC(), Max: math.Inf(-1)}
			aggs[k] = a
		}
		a.Sum += r.Delta
		a.Count++
		a.ValueSum += r.Value
		a.Max = math.Max(a.Max, r.Value)
	}
	fail := h.fail
	h.mu.Unlock()
	h.queries.Add(1)
	out := make([]store.Aggregate, 0, len(aggs))
	for _, a := range aggs {
		out = append(out, *a)
	}
	slices.SortFunc(out, func(a, b store.Aggregate) int {
		return cmp.Or(strings.Compare(a.Enterprise, b.Enterprise), strings.Compare(a.Meter, b.Meter), a.Start.Compare(b.Start))
	})
	for i := range out {
		if fail != nil {
			if err := fail(i); err != nil {
				return err
			}
		}
		if err := fn(&out[i]); err != nil {
			return err
		}
	}
	return nil
}

// valueTol parses "<x>" or "<x>±<tol>" (default tolerance 1e-9).
func valueTol(v string) (float64, float64) {
	want, tol := v, "1e-9"
	if i := strings.Index(v, "±"); i >= 0 {
		want, tol = v[:i], v[i+len("±"):]
	}
	w, _ := strconv.ParseFloat(want, 64)
	tl, _ := strconv.ParseFloat(tol, 64)
	return w, tl
}
