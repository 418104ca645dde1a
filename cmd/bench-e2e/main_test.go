package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestSmoke runs every phase at a tiny scale against real servers, with
// profiles and a serve flag, and checks the report: nothing lost or
// rejected, every phase measured and profiled, a well-formed table. It
// asserts no speed.
func TestSmoke(t *testing.T) {
	testenv.NeedServers(t)
	out, prof := t.TempDir(), t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"-enterprises", "20", "-probes", "2", "-readings", "10000", "-duration", "3s", "-out", out,
		"-profile", prof, "-serve-args", "-ingest.writers 3"}
	if err := run(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, &stdout, &stderr)
	}

	mds, _ := filepath.Glob(filepath.Join(out, "e2e-*.md"))
	jss, _ := filepath.Glob(filepath.Join(out, "e2e-*.json"))
	if len(mds) != 1 || len(jss) != 1 {
		t.Fatalf("got results %v and %v in %s, want one markdown and one JSON file", mds, jss, out)
	}
	res := readResults(t, jss[0])
	want := res.Settings.Readings
	if want < 10000 || res.Settings.Meters < 20*50 || res.Settings.Messages == 0 {
		t.Fatalf("got settings %+v, want at least 10000 readings of at least 1000 meters", res.Settings)
	}
	if got := strings.Join(res.Settings.ServeArgs, " "); got != "-ingest.writers 3" || !res.Settings.Profiled {
		t.Errorf("got serve args %q, profiled %t, want \"-ingest.writers 3\", profiled", got, res.Settings.Profiled)
	}
	if b := res.Broker; b == nil || b.Messages != res.Settings.Messages || b.MsgsPerSec <= 0 {
		t.Errorf("got broker limit %+v, want all %d messages received", b, res.Settings.Messages)
	}
	if len(res.Store) != 3 || !res.Store[2].AsCleanprod || res.Store[2].Writers != 3 || res.Store[2].GZip != defaultInfluxGZip {
		t.Errorf("got %d store runs, want gzip off and on, and 3 writers as cleanprod (-ingest.writers 3)", len(res.Store))
	}
	if !strings.HasPrefix(res.Settings.Cleanprod, "commit ") && !strings.HasPrefix(res.Settings.Cleanprod, "unknown") {
		t.Errorf("got cleanprod %q, want its commit", res.Settings.Cleanprod)
	}
	for _, s := range res.Store {
		if s.Points != want || s.Stored != want {
			t.Errorf("store limit (gzip %t): got %d points written, %d stored, want %d", s.GZip, s.Points, s.Stored, want)
		}
	}
	for name, e := range map[string]*e2eResult{"end to end": res.E2E, "embedded": res.Embedded} {
		switch {
		case e == nil:
			t.Errorf("%s: not measured", name)
		case e.Lost != 0 || e.Rejected != 0 || e.Stored != want || e.Written != want:
			t.Errorf("%s: got %d stored, %d written, %d lost, %d rejected, want %d stored and written, none lost or rejected", name, e.Stored, e.Written, e.Lost, e.Rejected, want)
		case e.CPUSeconds < 0 || e.PeakRSSBytes <= 0 || e.MachineBusyCPUs < 0 || e.BenchCPUSeconds < 0 || e.InfluxdCPUSeconds < 0 || e.MosquittoCPUSeconds < 0:
			t.Errorf("%s: got %v CPU-s, a peak RSS of %d bytes, %v CPUs busy, %v CPU-s of bench-e2e", name, e.CPUSeconds, e.PeakRSSBytes, e.MachineBusyCPUs, e.BenchCPUSeconds)
		}
		checkProfile(t, name, e)
	}
	if l := res.Latency; l == nil || l.Samples == 0 || l.Stored == nil || l.Scored == nil || l.NoDataThrough {
		t.Errorf("got latency %+v, want samples stored and scored", l)
	}
	if res.Ratios == nil || len(res.Targets) != 6 {
		t.Errorf("got ratios %+v and %d targets, want ratios and 6 targets", res.Ratios, len(res.Targets))
	}

	md, err := os.ReadFile(mds[0])
	if err != nil {
		t.Fatal(err)
	}
	table := string(md)
	for _, row := range []string{"| # | measurement | result | details |", "| 1 | broker limit", "| 2 | store limit", "| 2 | store, 3 writers", "| 3 | cleanprod end to end",
		"| 4 | latency at 50% load", "| 5 | cleanprod CPU", "| 6 | embedded", "Ratios: ", "| target | wanted | measured | met |",
		"`-ingest.writers 3`", "**Profiled run**", "#### Profile of phase 3", "#### Profile of phase 6", "Top 25, CPU, by flat time", "flat%"} {
		if !strings.Contains(table, row) {
			t.Errorf("markdown has no %q:\n%s", row, table)
		}
	}
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, "| ") && !strings.HasSuffix(line, " |") {
			t.Errorf("malformed table row %q", line)
		}
	}
	if !strings.Contains(stdout.String(), table) {
		t.Errorf("stdout does not hold the saved table:\n%s", &stdout)
	}
}

// TestRestart runs the restart phase at a tiny scale against real
// servers: two days of history, serve started, killed under load and
// started again; it checks that both starts were measured and nothing
// acknowledged was lost. It asserts no speed.
func TestRestart(t *testing.T) {
	testenv.NeedServers(t)
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"-phases", "restart", "-enterprises", "3", "-meters-per-enterprise", "0", "-probes", "0",
		"-restart-days", "2", "-restart-load", "2s", "-restart-rate", "30", "-out", out}
	res := runBench(t, args, out, &stdout, &stderr)
	if res.E2E != nil || res.Broker != nil || len(res.Store) != 0 || res.Settings.Messages != 0 {
		t.Errorf("got other phases measured (%+v), want the restart phase alone", res.Settings)
	}
	if len(res.Restart) != 1 {
		t.Fatalf("got %d restart runs, want 1", len(res.Restart))
	}
	r := res.Restart[0]
	if r.Days != 2 || r.Meters < 3 {
		t.Errorf("got %d days of %d meters, want 2 days of the fleet's meters", r.Days, r.Meters)
	}
	// Two days of hourly readings, less the hours left for the load.
	from, err1 := time.Parse(time.RFC3339, r.HistoryFrom)
	live, err2 := time.Parse(time.RFC3339, r.LiveFrom)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if want := r.Meters * int(live.Sub(from)/time.Hour); r.Prefill.Points != want || r.Prefill.Stored != want || r.Prefill.PointsPerSec <= 0 {
		t.Errorf("got pre-fill %+v from %s to %s, want %d points written and stored", r.Prefill, r.HistoryFrom, r.LiveFrom, want)
	}
	for name, s := range map[string]*startResult{"first start": r.First, "after SIGKILL": r.AfterKill} {
		switch {
		case s == nil:
			t.Errorf("%s: not measured", name)
		case s.IngestReadySeconds <= 0 || s.GradedSeconds < s.IngestReadySeconds:
			t.Errorf("%s: ingest ready after %v s, graded after %v s, want both positive, graded not before ready", name, s.IngestReadySeconds, s.GradedSeconds)
		case s.RefillPeakRSSBytes <= 0 || s.SteadyRSSBytes <= 0 || s.SteadyMeanRSSBytes <= 0 || s.SteadySamples == 0 || s.LifePeakRSSBytes < s.RefillPeakRSSBytes || s.InfluxdPeakRSSBytes <= 0:
			t.Errorf("%s: got RSS refill peak %d, steady %d (mean %d, %d samples), life peak %d, influxd's peak %d", name, s.RefillPeakRSSBytes, s.SteadyRSSBytes, s.SteadyMeanRSSBytes, s.SteadySamples, s.LifePeakRSSBytes, s.InfluxdPeakRSSBytes)
		case s.ServeScoringSeconds <= 0 || s.ServeIngestSeconds <= 0:
			t.Errorf("%s: got serve's startup ingest %v s, scoring %v s", name, s.ServeIngestSeconds, s.ServeScoringSeconds)
		}
	}
	// The first start refills every window from the store (it has no
	// checkpoint); the start after the kill resumes them from the one the
	// first wrote after its refill.
	if s := r.First; s != nil && (s.RefillAggregates <= 0 || s.ResumedEnterprises != 0 || s.ServeScoringSeconds < s.ServeIngestSeconds || s.CheckpointBytes <= 0) {
		t.Errorf("first start: %d aggregates refilled, %d enterprises resumed, graded at %v s, ingest at %v s, checkpoint of %d bytes; want a refill after ingest started, then a checkpoint",
			s.RefillAggregates, s.ResumedEnterprises, s.ServeScoringSeconds, s.ServeIngestSeconds, s.CheckpointBytes)
	}
	if s := r.AfterKill; s != nil && s.ResumedEnterprises == 0 {
		t.Errorf("after the kill: no enterprise resumed from the checkpoint")
	}
	if !r.KilledUnderLoad || r.Acked == 0 || r.Published != r.Acked || r.Stored != r.Acked || r.Lost != 0 || r.Rejected != 0 {
		t.Errorf("got killed under load %t, %d published, %d acked, %d stored, %d lost, %d rejected; want killed under load, every acknowledged reading stored",
			r.KilledUnderLoad, r.Published, r.Acked, r.Stored, r.Lost, r.Rejected)
	}
	if len(res.Targets) != 7 {
		t.Errorf("got %d targets, want 7 (3 per start, 1 for losses)", len(res.Targets))
	}
	table := stdout.String()
	for _, row := range []string{"| 7 | restart on 2 days of history: pre-fill", "| 7 | restart on 2 days: first start | ingest ready",
		"| 7 | restart on 2 days: start after SIGKILL under load", "| 7 | restart on 2 days: readings across the SIGKILL | 0 lost, 0 rejected",
		"| restart on 2 days, first start: fully graded | <= 120 s |"} {
		if !strings.Contains(table, row) {
			t.Errorf("markdown has no %q:\n%s", row, table)
		}
	}
}

// checkProfile checks that -profile saved e's CPU and heap profiles, the
// binary they refer to, and their top functions.
func checkProfile(t *testing.T, name string, e *e2eResult) {
	t.Helper()
	p := e.Profile
	if p == nil {
		t.Errorf("%s: not profiled", name)
		return
	}
	if p.Segments < 1 || p.ProfileSeconds < p.TimedSeconds || p.Error != "" {
		t.Errorf("%s: got profile %+v, want CPU profiles over the timed part and no error", name, p)
	}
	for _, f := range []string{p.Binary, p.CPU, p.Heap} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s: profile file %q: %v", name, f, err)
		}
	}
	for what, top := range map[string]string{"CPU by flat": p.CPUTopFlat, "CPU by cum": p.CPUTopCum, "heap by flat": p.HeapTopFlat, "heap by cum": p.HeapTopCum} {
		if !strings.Contains(top, "flat%") {
			t.Errorf("%s: %s: got %q, want pprof's top", name, what, top)
		}
	}
	if !strings.Contains(p.CPUTopCum, "cum%") || !strings.Contains(p.HeapTopFlat, "Type: inuse_space") {
		t.Errorf("%s: got tops\n%s\n%s, want CPU by cum and the heap in use", name, p.CPUTopCum, p.HeapTopFlat)
	}
}

func TestFlagsRejectBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown phase", []string{"-phases", "broker,warp"}, `unknown phase "warp"`},
		{"latency without e2e", []string{"-phases", "latency"}, "add e2e"},
		{"too many enterprises", []string{"-enterprises", "9999", "-probes", "8"}, "at most 9999"},
		{"no readings", []string{"-readings", "0"}, "-readings 0"},
		{"huge messages", []string{"-readings-per-message", "6000"}, "1 to 5000"},
		{"short duration", []string{"-duration", "10ms"}, "at least 1s"},
		{"window", []string{"-window", "0"}, "-window 0"},
		{"meters", []string{"-meters-per-enterprise", "5000"}, "0 to 1000"},
		{"serve args", []string{"-serve-args", "ingest.writers 4"}, "want flags of cleanprod serve"},
		{"profile nothing", []string{"-phases", "broker,store", "-profile", "p"}, "only phases e2e, embedded and restart"},
		{"arguments", []string{"extra"}, "unexpected arguments"},
		{"not a number", []string{"-readings", "many"}, "invalid value"},
		{"restart days", []string{"-restart-days", "7,0"}, "-restart-days"},
		{"restart days list", []string{"-restart-days", "7;30"}, "-restart-days"},
		{"restart rate", []string{"-restart-rate", "-1"}, "-restart-rate"},
		{"restart load", []string{"-restart-load", "0s"}, "-restart-load"},
		{"influxd limit", []string{"-restart-influxd-max-rss", "-1"}, "-restart-influxd-max-rss"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			_, err := parseFlags(tc.args, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	c, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil {
		t.Errorf("defaults: %v", err)
	}
	if c.enterprises != 2000 || c.metersPer != 50 || c.profile != "" || len(c.serveArgs) != 0 {
		t.Errorf("defaults: got %d enterprises of %d meters, profile %q, serve args %q; want 2000 of 50, no profile, no serve args",
			c.enterprises, c.metersPer, c.profile, c.serveArgs)
	}
	if c.has("restart") || c.timeout != 10*time.Minute || !slices.Equal(c.restartDays, []int{7, 30}) {
		t.Errorf("defaults: got phases %v, timeout %v, restart days %v; want no restart, 10m, 7 and 30 days", c.phases, c.timeout, c.restartDays)
	}
	if c, err := parseFlags([]string{"-phases", "restart"}, &bytes.Buffer{}); err != nil || c.timeout != 90*time.Minute {
		t.Errorf("-phases restart: got timeout %v, %v; want 90m", c.timeout, err)
	}
}

func TestIngestWriters(t *testing.T) {
	for _, tc := range []struct {
		args string
		want int
	}{
		{"", defaultIngestWriters},
		{"-ingest.writers 4", 4},
		{"--ingest.writers=3 -log.level warn", 3},
		{"-ingest.writers 4 -ingest.writers 1", 1},
		{"-ingest.batch_size 1000", defaultIngestWriters},
		{"-ingest.writers many", defaultIngestWriters},
	} {
		c, err := parseFlags([]string{"-serve-args", tc.args}, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("-serve-args %q: %v", tc.args, err)
		}
		if got := c.ingestWriters(); got != tc.want {
			t.Errorf("-serve-args %q: got %d writers, want %d", tc.args, got, tc.want)
		}
	}
	c, err := parseFlags([]string{"-serve-args", "-scoring.interval 1h"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.scoringIntervalOf("1s"); got != "1h (-serve-args)" {
		t.Errorf("got scoring interval %q, want the one of -serve-args", got)
	}
	if got := (&config{}).scoringIntervalOf(""); got != "10s (default)" {
		t.Errorf("got scoring interval %q, want the default", got)
	}
	for args, want := range map[string]bool{"": defaultInfluxGZip, "-influx.gzip": true, "-influx.gzip -ingest.writers 4": true,
		"-influx.gzip=false": false, "-influx.gzip=true": true} {
		c, err := parseFlags([]string{"-serve-args", args}, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.influxGZip(); got != want {
			t.Errorf("-serve-args %q: got gzip %t, want %t", args, got, want)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP cleanprod_ingest_rejected_total Rejected.
# TYPE cleanprod_ingest_rejected_total counter
cleanprod_ingest_rejected_total{reason="spoofed"} 2
cleanprod_ingest_rejected_total{reason="a b}c"} 3
cleanprod_ingest_readings_written_total 1.2e+06
go_goroutines 12 1700000000000
`
	got, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"cleanprod_ingest_rejected_total": 5, "cleanprod_ingest_readings_written_total": 1.2e6, "go_goroutines": 12,
		`cleanprod_ingest_rejected_total{reason="spoofed"}`: 2, `cleanprod_ingest_rejected_total{reason="a b}c"}`: 3}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("got %s = %v, want %v", k, got[k], v)
		}
	}
	for _, bad := range []string{"x{a=\"1\" 2\n", "x\n", "x NaNa\n"} {
		if _, err := parseMetrics(strings.NewReader(bad)); err == nil {
			t.Errorf("parseMetrics(%q): no error", bad)
		}
	}
}

func TestSummarise(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := summarise(ds)
	if got.N != 100 || got.P50Ms != 50 || got.P99Ms != 99 || got.MaxMs != 100 || got.MeanMs != 50.5 {
		t.Errorf("got %+v, want n 100, p50 50, p99 99, max 100, mean 50.5", got)
	}
	if summarise(nil) != nil {
		t.Error("summarise(nil) is not nil")
	}
}

func TestProcessFigures(t *testing.T) {
	if _, err := processCPU(os.Getpid()); err != nil {
		t.Error(err)
	}
	if rss, err := processPeakRSS(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("got peak RSS %d, %v", rss, err)
	}
	if _, err := processCPU(-1); err == nil {
		t.Error("processCPU(-1): no error")
	}
	if m, err := machineCPU(); err != nil || m.busy <= 0 || m.total < m.busy {
		t.Errorf("got machine CPU %+v, %v", m, err)
	}
}

// readResults reads a results JSON file.
func readResults(t *testing.T, path string) results {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var res results
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatalf("results JSON: %v\n%s", err, data)
	}
	return res
}

// TestBacklogPhase runs phase 3 and the backlog phase at a tiny scale:
// InfluxDB is killed while the workload arrives, then started; every
// reading is stored, what cleanprod held is reported with its peak RSS
// against phase 3's.
func TestBacklogPhase(t *testing.T) {
	testenv.NeedServers(t)
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"-phases", "e2e,backlog", "-enterprises", "20", "-probes", "0", "-readings", "10000", "-out", out,
		"-serve-args", "-mqtt.max_unacked_messages 20"}
	res := runBench(t, args, out, &stdout, &stderr)
	want := res.Settings.Readings
	bl := res.Backlog
	switch {
	case bl == nil:
		t.Fatal("backlog: not measured")
	case bl.Deferred == 0:
		t.Errorf("backlog: nothing deferred with a bound of 20 messages: the phase did not fill cleanprod (%+v)", bl)
	case bl.Stored != want || bl.Lost != 0 || bl.Rejected != 0:
		t.Errorf("backlog: got %d stored, %d lost, %d rejected, want %d stored", bl.Stored, bl.Lost, bl.Rejected, want)
	case bl.PeakHeldMessages > 20 || bl.PeakRSSBytes <= 0 || bl.PeakRSSHoldingBytes <= 0:
		t.Errorf("backlog: held %v messages (bound 20), peak RSS %d and %d bytes", bl.PeakHeldMessages, bl.PeakRSSHoldingBytes, bl.PeakRSSBytes)
	}
	if !strings.Contains(stdout.String(), "| 8 | backlog") || !strings.Contains(stdout.String(), "peak RSS with a backlog (phase 8) vs without (phase 3)") {
		t.Errorf("the table has no backlog row or target:\n%s", &stdout)
	}
}

// runBench runs bench-e2e with args, writing into out, and returns the
// results it saved.
func runBench(t *testing.T, args []string, out string, stdout, stderr *bytes.Buffer) results {
	t.Helper()
	if err := run(t.Context(), args, stdout, stderr); err != nil {
		t.Fatalf("run %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, stdout, stderr)
	}
	jss, _ := filepath.Glob(filepath.Join(out, "e2e-*.json"))
	if len(jss) != 1 {
		t.Fatalf("got results %v in %s, want one JSON file", jss, out)
	}
	return readResults(t, jss[0])
}

// TestShardsPhase runs phase 3 and the shards phase on the same small
// workload: both store every reading, and the shards phase reports the
// CPU time of all its replicas per million readings.
func TestShardsPhase(t *testing.T) {
	testenv.NeedServers(t)
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"-phases", "e2e,shards", "-shards", "3", "-enterprises", "30", "-probes", "0", "-readings", "20000", "-out", out}
	if err := run(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, &stdout, &stderr)
	}
	jss, _ := filepath.Glob(filepath.Join(out, "e2e-*.json"))
	if len(jss) != 1 {
		t.Fatalf("got results %v in %s, want one JSON file", jss, out)
	}
	res := readResults(t, jss[0])
	want := res.Settings.Readings
	for name, e := range map[string]*e2eResult{"phase 3": res.E2E, "shards": res.Shards} {
		if e == nil || e.Stored != want || e.Lost != 0 || e.CPUSecondsPerMillion <= 0 {
			t.Errorf("%s: got %+v, want all %d readings stored and a CPU figure", name, e, want)
		}
	}
	if res.Shards != nil && res.Shards.Replicas != 3 {
		t.Errorf("shards phase: %d replicas, want 3", res.Shards.Replicas)
	}
	mds, _ := filepath.Glob(filepath.Join(out, "e2e-*.md"))
	if len(mds) == 1 {
		md, _ := os.ReadFile(mds[0])
		if !strings.Contains(string(md), "as 3 shards on the same mosquitto and InfluxDB") {
			t.Errorf("the markdown has no shards row:\n%s", md)
		}
	}
}
