package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/cleanprod/cleanprod/broker"
	"github.com/cleanprod/cleanprod/ingest"
	"github.com/cleanprod/cleanprod/outbox"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/review"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/shard"
	"github.com/cleanprod/cleanprod/store"
	"github.com/cleanprod/cleanprod/web"
)

// readingStore is what serve needs of a store.
type readingStore interface {
	ingest.Writer
	ingest.HistorySource
	ReadingsOf(ctx context.Context, enterprise string, meters []string, from, to time.Time) ([]store.Reading, error)
	scoring.History
	scoring.Sink
	Points(ctx context.Context, measurement string, tags map[string]string, from, to time.Time) ([]store.Point, error)
	LatestPoints(ctx context.Context, measurement string, by []string, n int, from, to time.Time) ([]store.Point, error)
	Ping(ctx context.Context) error
	Close() error
}

func newLogger(cfg *Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		// Durations as "1.5s", not as nanoseconds in JSON.
		if a.Value.Kind() == slog.KindDuration {
			a.Value = slog.StringValue(a.Value.Duration().String())
		}
		return a
	}}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// loadRegistry loads the gateway registry: the gateway_config folder, or
// the built-in example fleet when cfg says so (the demo).
func loadRegistry(cfg *Config) (*registry.Registry, error) {
	if cfg.builtinFleet != nil {
		reg, err := registry.Parse(cfg.builtinFleet)
		if err != nil {
			return nil, fmt.Errorf("gateway registry (built in): %w", err)
		}
		return reg, nil
	}
	reg, err := registry.Load(cfg.GatewayConfig)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("gateway registry: %w (set gateway_config to the folder of your fleet's registry files; cleanprod demo runs the example fleet built into the binary)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("gateway registry: %w", err)
	}
	return reg, nil
}

// registryName names where loadRegistry reads the registry from.
func registryName(cfg *Config) string {
	if cfg.builtinFleet != nil {
		return "(embedded) gateway-config"
	}
	return cfg.GatewayConfig
}

// serve runs the service until ctx ends. Start order: registry, store,
// broker, pipeline, subscriber, HTTP; stop in reverse, flushing and
// acknowledging what was written.
func serve(ctx context.Context, cfg *Config, stdout, stderr io.Writer) (err error) {
	log := newLogger(cfg, stderr)
	defer func() {
		// A fatal error is a log record like any other, in the configured
		// format, for whatever collects the logs.
		if err != nil {
			log.Error("serve stopped on an error", "err", err)
			err = loggedError{err}
		}
	}()
	reg, err := loadRegistry(cfg)
	if err != nil {
		return err
	}
	log.Info("gateway registry loaded", "dir", registryName(cfg), "enterprises", len(reg.Enterprises), "gateways", reg.GatewayCount(), "meters", reg.MeterCount())
	// A shard receives, normalises, stores and scores its own
	// enterprises (ownReg); the API lists and authorises the whole fleet
	// (reg), and answers for it from any replica (web, fleet.go).
	set, err := shardOf(cfg, os.Hostname)
	if err != nil {
		return err
	}
	// The whole fleet's registry in force, for the web's fleet views
	// (the reloader replaces it).
	fleetReg := new(atomic.Pointer[registry.Registry])
	fleetReg.Store(reg)
	ownReg := reg
	var owns func(string) bool
	if !set.Single() {
		ownReg, owns = reg.Only(set.Owns), set.Owns
		log.Info("shard of the fleet", "shard", set.String(), "enterprises", len(ownReg.Enterprises), "of", len(reg.Enterprises),
			"meters", ownReg.MeterCount(), "client_id", shardClientID(cfg.MQTT.ClientID, set), "peers", cfg.Shard.PeerURL)
	}

	sd, err := loadScoring(cfg)
	if err != nil {
		return err
	}
	log.Info("indicator standard loaded", "indicators", len(sd.std.Indicators), "declarations", sd.decl.Dir)
	tokens, err := apiTokens(cfg, reg, log)
	if err != nil {
		return err
	}
	pdf, pdfWith, err := pdfRenderer(cfg)
	if err != nil {
		return err
	}
	log.Info("report PDFs", "renderer", pdfWith)

	// Every file is checked before anything binds a port or opens the
	// store, so a wrong path is reported as itself, not as what a half
	// start ran into.
	mqttTLS, err := tlsConfig(cfg.MQTT.CAFile, cfg.MQTT.CertFile, cfg.MQTT.KeyFile)
	if err != nil {
		return fmt.Errorf("mqtt tls: %w", err)
	}
	httpTLS, err := serverTLSConfig(cfg.HTTP.TLSCertFile, cfg.HTTP.TLSKeyFile)
	if err != nil {
		return fmt.Errorf("http tls: %w", err)
	}

	st, where, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	log.Info("store opened", "store", where)

	brokerURL := cfg.MQTT.URL
	if brokerURL == "" {
		b, err := broker.Start(broker.Config{Addr: cfg.EmbeddedBroker.Listen, DataDir: filepath.Join(cfg.DataDir, "broker"), Consumers: []string{cfg.MQTT.ClientID},
			QueueLimit: broker.Headroom(cfg.MQTT.MaxUnackedMessages), QueueBytes: int64(broker.Headroom(cfg.MQTT.MaxUnackedBytes))}, log)
		if err != nil {
			return err
		}
		defer func() {
			b.Close()
			log.Info("embedded broker stopped")
		}()
		brokerURL = b.URL()
		log.Info("embedded broker listening", "url", brokerURL)
	}

	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := ingest.NewMetrics(promReg)
	stream := web.NewBroadcaster(promReg) // live events for the API's SSE
	recent := web.NewRecentEvents(recentKeep)
	var sub *ingest.Subscriber
	// Scoring events go through a durable outbox in the data folder:
	// on disk before they count as announced, then stored, then
	// published on cp/v1/{enterprise}/events, each step retried until
	// done; what a crash left in it goes first (package outbox).
	ob, err := outbox.Open(outbox.Config{Dir: outboxDir(cfg), Store: st,
		Publish:    func(ctx context.Context, topic string, payload []byte) error { return sub.Publish(ctx, topic, payload) },
		Registerer: promReg, Logger: log.With("component", "outbox")})
	if err != nil {
		return err
	}
	defer ob.Close()
	if cfg.DataDir == "" {
		log.Warn("no data_dir: the event outbox is kept in memory only; a crash loses the events not yet stored")
	}
	// cases opens a rectification case for a red code or a failed
	// restrictive indicator, and announces overdue ones (package review).
	var cases *review.Watcher
	announce := func(e scoring.Event) { // once the outbox holds it
		stream.Publish(e)
		recent.Add(e)
		cases.Notify(e)
	}
	// A declaration's review step is stored with its record (review.Book);
	// the outbox publishes it (its store write is the same point again).
	onReview := func(e scoring.Event) {
		if err := ob.Append([]scoring.Event{e}); err != nil {
			log.Warn("a review or case event is stored but will not be published on MQTT: the outbox refused it", "event", e.String(), "err", err)
		}
		announce(e)
	}
	var pipe *ingest.Pipeline
	// History is read at start in pieces sized to take a quarter of the
	// store client's timeout, so a slow store shrinks them, not kills them.
	var piece time.Duration
	if cfg.Influx.URL != "" {
		piece = cfg.Influx.Timeout / 4
	}
	engCfg := scoring.Config{
		RefillPiece: piece, RefillConcurrency: cfg.Scoring.RefillConcurrency,
		Standard: sd.std, Policy: sd.pol, Registry: ownReg, Solutions: sd.lib, History: st, Sink: st,
		Outbox: ob, OnEvent: announce, Registerer: promReg, Logger: log.With("component", "scoring"),
		Interval: cfg.Scoring.Interval,
		// A restart resumes the windows from a checkpoint in the data
		// folder and reads back only what changed after it.
		// A checkpoint of another shard assignment is not resumed: its
		// journal lacks what other replicas stored for the enterprises
		// this one owns now.
		CheckpointDir: checkpointDir(cfg), CheckpointEvery: cfg.Scoring.CheckpointEvery, CheckpointStore: checkpointIdentity(where, set),
		// The windows refill from the store while ingest runs; at the end
		// ingest holds while the buckets that changed meanwhile are read
		// again (scoring/rebuild.go).
		Hold: func(ctx context.Context, held func() error) error { return pipe.Reconfigure(ctx, nil, held) },
	}
	// Declarations and their review live in the store; the folder only
	// seeds them (below, once the store answers).
	book := review.NewBook(st, sd.std, nil, onReview)
	cases = review.NewWatcher(book, caseSweepEvery, promReg, log.With("component", "cases"))
	if owns != nil {
		cases.Only(owns) // each shard sweeps its own enterprises' cases
	}
	engCfg.Declarations = book
	eng, err := scoring.NewEngine(engCfg)
	if err != nil {
		return fmt.Errorf("scoring: %w", err)
	}

	// seen keeps each meter's last reading and rejects for the API.
	seen := ingest.NewLastSeen(reg)
	publish := seen.PublishFunc(func(ctx context.Context, topic string, payload []byte) error { return sub.Publish(ctx, topic, payload) })
	observe := func(rs []store.Reading) {
		seen.Observe(rs)
		eng.Observe(rs)
	}
	pipe = ingest.NewPipeline(ownReg, ingest.PipelineConfig{
		Normaliser: ingest.NormaliserConfig{
			FutureHorizon: cfg.Ingest.FutureHorizon, PastHorizon: cfg.Ingest.PastHorizon, History: cfg.Ingest.History,
			MaxPayload: cfg.Ingest.MaxPayloadBytes, MaxReadings: cfg.Ingest.MaxReadings,
			Protocols: map[string]ingest.Protocol{
				ingest.LevelTelemetry: ingest.ContractV1{MaxReadings: cfg.Ingest.MaxReadings},
				ingest.LevelHJ212:     ingest.HJ212{MaxSegment: cfg.HJ212.MaxSegment},
			},
			Lookup: st.ReadingsOf,
		},
		BatchSize: cfg.Ingest.BatchSize, BatchInterval: cfg.Ingest.BatchInterval, Writers: cfg.Ingest.Writers,
		MaxInflight: cfg.MQTT.MaxInflight, ShutdownGrace: cfg.Ingest.ShutdownGrace,
		RestorePiece: piece, RestoreHistory: cfg.Ingest.RestoreHistory, RestoreConcurrency: cfg.Ingest.RestoreConcurrency, Journal: eng, Owns: owns,
	}, st, publish, observe, metrics, log.With("component", "ingest"))
	sub = ingest.NewSubscriber(ingest.SubscriberConfig{
		Broker: brokerURL, ClientID: shardClientID(cfg.MQTT.ClientID, set), Username: shardUsername(cfg.MQTT.Username, set), Password: cfg.MQTT.Password,
		TLS: mqttTLS, Enterprises: shardEnterprises(reg, set), KeepAlive: cfg.MQTT.KeepAlive,
		MaxReconnectInterval: cfg.MQTT.MaxReconnectInterval, WatchdogInterval: cfg.MQTT.WatchdogInterval,
		MaxUnackedMessages: cfg.MQTT.MaxUnackedMessages, MaxUnackedBytes: int64(cfg.MQTT.MaxUnackedBytes),
		// A replica of another shard count still live (a reshard whose
		// old replicas run) holds this one's telemetry back.
		Status: &ingest.ReplicaStatus{Prefix: statusPrefix(cfg), Index: set.Index, Count: set.Count},
	}, pipe, metrics, log.With("component", "mqtt"), nil)

	stations, err := listenHJ212(cfg, pipe, promReg, log.With("component", "hj212"))
	if err != nil {
		return err
	}
	if stations != nil {
		defer stations.ln.Close() // when serve ends before the receiver took over
	}
	start := newStartup(promReg)
	loading := func() []string {
		var l []string
		if !start.ingesting.Load() {
			if p := pipe.Restoring(); p != nil {
				l = append(l, fmt.Sprintf("meter state (%d of %d enterprises)", p.Done, p.Total))
			} else {
				l = append(l, "meter state (waiting for the store)")
			}
		}
		if !start.eventsRestored.Load() {
			l = append(l, "events announced before (reading from the store)")
		}
		if s := eng.Loading(); s != "" {
			l = append(l, s)
		}
		return l
	}
	ready := func(ctx context.Context) error {
		if !start.ingesting.Load() {
			return errors.New("loading the meters' recent readings from the store; ingest starts after")
		}
		if !sub.Connected() {
			return errors.New("not connected to the broker")
		}
		if w := sub.Waiting(); w != "" {
			return errors.New(w)
		}
		if err := st.Ping(ctx); err != nil {
			return fmt.Errorf("store unreachable: %w", err)
		}
		// A store that answers pings but refuses writes (a full disk, a
		// read-only user) holds every acknowledgement: not ready.
		if !pipe.StoreHealthy() {
			return errors.New("store writes are failing; acknowledgements are held and writes retried")
		}
		return ob.Status()
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	scheme := "http"
	if httpTLS != nil {
		ln, scheme = tls.NewListener(ln, httpTLS), "https" // TLS only: plain HTTP gets a 400
	}
	httpSrv := &http.Server{Handler: web.NewHandler(web.Options{Gatherer: promReg, Ready: ready, Loading: loading,
		Scorer: eng, Registry: reg, Solutions: sd.lib, Points: st, Meters: seen, Declarations: book,
		Tokens: tokens, Events: stream, Recent: recent, PDF: pdf, Registerer: promReg, Logger: log.With("component", "web"),
		Shard: set, PeerURL: cfg.Shard.PeerURL, ShardSecret: cfg.Shard.Secret, FleetMaxAge: cfg.Scoring.Interval, FleetRegistry: fleetReg.Load}),
		ReadHeaderTimeout: 10 * time.Second}
	httpSrv.RegisterOnShutdown(stream.Close) // ends the SSE streams, so Shutdown does not wait on them
	fmt.Fprintf(stdout, "cleanprod serving: %s://%s (overview /, API /api/v1, OpenAPI /api/v1/openapi.json, metrics /metrics, health /healthz, ready /readyz), broker %s, store %s%s\n", scheme, ln.Addr(), brokerURL, where, stations.describe())

	// SIGHUP reloads the registry, scoring files and tokens.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	rl := &reloader{cfg: cfg, log: log.With("component", "reload"), pipe: pipe, eng: eng, seen: seen, tokens: tokens, book: book,
		sub: sub, shard: set, reg: reg, sd: sd, m: newReloadMetrics(promReg), fleetReg: fleetReg}

	g, gctx := errgroup.WithContext(ctx)
	// Describing the meters retries while the store is down; a newer
	// registry replaces a description still waiting, so reloads during
	// an outage do not pile up writers.
	var (
		describeMu   sync.Mutex
		describeStop context.CancelFunc = func() {}
	)
	describe := func(reg *registry.Registry) {
		describeMu.Lock()
		defer describeMu.Unlock()
		describeStop()
		dctx, stop := context.WithCancel(gctx)
		describeStop = stop
		go ingest.DescribeMeters(dctx, st, reg, time.Now(), log)
	}
	rl.describe = describe
	if cfg.Debug.PprofListen != "" {
		if err := servePprof(gctx, g, cfg.Debug.PprofListen, log); err != nil {
			return err
		}
	}
	g.Go(func() error {
		if err := httpSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), httpShutdownGrace)
		defer cancel()
		if err := httpSrv.Shutdown(sctx); err != nil {
			// A client that keeps a request half-sent, or a connection it
			// never used, is not a failure of serve: what it was sent is
			// flushed and acknowledged by then. Cut it off and stop cleanly.
			log.Warn("HTTP connections still open at shutdown are closed", "after", httpShutdownGrace, "err", err)
			return httpSrv.Close()
		}
		return nil
	})
	g.Go(func() error {
		// Counter state comes from the store, so wait for it before taking
		// messages: they stay safe in the broker meanwhile.
		if err := waitForStore(gctx, st, log); err != nil {
			return nil
		}
		seedDeclarations(gctx, book, sd, log, start)
		// Ingest needs each meter's recent readings (to place late ones
		// and compute deltas); the scorer's windows refill while ingest
		// runs (scoring/rebuild.go). Meanwhile the windows of the last
		// checkpoint, and what changed after it, are read (before
		// anything new is stored). The events announced before are read
		// after these, while ingest runs: the scorer needs them only
		// before it grades (restoreEvents), and at fleet scale they are
		// the largest read of the three.
		rg, rctx := errgroup.WithContext(gctx)
		noted := make(chan struct{})
		rg.Go(func() error { return eng.Resume(rctx, noted) })
		rg.Go(func() error {
			var newest []store.Reading // for the meters view, in batches
			err := pipe.Restore(rctx, st, func(r *store.Reading) {
				eng.NoteLatest(r)
				if newest = append(newest, *r); len(newest) == 4096 {
					seen.Observe(newest)
					newest = newest[:0]
				}
			})
			if err == nil {
				seen.Observe(newest)
				close(noted)
			}
			return err
		})
		if err := rg.Wait(); err != nil {
			if gctx.Err() != nil {
				return nil // stopped while restoring: a clean shutdown
			}
			return err
		}
		replayed := ob.Replayed()
		// For dashboards, each shard its own meters: after the reads
		// above, with which its writes would compete for the store.
		describe(ownReg)
		// The engine outlives the pipeline: the final flush still feeds it.
		engCtx, stopEngine := context.WithCancel(context.WithoutCancel(gctx))
		engDone := make(chan error, 1)
		// An engine that fails (the store refusing its refill) stops
		// ingest too, and serve with its error.
		ingestCtx, stopIngest := context.WithCancel(gctx)
		defer stopIngest()
		go func() {
			// Announced events before any evaluation, so nothing is
			// announced twice. Ingest runs meanwhile: the scorer queues
			// its readings (Observe) until Run applies them. They are
			// read until they are, or serve stops (which may find ingest
			// waiting on the scorer), or ingest ends.
			evCtx, stopEv := context.WithCancel(engCtx)
			defer stopEv()
			defer context.AfterFunc(gctx, stopEv)()
			var past []scoring.Event
			t0 := time.Now()
			err := start.retry(evCtx, log, "read past events", func(ctx context.Context) error {
				var err error
				past, err = pastEvents(ctx, st, replayed, time.Now(), recentKeep)
				return err
			})
			if err == nil {
				log.Info("past events read", "events", len(past), "took", time.Since(t0).Round(time.Millisecond))
				restoreEvents(past, eng, recent, cases)
				past = nil
				start.eventsRestored.Store(true)
				err = eng.Run(engCtx)
			} else {
				// Stopped before the scorer ran (or the store refused the
				// read): ingest's last readings are dropped by the scorer
				// rather than waited on; the journal names their buckets
				// for the next start.
				eng.Abandon()
				if evCtx.Err() != nil {
					err = nil // stopped, not failed
				}
			}
			if err != nil {
				stopIngest()
			}
			engDone <- err
		}()
		go start.scored(engCtx, eng, log)
		// The outbox outlives the engine: at shutdown it delivers what
		// the engine announced last (below).
		obCtx, stopOutbox := context.WithCancel(context.WithoutCancel(gctx))
		obDone := make(chan struct{})
		go func() { ob.Run(obCtx); close(obDone) }()
		defer func() { stopOutbox(); <-obDone }()
		pg, pctx := errgroup.WithContext(ingestCtx)
		pg.Go(func() error { return pipe.Run(pctx) })
		pg.Go(func() error { return sub.Run(pctx) })
		if stations != nil {
			pg.Go(func() error {
				// Loggers too wait while a replica of another shard count
				// is live.
				for sub.Waiting() != "" {
					select {
					case <-pctx.Done():
						return nil
					case <-time.After(100 * time.Millisecond):
					}
				}
				return stations.serve(pctx, cfg.Ingest.ShutdownGrace)
			})
		}
		start.ingest(log)
		pg.Go(func() error { rl.run(pctx, hup); return nil })
		pg.Go(func() error { cases.Run(pctx); return nil })
		pg.Go(func() error {
			// Reviews made through another replica reach this one's scorer.
			t := time.NewTicker(cfg.Scoring.DeclarationsEvery)
			defer t.Stop()
			for {
				select {
				case <-pctx.Done():
					return nil
				case <-t.C:
					eng.ReloadDeclarations()
				}
			}
		})
		err = pg.Wait()
		stopEngine()
		if engErr := <-engDone; engErr != nil && err == nil {
			err = fmt.Errorf("scoring: %w", engErr)
		}
		// Events still in the outbox are delivered within the grace
		// (the broker connection is still up); the rest stays in its
		// file for the next start, which delivers it first.
		fctx, cancel := context.WithTimeout(context.Background(), cfg.Ingest.ShutdownGrace)
		if left := ob.Flush(fctx); left > 0 {
			log.Warn("events not yet delivered stay in the outbox for the next start", "events", left)
		}
		cancel()
		stopOutbox()
		<-obDone
		sub.Close() // after the pipeline flushed, so the last acks leave
		log.Info("ingest and scoring stopped")
		return err
	})
	err = g.Wait()
	if ctx.Err() != nil && err == nil {
		log.Info("shut down cleanly")
	}
	return err
}

// recentKeep is how many of each enterprise's latest events its page
// shows from memory.
const recentKeep = 50

// httpShutdownGrace is how long a stop waits for HTTP requests in flight
// before it closes their connections.
const httpShutdownGrace = 5 * time.Second

// caseSweepEvery is how often deadlines of rectification cases are
// checked: a deadline is a day, so a minute late is on time.
const caseSweepEvery = time.Minute

// servePprof serves Go's profiles on addr until ctx ends: a listener of
// its own, so that profiling never shares the API's port or middleware.
func servePprof(ctx context.Context, g *errgroup.Group, addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("debug.pprof_listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Info("pprof listening", "addr", ln.Addr().String())
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("pprof: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		return srv.Close()
	})
	return nil
}

func openStore(cfg *Config) (readingStore, string, error) {
	if cfg.Influx.URL == "" {
		path := filepath.Join(cfg.DataDir, "readings.db")
		b, err := store.OpenBolt(path)
		if err != nil {
			return nil, "", fmt.Errorf("embedded store: %w", err)
		}
		return b, "embedded " + path, nil
	}
	tlsCfg, err := tlsConfig(cfg.Influx.CAFile, "", "")
	if err != nil {
		return nil, "", fmt.Errorf("influx tls: %w", err)
	}
	s, err := store.OpenInflux(store.InfluxConfig{
		URL: cfg.Influx.URL, Token: cfg.Influx.Token, Org: cfg.Influx.Org, Bucket: cfg.Influx.Bucket,
		GZip: cfg.Influx.GZip, Timeout: cfg.Influx.Timeout, TLS: tlsCfg,
	})
	if err != nil {
		return nil, "", err
	}
	return s, "influxdb " + cfg.Influx.URL + " bucket " + cfg.Influx.Bucket, nil
}

// waitForStore blocks until the store answers or ctx ends.
func waitForStore(ctx context.Context, st readingStore, log *slog.Logger) error {
	backoff := 500 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := st.Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		log.Warn("store unreachable; waiting before taking messages", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 15*time.Second)
	}
}

// startup tracks how far serve's start is, for /readyz and the metrics.
type startup struct {
	began     time.Time
	ingesting atomic.Bool // meter state loaded, ingest running
	// eventsRestored: the events announced before are read back, and
	// the scorer runs.
	eventsRestored atomic.Bool
	seconds        *prometheus.GaugeVec
	retries        *prometheus.CounterVec
}

func newStartup(reg prometheus.Registerer) *startup {
	s := &startup{began: time.Now(), seconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "cleanprod_startup_duration_seconds",
		Help: "Time from the start of serve until a stage was reached: ingest (meter state loaded, messages taken), scoring (windows refilled from the store, every enterprise graded).",
	}, []string{"stage"}), retries: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cleanprod_startup_retries_total",
		Help: "Steps of the start that failed (the store slow or unreachable) and were retried after a back-off.",
	}, []string{"step"})}
	reg.MustRegister(s.seconds, s.retries)
	return s
}

func (s *startup) ingest(log *slog.Logger) {
	s.ingesting.Store(true)
	took := time.Since(s.began)
	s.seconds.WithLabelValues("ingest").Set(took.Seconds())
	log.Info("ingest started", "since_start", took.Round(time.Millisecond))
}

// scored waits for the engine's first grading after its refill.
func (s *startup) scored(ctx context.Context, eng *scoring.Engine, log *slog.Logger) {
	select {
	case <-ctx.Done():
	case <-eng.Ready():
		took := time.Since(s.began)
		s.seconds.WithLabelValues("scoring").Set(took.Seconds())
		log.Info("every enterprise graded", "since_start", took.Round(time.Millisecond))
	}
}

// retry runs f until it succeeds or ctx ends, with back-off, logging and
// counting each failure: a slow or restarting store delays the start, it
// does not end it. It returns ctx's error, or the error of a request the
// store refuses for good (store.Refused).
func (s *startup) retry(ctx context.Context, log *slog.Logger, step string, f func(ctx context.Context) error) error {
	backoff := time.Second
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if store.Refused(err) {
			return fmt.Errorf("%s: %w", step, err)
		}
		s.retries.WithLabelValues(step).Inc()
		log.Warn("start: "+step+" failed; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// outboxDir is where the event outbox keeps its file: data_dir's outbox
// folder ("" without a data_dir: in memory).
func outboxDir(cfg *Config) string {
	if cfg.DataDir == "" {
		return ""
	}
	return filepath.Join(cfg.DataDir, "outbox")
}

// checkpointIdentity names the store and, for a shard, the shard
// assignment a checkpoint of the scorer's windows was written against: a
// checkpoint of another is not resumed. A single replica's is the store
// alone, as before shards.
func checkpointIdentity(where string, s shard.Set) string {
	if s.Single() {
		return where
	}
	return where + " shard " + s.String()
}

// checkpointDir is where the scorer checkpoints its windows: data_dir's
// scoring folder ("" without a data_dir: no checkpoints).
func checkpointDir(cfg *Config) string {
	if cfg.DataDir == "" {
		return ""
	}
	return filepath.Join(cfg.DataDir, "scoring")
}
