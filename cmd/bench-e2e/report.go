package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// results are the raw figures of a run, written as JSON next to the
// markdown table.
type results struct {
	Started  time.Time        `json:"started"`
	Seconds  float64          `json:"seconds"` // the whole run
	Machine  machine          `json:"machine"`
	Settings settings         `json:"settings"`
	Broker   *brokerResult    `json:"broker_limit,omitempty"`
	Store    []*storeResult   `json:"store_limit,omitempty"`
	E2E      *e2eResult       `json:"end_to_end,omitempty"`
	Latency  *latencyResult   `json:"latency,omitempty"`
	Embedded *e2eResult       `json:"embedded,omitempty"`
	Shards   *e2eResult       `json:"shards,omitempty"`
	Restart  []*restartResult `json:"restart,omitempty"`
	Backlog  *backlogResult   `json:"backlog,omitempty"`
	Ratios   *ratios          `json:"ratios,omitempty"`
	Targets  []target         `json:"targets,omitempty"`
	Error    string           `json:"error,omitempty"` // why the run stopped early
}

type machine struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
	CPUModel  string `json:"cpu_model"`
}

type settings struct {
	Enterprises         int     `json:"enterprises"`
	ProbeEnterprises    int     `json:"probe_enterprises"`
	MetersPerEnterprise int     `json:"meters_per_enterprise"` // at least (sim.SyntheticFleetMeters)
	Meters              int     `json:"meters"`
	Gateways            int     `json:"gateways"`
	Readings            int     `json:"readings"`
	Messages            int     `json:"messages"`
	ReadingsPerMessage  float64 `json:"readings_per_message"`
	PayloadBytes        float64 `json:"payload_bytes_per_message"`
	SimulatedFrom       string  `json:"simulated_from"`
	GenerateSeconds     float64 `json:"generate_seconds"`
	Publishers          int     `json:"publishers"`
	Window              int     `json:"window"`
	StoreWriters        int     `json:"store_writers"`
	BatchSize           int     `json:"batch_size"`
	LatencyDuration     string  `json:"latency_duration"`
	// Unscored: load enterprises of an industry the standard does not
	// grade (none with sim's fleets).
	Unscored int   `json:"unscored_enterprises"`
	Seed     int64 `json:"seed"`
	// Cleanprod: the commit the cleanprod binary was built from.
	Cleanprod string `json:"cleanprod"`
	// ServeArgs: -serve-args, given to every cleanprod serve of the run.
	ServeArgs []string `json:"serve_args,omitempty"`
	// ServeEnv: -serve-env, the environment of every cleanprod serve.
	ServeEnv []string `json:"serve_env,omitempty"`
	// Profiled: -profile; serve's CPU figures include the profiler's cost.
	Profiled bool `json:"profiled"`
}

type brokerResult struct {
	Messages       int     `json:"messages"`
	Readings       int     `json:"readings"`
	Seconds        float64 `json:"seconds"`
	MsgsPerSec     float64 `json:"msgs_per_sec"`
	ReadingsPerSec float64 `json:"readings_per_sec"`
}

type storeResult struct {
	GZip         bool    `json:"gzip"`
	AsCleanprod  bool    `json:"as_cleanprod"` // writers and gzip as cleanprod's: for comparison (the limit is the fastest run all the same)
	Points       int     `json:"points"`
	Stored       int     `json:"stored"`
	Writers      int     `json:"writers"`
	BatchSize    int     `json:"batch_size"`
	Seconds      float64 `json:"seconds"`
	PointsPerSec float64 `json:"points_per_sec"`
	// InfluxdCPUSeconds: influxd's CPU time over the writes.
	InfluxdCPUSeconds float64 `json:"influxd_cpu_seconds"`
}

type e2eResult struct {
	Readings       int     `json:"readings"`
	Messages       int     `json:"messages"`
	Seconds        float64 `json:"seconds"`
	ReadingsPerSec float64 `json:"readings_per_sec"`
	Written        int     `json:"written"` // cleanprod_ingest_readings_written_total
	Rejected       int     `json:"rejected"`
	Duplicates     int     `json:"duplicates"`
	// The scorer's output points (indicator values, scores, events)
	// written to the store by the end of the phase, and those dropped or
	// failed (cleanprod_scoring_points_total).
	ScoringPoints        int     `json:"scoring_points_written"`
	ScoringPointsLost    int     `json:"scoring_points_dropped_or_failed"`
	Stored               int     `json:"stored"` // counted in the store at the end
	StoredHow            string  `json:"stored_how"`
	Lost                 int     `json:"lost"`
	CPUSeconds           float64 `json:"cpu_seconds"`
	CPUSecondsPerMillion float64 `json:"cpu_seconds_per_million_readings"`
	PeakRSSBytes         int64   `json:"peak_rss_bytes"`
	// The whole machine over the timed part: CPUs busy on average
	// (/proc/stat), and the CPU time of bench-e2e itself (publishers,
	// polls), influxd and mosquitto (/proc/PID/stat); what serve and these
	// did not use went to anything else running on the machine.
	MachineBusyCPUs     float64 `json:"machine_busy_cpus"`
	BenchCPUSeconds     float64 `json:"bench_cpu_seconds"`
	InfluxdCPUSeconds   float64 `json:"influxd_cpu_seconds"`
	MosquittoCPUSeconds float64 `json:"mosquitto_cpu_seconds"`
	ScoringInterval     string  `json:"scoring_interval"`
	// The one /metrics scrape after the measured span: its size, how long
	// it took and cleanprod's CPU meanwhile (mostly the scrape).
	MetricsBytes      int64   `json:"metrics_bytes"`
	MetricsSeconds    float64 `json:"metrics_seconds"`
	MetricsCPUSeconds float64 `json:"metrics_cpu_seconds"`
	// Profile: what -profile saved of the phase.
	Profile *profileResult `json:"profile,omitempty"`
	// Replicas: the shards phase's serve processes (shard.count); their
	// CPU time is added up, PeakRSSBytes is the largest one's.
	Replicas int `json:"replicas,omitempty"`
}

type latencyResult struct {
	TargetReadingsPerSec float64      `json:"target_readings_per_sec"`
	ReadingsPerSec       float64      `json:"readings_per_sec"` // achieved by the simulator
	Readings             int          `json:"readings"`
	Seconds              float64      `json:"seconds"`
	Warmup               string       `json:"warmup"`
	Probes               int          `json:"probe_enterprises"`
	ScoringInterval      string       `json:"scoring_interval"`
	Samples              int          `json:"samples"`
	Stored               *percentiles `json:"publish_to_stored,omitempty"`
	Scored               *percentiles `json:"publish_to_scored,omitempty"`
	StoredTimeouts       int          `json:"stored_timeouts"`
	ScoredTimeouts       int          `json:"scored_timeouts"`
	NoDataThrough        bool         `json:"no_data_through"`                 // the API has no data_through field
	Detail               *percentiles `json:"get_enterprise_detail,omitempty"` // one GET /api/v1/enterprises/{id} per probe
	DetailHasDataThrough bool         `json:"detail_has_data_through"`
	DetailErrors         int          `json:"get_enterprise_detail_errors"`
	DetailError          string       `json:"get_enterprise_detail_error,omitempty"` // the first
	Backlog              int          `json:"backlog_after_load"`
}

// restartResult is phase 7 for one length of history.
type restartResult struct {
	Days        int           `json:"days"`
	Enterprises int           `json:"enterprises"`
	Meters      int           `json:"meters"`
	HistoryFrom string        `json:"history_from"` // the first pre-filled hour
	LiveFrom    string        `json:"live_from"`    // the first hour the load publishes
	HistoryTo   string        `json:"history_to"`   // the last hour the load publishes
	Prefill     prefillResult `json:"prefill"`
	// The load: the fleet's readings from LiveFrom on, published at this
	// rate through both starts and the kill; LiveReadings were available.
	LoadReadingsPerSec float64      `json:"load_readings_per_sec"`
	LiveReadings       int          `json:"live_readings"`
	SteadySeconds      float64      `json:"steady_seconds"` // span after grading of each start
	First              *startResult `json:"first_start"`
	AfterKill          *startResult `json:"after_kill"`
	KilledUnderLoad    bool         `json:"killed_under_load"`
	LoadRanOut         bool         `json:"load_ran_out"` // every available reading was published
	// Readings of the load: published, acknowledged by the broker, found
	// in the store at the end (from LiveFrom on), lost (acknowledged, not
	// stored); rejected by serve (the first start until its scrape, the
	// second until the end).
	Published int `json:"published"`
	Acked     int `json:"acked"`
	Stored    int `json:"stored"`
	Lost      int `json:"lost"`
	Rejected  int `json:"rejected"`
	// Error: why this length's run stopped early (the next length ran).
	Error string `json:"error,omitempty"`
}

// prefillResult is the history written straight into InfluxDB.
type prefillResult struct {
	Points       int     `json:"points"`
	Stored       int     `json:"stored"`
	Writers      int     `json:"writers"`
	BatchSize    int     `json:"batch_size"`
	Seconds      float64 `json:"seconds"` // simulation and normalisation included
	PointsPerSec float64 `json:"points_per_sec"`
}

// startResult is one start of serve on the pre-filled store; times are
// from the process's start.
type startResult struct {
	IngestReadySeconds float64 `json:"ingest_ready_seconds"` // first /readyz 200
	GradedSeconds      float64 `json:"graded_seconds"`       // first /readyz 200 with no "loading"
	LoadingPolls       int     `json:"loading_polls"`        // /readyz 200 answers with "loading" before that
	Loading            string  `json:"loading_last,omitempty"`
	CPUSecondsToGraded float64 `json:"cpu_seconds_to_graded"`
	// RefillPeakRSSBytes: VmHWM once graded (the peak of the start and
	// the refill); SteadyRSSBytes, SteadyMeanRSSBytes: the largest and
	// the mean VmRSS sampled over the second half of the span after
	// grading, under load; LifePeakRSSBytes: VmHWM at the span's end.
	RefillPeakRSSBytes int64 `json:"refill_peak_rss_bytes"`
	SteadyRSSBytes     int64 `json:"steady_rss_bytes"`
	SteadyMeanRSSBytes int64 `json:"steady_mean_rss_bytes"`
	SteadySamples      int   `json:"steady_samples"`
	LifePeakRSSBytes   int64 `json:"life_peak_rss_bytes"`
	// InfluxdPeakRSSBytes: the largest VmRSS of influxd sampled every
	// second from serve's start until graded.
	InfluxdPeakRSSBytes int64 `json:"influxd_peak_rss_bytes"`
	// InfluxdCPUSecondsToGraded: CPU time of the run's influxd from
	// serve's launch until graded (what the start's queries cost it).
	InfluxdCPUSecondsToGraded float64 `json:"influxd_cpu_seconds_to_graded"`
	// HeapProfile: with -profile, serve's heap (live objects after a GC)
	// at the end of the steady span; HeapTop: its go tool pprof -top.
	HeapProfile string `json:"heap_profile,omitempty"`
	HeapTop     string `json:"heap_top,omitempty"`
	// CPUProfile: with -profile, serve's CPU from its pprof listener's
	// first answer until graded (segments of segmentSeconds, merged);
	// CPUTop: its go tool pprof -top -cum.
	CPUProfile string `json:"cpu_profile,omitempty"`
	CPUTop     string `json:"cpu_top,omitempty"`
	// From serve's /metrics after the span: cleanprod_startup_duration_seconds
	// by stage, the refill's cleanprod_scoring_refill_* and ingest's
	// counters.
	ServeIngestSeconds  float64 `json:"serve_ingest_seconds"`
	ServeScoringSeconds float64 `json:"serve_scoring_seconds"`
	RefillSeconds       float64 `json:"refill_seconds"`
	RefillAggregates    int     `json:"refill_aggregates"`
	RefillRetries       int     `json:"refill_retries"`
	// ResumedEnterprises: enterprises whose windows the start loaded from
	// the scorer's checkpoint (cleanprod_scoring_resumed_enterprises);
	// CheckpointSeconds and CheckpointBytes: the last checkpoint written
	// by the time of the scrape.
	ResumedEnterprises int     `json:"resumed_enterprises"`
	CheckpointSeconds  float64 `json:"checkpoint_seconds"`
	CheckpointBytes    int64   `json:"checkpoint_bytes"`
	Written            int     `json:"written"`
	Rejected           int     `json:"rejected"`
}

// peakRatio is the refill's peak RSS over the steady state's.
func (s *startResult) peakRatio() float64 {
	if s.SteadyRSSBytes == 0 {
		return math.Inf(1)
	}
	return float64(s.RefillPeakRSSBytes) / float64(s.SteadyRSSBytes)
}

// Targets of phase 7.
const (
	targetIngestReady    = 30 * time.Second
	targetGraded         = 120 * time.Second
	targetRefillPeak     = 1.2  // x steady state
	targetPeakAcrossDays = 0.10 // shortest vs longest history
)

type ratios struct {
	BrokerReadingsPerSec float64 `json:"broker_readings_per_sec"` // broker msgs/s x readings per message
	StorePointsPerSec    float64 `json:"store_points_per_sec"`    // the faster of gzip on and off
	Limit                float64 `json:"limit"`                   // the smaller of the two
	LimitedBy            string  `json:"limited_by"`
	EndToEnd             float64 `json:"end_to_end"` // phase 3 / limit
	EndToEndVsStore      float64 `json:"end_to_end_vs_store"`
	Embedded             float64 `json:"embedded,omitempty"` // phase 6 / limit
}

type target struct {
	Name     string `json:"name"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
	Note     string `json:"note,omitempty"`
}

// derive computes the ratios and checks the targets.
func (r *results) derive() {
	if r.Broker != nil && len(r.Store) > 0 && r.E2E != nil {
		rt := &ratios{BrokerReadingsPerSec: r.Broker.ReadingsPerSec}
		for _, s := range r.Store {
			rt.StorePointsPerSec = max(rt.StorePointsPerSec, s.PointsPerSec) // the fastest way
		}
		rt.Limit, rt.LimitedBy = rt.StorePointsPerSec, "store"
		if rt.BrokerReadingsPerSec < rt.Limit {
			rt.Limit, rt.LimitedBy = rt.BrokerReadingsPerSec, "broker"
		}
		rt.EndToEnd = r.E2E.ReadingsPerSec / rt.Limit
		rt.EndToEndVsStore = r.E2E.ReadingsPerSec / rt.StorePointsPerSec
		if r.Embedded != nil {
			rt.Embedded = r.Embedded.ReadingsPerSec / rt.Limit
		}
		r.Ratios = rt
	}
	r.Targets = nil
	add := func(name, want, got string, met bool, note string) {
		r.Targets = append(r.Targets, target{name, want, got, met, note})
	}
	if e := r.E2E; e != nil {
		measured := fmt.Sprintf("%.2f CPU-s", e.CPUSecondsPerMillion)
		if r.Settings.Profiled {
			measured += " (profiled run: inflated a little)"
		}
		add("cleanprod CPU per million readings (phase 3)", "<= 2 CPU-s", measured,
			e.CPUSecondsPerMillion <= 2, overBy(e.CPUSecondsPerMillion, 2))
	}
	if rt := r.Ratios; rt != nil {
		add("end to end vs store limit", ">= 90%", pct(rt.EndToEndVsStore), rt.EndToEndVsStore >= 0.9, underBy(rt.EndToEndVsStore, 0.9))
	}
	if l := r.Latency; l != nil {
		switch {
		case l.NoDataThrough:
			add("p99 publish -> score updated at 50% load", "< 2 s", "not measured", false, "the API has no data_through field")
		case l.Scored == nil:
			add("p99 publish -> score updated at 50% load", "< 2 s", "no sample", false, fmt.Sprintf("%d probes timed out", l.ScoredTimeouts))
		default:
			p99 := l.Scored.P99Ms / 1000
			note := overBy(p99, 2)
			if l.ScoredTimeouts > 0 {
				note = strings.TrimPrefix(note+fmt.Sprintf("; %d probes not scored within %v", l.ScoredTimeouts, probeTimeout), "; ")
			}
			add("p99 publish -> score updated at 50% load", "< 2 s", fmt.Sprintf("%.2f s (scoring.interval %s)", p99, l.ScoringInterval),
				p99 < 2 && l.ScoredTimeouts == 0, note)
		}
	}
	if e := r.E2E; e != nil {
		gb := float64(e.PeakRSSBytes) / (1 << 30)
		add("peak RSS (phase 3)", "< 1 GiB", fmt.Sprintf("%.2f GiB at %s enterprises / %s meters (+%d probe enterprises)", gb, num(float64(r.Settings.Enterprises)), num(float64(r.Settings.Meters)), r.Settings.ProbeEnterprises),
			gb < 1, overBy(gb, 1))
	}
	if bl, e := r.Backlog, r.E2E; bl != nil && bl.Error == "" && e != nil && e.PeakRSSBytes > 0 {
		ratio := float64(bl.PeakRSSBytes) / float64(e.PeakRSSBytes)
		add("peak RSS with a backlog (phase 8) vs without (phase 3)", "<= 1.5x", fmt.Sprintf("%.2fx (%s vs %s)", ratio, mib(bl.PeakRSSBytes), mib(e.PeakRSSBytes)),
			ratio <= 1.5, overBy(ratio, 1.5))
	}
	for _, e := range []*e2eResult{r.E2E, r.Embedded} {
		if e == nil {
			continue
		}
		name := "zero readings lost (phase 3)"
		if e == r.Embedded {
			name = "zero readings lost (phase 6, embedded)"
		}
		add(name, "0 lost, 0 rejected", fmt.Sprintf("%d lost, %d rejected", e.Lost, e.Rejected), e.Lost == 0 && e.Rejected == 0, "")
	}
	for _, rs := range r.Restart {
		for _, st := range []struct {
			name string
			s    *startResult
		}{{"first start", rs.First}, {"after SIGKILL", rs.AfterKill}} {
			if st.s == nil {
				continue
			}
			what := fmt.Sprintf("restart on %d days, %s: ", rs.Days, st.name)
			add(what+"ingest ready", fmt.Sprintf("<= %.0f s", targetIngestReady.Seconds()), fmt.Sprintf("%.1f s", st.s.IngestReadySeconds),
				st.s.IngestReadySeconds <= targetIngestReady.Seconds(), overBy(st.s.IngestReadySeconds, targetIngestReady.Seconds()))
			add(what+"fully graded", fmt.Sprintf("<= %.0f s", targetGraded.Seconds()), fmt.Sprintf("%.1f s", st.s.GradedSeconds),
				st.s.GradedSeconds <= targetGraded.Seconds(), overBy(st.s.GradedSeconds, targetGraded.Seconds()))
			ratio := st.s.peakRatio()
			add(what+"refill peak RSS vs steady state", fmt.Sprintf("<= %.1fx", targetRefillPeak),
				fmt.Sprintf("%.2fx (%s vs %s)", ratio, mib(st.s.RefillPeakRSSBytes), mib(st.s.SteadyRSSBytes)), ratio <= targetRefillPeak, overBy(ratio, targetRefillPeak))
		}
		if rs.First != nil && rs.AfterKill != nil {
			add(fmt.Sprintf("restart on %d days: readings lost across SIGKILL", rs.Days), "0 lost, 0 rejected",
				fmt.Sprintf("%d lost, %d rejected of %s acknowledged", rs.Lost, rs.Rejected, num(float64(rs.Acked))), rs.Lost == 0 && rs.Rejected == 0, "")
		}
	}
	if short, long := r.restartSpan(); short != nil && long != nil {
		a, b := float64(short.First.RefillPeakRSSBytes), float64(long.First.RefillPeakRSSBytes)
		diff := math.Abs(b/a - 1)
		note := ""
		if diff > targetPeakAcrossDays {
			note = fmt.Sprintf("missed by %.0f points", (diff-targetPeakAcrossDays)*100)
		}
		add(fmt.Sprintf("refill peak RSS, %d vs %d days of history (first start)", short.Days, long.Days), fmt.Sprintf("within %.0f%%", targetPeakAcrossDays*100),
			fmt.Sprintf("%s vs %s (%+.0f%%)", mib(short.First.RefillPeakRSSBytes), mib(long.First.RefillPeakRSSBytes), (b/a-1)*100), diff <= targetPeakAcrossDays, note)
	}
}

// restartSpan returns the restart runs of the shortest and the longest
// history when there are two lengths measured, else nils.
func (r *results) restartSpan() (short, long *restartResult) {
	for _, rs := range r.Restart {
		if rs.First == nil || rs.First.RefillPeakRSSBytes == 0 {
			continue
		}
		if short == nil || rs.Days < short.Days {
			short = rs
		}
		if long == nil || rs.Days > long.Days {
			long = rs
		}
	}
	if short == nil || short.Days == long.Days {
		return nil, nil
	}
	return short, long
}

// lossFree reports whether every end-to-end phase that ran stored every
// reading and rejected none.
func (r *results) lossFree() bool {
	for _, e := range []*e2eResult{r.E2E, r.Embedded, r.Shards} {
		if e != nil && (e.Lost != 0 || e.Rejected != 0) {
			return false
		}
	}
	for _, rs := range r.Restart {
		if rs.Lost != 0 || rs.Rejected != 0 {
			return false
		}
	}
	if bl := r.Backlog; bl != nil && (bl.Lost != 0 || bl.Rejected != 0) {
		return false
	}
	return true
}

func overBy(got, limit float64) string {
	if got <= limit {
		return ""
	}
	return fmt.Sprintf("missed by %.0f%%", (got/limit-1)*100)
}

func underBy(got, want float64) string {
	if got >= want {
		return ""
	}
	return fmt.Sprintf("missed by %.0f points", (want-got)*100)
}

func pct(x float64) string { return fmt.Sprintf("%.0f%%", x*100) }

// num formats n with thousands separators.
func num(n float64) string {
	s := fmt.Sprintf("%.0f", math.Round(n))
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// writeMarkdown writes the table, ratios and targets.
func (r *results) writeMarkdown(w io.Writer) {
	s := r.Settings
	fmt.Fprintf(w, "### cleanprod end-to-end benchmark, %s\n\n", r.Started.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Machine: %d CPUs (%s), %s, %s. Whole run: %.0f s. cleanprod: %s.\n\n", r.Machine.CPUs, r.Machine.CPUModel, r.Machine.Kernel, r.Machine.GoVersion, r.Seconds, s.Cleanprod)
	fmt.Fprintf(w, "Workload: synthetic fleet (sim.SyntheticFleetMeters) of %s enterprises of at least %d meters (+%d probe enterprises), %s gateways, %s meters; %s readings in %s messages of %.0f readings (%.0f bytes) on average, generated by sim before timing (%.1f s), simulated from %s. Publishers: %d paho clients, up to %d unacknowledged each. Store writers: %d, batches of %d.\n\n",
		num(float64(s.Enterprises)), s.MetersPerEnterprise, s.ProbeEnterprises, num(float64(s.Gateways)), num(float64(s.Meters)), num(float64(s.Readings)), num(float64(s.Messages)),
		s.ReadingsPerMessage, s.PayloadBytes, s.GenerateSeconds, s.SimulatedFrom, s.Publishers, s.Window, s.StoreWriters, s.BatchSize)
	if s.Unscored > 0 {
		fmt.Fprintf(w, "%d enterprises of the load are of an industry the standard does not grade: cleanprod does not score them.\n\n", s.Unscored)
	}
	if len(s.ServeEnv) > 0 {
		fmt.Fprintf(w, "cleanprod serve environment (-serve-env, every serve of the run): `%s`.\n\n", strings.Join(s.ServeEnv, " "))
	}
	if len(s.ServeArgs) > 0 {
		fmt.Fprintf(w, "cleanprod serve flags beyond the benchmark's own (-serve-args, every serve of the run): `%s`.\n\n", strings.Join(s.ServeArgs, " "))
	} else {
		fmt.Fprintln(w, "cleanprod serve flags beyond the benchmark's own (-serve-args): none, cleanprod's defaults.")
		fmt.Fprintln(w)
	}
	if s.Profiled {
		fmt.Fprintf(w, "**Profiled run** (-profile): serve's CPU was profiled over phases 3 and 6 (100 samples/s, one profile built every %d s), so its CPU figures are inflated a little; take CPU and RSS from an unprofiled run. The profiles are at the end.\n\n", segmentSeconds)
	}

	fmt.Fprintln(w, "| # | measurement | result | details |")
	fmt.Fprintln(w, "|---|---|---|---|")
	if b := r.Broker; b != nil {
		fmt.Fprintf(w, "| 1 | broker limit: paho -> mosquitto -> paho, QoS 1, persistent session | %s msgs/s = %s readings/s | %s messages in %.1f s |\n",
			num(b.MsgsPerSec), num(b.ReadingsPerSec), num(float64(b.Messages)), b.Seconds)
	}
	for _, st := range r.Store {
		gz := "off"
		if st.GZip {
			gz = "on"
		}
		what := fmt.Sprintf("store limit: influxdb-client-go, pre-built line protocol, gzip %s", gz)
		if st.AsCleanprod {
			what = fmt.Sprintf("store, %s, gzip %s: as cleanprod writes (ingest.writers, influx.gzip)", plural(st.Writers, "writer"), gz)
		}
		fmt.Fprintf(w, "| 2 | %s | %s points/s | %s points in %.1f s, %s, batches of %d; %s stored; influxd %.1f CPU-s per million points |\n",
			what, num(st.PointsPerSec), num(float64(st.Points)), st.Seconds, plural(st.Writers, "writer"), st.BatchSize, num(float64(st.Stored)), st.InfluxdCPUSeconds/float64(st.Points)*1e6)
	}
	if e := r.E2E; e != nil {
		fmt.Fprintf(w, "| 3 | cleanprod end to end: mosquitto -> serve -> InfluxDB | %s readings/s | %s readings in %.1f s; stored %s, lost %s, rejected %d; scoring.interval %s; scorer output points written %s (dropped or failed %s); influxd %.1f CPU-s per million readings |\n",
			num(e.ReadingsPerSec), num(float64(e.Readings)), e.Seconds, num(float64(e.Stored)), num(float64(e.Lost)), e.Rejected, e.ScoringInterval,
			num(float64(e.ScoringPoints)), num(float64(e.ScoringPointsLost)), e.InfluxdCPUSeconds/float64(e.Readings)*1e6)
	}
	if l := r.Latency; l != nil {
		stored, scored := "n/a", "n/a"
		if l.Stored != nil {
			stored = fmt.Sprintf("p50 %s / p99 %s", secs(l.Stored.P50Ms), secs(l.Stored.P99Ms))
		}
		switch {
		case l.NoDataThrough:
			scored = "n/a: the API has no data_through"
		case l.Scored != nil:
			scored = fmt.Sprintf("p50 %s / p99 %s", secs(l.Scored.P50Ms), secs(l.Scored.P99Ms))
		}
		detail := "no answer"
		if l.Detail != nil {
			detail = fmt.Sprintf("p50 %s / p99 %s (%d answered)", secs(l.Detail.P50Ms), secs(l.Detail.P99Ms), l.Detail.N)
			if !l.DetailHasDataThrough {
				detail += `, without a "data_through" field`
			}
		}
		if l.DetailErrors > 0 {
			detail += fmt.Sprintf(", %d failed (%s)", l.DetailErrors, l.DetailError)
		}
		fmt.Fprintf(w, "| 4 | latency at 50%% load (%s readings/s), scoring.interval %s | publish -> stored %s; publish -> score updated %s | %d samples from %d probe enterprises over %.0f s (after %s warm-up); timeouts: %d stored, %d scored; backlog 20 s after the load: %s readings; one GET /api/v1/enterprises/{id} under this load: %s |\n",
			num(l.ReadingsPerSec), l.ScoringInterval, stored, scored, l.Samples, l.Probes, l.Seconds, l.Warmup, l.StoredTimeouts, l.ScoredTimeouts, num(float64(l.Backlog)), detail)
	}
	profiled := ""
	if s.Profiled {
		profiled = "; profiled run: CPU inflated a little by the profiler"
	}
	if e := r.E2E; e != nil {
		fmt.Fprintf(w, "| 5 | cleanprod CPU and memory over phase 3 | %.2f CPU-s per million readings; peak RSS %s | %.1f CPU-s (utime+stime of serve alone)%s; %s; one /metrics scrape afterwards: %.1f MB in %.1f s, %.1f CPU-s |\n",
			e.CPUSecondsPerMillion, mib(e.PeakRSSBytes), e.CPUSeconds, profiled, e.machineShare(r.Machine.CPUs), float64(e.MetricsBytes)/1e6, e.MetricsSeconds, e.MetricsCPUSeconds)
	}
	if e := r.Embedded; e != nil {
		fmt.Fprintf(w, "| 6 | embedded broker + embedded store end to end | %s readings/s | %s readings in %.1f s; stored %s, lost %s, rejected %d |\n",
			num(e.ReadingsPerSec), num(float64(e.Readings)), e.Seconds, num(float64(e.Stored)), num(float64(e.Lost)), e.Rejected)
		fmt.Fprintf(w, "| 6 | embedded: CPU and memory | %.2f CPU-s per million readings; peak RSS %s | broker and store run inside serve and are counted%s; %s |\n",
			e.CPUSecondsPerMillion, mib(e.PeakRSSBytes), profiled, e.machineShare(r.Machine.CPUs))
	}
	if e := r.Shards; e != nil {
		vs := ""
		if one := r.E2E; one != nil {
			vs = fmt.Sprintf("; phase 3 (one replica): %.2f CPU-s per million readings, %s readings/s", one.CPUSecondsPerMillion, num(one.ReadingsPerSec))
		}
		fmt.Fprintf(w, "| shards | cleanprod end to end as %d shards on the same mosquitto and InfluxDB | %s readings/s; %.2f CPU-s per million readings (all replicas) | %s readings in %.1f s; stored %s, lost %s, rejected %d; %.1f CPU-s of serve over the replicas, largest peak RSS %s%s; %s |\n",
			e.Replicas, num(e.ReadingsPerSec), e.CPUSecondsPerMillion, num(float64(e.Readings)), e.Seconds, num(float64(e.Stored)), num(float64(e.Lost)), e.Rejected,
			e.CPUSeconds, mib(e.PeakRSSBytes), vs, e.machineShare(r.Machine.CPUs))
	}
	for _, rs := range r.Restart {
		rs.writeMarkdown(w)
	}
	if r.Backlog != nil {
		var steady int64
		if r.E2E != nil {
			steady = r.E2E.PeakRSSBytes
		}
		r.Backlog.writeMarkdown(w, steady)
	}
	for _, p := range []struct {
		name string
		e    *e2eResult
	}{{"phase 3", r.E2E}, {"phase 6", r.Embedded}} {
		// Below 2 s the clock ticks of /proc (10 ms) make the figure too
		// coarse to tell.
		if p.e != nil && p.e.Seconds >= 2 && p.e.otherCPUs() > disturbedCPUs {
			fmt.Fprintf(w, "\n**Disturbed:** other work on the machine used %.2f CPUs during %s: its figures are likely lower than on a quiet machine.\n", p.e.otherCPUs(), p.name)
		}
	}
	if rt := r.Ratios; rt != nil {
		fmt.Fprintf(w, "\nRatios: limit = min(broker %s msgs/s x %.0f readings = %s readings/s, store %s points/s) = %s (%s).\n",
			num(r.Broker.MsgsPerSec), s.ReadingsPerMessage, num(rt.BrokerReadingsPerSec), num(rt.StorePointsPerSec), num(rt.Limit), rt.LimitedBy)
		fmt.Fprintf(w, "End to end / limit = **%s**; end to end / store limit = %s", pct(rt.EndToEnd), pct(rt.EndToEndVsStore))
		if rt.Embedded > 0 {
			fmt.Fprintf(w, "; embedded / limit = %s", pct(rt.Embedded))
		}
		fmt.Fprintln(w, ".")
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w, "\n| target | wanted | measured | met |")
		fmt.Fprintln(w, "|---|---|---|---|")
		for _, t := range r.Targets {
			met := "yes"
			if !t.Met {
				met = "**no**"
				if t.Note != "" {
					met += ", " + t.Note
				}
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.Name, t.Target, t.Measured, met)
		}
	}
	for _, e := range []*e2eResult{r.E2E, r.Embedded} {
		if e != nil && e.Profile != nil {
			e.Profile.writeMarkdown(w)
		}
	}
	for _, rs := range r.Restart {
		for _, st := range []struct {
			name string
			s    *startResult
		}{{"first start", rs.First}, {"start after SIGKILL", rs.AfterKill}} {
			if st.s == nil {
				continue
			}
			if st.s.CPUProfile != "" {
				fmt.Fprintf(w, "\n#### CPU of phase 7, %d days, %s, until graded\n\n", rs.Days, st.name)
				fmt.Fprintf(w, "From the pprof listener's first answer: `go tool pprof %s`.\n", st.s.CPUProfile)
				if st.s.CPUTop != "" {
					fmt.Fprintf(w, "\nTop %d, by cumulative time (`-top -cum`):\n\n```\n%s\n```\n", topNodes, strings.TrimSpace(st.s.CPUTop))
				}
			}
			if st.s.HeapProfile == "" {
				continue
			}
			fmt.Fprintf(w, "\n#### Heap of phase 7, %d days, %s, at the end of the steady state\n\n", rs.Days, st.name)
			fmt.Fprintf(w, "Live objects after a GC: `go tool pprof -sample_index=inuse_space %s`.\n", st.s.HeapProfile)
			if st.s.HeapTop != "" {
				fmt.Fprintf(w, "\nTop %d, heap in use, by flat bytes (`-top -sample_index=inuse_space`):\n\n```\n%s\n```\n", topNodes, strings.TrimSpace(st.s.HeapTop))
			}
		}
	}
	if r.Error != "" {
		fmt.Fprintf(w, "\n**The run stopped early:** %s\n", strings.SplitN(r.Error, "\n", 2)[0])
	}
}

// writeMarkdown writes where p's profiles are and their top functions.
func (p *profileResult) writeMarkdown(w io.Writer) {
	name := map[string]string{"phase3": "phase 3 (mosquitto and InfluxDB)", "phase6": "phase 6 (embedded broker and store)"}[p.Phase]
	if name == "" {
		name = p.Phase
	}
	fmt.Fprintf(w, "\n#### Profile of %s\n\n", name)
	fmt.Fprintf(w, "CPU: %s of %d s back to back over %.1f s from the first publish (the timed part: %.1f s; the last one ends up to %d s after it), merged: `go tool pprof %s %s`. ",
		plural(p.Segments, "profile"), segmentSeconds, p.ProfileSeconds, p.TimedSeconds, segmentSeconds, p.Binary, p.CPU)
	fmt.Fprintf(w, "Heap (live objects after a GC, at the end of the timed part): `go tool pprof -sample_index=inuse_space %s %s`.\n", p.Binary, p.Heap)
	if p.Error != "" {
		fmt.Fprintf(w, "\nNo top functions: %s\n", strings.SplitN(p.Error, "\n", 2)[0])
	}
	for _, t := range []struct{ title, text string }{
		{"CPU, by flat time (`-top`)", p.CPUTopFlat},
		{"CPU, by cumulative time (`-top -cum`)", p.CPUTopCum},
		{"heap in use, by flat bytes (`-top -sample_index=inuse_space`)", p.HeapTopFlat},
		{"heap in use, by cumulative bytes (`-top -cum -sample_index=inuse_space`)", p.HeapTopCum},
	} {
		if t.text != "" {
			fmt.Fprintf(w, "\nTop %d, %s:\n\n```\n%s\n```\n", topNodes, t.title, t.text)
		}
	}
}

// machineShare says how busy the machine's CPUs were over e's timed part
// and who used them.
func (e *e2eResult) machineShare(cpus int) string {
	per := func(cpuSeconds float64) float64 { return cpuSeconds / e.Seconds }
	serve, bench, influx, mosq := per(e.CPUSeconds), per(e.BenchCPUSeconds), per(e.InfluxdCPUSeconds), per(e.MosquittoCPUSeconds)
	return fmt.Sprintf("machine meanwhile: %.2f of %d CPUs busy: serve %.2f, influxd %.2f, mosquitto %.2f, bench-e2e (publishers, polls) %.2f, anything else %.2f",
		e.MachineBusyCPUs, cpus, serve, influx, mosq, bench, e.otherCPUs())
}

// disturbedCPUs is how many CPUs other work on the machine (the kernel
// included) may take over a timed part before the report calls the
// figures disturbed.
const disturbedCPUs = 0.25

// otherCPUs returns the CPUs busy over e's timed part with anything but
// serve, the servers and bench-e2e.
func (e *e2eResult) otherCPUs() float64 {
	return max(e.MachineBusyCPUs-(e.CPUSeconds+e.BenchCPUSeconds+e.InfluxdCPUSeconds+e.MosquittoCPUSeconds)/e.Seconds, 0)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func secs(msv float64) string {
	if msv < 1000 {
		return fmt.Sprintf("%.0f ms", msv)
	}
	return fmt.Sprintf("%.2f s", msv/1000)
}

// stampLayout formats the run's start in the names of its files.
const stampLayout = "20060102-150405"

// save writes the markdown and JSON into dir as e2e-<time>.md and .json
// and returns the paths.
func (r *results) save(dir string) (md, js string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	base := filepath.Join(dir, "e2e-"+r.Started.Format(stampLayout))
	var b strings.Builder
	r.writeMarkdown(&b)
	if err := os.WriteFile(base+".md", []byte(b.String()), 0o644); err != nil {
		return "", "", err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(base+".json", append(data, '\n'), 0o644); err != nil {
		return "", "", err
	}
	return base + ".md", base + ".json", nil
}

// writeMarkdown writes the rows of phase 7 for one length of history.
func (rs *restartResult) writeMarkdown(w io.Writer) {
	p := rs.Prefill
	fmt.Fprintf(w, "| 7 | restart on %d days of history: pre-fill, straight into InfluxDB | %s points/s | %s hourly readings of %s meters (%s to %s) in %.1f s, simulation and normalisation included; %s stored; %s, batches of %d |\n",
		rs.Days, num(p.PointsPerSec), num(float64(p.Points)), num(float64(rs.Meters)), rs.HistoryFrom, rs.LiveFrom, p.Seconds, num(float64(p.Stored)), plural(p.Writers, "writer"), p.BatchSize)
	for _, st := range []struct {
		name string
		s    *startResult
	}{{"first start", rs.First}, {"start after SIGKILL under load", rs.AfterKill}} {
		if st.s == nil {
			continue
		}
		s := st.s
		fmt.Fprintf(w, "| 7 | restart on %d days: %s | ingest ready %.1f s; fully graded %.1f s; refill peak RSS %s; steady state %s | times from the process's start (serve's own cleanprod_startup_duration_seconds: ingest %.1f s, scoring %.1f s); refill %.1f s, %s aggregates read, %d retries; %d enterprises resumed from the checkpoint; last checkpoint %s written in %.1f s; %d /readyz answers with loading (last: %q); %.1f CPU-s to graded (influxd %.1f CPU-s); steady state over the last half of %.0f s under %s readings/s: largest VmRSS %s, mean %s; VmHWM at its end %s; influxd's peak RSS until graded %s |\n",
			rs.Days, st.name, s.IngestReadySeconds, s.GradedSeconds, mib(s.RefillPeakRSSBytes), mib(s.SteadyRSSBytes),
			s.ServeIngestSeconds, s.ServeScoringSeconds, s.RefillSeconds, num(float64(s.RefillAggregates)), s.RefillRetries,
			s.ResumedEnterprises, mib(s.CheckpointBytes), s.CheckpointSeconds, s.LoadingPolls, s.Loading,
			s.CPUSecondsToGraded, s.InfluxdCPUSecondsToGraded, rs.SteadySeconds, num(rs.LoadReadingsPerSec), mib(s.SteadyRSSBytes), mib(s.SteadyMeanRSSBytes), mib(s.LifePeakRSSBytes), mib(s.InfluxdPeakRSSBytes))
	}
	if rs.First != nil && rs.AfterKill != nil {
		note := ""
		if !rs.KilledUnderLoad {
			note = "; **the load had run out before the kill**"
		} else if rs.LoadRanOut {
			note = "; the load ran out before the end"
		}
		fmt.Fprintf(w, "| 7 | restart on %d days: readings across the SIGKILL | %s lost, %d rejected | the fleet's readings from %s: %s published, %s acknowledged by the broker, %s stored%s |\n",
			rs.Days, num(float64(rs.Lost)), rs.Rejected, rs.LiveFrom, num(float64(rs.Published)), num(float64(rs.Acked)), num(float64(rs.Stored)), note)
	}
	if rs.Error != "" {
		fmt.Fprintf(w, "| 7 | restart on %d days: stopped early | **not measured further** | %s |\n", rs.Days, strings.ReplaceAll(strings.SplitN(rs.Error, "\n", 2)[0], "|", "\\|"))
	}
}
