package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cleanprod/cleanprod/sim"
)

const (
	// The probe reading: a COD analyser at the wastewater outlet, which
	// every synthetic enterprise has.
	probeGateway = "gw-wwtp-01"
	probeMeter   = "WW-OUT-COD"
	probeValue   = "40.0" // mg/L
	// probeTimeout bounds the wait for one probe to be stored and scored.
	probeTimeout = 30 * time.Second
	// How often a waiting probe asks the API.
	pollStored = 10 * time.Millisecond
	pollScored = 20 * time.Millisecond
	// detailEvery is how often one GET /api/v1/enterprises/{id} of a probe
	// enterprise is timed, apart from the probes: that answer reads the
	// enterprise's recent events from the store, which is slow under load.
	detailEvery = 2 * time.Second
)

// errNoDataThrough says the enterprise API has no data_through field.
var errNoDataThrough = errors.New(`the enterprise API has no "data_through" field`)

// latency is phase 4: cleanprod serve on mosquitto and a fresh InfluxDB
// database, scoring every scoringInterval, fed by the simulator at half
// the rate phase 3 sustained for cfg.duration, while probes measure how
// long a reading takes to be stored and to be scored.
func (b *bench) latency(ctx context.Context, sustained float64) (*latencyResult, error) {
	const clientID = "cleanprod-latency"
	srv, db, err := b.startExternalServe(ctx, "latency", clientID, false, "-scoring.interval", b.cfg.scoringInterval.String())
	if err != nil {
		return nil, err
	}
	defer b.forget(db, clientID)
	r, err := b.probeUnderLoad(ctx, srv, sustained/2)
	return r, errors.Join(err, srv.stop())
}

// probeUnderLoad runs the simulator at rate readings/s against srv for
// cfg.duration with the probes and the detail timer alongside, then
// checks that srv caught up.
func (b *bench) probeUnderLoad(ctx context.Context, srv *serveProcess, rate float64) (*latencyResult, error) {
	url := b.srv.broker.URL()
	perMsg := float64(b.work.readings) / float64(len(b.work.msgs))
	backfill, err := backfillFor(int(rate*b.cfg.duration.Seconds()*1.2), b.work.meters)
	if err != nil {
		return nil, fmt.Errorf("latency: %w", err)
	}
	s, err := sim.New(b.work.load, sim.Config{
		Seed: b.cfg.seed, Backfill: backfill, ReadingsPerMessage: b.cfg.perMessage, MaxRate: rate / perMsg,
	})
	if err != nil {
		return nil, err
	}
	loadClient, err := sim.Dial(ctx, url, "bench-load")
	if err != nil {
		return nil, err
	}
	defer loadClient.Disconnect(250)
	probeClient, err := sim.Dial(ctx, url, "bench-probe")
	if err != nil {
		return nil, err
	}
	defer probeClient.Disconnect(250)

	loadCtx, stopLoad := context.WithTimeout(ctx, b.cfg.duration)
	defer stopLoad()
	loaded := make(chan error, 1)
	go func() { loaded <- s.Run(loadCtx, sim.NewMQTTPublisher(loadClient, publishTimeout)) }()
	warmup := min(5*time.Second, b.cfg.duration/5)
	p := &prober{srv: srv, pub: sim.NewMQTTPublisher(probeClient, publishTimeout), tokens: b.probeTokens}
	var wg sync.WaitGroup
	wg.Go(func() { p.timeDetails(ctx, loadCtx, b.work.probes, warmup) })
	for i, id := range b.work.probes {
		wg.Go(func() {
			// Staggered, so that the probes do not ask at the same moments.
			delay := warmup + time.Duration(i)*pollScored/time.Duration(len(b.work.probes))
			p.run(ctx, loadCtx, id, delay)
		})
	}
	wg.Wait()
	if err := <-loaded; err != nil {
		return nil, fmt.Errorf("latency: simulator: %w", err)
	}
	if err := errors.Join(p.errs...); err != nil {
		return nil, fmt.Errorf("latency: %w", err)
	}
	st := s.Stats()
	r := &latencyResult{
		TargetReadingsPerSec: rate, ReadingsPerSec: float64(st.Readings) / st.Elapsed.Seconds(),
		Readings: int(st.Readings), Seconds: st.Elapsed.Seconds(), Warmup: warmup.String(),
		Probes: len(b.work.probes), ScoringInterval: b.cfg.scoringIntervalOf(b.cfg.scoringInterval.String()),
		NoDataThrough: p.noDataThrough.Load(),
	}
	var stored, scored []time.Duration
	for _, smp := range p.samples {
		switch {
		case !smp.stored:
			r.StoredTimeouts++
		default:
			stored = append(stored, smp.toStore)
		}
		switch {
		case r.NoDataThrough:
		case !smp.scored:
			r.ScoredTimeouts++
		default:
			scored = append(scored, smp.toScore)
		}
	}
	r.Samples = len(p.samples)
	r.Stored = summarise(stored)
	if !r.NoDataThrough {
		r.Scored = summarise(scored)
	}
	r.Detail = summarise(p.details)
	r.DetailHasDataThrough = p.detailHasDataThrough.Load()
	r.DetailErrors = len(p.detailErrs)
	if len(p.detailErrs) > 0 {
		r.DetailError = p.detailErrs[0].Error()
	}
	// Did cleanprod keep up? What the simulator and the probes published
	// should be written shortly after the load stopped.
	want := r.Readings + int(p.published.Load())
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, _, err := srv.metrics(ctx)
		if err != nil {
			return nil, err
		}
		r.Backlog = want - int(m["cleanprod_ingest_readings_written_total"])
		if r.Backlog <= 0 || time.Now().After(deadline) || !sleep(ctx, time.Second) {
			break
		}
	}
	r.Backlog = max(r.Backlog, 0)
	return r, nil
}

// prober publishes probe readings and waits for the API to show them.
type prober struct {
	srv    *serveProcess
	pub    *sim.MQTTPublisher
	tokens map[string]string // enterprise token of each probe enterprise

	noDataThrough        atomic.Bool  // the enterprise list has no data_through
	detailHasDataThrough atomic.Bool  // GET /api/v1/enterprises/{id} has data_through
	published            atomic.Int64 // probe readings published

	mu         sync.Mutex
	samples    []probeSample
	errs       []error
	details    []time.Duration // GET /api/v1/enterprises/{id} that answered
	detailErrs []error
}

type probeSample struct {
	stored, scored   bool
	toStore, toScore time.Duration
}

// run probes enterprise id after delay, one reading at a time, until load
// ends; the last probe's wait may outlast it (bounded by probeTimeout).
func (p *prober) run(ctx, load context.Context, id string, delay time.Duration) {
	if !sleep(load, delay) {
		return
	}
	topic := sim.Topic(id, probeGateway)
	for seq := 1; load.Err() == nil; seq++ {
		smp, err := p.probe(ctx, topic, id, seq)
		p.mu.Lock()
		if err != nil {
			p.errs = append(p.errs, fmt.Errorf("probe %s: %w", id, err))
		} else {
			p.samples = append(p.samples, smp)
		}
		p.mu.Unlock()
		if err != nil {
			return
		}
		// A random pause, so that probes fall on any point of the
		// scoring interval.
		if !sleep(load, time.Duration(rand.Int64N(int64(200*time.Millisecond)))) {
			return
		}
	}
}

// probe publishes one reading of enterprise id stamped with the current
// time and measures how long the API takes to show it stored (the meter's
// last_seen in GET /api/v1/enterprises/{id}/meters, set once the store
// accepted its batch) and scored (the enterprise's data_through). The
// score is polled in the enterprise list as the enterprise's own token
// sees it (one enterprise, answered from the scorer's snapshot), not in
// GET /api/v1/enterprises/{id}, which also reads the recent events from
// the store: under load that query takes seconds, which would blur the
// measure (timeDetails times that GET on its own).
func (p *prober) probe(ctx context.Context, topic, id string, seq int) (probeSample, error) {
	ts := time.Now().UTC().Truncate(time.Millisecond)
	stamp := ts.Format(time.RFC3339Nano)
	payload := fmt.Appendf(nil, `{"gateway":%q,"seq":%d,"sent":%q,"readings":[{"meter":%q,"ts":%q,"value":%s}]}`,
		probeGateway, seq, stamp, probeMeter, stamp, probeValue)
	var smp probeSample
	t0 := time.Now()
	if err := p.pub.Publish(ctx, topic, payload); err != nil {
		return smp, err
	}
	p.published.Add(1)
	var err error
	smp.stored, err = poll(ctx, pollStored, func() (bool, error) { return p.srv.meterSeen(ctx, id, probeMeter, ts) })
	smp.toStore = time.Since(t0)
	if err != nil || !smp.stored || p.noDataThrough.Load() {
		return smp, err
	}
	smp.scored, err = poll(ctx, pollScored, func() (bool, error) { return p.srv.scoredThrough(ctx, p.tokens[id], ts) })
	smp.toScore = time.Since(t0)
	if errors.Is(err, errNoDataThrough) {
		p.noDataThrough.Store(true)
		return smp, nil
	}
	return smp, err
}

// timeDetails times one GET /api/v1/enterprises/{id} of the probe
// enterprises in turn every detailEvery after delay, until load ends, and
// checks that the answer has data_through. A failed GET is counted, not
// fatal.
func (p *prober) timeDetails(ctx, load context.Context, ids []string, delay time.Duration) {
	if !sleep(load, delay) {
		return
	}
	for i := 0; load.Err() == nil; i++ {
		t0 := time.Now()
		has, err := p.srv.detailHasDataThrough(ctx, ids[i%len(ids)])
		d := time.Since(t0)
		p.mu.Lock()
		var timeout interface{ Timeout() bool }
		switch {
		case errors.As(err, &timeout) && timeout.Timeout():
			p.detailErrs = append(p.detailErrs, fmt.Errorf("no answer within %v", d.Round(time.Second)))
		case err != nil:
			p.detailErrs = append(p.detailErrs, fmt.Errorf("after %v: %w", d.Round(time.Millisecond), err))
		default:
			p.details = append(p.details, d)
		}
		p.mu.Unlock()
		if has {
			p.detailHasDataThrough.Store(true)
		}
		if !sleep(load, detailEvery-min(d, detailEvery)) {
			return
		}
	}
}

// poll calls done every period until it reports true or an error, or
// probeTimeout passes (false, nil).
func poll(ctx context.Context, period time.Duration, done func() (bool, error)) (bool, error) {
	deadline := time.Now().Add(probeTimeout)
	for {
		ok, err := done()
		if ok || err != nil {
			return ok, err
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		if !sleep(ctx, period) {
			return false, ctx.Err()
		}
	}
}

// sleep waits for d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// getJSON gets path from the API with token and decodes the answer into v.
func (s *serveProcess) getJSON(ctx context.Context, path, token string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// meterSeen reports whether the API's meters view of enterprise shows a
// stored reading of meter at or after ts.
func (s *serveProcess) meterSeen(ctx context.Context, enterprise, meter string, ts time.Time) (bool, error) {
	var v struct {
		Meters []meterView `json:"meters"`
	}
	// One page of the largest size holds every meter (-meters-per-enterprise is at most 1000).
	path := "/api/v1/enterprises/" + url.PathEscape(enterprise) + "/meters?limit=1000"
	if err := s.getJSON(ctx, path, s.token, &v); err != nil {
		return false, err
	}
	i := slices.IndexFunc(v.Meters, func(m meterView) bool { return m.ID == meter })
	if i < 0 {
		return false, fmt.Errorf("GET %s: no meter %s", path, meter)
	}
	return v.Meters[i].LastSeen != nil && !v.Meters[i].LastSeen.Before(ts), nil
}

// meterView is what the probes read of a meter in the meters view.
type meterView struct {
	ID       string     `json:"id"`
	LastSeen *time.Time `json:"last_seen"`
}

// scoredThrough reports whether the score of the one enterprise that
// token sees includes data at or after ts (its data_through).
func (s *serveProcess) scoredThrough(ctx context.Context, token string, ts time.Time) (bool, error) {
	var v struct {
		Enterprises []map[string]json.RawMessage `json:"enterprises"`
	}
	const path = "/api/v1/enterprises"
	if err := s.getJSON(ctx, path, token, &v); err != nil {
		return false, err
	}
	if len(v.Enterprises) != 1 {
		return false, fmt.Errorf("GET %s with an enterprise token: %d enterprises, want 1", path, len(v.Enterprises))
	}
	through, err := dataThrough(v.Enterprises[0])
	if err != nil {
		return false, fmt.Errorf("GET %s: %w", path, err)
	}
	return through != nil && !through.Before(ts), nil
}

// detailHasDataThrough gets GET /api/v1/enterprises/{id} with the
// supervisor token and reports whether it has a data_through field.
func (s *serveProcess) detailHasDataThrough(ctx context.Context, enterprise string) (bool, error) {
	var v map[string]json.RawMessage
	path := "/api/v1/enterprises/" + url.PathEscape(enterprise)
	if err := s.getJSON(ctx, path, s.token, &v); err != nil {
		return false, err
	}
	_, err := dataThrough(v)
	if errors.Is(err, errNoDataThrough) {
		return false, nil
	}
	return err == nil, err
}

// dataThrough returns the data_through field of an enterprise (nil: null).
func dataThrough(ent map[string]json.RawMessage) (*time.Time, error) {
	raw, ok := ent["data_through"]
	if !ok {
		return nil, errNoDataThrough
	}
	var through *time.Time
	if err := json.Unmarshal(raw, &through); err != nil {
		return nil, fmt.Errorf("data_through: %w", err)
	}
	return through, nil
}

// percentiles are a latency distribution.
type percentiles struct {
	N      int     `json:"n"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
	MeanMs float64 `json:"mean_ms"`
}

// summarise returns the nearest-rank percentiles of ds.
func summarise(ds []time.Duration) *percentiles {
	if len(ds) == 0 {
		return nil
	}
	slices.Sort(ds)
	rank := func(p float64) float64 {
		i := int(math.Ceil(float64(len(ds))*p)) - 1
		return ms(ds[min(max(i, 0), len(ds)-1)])
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return &percentiles{N: len(ds), P50Ms: rank(0.50), P99Ms: rank(0.99), MaxMs: ms(ds[len(ds)-1]), MeanMs: ms(sum / time.Duration(len(ds)))}
}

// ms returns d in milliseconds, to a tenth.
func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Millisecond)*10) / 10 }
