package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanprod/cleanprod/internal/frame"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/store"
)

// fakeStore records the event points written to it; write, when set,
// decides each request's fate first.
type fakeStore struct {
	mu     sync.Mutex
	write  func(ps []store.Point) error
	points map[string]int // key -> times written
	order  []string
}

func (f *fakeStore) WritePoints(_ context.Context, ps []store.Point) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.write != nil {
		if err := f.write(ps); err != nil {
			return err
		}
	}
	if f.points == nil {
		f.points = map[string]int{}
	}
	for _, p := range ps {
		ev, ok := scoring.EventFromPoint(p)
		if !ok {
			return fmt.Errorf("not an event point: %+v", p)
		}
		k := evKey(ev)
		if f.points[k] == 0 {
			f.order = append(f.order, k)
		}
		f.points[k]++
	}
	return nil
}

func (f *fakeStore) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.points)
}

// fakeBroker records what is published; fail, when set, decides first.
type fakeBroker struct {
	mu     sync.Mutex
	fail   func() error
	topics []string
	keys   []string
	stored func() int // events in the store when each publish came
	atPub  []int
}

func (b *fakeBroker) publish(_ context.Context, topic string, payload []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		if err := b.fail(); err != nil {
			return err
		}
	}
	var ev scoring.Event
	if err := json.Unmarshal(payload, &ev); err != nil {
		return err
	}
	b.topics = append(b.topics, topic)
	b.keys = append(b.keys, evKey(ev))
	if b.stored != nil {
		b.atPub = append(b.atPub, b.stored())
	}
	return nil
}

func (b *fakeBroker) published() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.keys...)
}

func evKey(ev scoring.Event) string {
	return fmt.Sprintf("%s/%s/%s/%s/%t@%d", ev.Enterprise, ev.Kind, ev.Indicator, ev.Meter, ev.Resolved, ev.Time.UnixNano())
}

// outage is a switch: while it is on, err returns the outage's error.
type outage struct {
	on  atomic.Bool
	err error
}

func newOutage(on bool, err error) *outage {
	o := &outage{err: err}
	o.on.Store(on)
	return o
}

func (o *outage) check() error {
	if o.on.Load() {
		return o.err
	}
	return nil
}

func (o *outage) points([]store.Point) error { return o.check() }

var (
	errStoreDown  = &store.WriteError{Err: errors.New("connection refused")}
	errBrokerDown = errors.New("not connected")
)

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// events makes n stale-meter events from the i-th on.
func events(from, n int) []scoring.Event {
	out := make([]scoring.Event, n)
	for i := range out {
		k := from + i
		out[i] = scoring.Event{Time: t0.Add(time.Duration(k) * time.Second), Enterprise: fmt.Sprintf("ent-%d", k%7), Kind: scoring.EventStale,
			Meter: fmt.Sprintf("M-%d", k), Reason: "no reading since the scorer started"}
	}
	return out
}

type rig struct {
	t     *testing.T
	dir   string
	st    *fakeStore
	br    *fakeBroker
	reg   *prometheus.Registry
	logs  *bytes.Buffer
	ob    *Outbox
	stop  context.CancelFunc
	done  chan struct{}
	extra func(*Config)
}

func newRig(t *testing.T, extra func(*Config)) *rig {
	r := &rig{t: t, dir: t.TempDir(), st: &fakeStore{}, br: &fakeBroker{}, extra: extra}
	r.open()
	return r
}

// open opens the outbox on the rig's folder (a start).
func (r *rig) open() {
	r.t.Helper()
	r.reg = prometheus.NewRegistry()
	r.logs = &bytes.Buffer{}
	cfg := Config{Dir: r.dir, Store: r.st, Publish: r.br.publish, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		Registerer: r.reg, Logger: slog.New(slog.NewTextHandler(&syncWriter{w: r.logs}, nil))}
	if r.extra != nil {
		r.extra(&cfg)
	}
	ob, err := Open(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	r.ob = ob
}

func (r *rig) run() {
	ctx, stop := context.WithCancel(context.Background())
	r.stop, r.done = stop, make(chan struct{})
	go func() { r.ob.Run(ctx); close(r.done) }()
	r.t.Cleanup(r.halt)
}

// halt stops Run and closes the outbox (a shutdown, or with the file
// left as it is, a crash).
func (r *rig) halt() {
	if r.stop != nil {
		r.stop()
		<-r.done
		r.stop = nil
	}
	r.ob.Close()
}

func (r *rig) waitPublished(n int) {
	r.t.Helper()
	waitFor(r.t, fmt.Sprintf("%d events published", n), func() bool { return len(r.br.published()) >= n })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func keysOf(evs []scoring.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = evKey(ev)
	}
	return out
}

// TestDeliverInOrder: appended events reach the store once each and are
// published in order, each only after the store held it.
func TestDeliverInOrder(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Batch = 7 })
	r.br.stored = r.st.count
	r.run()
	want := events(0, 100)
	for i := 0; i < len(want); i += 10 {
		if err := r.ob.Append(want[i : i+10]); err != nil {
			t.Fatal(err)
		}
	}
	r.waitPublished(len(want))
	if got := r.br.published(); strings.Join(got, "\n") != strings.Join(keysOf(want), "\n") {
		t.Errorf("published %d events, not the %d appended in order", len(got), len(want))
	}
	for i, n := range r.br.atPub {
		if n < i+1 {
			t.Fatalf("event %d published with %d events in the store: before it was stored", i, n)
		}
	}
	for k, n := range r.st.points {
		if n != 1 {
			t.Errorf("%s written %d times", k, n)
		}
	}
	if r.br.topics[0] != "cp/v1/ent-0/events" {
		t.Errorf("topic %q, want cp/v1/ent-0/events", r.br.topics[0])
	}
	if left := r.ob.Flush(t.Context()); left != 0 {
		t.Errorf("Flush left %d", left)
	}
	if got := testutil.ToFloat64(r.ob.m.delivered.WithLabelValues("store")); got != 100 {
		t.Errorf("delivered to the store %g, want 100", got)
	}
}

// TestStoreDownRetried: while the store fails nothing is published and
// nothing dropped; once it accepts, every event is stored and published.
func TestStoreDownRetried(t *testing.T) {
	r := newRig(t, nil)
	down := newOutage(true, errStoreDown)
	r.st.write = down.points
	r.run()
	want := events(0, 50)
	if err := r.ob.Append(want); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "store writes failing", func() bool { return testutil.ToFloat64(r.ob.m.failures.WithLabelValues("store")) >= 5 })
	if n := len(r.br.published()); n != 0 {
		t.Fatalf("%d events published while none is stored", n)
	}
	if got := testutil.ToFloat64(mustGauge(t, r.reg, "cleanprod_events_outbox_events", "store")); got != 50 {
		t.Errorf("events waiting for the store %g, want 50", got)
	}
	down.on.Store(false)
	r.waitPublished(50)
	if r.st.count() != 50 {
		t.Errorf("store holds %d of 50", r.st.count())
	}
	if got := testutil.ToFloat64(mustGauge(t, r.reg, "cleanprod_events_outbox_events", "store")); got != 0 {
		t.Errorf("events waiting for the store %g after delivery, want 0", got)
	}
}

func mustGauge(t *testing.T, reg *prometheus.Registry, name, stage string) prometheus.Collector {
	t.Helper()
	return gaugeOf{reg: reg, name: name, stage: stage}
}

// gaugeOf reads one series of a gathered family, as a Collector for
// testutil.ToFloat64.
type gaugeOf struct {
	reg         *prometheus.Registry
	name, stage string
}

func (g gaugeOf) Describe(chan<- *prometheus.Desc) {}
func (g gaugeOf) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := g.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != g.name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" && l.GetValue() == g.stage {
					ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(g.name, "", nil, nil), prometheus.GaugeValue, m.GetGauge().GetValue())
				}
			}
		}
	}
}

// TestBrokerDownRetried: the store gets events while the broker is down;
// they are published, in order, once it is back.
func TestBrokerDownRetried(t *testing.T) {
	r := newRig(t, nil)
	down := newOutage(true, errBrokerDown)
	r.br.fail = down.check
	r.run()
	want := events(0, 20)
	if err := r.ob.Append(want); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "publishes failing", func() bool { return testutil.ToFloat64(r.ob.m.failures.WithLabelValues("mqtt")) >= 3 })
	waitFor(t, "every event stored", func() bool { return r.st.count() == 20 })
	down.on.Store(false)
	r.waitPublished(20)
	if got := r.br.published(); strings.Join(got, "\n") != strings.Join(keysOf(want), "\n") {
		t.Errorf("published not in order: %v", got)
	}
}

// TestReplayAfterCrash: a process that stops with events not stored, and
// others stored but not published, leaves them in the file; the next
// Open replays them first, stores only the unstored ones and publishes
// each once, before anything appended after.
func TestReplayAfterCrash(t *testing.T) {
	r := newRig(t, nil)
	storeDown, brokerDown := newOutage(false, errStoreDown), newOutage(true, errBrokerDown)
	r.st.write = storeDown.points
	r.br.fail = brokerDown.check
	r.run()
	first := events(0, 10)
	if err := r.ob.Append(first); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first events stored", func() bool { return r.st.count() == 10 })
	storeDown.on.Store(true)
	second := events(10, 10)
	if err := r.ob.Append(second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "store writes failing", func() bool { return testutil.ToFloat64(r.ob.m.failures.WithLabelValues("store")) >= 2 })
	r.halt() // the crash: the file stays as it is

	r.open()
	if got := keysOf(r.ob.Replayed()); strings.Join(got, "\n") != strings.Join(keysOf(append(first, second...)), "\n") {
		t.Fatalf("replayed %d events, want the 20 undelivered in order", len(got))
	}
	storeDown.on.Store(false)
	brokerDown.on.Store(false)
	third := events(20, 5)
	if err := r.ob.Append(third); err != nil {
		t.Fatal(err)
	}
	r.run()
	r.waitPublished(25)
	all := append(append(first, second...), third...)
	if got := r.br.published(); strings.Join(got, "\n") != strings.Join(keysOf(all), "\n") {
		t.Errorf("published %v, want every event once, in order", got)
	}
	for k, n := range r.st.points {
		if strings.HasPrefix(k, "ent-") && n != 1 {
			t.Errorf("%s written %d times, want once (the first ten were stored before the crash)", k, n)
		}
	}
	r.halt()
	r.open()
	if n := len(r.ob.Replayed()); n != 0 {
		t.Errorf("after delivery a start replays %d events, want 0", n)
	}
}

// TestTornTail: a record cut short or garbled at the end of the file (the
// process stopped while writing it) is truncated and logged; the events
// before it are replayed, and appends go on after them.
func TestTornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		harm func(data []byte) []byte
	}{
		{"cut short", func(d []byte) []byte { return d[:len(d)-5] }},
		{"header only", func(d []byte) []byte { return append(d, 0x40, 0, 0) }},
		{"garbled", func(d []byte) []byte { d[len(d)-3] ^= 0xff; return d }},
		{"huge length", func(d []byte) []byte { return append(d, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5) }},
		{"zeros", func(d []byte) []byte { return append(d, make([]byte, 4096)...) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nil)
			for i := range 3 {
				if err := r.ob.Append(events(i, 1)); err != nil {
					t.Fatal(err)
				}
			}
			r.halt()
			path := filepath.Join(r.dir, FileName)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.harm(data), 0o600); err != nil {
				t.Fatal(err)
			}
			r.open()
			got := len(r.ob.Replayed())
			want := 3
			if tc.name == "cut short" || tc.name == "garbled" {
				want = 2 // the last event was the torn record
			}
			if got != want {
				t.Errorf("replayed %d events, want %d", got, want)
			}
			if !strings.Contains(r.logs.String(), "truncated") {
				t.Errorf("no log line about the truncated tail:\n%s", r.logs)
			}
			if err := r.ob.Append(events(10, 1)); err != nil {
				t.Fatal(err)
			}
			r.halt()
			r.open()
			if n := len(r.ob.Replayed()); n != want+1 {
				t.Errorf("after an append on the repaired file: %d events replayed, want %d", n, want+1)
			}
		})
	}
}

// TestDamagedMiddle: a damaged record followed by intact ones is skipped
// with an error line; the records after it are kept.
func TestDamagedMiddle(t *testing.T) {
	r := newRig(t, nil)
	for i := range 3 {
		if err := r.ob.Append(events(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	r.halt()
	path := filepath.Join(r.dir, FileName)
	data, _ := os.ReadFile(path)
	data[12] ^= 0xff // inside the first record's payload
	os.WriteFile(path, data, 0o600)
	r.open()
	if n := len(r.ob.Replayed()); n != 2 {
		t.Errorf("replayed %d events, want the 2 after the damaged one", n)
	}
	if !strings.Contains(r.logs.String(), "level=ERROR") {
		t.Errorf("no error logged:\n%s", r.logs)
	}
}

// TestGarbageFile: whatever the file holds, Open neither panics nor
// fails; it keeps what decodes.
func TestGarbageFile(t *testing.T) {
	for i, data := range [][]byte{
		[]byte("not an outbox at all\n"),
		frame.Append(nil, []byte{recEvent}),
		frame.Append(nil, []byte{recEvent, 1, '{', '}'}),
		frame.Append(nil, []byte{'Z', 1}),
		frame.Append(nil, []byte{recStored, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}),
		append(frame.Append(nil, []byte{recPublished, 5}), frame.Append(nil, []byte{recEvent, 3, '{', '"'})...),
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, FileName), data, 0o600)
		ob, err := Open(Config{Dir: dir, Store: &fakeStore{}})
		if err != nil {
			t.Errorf("case %d: %v", i, err)
			continue
		}
		if err := ob.Append(events(0, 1)); err != nil {
			t.Errorf("case %d: append: %v", i, err)
		}
		ob.Close()
	}
}

// TestCompaction: once delivered events take most of a large file, it is
// rewritten with the undelivered ones only, and a start after it replays
// exactly those.
func TestCompaction(t *testing.T) {
	r := newRig(t, nil)
	down := newOutage(false, errBrokerDown)
	r.br.fail = down.check
	r.run()
	path := filepath.Join(r.dir, FileName)
	n := 0
	for grown := int64(0); grown < 3*compactAt; {
		if err := r.ob.Append(events(n, 100)); err != nil {
			t.Fatal(err)
		}
		n += 100
		fi, _ := os.Stat(path)
		grown += fi.Size()
	}
	r.waitPublished(n)
	waitFor(t, "the file compacted", func() bool {
		fi, _ := os.Stat(path)
		return fi.Size() < compactAt
	})
	down.on.Store(true)
	if err := r.ob.Append(events(n, 3)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "publishes failing", func() bool { return testutil.ToFloat64(r.ob.m.failures.WithLabelValues("mqtt")) >= 1 })
	r.halt()
	r.open()
	if got := keysOf(r.ob.Replayed()); strings.Join(got, "\n") != strings.Join(keysOf(events(n, 3)), "\n") {
		t.Errorf("after compaction a start replays %v, want the 3 undelivered", got)
	}
	// The numbering goes on: a new event is delivered after the replayed.
	if err := r.ob.Append(events(n+3, 1)); err != nil {
		t.Fatal(err)
	}
	r.br.fail = nil
	r.run()
	r.waitPublished(n + 4)
}

// TestBounded: with the broker down, the outbox takes events up to
// MaxBytes and then refuses (ErrFull) without losing what it holds;
// once delivery resumes it takes events again.
func TestBounded(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxBytes = 8 << 10 })
	down := newOutage(true, errBrokerDown)
	r.br.fail = down.check
	r.run()
	taken := 0
	var err error
	for taken < 10000 {
		if err = r.ob.Append(events(taken, 10)); err != nil {
			break
		}
		taken += 10
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("after %d events: err %v, want ErrFull", taken, err)
	}
	if got := testutil.ToFloat64(r.ob.m.refusals.WithLabelValues("full")); got != 1 {
		t.Errorf("full refusals %g, want 1", got)
	}
	if err := r.ob.Status(); err == nil || !strings.Contains(err.Error(), "full") {
		t.Errorf("Status %v, want full", err)
	}
	fi, _ := os.Stat(filepath.Join(r.dir, FileName))
	if fi.Size() > 8<<10+4<<10 {
		t.Errorf("file of %d bytes, beyond the bound", fi.Size())
	}
	down.on.Store(false)
	r.waitPublished(taken)
	if err := r.ob.Append(events(taken, 10)); err != nil {
		t.Errorf("after delivery: %v", err)
	}
	r.waitPublished(taken + 10)
	if got := r.br.published(); strings.Join(got, "\n") != strings.Join(keysOf(events(0, taken+10)), "\n") {
		t.Errorf("published %d events, want the %d taken, in order", len(got), taken+10)
	}
}

// TestAppendFileFails: a file that cannot be written refuses the batch
// (nothing of it kept, nothing delivered) and Status says so.
func TestAppendFileFails(t *testing.T) {
	r := newRig(t, nil)
	r.ob.mu.Lock()
	r.ob.f.Close() // every write now fails
	r.ob.mu.Unlock()
	if err := r.ob.Append(events(0, 2)); err == nil {
		t.Fatal("append to a closed file succeeded")
	}
	if err := r.ob.Status(); err == nil {
		t.Error("Status nil with a failing file")
	}
	if n := len(r.ob.entries); n != 0 {
		t.Errorf("%d events kept from a refused batch", n)
	}
	if got := testutil.ToFloat64(r.ob.m.refusals.WithLabelValues("file")); got != 1 {
		t.Errorf("file refusals %g, want 1", got)
	}
}

// TestRefusedEvent: an event the store refuses for good is set aside in
// the refused file; the events around it are stored and published.
func TestRefusedEvent(t *testing.T) {
	r := newRig(t, nil)
	evs := events(0, 5)
	evs[2].Meter = "POISON"
	r.st.write = func(ps []store.Point) error {
		for _, p := range ps {
			if p.Tags["meter"] == "POISON" {
				return &store.WriteError{Err: errors.New("field type conflict"), Permanent: true, Status: 400}
			}
		}
		return nil
	}
	r.run()
	if err := r.ob.Append(evs); err != nil {
		t.Fatal(err)
	}
	r.waitPublished(5)
	if r.st.count() != 4 {
		t.Errorf("store holds %d events, want the 4 it accepts", r.st.count())
	}
	data, err := os.ReadFile(filepath.Join(r.dir, RefusedName))
	if err != nil || !strings.Contains(string(data), "POISON") {
		t.Errorf("refused file %q (%v), want the refused event", data, err)
	}
	if got := testutil.ToFloat64(r.ob.m.refused); got != 1 {
		t.Errorf("refused %g, want 1", got)
	}
}

// TestFlushAtShutdown: Flush returns once everything appended is
// delivered, or with the count left when its context ends first.
func TestFlushAtShutdown(t *testing.T) {
	r := newRig(t, nil)
	r.br.fail = newOutage(true, errBrokerDown).check
	r.run()
	if err := r.ob.Append(events(0, 4)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if left := r.ob.Flush(ctx); left != 4 {
		t.Errorf("Flush with the broker down left %d, want 4", left)
	}
}

// TestAnnounced: the events a start restores are the stored ones and the
// outbox's, oldest first, an event in both (or read back twice) counted
// once.
func TestAnnounced(t *testing.T) {
	evs := events(0, 4)
	stored := []store.Point{scoring.EventPoint(evs[0]), scoring.EventPoint(evs[2]), scoring.EventPoint(evs[0])}
	got := keysOf(Announced(stored, []scoring.Event{evs[3], evs[2], evs[1]}))
	if want := keysOf(evs); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%v\nwant\n%v", got, want)
	}
}

// TestBurstReleased: once a burst of events (a start's first grading) is
// delivered, the outbox keeps no more than its bounds for reuse, not the
// burst's arrays.
func TestBurstReleased(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Batch = 500 })
	r.br.stored = r.st.count
	r.run()
	burst := events(0, 20000)
	if err := r.ob.Append(burst); err != nil {
		t.Fatal(err)
	}
	r.waitPublished(len(burst))
	if err := r.ob.Append(events(20000, 1)); err != nil {
		t.Fatal(err)
	}
	r.waitPublished(len(burst) + 1)
	r.ob.mu.Lock()
	entries, buf := cap(r.ob.entries), cap(r.ob.buf)
	r.ob.mu.Unlock()
	if entries > keptEntries || buf > keptBuf {
		t.Errorf("after the burst: room for %d entries (at most %d kept) and %d bytes of records (at most %d)", entries, keptEntries, buf, keptBuf)
	}
}
