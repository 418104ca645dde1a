package scoring

import (
	"math"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/cleanprod/cleanprod/registry"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.FixedZone("CST", 8*3600)) // local midnight

func TestWindowSlides(t *testing.T) {
	w := newWindow(Window{Name: "w", Length: 4 * time.Hour, Bucket: time.Hour}, 8*time.Hour, 2, 1, 0)
	hour := func(h int) int64 { return w.bucketOf(t0.Add(time.Duration(h) * time.Hour)) }
	amount := 1
	for h := 0; h < 4; h++ {
		if !w.add(amount, hour(h), 10, 0) {
			t.Fatalf("hour %d: got rejected, want added", h)
		}
	}
	w.sync(t0.Add(3 * time.Hour))
	if got := w.sum(amount); got != 40 {
		t.Errorf("full window: got %v, want 40", got)
	}
	if got := w.coverage(amount); got != 1 {
		t.Errorf("coverage: got %v, want 1", got)
	}
	// A correction adds to an earlier bucket without double counting.
	w.add(amount, hour(1), -4, 0)
	if got := w.sum(amount); got != 36 {
		t.Errorf("after correction: got %v, want 36", got)
	}
	// Two hours later the first two buckets have left.
	w.sync(t0.Add(5 * time.Hour))
	if got := w.sum(amount); got != 20 {
		t.Errorf("after sliding 2h: got %v, want 20", got)
	}
	if got := w.coverage(amount); got != 0.5 {
		t.Errorf("coverage after sliding: got %v, want 0.5", got)
	}
	if w.add(amount, hour(1), 1, 0) {
		t.Errorf("reading older than the window: got added, want rejected")
	}
	// A jump longer than the window clears it.
	w.sync(t0.Add(48 * time.Hour))
	if got, cov := w.sum(amount), w.coverage(amount); got != 0 || cov != 0 || w.anyData(amount) {
		t.Errorf("after a long gap: got sum %v coverage %v, want 0 and 0", got, cov)
	}
}

func TestWindowBucketsAreLocalDays(t *testing.T) {
	w := newWindow(Window{Name: "d", Length: 3 * 24 * time.Hour, Bucket: 24 * time.Hour}, 8*time.Hour, 1, 1, 0)
	// 23:30 local on day 0 and 00:30 local on day 1 fall in different days,
	// although both are on the same UTC day.
	a := w.bucketOf(t0.Add(-30 * time.Minute))
	b := w.bucketOf(t0.Add(30 * time.Minute))
	if b != a+1 {
		t.Errorf("got buckets %d and %d, want consecutive local days", a, b)
	}
	if got := w.bucketStart(b); !got.Equal(t0) {
		t.Errorf("bucket start: got %v, want %v", got, t0)
	}
}

func TestWindowDailyCompliance(t *testing.T) {
	w := newWindow(Window{Name: "w", Length: 72 * time.Hour, Bucket: time.Hour}, 8*time.Hour, 2, 1, 0)
	// Day 0: readings 400 and 700 (mean 550); day 1: 100, 200 (150);
	// day 2: none.
	for _, r := range []struct {
		h int
		v float64
	}{{2, 400}, {14, 700}, {26, 100}, {38, 200}} {
		w.add(0, w.bucketOf(t0.Add(time.Duration(r.h)*time.Hour)), r.v, 1)
	}
	w.sync(t0.Add(71 * time.Hour))
	var means []float64
	days := w.days(0, func(sum float64, n uint32) { means = append(means, sum/float64(n)) })
	if days != 3 || len(means) != 2 || means[0] != 550 || means[1] != 150 {
		t.Errorf("got %d days, means %v, want 3 days and means [550 150]", days, means)
	}
	ev := &env{}
	ev.reset(&layout{gauges: 1}, w, nil, 0)
	if got := ev.dayCoverage(0); math.Abs(got-2.0/3) > 1e-12 {
		t.Errorf("day coverage: got %v, want 2/3", got)
	}
}

func TestWindowLoadCarriesConcentrationForward(t *testing.T) {
	w := newWindow(Window{Name: "w", Length: 6 * time.Hour, Bucket: time.Hour}, 8*time.Hour, 2, 1, 0)
	at := func(h int) int64 { return w.bucketOf(t0.Add(time.Duration(h) * time.Hour)) }
	// Flow of 10 m3 every hour; the analyser reports 100 mg/L at hour 1
	// and 300 at hour 3 (twice, 200 and 400).
	for h := 0; h < 6; h++ {
		w.add(1, at(h), 10, 0)
	}
	w.add(0, at(1), 100, 1)
	w.add(0, at(3), 200, 1)
	w.add(0, at(3), 400, 1)
	w.sync(t0.Add(5 * time.Hour))
	// hour 0 back-fills with 100; hours 1-2 at 100; hours 3-5 at 300.
	want := 10.0*100*3 + 10*300*3
	if got := w.load(0, 1); got != want {
		t.Errorf("got load %v, want %v (mg/L x m3)", got, want)
	}
}

func TestWindowBytes(t *testing.T) {
	w := newWindow(Window{Name: "live", Length: 30 * 24 * time.Hour, Bucket: time.Hour}, 8*time.Hour, 30, 5, 12)
	track, counts := int(unsafe.Sizeof(track{})), int(unsafe.Sizeof(gaugeCounts{}))
	// Before any reading: nothing.
	if got := w.bytes(); got != 0 {
		t.Errorf("empty: got %d bytes, want 0", got)
	}
	// One reading of a gauge: the per-track state and totals, the first 8
	// buckets of that one track (8 sums and a word of bits, 8 uint16
	// counts) and the counts of the 12 presence rows; no bits for them yet.
	w.add(0, w.bucketOf(t0), 1, 1)
	base := 30*track + 30*8 + 12*4
	gauge := 9*8 + counts + 8*2
	if got, want := w.bytes(), base+gauge; got != want {
		t.Errorf("one reading: got %d bytes, want %d", got, want)
	}
	// A day of one amount track: its span doubles to 32 buckets.
	for h := range 24 {
		w.add(7, w.bucketOf(t0.Add(time.Duration(h)*time.Hour)), 1, 0)
	}
	amount := 33 * 8
	if got, want := w.bytes(), base+gauge+amount; got != want {
		t.Errorf("a day of one track: got %d bytes, want %d", got, want)
	}
	// A count beyond uint16 widens that track's counts.
	w.add(0, w.bucketOf(t0), 1, 70000)
	if got, want := w.bytes(), base+gauge+8*2+amount; got != want {
		t.Errorf("wide counts: got %d bytes, want %d", got, want)
	}
	if _, n := w.gaugeSums(0); n != 70001 {
		t.Errorf("readings: got %d, want 70001", n)
	}
	// A whole window of an amount track: the ring, 720 sums and 12 words
	// of bits, and nothing per bucket beyond.
	for h := range 720 {
		w.add(8, w.bucketOf(t0.Add(time.Duration(h)*time.Hour)), 1, 0)
	}
	if got, want := w.bytes(), base+gauge+8*2+amount+(720+12)*8; got != want {
		t.Errorf("a full track: got %d bytes, want %d", got, want)
	}
	// Once the window holds nothing, neither does any track.
	w.sync(t0.Add(90 * 24 * time.Hour))
	if got := w.bytes(); got != base {
		t.Errorf("after the window slid past the data: got %d bytes, want %d", got, base)
	}
}

// TestWindowPresenceRows: two meters share one amount track; the track has
// data whenever either reports, each presence row only when its meter does.
func TestWindowPresenceRows(t *testing.T) {
	w := newWindow(Window{Name: "w", Length: 4 * time.Hour, Bucket: time.Hour}, 8*time.Hour, 1, 0, 2)
	hour := func(h int) int64 { return w.bucketOf(t0.Add(time.Duration(h) * time.Hour)) }
	const total, a, b = 0, 0, 1
	for h := 0; h < 4; h++ {
		w.add(total, hour(h), 10, 0)
		w.mark(a, hour(h))
		if h < 2 { // b falls silent after two hours
			w.add(total, hour(h), 5, 0)
			w.mark(b, hour(h))
		}
	}
	w.sync(t0.Add(3 * time.Hour))
	check := func(what string, wantTrack, wantA, wantB float64) {
		t.Helper()
		ca, da := w.rowCoverage(a)
		cb, db := w.rowCoverage(b)
		if got := w.coverage(total); got != wantTrack || ca != wantA || cb != wantB || da != (wantA > 0) || db != (wantB > 0) {
			t.Errorf("%s: got track %v, a %v (%v), b %v (%v), want %v, %v, %v", what, got, ca, da, cb, db, wantTrack, wantA, wantB)
		}
	}
	check("full window", 1, 1, 0.5)
	if got := w.sum(total); got != 50 {
		t.Errorf("sum: got %v, want 50", got)
	}
	// Two hours later b's two buckets have left the window.
	w.sync(t0.Add(5 * time.Hour))
	check("after sliding 2h", 0.5, 0.5, 0)
	if w.mark(a, hour(1)) {
		t.Errorf("mark older than the window: got kept, want rejected")
	}
	// A jump longer than the window clears the rows too.
	w.sync(t0.Add(48 * time.Hour))
	check("after a long gap", 0, 0, 0)
}

// TestLayoutPresenceRows: the meters of an amount series that has several
// get presence rows; a series with one meter uses its track's bits.
func TestLayoutPresenceRows(t *testing.T) {
	std := mustStandard(t, "standards/auto-manufacturing.yaml")
	reg, err := registry.Load("testdata/registry-gaps")
	if err != nil {
		t.Fatal(err)
	}
	ent, _ := reg.Enterprise("lj-trio")
	lay := newLayout(std, ent)
	series := func(name string) binding {
		t.Helper()
		i := slices.Index(std.seriesNames, name)
		if i < 0 {
			t.Fatalf("no series %s", name)
		}
		return lay.series[i]
	}
	elec := series("electricity")
	var ids []string
	rows := map[int]bool{}
	for _, m := range elec.meters {
		ids = append(ids, m.id)
		if m.row < 0 || m.row >= lay.rows || rows[m.row] {
			t.Errorf("electricity meter %s: row %d, want its own row in [0, %d)", m.id, m.row, lay.rows)
		}
		rows[m.row] = true
		if mb := lay.meters[m.id]; mb.row != m.row {
			t.Errorf("meter %s marks row %d, want %d", m.id, mb.row, m.row)
		}
	}
	if want := []string{"E-PLANT", "E-BODY", "E-PAINT"}; !slices.Equal(ids, want) {
		t.Errorf("electricity meters: got %v, want %v", ids, want)
	}
	if veh := series("vehicles"); len(veh.meters) != 1 || veh.meters[0].row != -1 {
		t.Errorf("vehicles: got %+v, want one meter without a presence row", veh.meters)
	}
	if mb := lay.meters["VEH"]; mb.row != -1 {
		t.Errorf("VEH: got row %d, want none", mb.row)
	}
}

// TestWindowFillFrom makes daily buckets of an hourly window's hours: the
// same sums, readings and presence as adding the readings to the days
// directly, and no day the hourly window does not span whole.
func TestWindowFillFrom(t *testing.T) {
	hourly := Window{Name: "h", Length: 3 * 24 * time.Hour, Bucket: time.Hour}
	daily := Window{Name: "d", Length: 10 * 24 * time.Hour, Bucket: 24 * time.Hour}
	const tracks, gauges, rows = 2, 1, 1
	fine := newWindow(hourly, 8*time.Hour, tracks, gauges, rows)
	want := newWindow(daily, 8*time.Hour, tracks, gauges, rows)
	got := newWindow(daily, 8*time.Hour, tracks, gauges, rows)
	// Hours 10 to 80 from t0 (local midnight): the hourly window keeps
	// 72 hours back from its head, hour 80, so it spans days 1 and 2 whole
	// and nothing of day 0 before 09:00.
	for h := 10; h <= 80; h++ {
		at := t0.Add(time.Duration(h) * time.Hour)
		for _, w := range []*window{fine, want} {
			b := w.bucketOf(at)
			w.add(0, b, float64(h), 2)
			w.add(1, b, 1.5, 0)
			if h%5 == 0 {
				w.mark(0, b)
			}
		}
	}
	day := func(d int) int64 { return got.bucketOf(t0.Add(time.Duration(d) * 24 * time.Hour)) }
	for d := 1; d <= 2; d++ {
		if !got.fillFrom(fine, day(d)) {
			t.Fatalf("day %d: the hourly window spans it, want it made", d)
		}
	}
	for d := 1; d <= 2; d++ {
		for tr := range tracks {
			gv, gc, gok := got.at(tr, day(d))
			wv, wc, wok := want.at(tr, day(d))
			if gv != wv || gc != wc || gok != wok {
				t.Errorf("day %d track %d: %v %d %v, want %v %d %v", d, tr, gv, gc, gok, wv, wc, wok)
			}
		}
	}
	if got, want := got.seenN[0], int32(2); got != want { // days 1 and 2 only
		t.Errorf("presence: %d days, want %d", got, want)
	}
	if got.fillFrom(fine, day(0)) {
		t.Error("day 0: the hourly window lacks its first hours, want refused")
	}
	if got.fillFrom(newWindow(hourly, 8*time.Hour, tracks, gauges, rows), day(1)) {
		t.Error("an empty hourly window: want refused")
	}
}
