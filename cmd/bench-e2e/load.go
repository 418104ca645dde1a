package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/cleanprod/cleanprod/ingest"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/sim"
	"github.com/cleanprod/cleanprod/store"
)

const (
	// interval is the simulated meters' reporting interval (sim's default).
	interval = 5 * time.Minute
	// gatewayLag is an upper bound, in intervals, of how long a gateway
	// of the synthetic fleet buffers readings before a message of 50 is
	// full (a gateway of two meters: 25 intervals).
	gatewayLag = 40
	// maxBackfill keeps the oldest simulated reading well inside
	// cleanprod's ingest.past_horizon (30 days).
	maxBackfill = 25 * 24 * time.Hour
	// publishTimeout bounds the wait for one PUBACK.
	publishTimeout = 30 * time.Second
)

// workload is what every phase sends: the fleet's registry files, and
// the messages of a fixed volume of readings, generated once by the
// simulator before anything is timed.
type workload struct {
	files    map[string][]byte // gateway-config files: the load fleet and the probe enterprises
	load     *registry.Registry
	probes   []string // probe enterprise ids, not in load
	meters   int      // meters of load
	msgs     []sim.Message
	readings int // readings in msgs
	bytes    int // payload bytes in msgs
	start    time.Time
	generate time.Duration // time taken to generate msgs
	// unscored counts the load enterprises whose industry the standard
	// does not grade (none with sim's fleets: the scorer's work for every
	// enterprise is measured).
	unscored int
}

// newWorkload makes a synthetic fleet of enterprises+probes enterprises
// with at least metersPer meters each (sim.SyntheticFleetMeters; the last
// probes are left out of the load) and generates messages of
// perMessage readings of the load fleet until they hold at least volume
// readings. Simulated time starts far enough in the past that every
// reading is in the past when published.
func newWorkload(enterprises, probes, metersPer, volume, perMessage int, seed int64) (*workload, error) {
	files, err := sim.SyntheticFleetMeters(enterprises+probes, metersPer, seed)
	if err != nil {
		return nil, err
	}
	w := &workload{files: files}
	ids := slices.Sorted(maps.Keys(files))
	loadFiles := make(map[string][]byte, enterprises)
	probeFiles := make(map[string][]byte, probes)
	for i, name := range ids {
		if i < enterprises {
			loadFiles[name] = files[name]
		} else {
			probeFiles[name] = files[name]
			w.probes = append(w.probes, strings.TrimSuffix(name, ".yaml"))
		}
	}
	if w.load, err = registry.Parse(loadFiles); err != nil {
		return nil, fmt.Errorf("synthetic fleet: %w", err)
	}
	std, err := scoring.DefaultStandard()
	if err != nil {
		return nil, err
	}
	for _, e := range w.load.Enterprises {
		if !slices.Contains(std.Industries, e.Industry) {
			w.unscored++
		}
	}
	if err := checkProbes(probeFiles, std); err != nil {
		return nil, err
	}
	w.meters = w.load.MeterCount()
	backfill, err := backfillFor(volume, w.meters)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	s, err := sim.New(w.load, sim.Config{
		Seed: seed, Start: now.Add(-backfill), ReadingsPerMessage: perMessage,
		Now: func() time.Time { return now },
	})
	if err != nil {
		return nil, err
	}
	w.start = s.Start()
	began := time.Now()
	for w.readings < volume {
		m, ok := s.Next()
		if !ok {
			return nil, errors.New("simulator ended early")
		}
		w.msgs = append(w.msgs, m)
		w.readings += m.Readings
		w.bytes += len(m.Payload)
	}
	w.generate = time.Since(began)
	if last := s.Stats().SimTime; last.After(now) {
		return nil, fmt.Errorf("workload: simulated time reached %s, after the wall clock", last.Format(time.RFC3339))
	}
	return w, nil
}

// checkProbes checks that every probe enterprise has the probe meter and
// is of an industry the standard grades, so that it gets a score.
func checkProbes(files map[string][]byte, std *scoring.Standard) error {
	if len(files) == 0 {
		return nil
	}
	reg, err := registry.Parse(files)
	if err != nil {
		return fmt.Errorf("probe enterprises: %w", err)
	}
	for _, e := range reg.Enterprises {
		if !slices.Contains(std.Industries, e.Industry) {
			return fmt.Errorf("probe enterprise %s: industry %q is not graded by the standard (%s)", e.ID, e.Industry, strings.Join(std.Industries, ", "))
		}
		g, ok := reg.Gateway(e.ID, probeGateway)
		if !ok || !slices.ContainsFunc(g.Meters, func(m *registry.Meter) bool { return m.ID == probeMeter && m.Kind == registry.Gauge }) {
			return fmt.Errorf("probe enterprise %s: no gauge %s on gateway %s", e.ID, probeMeter, probeGateway)
		}
	}
	return nil
}

// backfillFor returns how far in the past a simulation of meters must start
// so that volume readings are all in the past.
func backfillFor(volume, meters int) (time.Duration, error) {
	if meters == 0 {
		return 0, errors.New("workload: the fleet has no meters")
	}
	ticks := (volume+meters-1)/meters + gatewayLag
	d := time.Duration(ticks) * interval
	if d > maxBackfill {
		return 0, fmt.Errorf("workload: %d readings from %d meters span %v of simulated time, more than the %v cleanprod's past horizon allows: use more enterprises or fewer readings",
			volume, meters, d.Round(time.Hour), maxBackfill)
	}
	return d, nil
}

// storeBatches normalises the workload's messages as cleanprod does
// (ingest.Normaliser) and returns the readings as line protocol
// (store.AppendReadingLine), size readings per batch: exactly the points
// cleanprod writes. It also returns how many points there are.
func (w *workload) storeBatches(size int) ([]string, int, error) {
	n := ingest.NewNormaliser(w.load, ingest.NormaliserConfig{
		FutureHorizon: 5 * time.Minute, PastHorizon: 30 * 24 * time.Hour, History: 32,
	})
	now := time.Now()
	var (
		batches       []string
		write, obs    []store.Reading
		buf           []byte
		inBuf, points int
	)
	flush := func() {
		if inBuf > 0 {
			batches = append(batches, string(buf[:len(buf)-1])) // without the last newline
			buf, inBuf = buf[:0], 0
		}
	}
	for _, m := range w.msgs {
		write, obs = write[:0], obs[:0]
		out, derr := n.Process(m.Topic, m.Payload, false, now, &write, &obs)
		if derr != nil {
			return nil, 0, fmt.Errorf("normalise %s: %s: %s", m.Topic, derr.Reason, derr.Detail)
		}
		if len(out.Rejects) > 0 {
			r := out.Rejects[0]
			return nil, 0, fmt.Errorf("normalise %s: %d readings rejected, the first: %s: %s", m.Topic, len(out.Rejects), r.Reason, r.Detail)
		}
		for i := range write {
			buf = store.AppendReadingLine(buf, &write[i])
			inBuf++
			points++
			if inBuf == size {
				flush()
			}
		}
	}
	flush()
	return batches, points, nil
}

// shardMessages splits the indexes of msgs over clients publishers by
// topic, so that each gateway's messages go through one connection, in
// order.
func shardMessages(msgs []sim.Message, clients int) [][]int {
	shards := make([][]int, clients)
	for i, m := range msgs {
		h := fnv.New32a()
		h.Write([]byte(m.Topic))
		k := int(h.Sum32() % uint32(clients))
		shards[k] = append(shards[k], i)
	}
	return shards
}

// publishAll publishes msgs at QoS 1 to brokerURL as fast as the broker
// takes them: one connection per shard, publishing the shard's messages in
// order with up to window of them waiting for their PUBACK. It returns when
// every message is acknowledged.
func publishAll(ctx context.Context, brokerURL string, msgs []sim.Message, shards [][]int, window int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for k, shard := range shards {
		if len(shard) == 0 {
			continue
		}
		c, err := sim.Dial(ctx, brokerURL, fmt.Sprintf("bench-pub-%d", k))
		if err != nil {
			cancel(err)
			break
		}
		wg.Go(func() {
			defer c.Disconnect(250)
			if err := publishShard(ctx, c, msgs, shard, window); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

// publishShard publishes msgs[i] for i in shard, in order, with at most
// window unacknowledged.
func publishShard(ctx context.Context, c paho.Client, msgs []sim.Message, shard []int, window int) error {
	pending := make(chan paho.Token, window)
	acked := make(chan error, 1)
	go func() {
		for tok := range pending {
			if !tok.WaitTimeout(publishTimeout) {
				acked <- fmt.Errorf("no PUBACK within %v", publishTimeout)
				for range pending {
				}
				return
			}
			if err := tok.Error(); err != nil {
				acked <- err
				for range pending {
				}
				return
			}
		}
		acked <- nil
	}()
	var err error
	for _, i := range shard {
		if err = ctx.Err(); err != nil {
			break
		}
		select {
		case pending <- c.Publish(msgs[i].Topic, 1, false, msgs[i].Payload):
		case <-ctx.Done():
		}
	}
	close(pending)
	return errors.Join(err, <-acked)
}

// checkpoint is the last reading of a published message. The broker
// delivers a connection's messages in order and cleanprod writes them in
// arrival order, so once the meters API shows the reading stored, every
// message published before it on its connection is stored too.
type checkpoint struct {
	enterprise, meter string
	ts                time.Time
}

// checkpoints returns n checkpoints spread evenly over each shard, the
// last at its last message: cleanprod's progress, readable through the
// meters API at a cost far below a /metrics scrape (which lists every
// enterprise's indicators).
func checkpoints(msgs []sim.Message, shards [][]int, n int) ([][]checkpoint, error) {
	out := make([][]checkpoint, len(shards))
	for k, shard := range shards {
		for j := 1; j <= n && len(shard) > 0; j++ {
			m := msgs[shard[(len(shard)*j+n-1)/n-1]]
			ent, _, ok := ingest.ParseTopic(m.Topic)
			if !ok {
				return nil, fmt.Errorf("checkpoint: topic %q", m.Topic)
			}
			dec, err := ingest.Decode(m.Payload, 0)
			if err != nil || len(dec.Readings) == 0 {
				return nil, fmt.Errorf("checkpoint: decode a message of %s: %v", m.Topic, err)
			}
			last := dec.Readings[len(dec.Readings)-1]
			cp := checkpoint{ent, last.Meter, last.Time}
			if len(out[k]) == 0 || out[k][len(out[k])-1] != cp {
				out[k] = append(out[k], cp)
			}
		}
	}
	return out, nil
}
