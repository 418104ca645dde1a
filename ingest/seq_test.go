package ingest

import (
	"context"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanprod/cleanprod/store"
)

var seqT0 = time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)

// lostAfter feeds seqs to a fresh tracker, then seqWindow more numbers so
// that every hole has left the window, and returns the messages counted
// lost, repeated and out of order.
func lostAfter(seqs ...int64) (lost int64, repeats, backwards int) {
	var s seqState
	feed := func(seq int64) {
		st := s.step(seq, seqT0, time.Hour)
		lost += st.lost
		if st.repeat {
			repeats++
		}
		if st.late || st.renewed || st.before {
			backwards++
		}
	}
	for _, q := range seqs {
		feed(q)
	}
	from := s.hi + 1
	for q := from; q < from+seqWindow; q++ {
		feed(q)
	}
	return lost, repeats, backwards
}

func TestSeqAccounting(t *testing.T) {
	tests := []struct {
		name              string
		seqs              []int64
		lost              int64
		repeats, outOfOrd int
	}{
		{"in order", []int64{1, 2, 3, 4, 5}, 0, 0, 0},
		{"one swapped pair is not lost", []int64{1, 2, 4, 3, 5}, 0, 0, 1},
		{"a real loss", []int64{1, 2, 4, 5}, 1, 0, 0},
		{"two lost, one comes late", []int64{1, 5, 3, 6}, 2, 0, 1},
		{"a redelivery", []int64{1, 2, 2, 3}, 0, 1, 0},
		{"a late one delivered twice", []int64{1, 3, 2, 2}, 0, 1, 1},
		{"late by almost the window", []int64{1, seqWindow, 2}, seqWindow - 3, 0, 1},
		{"a gateway that restarts its numbering", []int64{5000, 5001, 1, 2}, 0, 0, 1},
		{"older than the first number seen", []int64{100, 101, 99, 102}, 0, 0, 1},
		{"a hostile seq near 2^63", []int64{1, 2, math.MaxInt64 - seqWindow - 1, 3}, 0, 0, 2},
		{"a jump beyond the window counts the holes it leaves", []int64{1, 3, 5, 100000}, 2, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lost, rep, back := lostAfter(tt.seqs...)
			if lost != tt.lost || rep != tt.repeats || back != tt.outOfOrd {
				t.Errorf("lost %d, repeats %d, out of order %d; want %d, %d, %d", lost, rep, back, tt.lost, tt.repeats, tt.outOfOrd)
			}
		})
	}
}

// A backlog replayed in random order, as paho re-sends its in-flight
// messages after a reconnect, loses nothing; two numbers that never come
// are counted once each.
func TestSeqShuffledBacklog(t *testing.T) {
	var seqs []int64
	for q := int64(1); q <= 3000; q++ {
		if q != 1234 && q != 2345 {
			seqs = append(seqs, q)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(seqs)-1, func(i, j int) { seqs[i+1], seqs[j+1] = seqs[j+1], seqs[i+1] })
	if lost, rep, _ := lostAfter(seqs...); lost != 2 || rep != 0 {
		t.Errorf("lost %d, repeats %d; want 2 and 0", lost, rep)
	}
}

// Through the normaliser, seq 1, 2, 4, 3, 5 counts no lost message.
func TestNormaliserSeqOutOfOrder(t *testing.T) {
	reg := testRegistry(t)
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	n := NewNormaliser(reg, testConfig)
	var write, obs []store.Reading
	var gaps int64
	backwards := 0
	for i, seq := range []int{1, 2, 4, 3, 5} {
		out, err := n.Process(topicA, payload(seq, reading("E-1", now.Add(time.Duration(i-10)*time.Minute), float64(100+i))), false, now, &write, &obs)
		if err != nil {
			t.Fatal(err)
		}
		gaps += out.SeqGap
		if out.SeqBackwards {
			backwards++
		}
	}
	if gaps != 0 || backwards != 1 {
		t.Errorf("seq gaps %d, out of order %d; want 0 and 1", gaps, backwards)
	}
}

// The normaliser numbers messages to tell two readings of one meter in
// one message from a redelivery; after 2^32 messages (five days at 10k
// msg/s) the number must not come back to the restored history's 0.
func TestMessageNumbersDoNotWrap(t *testing.T) {
	reg := testRegistry(t)
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	first := NewNormaliser(reg, testConfig)
	var stored, obs []store.Reading
	if _, err := first.Process(topicA, payload(1, reading("E-1", now.Add(-time.Hour), 100)), false, now, &stored, &obs); err != nil {
		t.Fatal(err)
	}
	n := NewNormaliser(reg, testConfig)
	n.Restore(stored)
	n.msgSeq = math.MaxUint32 // the next message is number 2^32
	var write []store.Reading
	out, err := n.Process(topicA, payload(1, reading("E-1", now.Add(-time.Hour), 100)), true, now, &write, &obs)
	if err != nil {
		t.Fatal(err)
	}
	if out.Duplicates != 1 || len(out.Rejects) != 0 {
		t.Errorf("a redelivery after 2^32 messages: %d duplicates, rejects %+v; want it absorbed", out.Duplicates, out.Rejects)
	}
}

// A gap whose messages have not come within the late time is counted
// then, not only once the window has passed it; one that fills in time
// is not counted.
func TestSeqLateTime(t *testing.T) {
	var s seqState
	late := time.Minute
	at := func(d time.Duration) time.Time { return seqT0.Add(d) }
	steps := []struct {
		seq  int64
		at   time.Duration
		lost int64
	}{
		{1, 0, 0},
		{4, time.Second, 0},                 // 2 and 3 skipped
		{2, 30 * time.Second, 0},            // 2 in time
		{5, time.Minute + 2*time.Second, 1}, // 3 still missing a minute after the gap
		{3, time.Minute + 3*time.Second, 0}, // too late: already counted, a repeat
		{7, 2 * time.Minute, 0},
		{8, 4 * time.Minute, 1}, // 6
	}
	for _, st := range steps {
		got := s.step(st.seq, at(st.at), late)
		if got.lost != st.lost {
			t.Errorf("seq %d at %s: lost %d, want %d", st.seq, st.at, got.lost, st.lost)
		}
	}
}

// Through the pipeline, out-of-order and hostile seqs add nothing to the
// lost-message counter: seq 1, 2, 4, 3, 5 lost none, and a seq near 2^63
// and the return to the gateway's numbering are two renumberings, counted
// apart, not 9e18 lost messages.
func TestPipelineSeqMetrics(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	w := &memWriter{}
	p := NewPipeline(testRegistry(t), PipelineConfig{Normaliser: testConfig, BatchInterval: 10 * time.Millisecond}, w,
		func(context.Context, string, []byte) error { return nil }, nil, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	runPipeline(t, p)
	var acked atomic.Int64
	now := time.Now().UTC().Truncate(time.Minute)
	seqs := []int{1, 2, 4, 3, 5, math.MaxInt64 - 1, 6}
	for i, seq := range seqs {
		p.Submit(Delivery{Topic: topicA, Payload: payload(seq, reading("E-1", now.Add(time.Duration(i-10)*time.Minute), float64(100+i))),
			Received: time.Now(), Ack: func() { acked.Add(1) }})
	}
	deadline := time.Now().Add(10 * time.Second)
	for acked.Load() < int64(len(seqs)) {
		if time.Now().After(deadline) {
			t.Fatalf("acked %d of %d messages", acked.Load(), len(seqs))
		}
		time.Sleep(time.Millisecond)
	}
	if got := testutil.ToFloat64(m.seqGaps.WithLabelValues("ent-a", "gw-1")); got != 0 {
		t.Errorf("cleanprod_ingest_seq_gaps_total = %g, want 0", got)
	}
	if got := testutil.ToFloat64(m.seqRenumbered.WithLabelValues("ent-a", "gw-1")); got != 2 {
		t.Errorf("cleanprod_ingest_seq_renumbered_total = %g, want 2", got)
	}
}
