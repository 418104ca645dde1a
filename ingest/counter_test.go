package ingest

import (
	"math"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/store"
)

// counterStep is one reading of a counter sent in its own message.
type counterStep struct {
	at    time.Duration // after 06:00
	value float64       // kWh
}

// feedCounter sends steps (one message each) to n and returns the amount
// the scorer was told, the deltas the store keeps (the last write of each
// time), the rejects' reasons and the outcomes summed.
func feedCounter(t *testing.T, n *Normaliser, meter string, seq int, now time.Time, steps []counterStep) (observed float64, stored map[time.Time]float64, reasons []Reason, sum Outcome) {
	t.Helper()
	t0 := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	stored = map[time.Time]float64{}
	for i, s := range steps {
		var write, obs []store.Reading
		out, err := n.Process(topicA, payload(seq+i, reading(meter, t0.Add(s.at), s.value)), false, now, &write, &obs)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range write {
			stored[w.Time] = w.Delta
		}
		for _, o := range obs {
			observed += o.Delta
		}
		for _, r := range out.Rejects {
			reasons = append(reasons, r.Reason)
		}
		sum.Resets += out.Resets
		sum.Glitches += out.Glitches
		sum.Rebased += out.Rebased
	}
	return observed, stored, reasons, sum
}

func total(m map[time.Time]float64) float64 {
	var s float64
	for _, d := range m {
		s += d
	}
	return s
}

// The expected amounts are worked out by hand from the rule: a drop is
// held at 0 until the next reading; back at or above the register before
// it, it was a glitch and the next reading counts from that register;
// still down, the meter was reset and the held reading counts its
// register. A rise beyond max_rate is rejected; a next reading continuing
// from it counts from it, never the jump.
func TestCounterGlitchesAndJumps(t *testing.T) {
	const q = 15 * time.Minute
	tests := []struct {
		name    string
		meter   string
		steps   []counterStep
		now     time.Duration // after 06:00
		amount  float64       // kWh counted, in the store and by the scorer
		rejects []Reason
		resets  int
		glitch  int
		rebased int
	}{
		{"one zero between two registers is a glitch", "E-1",
			[]counterStep{{0, 576.65}, {q, 0}, {2 * q, 576.67}, {3 * q, 576.70}}, 2 * time.Hour,
			0.05, nil, 0, 1, 0}, // 576.70 - 576.65
		{"a glitch arriving after its follower", "E-1",
			[]counterStep{{0, 576.65}, {2 * q, 576.67}, {q, 0}}, 2 * time.Hour,
			0.02, nil, 0, 1, 0}, // 576.67 - 576.65
		{"a register that stays down was reset", "E-1",
			[]counterStep{{0, 576.65}, {q, 0.01}, {2 * q, 0.03}}, 2 * time.Hour,
			0.03, nil, 1, 0, 0}, // 0.01 since the reset, then 0.02
		{"a reset, then a glitch to zero", "E-1",
			[]counterStep{{0, 576.65}, {q, 0.01}, {2 * q, 0.03}, {3 * q, 0}, {4 * q, 0.05}}, 2 * time.Hour,
			0.05, nil, 1, 1, 0}, // 0.01, 0.02, 0, 0.02
		{"a spike up and back is rejected and nothing counted for it", "E-CAPPED",
			[]counterStep{{0, 100}, {q, 50100}, {2 * q, 105}}, 2 * time.Hour,
			5, []Reason{ReasonCounterJump}, 0, 0, 0},
		{"a register that moved beyond max_rate counts from where it moved", "E-CAPPED",
			// 50100 is 50000 in 15 min, max_rate 1000 per hour: rejected.
			// 50110 continues from it: 10. 51 hours later 50200: 90, not
			// the 50100 since 06:00 that max_rate x 51 h would allow.
			[]counterStep{{0, 100}, {q, 50100}, {2 * q, 50110}, {51 * time.Hour, 50200}}, 52 * time.Hour,
			100, []Reason{ReasonCounterJump}, 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := NewNormaliser(testRegistry(t), testConfig)
			now := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC).Add(tt.now)
			observed, stored, reasons, sum := feedCounter(t, n, tt.meter, 1, now, tt.steps)
			if math.Abs(observed-tt.amount) > 1e-9 || math.Abs(total(stored)-tt.amount) > 1e-9 {
				t.Errorf("counted %g kWh (store %g), want %g", observed, total(stored), tt.amount)
			}
			if len(reasons) != len(tt.rejects) || (len(reasons) > 0 && reasons[0] != tt.rejects[0]) {
				t.Errorf("rejects %v, want %v", reasons, tt.rejects)
			}
			if sum.Resets != tt.resets || sum.Glitches != tt.glitch || sum.Rebased != tt.rebased {
				t.Errorf("resets %d, glitches %d, rebased %d; want %d, %d, %d", sum.Resets, sum.Glitches, sum.Rebased, tt.resets, tt.glitch, tt.rebased)
			}
		})
	}
}

// A drop held when the service stops is still held after a restart: the
// store keeps it with delta 0, and the next reading, back up, counts from
// the register before the drop.
func TestCounterGlitchAcrossRestart(t *testing.T) {
	reg := testRegistry(t)
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	t0 := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	first := NewNormaliser(reg, testConfig)
	var stored, obs []store.Reading
	for i, v := range []float64{576.65, 0} {
		if _, err := first.Process(topicA, payload(i+1, reading("E-1", t0.Add(time.Duration(i)*15*time.Minute), v)), false, now, &stored, &obs); err != nil {
			t.Fatal(err)
		}
	}
	second := NewNormaliser(reg, testConfig)
	second.Restore(stored)
	observed, _, _, sum := feedCounter(t, second, "E-1", 3, now, []counterStep{{30 * time.Minute, 576.67}})
	if want := 0.02; math.Abs(observed-want) > 1e-9 || sum.Glitches != 1 {
		t.Errorf("after a restart: counted %g kWh with %d glitches, want %g and 1", observed, sum.Glitches, want)
	}
}

// A counter's first reading is checked against the register range the
// meter declares: 1e15 MWh on a register that shows at most 99,999.999
// MWh would be the baseline every later delta counts from.
func TestCounterFirstReadingInDeclaredRange(t *testing.T) {
	n := NewNormaliser(testRegistry(t), testConfig)
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	observed, stored, reasons, _ := feedCounter(t, n, "E-RANGED", 1, now, []counterStep{{0, 1e15}, {15 * time.Minute, 500}, {30 * time.Minute, 500.5}})
	if len(reasons) != 1 || reasons[0] != ReasonOutOfRange {
		t.Errorf("rejects %v, want one %s", reasons, ReasonOutOfRange)
	}
	if want := 500.0; observed != want || total(stored) != want || len(stored) != 2 { // 0.5 MWh in kWh, from 500 MWh
		t.Errorf("counted %g kWh over %d readings, want %g over 2", observed, len(stored), want)
	}
}
