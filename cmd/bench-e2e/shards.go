package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/shard"
)

// measured is what measure reads of the serve it times: one process, or
// the replicas of a sharded fleet.
type measured interface {
	cpu() (time.Duration, error)
	pid() int
	exited() error
	meterSeen(ctx context.Context, enterprise, meter string, ts time.Time) (bool, error)
	peakRSS() (int64, error)
	metrics(ctx context.Context) (map[string]float64, int64, error)
	logTail() string
}

func (p *serveProcess) logTail() string { return testenv.LogTail(p.logPath) }

// replicas are the serve processes of shards 0 to len-1 of a fleet, timed
// as one: their CPU time and metrics add up, their peak RSS is the
// largest, and a meter is looked up at its enterprise's owner.
type replicas []*serveProcess

func (rs replicas) cpu() (time.Duration, error) {
	var sum time.Duration
	for _, p := range rs {
		c, err := p.cpu()
		if err != nil {
			return 0, err
		}
		sum += c
	}
	return sum, nil
}

func (rs replicas) pid() int { return rs[0].pid() }

func (rs replicas) exited() error {
	for _, p := range rs {
		if err := p.exited(); err != nil {
			return err
		}
	}
	return nil
}

func (rs replicas) meterSeen(ctx context.Context, enterprise, meter string, ts time.Time) (bool, error) {
	return rs[shard.Of(enterprise, len(rs))].meterSeen(ctx, enterprise, meter, ts)
}

func (rs replicas) peakRSS() (int64, error) {
	var peak int64
	for _, p := range rs {
		r, err := p.peakRSS()
		if err != nil {
			return 0, err
		}
		peak = max(peak, r)
	}
	return peak, nil
}

func (rs replicas) metrics(ctx context.Context) (map[string]float64, int64, error) {
	sum := map[string]float64{}
	var size int64
	for _, p := range rs {
		m, n, err := p.metrics(ctx)
		if err != nil {
			return nil, 0, err
		}
		for k, v := range m {
			sum[k] += v
		}
		size += n
	}
	return sum, size, nil
}

func (rs replicas) logTail() string {
	var s string
	for i, p := range rs {
		s += fmt.Sprintf("shard %d:\n%s\n", i, p.logTail())
	}
	return s
}

func (rs replicas) stop() error {
	var errs []error
	for _, p := range rs {
		errs = append(errs, p.stop())
	}
	return errors.Join(errs...)
}

// endToEndShards is the shards phase: phase 3's workload on the same
// mosquitto and InfluxDB, taken by -shards replicas of cleanprod serve
// (shard.count), each owning its part of the enterprises.
func (b *bench) endToEndShards(ctx context.Context) (*e2eResult, error) {
	n := b.cfg.shards
	const clientID = "cleanprod-shards"
	db, err := b.srv.influx.CreateDatabase("bench_shards")
	if err != nil {
		return nil, err
	}
	defer b.drop(db)
	rs := make(replicas, 0, n)
	stopAll := func() error { return rs.stop() }
	for i := range n {
		dir := filepath.Join(b.dir, "shards-"+strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, errors.Join(err, stopAll())
		}
		args := append(b.serveArgs(dir),
			"-mqtt.url", b.srv.broker.URL(), "-mqtt.client_id", clientID,
			"-influx.url", db.URL, "-influx.bucket", db.Bucket,
			"-shard.count", strconv.Itoa(n), "-shard.index", strconv.Itoa(i),
			// The benchmark asks each owner directly; no replica asks a peer.
			"-shard.peer_url", "http://127.0.0.1:9/{index}")
		srv, err := b.startServe(ctx, dir, args, []string{"CLEANPROD_INFLUX_TOKEN=" + db.Token, "CLEANPROD_SHARD_SECRET=bench-shard-secret-0123456789"}, false)
		if err != nil {
			return nil, errors.Join(err, stopAll())
		}
		rs = append(rs, srv)
	}
	defer func() {
		for i := range n {
			if err := clearSession(b.srv.broker.URL(), shardClientID(clientID, i, n)); err != nil {
				b.progress("warning: %v", err)
			}
		}
	}()
	r, err := b.measure(ctx, rs, b.srv.broker.URL(), "shards")
	if err != nil {
		return nil, errors.Join(err, stopAll())
	}
	b.progress("stopping the %d replicas", n)
	if err := stopAll(); err != nil {
		return nil, err
	}
	if r.Stored, err = countInflux(db); err != nil {
		return nil, err
	}
	r.StoredHow = `InfluxQL SELECT count("value") FROM "reading"`
	r.Lost = r.Readings - r.Stored
	r.Replicas = n
	return r, nil
}

// shardClientID is serve's MQTT client id of shard i of n.
func shardClientID(clientID string, i, n int) string {
	return clientID + "-" + strconv.Itoa(i) + "of" + strconv.Itoa(n)
}
