package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/sim"
)

// The shard tests run several real cleanprod replicas against one real
// mosquitto and one real InfluxDB, on a fleet of twelve enterprises (the
// shipped four, each twice more under other ids) that spreads over 2 and
// 3 shards (2, 6 and 4 enterprises of 3; 5 and 7 of 2).

// shardFleet writes the twelve-enterprise fleet and returns its folder.
func shardFleet(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files, err := filepath.Glob("../../gateway-config/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("shipped fleet: %v", err)
	}
	mn := regexp.MustCompile(`mn: (500112..)0001`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		id := strings.TrimSuffix(filepath.Base(f), ".yaml")
		os.WriteFile(filepath.Join(dir, id+".yaml"), data, 0o644)
		for _, n := range []string{"2", "3"} {
			b := strings.Replace(string(data), "id: "+id, "id: "+id+"-"+n, 1)
			b = mn.ReplaceAllString(b, "mn: ${1}000"+n)
			os.WriteFile(filepath.Join(dir, id+"-"+n+".yaml"), []byte(b), 0o644)
		}
	}
	reg, err := registry.Load(dir)
	if err != nil || len(reg.Enterprises) != 12 {
		t.Fatalf("fleet of %d enterprises: %v", len(reg.Enterprises), err)
	}
	return dir
}

// shardSim simulates hours of the fleet ending an hour ago, at most rate
// messages a second.
func shardSim(t *testing.T, fleet string, hours int, rate float64) *sim.Simulator {
	t.Helper()
	reg, err := registry.Load(fleet)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().UTC().Truncate(time.Hour).Add(-time.Duration(hours+1) * time.Hour)
	s, err := sim.New(reg, sim.Config{Seed: 7, Start: start, Duration: time.Duration(hours) * time.Hour, Interval: 5 * time.Minute,
		Workers: 4, MaxRate: rate, Now: func() time.Time { return start.Add(time.Duration(hours+1) * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// shardFleetRun is one fleet of replicas sharing a broker and a database.
type shardFleetRun struct {
	t        *testing.T
	fleet    string
	broker   string
	db       *testenv.InfluxDB
	clientID string
	extra    []string // serve's further flags
	// byIndex keeps a replica's data_dir by its index alone, as a
	// StatefulSet keeps a pod's volume whatever the count: after a
	// reshard a replica finds the scorer's checkpoint of another one.
	byIndex  bool
	mu       sync.Mutex
	dataDirs map[string]string // "i/n" (or "i") -> that replica's data_dir, kept across restarts
}

func (f *shardFleetRun) args(count int) []string {
	return []string{"-mqtt.url", f.broker, "-influx.url", f.db.URL, "-influx.bucket", f.db.Bucket, "-mqtt.client_id", f.clientID,
		"-gateway_config", f.fleet, "-shard.count", strconv.Itoa(count), "-shard.peer_url", "http://127.0.0.1:9/{index}"}
}

// start starts replica index of count and waits until it is ready.
func (f *shardFleetRun) start(index, count int) (*proc, error) {
	f.mu.Lock()
	name := fmt.Sprintf("%d/%d", index, count)
	if f.byIndex {
		name = strconv.Itoa(index)
	}
	dir, ok := f.dataDirs[name]
	if !ok {
		dir = filepath.Join(f.t.TempDir(), "data")
		f.dataDirs[name] = dir
	}
	f.mu.Unlock()
	args := append(f.args(count), f.extra...)
	return tryStartProc(f.t, append(args, "-shard.index", strconv.Itoa(index), "-data_dir", dir),
		map[string]string{"CLEANPROD_INFLUX_TOKEN": f.db.Token, "CLEANPROD_SHARD_SECRET": testShardSecret})
}

// startAll starts the count replicas of a fleet at once.
func (f *shardFleetRun) startAll(count int) []*proc {
	f.t.Helper()
	ps := make([]*proc, count)
	errs := make([]error, count)
	var wg sync.WaitGroup
	for i := range count {
		wg.Go(func() { ps[i], errs[i] = f.start(i, count) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			f.t.Fatal(err)
		}
	}
	return ps
}

// shards runs "cleanprod shards cmd -shard.count count" on the fleet.
func (f *shardFleetRun) shards(cmd string, count int) string {
	f.t.Helper()
	out, err := exec.Command(cleanprodBinary(f.t), append([]string{"shards", cmd}, f.args(count)...)...).CombinedOutput()
	if err != nil {
		f.t.Fatalf("shards %s -shard.count %d: %v\n%s", cmd, count, err, out)
	}
	return string(out)
}

// readmeShards runs the README's "cleanprod shards cmd" line, as printed,
// with a cleanprod.yaml of f's broker, store and fleet in its folder.
func (f *shardFleetRun) readmeShards(cmd string) string {
	f.t.Helper()
	var line string
	for _, l := range strings.Split(readmeBlock(f.t, "cleanprod shards "+cmd), "\n") {
		if strings.HasPrefix(l, "cleanprod shards "+cmd+" ") {
			line, _, _ = strings.Cut(l, "#")
		}
	}
	if line == "" {
		f.t.Fatalf("the README has no cleanprod shards %s line", cmd)
	}
	dir := f.t.TempDir()
	cfg := fmt.Sprintf("mqtt:\n  url: %s\n  client_id: %s\ninflux:\n  url: %s\n  bucket: %s\ngateway_config: %s\nshard:\n  peer_url: http://127.0.0.1:9/{index}\n",
		f.broker, f.clientID, f.db.URL, f.db.Bucket, f.fleet)
	if err := os.WriteFile(filepath.Join(dir, "cleanprod.yaml"), []byte(cfg), 0o644); err != nil {
		f.t.Fatal(err)
	}
	args := strings.Fields(line)[1:]
	c := exec.Command(cleanprodBinary(f.t), args...)
	c.Dir = dir
	out, err := c.CombinedOutput()
	if err != nil {
		f.t.Fatalf("README's %q: %v\n%s", line, err, out)
	}
	return string(out)
}

// publish runs s through a recorder on the broker in the background; the
// returned func waits for the end of the run.
func publishInBackground(t *testing.T, s *sim.Simulator, brokerURL string) (*recorder, func()) {
	t.Helper()
	client, err := sim.Dial(context.Background(), brokerURL, "shard-gateways")
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(sim.NewMQTTPublisher(client, 10*time.Second))
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background(), rec) }()
	return rec, func() {
		t.Helper()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		client.Disconnect(100)
	}
}

// storedReading is a reading as the store holds it, to compare stores.
type storedReading struct {
	Value, Delta float64
}

// storedReadings reads every reading of every meter of fleet from db,
// keyed by enterprise/meter@time.
func storedReadings(t *testing.T, fleet string, db *testenv.InfluxDB) map[string]storedReading {
	t.Helper()
	reg, err := registry.Load(fleet)
	if err != nil {
		t.Fatal(err)
	}
	st := influxStore(t, db)
	out := map[string]storedReading{}
	for _, e := range reg.Enterprises {
		for _, m := range e.Meters {
			rs, err := st.Readings(context.Background(), e.ID, m.ID, time.Unix(0, 0), time.Now().Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				out[key(e.ID, m.ID, r.Time)] = storedReading{r.Value, r.Delta}
			}
		}
	}
	return out
}

// waitAllStored waits until db holds want readings and no replica holds a
// message in flight.
func waitAllStored(t *testing.T, db *testenv.InfluxDB, want int, ps []*proc) {
	t.Helper()
	st := influxStore(t, db)
	deadline := time.Now().Add(120 * time.Second)
	for {
		n, err := st.CountReadings(context.Background(), "")
		busy := 0.0
		for _, p := range ps {
			busy += p.metrics().metricOrZero("cleanprod_ingest_inflight_messages")
		}
		if err == nil && n >= want && busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 120s: %d of %d readings stored (%v), %g messages in flight", n, want, err, busy)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkLedger checks every meter of the ledger against the store: as
// many readings as sent, each once, and the deltas adding up to what the
// meter counted, so nothing was lost and nothing counted twice.
func checkLedger(t *testing.T, l sim.Ledger, stored map[string]storedReading) {
	t.Helper()
	count := map[string]int{}
	sum := map[string]float64{}
	for k, r := range stored {
		em, _, _ := strings.Cut(k, "@")
		count[em]++
		sum[em] += r.Delta
	}
	bad := 0
	for _, m := range l.Meters {
		em := m.Enterprise + "/" + m.Meter
		want := m.Sum
		ok := count[em] == m.Readings
		if m.Kind != registry.Gauge {
			ok = ok && math.Abs(sum[em]-want) <= 1e-6*math.Max(1, math.Abs(want))
		}
		if !ok {
			if bad++; bad <= 10 {
				t.Errorf("%s (%s): stored %d readings with deltas summing to %g; the gateways sent %d readings totalling %g", em, m.Kind, count[em], sum[em], m.Readings, want)
			}
		}
	}
	if total := len(stored); total != l.Readings {
		t.Errorf("stored %d readings, the gateways sent %d", total, l.Readings)
	}
}

// scoringState scrapes the levels, codes and indicator values of every
// enterprise from ps, merged, once two scrapes a while apart agree.
func scoringState(t *testing.T, ps ...*proc) map[string]float64 {
	t.Helper()
	scrape := func() map[string]float64 {
		out := map[string]float64{}
		for _, p := range ps {
			for _, fam := range []string{"cleanprod_scoring_level", "cleanprod_scoring_code", "cleanprod_scoring_indicator_value", "cleanprod_scoring_indicator_level"} {
				for k, v := range scrapeFamily(t, p.http, fam) {
					if _, dup := out[k]; dup {
						t.Errorf("%s is exported by two replicas", k)
					}
					out[k] = v
				}
			}
		}
		return out
	}
	prev := scrape()
	for range 60 {
		time.Sleep(time.Second)
		cur := scrape()
		if len(cur) > 0 && fmt.Sprint(cur) == fmt.Sprint(prev) {
			return cur
		}
		prev = cur
	}
	t.Fatal("scoring state did not settle")
	return nil
}

// sameScoring compares the scoring series of got (named gotName) with
// want's, series by series.
func sameScoring(t *testing.T, got, want map[string]float64, gotName, wantName string) {
	t.Helper()
	names := make([]string, 0, len(want))
	for k := range want {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if g, ok := got[k]; !ok || !sameFloat(want[k], g) {
			t.Errorf("%s: %s %g, %s %g (present %v)", k, wantName, want[k], gotName, g, ok)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s export %d scoring series, %s %d", gotName, len(got), wantName, len(want))
	}
}

func sameFloat(a, b float64) bool {
	return a == b || math.IsNaN(a) && math.IsNaN(b) || math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(a))
}

// TestShardsAgreeWithOneReplica: three replicas (shard count 3) and one
// replica alone, each with a database of its own, receive the same
// published data from one broker: they store the same readings (value
// and delta, key by key) and grade every enterprise alike.
func TestShardsAgreeWithOneReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("runs four replicas")
	}
	fleet := shardFleet(t)
	broker := testenv.Mosquitto(t)
	one := &shardFleetRun{t: t, fleet: fleet, broker: broker.URL(), db: testenv.Influx(t), clientID: "single", dataDirs: map[string]string{}}
	three := &shardFleetRun{t: t, fleet: fleet, broker: broker.URL(), db: testenv.Influx(t), clientID: "sharded", dataDirs: map[string]string{}}
	single := one.startAll(1)
	shards := three.startAll(3)
	s := shardSim(t, fleet, 6, 1000)
	rec, wait := publishInBackground(t, s, broker.URL())
	wait()
	l := s.Ledger()
	waitAllStored(t, one.db, l.Readings, single)
	waitAllStored(t, three.db, l.Readings, shards)

	// Each shard took its own enterprises' messages only.
	var taken float64
	for i, p := range shards {
		n := p.metrics().metricOrZero("cleanprod_ingest_messages_total")
		if n == 0 {
			t.Errorf("shard %d/3 received no message", i)
		}
		if no := p.metrics().metricOrZero(`cleanprod_ingest_not_owned_total{source="mqtt"}`); no != 0 {
			t.Errorf("shard %d/3 received %g messages of other shards", i, no)
		}
		taken += n
	}
	if all := single[0].metrics().metricOrZero("cleanprod_ingest_messages_total"); taken != all {
		t.Errorf("the shards received %g messages, the single replica %g", taken, all)
	}

	a, b := storedReadings(t, fleet, one.db), storedReadings(t, fleet, three.db)
	if len(a) != l.Readings || len(b) != l.Readings {
		t.Errorf("stored readings: %d by one replica, %d by three, %d sent (%d acknowledged by the broker)", len(a), len(b), l.Readings, rec.acked.Load())
	}
	diff := 0
	for k, r := range a {
		if o, ok := b[k]; !ok || !sameFloat(r.Value, o.Value) || !sameFloat(r.Delta, o.Delta) {
			if diff++; diff <= 10 {
				t.Errorf("%s: one replica stored %+v, three stored %+v (present %v)", k, r, o, ok)
			}
		}
	}
	checkLedger(t, l, a)
	checkLedger(t, l, b)

	want := scoringState(t, single...)
	sameScoring(t, scoringState(t, shards...), want, "three replicas", "one replica")
	t.Logf("%d readings of %d enterprises, %d scoring series alike", len(a), 12, len(want))
}

// TestShardsReshardUnderLoad scales one replica to three and three to
// two while gateways publish, with the procedure of the README: shards
// prepare the new count (the broker queues for its sessions from then),
// stop the old replicas, start the new ones (their backlogs replay what
// the old ones may have stored already, which is idempotent), retire the
// old count's sessions. Every reading is stored once and every meter's
// deltas add up to what it counted.
func TestShardsReshardUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs six replicas in turn")
	}
	fleet := shardFleet(t)
	broker := testenv.Mosquitto(t)
	// Checkpoints every second, in data folders kept per index: each start
	// after a reshard finds a checkpoint of another assignment.
	f := &shardFleetRun{t: t, fleet: fleet, broker: broker.URL(), db: testenv.Influx(t), clientID: "reshard", dataDirs: map[string]string{},
		extra: []string{"-scoring.checkpoint_every", "1s"}, byIndex: true}
	ps := f.startAll(1)
	s := shardSim(t, fleet, 12, 150)
	rec, wait := publishInBackground(t, s, broker.URL())
	var atSwitch []int64
	// The first reshard runs the README's commands as printed (1 -> 3).
	reshard := func(from, to int, readme bool) {
		time.Sleep(4 * time.Second)
		shards := func(cmd string, count int) string {
			if readme {
				return f.readmeShards(cmd)
			}
			return f.shards(cmd, count)
		}
		t.Log(strings.TrimSpace(shards("prepare", to)))
		for _, p := range ps {
			p.stop(t)
		}
		atSwitch = append(atSwitch, rec.acked.Load())
		ps = f.startAll(to)
		t.Log(strings.TrimSpace(shards("retire", from)))
	}
	reshard(1, 3, true)
	reshard(3, 2, false)
	wait()
	l := s.Ledger()
	// The reshards happened under load: readings came before and after
	// each.
	for i, n := range atSwitch {
		if n == 0 || n >= int64(l.Readings) {
			t.Fatalf("reshard %d happened after %d of %d readings were published: not under load", i+1, n, l.Readings)
		}
	}
	waitAllStored(t, f.db, l.Readings, ps)
	var replayed float64
	for _, p := range ps {
		replayed += p.metrics().metricOrZero("cleanprod_ingest_duplicates_total")
	}
	checkLedger(t, l, storedReadings(t, fleet, f.db))
	// The shards grade as a replica that reads everything from the store
	// afresh: no checkpoint of an earlier assignment was resumed.
	got := scoringState(t, ps...)
	ref := &shardFleetRun{t: t, fleet: fleet, broker: broker.URL(), db: f.db, clientID: "reshard-reference", dataDirs: map[string]string{}}
	want := scoringState(t, ref.startAll(1)...)
	sameScoring(t, got, want, "the shards", "a fresh replica on the same store")
	t.Logf("%d readings; reshards after %v; duplicates absorbed by the last replicas: %g; %d scoring series alike", l.Readings, atSwitch, replayed, len(want))
}

// TestShardKilledUnderLoad: one replica of three is SIGKILLed while
// gateways publish and started again; its shard is complete (its
// session kept what it had not acknowledged) and nothing is counted
// twice.
func TestShardKilledUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three replicas")
	}
	fleet := shardFleet(t)
	broker := testenv.Mosquitto(t)
	f := &shardFleetRun{t: t, fleet: fleet, broker: broker.URL(), db: testenv.Influx(t), clientID: "killed", dataDirs: map[string]string{}}
	ps := f.startAll(3)
	s := shardSim(t, fleet, 8, 200)
	rec, wait := publishInBackground(t, s, broker.URL())
	// Shard 1/3 owns six of the twelve enterprises: the most to lose.
	time.Sleep(5 * time.Second)
	before := ps[1].metrics().metricOrZero("cleanprod_ingest_readings_written_total")
	ps[1].kill()
	killedAt := rec.acked.Load()
	select {
	case <-ps[1].done:
	default:
		t.Fatal("replica 1/3 still runs after SIGKILL")
	}
	time.Sleep(3 * time.Second)
	p, err := f.start(1, 3)
	if err != nil {
		t.Fatal(err)
	}
	ps[1] = p
	wait()
	l := s.Ledger()
	if before == 0 || killedAt >= int64(l.Readings) {
		t.Fatalf("the kill came after %g readings written by the shard and %d of %d published: not under load", before, killedAt, l.Readings)
	}
	waitAllStored(t, f.db, l.Readings, ps)
	if n := ps[1].metrics().metricOrZero("cleanprod_ingest_readings_written_total"); n == 0 {
		t.Error("the restarted replica wrote nothing")
	}
	checkLedger(t, l, storedReadings(t, fleet, f.db))
	t.Logf("%d readings; replica 1/3 SIGKILLed after writing %g, with %d published", l.Readings, before, killedAt)
}
