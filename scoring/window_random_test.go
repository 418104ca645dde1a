package scoring

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestWindowMatchesDense drives window and denseWindow, the layout it
// replaced, with the same random operations: adds of every kind, heads
// that creep, jump and leap past the window, cleared buckets, buckets out
// of range; after each operation every query must answer the same, bit for
// bit.
func TestWindowMatchesDense(t *testing.T) {
	specs := []struct {
		win                  Window
		tracks, gauges, rows int
	}{
		{Window{Name: "tiny", Length: 4 * time.Hour, Bucket: time.Hour}, 3, 1, 2},
		{Window{Name: "live", Length: 30 * 24 * time.Hour, Bucket: time.Hour}, 6, 3, 3},
		{Window{Name: "official", Length: 365 * 24 * time.Hour, Bucket: 24 * time.Hour}, 5, 2, 2},
		{Window{Name: "odd", Length: 70 * time.Hour, Bucket: 7 * time.Hour}, 4, 2, 1},
		{Window{Name: "quarter", Length: 3 * 24 * time.Hour, Bucket: 15 * time.Minute}, 4, 2, 2},
		{Window{Name: "two-day", Length: 48 * 24 * time.Hour, Bucket: 48 * time.Hour}, 3, 1, 1},
	}
	seeds := uint64(12)
	if raceEnabled {
		seeds = 3
	}
	for _, sp := range specs {
		for seed := range seeds {
			t.Run(fmt.Sprintf("%s/%d", sp.win.Name, seed), func(t *testing.T) {
				t.Parallel()
				r := rand.New(rand.NewPCG(seed, 42))
				offset := time.Duration(r.IntN(24)-12) * time.Hour
				w := newWindow(sp.win, offset, sp.tracks, sp.gauges, sp.rows)
				d := newDenseWindow(sp.win, offset, sp.tracks, sp.gauges, sp.rows)
				n := int64(d.n)
				start := d.bucketOf(t0) + int64(r.IntN(1000)) - 500
				if seed%5 == 0 {
					start = -start // buckets before 1970 too
				}
				var ops []string
				check := func() {
					t.Helper()
					every := len(ops)%64 == 0 // every bucket now and then, else a few
					if err := compareWindows(w, d, r, every); err != nil {
						t.Fatalf("%v\nafter %d operations, the last %q", err, len(ops), ops[max(0, len(ops)-8):])
					}
				}
				check()
				// near picks a bucket around the head: mostly in the window,
				// sometimes just past either end or far away.
				near := func() int64 {
					head := start
					if d.init {
						head = d.head
					}
					switch x := r.IntN(20); {
					case x == 0:
						return head - n - int64(r.IntN(int(n)+1)) // older than the window
					case x == 1:
						return head + int64(r.IntN(3)) + 1 // one step ahead
					case x == 2:
						return head - n + int64(r.IntN(3)) // at the window's old end
					default:
						return head - int64(r.IntN(int(n)))
					}
				}
				value := func() float64 {
					switch r.IntN(8) {
					case 0:
						return 0
					case 1:
						return math.Copysign(0, -1)
					case 2:
						return float64(r.IntN(100)) // small integers
					case 3:
						return -r.Float64() * 1e3
					default:
						return r.Float64()*math.Pow(10, float64(r.IntN(12)-4)) + 1e-3*r.NormFloat64()
					}
				}
				steps := 3000
				if n > 500 {
					steps = 6000
				}
				for range steps {
					switch op := r.IntN(100); {
					case op < 55:
						tr, b, v := r.IntN(sp.tracks), near(), value()
						var c uint32
						switch x := r.IntN(40); {
						case x == 0:
							c = 70000 // beyond uint16 at once
						case x == 1:
							c = math.MaxUint32 - 3 // wraps as uint32 does
						case x < 10:
							c = 0
						default:
							c = uint32(r.IntN(3) + 1)
						}
						if tr < sp.gauges && r.IntN(4) == 0 {
							c += 30000 // grows past uint16 in a few adds
						}
						ops = append(ops, fmt.Sprintf("add(%d, %d, %v, %d)", tr, b, v, c))
						if got, want := w.add(tr, b, v, c), d.add(tr, b, v, c); got != want {
							t.Fatalf("%s: got %v, want %v", ops[len(ops)-1], got, want)
						}
					case op < 67:
						row, b := r.IntN(sp.rows), near()
						ops = append(ops, fmt.Sprintf("mark(%d, %d)", row, b))
						if got, want := w.mark(row, b), d.mark(row, b); got != want {
							t.Fatalf("%s: got %v, want %v", ops[len(ops)-1], got, want)
						}
					case op < 75:
						b := near()
						ops = append(ops, fmt.Sprintf("clearBucket(%d)", b))
						w.clearBucket(b)
						d.clearBucket(b)
					case op < 90:
						// sync at a time in the head's bucket or a few later
						head := d.head
						steps := int64(r.IntN(3))
						if r.IntN(10) == 0 {
							steps = int64(r.IntN(int(n)))
						}
						at := d.bucketStart(head + steps).Add(time.Duration(r.Int64N(d.bucket)))
						ops = append(ops, fmt.Sprintf("sync(bucket %d)", head+steps))
						w.sync(at)
						d.sync(at)
					case op < 97:
						b := d.head + int64(r.IntN(4))
						ops = append(ops, fmt.Sprintf("advance(%d)", b))
						w.advance(b)
						d.advance(b)
					case op < 99:
						b := d.head + n/2 + int64(r.IntN(int(n))) // a gap, maybe longer than the window
						ops = append(ops, fmt.Sprintf("advance(%d)", b))
						w.advance(b)
						d.advance(b)
					default:
						// a burst of a whole span of one track, hour after hour
						tr := r.IntN(sp.tracks)
						from := near()
						for b := from; b < from+int64(r.IntN(int(n))); b++ {
							v := value()
							w.add(tr, b, v, 1)
							d.add(tr, b, v, 1)
						}
						ops = append(ops, fmt.Sprintf("burst(%d from %d)", tr, from))
					}
					check()
				}
			})
		}
	}
}

// compareWindows returns where w answers differently from the reference.
// It reads every bucket with at when every is set, else a few.
func compareWindows(w *window, d *denseWindow, r *rand.Rand, every bool) error {
	same := func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }
	if w.init != d.init || w.head != d.head || w.first() != d.first() {
		return fmt.Errorf("init %v head %d first %d, want %v %d %d", w.init, w.head, w.first(), d.init, d.head, d.first())
	}
	for tr := range d.tracks {
		if got, want := w.sum(tr), d.sum(tr); !same(got, want) {
			return fmt.Errorf("track %d: sum %v, want %v", tr, got, want)
		}
		if got, want := w.coverage(tr), d.coverage(tr); !same(got, want) {
			return fmt.Errorf("track %d: coverage %v, want %v", tr, got, want)
		}
		if got, want := w.anyData(tr), d.anyData(tr); got != want {
			return fmt.Errorf("track %d: anyData %v, want %v", tr, got, want)
		}
		step := int64(1)
		if !every {
			step = int64(d.n/8 + 1 + r.IntN(3))
		}
		for b := d.head - int64(d.n) - 2 + int64(r.IntN(int(step))); b <= d.head+2; b += step {
			gv, gc, gok := w.at(tr, b)
			wv, wc, wok := d.at(tr, b)
			if !same(gv, wv) || gc != wc || gok != wok {
				return fmt.Errorf("track %d bucket %d: at %v %d %v, want %v %d %v", tr, b, gv, gc, gok, wv, wc, wok)
			}
		}
	}
	for g := range d.gauges {
		gs, gn := w.gaugeSums(g)
		ws, wn := d.gaugeSums(g)
		if !same(gs, ws) || gn != wn {
			return fmt.Errorf("gauge %d: gaugeSums %v %d, want %v %d", g, gs, gn, ws, wn)
		}
		type day struct {
			sum float64
			n   uint32
		}
		var got, want []day
		gd := w.days(g, func(s float64, n uint32) { got = append(got, day{s, n}) })
		wd := d.days(g, func(s float64, n uint32) { want = append(want, day{s, n}) })
		if gd != wd || len(got) != len(want) {
			return fmt.Errorf("gauge %d: days %d %v, want %d %v", g, gd, got, wd, want)
		}
		for i := range got {
			if !same(got[i].sum, want[i].sum) || got[i].n != want[i].n {
				return fmt.Errorf("gauge %d: days %v, want %v", g, got, want)
			}
		}
		for f := range d.tracks {
			if !every && f != r.IntN(d.tracks) {
				continue
			}
			if got, want := w.load(g, f), d.load(g, f); !same(got, want) {
				return fmt.Errorf("load(%d, %d): %v, want %v", g, f, got, want)
			}
		}
	}
	for row := range d.rows {
		gc, gok := w.rowCoverage(row)
		wc, wok := d.rowCoverage(row)
		if !same(gc, wc) || gok != wok {
			return fmt.Errorf("row %d: coverage %v %v, want %v %v", row, gc, gok, wc, wok)
		}
	}
	return nil
}
