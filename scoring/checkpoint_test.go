package scoring

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanprod/cleanprod/store"
)

// ckptRig drives engines the way serve does across restarts: every store
// write is named to the journal (Intend), stored, observed, and told
// observed, in write order; a "crash" drops the engine without a word.
type ckptRig struct {
	t    *testing.T
	fx   fixture
	dir  string
	hist *memHistory
	live *Engine // saw every stored reading: the reference
	now  time.Time
	eng  *Engine
	seq  uint64
}

func newCkptRig(t *testing.T) *ckptRig {
	fx := newFixture(t)
	r := &ckptRig{t: t, fx: fx, dir: t.TempDir(), hist: &memHistory{}, now: time.Date(2026, 6, 1, 3, 0, 0, 0, time.UTC)}
	var err error
	if r.live, err = NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: fx.reg, Now: r.clock}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *ckptRig) clock() time.Time { return r.now }

// start starts a process: a new engine that resumes, then refills what
// it did not resume. It returns the enterprises resumed.
func (r *ckptRig) start() float64 {
	r.t.Helper()
	eng, err := NewEngine(Config{Standard: r.fx.std, Policy: r.fx.pol, Registry: r.fx.reg, Now: r.clock, History: r.hist,
		CheckpointDir: r.dir, Interval: time.Hour, FullEvery: time.Hour})
	if err != nil {
		r.t.Fatal(err)
	}
	// serve loads each meter's newest stored reading while the windows
	// resume.
	newest := map[string]store.Reading{}
	r.hist.mu.Lock()
	for _, x := range r.hist.readings {
		if x.Time.After(newest[x.Meter+"\x00"+x.Enterprise].Time) {
			newest[x.Meter+"\x00"+x.Enterprise] = x
		}
	}
	r.hist.mu.Unlock()
	noted := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- eng.Resume(context.Background(), noted) }()
	// The newest readings come late: Resume must wait for them before it
	// checks the store is not behind the checkpoint, or it would refill
	// every enterprise (and TestCheckpointResume would see none resumed).
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-done:
		r.t.Fatalf("Resume returned (%v) before the newest stored readings were noted", err)
	default:
	}
	for _, x := range newest {
		eng.NoteLatest(&x)
	}
	close(noted)
	if err := <-done; err != nil {
		r.t.Fatal(err)
	}
	if err := eng.Rebuild(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.eng, r.seq = eng, 0
	return testutil.ToFloat64(eng.m.resumed)
}

// write stores rs as one write of the running engine's process; observe
// false stops after the store (a crash before it was observed).
func (r *ckptRig) write(rs []store.Reading, observe bool) {
	r.seq++
	r.eng.Intend(r.seq, rs)
	r.hist.add(rs)
	r.live.Observe(rs)
	if observe {
		r.eng.Observe(rs)
		r.eng.Observed(r.seq)
	}
}

func (r *ckptRig) hours(ent string, from time.Time, n int) {
	e, _ := r.fx.reg.Enterprise(ent)
	for i := range n {
		r.write(hourly(e, from.Add(time.Duration(i)*time.Hour), goodRates), true)
	}
}

func (r *ckptRig) same() {
	r.t.Helper()
	for _, id := range []string{"lj-alpha", "lj-gamma"} {
		sameWindows(r.t, r.live, r.eng, id, r.now)
	}
}

// TestCheckpointResume restarts an engine from its checkpoint after
// writes it never saw, late ones among them, twice (the second time before
// the first restart had checkpointed again): its windows are those of an
// engine that saw every reading, and it reads back only the changed
// buckets.
func TestCheckpointResume(t *testing.T) {
	r := newCkptRig(t)
	if got := r.start(); got != 0 {
		t.Fatalf("resumed %v enterprises from an empty folder", got)
	}
	r.hours("lj-alpha", r.now.Add(-20*24*time.Hour), 20*24)
	r.hours("lj-gamma", r.now.Add(-3*24*time.Hour), 3*24)
	// A write in flight while the checkpoint is written, to a bucket an
	// earlier write (which the checkpoint holds) named: stored before,
	// observed after.
	alpha, _ := r.fx.reg.Enterprise("lj-alpha")
	inflight := hourly(alpha, r.now.Add(-time.Hour+30*time.Minute), goodRates)
	r.seq++
	r.eng.Intend(r.seq, inflight)
	r.hist.add(inflight)
	r.live.Observe(inflight)
	r.eng.checkpoint(true)
	r.eng.Observe(inflight)
	r.eng.Observed(r.seq)
	if _, err := os.Stat(filepath.Join(r.dir, checkpointName)); err != nil {
		t.Fatal(err)
	}
	// After the checkpoint: the next hours, a late hour from 9 days ago
	// (another reading of the same meters), and a write stored but never
	// observed when the process dies.
	r.now = r.now.Add(2 * time.Hour)
	r.hours("lj-alpha", r.now.Add(-2*time.Hour), 2)
	r.write(hourly(alpha, r.now.Add(-9*24*time.Hour+17*time.Minute), goodRates), true)
	beta, _ := r.fx.reg.Enterprise("lj-gamma")
	r.write(hourly(beta, r.now.Add(-30*time.Minute), goodRates), false)

	// The process died in the middle of writing the next checkpoint.
	leftover := filepath.Join(r.dir, "."+checkpointName+".tmp-123")
	if err := os.WriteFile(leftover, []byte("half a checkpoint"), 0o600); err != nil {
		t.Fatal(err)
	}
	queries := r.hist.queries.Load()
	if got := r.start(); got != float64(len(r.eng.order)) {
		t.Fatalf("resumed %v of %d enterprises", got, len(r.eng.order))
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("the temporary file of a cut checkpoint is still there: %v", err)
	}
	read := r.hist.queries.Load() - queries
	r.same()
	// Changed: 3 hours of alpha (9 days ago, and the last two), beta's
	// hour, and the days they fall in: one query per run of buckets.
	if read > 8 {
		t.Errorf("the resume read %d queries, want only the changed buckets", read)
	}

	// The second process dies before its first checkpoint, after more
	// writes: the third resumes from the first checkpoint, the journal
	// naming what both processes changed.
	r.now = r.now.Add(time.Hour)
	r.hours("lj-gamma", r.now.Add(-time.Hour), 1)
	r.write(hourly(alpha, r.now.Add(-15*24*time.Hour+5*time.Minute), goodRates), true)
	if got := r.start(); got != float64(len(r.eng.order)) {
		t.Fatalf("third start resumed %v of %d enterprises", got, len(r.eng.order))
	}
	r.same()

	// A checkpoint now, then a clean restart: nothing changed after it.
	r.eng.checkpoint(true)
	queries = r.hist.queries.Load()
	r.start()
	if read := r.hist.queries.Load() - queries; read != 0 {
		t.Errorf("a resume with nothing changed read %d queries", read)
	}
	r.same()
}

// TestCheckpointDamaged: a damaged checkpoint or journal, or one of
// other windows, is not used: the windows are refilled, and exact.
func TestCheckpointDamaged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		resume bool
	}{
		{"intact", func(*testing.T, string) {}, true},
		{"flipped byte", func(t *testing.T, dir string) { flipByte(t, filepath.Join(dir, checkpointName), 200) }, false},
		{"cut short", func(t *testing.T, dir string) { cutFile(t, filepath.Join(dir, checkpointName), 100) }, false},
		{"journal damaged inside", func(t *testing.T, dir string) { flipByte(t, filepath.Join(dir, journalName), 10) }, false},
		// A record cut short at the end was never followed by its write.
		{"journal tail cut", func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write([]byte{40, 0, 0, 0, 1, 2})
			f.Close()
		}, true},
		{"other windows", func(t *testing.T, dir string) {
			p := filepath.Join(dir, checkpointName)
			data, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(string(data[:len(checkpointMagic)])+`{"version":1,"windows":"0"}`+"\n"), 0o600)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newCkptRig(t)
			r.start()
			r.hours("lj-alpha", r.now.Add(-4*24*time.Hour), 4*24)
			r.eng.checkpoint(true)
			r.now = r.now.Add(time.Hour)
			r.hours("lj-alpha", r.now.Add(-time.Hour), 1)
			tc.damage(t, r.dir)
			got := r.start()
			if tc.resume != (got > 0) {
				t.Errorf("resumed %v enterprises, want resumed %v", got, tc.resume)
			}
			r.same()
			// The next restart works again from the checkpoint written
			// after the refill (Run writes one; here by hand).
			r.eng.checkpoint(true)
			if got := r.start(); got == 0 {
				t.Error("the checkpoint after the refill was not resumed")
			}
			r.same()
		})
	}
}

// TestCheckpointLayoutChanged: an enterprise laid out otherwise than in the
// checkpoint (here: a window of another length) is refilled.
func TestCheckpointOtherStandard(t *testing.T) {
	r := newCkptRig(t)
	r.start()
	r.hours("lj-alpha", r.now.Add(-2*24*time.Hour), 48)
	r.eng.checkpoint(true)
	std := *r.fx.std
	std.Windows = append([]Window(nil), std.Windows...)
	std.Windows[0].Length = 20 * 24 * time.Hour
	r.fx.std = &std
	if got := r.start(); got != 0 {
		t.Errorf("resumed %v enterprises of other windows", got)
	}
}

// TestCheckpointManyChanged: an enterprise with more changed buckets than
// resumeMaxDirty is refilled rather than read back bucket by bucket.
func TestCheckpointManyChanged(t *testing.T) {
	r := newCkptRig(t)
	r.start()
	r.hours("lj-alpha", r.now.Add(-10*24*time.Hour), 24)
	r.hours("lj-gamma", r.now.Add(-2*time.Hour), 2)
	r.eng.checkpoint(true)
	r.hours("lj-alpha", r.now.Add(-9*24*time.Hour), resumeMaxDirty+1) // a backlog
	if got := r.start(); got != float64(len(r.eng.order)-1) {
		t.Errorf("resumed %v enterprises, want all but lj-alpha (%d)", got, len(r.eng.order)-1)
	}
	r.same()
}

func flipByte(t *testing.T, path string, at int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[min(at, len(data)-1)] ^= 0x5a
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func cutFile(t *testing.T, path string, by int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()-int64(by)); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointStoreBehind: a store that lacks the newest readings the
// checkpoint holds (restored from an older backup) is not resumed from:
// the windows are refilled from what it holds.
func TestCheckpointStoreBehind(t *testing.T) {
	r := newCkptRig(t)
	r.start()
	r.hours("lj-alpha", r.now.Add(-3*24*time.Hour), 3*24)
	r.eng.checkpoint(true)
	// The backup ends a day before: the store and the reference lose the
	// last day.
	cut := r.now.Add(-24 * time.Hour)
	r.hist.mu.Lock()
	kept := r.hist.readings[:0]
	for _, x := range r.hist.readings {
		if x.Time.Before(cut) {
			kept = append(kept, x)
		}
	}
	r.hist.readings = kept
	r.hist.mu.Unlock()
	var err error
	if r.live, err = NewEngine(Config{Standard: r.fx.std, Policy: r.fx.pol, Registry: r.fx.reg, Now: r.clock}); err != nil {
		t.Fatal(err)
	}
	r.live.Observe(kept)
	if got := r.start(); got == float64(len(r.eng.order)) {
		t.Errorf("resumed every enterprise (%v) from a checkpoint newer than the store", got)
	}
	r.same()
}
