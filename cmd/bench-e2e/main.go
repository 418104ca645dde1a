// Command bench-e2e measures cleanprod end to end next to the limits of its
// parts on the same machine, in one run (issue 8):
//
//  1. broker limit: paho publish -> mosquitto -> paho subscribe, QoS 1;
//  2. store limit: the same readings as pre-built line protocol written
//     straight to InfluxDB 1.8 with influxdb-client-go, gzip off and on;
//  3. cleanprod end to end: the real "cleanprod serve" on that mosquitto
//     and InfluxDB, fed the same messages as fast as they go, every reading
//     counted in InfluxDB at the end;
//  4. latency at half the rate of 3: probes publish a reading and poll the
//     API until it is stored and until the score includes it;
//  5. cleanprod's CPU seconds per million readings and peak RSS over 3;
//  6. 3 and 5 again with the embedded broker and embedded store;
//  7. restart (only when -phases names it): for each -restart-days, the
//     store pre-filled with that many days of hourly readings, serve
//     started on it while the fleet publishes: time until ingest runs and
//     until every enterprise is graded, peak RSS of the refill against
//     the steady state; then SIGKILL under load, the same again, and no
//     acknowledged reading lost;
//  8. backlog (only when -phases names it): cleanprod on mosquitto with
//     InfluxDB killed while the whole workload arrives, held for 10 s,
//     then InfluxDB again until every reading is stored: what cleanprod
//     held unacknowledged, and its peak RSS against phase 3's;
//  9. shards (only when -phases names it): 3 again with -shards replicas
//     of serve splitting the enterprises (shard.count) on the same
//     mosquitto and InfluxDB: readings/s and the CPU seconds of all
//     replicas per million readings, next to phase 3's one replica
//     (-phases e2e,shards).
//
// The default fleet is issue 8's: 2,000 enterprises of at least 50 meters
// each (sim.SyntheticFleetMeters), 100,000 meters. With -profile DIR it
// also saves serve's CPU profile over the timed part of phases 3 and 6 and
// a heap profile at their end (serve's debug.pprof_listen), with the
// binary, and puts their top functions into the results; -serve-args
// passes further settings to every serve of the run.
//
// It starts mosquitto and influxd as the tests do (internal/testenv), on
// free 127.0.0.1 ports with their state in a temporary directory, builds
// cleanprod there, and stops everything at the end, on an error or on
// Ctrl-C. It prints a markdown table and writes it, with the raw figures
// as JSON, into -out (bench-results/). Run it through scripts/bench-e2e,
// which installs mosquitto and builds influxd first; -h lists the flags.
package main

import (
	"context"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cleanprod/cleanprod/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench-e2e:", err)
		}
		os.Exit(1)
	}
}

// phases in run order.
var allPhases = []string{"broker", "store", "e2e", "latency", "embedded", "restart", "backlog", "shards"}

// defaultPhases run without -phases: all but restart, which takes far
// longer at full scale.
var defaultPhases = allPhases[:5]

// throughputPhases publish the workload's messages.
var throughputPhases = allPhases[:5]

// config is the run's settings, from flags.
type config struct {
	enterprises, metersPer, probes          int
	readings, perMessage                    int
	duration, scoringInterval, timeout      time.Duration
	publishers, window, storeWriters, batch int
	shards                                  int // the shards phase's replica count
	seed                                    int64
	phases                                  []string
	out, cleanprod, profile                 string
	serveArgs                               []string // split from -serve-args
	serveEnv                                []string // split from -serve-env
	keep                                    bool
	restartDays                             []int         // -restart-days
	restartLoad                             time.Duration // -restart-load
	restartRate                             float64       // -restart-rate; 0: the fleet's own
	influxdMaxRSS                           int64         // -restart-influxd-max-rss in bytes; 0: no limit
}

func (c *config) has(phase string) bool { return slices.Contains(c.phases, phase) }

// cleanprod's defaults of the settings the store phase copies.
const (
	defaultIngestWriters = 2     // ingest.writers
	defaultInfluxGZip    = false // influx.gzip
)

// serveSetting returns the value -serve-args gives the serve flag name
// (the last one, as serve reads them), if any.
func (c *config) serveSetting(name string) (string, bool) {
	var value string
	found := false
	for i, a := range c.serveArgs {
		n, v, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if n != name || !strings.HasPrefix(a, "-") {
			continue
		}
		if !hasValue && i+1 < len(c.serveArgs) {
			v = c.serveArgs[i+1]
		}
		value, found = v, true
	}
	return value, found
}

// ingestWriters returns the batches cleanprod writes at once: the
// -ingest.writers of -serve-args, else cleanprod's default.
func (c *config) ingestWriters() int {
	if v, ok := c.serveSetting("ingest.writers"); ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= 64 {
			return n
		}
	}
	return defaultIngestWriters
}

// influxGZip reports whether cleanprod gzips its InfluxDB writes: the
// -influx.gzip of -serve-args (a bare flag is true), else cleanprod's
// default.
func (c *config) influxGZip() bool {
	v, ok := c.serveSetting("influx.gzip")
	if !ok {
		return defaultInfluxGZip
	}
	on, err := strconv.ParseBool(v)
	return on || err != nil
}

// scoringIntervalOf describes serve's scoring.interval in a phase that
// sets it to phaseValue ("" for none): -serve-args, which come after the
// benchmark's own flags, override it.
func (c *config) scoringIntervalOf(phaseValue string) string {
	if v, ok := c.serveSetting("scoring.interval"); ok {
		return v + " (-serve-args)"
	}
	if phaseValue == "" {
		return "10s (default)"
	}
	return phaseValue
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench-e2e", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.enterprises, "enterprises", 2000, "synthetic enterprises under load (sim.SyntheticFleetMeters; with -meters-per-enterprise 50, 2000 give issue 8's 100,000 meters)")
	fs.IntVar(&c.metersPer, "meters-per-enterprise", 50, "meters of each synthetic enterprise at least: plants with fewer get electricity sub-meters (0: the plants' own, about 17.5 on average)")
	fs.IntVar(&c.probes, "probes", 8, "further synthetic enterprises that only the latency probes publish for")
	fs.IntVar(&c.readings, "readings", 2_000_000, "readings published in each throughput phase (1, 2, 3, 6)")
	fs.IntVar(&c.perMessage, "readings-per-message", 50, "readings per gateway message")
	fs.DurationVar(&c.duration, "duration", 60*time.Second, "how long the latency phase (4) publishes at half the end-to-end rate")
	fs.DurationVar(&c.scoringInterval, "scoring-interval", time.Second, "cleanprod's scoring.interval in the latency phase (the other phases keep the default 10s)")
	fs.IntVar(&c.publishers, "publishers", 2, "MQTT publishing connections in phases 1, 3 and 6")
	fs.IntVar(&c.window, "window", 1000, "messages each publisher may have waiting for their PUBACK")
	fs.IntVar(&c.storeWriters, "store-writers", 4, "concurrent writers of the store limit (phase 2)")
	fs.IntVar(&c.batch, "batch", 5000, "points per write in the store phase (cleanprod's ingest.batch_size)")
	fs.Int64Var(&c.seed, "seed", 1, "random seed of the fleet and the simulator")
	phases := fs.String("phases", strings.Join(defaultPhases, ","), "phases to run, of "+strings.Join(allPhases, ","))
	fs.DurationVar(&c.timeout, "timeout", 0, "stop the run (and report what was measured) after this long (default 10m, 90m with the restart phase)")
	restartDays := fs.String("restart-days", "7,30", "restart phase: days of hourly history pre-filled into the store, one run each")
	fs.DurationVar(&c.restartLoad, "restart-load", 60*time.Second, "restart phase: how long the load runs after each start has graded every enterprise (the steady state is its second half)")
	influxdMaxMiB := fs.Int64("restart-influxd-max-rss", 8192, "restart phase: stop a start whose influxd grows past this many MiB of RSS, to spare a shared machine (0: no limit)")
	fs.Float64Var(&c.restartRate, "restart-rate", 0, "restart phase: readings/s the fleet publishes meanwhile (0: its own rate, one reading per meter every 5 minutes)")
	fs.StringVar(&c.out, "out", "bench-results", "folder for the results (markdown and JSON)")
	fs.StringVar(&c.cleanprod, "cleanprod", "", "cleanprod binary to run (default: go build it into the temporary directory)")
	fs.StringVar(&c.profile, "profile", "", "save serve's CPU profile over the timed part of phases 3 and 6 and a heap profile at their end (phase 7: a heap profile at the end of each start's steady state) into this folder, with the binary, and put their top functions into the results (CPU figures of a profiled run are inflated a little by the profiler)")
	serveEnv := fs.String("serve-env", "", `environment for every cleanprod serve of the run, NAME=VALUE split at spaces, e.g. "GOMEMLIMIT=900MiB" (the Go runtime's soft memory limit, as deploy/kubernetes sets it); recorded in the results`)
	serveArgs := fs.String("serve-args", "", `further flags for every cleanprod serve of the run, split at spaces, after the benchmark's own, which they override (e.g. "-ingest.writers 4"; a boolean flag takes "=": "-influx.gzip=false"); recorded in the results`)
	fs.IntVar(&c.shards, "shards", 3, "shards phase: replicas of cleanprod serve the enterprises are split between (shard.count); compare with phase 3's one replica: -phases e2e,shards")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory (server logs, serve.log) and print its path")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	c.serveArgs = strings.Fields(*serveArgs)
	c.serveEnv = strings.Fields(*serveEnv)
	for _, kv := range c.serveEnv {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.HasPrefix(k, "CLEANPROD_") {
			bad("-serve-env %q: want NAME=VALUE pairs for the Go runtime (e.g. GOMEMLIMIT=900MiB); cleanprod settings go in -serve-args", kv)
		}
	}
	if len(c.serveArgs) > 0 && !strings.HasPrefix(c.serveArgs[0], "-") {
		bad("-serve-args %q: want flags of cleanprod serve, such as \"-ingest.writers 4\"", *serveArgs)
	}
	for _, p := range strings.Split(*phases, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(allPhases, p) {
			bad("-phases: unknown phase %q, want some of %s", p, strings.Join(allPhases, ","))
		} else if !slices.Contains(c.phases, p) {
			c.phases = append(c.phases, p)
		}
	}
	for _, f := range strings.Split(*restartDays, ",") {
		d, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || d < 1 || d > 400 {
			bad("-restart-days %q: want days from 1 to 400, separated by commas", *restartDays)
			break
		}
		if !slices.Contains(c.restartDays, d) {
			c.restartDays = append(c.restartDays, d)
		}
	}
	if c.restartLoad < 2*rssEvery {
		bad("-restart-load %v: want at least %v", c.restartLoad, 2*rssEvery)
	}
	if *influxdMaxMiB < 0 {
		bad("-restart-influxd-max-rss %d: want MiB, 0 for no limit", *influxdMaxMiB)
	}
	c.influxdMaxRSS = *influxdMaxMiB << 20
	if c.restartRate < 0 {
		bad("-restart-rate %v: want 0 (the fleet's own rate) or more", c.restartRate)
	}
	if c.has("latency") && !c.has("e2e") {
		bad("-phases: latency runs at half the rate e2e measures: add e2e")
	}
	if c.shards < 2 || c.shards > 64 {
		bad("-shards %d: want 2 to 64 replicas (phase 3 is the one replica)", c.shards)
	}
	if c.enterprises < 1 || c.probes < 0 || c.enterprises+c.probes > 9999 {
		bad("-enterprises %d -probes %d: want at least 1 enterprise and at most 9999 in all", c.enterprises, c.probes)
	}
	if c.metersPer < 0 || c.metersPer > 1000 {
		bad("-meters-per-enterprise %d: want 0 to 1000", c.metersPer)
	}
	if c.profile != "" && !c.has("e2e") && !c.has("embedded") && !c.has("restart") {
		bad("-profile: only phases e2e, embedded and restart are profiled: add one of them")
	}
	if c.has("latency") && c.probes < 1 {
		bad("-probes %d: the latency phase needs at least 1", c.probes)
	}
	if c.readings < 1 {
		bad("-readings %d: want at least 1", c.readings)
	}
	if c.perMessage < 1 || c.perMessage > 5000 {
		bad("-readings-per-message %d: want 1 to 5000 (cleanprod's ingest.max_readings)", c.perMessage)
	}
	if c.duration < time.Second {
		bad("-duration %v: want at least 1s", c.duration)
	}
	if c.scoringInterval < 100*time.Millisecond {
		bad("-scoring-interval %v: want at least 100ms", c.scoringInterval)
	}
	if c.publishers < 1 || c.publishers > 64 {
		bad("-publishers %d: want 1 to 64", c.publishers)
	}
	if c.window < 1 || c.window > 60000 {
		bad("-window %d: want 1 to 60000 (MQTT packet ids)", c.window)
	}
	if c.storeWriters < 1 || c.storeWriters > 64 {
		bad("-store-writers %d: want 1 to 64", c.storeWriters)
	}
	if c.batch < 1 {
		bad("-batch %d: want at least 1", c.batch)
	}
	switch {
	case c.timeout < 0:
		bad("-timeout %v: want a positive duration", c.timeout)
	case c.timeout == 0 && c.has("restart"):
		c.timeout = 90 * time.Minute
	case c.timeout == 0:
		c.timeout = 10 * time.Minute
	}
	if c.out == "" {
		bad("-out: want a folder")
	}
	return c, errors.Join(errs...)
}

// run is the whole program; main only supplies the signal context,
// arguments and output.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "cleanprod-bench-")
	if err != nil {
		return err
	}
	if cfg.keep {
		fmt.Fprintf(stdout, "temporary directory (kept): %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	res := &results{Started: time.Now(), Machine: machineInfo()}
	b := &bench{cfg: cfg, dir: dir, log: stdout, stamp: res.Started.Format(stampLayout)}
	runErr := b.run(ctx, res)
	if runErr != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			runErr = fmt.Errorf("over the -timeout of %v: %w", cfg.timeout, runErr)
		}
		res.Error = runErr.Error()
	}
	res.Seconds = time.Since(res.Started).Seconds()
	res.derive()
	fmt.Fprintln(stdout)
	res.writeMarkdown(stdout)
	md, js, err := res.save(cfg.out)
	if err != nil {
		return errors.Join(runErr, fmt.Errorf("save results: %w", err))
	}
	fmt.Fprintf(stdout, "\nresults: %s, %s\n", md, js)
	if runErr != nil {
		return runErr
	}
	if !res.lossFree() {
		return errors.New("readings were lost or rejected: see the table")
	}
	return nil
}

// run prepares the workload, cleanprod and the servers and runs the
// phases, filling res as it goes. Servers and cleanprod are stopped
// before it returns.
func (b *bench) run(ctx context.Context, res *results) (err error) {
	cfg := b.cfg
	volume := cfg.readings
	if !slices.ContainsFunc(throughputPhases, cfg.has) && !cfg.has("backlog") && !cfg.has("shards") {
		volume = 0 // the restart phase makes its own readings
	}
	b.progress("building the workload: %d enterprises (+%d probe enterprises) of at least %d meters, %d readings in messages of %d", cfg.enterprises, cfg.probes, cfg.metersPer, volume, cfg.perMessage)
	if b.work, err = newWorkload(cfg.enterprises, cfg.probes, cfg.metersPer, volume, cfg.perMessage, cfg.seed); err != nil {
		return err
	}
	w := b.work
	perMsg, bytesPerMsg := 0.0, 0.0
	if len(w.msgs) > 0 {
		perMsg, bytesPerMsg = float64(w.readings)/float64(len(w.msgs)), float64(w.bytes)/float64(len(w.msgs))
	}
	res.Settings = settings{
		Enterprises: cfg.enterprises, ProbeEnterprises: len(w.probes), MetersPerEnterprise: cfg.metersPer,
		Meters: w.meters, Gateways: w.load.GatewayCount(),
		Readings: w.readings, Messages: len(w.msgs),
		ReadingsPerMessage: perMsg, PayloadBytes: bytesPerMsg,
		SimulatedFrom: w.start.Format(time.RFC3339), GenerateSeconds: w.generate.Seconds(),
		Publishers: cfg.publishers, Window: cfg.window, StoreWriters: cfg.storeWriters, BatchSize: cfg.batch,
		LatencyDuration: cfg.duration.String(), Seed: cfg.seed,
		Unscored: w.unscored, ServeArgs: cfg.serveArgs, ServeEnv: cfg.serveEnv, Profiled: cfg.profile != "",
	}
	b.progress("workload: %d meters, %d messages, %.1f MB, generated in %.1f s", w.meters, len(w.msgs), float64(w.bytes)/1e6, w.generate.Seconds())

	b.shards = shardMessages(w.msgs, cfg.publishers)
	if b.checks, err = checkpoints(w.msgs, b.shards, checkpointsPerShard); err != nil {
		return err
	}

	b.fleetDir = filepath.Join(b.dir, "gateway-config")
	b.declDir = filepath.Join(b.dir, "declarations")
	b.tokensFile = filepath.Join(b.dir, "tokens.yaml")
	if err := sim.WriteFleet(b.fleetDir, w.files); err != nil {
		return err
	}
	if err := os.Mkdir(b.declDir, 0o755); err != nil {
		return err
	}
	if b.bin = cfg.cleanprod; b.bin == "" {
		b.progress("building cleanprod")
		if b.bin, err = buildCleanprod(ctx, b.dir); err != nil {
			return err
		}
	}
	res.Settings.Cleanprod = describeBinary(b.bin, cfg.cleanprod == "")
	if b.token, err = addToken(ctx, b.bin, "-role", "supervisor", "-name", "bench-e2e", "-http.tokens_file", b.tokensFile); err != nil {
		return err
	}
	b.probeTokens = make(map[string]string)
	for _, id := range w.probes {
		if !cfg.has("latency") {
			break
		}
		if b.probeTokens[id], err = addToken(ctx, b.bin, "-role", "enterprise", "-enterprise", id,
			"-http.tokens_file", b.tokensFile, "-gateway_config", b.fleetDir); err != nil {
			return err
		}
	}

	b.progress("starting mosquitto and influxd")
	if b.srv, err = startServers(filepath.Join(b.dir, "servers")); err != nil {
		return err
	}
	defer func() {
		b.progress("stopping mosquitto and influxd")
		err = errors.Join(err, b.srv.close())
	}()
	b.progress("mosquitto %s, influxd %s", b.srv.broker.URL(), b.srv.influx.URL())

	if cfg.has("broker") {
		b.progress("phase 1: broker limit (%d messages)", len(w.msgs))
		if res.Broker, err = b.brokerLimit(ctx); err != nil {
			return err
		}
		b.progress("phase 1: %.0f msgs/s", res.Broker.MsgsPerSec)
	}
	if cfg.has("store") {
		b.progress("phase 2: normalising the workload into line protocol")
		batches, points, err := w.storeBatches(cfg.batch)
		if err != nil {
			return err
		}
		// The limit, gzip off and on; then, for comparison, as many
		// writers as cleanprod has (ingest.writers), gzip as it does.
		runs := []struct {
			gzip, asCleanprod bool
			writers           int
		}{{false, false, cfg.storeWriters}, {true, false, cfg.storeWriters}, {cfg.influxGZip(), true, cfg.ingestWriters()}}
		for _, run := range runs {
			b.progress("phase 2: store limit, gzip %t, %d writers (%d points)", run.gzip, run.writers, points)
			r, err := b.storeLimit(ctx, batches, points, run.gzip, run.writers)
			if err != nil {
				return err
			}
			r.AsCleanprod = run.asCleanprod
			res.Store = append(res.Store, r)
			b.progress("phase 2: %.0f points/s", r.PointsPerSec)
		}
	}
	if cfg.has("e2e") {
		b.progress("phase 3: cleanprod end to end on mosquitto and InfluxDB (%d readings), scoring.interval 10s (default)", w.readings)
		if res.E2E, err = b.endToEnd(ctx); err != nil {
			return err
		}
		b.progress("phase 3: %.0f readings/s, %d lost, %.2f CPU-s per million readings; %.2f CPUs busy, %.2f of them with other work", res.E2E.ReadingsPerSec, res.E2E.Lost, res.E2E.CPUSecondsPerMillion, res.E2E.MachineBusyCPUs, res.E2E.otherCPUs())
	}
	if cfg.has("latency") {
		b.progress("phase 4: latency at half of %.0f readings/s for %v, %d probe enterprises, scoring.interval %v", res.E2E.ReadingsPerSec, cfg.duration, len(w.probes), cfg.scoringInterval)
		if res.Latency, err = b.latency(ctx, res.E2E.ReadingsPerSec); err != nil {
			return err
		}
		b.progress("phase 4: %d samples", res.Latency.Samples)
	}
	if cfg.has("embedded") {
		b.progress("phase 6: cleanprod end to end with the embedded broker and store (%d readings)", w.readings)
		if res.Embedded, err = b.embedded(ctx); err != nil {
			return err
		}
		b.progress("phase 6: %.0f readings/s, %d lost; %.2f CPUs busy, %.2f of them with other work", res.Embedded.ReadingsPerSec, res.Embedded.Lost, res.Embedded.MachineBusyCPUs, res.Embedded.otherCPUs())
	}
	if cfg.has("shards") {
		b.progress("shards: cleanprod end to end as %d shards on mosquitto and InfluxDB (%d readings)", cfg.shards, w.readings)
		if res.Shards, err = b.endToEndShards(ctx); err != nil {
			return err
		}
		b.progress("shards: %.0f readings/s, %d lost, %.2f CPU-s per million readings over %d replicas", res.Shards.ReadingsPerSec, res.Shards.Lost, res.Shards.CPUSecondsPerMillion, res.Shards.Replicas)
	}
	if cfg.has("backlog") {
		b.progress("phase 8: cleanprod holding a backlog of %d readings, InfluxDB down", w.readings)
		r, err := b.backlog(ctx)
		if r != nil && err != nil {
			r.Error = err.Error()
		}
		if res.Backlog = r; err != nil {
			return err
		}
		b.progress("phase 8: held at most %.0f messages; peak RSS %s; %d lost", res.Backlog.PeakHeldMessages, mib(res.Backlog.PeakRSSBytes), res.Backlog.Lost)
	}
	if cfg.has("restart") {
		// A start that does not grade in time is a result: the next
		// length of history is measured all the same.
		var errs []error
		for _, days := range cfg.restartDays {
			b.progress("phase 7: restart on %d days of history", days)
			r, err := b.restart(ctx, days)
			if err != nil {
				b.progress("phase 7 (%d days): %v", days, strings.SplitN(err.Error(), "\n", 2)[0])
				errs = append(errs, err)
				if r != nil {
					r.Error = err.Error()
				}
			}
			if r != nil {
				res.Restart = append(res.Restart, r)
			}
			if ctx.Err() != nil {
				break
			}
		}
		return errors.Join(errs...)
	}
	return nil
}

// describeBinary says which commit the cleanprod binary at path was built
// from (its Go build information); built says it was built from the
// current directory's working tree, whose changes it then lists.
func describeBinary(path string, built bool) string {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	vcs := map[string]string{}
	for _, s := range info.Settings {
		vcs[s.Key] = s.Value
	}
	rev := vcs["vcs.revision"]
	if rev == "" {
		return "unknown commit (" + info.Main.Version + ")"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	out := "commit " + rev
	if t := vcs["vcs.time"]; t != "" {
		out += " (" + t + ")"
	}
	if vcs["vcs.modified"] == "true" {
		out += ", with uncommitted changes"
		if changed := changedFiles(); built && changed != "" {
			out += " to " + changed
		}
	}
	return out
}

// changedFiles lists the files git sees changed in the working tree (the
// current directory's repository), or "" if git cannot tell.
func changedFiles() string {
	out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=all").Output()
	if err != nil {
		return ""
	}
	var files []string
	for line := range strings.Lines(string(out)) {
		if len(line) > 3 {
			files = append(files, strings.TrimSpace(line[3:]))
		}
	}
	const most = 12
	if len(files) > most {
		files = append(files[:most], fmt.Sprintf("and %d more", len(files)-most))
	}
	return strings.Join(files, ", ")
}

// machineInfo describes the machine for the report.
func machineInfo() machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}
