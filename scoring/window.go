package scoring

import (
	"math"
	"time"
	"unsafe"
)

// window holds one enterprise's tracks over one rolling window as a ring
// of buckets. A track is one input the formulas need: the total of an
// amount series (all its meters together), one gauge meter's readings (sum
// of values and count, for means and daily compliance), or one flow meter a
// gauge is paired with. All tracks share the ring's head, so bucket b of
// every track covers the same time.
//
// Besides the tracks, the window keeps one "has data" bit per bucket for
// each meter that shares an amount track with other meters (a presence
// row): the track's own bit says that one of them reported, the presence
// rows say which, so that coverage is that of the worst meter.
//
// Memory follows the data: a track holds storage only once it has data,
// for the span of buckets its data covers, grown by doubling from
// minSpan buckets up to the whole window (see track), and gives it back
// when its last bucket leaves. Allocating every track in full at the first
// reading held 249 KB of heap per enterprise of 24 tracks from the first
// hour; BenchmarkFleetHeap measures 15 KB after three hours, 174 KB after
// 30 days and 244 KB after a year.
//
// A window is owned by the engine goroutine; it is not safe for concurrent
// use.
type window struct {
	n      int   // buckets
	bucket int64 // bucket length, ns
	offset int64 // UTC offset of local time, ns
	tracks int
	gauges int // tracks [0, gauges) are gauge tracks with counts
	rows   int // presence rows

	init  bool
	head  int64     // newest bucket number
	data  []track   // per track, allocated with the window; storage with the data
	total []float64 // per track: Σ vals, valid unless stale
	stale bool      // totals need recomputing after an eviction
	seen  []uint64  // bitset over row*words*64 + slot, allocated at the first mark
	seenN []int32   // per presence row: buckets with data
}

// minSpan is the storage a track starts with, in buckets: a day of hourly
// buckets fits after two doublings.
const minSpan = 8

// track is the storage of one track: its buckets [lo, hi] hold all its
// data, at index b mod len(vals). The span grows by doubling, and once it
// would reach the window's length, vals is the window's ring (index b mod
// n, as the slots of the window). An entry without its has bit is zero;
// a track without data holds no storage.
//
// The has bits live in vals' capacity beyond its length, as the bit
// patterns of float64s: one allocation instead of two, and a 720-bucket
// ring of sums and bits (5,856 bytes) fits the 6,144-byte size class the
// sums alone take. The header stays at 56 bytes, as every track of every
// window has one.
type track struct {
	lo, hi int64
	filled int32 // buckets with data
	vals   []float64
	counts *gaugeCounts // gauge tracks
}

// gaugeCounts are a gauge track's readings per entry.
type gaugeCounts struct {
	n16 []uint16 // while every count fits
	n32 []uint32 // once a count outgrew uint16; n16 is then nil
}

// newEntries returns c zero entries with room for their has bits.
func newEntries(c int) []float64 { return make([]float64, c, c+(c+63)/64) }

// bit returns the has word of entry i and its mask.
func (t *track) bit(i int) (*float64, uint64) {
	return &t.vals[:cap(t.vals)][len(t.vals)+i>>6], 1 << (uint(i) & 63)
}

func (t *track) has(i int) bool {
	word, mask := t.bit(i)
	return math.Float64bits(*word)&mask != 0
}

func (t *track) setHas(i int, on bool) {
	word, mask := t.bit(i)
	x := math.Float64bits(*word)
	if on {
		x |= mask
	} else {
		x &^= mask
	}
	*word = math.Float64frombits(x)
}

func newWindow(w Window, offset time.Duration, tracks, gauges, rows int) *window {
	return &window{n: w.Buckets(), bucket: int64(w.Bucket), offset: int64(offset), tracks: tracks, gauges: gauges, rows: rows}
}

// bucketOf returns the bucket number of t: buckets are aligned to local
// time, so a daily bucket is a local calendar day.
func (w *window) bucketOf(t time.Time) int64 {
	return floorDiv(t.UnixNano()+w.offset, w.bucket)
}

// bucketStart returns the start time of bucket b.
func (w *window) bucketStart(b int64) time.Time {
	return time.Unix(0, b*w.bucket-w.offset).UTC()
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func floorMod(a int64, n int) int {
	s := a % int64(n)
	if s < 0 {
		s += int64(n)
	}
	return int(s)
}

func (w *window) slot(b int64) int { return floorMod(b, w.n) }

// alloc makes the window's per-track state; the tracks' storage waits for
// their data.
func (w *window) alloc(head int64) {
	w.init = true
	w.head = head
	w.data = make([]track, w.tracks)
	w.total = make([]float64, w.tracks)
	w.seenN = make([]int32, w.rows)
}

// bytes returns the memory held by the window's buffers.
func (w *window) bytes() int {
	n := int(unsafe.Sizeof(track{}))*len(w.data) + 8*len(w.total) + 8*len(w.seen) + 4*len(w.seenN)
	for i := range w.data {
		t := &w.data[i]
		n += 8 * cap(t.vals)
		if t.counts != nil {
			n += int(unsafe.Sizeof(gaugeCounts{})) + 2*len(t.counts.n16) + 4*len(t.counts.n32)
		}
	}
	return n
}

func (w *window) words() int { return (w.n + 63) / 64 }

func (w *window) seenBit(i int) bool { return w.seen[i>>6]&(1<<(uint(i)&63)) != 0 }

// reach makes bucket b part of the window: it allocates the window at its
// first bucket and advances it when b is newer than its head. It returns
// false when b is older than the window.
func (w *window) reach(b int64) bool {
	if !w.init {
		w.alloc(b)
	}
	if b > w.head {
		w.advance(b)
	}
	return b > w.head-int64(w.n)
}

// mark records that the meter of presence row r reported in bucket b. It
// advances the window like add, and returns false when b is older than the
// window.
func (w *window) mark(r int, b int64) bool {
	if !w.reach(b) {
		return false
	}
	if w.seen == nil {
		w.seen = make([]uint64, w.rows*w.words())
	}
	i := r*w.words()*64 + w.slot(b)
	if !w.seenBit(i) {
		w.seen[i>>6] |= 1 << (uint(i) & 63)
		w.seenN[r]++
	}
	return true
}

// add adds v (and, for a gauge track, one reading) to track at bucket b. It
// advances the window when b is newer than its head, and returns false when
// b is older than the window.
func (w *window) add(track int, b int64, v float64, readings uint32) bool {
	if !w.reach(b) {
		return false
	}
	t := &w.data[track]
	i := w.place(t, track < w.gauges, b)
	if !t.has(i) {
		t.setHas(i, true)
		t.filled++
	}
	t.vals[i] += v
	if !w.stale {
		w.total[track] += v
	}
	if track < w.gauges {
		t.addCount(i, readings)
	}
	return true
}

// place makes room in t for bucket b, which is in the window, and returns
// its index.
func (w *window) place(t *track, gauge bool, b int64) int {
	if t.filled == 0 {
		if t.vals == nil {
			t.grow(min(minSpan, w.n), gauge, b, b)
		}
		t.lo, t.hi = b, b
		return floorMod(b, len(t.vals))
	}
	lo, hi := max(t.lo, w.first()), t.hi
	lo, hi = min(lo, b), max(hi, b)
	if span := hi - lo + 1; span > int64(len(t.vals)) {
		c := len(t.vals)
		for int64(c) < span {
			c *= 2
		}
		t.grow(min(c, w.n), gauge, lo, hi)
	}
	t.lo, t.hi = lo, hi
	return floorMod(b, len(t.vals))
}

// grow moves t's data to storage of c entries, which must hold the span
// [lo, hi].
func (t *track) grow(c int, gauge bool, lo, hi int64) {
	old := *t
	var oc gaugeCounts
	if old.counts != nil {
		oc = *old.counts
	}
	t.vals = newEntries(c)
	t.counts = nil
	if gauge {
		if oc.n32 != nil {
			t.counts = &gaugeCounts{n32: make([]uint32, c)}
		} else {
			t.counts = &gaugeCounts{n16: make([]uint16, c)}
		}
	}
	if old.filled == 0 {
		return
	}
	for b := max(old.lo, lo); b <= min(old.hi, hi); b++ {
		i := floorMod(b, len(old.vals))
		if !old.has(i) {
			continue
		}
		j := floorMod(b, c)
		t.setHas(j, true)
		t.vals[j] = old.vals[i]
		switch {
		case oc.n32 != nil:
			t.counts.n32[j] = oc.n32[i]
		case oc.n16 != nil:
			t.counts.n16[j] = oc.n16[i]
		}
	}
}

// addCount adds readings to the count at index i, widening the counts to
// uint32 when the sum no longer fits in a uint16. A uint32 count wraps as
// it always did.
func (t *track) addCount(i int, readings uint32) {
	c := t.counts
	if c.n32 == nil {
		if s := uint64(c.n16[i]) + uint64(readings); s <= 0xffff {
			c.n16[i] = uint16(s)
			return
		}
		c.n32 = make([]uint32, len(c.n16))
		for j, n := range c.n16 {
			c.n32[j] = uint32(n)
		}
		c.n16 = nil
	}
	c.n32[i] += readings
}

// count returns the count at index i of a gauge track.
func (t *track) count(i int) uint32 {
	if t.counts.n32 != nil {
		return t.counts.n32[i]
	}
	return uint32(t.counts.n16[i])
}

// index returns the index of bucket b in t, and false when t holds no data
// there.
func (t *track) index(b int64) (int, bool) {
	if t.filled == 0 || b < t.lo || b > t.hi {
		return 0, false
	}
	i := floorMod(b, len(t.vals))
	return i, t.has(i)
}

// drop empties bucket b of track tr, if it has data there.
func (w *window) drop(tr int, b int64) {
	t := &w.data[tr]
	i, ok := t.index(b)
	if !ok {
		return
	}
	t.setHas(i, false)
	if t.vals[i] != 0 {
		w.stale = true
	}
	t.vals[i] = 0
	if c := t.counts; c != nil {
		if c.n32 != nil {
			c.n32[i] = 0
		} else {
			c.n16[i] = 0
		}
	}
	if t.filled--; t.filled == 0 {
		*t = track{} // no data left: no storage either
	}
}

// advance moves the head to bucket b, clearing the buckets that leave.
func (w *window) advance(b int64) {
	if !w.init || b <= w.head {
		return
	}
	k := b - w.head
	if k >= int64(w.n) {
		clear(w.data)
		clear(w.total)
		w.seen = nil
		clear(w.seenN)
		w.stale = false
		w.head = b
		return
	}
	// Buckets (head-n, b-n] leave.
	from, to := w.head-int64(w.n)+1, b-int64(w.n)
	for tr := range w.data {
		t := &w.data[tr]
		for e := max(from, t.lo); t.filled > 0 && e <= min(to, t.hi); e++ {
			w.drop(tr, e)
		}
	}
	if w.seen != nil {
		words := w.words() * 64
		for s := w.head + 1; s <= b; s++ {
			slot := w.slot(s)
			for r := 0; r < w.rows; r++ {
				if i := r*words + slot; w.seenBit(i) {
					w.seen[i>>6] &^= 1 << (uint(i) & 63)
					w.seenN[r]--
				}
			}
		}
	}
	w.head = b
}

// sync advances the window to the bucket of now and recomputes the totals
// if buckets left since they were last computed.
func (w *window) sync(now time.Time) {
	if !w.init {
		return
	}
	w.advance(w.bucketOf(now))
	if w.stale {
		for tr := range w.data {
			w.total[tr] = w.resum(&w.data[tr])
		}
		w.stale = false
	}
}

// resum returns the sum of t's values in the order of their slots in the
// window's ring, 0 to n-1, which is the order the totals have always been
// recomputed in: floating-point sums depend on it.
func (w *window) resum(t *track) float64 {
	var s float64
	if t.filled == 0 {
		return s
	}
	if len(t.vals) == w.n {
		for _, v := range t.vals {
			s += v
		}
		return s
	}
	// Entries without data are zero, and adding a zero changes no sum
	// that starts at +0, so only the span is read: from its bucket in
	// slot 0, if any, to hi, then from lo.
	lo := max(t.lo, w.first())
	z := lo + int64((w.n-w.slot(lo))%w.n)
	if z > t.hi {
		z = lo
	}
	for b := z; b <= t.hi; b++ {
		s += t.vals[floorMod(b, len(t.vals))]
	}
	for b := lo; b < z; b++ {
		s += t.vals[floorMod(b, len(t.vals))]
	}
	return s
}

// sum returns the track's total over the window.
func (w *window) sum(track int) float64 {
	if !w.init {
		return 0
	}
	return w.total[track]
}

// coverage returns the share of the window's buckets in which track has
// data.
func (w *window) coverage(track int) float64 {
	if !w.init {
		return 0
	}
	return float64(w.data[track].filled) / float64(w.n)
}

// anyData reports whether the track has data anywhere in the window.
func (w *window) anyData(track int) bool { return w.init && w.data[track].filled > 0 }

// rowCoverage returns the share of the window's buckets in which the meter
// of presence row r reported, and whether it reported at all.
func (w *window) rowCoverage(r int) (float64, bool) {
	if !w.init {
		return 0, false
	}
	return float64(w.seenN[r]) / float64(w.n), w.seenN[r] > 0
}

// at returns the value, count and presence of track in bucket b.
func (w *window) at(track int, b int64) (float64, uint32, bool) {
	if !w.init || b > w.head || b <= w.head-int64(w.n) {
		return 0, 0, false
	}
	t := &w.data[track]
	i, ok := t.index(b)
	if !ok {
		return 0, 0, false
	}
	var c uint32
	if track < w.gauges {
		c = t.count(i)
	}
	return t.vals[i], c, true
}

// first returns the oldest bucket of the window.
func (w *window) first() int64 { return w.head - int64(w.n) + 1 }

// span returns the buckets of the window that may hold t's data, oldest
// first; from > to when none.
func (w *window) span(t *track) (from, to int64) {
	if t.filled == 0 {
		return 1, 0
	}
	return max(t.lo, w.first()), min(t.hi, w.head)
}

// days visits the local days of a gauge track, oldest first, with the sum
// and count of the readings of each day that has any; it returns the number
// of local days the window spans.
func (w *window) days(gauge int, f func(sum float64, count uint32)) int {
	if !w.init {
		return 0
	}
	t := &w.data[gauge]
	from, to := w.span(t)
	day := int64(24 * time.Hour)
	if w.bucket >= day {
		// Every bucket is a local day.
		for b := from; b <= to; b++ {
			i := floorMod(b, len(t.vals))
			if c := t.count(i); c > 0 {
				f(t.vals[i], c)
			}
		}
		return w.n
	}
	perDay := day / w.bucket
	var sum float64
	var cnt uint32
	d := floorDiv(from, perDay)
	for b := from; b <= to; b++ {
		if bd := floorDiv(b, perDay); bd != d {
			if cnt > 0 {
				f(sum, cnt)
			}
			sum, cnt, d = 0, 0, bd
		}
		i := floorMod(b, len(t.vals))
		if c := t.count(i); c > 0 {
			sum += t.vals[i]
			cnt += c
		}
	}
	if cnt > 0 {
		f(sum, cnt)
	}
	return int(floorDiv(w.head, perDay) - floorDiv(w.first(), perDay) + 1)
}

// gaugeSums returns the sum of values and the number of readings of a
// gauge track over the window.
func (w *window) gaugeSums(gauge int) (float64, uint64) {
	if !w.init {
		return 0, 0
	}
	t := &w.data[gauge]
	var n uint64
	if c := t.counts; c != nil {
		for _, k := range c.n16 {
			n += uint64(k)
		}
		for _, k := range c.n32 {
			n += uint64(k)
		}
	}
	return w.total[gauge], n
}

// load returns Σ over buckets of the gauge's mean concentration x the flow
// in the bucket. A bucket with flow but no concentration reading uses the
// latest earlier mean (analysers report less often than flow meters); flow
// before the first reading of the window uses the first mean.
func (w *window) load(gauge, flow int) float64 {
	if !w.init {
		return 0
	}
	var total, conc, pending float64 // pending: flow seen before the first concentration
	known := false
	g, fl := &w.data[gauge], &w.data[flow]
	gFrom, gTo := w.span(g)
	fFrom, fTo := w.span(fl)
	from, to := gFrom, gTo // buckets outside both spans change nothing
	switch {
	case gFrom > gTo:
		from, to = fFrom, fTo
	case fFrom <= fTo:
		from, to = min(gFrom, fFrom), max(gTo, fTo)
	}
	for b := from; b <= to; b++ {
		if b >= gFrom && b <= gTo {
			i := floorMod(b, len(g.vals))
			if c := g.count(i); c > 0 {
				conc = g.vals[i] / float64(c)
				if !known {
					total += pending * conc
					pending, known = 0, true
				}
			}
		}
		if b < fFrom || b > fTo {
			continue
		}
		if f := fl.vals[floorMod(b, len(fl.vals))]; f != 0 {
			if known {
				total += f * conc
			} else {
				pending += f
			}
		}
	}
	return total
}

// clearBucket empties bucket b, so that it can be read again from the store.
func (w *window) clearBucket(b int64) {
	if !w.init || b > w.head || b <= w.head-int64(w.n) {
		return
	}
	for tr := range w.data {
		w.drop(tr, b)
	}
	if w.seen == nil {
		return
	}
	slot, words := w.slot(b), w.words()*64
	for r := 0; r < w.rows; r++ {
		if i := r*words + slot; w.seenBit(i) {
			w.seen[i>>6] &^= 1 << (uint(i) & 63)
			w.seenN[r]--
		}
	}
}

// hasBucket reports whether any track holds data in bucket b.
func (w *window) hasBucket(b int64) bool {
	if !w.init || b > w.head || b <= w.head-int64(w.n) {
		return false
	}
	for tr := range w.data {
		if _, ok := w.data[tr].index(b); ok {
			return true
		}
	}
	return false
}

// mergeBucket adds what src (a window of the same shape) holds in bucket
// b to w: each track's sum and readings, and the presence rows.
func (w *window) mergeBucket(src *window, b int64) { w.addBucket(src, b, b) }

// addBucket adds what src (a window of the same tracks and rows, perhaps
// of a finer bucket) holds in its bucket sb to w's bucket b.
func (w *window) addBucket(src *window, sb, b int64) {
	if !src.init || sb > src.head || sb <= src.head-int64(src.n) {
		return
	}
	for tr := range src.data {
		if v, c, ok := src.at(tr, sb); ok {
			w.add(tr, b, v, c)
		}
	}
	if src.seen == nil {
		return
	}
	for r := 0; r < src.rows; r++ {
		if src.seenBit(r*src.words()*64 + src.slot(sb)) {
			w.mark(r, b)
		}
	}
}

// fillFrom sets bucket b of w, emptied, to what the finer window f holds
// in the buckets b spans, and reports whether it could: f's buckets must
// divide w's, and every one of them that b spans must be f's to hold
// (none older than f's oldest). The sums, readings and presence of a
// coarse bucket are those of the fine buckets it is made of, as the
// refill builds it from the fine rows.
func (w *window) fillFrom(f *window, b int64) bool {
	if !f.init || w.bucket%f.bucket != 0 || w.offset != f.offset {
		return false
	}
	lo, hi := f.bucketOf(w.bucketStart(b)), f.bucketOf(w.bucketStart(b+1))
	if lo < f.first() {
		return false
	}
	for sb := lo; sb < hi && sb <= f.head; sb++ {
		w.addBucket(f, sb, b)
	}
	return true
}
