package scoring

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

// levelIRates put lj-alpha at Level I on every metered indicator of the
// shipped standard (derived from goodRates, per hour):
//
//	energy (30000*0.1229 + 1400*1.2143)/50          = 107.7 kgce/veh  I (<=120)
//	paint energy (15000*0.1229 + 1300*1.2143)/5000  = 0.684 kgce/m2   I (<=0.7)
//	fresh water 90/50 = 1.8 m3/veh I; paint water 60000/5000 = 12 L/m2 I
//	reuse 1800/1890 = 95.2 % I; reclaimed 40/130 = 30.8 % I; solid 99 % I
//	low-VOC 370/400 = 92.5 % I; VOC 45 mg/m3 x 2e6 m3 / 5000 m2 = 18 g/m2 I
//	abatement 1 - 45/1000 = 95.5 % I; COD generated 100*450/1000/50 = 0.9 I
//	wastewater 70/50 = 1.4 I; hazardous 140/50 = 2.8 I
//	CO2 (1400*2.1622 + 14000*0.5306)/50 = 209 I; renewable 16000/30000 = 53 % I
var levelIRates = map[string]float64{
	"E-PLANT": 15000, "E-PAINT": 15000, "NG-PAINT": 1300, "NG-UTIL": 100, "FW-PLANT": 30, "FW-PAINT": 60,
	"RW": 1800, "RCW": 40, "PV": 16000, "VEH": 50, "AREA": 5000, "PAINT": 400, "PAINT-LV": 370,
	"STACK-FLOW": 2e6, "STACK-VOC": 45, "STACK-VOCIN": 1000, "WW-IN-FLOW": 100, "WW-IN-COD": 450,
	"WW-OUT-FLOW": 70, "WW-OUT-COD": 100, "WW-OUT-NH3N": 8, "HW": 140, "SW": 1000, "SWR": 990,
}

// levelIDeclarations declares every declared indicator of ent at Level I.
func levelIDeclarations(std *Standard, ent string) []Declaration {
	ds := levelIIDeclarations(std, ent, LevelI)
	for i := range ds {
		ind, _ := std.Indicator(ds[i].Indicator)
		switch {
		case ind.Kind == Qualitative:
			ds[i].Level = LevelI
		case ds[i].Value != nil:
			v := ind.Benchmark(LevelI)
			ds[i].Value = &v
		}
	}
	return ds
}

// dayZero is a local (UTC+8) midnight: hourly buckets and local days align.
var dayZero = time.Date(2026, 3, 1, 0, 0, 0, 0, time.FixedZone("CST", 8*3600))

// codeRig is an engine on a synthetic clock, stepped by hand.
type codeRig struct {
	t     *testing.T
	fx    fixture
	eng   *Engine
	ent   *registry.Enterprise
	clock time.Time
	log   eventLog
	decls *declSource
}

func newCodeRig(t *testing.T, pol *Policy) *codeRig {
	t.Helper()
	return newCodeRigOf(t, newFixture(t), pol)
}

// newCodeRigOf is newCodeRig on fixture fx.
func newCodeRigOf(t *testing.T, fx fixture, pol *Policy) *codeRig {
	t.Helper()
	if pol == nil {
		pol = fx.pol
	}
	r := &codeRig{t: t, fx: fx, decls: &declSource{}}
	r.decls.set(levelIDeclarations(fx.std, "lj-alpha"))
	r.ent, _ = fx.reg.Enterprise("lj-alpha")
	r.clock = dayZero
	eng, err := NewEngine(Config{Standard: fx.std, Policy: pol, Registry: fx.reg, Declarations: r.decls,
		OnEvent: r.log.add, Registerer: prometheus.NewRegistry(), Now: func() time.Time { return r.clock }})
	if err != nil {
		t.Fatal(err)
	}
	eng.loadDeclarations(context.Background())
	r.eng = eng
	return r
}

// feed delivers the readings of data hours [from, to) of lj-alpha (hour
// h is the reading at dayZero+h), one hour at a time, each when the clock
// reads wall(h), and steps the engine after each. rates(h) may be nil:
// nothing is delivered for that hour, the engine still steps.
func (r *codeRig) feed(from, to int, wall func(h int) time.Time, rates func(h int) map[string]float64) {
	for h := from; h < to; h++ {
		r.clock = wall(h)
		if rs := rates(h); rs != nil {
			r.eng.Observe(hourly(r.ent, dayZero.Add(time.Duration(h)*time.Hour), rs))
		}
		r.eng.step(context.Background(), r.clock)
	}
}

// live: hour h arrives when it happens.
func live(h int) time.Time { return dayZero.Add(time.Duration(h) * time.Hour) }

func constant(m map[string]float64) func(int) map[string]float64 {
	return func(int) map[string]float64 { return m }
}

func (r *codeRig) result() *Result {
	r.t.Helper()
	res, ok := r.eng.Snapshot().Result("lj-alpha")
	if !ok {
		r.t.Fatal("no result for lj-alpha")
	}
	return res
}

// changes lists lj-alpha's code changes as "old>new@hour" (hours of data
// time after dayZero).
func (r *codeRig) changes() []string {
	var out []string
	for _, ev := range r.log.of(EventCodeChange, "lj-alpha") {
		out = append(out, fmt.Sprintf("%s>%s@%g", ev.OldCode, ev.NewCode, ev.Time.Sub(dayZero).Hours()))
	}
	return out
}

func (r *codeRig) stale() []string {
	var out []string
	for _, ev := range r.log.of(EventStale, "lj-alpha") {
		s := fmt.Sprintf("%s@%g", ev.Meter, ev.Time.Sub(dayZero).Hours())
		if ev.Resolved {
			s += " resolved"
		}
		out = append(out, s)
	}
	return out
}

// TestNoCodeUntilEnoughData: an enterprise has no code (not yellow) until
// its first assessment with enough data, which sets the code at once.
//
// Fed live with a reading every hour and evaluated as each arrives, after
// hour h the window holds h+1 hourly buckets of 720 and readings on
// h/24+1 local days of the 30 (from h = 0: 24) it spans. Hourly inputs
// need 80 % (576 buckets: h >= 575); analysers 80 % of days (24 of 30:
// h >= 575); the policy 80 % of metered indicators. At h = 574 the
// hourly inputs lack data (575/720), so not one metered indicator but
// the four with min_coverage 0 is graded: no code. At h = 575 all 18
// are: Level I, green at once.
func TestNoCodeUntilEnoughData(t *testing.T) {
	r := newCodeRig(t, nil)
	r.eng.step(context.Background(), dayZero)
	res := r.result()
	if res.Code != "" || res.PendingCode != "" || !res.NextAuditDue.IsZero() || len(res.CodeReasons) != 0 {
		t.Fatalf("before any data: got code %q pending %q due %v reasons %v, want no code", res.Code, res.PendingCode, res.NextAuditDue, res.CodeReasons)
	}
	for _, c := range r.fx.pol.Codes {
		if got := testutil.ToFloat64(r.eng.m.code.WithLabelValues("lj-alpha", string(c.Code))); got != 0 {
			t.Errorf("metric code{%s} without a code: got %v, want 0", c.Code, got)
		}
	}
	if got := testutil.ToFloat64(r.eng.m.auditDue.WithLabelValues("lj-alpha")); !math.IsNaN(got) {
		t.Errorf("metric next_audit_due without a code: got %v, want NaN (no due date, no alert)", got)
	}

	r.feed(0, 575, live, constant(levelIRates))
	if res := r.result(); res.Code != "" {
		t.Fatalf("after 575 hours: got code %q (completeness %v), want none yet", res.Code, res.Assessments[r.eng.cwin].Completeness)
	}
	r.feed(575, 576, live, constant(levelIRates))
	res = r.result()
	ca := &res.Assessments[r.eng.cwin]
	if res.Code != "green" || ca.Level != LevelI || !res.CodeSince.Equal(dayZero.Add(575*time.Hour)) || res.PendingCode != "" {
		t.Fatalf("after 576 hours: got code %q (level %q) since %v pending %q, want green (Level I) since +575h, nothing pending",
			res.Code, ca.Level, res.CodeSince, res.PendingCode)
	}
	if got, want := r.changes(), []string{">green@575"}; !slices.Equal(got, want) {
		t.Errorf("code changes: got %v, want %v", got, want)
	}
	// With a code comes an audit due date (none before).
	if res.NextAuditDue.IsZero() {
		t.Errorf("next audit due: got none, want one with the code")
	}
}

// TestBackfillEqualsLive: 30 days of Level-I data delivered by a gateway
// catching up, in one day of wall-clock time (a data hour every 2
// minutes, the first 29 days after it happened, so that the backfill ends
// live), end in the same code, code start and pending state, with the
// same code changes, as the same data arriving live; and the backfill
// raises no stale events.
func TestBackfillEqualsLive(t *testing.T) {
	lv := newCodeRig(t, nil)
	lv.feed(0, 720, live, constant(levelIRates))

	bf := newCodeRig(t, nil)
	wallStart := dayZero.Add(696 * time.Hour)
	bf.feed(0, 720, func(h int) time.Time { return wallStart.Add(time.Duration(h) * 2 * time.Minute) }, constant(levelIRates))

	a, b := lv.result(), bf.result()
	if b.CatchingUp || !b.DataTime.Equal(bf.clock) {
		t.Errorf("after the backfill: catching up %v at %v, want live (the clock, %v)", b.CatchingUp, b.DataTime, bf.clock)
	}
	// By hand (TestNoCodeUntilEnoughData): green at once at hour 575,
	// nothing pending since.
	if a.Code != "green" || !a.CodeSince.Equal(dayZero.Add(575*time.Hour)) || a.PendingCode != "" {
		t.Fatalf("live: got %q since %v pending %q, want green since +575h, nothing pending", a.Code, a.CodeSince, a.PendingCode)
	}
	if b.Code != a.Code || !b.CodeSince.Equal(a.CodeSince) || b.PendingCode != a.PendingCode || !b.PendingSince.Equal(a.PendingSince) {
		t.Errorf("backfill: got %q since %v pending %q since %v, want what live gives: %q since %v pending %q since %v",
			b.Code, b.CodeSince, b.PendingCode, b.PendingSince, a.Code, a.CodeSince, a.PendingCode, a.PendingSince)
	}
	if got, want := bf.changes(), lv.changes(); !slices.Equal(got, want) {
		t.Errorf("backfill code changes: got %v, want the live ones %v", got, want)
	}
	if got := bf.stale(); len(got) != 0 {
		t.Errorf("backfill stale events: got %v, want none", got)
	}
}

// TestStaleInDataTime: a meter that falls silent during a backfill is
// stale once its gateway's data has run stale.after (6 h) past its last
// reading, and reporting again when it delivers; nothing else is stale.
// VEH delivers hours 0-399 and from 500 on.
func TestStaleInDataTime(t *testing.T) {
	bf := newCodeRig(t, nil)
	wallStart := dayZero.Add(720 * time.Hour)
	noVEH := maps.Clone(levelIRates)
	delete(noVEH, "VEH")
	bf.feed(0, 720, func(h int) time.Time { return wallStart.Add(time.Duration(h) * 2 * time.Minute) }, func(h int) map[string]float64 {
		if h >= 400 && h < 500 {
			return noVEH
		}
		return levelIRates
	})
	// Last VEH reading at hour 399: the gateway's data reaches 405 with
	// the step after hour 405; VEH reports again with hour 500.
	if got, want := bf.stale(), []string{"VEH@405", "VEH@500 resolved"}; !slices.Equal(got, want) {
		t.Errorf("stale events: got %v, want %v", got, want)
	}
}

// TestSilentPlantGoesStaleAndWorse: a plant that really falls silent
// (nothing arrives, so it is not catching up) gets stale events after
// stale.after of wall-clock time and, once its 30-day window lacks data,
// a worse code; it never gets a better one from missing data.
//
// Live Level-I data for hours 0-719 (green from 575), then silence. Each
// meter is stale at 725 (6 h after its last reading). At 720+x the
// window holds 719-x hourly buckets (80 % needs 576: x <= 143) and, for
// the analysers, 24 of 31 spanned days from x = 144: at 864 no metered
// indicator with min_coverage has enough data, insufficient_data: yellow
// at once (downgrades have no hold).
func TestSilentPlantGoesStaleAndWorse(t *testing.T) {
	r := newCodeRig(t, nil)
	r.feed(0, 720, live, constant(levelIRates))
	r.feed(720, 720+60*24, live, func(int) map[string]float64 { return nil })
	var want []string
	for _, m := range r.ent.Meters {
		want = append(want, m.ID+"@725")
	}
	if got := r.stale(); !slices.Equal(got, want) {
		t.Errorf("stale events: got %v, want every meter at 725: %v", got, want)
	}
	if got, want := r.changes(), []string{">green@575", "green>yellow@864"}; !slices.Equal(got, want) {
		t.Errorf("code changes: got %v, want %v", got, want)
	}
	if res := r.result(); res.Code != "yellow" || res.PendingCode != "" {
		t.Errorf("after 60 silent days: got %q pending %q, want yellow with nothing pending", res.Code, res.PendingCode)
	}
}

// TestSilenceNeverImproves: a red plant (a discharge over its limit) that
// falls silent stays red: insufficient data would make it yellow, a
// better code, which missing data must never give.
func TestSilenceNeverImproves(t *testing.T) {
	r := newCodeRig(t, nil)
	bad := maps.Clone(levelIRates)
	bad["WW-OUT-COD"] = 700
	r.feed(0, 720, live, constant(bad))
	r.feed(720, 720+90*24, live, func(int) map[string]float64 { return nil })
	if got, want := r.changes(), []string{">red@575"}; !slices.Equal(got, want) {
		t.Errorf("code changes: got %v, want %v", got, want)
	}
	if res := r.result(); res.Code != "red" || res.PendingCode != "" {
		t.Errorf("after 90 silent days: got %q pending %q, want red, nothing pending", res.Code, res.PendingCode)
	}
}

// TestReasonsOfCodeInForce: while a better candidate waits for its hold,
// the result gives the reasons of the code in force, and the pending
// change apart with its own reasons and the date it takes effect; the
// code's reasons survive a restart through the code_change event.
//
// Level-I data with effluent COD at 700 mg/L (the sewer limit is 500) on
// local day 25 (hours 600-623). Red at once at hour 600. The last
// evaluation with a bad hour in the window is at hour 623+719 = 1342 (the
// window is hours 623..1342): 31 local days (25 to 55), one of them bad,
// so the effluent compliance rate is 30/31 = 96.774 % (Level III needs
// 100), a restrictive indicator below Level III, and Y_III = 100 - 100 x
// its weight 0.025 = 97.5. From hour 1343 green is the candidate: pending
// since 1343, due 30 days (720 h) later, at 2063.
func TestReasonsOfCodeInForce(t *testing.T) {
	r := newCodeRig(t, nil)
	r.feed(0, 1400, live, func(h int) map[string]float64 {
		if h >= 600 && h < 624 {
			bad := maps.Clone(levelIRates)
			bad["WW-OUT-COD"] = 700
			return bad
		}
		return levelIRates
	})
	if got, want := r.changes(), []string{">green@575", "green>red@600"}; !slices.Equal(got, want) {
		t.Fatalf("code changes: got %v, want %v", got, want)
	}
	res := r.result()
	if res.Code != "red" || res.PendingCode != "green" || !res.PendingSince.Equal(dayZero.Add(1343*time.Hour)) ||
		!res.PendingDue.Equal(dayZero.Add(2063*time.Hour)) {
		t.Fatalf("at hour 1399: got %q pending %q since %v due %v, want red, green pending since +1343h, due +2063h",
			res.Code, res.PendingCode, res.PendingSince, res.PendingDue)
	}
	type reason struct {
		kind      Condition
		indicator string
		level     Level
		value     float64
		benchmark float64
	}
	want := []reason{
		{CondBelowIII, "", BelowIII, 97.5, 100},
		{CondRestrictiveFail, "effluent_compliance_rate", BelowIII, 100 * 30.0 / 31, 100},
		{CondExceedance, "effluent_compliance_rate", BelowIII, 100 * 30.0 / 31, 100},
	}
	check := func(what string, rs []Reason, want []reason) {
		t.Helper()
		if len(rs) != len(want) {
			t.Fatalf("%s: got %v, want %d reasons %v", what, rs, len(want), want)
		}
		for i, w := range want {
			g := rs[i]
			if g.Kind != w.kind || g.Indicator != w.indicator || g.Level != w.level || g.Value == nil || g.Benchmark == nil ||
				math.Abs(*g.Value-w.value) > 1e-6 || *g.Benchmark != w.benchmark || g.TextZH == "" || g.TextEN == "" {
				t.Errorf("%s %d: got %+v (value %v, benchmark %v), want %+v with texts", what, i, g, deref(g.Value), deref(g.Benchmark), w)
			}
		}
	}
	check("reasons of the code in force", res.CodeReasons, want)
	// Green rests on Level I: Y_I 100 >= 85.
	check("reasons of the pending code", res.PendingReasons, []reason{{CondLevelI, "", LevelI, 100, 85}})

	// A restart: the reasons of red come back from its code_change event
	// as the store keeps it.
	var stored []Event
	for _, ev := range r.log.of(EventCodeChange, "lj-alpha") {
		back, ok := EventFromPoint(EventPoint(ev))
		if !ok {
			t.Fatalf("event %v does not survive the round trip through a point", ev)
		}
		stored = append(stored, back)
	}
	again, err := NewEngine(Config{Standard: r.fx.std, Policy: r.fx.pol, Registry: r.fx.reg, Now: func() time.Time { return r.clock }})
	if err != nil {
		t.Fatal(err)
	}
	again.Restore(stored)
	st := again.ents["lj-alpha"].code
	if st.Code != "red" || !st.Since.Equal(dayZero.Add(600*time.Hour)) {
		t.Fatalf("restored: got %q since %v, want red since +600h", st.Code, st.Since)
	}
	// At the change (hour 600) the window had readings on local days
	// 0-25, one of them bad: 25/26 = 96.15 %; Y_III 97.5 as later.
	check("restored reasons", st.Reasons, []reason{
		{CondBelowIII, "", BelowIII, 97.5, 100},
		{CondRestrictiveFail, "effluent_compliance_rate", BelowIII, 100 * 25.0 / 26, 100},
		{CondExceedance, "effluent_compliance_rate", BelowIII, 100 * 25.0 / 26, 100},
	})
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestGatewaysCatchingUpApart: two gateways of one plant back up 30 days
// and then deliver them at different paces, at most two data hours per
// step for gw-1, one for gw-2, a step every 2 minutes from hour 707, each
// going live once it reaches the clock (hour h is sent once the clock is
// at or past it). No meter is stale: each is judged in its own gateway's
// data time. The code holds while gw-1's data (the window's head) runs
// more than stale.after (6 h) ahead of gw-2's (the enterprise's data
// time): such a window would mix gw-1's 30 days with gw-2's shorter span,
// putting one gateway's meters over the other's in a wrong ratio.
//
// At step i the clock is 707 + i/30 h and gw-2 is at hour i (it is behind
// until i = 731). gw-1 is at 2i+1 until it reaches the clock at i = 359,
// then at the clock's hour. So the head is 6 h ahead or less for i <= 5
// (too little data for a code) and again from i = 725 (head 731, gw-2 at
// 725, the clock 731.17: still catching up). Held for 6 <= i <= 724;
// the first code, green, at hour 725.
func TestGatewaysCatchingUpApart(t *testing.T) {
	fx := newFixture(t)
	data, err := os.ReadFile("testdata/registry/lj-alpha.yaml")
	if err != nil {
		t.Fatal(err)
	}
	split := strings.Replace(string(data), "      - {id: STACK-FLOW,", "  - id: gw-2\n    meters:\n      - {id: STACK-FLOW,", 1)
	reg, err := registry.Parse(map[string][]byte{"lj-alpha.yaml": []byte(split)})
	if err != nil {
		t.Fatal(err)
	}
	r := &codeRig{t: t, fx: fx, decls: &declSource{}}
	r.decls.set(levelIDeclarations(fx.std, "lj-alpha"))
	r.ent, _ = reg.Enterprise("lj-alpha")
	if len(r.ent.Gateways) != 2 {
		t.Fatalf("split registry: %d gateways, want 2", len(r.ent.Gateways))
	}
	r.eng, err = NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: reg, Declarations: r.decls,
		OnEvent: r.log.add, Now: func() time.Time { return r.clock }})
	if err != nil {
		t.Fatal(err)
	}
	r.eng.loadDeclarations(context.Background())
	type gateway struct {
		id         string
		next, pace int
	}
	gws := []*gateway{{id: "gw-1", pace: 2}, {id: "gw-2", pace: 1}}
	wall0 := dayZero.Add(707 * time.Hour)
	held := 0
	var firstHeld, lastHeld int
	for i := range 800 {
		r.clock = wall0.Add(time.Duration(i) * 2 * time.Minute)
		for _, g := range gws {
			for n := 0; n < g.pace && !dayZero.Add(time.Duration(g.next)*time.Hour).After(r.clock); n++ {
				for _, rd := range hourly(r.ent, dayZero.Add(time.Duration(g.next)*time.Hour), levelIRates) {
					if rd.Gateway == g.id {
						r.eng.Observe([]store.Reading{rd})
					}
				}
				g.next++
			}
		}
		r.eng.step(context.Background(), r.clock)
		if r.result().CodeHeld {
			if held == 0 {
				firstHeld = i
			}
			held++
			lastHeld = i
		}
	}
	if firstHeld != 6 || lastHeld != 724 || held != 719 {
		t.Errorf("code held at %d steps from %d to %d, want steps 6-724", held, firstHeld, lastHeld)
	}
	if got := r.stale(); len(got) != 0 {
		t.Errorf("stale events: got %v, want none", got)
	}
	if got, want := r.changes(), []string{">green@725"}; !slices.Equal(got, want) {
		t.Errorf("code changes: got %v, want %v", got, want)
	}
	if res := r.result(); res.Code != "green" || res.PendingCode != "" || res.CodeHeld || res.CatchingUp {
		t.Errorf("at the end: got %q pending %q held %v catching up %v, want green, nothing pending, live", res.Code, res.PendingCode, res.CodeHeld, res.CatchingUp)
	}
}

// TestRestoreIgnoresCodeWithoutData: earlier versions announced a first
// code (yellow, not graded) before any data; a restart does not restore
// it, so the enterprise has no code until its data suffices. Later code
// changes restore as usual.
func TestRestoreIgnoresCodeWithoutData(t *testing.T) {
	fx := newFixture(t)
	at := dayZero.Add(-40 * 24 * time.Hour)
	initial := Event{Time: at, Enterprise: "lj-alpha", Kind: EventCodeChange, NewCode: "yellow", Reason: "initial: not_graded: not graded"}
	greenLater := Event{Time: at.Add(31 * 24 * time.Hour), Enterprise: "lj-beta", Kind: EventCodeChange, OldCode: "yellow", NewCode: "green", NewLevel: LevelII}
	for _, tc := range []struct {
		name   string
		events []Event
		ent    string
		want   Code
	}{
		{"initial code without a level", []Event{initial}, "lj-alpha", ""},
		{"a later change", []Event{{Time: at, Enterprise: "lj-beta", Kind: EventCodeChange, NewCode: "yellow"}, greenLater}, "lj-beta", "green"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: fx.reg, Now: func() time.Time { return dayZero }})
			if err != nil {
				t.Fatal(err)
			}
			var stored []Event
			for _, ev := range tc.events {
				back, _ := EventFromPoint(EventPoint(ev))
				stored = append(stored, back)
			}
			eng.Restore(stored)
			if got := eng.ents[tc.ent].code.Code; got != tc.want {
				t.Errorf("restored code of %s: got %q, want %q", tc.ent, got, tc.want)
			}
		})
	}
}

// TestPermitLimit: a meter's own discharge permit limit replaces the
// standard's default in the compliance indicators. Level-I data with
// effluent COD 100 mg/L, and 700 mg/L through local day 25 (hours
// 600-623); the standard's sewer limit is 500.
//   - permit 800 mg/L: every daily mean (100 or 700) is within it, the
//     effluent compliance rate stays 100 %: green, never red.
//   - permit 90 mg/L: every daily mean exceeds it, the rate is 0 %: red
//     from the first grading on.
//
// registryFiles reads the fixture registry's files, to edit before
// registry.Parse.
func registryFiles(t *testing.T) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	names, _ := filepath.Glob("testdata/registry/*.yaml")
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(name)] = b
	}
	return files
}

func TestPermitLimit(t *testing.T) {
	rates := func(h int) map[string]float64 {
		if h >= 600 && h < 624 {
			bad := maps.Clone(levelIRates)
			bad["WW-OUT-COD"] = 700
			return bad
		}
		return levelIRates
	}
	for _, tt := range []struct {
		permit  string
		changes []string
		rate    float64
	}{
		{"800", []string{">green@575"}, 100},
		{"90", []string{">red@575"}, 0},
	} {
		t.Run(tt.permit, func(t *testing.T) {
			fx := newFixture(t)
			files := registryFiles(t)
			cod := "flow_meter: WW-OUT-FLOW}"
			if !bytes.Contains(files["lj-alpha.yaml"], []byte(cod)) {
				t.Fatal("lj-alpha has no WW-OUT-COD to give a permit limit")
			}
			files["lj-alpha.yaml"] = bytes.Replace(files["lj-alpha.yaml"], []byte(cod), []byte("flow_meter: WW-OUT-FLOW, permit_limit: "+tt.permit+"}"), 1)
			reg, err := registry.Parse(files)
			if err != nil {
				t.Fatal(err)
			}
			fx.reg = reg
			r := newCodeRigOf(t, fx, nil)
			r.feed(0, 700, live, rates)
			if got := r.changes(); !slices.Equal(got, tt.changes) {
				t.Errorf("code changes: got %v, want %v", got, tt.changes)
			}
			res := r.result()
			for _, iv := range res.Assessments[r.eng.cwin].Indicators {
				if iv.ID == "effluent_compliance_rate" && (!iv.HasValue() || iv.Value != tt.rate) {
					t.Errorf("effluent compliance rate %v (%v), want %g %%", iv.Value, iv.HasValue(), tt.rate)
				}
			}
		})
	}
}

// TestFlaggedHoursCostAvailability: an outlet COD analyser whose values
// for eight hours a day over the last ten days never reach the scorer
// (flagged M, C or D by its logger, or never sent). Behind an HJ 212
// station that owes a valid value every hour, those 80 of the live
// window's 720 hours are missing data: the effective data rate, and so
// metering_and_monitoring, is 640/720 = 88.9 % (Level II needs 90). A
// JSON analyser that still reports every day keeps its day coverage of
// 100 %.
func TestFlaggedHoursCostAvailability(t *testing.T) {
	rates := func(h int) map[string]float64 {
		if day, hour := h/24, h%24; day >= 20 && hour >= 8 && hour < 16 {
			r := maps.Clone(levelIRates)
			delete(r, "WW-OUT-COD")
			return r
		}
		return levelIRates
	}
	for _, tt := range []struct {
		name     string
		station  bool
		metering float64
	}{
		{"json analyser", false, 100},
		{"hj212 station", true, 100 * 640.0 / 720},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			files := registryFiles(t)
			if tt.station {
				a := files["lj-alpha.yaml"]
				a = bytes.Replace(a, []byte("  - id: gw-1\n"), []byte("  - id: gw-1\n    hj212: {mn: LJALPHA0001WW01, password: pw123456}\n"), 1)
				a = bytes.Replace(a, []byte("workshop: wwtp-outlet, flow_meter: WW-OUT-FLOW}"), []byte("workshop: wwtp-outlet, flow_meter: WW-OUT-FLOW, hj212: {code: w01018, field: Avg, data: hour}}"), 1)
				if !bytes.Contains(a, []byte("w01018")) || !bytes.Contains(a, []byte("LJALPHA")) {
					t.Fatal("the fixture did not take the station")
				}
				files["lj-alpha.yaml"] = a
			}
			reg, err := registry.Parse(files)
			if err != nil {
				t.Fatal(err)
			}
			fx.reg = reg
			r := newCodeRigOf(t, fx, nil)
			r.feed(0, 720, live, rates)
			res := r.result()
			found := 0
			for _, iv := range res.Assessments[r.eng.cwin].Indicators {
				switch iv.ID {
				case "metering_and_monitoring":
					found++
					if !iv.HasValue() || math.Abs(iv.Value-tt.metering) > 1e-9 {
						t.Errorf("metering and monitoring %v (%v), want %.4f %%", iv.Value, iv.HasValue(), tt.metering)
					}
				case "effluent_compliance_rate":
					found++
					if !iv.HasValue() || iv.Value != 100 {
						t.Errorf("effluent compliance %v (%v), want 100 %% over the valid data", iv.Value, iv.HasValue())
					}
				}
			}
			if found != 2 {
				t.Fatalf("found %d of the two indicators", found)
			}
		})
	}
}
