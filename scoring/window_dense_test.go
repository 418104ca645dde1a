package scoring

import "time"

// denseWindow is the window as it was before its storage followed the data:
// every buffer allocated in full at the first reading. It is kept as the
// reference the randomized test compares window with.
type denseWindow struct {
	n      int   // buckets
	bucket int64 // bucket length, ns
	offset int64 // UTC offset of local time, ns
	tracks int
	gauges int // tracks [0, gauges) are gauge tracks with counts
	rows   int // presence rows

	init   bool
	head   int64     // newest bucket number
	vals   []float64 // track*n + slot
	counts []uint32  // gauge*n + slot
	has    []uint64  // bitset over track*n + slot
	total  []float64 // per track: Σ vals, valid unless stale
	filled []int32   // per track: buckets with data
	stale  bool      // totals need recomputing after an eviction
	seen   []uint64  // bitset over row*n + slot: the meter of the presence row reported
	seenN  []int32   // per presence row: buckets with data
}

func newDenseWindow(w Window, offset time.Duration, tracks, gauges, rows int) *denseWindow {
	return &denseWindow{n: w.Buckets(), bucket: int64(w.Bucket), offset: int64(offset), tracks: tracks, gauges: gauges, rows: rows}
}

// bucketOf returns the bucket number of t: buckets are aligned to local
// time, so a daily bucket is a local calendar day.
func (w *denseWindow) bucketOf(t time.Time) int64 {
	return floorDiv(t.UnixNano()+w.offset, w.bucket)
}

// bucketStart returns the start time of bucket b.
func (w *denseWindow) bucketStart(b int64) time.Time {
	return time.Unix(0, b*w.bucket-w.offset).UTC()
}

func (w *denseWindow) slot(b int64) int {
	s := b % int64(w.n)
	if s < 0 {
		s += int64(w.n)
	}
	return int(s)
}

func (w *denseWindow) alloc(head int64) {
	w.init = true
	w.head = head
	w.vals = make([]float64, w.tracks*w.n)
	w.counts = make([]uint32, w.gauges*w.n)
	w.has = make([]uint64, (w.tracks*w.n+63)/64)
	w.total = make([]float64, w.tracks)
	w.filled = make([]int32, w.tracks)
	w.seen = make([]uint64, (w.rows*w.n+63)/64)
	w.seenN = make([]int32, w.rows)
}

// bytes returns the memory held by the window's buffers.
func (w *denseWindow) bytes() int {
	return 8*len(w.vals) + 4*len(w.counts) + 8*len(w.has) + 8*len(w.total) + 4*len(w.filled) + 8*len(w.seen) + 4*len(w.seenN)
}

func (w *denseWindow) hasBit(i int) bool { return w.has[i>>6]&(1<<(uint(i)&63)) != 0 }

func (w *denseWindow) seenBit(i int) bool { return w.seen[i>>6]&(1<<(uint(i)&63)) != 0 }

// reach makes bucket b part of the window: it allocates the window at its
// first bucket and advances it when b is newer than its head. It returns
// false when b is older than the window.
func (w *denseWindow) reach(b int64) bool {
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
func (w *denseWindow) mark(r int, b int64) bool {
	if !w.reach(b) {
		return false
	}
	i := r*w.n + w.slot(b)
	if !w.seenBit(i) {
		w.seen[i>>6] |= 1 << (uint(i) & 63)
		w.seenN[r]++
	}
	return true
}

// add adds v (and, for a gauge track, one reading) to track at bucket b. It
// advances the window when b is newer than its head, and returns false when
// b is older than the window.
func (w *denseWindow) add(track int, b int64, v float64, readings uint32) bool {
	if !w.reach(b) {
		return false
	}
	i := track*w.n + w.slot(b)
	if !w.hasBit(i) {
		w.has[i>>6] |= 1 << (uint(i) & 63)
		w.filled[track]++
	}
	w.vals[i] += v
	if !w.stale {
		w.total[track] += v
	}
	if track < w.gauges {
		w.counts[i] += readings
	}
	return true
}

// advance moves the head to bucket b, clearing the buckets that leave.
func (w *denseWindow) advance(b int64) {
	if !w.init || b <= w.head {
		return
	}
	k := b - w.head
	if k >= int64(w.n) {
		clear(w.vals)
		clear(w.counts)
		clear(w.has)
		clear(w.total)
		clear(w.filled)
		clear(w.seen)
		clear(w.seenN)
		w.stale = false
		w.head = b
		return
	}
	for s := w.head + 1; s <= b; s++ {
		slot := w.slot(s)
		for t := 0; t < w.tracks; t++ {
			i := t*w.n + slot
			if w.hasBit(i) {
				w.has[i>>6] &^= 1 << (uint(i) & 63)
				w.filled[t]--
				if w.vals[i] != 0 {
					w.stale = true
				}
				w.vals[i] = 0
			}
		}
		for g := 0; g < w.gauges; g++ {
			w.counts[g*w.n+slot] = 0
		}
		for r := 0; r < w.rows; r++ {
			if i := r*w.n + slot; w.seenBit(i) {
				w.seen[i>>6] &^= 1 << (uint(i) & 63)
				w.seenN[r]--
			}
		}
	}
	w.head = b
}

// sync advances the window to the bucket of now and recomputes the totals
// if buckets left since they were last computed.
func (w *denseWindow) sync(now time.Time) {
	if !w.init {
		return
	}
	w.advance(w.bucketOf(now))
	if w.stale {
		for t := 0; t < w.tracks; t++ {
			var s float64
			for _, v := range w.vals[t*w.n : (t+1)*w.n] {
				s += v
			}
			w.total[t] = s
		}
		w.stale = false
	}
}

// sum returns the track's total over the window.
func (w *denseWindow) sum(track int) float64 {
	if !w.init {
		return 0
	}
	return w.total[track]
}

// coverage returns the share of the window's buckets in which track has
// data.
func (w *denseWindow) coverage(track int) float64 {
	if !w.init {
		return 0
	}
	return float64(w.filled[track]) / float64(w.n)
}

// anyData reports whether the track has data anywhere in the window.
func (w *denseWindow) anyData(track int) bool { return w.init && w.filled[track] > 0 }

// rowCoverage returns the share of the window's buckets in which the meter
// of presence row r reported, and whether it reported at all.
func (w *denseWindow) rowCoverage(r int) (float64, bool) {
	if !w.init {
		return 0, false
	}
	return float64(w.seenN[r]) / float64(w.n), w.seenN[r] > 0
}

// at returns the value, count and presence of track in bucket b.
func (w *denseWindow) at(track int, b int64) (float64, uint32, bool) {
	if !w.init || b > w.head || b <= w.head-int64(w.n) {
		return 0, 0, false
	}
	i := track*w.n + w.slot(b)
	if !w.hasBit(i) {
		return 0, 0, false
	}
	var c uint32
	if track < w.gauges {
		c = w.counts[i]
	}
	return w.vals[i], c, true
}

// first returns the oldest bucket of the window.
func (w *denseWindow) first() int64 { return w.head - int64(w.n) + 1 }

// days visits the local days of a gauge track, oldest first, with the sum
// and count of the readings of each day that has any; it returns the number
// of local days the window spans.
func (w *denseWindow) days(gauge int, f func(sum float64, count uint32)) int {
	if !w.init {
		return 0
	}
	day := int64(24 * time.Hour)
	if w.bucket >= day {
		// Every bucket is a local day.
		base := gauge * w.n
		slot := w.slot(w.first())
		for range w.n {
			if c := w.counts[base+slot]; c > 0 {
				f(w.vals[base+slot], c)
			}
			if slot++; slot == w.n {
				slot = 0
			}
		}
		return w.n
	}
	perDay := int(day / w.bucket)
	first := w.first()
	inDay := int(first - floorDiv(first, int64(perDay))*int64(perDay)) // position of the first bucket in its day
	base := gauge * w.n
	slot := w.slot(first)
	var sum float64
	var cnt uint32
	spanned := 1
	for range w.n {
		if inDay == perDay {
			if cnt > 0 {
				f(sum, cnt)
			}
			sum, cnt, inDay = 0, 0, 0
			spanned++
		}
		if c := w.counts[base+slot]; c > 0 {
			sum += w.vals[base+slot]
			cnt += c
		}
		inDay++
		if slot++; slot == w.n {
			slot = 0
		}
	}
	if cnt > 0 {
		f(sum, cnt)
	}
	return spanned
}

// gaugeSums returns the sum of values and the number of readings of a
// gauge track over the window.
func (w *denseWindow) gaugeSums(gauge int) (float64, uint64) {
	if !w.init {
		return 0, 0
	}
	var n uint64
	for _, c := range w.counts[gauge*w.n : (gauge+1)*w.n] {
		n += uint64(c)
	}
	return w.total[gauge], n
}

// load returns Σ over buckets of the gauge's mean concentration x the flow
// in the bucket. A bucket with flow but no concentration reading uses the
// latest earlier mean (analysers report less often than flow meters); flow
// before the first reading of the window uses the first mean.
func (w *denseWindow) load(gauge, flow int) float64 {
	if !w.init {
		return 0
	}
	var total, conc, pending float64 // pending: flow seen before the first concentration
	known := false
	gb, fb := gauge*w.n, flow*w.n
	slot := w.slot(w.first())
	for range w.n {
		if c := w.counts[gb+slot]; c > 0 {
			conc = w.vals[gb+slot] / float64(c)
			if !known {
				total += pending * conc
				pending, known = 0, true
			}
		}
		if f := w.vals[fb+slot]; f != 0 {
			if known {
				total += f * conc
			} else {
				pending += f
			}
		}
		if slot++; slot == w.n {
			slot = 0
		}
	}
	return total
}

// clearBucket empties bucket b, so that it can be read again from the store.
func (w *denseWindow) clearBucket(b int64) {
	if !w.init || b > w.head || b <= w.head-int64(w.n) {
		return
	}
	slot := w.slot(b)
	for t := 0; t < w.tracks; t++ {
		i := t*w.n + slot
		if w.hasBit(i) {
			w.has[i>>6] &^= 1 << (uint(i) & 63)
			w.filled[t]--
			if w.vals[i] != 0 {
				w.stale = true
			}
			w.vals[i] = 0
		}
	}
	for g := 0; g < w.gauges; g++ {
		w.counts[g*w.n+slot] = 0
	}
	for r := 0; r < w.rows; r++ {
		if i := r*w.n + slot; w.seenBit(i) {
			w.seen[i>>6] &^= 1 << (uint(i) & 63)
			w.seenN[r]--
		}
	}
}
