package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"golang.org/x/sync/errgroup"

	"github.com/cleanprod/cleanprod/ingest"
	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/sim"
	"github.com/cleanprod/cleanprod/store"
)

const (
	// historyInterval is the spacing of the pre-filled readings.
	historyInterval = time.Hour
	// fleetInterval is how often a meter of the fleet reports (sim's
	// default): the default load of the restart phase is the fleet's own
	// rate, one reading per meter per fleetInterval.
	fleetInterval = 5 * time.Minute
	// gradedTimeout bounds the wait for serve to grade every enterprise
	// after a start: far above the target, so that a slow start is
	// measured rather than cut short.
	gradedTimeout = 15 * time.Minute
	// readyzEvery is how often /readyz is asked while serve starts, and
	// rssEvery how often its RSS is sampled afterwards.
	readyzEvery = 50 * time.Millisecond
	rssEvery    = 100 * time.Millisecond
)

// restart is phase 7 for one length of history: a fresh database
// pre-filled with days of hourly readings of the load fleet, written
// straight to InfluxDB; serve started on it while the fleet keeps
// publishing the readings that follow, measured until every enterprise is
// graded and for cfg.restartLoad after; then killed with SIGKILL under
// that load, started again and measured the same way; at the end every
// reading the broker acknowledged must be in the store.
func (b *bench) restart(ctx context.Context, days int) (*restartResult, error) {
	db, err := b.srv.influx.CreateDatabase(fmt.Sprintf("bench_restart_%dd", days))
	if err != nil {
		return nil, err
	}
	defer b.drop(db)
	rate := b.restartRate()
	r := &restartResult{Days: days, Enterprises: b.cfg.enterprises, Meters: b.work.meters, LoadReadingsPerSec: rate, SteadySeconds: b.cfg.restartLoad.Seconds()}

	b.progress("phase 7 (%d days): pre-filling the store with hourly readings of %d meters", days, b.work.meters)
	h, err := b.prefill(ctx, db, days, liveHours(rate, b.work.meters, days, b.cfg.restartLoad))
	if err != nil {
		return nil, err
	}
	r.Prefill = h.result
	r.HistoryFrom, r.LiveFrom, r.HistoryTo = h.from.Format(time.RFC3339), h.liveFrom.Format(time.RFC3339), h.to.Format(time.RFC3339)
	r.LiveReadings = h.liveReadings
	b.progress("phase 7 (%d days): %d points in %.1f s (%.0f points/s), %d stored; %d readings from %s on left for the load",
		days, h.result.Points, h.result.Seconds, h.result.PointsPerSec, h.result.Stored, h.liveReadings, r.LiveFrom)
	if h.result.Stored != h.result.Points {
		return r, fmt.Errorf("restart (%d days): pre-filled %d points, the store counts %d", days, h.result.Points, h.result.Stored)
	}

	clientID := fmt.Sprintf("cleanprod-restart-%dd", days)
	defer func() {
		if err := clearSession(b.srv.broker.URL(), clientID); err != nil {
			b.progress("warning: %v", err)
		}
	}()
	dir := filepath.Join(b.dir, fmt.Sprintf("restart-%dd", days))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return r, err
	}
	args := append(b.serveArgs(dir), "-mqtt.url", b.srv.broker.URL(), "-mqtt.client_id", clientID,
		"-influx.url", db.URL, "-influx.bucket", db.Bucket)
	args = append(args, b.cfg.serveArgs...)
	env := append([]string{"CLEANPROD_INFLUX_TOKEN=" + db.Token}, b.cfg.serveEnv...)

	// The fleet publishes from serve's launch on, as it would across a
	// restart: the broker must already hold serve's session to queue it.
	if err := openSession(b.srv.broker.URL(), clientID); err != nil {
		return r, err
	}
	var pprofAddr string
	if b.cfg.profile != "" {
		if pprofAddr, err = freeAddr(); err != nil {
			return r, err
		}
		args = append(args, "-debug.pprof_listen", pprofAddr)
	}
	srv, err := launchServe(b.bin, dir, b.token, args, env)
	if err != nil {
		return r, err
	}
	if pprofAddr != "" {
		srv.pprofBase = "http://" + pprofAddr
	}
	defer srv.kill() // on an error; a stopped process is left as it is
	load, err := startLoad(ctx, b.srv.broker.URL(), fmt.Sprintf("bench-restart-load-%dd", days), h.live, rate, b.cfg.window)
	if err != nil {
		return r, err
	}
	defer load.finish() // on an error; a second call returns at once

	b.progress("phase 7 (%d days): serve started (pid %d), the fleet publishing %.0f readings/s", days, srv.pid(), rate)
	if r.First, err = b.followStart(ctx, srv, "first", b.cfg.restartLoad); err != nil {
		return r, fmt.Errorf("restart (%d days), first start: %w", days, err)
	}
	b.progress("phase 7 (%d days): ingest ready after %.1f s, graded after %.1f s, refill peak RSS %s, steady %s",
		days, r.First.IngestReadySeconds, r.First.GradedSeconds, mib(r.First.RefillPeakRSSBytes), mib(r.First.SteadyRSSBytes))

	r.KilledUnderLoad = load.running()
	b.progress("phase 7 (%d days): SIGKILL serve (under load: %t) and start it again", days, r.KilledUnderLoad)
	srv.kill()
	if srv, err = launchServe(b.bin, dir, b.token, args, env); err != nil {
		return r, err
	}
	if pprofAddr != "" {
		srv.pprofBase = "http://" + pprofAddr
	}
	defer srv.kill()
	if r.AfterKill, err = b.followStart(ctx, srv, "after-kill", b.cfg.restartLoad); err != nil {
		return r, fmt.Errorf("restart (%d days), after SIGKILL: %w", days, err)
	}
	b.progress("phase 7 (%d days): after SIGKILL: ingest ready after %.1f s, graded after %.1f s, refill peak RSS %s, steady %s",
		days, r.AfterKill.IngestReadySeconds, r.AfterKill.GradedSeconds, mib(r.AfterKill.RefillPeakRSSBytes), mib(r.AfterKill.SteadyRSSBytes))

	if err := load.finish(); err != nil {
		return r, fmt.Errorf("restart (%d days): load: %w", days, err)
	}
	r.Published, r.Acked, r.LoadRanOut = int(load.published.Load()), int(load.acked.Load()), load.ranOut.Load()
	b.progress("phase 7 (%d days): %d readings acknowledged by the broker; waiting for serve to store them", days, r.Acked)
	if r.Stored, err = waitStored(ctx, srv, db, h.liveFrom, r.Acked); err != nil {
		return r, fmt.Errorf("restart (%d days): %w", days, err)
	}
	r.Lost = max(r.Acked-r.Stored, 0)
	m, _, err := srv.metrics(ctx)
	if err != nil {
		return r, err
	}
	r.Rejected = r.First.Rejected + int(m["cleanprod_ingest_rejected_total"])
	if err := srv.stop(); err != nil {
		return r, err
	}
	return r, nil
}

// openSession makes the persistent session cleanprod serve has as
// clientID, subscribed as serve subscribes, so that the broker queues the
// telemetry for it before serve first connects (as it does for a serve
// that ran before).
func openSession(url, clientID string) error {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(clientID).
		SetCleanSession(false).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second))
	if err := waitToken(c.Connect()); err != nil {
		return fmt.Errorf("open the session of %s: %w", clientID, err)
	}
	defer c.Disconnect(250)
	if err := waitToken(c.Subscribe(telemetryFilter, 1, nil)); err != nil {
		return fmt.Errorf("open the session of %s: subscribe: %w", clientID, err)
	}
	return nil
}

// restartRate returns the load's readings per second: -restart-rate, or
// the fleet's own rate.
func (b *bench) restartRate() float64 {
	if b.cfg.restartRate > 0 {
		return b.cfg.restartRate
	}
	return float64(b.work.meters) / fleetInterval.Seconds()
}

// liveHours returns how many of the last hours of history are left out
// of the pre-fill, for the load to publish: enough for rate readings/s
// over two starts that take up to gradedTimeout and their steady spans,
// at most half the history.
func liveHours(rate float64, meters, days int, steady time.Duration) int {
	budget := 2*(gradedTimeout+steady) + time.Minute
	h := int(math.Ceil(rate * budget.Seconds() / float64(meters)))
	return min(max(h, 1), days*24/2)
}

// history is a pre-filled database and the readings that follow it.
type history struct {
	result             prefillResult
	from, liveFrom, to time.Time
	live               []sim.Message // the fleet's messages from liveFrom to to
	liveReadings       int
}

// prefill writes days of hourly readings of the load fleet ending at the
// last whole hour into db, as the pipeline would have stored them: the
// simulator's messages, normalised by ingest.Normaliser (counters get
// their deltas from the previous reading) and written as
// store.AppendReadingLine writes them, in batches of cfg.batch by
// cfg.storeWriters concurrent writers. The last liveHours are not written
// but returned, for the load to publish.
func (b *bench) prefill(ctx context.Context, db *testenv.InfluxDB, days, liveHours int) (*history, error) {
	now := time.Now()
	h := &history{to: now.UTC().Truncate(historyInterval)}
	h.from = h.to.Add(-time.Duration(days) * 24 * time.Hour)
	h.liveFrom = h.to.Add(-time.Duration(liveHours) * historyInterval)
	s, err := sim.New(b.work.load, sim.Config{
		Seed: b.cfg.seed, Start: h.from, Duration: h.to.Sub(h.from), Interval: historyInterval,
		Now: func() time.Time { return now },
	})
	if err != nil {
		return nil, err
	}
	n := ingest.NewNormaliser(b.work.load, ingest.NormaliserConfig{
		FutureHorizon: 5 * time.Minute, PastHorizon: h.to.Sub(h.from) + 24*time.Hour, History: 32,
	})
	client := influxdb2.NewClientWithOptions(db.URL, db.Token, influxdb2.DefaultOptions().
		SetPrecision(time.Nanosecond).SetHTTPRequestTimeout(120).SetLogLevel(0))
	defer client.Close()
	write := client.WriteAPIBlocking(db.Org, db.Bucket)

	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	batches := make(chan string, b.cfg.storeWriters)
	for range b.cfg.storeWriters {
		g.Go(func() error {
			for batch := range batches {
				if err := write.WriteRecord(gctx, batch); err != nil {
					return fmt.Errorf("pre-fill: %w", err)
				}
			}
			return nil
		})
	}
	points := 0
	g.Go(func() error {
		defer close(batches)
		var (
			rs, obs []store.Reading
			buf     []byte
			inBuf   int
		)
		flush := func() error {
			if inBuf == 0 {
				return nil
			}
			select {
			case batches <- string(buf[:len(buf)-1]): // without the last newline
			case <-gctx.Done():
				return gctx.Err()
			}
			buf, inBuf = buf[:0], 0
			return nil
		}
		for {
			m, ok := s.Next()
			if !ok {
				break
			}
			tick := s.Stats().SimTime
			if tick.After(h.to) {
				break
			}
			if !tick.Before(h.liveFrom) {
				h.live = append(h.live, m)
				h.liveReadings += m.Readings
				continue
			}
			rs, obs = rs[:0], obs[:0]
			out, derr := n.Process(m.Topic, m.Payload, false, now, &rs, &obs)
			if derr != nil {
				return fmt.Errorf("pre-fill: normalise %s: %s: %s", m.Topic, derr.Reason, derr.Detail)
			}
			if len(out.Rejects) > 0 {
				r := out.Rejects[0]
				return fmt.Errorf("pre-fill: normalise %s: %d readings rejected, the first: %s: %s", m.Topic, len(out.Rejects), r.Reason, r.Detail)
			}
			for i := range rs {
				buf = store.AppendReadingLine(buf, &rs[i])
				inBuf++
				points++
			}
			if inBuf >= b.cfg.batch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return flush()
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	h.result = prefillResult{Points: points, Writers: b.cfg.storeWriters, BatchSize: b.cfg.batch, Seconds: time.Since(start).Seconds()}
	h.result.PointsPerSec = float64(points) / h.result.Seconds
	if h.result.Stored, err = countInfluxWhere(db, timeCond("<", h.liveFrom)); err != nil {
		return nil, err
	}
	return h, nil
}

// loader publishes the fleet's messages at a steady rate over one
// connection, in order, as gateways keep publishing while serve restarts.
type loader struct {
	published, acked atomic.Int64 // readings of messages published, of those acknowledged
	ranOut           atomic.Bool  // every message was published before finish
	stop             chan struct{}
	done             chan error
	finished         bool
}

// startLoad publishes msgs at QoS 1 to brokerURL at rate readings per
// second, at most window waiting for their PUBACK, until finish is called
// or they run out.
func startLoad(ctx context.Context, brokerURL, clientID string, msgs []sim.Message, rate float64, window int) (*loader, error) {
	c, err := sim.Dial(ctx, brokerURL, clientID)
	if err != nil {
		return nil, err
	}
	l := &loader{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		defer c.Disconnect(250)
		l.done <- l.run(ctx, c, msgs, rate, window)
	}()
	return l, nil
}

func (l *loader) run(ctx context.Context, c paho.Client, msgs []sim.Message, rate float64, window int) error {
	type sent struct {
		tok      paho.Token
		readings int
	}
	pending := make(chan sent, window)
	acked := make(chan error, 1)
	go func() {
		var err error
		for p := range pending {
			if err != nil {
				continue
			}
			switch {
			case !p.tok.WaitTimeout(publishTimeout):
				err = fmt.Errorf("no PUBACK within %v", publishTimeout)
			case p.tok.Error() != nil:
				err = p.tok.Error()
			default:
				l.acked.Add(int64(p.readings))
			}
		}
		acked <- err
	}()
	began := time.Now()
	var err error
	for i, m := range msgs {
		due := began.Add(time.Duration(float64(l.published.Load()) / rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-l.stop:
			case <-ctx.Done():
				err = ctx.Err()
			}
			t.Stop()
		}
		if err != nil || isClosed(l.stop) {
			break
		}
		pending <- sent{c.Publish(m.Topic, 1, false, m.Payload), m.Readings}
		l.published.Add(int64(m.Readings))
		if i == len(msgs)-1 {
			l.ranOut.Store(true)
		}
	}
	close(pending)
	return errors.Join(err, <-acked)
}

// running reports whether the load is still publishing.
func (l *loader) running() bool { return !l.ranOut.Load() && !isClosed(l.stop) }

// finish stops publishing and waits until every message published is
// acknowledged. Later calls return nil at once.
func (l *loader) finish() error {
	if l.finished {
		return nil
	}
	l.finished = true
	close(l.stop)
	return <-l.done
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// followStart follows serve from its launch: it asks /readyz every
// readyzEvery until it answers 200 (ingest runs) and until it answers 200
// with no "loading" (every enterprise graded), takes the process's peak
// RSS then (VmHWM: the peak of the start and the refill), and samples its
// RSS every rssEvery for steady more while the load goes on. It ends with
// one scrape of /metrics.
func (b *bench) followStart(ctx context.Context, srv *serveProcess, start string, steady time.Duration) (*startResult, error) {
	r := &startResult{}
	influx0, err := childrenCPU("influxd")
	if err != nil {
		return nil, err
	}
	deadline := srv.started.Add(gradedTimeout)
	var prof *cpuProfiler // serve's CPU until graded, with -profile
	if srv.pprofBase != "" {
		if prof, err = startCPUProfiler(ctx, srv.pprofBase, filepath.Join(srv.dir, "cpu-profiles-"+start)); err != nil {
			return nil, err
		}
		defer prof.finish()
	}
	var lastInflux time.Time
	for {
		// influxd's memory, each second: its history queries can take
		// gigabytes; past the limit the phase stops rather than push a
		// shared machine out of memory.
		if time.Since(lastInflux) >= time.Second {
			lastInflux = time.Now()
			rss, err := childrenRSS("influxd")
			if err != nil {
				return nil, err
			}
			r.InfluxdPeakRSSBytes = max(r.InfluxdPeakRSSBytes, rss)
			if limit := b.cfg.influxdMaxRSS; limit > 0 && rss > limit {
				return nil, fmt.Errorf("influxd's RSS reached %s (-restart-influxd-max-rss %s) %.0f s after serve's start (/readyz's last loading: %q): stopped",
					mib(rss), mib(limit), time.Since(srv.started).Seconds(), r.Loading)
			}
		}
		code, loading, err := srv.readyz(ctx)
		now := time.Now()
		if len(loading) > 0 {
			r.Loading = strings.Join(loading, "; ")
		}
		if err == nil && code == http.StatusOK {
			if r.IngestReadySeconds == 0 {
				r.IngestReadySeconds = now.Sub(srv.started).Seconds()
			}
			if len(loading) == 0 {
				r.GradedSeconds = now.Sub(srv.started).Seconds()
				break
			}
			r.LoadingPolls++
		}
		if err := srv.exited(); err != nil {
			return nil, err
		}
		if now.After(deadline) {
			ingest := "never ready"
			if r.IngestReadySeconds > 0 {
				ingest = fmt.Sprintf("ready after %.1f s", r.IngestReadySeconds)
			}
			return nil, fmt.Errorf("cleanprod serve not graded %v after its start (ingest %s; /readyz's last loading: %q)\n%s",
				gradedTimeout, ingest, r.Loading, testenv.LogTail(srv.logPath))
		}
		if !sleep(ctx, readyzEvery) {
			return nil, ctx.Err()
		}
	}
	if r.RefillPeakRSSBytes, err = srv.peakRSS(); err != nil {
		return nil, err
	}
	cpu, err := srv.cpu()
	if err != nil {
		return nil, err
	}
	r.CPUSecondsToGraded = cpu.Seconds()
	influx1, err := childrenCPU("influxd")
	if err != nil {
		return nil, err
	}
	r.InfluxdCPUSecondsToGraded = (influx1 - influx0).Seconds()
	if prof != nil {
		if err := b.startCPU(ctx, prof, srv, start, r); err != nil {
			return nil, err
		}
	}

	// Steady state: the second half of the span, once what the refill
	// used has had time to go back to the OS.
	graded := time.Now()
	settled := graded.Add(steady / 2)
	var sum int64
	tick := time.NewTicker(rssEvery)
	defer tick.Stop()
	for time.Since(graded) < steady {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		if err := srv.exited(); err != nil {
			return nil, err
		}
		if time.Now().Before(settled) {
			continue
		}
		rss, err := processRSS(srv.pid())
		if err != nil {
			return nil, err
		}
		r.SteadyRSSBytes = max(r.SteadyRSSBytes, rss)
		sum += rss
		r.SteadySamples++
	}
	if r.SteadySamples > 0 {
		r.SteadyMeanRSSBytes = sum / int64(r.SteadySamples)
	}
	if srv.pprofBase != "" {
		if err := b.steadyHeap(ctx, srv, start, r); err != nil {
			return nil, err
		}
	}
	if r.LifePeakRSSBytes, err = srv.peakRSS(); err != nil {
		return nil, err
	}
	// Linux reads a process's RSS from per-CPU counters, so VmHWM read
	// later may come out some pages below one read earlier (seen: 24 KiB
	// on a 33 MiB process): the peak of the life is at least the peak
	// seen at grading.
	r.LifePeakRSSBytes = max(r.LifePeakRSSBytes, r.RefillPeakRSSBytes)
	m, _, err := srv.metrics(ctx)
	if err != nil {
		return nil, err
	}
	r.ServeIngestSeconds = m[`cleanprod_startup_duration_seconds{stage="ingest"}`]
	r.ServeScoringSeconds = m[`cleanprod_startup_duration_seconds{stage="scoring"}`]
	r.RefillSeconds = m["cleanprod_scoring_refill_duration_seconds"]
	r.RefillAggregates = int(m["cleanprod_scoring_refill_aggregates_total"])
	r.RefillRetries = int(m["cleanprod_scoring_refill_retries_total"])
	r.ResumedEnterprises = int(m["cleanprod_scoring_resumed_enterprises"])
	r.CheckpointSeconds = m["cleanprod_scoring_checkpoint_duration_seconds"]
	r.CheckpointBytes = int64(m["cleanprod_scoring_checkpoint_bytes"])
	r.Written = int(m["cleanprod_ingest_readings_written_total"])
	r.Rejected = int(m["cleanprod_ingest_rejected_total"])
	return r, nil
}

// readyz asks /readyz and returns its status code and loading list.
func (p *serveProcess) readyz(ctx context.Context) (int, []string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/readyz", nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Loading []string `json:"loading"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("GET /readyz: %w", err)
	}
	return resp.StatusCode, body.Loading, nil
}

// waitStored waits until db holds want readings from liveFrom on, or
// their count has not moved for stallTimeout, and returns the count.
func waitStored(ctx context.Context, srv *serveProcess, db *testenv.InfluxDB, liveFrom time.Time, want int) (int, error) {
	last, lastChange := -1, time.Now()
	for {
		n, err := countInfluxWhere(db, timeCond(">=", liveFrom))
		if err != nil {
			return 0, err
		}
		if n >= want {
			return n, nil
		}
		if n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) > stallTimeout {
			return n, nil
		}
		if err := srv.exited(); err != nil {
			return n, err
		}
		if !sleep(ctx, time.Second) {
			return n, ctx.Err()
		}
	}
}

// timeCond is the InfluxQL condition "time op t".
func timeCond(op string, t time.Time) string {
	return fmt.Sprintf("time %s '%s'", op, t.UTC().Format(time.RFC3339Nano))
}

// steadyHeap saves srv's heap (live objects, after a GC) at the end of a
// start's steady span into -profile, with its top functions in r.
func (b *bench) steadyHeap(ctx context.Context, srv *serveProcess, start string, r *startResult) error {
	if err := os.MkdirAll(b.cfg.profile, 0o755); err != nil {
		return err
	}
	r.HeapProfile = filepath.Join(b.cfg.profile, fmt.Sprintf("bench-%s-%s-%s-heap.pprof", b.stamp, filepath.Base(srv.dir), start))
	client := &http.Client{Timeout: 60 * time.Second}
	if err := fetch(ctx, client, srv.pprofBase+"/debug/pprof/heap?gc=1", r.HeapProfile); err != nil {
		return fmt.Errorf("steady heap profile: %w", err)
	}
	bin, err := b.profileBinary()
	if err != nil {
		return err
	}
	if r.HeapTop, err = goTool(ctx, "pprof", "-top", fmt.Sprintf("-nodecount=%d", topNodes), "-sample_index=inuse_space", bin, r.HeapProfile); err != nil {
		b.progress("warning: heap top: %v", err)
	}
	return nil
}

// startCPU ends prof, serve's CPU profile from its launch until graded,
// and saves it merged into -profile, with its top functions in r.
func (b *bench) startCPU(ctx context.Context, prof *cpuProfiler, srv *serveProcess, start string, r *startResult) error {
	segs, _, err := prof.finish()
	if err != nil {
		return fmt.Errorf("CPU profile of the start: %w", err)
	}
	if err := os.MkdirAll(b.cfg.profile, 0o755); err != nil {
		return err
	}
	r.CPUProfile = filepath.Join(b.cfg.profile, fmt.Sprintf("bench-%s-%s-%s-cpu.pprof", b.stamp, filepath.Base(srv.dir), start))
	if err := mergeCPU(ctx, r.CPUProfile, segs); err != nil {
		return fmt.Errorf("merge the CPU profiles of the start: %w", err)
	}
	bin, err := b.profileBinary()
	if err != nil {
		return err
	}
	if r.CPUTop, err = goTool(ctx, "pprof", "-top", "-cum", fmt.Sprintf("-nodecount=%d", topNodes), bin, r.CPUProfile); err != nil {
		return fmt.Errorf("CPU profile of the start: %w", err)
	}
	return nil
}
