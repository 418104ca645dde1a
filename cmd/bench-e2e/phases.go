package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"golang.org/x/sync/errgroup"

	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/store"
)

const (
	telemetryFilter = "cp/v1/+/+/telemetry" // cleanprod's subscription
	// stallTimeout ends a phase whose receiver has made no progress for
	// this long after the publishers finished.
	stallTimeout = 60 * time.Second
	// pollEvery is how often the meters API is asked for the next
	// checkpoint of each publisher while cleanprod catches up.
	pollEvery = 50 * time.Millisecond
	// checkpointsPerShard is how many checkpoints track each publisher.
	checkpointsPerShard = 20
)

// bench is one run: its settings, servers, workload and cleanprod binary.
type bench struct {
	cfg  config
	dir  string // temporary directory of the run
	log  io.Writer
	srv  *servers
	work *workload

	shards [][]int        // the workload's messages by publisher
	checks [][]checkpoint // checkpoints of each shard

	bin         string            // cleanprod
	savedBin    string            // bin copied into -profile
	stamp       string            // the run's start, in the names of its files
	fleetDir    string            // gateway_config
	declDir     string            // scoring.declarations (empty)
	tokensFile  string            // http.tokens_file
	token       string            // supervisor token in tokensFile
	probeTokens map[string]string // enterprise token of each probe enterprise
}

// progress prints a progress line.
func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// brokerLimit is phase 1: the workload's messages through mosquitto alone,
// from publishers as in phase 3 to one subscriber as cleanprod subscribes
// (persistent session, QoS 1, acknowledged by hand in arrival order).
func (b *bench) brokerLimit(ctx context.Context) (*brokerResult, error) {
	url := b.srv.broker.URL()
	const clientID = "bench-broker-sub"
	want := int64(len(b.work.msgs))
	var got atomic.Int64
	all := make(chan struct{})
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(clientID).
		SetCleanSession(false).SetAutoAckDisabled(true).SetOrderMatters(true).
		SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			m.Ack()
			if got.Add(1) == want {
				close(all)
			}
		})
	sub := paho.NewClient(opts)
	if err := waitToken(sub.Connect()); err != nil {
		return nil, fmt.Errorf("broker limit: connect subscriber: %w", err)
	}
	defer func() {
		sub.Disconnect(250)
		if err := clearSession(url, clientID); err != nil {
			b.progress("warning: %v", err)
		}
	}()
	if err := waitToken(sub.Subscribe(telemetryFilter, 1, nil)); err != nil {
		return nil, fmt.Errorf("broker limit: subscribe: %w", err)
	}

	start := time.Now()
	published := make(chan error, 1)
	go func() { published <- publishAll(ctx, url, b.work.msgs, b.shards, b.cfg.window) }()
	end, err := waitDone(ctx, all, published, func() int64 { return got.Load() })
	if err != nil {
		return nil, fmt.Errorf("broker limit: %d of %d messages received: %w", got.Load(), want, err)
	}
	elapsed := end.Sub(start)
	r := &brokerResult{Messages: int(want), Readings: b.work.readings, Seconds: elapsed.Seconds()}
	r.MsgsPerSec = float64(r.Messages) / r.Seconds
	r.ReadingsPerSec = float64(r.Readings) / r.Seconds
	return r, nil
}

// waitDone waits until done is closed and the publishers have returned,
// and returns when done was closed. It fails when the publishers fail, ctx
// ends, or progress() stays the same for stallTimeout after the publishers
// finished.
func waitDone(ctx context.Context, done <-chan struct{}, published <-chan error, progress func() int64) (time.Time, error) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var end time.Time
	last, lastChange, pubDone := progress(), time.Now(), false
	for !pubDone || end.IsZero() {
		select {
		case <-done:
			end, done = time.Now(), nil
		case err := <-published:
			if err != nil {
				return end, err
			}
			pubDone, lastChange, published = true, time.Now(), nil
		case <-ctx.Done():
			return end, ctx.Err()
		case <-tick.C:
			if p := progress(); p != last {
				last, lastChange = p, time.Now()
			} else if end.IsZero() && pubDone && time.Since(lastChange) > stallTimeout {
				return end, fmt.Errorf("no progress for %v", stallTimeout)
			}
		}
	}
	return end, nil
}

// waitToken waits for a paho token.
func waitToken(tok paho.Token) error {
	if !tok.WaitTimeout(publishTimeout) {
		return fmt.Errorf("no answer within %v", publishTimeout)
	}
	return tok.Error()
}

// clearSession removes the persistent session of clientID from the broker
// (connecting once with a clean session), so that it queues nothing for
// it during later phases.
func clearSession(url, clientID string) error {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(clientID).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second))
	if err := waitToken(c.Connect()); err != nil {
		return fmt.Errorf("clear the session of %s: %w", clientID, err)
	}
	c.Disconnect(250)
	return nil
}

// storeLimit is phase 2: the workload's readings, normalised and turned
// into line protocol beforehand, written straight to a fresh InfluxDB
// database in batches by concurrent writers.
func (b *bench) storeLimit(ctx context.Context, batches []string, points int, gzip bool, writers int) (*storeResult, error) {
	db, err := b.srv.influx.CreateDatabase(fmt.Sprintf("bench_store_gzip_%t_%d", gzip, writers))
	if err != nil {
		return nil, err
	}
	defer b.drop(db)
	client := influxdb2.NewClientWithOptions(db.URL, db.Token, influxdb2.DefaultOptions().
		SetUseGZip(gzip).SetPrecision(time.Nanosecond).SetHTTPRequestTimeout(120).SetLogLevel(0))
	defer client.Close()
	write := client.WriteAPIBlocking(db.Org, db.Bucket)

	influx0, err := childrenCPU("influxd")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	next := make(chan string)
	for range writers {
		g.Go(func() error {
			for batch := range next {
				if err := write.WriteRecord(gctx, batch); err != nil {
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(next)
		for _, batch := range batches {
			select {
			case next <- batch:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("store limit (gzip %t, %d writers): %w", gzip, writers, err)
	}
	elapsed := time.Since(start)
	influx1, err := childrenCPU("influxd")
	if err != nil {
		return nil, err
	}
	stored, err := countInflux(db)
	if err != nil {
		return nil, err
	}
	r := &storeResult{GZip: gzip, Points: points, Stored: stored, Writers: writers, BatchSize: b.cfg.batch, Seconds: elapsed.Seconds(),
		InfluxdCPUSeconds: (influx1 - influx0).Seconds()}
	r.PointsPerSec = float64(points) / r.Seconds
	return r, nil
}

// countInflux counts the readings in db (InfluxQL: on 1.8 it counts
// 100,000 series far faster than cleanprod's Flux CountReadings).
func countInflux(db *testenv.InfluxDB) (int, error) {
	return countInfluxWhere(db, "")
}

// countInfluxWhere counts the readings in db that meet the InfluxQL
// condition where (all of them if it is empty).
func countInfluxWhere(db *testenv.InfluxDB, where string) (int, error) {
	n, err := db.CountReadings(where)
	if err != nil {
		return 0, fmt.Errorf("count readings in %s: %w", db.Database, err)
	}
	return n, nil
}

func (b *bench) drop(db *testenv.InfluxDB) {
	if err := db.Drop(); err != nil {
		b.progress("warning: %v", err)
	}
}

// serveArgs are the settings every cleanprod serve of the run gets.
func (b *bench) serveArgs(dir string) []string {
	return []string{
		"-gateway_config", b.fleetDir,
		"-http.tokens_file", b.tokensFile,
		"-scoring.declarations", b.declDir,
		"-data_dir", filepath.Join(dir, "data"),
		"-report.chromium", "none",
	}
}

// forget drops a phase's database and clears its broker session.
func (b *bench) forget(db *testenv.InfluxDB, clientID string) {
	b.drop(db)
	if err := clearSession(b.srv.broker.URL(), clientID); err != nil {
		b.progress("warning: %v", err)
	}
}

// startServe starts cleanprod serve in dir with args, then -serve-args,
// and with a pprof listener on a free port if profile is set.
func (b *bench) startServe(ctx context.Context, dir string, args, env []string, profile bool) (*serveProcess, error) {
	var pprofAddr string
	if profile {
		var err error
		if pprofAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		args = append(args, "-debug.pprof_listen", pprofAddr)
	}
	srv, err := startServe(ctx, b.bin, dir, b.token, append(args, b.cfg.serveArgs...), append(env, b.cfg.serveEnv...))
	if err != nil {
		return nil, err
	}
	if profile {
		srv.pprofBase = "http://" + pprofAddr
	}
	return srv, nil
}

// startExternalServe starts cleanprod serve on the run's mosquitto and a
// fresh InfluxDB database, with extra settings; profiled if profile is set.
func (b *bench) startExternalServe(ctx context.Context, phase, clientID string, profile bool, extra ...string) (*serveProcess, *testenv.InfluxDB, error) {
	dir := filepath.Join(b.dir, phase)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, nil, err
	}
	db, err := b.srv.influx.CreateDatabase("bench_" + phase)
	if err != nil {
		return nil, nil, err
	}
	args := append(b.serveArgs(dir),
		"-mqtt.url", b.srv.broker.URL(), "-mqtt.client_id", clientID,
		"-influx.url", db.URL, "-influx.bucket", db.Bucket)
	srv, err := b.startServe(ctx, dir, append(args, extra...), []string{"CLEANPROD_INFLUX_TOKEN=" + db.Token}, profile)
	if err != nil {
		b.drop(db)
		return nil, nil, err
	}
	return srv, db, nil
}

// endToEnd is phase 3 (and 5): the real cleanprod serve on mosquitto and
// InfluxDB, fed the workload as fast as the publishers go.
func (b *bench) endToEnd(ctx context.Context) (*e2eResult, error) {
	const clientID = "cleanprod-e2e"
	srv, db, err := b.startExternalServe(ctx, "e2e", clientID, b.cfg.profile != "")
	if err != nil {
		return nil, err
	}
	defer b.forget(db, clientID)
	r, err := b.measure(ctx, srv, b.srv.broker.URL(), "phase3")
	if err != nil {
		return nil, errors.Join(err, srv.stop())
	}
	b.progress("stopping cleanprod")
	if err := srv.stop(); err != nil {
		return nil, err
	}
	b.progress("counting the readings in InfluxDB")
	if r.Stored, err = countInflux(db); err != nil {
		return nil, err
	}
	r.StoredHow = `InfluxQL SELECT count("delta") and count("value") FROM "reading"`
	r.Lost = r.Readings - r.Stored
	return r, nil
}

// embedded is phase 6: cleanprod serve with its embedded broker and
// store, fed the workload as in phase 3. The readings are counted in the
// bbolt file once serve has stopped.
func (b *bench) embedded(ctx context.Context) (*e2eResult, error) {
	dir := filepath.Join(b.dir, "embedded")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	srv, err := b.startServe(ctx, dir, append(b.serveArgs(dir), "-embedded_broker.listen", addr), nil, b.cfg.profile != "")
	if err != nil {
		return nil, err
	}
	r, err := b.measure(ctx, srv, "tcp://"+addr, "phase6")
	if err != nil {
		return nil, errors.Join(err, srv.stop())
	}
	b.progress("stopping cleanprod")
	if err := srv.stop(); err != nil {
		return nil, err
	}
	b.progress("counting the readings in the embedded store")
	bolt, err := store.OpenBolt(filepath.Join(dir, "data", "readings.db"))
	if err != nil {
		return nil, err
	}
	defer bolt.Close()
	if r.Stored, err = bolt.CountReadings(ctx, ""); err != nil {
		return nil, err
	}
	r.StoredHow = "store.Bolt.CountReadings on data_dir/readings.db after serve stopped"
	r.Lost = r.Readings - r.Stored
	return r, nil
}

// measure publishes the workload to brokerURL as fast as the publishers
// go and follows cleanprod through the checkpoints until it has stored the
// last message of every publisher. It measures the time from the first
// publish until then, cleanprod's CPU time over that span and its peak RSS,
// then reads its counters from /metrics. If srv has a pprof listener, its
// CPU is profiled over that span and its heap at the end (phase names the
// files).
func (b *bench) measure(ctx context.Context, srv measured, brokerURL, phase string) (*e2eResult, error) {
	cpu0, err := srv.cpu()
	if err != nil {
		return nil, err
	}
	b.progress("cleanprod ready (pid %d, %.1f CPU-s so far); publishing", srv.pid(), cpu0.Seconds())
	var prof *cpuProfiler
	one, _ := srv.(*serveProcess) // a fleet of replicas is not profiled
	if one != nil {
		if prof, err = b.profilePhase(ctx, one, phase); err != nil {
			return nil, err
		}
	}
	if prof != nil {
		defer prof.finish() // on an error; a second call returns at once
	}
	mach0, err := machineCPU()
	if err != nil {
		return nil, err
	}
	self0, err := processCPU(os.Getpid())
	if err != nil {
		return nil, err
	}
	influx0, err1 := childrenCPU("influxd")
	mosq0, err2 := childrenCPU("mosquitto")
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	start := time.Now()
	published := make(chan error, 1)
	go func() { published <- publishAll(ctx, brokerURL, b.work.msgs, b.shards, b.cfg.window) }()

	next := make([]int, len(b.checks)) // each shard's first checkpoint not yet seen
	seen, total := 0, 0
	for _, cs := range b.checks {
		total += len(cs)
	}
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	lastChange, pubDone := time.Now(), false
	for seen < total {
		select {
		case err := <-published:
			if err != nil {
				return nil, err
			}
			pubDone, lastChange, published = true, time.Now(), nil
			continue
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		if err := srv.exited(); err != nil {
			return nil, err
		}
		for k, cs := range b.checks {
			for next[k] < len(cs) {
				cp := cs[next[k]]
				ok, err := srv.meterSeen(ctx, cp.enterprise, cp.meter, cp.ts)
				if err != nil {
					return nil, err
				}
				if !ok {
					break
				}
				next[k]++
				seen++
				lastChange = time.Now()
			}
		}
		if pubDone && time.Since(lastChange) > stallTimeout {
			return nil, fmt.Errorf("cleanprod made no progress for %v (%d of %d checkpoints stored)\n%s", stallTimeout, seen, total, srv.logTail())
		}
	}
	elapsed := time.Since(start)
	cpu1, err := srv.cpu()
	if err != nil {
		return nil, err
	}
	mach1, err := machineCPU()
	if err != nil {
		return nil, err
	}
	self1, err := processCPU(os.Getpid())
	if err != nil {
		return nil, err
	}
	influx1, err1 := childrenCPU("influxd")
	mosq1, err2 := childrenCPU("mosquitto")
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	rss, err := srv.peakRSS()
	if err != nil {
		return nil, err
	}
	if published != nil { // every checkpoint stored: the publishers are done or about to be
		if err := <-published; err != nil {
			return nil, err
		}
	}
	b.progress("cleanprod stored every checkpoint after %.1f s", elapsed.Seconds())
	var pr *profileResult
	if prof != nil {
		if pr, err = b.finishProfile(ctx, prof, one, phase, elapsed); err != nil {
			return nil, err
		}
	}
	// One scrape, after the measured span (and the profiles); its cost is
	// reported apart.
	b.progress("reading cleanprod's /metrics")
	cpuScrape, err := srv.cpu()
	if err != nil {
		return nil, err
	}
	scrapeStart := time.Now()
	m, size, err := srv.metrics(ctx)
	if err != nil {
		return nil, err
	}
	scrapeTook := time.Since(scrapeStart)
	cpu2, err := srv.cpu()
	if err != nil {
		return nil, err
	}
	if pr != nil {
		pr.tops(ctx)
		if pr.Error != "" {
			b.progress("warning: top functions of the %s profiles: %s", phase, pr.Error)
		}
	}
	r := &e2eResult{
		Readings: b.work.readings, Messages: len(b.work.msgs), Seconds: elapsed.Seconds(),
		Written:           int(m["cleanprod_ingest_readings_written_total"]),
		Rejected:          int(m["cleanprod_ingest_rejected_total"]),
		Duplicates:        int(m["cleanprod_ingest_duplicates_total"]),
		ScoringPoints:     int(m[`cleanprod_scoring_points_total{result="written"}`]),
		ScoringPointsLost: int(m["cleanprod_scoring_points_total"] - m[`cleanprod_scoring_points_total{result="written"}`]),
		CPUSeconds:        (cpu1 - cpu0).Seconds(), PeakRSSBytes: rss,
		MachineBusyCPUs:   (mach1.busy - mach0.busy).Seconds() / elapsed.Seconds(),
		BenchCPUSeconds:   (self1 - self0).Seconds(),
		InfluxdCPUSeconds: (influx1 - influx0).Seconds(), MosquittoCPUSeconds: (mosq1 - mosq0).Seconds(),
		ScoringInterval: b.cfg.scoringIntervalOf(""),
		MetricsBytes:    size, MetricsSeconds: scrapeTook.Seconds(), MetricsCPUSeconds: (cpu2 - cpuScrape).Seconds(),
		Profile: pr,
	}
	r.ReadingsPerSec = float64(r.Readings) / r.Seconds
	r.CPUSecondsPerMillion = r.CPUSeconds / float64(r.Readings) * 1e6
	return r, nil
}
