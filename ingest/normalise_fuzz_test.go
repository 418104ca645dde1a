package ingest

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/store"
)

// fuzzMeters are the meters of the ingest test registry FuzzNormalise
// feeds: counters with a rollover, a unit conversion, a max_rate and a
// declared replacement, a plain counter, a delta meter and a gauge.
var fuzzMeters = []string{"E-1", "E-MWH", "E-CAPPED", "E-SWAP", "W-FRESH", "HW", "COD-OUT", "WW-OUT"}

// fuzzNow is the arrival time of every message. E-SWAP's replacement
// (2026-11-29T06:30Z) lies inside the readings' span.
var fuzzNow = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// fuzzReadingSize is the bytes one reading takes from the fuzzer's input.
const fuzzReadingSize = 6

// fuzzMessages turns the fuzzer's bytes into telemetry messages of gw-1.
// Each reading takes six bytes:
//
//	b0       meter (low 3 bits); bit 6: redeliver the message right after it
//	         is processed; bit 7: the message ends after this reading
//	b1..b2   minutes after now-60h (mod 3 days: some are in the future)
//	b3..b5   the value: a signed 24-bit integer, in quarter units
//
// It returns the payloads and whether each is redelivered at once.
func fuzzMessages(data []byte) (payloads [][]byte, redeliver []bool) {
	t0 := fuzzNow.Add(-60 * time.Hour)
	var readings []string
	seq := 0
	flush := func(again bool) {
		if len(readings) == 0 {
			return
		}
		seq++
		payloads = append(payloads, []byte(fmt.Sprintf(`{"gateway":"gw-1","seq":%d,"readings":[%s]}`, seq, strings.Join(readings, ","))))
		redeliver = append(redeliver, again)
		readings = readings[:0]
	}
	for len(data) >= fuzzReadingSize {
		b := data[:fuzzReadingSize]
		data = data[fuzzReadingSize:]
		meter := fuzzMeters[int(b[0]&7)%len(fuzzMeters)]
		minutes := int(binary.BigEndian.Uint16(b[1:3])) % (3 * 24 * 60)
		raw := int32(uint32(b[3])<<24|uint32(b[4])<<16|uint32(b[5])<<8) >> 8 // sign-extended 24 bits
		ts := t0.Add(time.Duration(minutes) * time.Minute).Format(time.RFC3339)
		readings = append(readings, fmt.Sprintf(`{"meter":%q,"ts":%q,"value":%g}`, meter, ts, float64(raw)/4))
		if b[0]&0x80 != 0 {
			flush(b[0]&0x40 != 0)
		}
	}
	flush(false)
	return payloads, redeliver
}

// fuzzReading encodes one reading the way fuzzMessages decodes it, for
// seeds.
func fuzzReading(meter int, minutes int, value float64, end, redeliver bool) []byte {
	b := make([]byte, fuzzReadingSize)
	b[0] = byte(meter)
	if end {
		b[0] |= 0x80
	}
	if redeliver {
		b[0] |= 0x40
	}
	binary.BigEndian.PutUint16(b[1:3], uint16(minutes))
	raw := uint32(int32(value * 4))
	b[3], b[4], b[5] = byte(raw>>16), byte(raw>>8), byte(raw)
	return b
}

func fuzzSeed(rs ...[]byte) []byte {
	var out []byte
	for _, r := range rs {
		out = append(out, r...)
	}
	return out
}

// FuzzNormalise feeds the Normaliser sequences of counter, delta and gauge
// readings of gw-1 (in and out of order, repeated, reset, rolled over,
// across a declared meter replacement, redelivered) and checks:
//
// The Normaliser's store look-up (for readings older than its history) sees
// what was written up to the last batch, as in the pipeline, which writes a
// batch of messages after normalising them all: the fuzzer picks the batch
// size (1 to 4 messages).
//
//   - it never panics;
//   - no negative, infinite or NaN delta or value is ever written, and no
//     non-finite amount is observed;
//   - per meter, the amounts told to the scorer add up to the deltas the
//     store holds in the end (a rewrite of a key replaces it);
//   - a register or gauge value once written never changes (a rewrite of
//     a key changes its delta only);
//   - a message redelivered right after it was processed changes nothing
//     it accepted: every reading it accepted is a duplicate now. A counter
//     reading it rejected as counter_jump may be accepted now, and no
//     other: readings are placed one by one in message order, and the
//     message's other readings, placed since, may be the neighbours that
//     make it fit (a reset instead of a misfit across a declared
//     replacement). That adds a reading; it counts nothing twice (the sums
//     above hold).
func FuzzNormalise(f *testing.F) {
	const (
		e1 = iota
		eMWh
		eCapped
		eSwap
		wFresh
		hw
		cod
		wwOut
	)
	base := 2 * 24 * 60 // minutes: fuzzNow - 12h
	f.Add(fuzzSeed(
		fuzzReading(e1, base, 100, false, false), fuzzReading(e1, base+15, 150, true, true),
		fuzzReading(e1, base+45, 250, true, false), fuzzReading(e1, base+30, 200, true, true), // late
		fuzzReading(e1, base+30, 200, true, false), // again
	), uint8(8), uint8(0))
	f.Add(fuzzSeed( // a wrap after 999999 kWh, then a reset, then a register above the rollover
		fuzzReading(e1, base, 999900, true, false), fuzzReading(e1, base+15, 1, true, false),
		fuzzReading(e1, base+30, 0, true, false), fuzzReading(e1, base+45, 2000000, true, false),
	), uint8(4), uint8(1))
	f.Add(fuzzSeed( // E-SWAP across its replacement at 06:30, out of order
		fuzzReading(eSwap, 18*60+15, 4900, false, false), fuzzReading(eSwap, 18*60+45, 20, true, false),
		fuzzReading(eSwap, 18*60+35, 12, true, true), fuzzReading(eSwap, 18*60+25, 4990, true, false),
	), uint8(3), uint8(2))
	f.Add(fuzzSeed( // E-CAPPED: newest first within a message, one jump
		fuzzReading(eCapped, base+20, 1000, false, false), fuzzReading(eCapped, base+10, 120, false, false),
		fuzzReading(eCapped, base, 100, true, true),
	), uint8(32), uint8(3))
	f.Add(fuzzSeed( // the other kinds, duplicates in one message, negatives
		fuzzReading(hw, base, 0.5, false, false), fuzzReading(hw, base, 0.5, false, false), fuzzReading(hw, base+1, -1, false, false),
		fuzzReading(cod, base, 41.75, false, false), fuzzReading(cod, base, 50, false, false),
		fuzzReading(wFresh, base, 1000, false, false), fuzzReading(wwOut, base, 7, false, false), fuzzReading(eMWh, base, 2.5, true, true),
	), uint8(2), uint8(0))
	f.Add(fuzzSeed( // HW (delta) past a history of 2, then an older reading, redelivered before its batch is stored
		fuzzReading(hw, base, 1, true, false), fuzzReading(hw, base+1, 1, true, false), fuzzReading(hw, base+2, 1, true, false),
		fuzzReading(hw, base-10, 0.5, true, true), fuzzReading(hw, base-10, 0.5, true, false),
	), uint8(0), uint8(3))
	reg := testRegistry(f) // immutable: shared by the fuzzing workers' calls
	f.Fuzz(func(t *testing.T, data []byte, history uint8, batch uint8) {
		if len(data) > 128*fuzzReadingSize {
			return // longer inputs find nothing new and slow the search
		}
		type key struct {
			meter string
			t     int64
		}
		stored := map[key]store.Reading{}       // the store: the last reading written per key
		registered := map[key]bool{}            // InfluxDB holds the counter reading's register field
		var pending, pendingObs []store.Reading // written, in a batch not yet stored; their amounts
		observed := map[string]float64{}        // the scorer: the sum of amounts per meter, once stored
		scale := map[string]float64{}           // sum of |amounts|, for the float tolerance
		values := map[key]float64{}             // the register or value ever written per key
		// With batch's high bit the store refuses, for good, every counter
		// reading of a minute that is 1 mod 3 (as a retention policy
		// refuses old points): the pipeline then has the normaliser forget
		// them and writes its rewrites as a batch of their own.
		refuses := func(w store.Reading) bool {
			return batch&0x80 != 0 && w.Kind == "counter" && w.Time.Unix()/60%3 == 1
		}
		var n *Normaliser
		flush := func() {
			for len(pending) > 0 {
				var refused []store.Reading
				refusedBatch := slices.ContainsFunc(pending, refuses)
				for i, w := range pending {
					if refusedBatch {
						w.Chained = false // as Pipeline.writeEach writes a refused batch again
					}
					k := key{w.Meter, w.Time.UnixNano()}
					if refuses(w) {
						refused = append(refused, w)
						delete(values, k) // never was: another value may come
						continue
					}
					stored[k] = w
					if w.Kind == "counter" && !w.Chained {
						registered[k] = true // a field once written stays
					}
					o := pendingObs[i]
					observed[o.Meter] += o.Delta
					scale[o.Meter] += math.Abs(o.Delta)
				}
				pending, pendingObs = pending[:0], pendingObs[:0]
				if len(refused) > 0 {
					n.forget(refused, &pending, &pendingObs)
					if len(pending) != len(pendingObs) {
						t.Fatalf("forgetting %d refused readings wrote %d and told the scorer %d", len(refused), len(pending), len(pendingObs))
					}
				}
			}
		}
		lookup := func(_ context.Context, enterprise string, meters []string, from, to time.Time) ([]store.Reading, error) {
			var rs []store.Reading
			for k, r := range stored {
				if r.Enterprise == enterprise && slices.Contains(meters, k.meter) && !r.Time.Before(from) && !r.Time.After(to) {
					rs = append(rs, r)
				}
			}
			return rs, nil
		}
		cfg := NormaliserConfig{FutureHorizon: 5 * time.Minute, PastHorizon: 30 * 24 * time.Hour, History: 2 + int(history%32), Lookup: lookup}
		n = NewNormaliser(reg, cfg)
		payloads, redeliver := fuzzMessages(data)
		every := 1 + int(batch%4)
		process := func(i int, p []byte, redelivery bool) Outcome {
			var write, observe []store.Reading
			out, derr := n.Process(topicA, p, redelivery, fuzzNow, &write, &observe)
			if derr != nil {
				t.Fatalf("message %d rejected whole: %v\n%s", i, derr, p)
			}
			for _, w := range write {
				if !(w.Delta >= 0) || math.IsInf(w.Delta, 0) || math.IsNaN(w.Value) || math.IsInf(w.Value, 0) {
					t.Fatalf("message %d wrote %s at %s value %g delta %g\n%s", i, w.Meter, w.Time.Format(time.RFC3339), w.Value, w.Delta, p)
				}
				k := key{w.Meter, w.Time.UnixNano()}
				if v, ok := values[k]; ok && v != w.Value {
					t.Fatalf("message %d (redelivery %v) rewrote %s at %s from %g to %g\n%s", i, redelivery, w.Meter, w.Time.Format(time.RFC3339), v, w.Value, p)
				}
				values[k] = w.Value
			}
			if len(write) != len(observe) {
				t.Fatalf("message %d wrote %d readings and told the scorer %d amounts\n%s", i, len(write), len(observe), p)
			}
			pending, pendingObs = append(pending, write...), append(pendingObs, observe...)
			for _, o := range observe {
				if math.IsNaN(o.Delta) || math.IsInf(o.Delta, 0) {
					t.Fatalf("message %d observed %s amount %g\n%s", i, o.Meter, o.Delta, p)
				}
			}
			if out.Accepted == 0 && (len(write) > 0 || len(observe) > 0) {
				t.Fatalf("message %d: nothing accepted, %d written, %d observed\n%s", i, len(write), len(observe), p)
			}
			return out
		}
		for i, p := range payloads {
			first := process(i, p, false)
			if redeliver[i] {
				again := process(i, p, true)
				jumps := 0
				for _, r := range first.Rejects {
					if r.Reason == ReasonCounterJump {
						jumps++
					}
				}
				if again.Duplicates < first.Accepted || again.Accepted > jumps {
					t.Fatalf("message %d: accepted %d (%d rejected as %s), redelivered at once: %d duplicates, %d accepted\n%s",
						i, first.Accepted, jumps, ReasonCounterJump, again.Duplicates, again.Accepted, p)
				}
			}
			if (i+1)%every == 0 {
				flush()
			}
		}
		flush()
		sums := map[string]float64{}
		for k, r := range stored {
			sums[k.meter] += r.Delta
		}
		for _, m := range fuzzMeters {
			if diff := math.Abs(sums[m] - observed[m]); diff > 1e-9*(1+scale[m]) {
				t.Fatalf("%s: stored deltas add up to %g, the scorer was told %g", m, sums[m], observed[m])
			}
		}
		// Every counter reading InfluxDB keeps without its register
		// (store.Reading.Chained) is rebuilt exactly from the stored one
		// before it, of the same UTC hour.
		keys := slices.SortedFunc(maps.Keys(stored), func(a, b key) int {
			return cmp.Or(strings.Compare(a.meter, b.meter), cmp.Compare(a.t, b.t))
		})
		for i, k := range keys {
			r := stored[k]
			if r.Kind != "counter" || registered[k] {
				continue
			}
			if i == 0 || keys[i-1].meter != k.meter {
				t.Fatalf("%s at %s is stored without its register and nothing before it", k.meter, r.Time.Format(time.RFC3339))
			}
			p := stored[keys[i-1]]
			if p.Time.Truncate(time.Hour) != r.Time.Truncate(time.Hour) || p.Value+r.Delta != r.Value {
				t.Fatalf("%s at %s is stored without its register %g, and the one before it (%g at %s) plus its delta %g is %g",
					k.meter, r.Time.Format(time.RFC3339), r.Value, p.Value, p.Time.Format(time.RFC3339), r.Delta, p.Value+r.Delta)
			}
		}
	})
}

// A counter register above the meter's declared rollover was taken, and
// the next reading below it made a negative "rollover" delta (found by
// FuzzNormalise): E-1 shows at most 999999 kWh.
func TestNormaliseRegisterAboveRollover(t *testing.T) {
	n := NewNormaliser(testRegistry(t), testConfig)
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	var write, observe []store.Reading
	out, derr := n.Process(topicA, payload(1, reading("E-1", now.Add(-time.Hour), 2000000), reading("E-1", now.Add(-time.Hour+time.Minute), 10)), false, now, &write, &observe)
	if derr != nil {
		t.Fatal(derr)
	}
	if len(out.Rejects) != 1 || out.Rejects[0].Reason != ReasonOutOfRange || out.Rejects[0].Index != 0 {
		t.Fatalf("got rejects %+v, want the register above the rollover rejected as %s", out.Rejects, ReasonOutOfRange)
	}
	for _, w := range write {
		if w.Delta < 0 {
			t.Errorf("wrote a negative delta: %+v", w)
		}
	}
}

// A finite value that overflows in the unit conversion (1e306 MWh is
// +Inf kWh) was stored as +Inf, and the next delta was NaN.
func TestNormaliseUnitConversionOverflow(t *testing.T) {
	n := NewNormaliser(testRegistry(t), testConfig)
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	var write, observe []store.Reading
	out, derr := n.Process(topicA, payload(1, reading("E-MWH", now.Add(-time.Hour), 1e306), reading("E-MWH", now.Add(-time.Hour+time.Minute), 1.5e306)), false, now, &write, &observe)
	if derr != nil {
		t.Fatal(derr)
	}
	if len(out.Rejects) != 2 || out.Rejects[0].Reason != ReasonOutOfRange || out.Rejects[1].Reason != ReasonOutOfRange || len(write) != 0 {
		t.Fatalf("got rejects %+v and writes %+v, want both readings rejected as %s", out.Rejects, write, ReasonOutOfRange)
	}
}

// A delta reading older than the history was written again when it came a
// second time before its batch reached the store (a redelivery, a backlog
// replayed twice): the store look-up could not see it yet, so the scorer
// counted the amount twice (found by FuzzNormalise).
func TestOldReadingTwiceBeforeStored(t *testing.T) {
	cfg := testConfig
	cfg.History = 2
	cfg.Lookup = func(context.Context, string, []string, time.Time, time.Time) ([]store.Reading, error) {
		return nil, nil // the batch with the old reading is not written yet
	}
	n := NewNormaliser(testRegistry(t), cfg)
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	t0 := now.Add(-time.Hour)
	var write, observe []store.Reading
	for i := range 3 {
		if _, derr := n.Process(topicA, payload(i+1, reading("HW", t0.Add(time.Duration(i)*time.Minute), 1)), false, now, &write, &observe); derr != nil {
			t.Fatal(derr)
		}
	}
	old := payload(4, reading("HW", t0.Add(-10*time.Minute), 0.5))
	write, observe = write[:0], observe[:0]
	if out, derr := n.Process(topicA, old, false, now, &write, &observe); derr != nil || out.Accepted != 1 {
		t.Fatalf("old reading: %+v %v, want it accepted", out, derr)
	}
	for _, redelivery := range []bool{true, false} {
		write, observe = write[:0], observe[:0]
		out, derr := n.Process(topicA, old, redelivery, now, &write, &observe)
		if derr != nil || out.Accepted != 0 || out.Duplicates != 1 || len(write) != 0 || len(observe) != 0 {
			t.Fatalf("old reading again (redelivery %v): %+v %v, %d written, %d observed; want a duplicate", redelivery, out, derr, len(write), len(observe))
		}
	}
}

// The same for a reading the history dropped: a backlog of more readings
// of a meter than the history keeps, redelivered before its batch is
// stored, wrote its first readings again (found by FuzzNormalise).
func TestDroppedReadingAgainBeforeStored(t *testing.T) {
	cfg := testConfig
	cfg.History = 3
	cfg.Lookup = func(context.Context, string, []string, time.Time, time.Time) ([]store.Reading, error) {
		return nil, nil // the batch is not written yet
	}
	n := NewNormaliser(testRegistry(t), cfg)
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	t0 := now.Add(-time.Hour)
	var backlog []string
	for i := range 5 {
		backlog = append(backlog, reading("HW", t0.Add(time.Duration(i)*time.Minute), 1), reading("E-1", t0.Add(time.Duration(i)*time.Minute), float64(100*i)))
	}
	msg := payload(1, backlog...)
	var write, observe []store.Reading
	if out, derr := n.Process(topicA, msg, false, now, &write, &observe); derr != nil || out.Accepted != 10 {
		t.Fatalf("backlog: %+v %v, want 10 accepted", out, derr)
	}
	write, observe = write[:0], observe[:0]
	out, derr := n.Process(topicA, msg, true, now, &write, &observe)
	if derr != nil || out.Accepted != 0 || out.Duplicates != 10 || len(out.Rejects) != 0 || len(write) != 0 || len(observe) != 0 {
		t.Fatalf("backlog redelivered: %+v %v, %d written; want 10 duplicates, nothing written or rejected", out, derr, len(write))
	}
}
