package web

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/shard"
)

// Any replica answers for the whole fleet. With shard.count above 1 each
// replica scores its own shard of the enterprises (package shard), and:
//
//   - a route of one enterprise (a path with :id, and the event stream of
//     one enterprise) that another shard owns is authenticated here, then
//     passed to the owner (forward) with the caller's own Authorization
//     header or cookie: the owner authenticates it again, exactly as if
//     asked directly. A forwarded request carries forwardedHeader and is
//     never forwarded again. A peer that does not answer gives 502 with
//     the code shard_unavailable, naming the shard.
//   - every other route reads a fleet snapshot: this replica's results
//     merged with those each peer serves on resultsPath (authenticated by
//     the shared shard secret, never by a token), reused for FleetMaxAge
//     and fetched once however many requests wait for it (singleflight).
//     A peer down leaves its shard out: the answer says which shards are
//     missing (missingShardsHeader, and missing_shards in the JSON of the
//     lists and rankings), and /readyz stays ready, since this replica can
//     still serve its own enterprises and the rest of the fleet.

const (
	// forwardedHeader marks a request a replica passed on to the owner
	// (its value: the sender's shard index).
	forwardedHeader = "X-Cleanprod-Forwarded-By"
	// shardHeader names the shard that answered a forwarded request, or
	// the one that did not.
	shardHeader = "X-Cleanprod-Shard"
	// missingShardsHeader lists the shards a fleet answer lacks
	// ("1,2"); absent when it is complete.
	missingShardsHeader = "X-Cleanprod-Missing-Shards"
	// secretHeader carries the shard secret between replicas.
	secretHeader = "X-Cleanprod-Shard-Secret"
	// resultsPath is where a replica serves its shard's results.
	resultsPath = "/internal/v1/shard/results"

	codeShardUnavailable = "shard_unavailable"
	codeShardMismatch    = "shard_mismatch"

	fleetKey = "cleanprod.fleet"
)

// shardResults is the answer of resultsPath.
type shardResults struct {
	Shard   int               `json:"shard"`
	Count   int               `json:"count"`
	Time    time.Time         `json:"time"`
	Results []*scoring.Result `json:"results"`
	// LastReading is each enterprise's newest meter reading (only the
	// owner's ingest sees its meters).
	LastReading map[string]time.Time `json:"last_reading,omitempty"`
}

// fleetView is a fleet snapshot and what it lacks.
type fleetView struct {
	snap        *scoring.Snapshot
	missing     []int // shards that did not answer, ascending
	lastReading map[string]time.Time
	at          time.Time // when it was assembled
}

// peering holds the peers and the cached fleet snapshot of a sharded
// server. mu guards view; group makes concurrent requests share a fetch.
type peering struct {
	proxies []*httputil.ReverseProxy // by shard index; nil at this replica's own
	peers   []*url.URL
	client  *http.Client
	group   singleflight.Group

	mu   sync.Mutex
	view *fleetView

	// fetches counts the asks for a peer's results by shard and result
	// (ok, error); missing is the number of shards the latest merge
	// lacks; forwarded counts the requests passed to an owner by shard
	// and result (ok: it answered, error: it did not).
	fetches, forwarded *prometheus.CounterVec
	missing            prometheus.Gauge
}

func newPeeringMetrics(reg prometheus.Registerer) (fetches, forwarded *prometheus.CounterVec, missing prometheus.Gauge) {
	fetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cleanprod_shard_peer_fetches_total", Help: "Asks for a peer shard's results, for the fleet's answers, by shard and result (ok, error).",
	}, []string{"shard", "result"})
	forwarded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cleanprod_shard_forwarded_requests_total", Help: "Requests for another shard's enterprise passed to its owner, by shard and result (ok: it answered, error: it did not).",
	}, []string{"shard", "result"})
	missing = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "cleanprod_shard_missing", Help: "Shards whose results the latest merged fleet snapshot lacks (their replica did not answer).",
	})
	if reg != nil {
		reg.MustRegister(fetches, forwarded, missing)
	}
	return fetches, forwarded, missing
}

// sharded reports whether the fleet is split between replicas.
func (s *server) sharded() bool { return s.Shard.Count > 1 }

// newFleet checks the peer URLs and builds the proxies. An error leaves
// the fleet nil: every cross-shard request then fails with a clear 503.
func (s *server) newFleet() (*peering, error) {
	f := &peering{client: s.PeerClient}
	f.fetches, f.forwarded, f.missing = newPeeringMetrics(s.Registerer)
	if f.client == nil {
		// A peer that is gone fails fast (dial); one that hangs fails the
		// forwarded request after a minute (a report's PDF takes seconds)
		// and the results' fetch after 5 s. Event streams have no limit.
		f.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: time.Minute,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
		}}
	}
	if !strings.Contains(s.PeerURL, "{index}") {
		return nil, fmt.Errorf("web: shard.peer_url %q has no {index}", s.PeerURL)
	}
	for i := range s.Shard.Count {
		u, err := url.Parse(strings.ReplaceAll(s.PeerURL, "{index}", strconv.Itoa(i)))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("web: shard.peer_url for shard %d: %q is not an http(s) URL", i, u)
		}
		f.peers = append(f.peers, u)
		if i == s.Shard.Index {
			f.proxies = append(f.proxies, nil)
			continue
		}
		f.proxies = append(f.proxies, s.proxy(f, i, u))
	}
	return f, nil
}

// proxy passes requests to shard i at u.
func (s *server) proxy(f *peering, i int, u *url.URL) *httputil.ReverseProxy {
	shardLabel := strconv.Itoa(i)
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			// The owner sees the caller's Host, so that its checks of a
			// form's Origin and the links it writes are those of the
			// address the caller used.
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			pr.Out.Header.Set(forwardedHeader, strconv.Itoa(s.Shard.Index))
		},
		Transport:     f.client.Transport,
		FlushInterval: -1, // event streams
		ModifyResponse: func(r *http.Response) error {
			f.forwarded.WithLabelValues(shardLabel, "ok").Inc()
			r.Header.Set(shardHeader, shardLabel)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the caller left; the owner is not to blame
			}
			f.forwarded.WithLabelValues(shardLabel, "error").Inc()
			s.log.Warn("web: shard did not answer a forwarded request", "shard", i, "peer", u.String(), "path", r.URL.Path, "err", err)
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Header().Set(shardHeader, shardLabel)
			w.WriteHeader(http.StatusBadGateway)
			json.NewEncoder(w).Encode(errorBody{errorDetail{Code: codeShardUnavailable,
				Message: fmt.Sprintf("shard %d of %d, which owns this enterprise, did not answer; try again shortly", i, s.Shard.Count)}})
		},
	}
}

// forward passes the request to the owner of enterprise and stops the
// chain; it reports false (and does nothing) when this replica owns it.
func (s *server) forward(c *gin.Context, enterprise string) bool {
	if !s.sharded() || s.Shard.Owns(enterprise) {
		return false
	}
	owner := shard.Of(enterprise, s.Shard.Count)
	if by := c.GetHeader(forwardedHeader); by != "" {
		s.fail(c, errorf(http.StatusBadGateway, codeShardMismatch,
			"shard %s sent enterprise %s here, to shard %s, but shard %d owns it: do the replicas agree on shard.count?", clip(by, 8), enterprise, s.Shard, owner))
		return true
	}
	if s.fleet == nil {
		s.fail(c, errorf(http.StatusServiceUnavailable, codeShardUnavailable, "shard %d owns enterprise %s, and this replica has no valid shard.peer_url to ask it", owner, enterprise))
		return true
	}
	c.Abort()
	// A client gone mid-answer makes the proxy panic with
	// http.ErrAbortHandler, which the recovery passes on to net/http to
	// end the connection quietly.
	s.fleet.proxies[owner].ServeHTTP(c.Writer, c.Request)
	return true
}

// shardResults serves this shard's results to its peers.
func (s *server) shardResults(c *gin.Context) {
	got, want := sha256.Sum256([]byte(c.GetHeader(secretHeader))), sha256.Sum256([]byte(s.ShardSecret))
	if s.ShardSecret == "" || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		s.fail(c, errorf(http.StatusUnauthorized, codeUnauthorized, "this route is for the other replicas: it needs the shard secret"))
		return
	}
	snap := s.Scorer.Snapshot().Only(s.Shard.Owns)
	out := shardResults{Shard: s.Shard.Index, Count: s.Shard.Count, Time: snap.Time, Results: snap.Results(), LastReading: map[string]time.Time{}}
	for _, ent := range s.fleetRegistry().Enterprises {
		if !s.Shard.Owns(ent.ID) {
			continue
		}
		if f := s.localFreshness(ent); f.LastReading != nil {
			out.LastReading[ent.ID] = *f.LastReading
		}
	}
	c.JSON(http.StatusOK, out)
}

// fleetRegistry is the registry of every enterprise of the fleet.
func (s *server) fleetRegistry() *registry.Registry {
	if s.FleetRegistry != nil {
		if r := s.FleetRegistry(); r != nil {
			return r
		}
	}
	return s.Registry
}

// fleetView returns the fleet snapshot for the request c, taken once per
// request.
func (s *server) fleetView(c *gin.Context) *fleetView {
	if v, ok := c.Get(fleetKey); ok {
		return v.(*fleetView)
	}
	v := s.fleetNow(c.Request.Context())
	c.Set(fleetKey, v)
	if len(v.missing) > 0 {
		c.Header(missingShardsHeader, joinInts(v.missing))
	}
	return v
}

// fleetNow returns the cached fleet snapshot while it is younger than
// FleetMaxAge, else assembles a new one (one fetch for every request
// waiting); a cache less than three times FleetMaxAge old answers while
// the new one is fetched.
func (s *server) fleetNow(ctx context.Context) *fleetView {
	maxAge := s.FleetMaxAge
	if maxAge <= 0 {
		maxAge = 10 * time.Second
	}
	f := s.fleet
	if f == nil {
		local := s.Scorer.Snapshot()
		return &fleetView{snap: s.withFleetRegistry(local.Only(s.Shard.Owns)), missing: s.otherShards(), at: time.Now()}
	}
	f.mu.Lock()
	v := f.view
	f.mu.Unlock()
	if v != nil && time.Since(v.at) < maxAge {
		return v
	}
	ch := f.group.DoChan("fleet", func() (any, error) {
		// Not the request's context: a caller giving up must not fail
		// the others waiting for the same fetch.
		v := s.assemble(context.WithoutCancel(ctx))
		f.mu.Lock()
		f.view = v
		f.mu.Unlock()
		return v, nil
	})
	if v != nil && time.Since(v.at) < 3*maxAge {
		// Stale, but not by much: answer with it while the fetch runs,
		// so that a slow peer slows no request once the cache is warm.
		return v
	}
	select {
	case r := <-ch:
		return r.Val.(*fleetView)
	case <-ctx.Done():
		local := s.Scorer.Snapshot()
		return &fleetView{snap: s.withFleetRegistry(local.Only(s.Shard.Owns)), missing: s.otherShards(), at: time.Now()}
	}
}

func (s *server) otherShards() []int {
	var out []int
	for i := range s.Shard.Count {
		if i != s.Shard.Index {
			out = append(out, i)
		}
	}
	return out
}

func (s *server) withFleetRegistry(snap *scoring.Snapshot) *scoring.Snapshot {
	snap.Registry = s.fleetRegistry()
	return snap
}

// assemble asks every peer for its shard's results at once and merges
// them with this replica's.
func (s *server) assemble(ctx context.Context) *fleetView {
	local := s.Scorer.Snapshot()
	type answer struct {
		i   int
		res *shardResults
		err error
	}
	answers := make(chan answer, s.Shard.Count)
	for i := range s.Shard.Count {
		if i == s.Shard.Index {
			continue
		}
		go func() {
			r, err := s.askPeer(ctx, i)
			answers <- answer{i, r, err}
		}()
	}
	v := &fleetView{lastReading: map[string]time.Time{}, at: time.Now()}
	var parts [][]*scoring.Result
	var latest time.Time // the latest evaluation of any shard
	for range s.Shard.Count - 1 {
		a := <-answers
		result := "ok"
		if a.err != nil {
			result = "error"
		}
		s.fleet.fetches.WithLabelValues(strconv.Itoa(a.i), result).Inc()
		if a.err != nil {
			s.log.Warn("web: shard left out of the fleet's answers", "shard", a.i, "peer", s.fleet.peers[a.i].Host, "err", a.err)
			v.missing = append(v.missing, a.i)
			continue
		}
		parts = append(parts, a.res.Results)
		if a.res.Time.After(latest) {
			latest = a.res.Time
		}
		for id, t := range a.res.LastReading {
			v.lastReading[id] = t
		}
	}
	slices.Sort(v.missing)
	s.fleet.missing.Set(float64(len(v.missing)))
	merged := local.Only(s.Shard.Owns).Merge(parts...)
	// The fleet was last evaluated when its latest shard was: a replica
	// whose own shard is empty or not yet graded still shows the fleet's.
	if latest.After(merged.Time) {
		merged.Time = latest
	}
	v.snap = s.withFleetRegistry(merged)
	return v
}

// askPeer fetches shard i's results and checks they are its own.
func (s *server) askPeer(ctx context.Context, i int) (*shardResults, error) {
	u := *s.fleet.peers[i]
	u.Path = strings.TrimSuffix(u.Path, "/") + resultsPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(secretHeader, s.ShardSecret)
	resp, err := s.fleet.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("shard %d answered %s: %s", i, resp.Status, b)
	}
	var out shardResults
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("shard %d: decode its results: %w", i, err)
	}
	if out.Shard != i || out.Count != s.Shard.Count {
		return nil, fmt.Errorf("the replica at shard %d's address says it is shard %d of %d, not %d of %d", i, out.Shard, out.Count, i, s.Shard.Count)
	}
	kept := out.Results[:0]
	for _, r := range out.Results {
		if r != nil && shard.Of(r.Enterprise, s.Shard.Count) == i {
			kept = append(kept, r)
		}
	}
	out.Results = kept
	return &out, nil
}

// missingShards returns the shards the request's fleet answer lacks.
func (s *server) missingShards(c *gin.Context) []int {
	if v, ok := c.Get(fleetKey); ok {
		return v.(*fleetView).missing
	}
	return nil
}

func joinInts(is []int) string {
	parts := make([]string, len(is))
	for i, n := range is {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

// peerEvents follows the live event streams of every peer shard until
// ctx ends, so that a fleet-wide stream on one replica carries the events
// every replica announces. The caller's credentials go along, so each
// peer checks them itself, and the requests are marked forwarded, so each
// peer sends its own events only. A peer that does not answer is asked
// again, waiting from 1 s up to 30 s.
func (s *server) peerEvents(ctx context.Context, in *http.Request, kind string) <-chan scoring.Event {
	out := make(chan scoring.Event, 256)
	if s.fleet == nil {
		return out
	}
	client := &http.Client{Transport: s.fleet.client.Transport} // no timeout: a stream lasts
	for i, u := range s.fleet.peers {
		if i == s.Shard.Index {
			continue
		}
		go func() {
			wait := time.Second
			for {
				connected, err := s.followPeer(ctx, client, u, in.Header, kind, out)
				if ctx.Err() != nil {
					return
				}
				if connected {
					wait = time.Second
				}
				s.log.Debug("web: a peer's event stream ended", "shard", i, "err", err, "again in", wait)
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
				wait = min(2*wait, 30*time.Second)
			}
		}()
	}
	return out
}

// followPeer reads one peer's event stream into out until it ends; it
// reports whether the peer answered with a stream.
func (s *server) followPeer(ctx context.Context, client *http.Client, peer *url.URL, hdr http.Header, kind string, out chan<- scoring.Event) (bool, error) {
	u := *peer
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/v1/events/stream"
	if kind != "" {
		u.RawQuery = url.Values{"kind": {kind}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err
	}
	for _, h := range []string{"Authorization", "Cookie"} {
		if v := hdr.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(forwardedHeader, strconv.Itoa(s.Shard.Index))
	resp, err := client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("answered %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev scoring.Event
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			continue
		}
		select {
		case out <- ev:
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	return true, io.EOF
}

// idRing remembers the last ids it was given, to send an event announced
// by two replicas once.
type idRing struct {
	ids  []string
	next int
	set  map[string]bool
}

func newIDRing(n int) *idRing { return &idRing{ids: make([]string, n), set: make(map[string]bool, n)} }

// seen reports whether id is among the remembered ones, and remembers it.
func (r *idRing) seen(id string) bool {
	if r.set[id] {
		return true
	}
	delete(r.set, r.ids[r.next])
	r.ids[r.next] = id
	r.set[id] = true
	r.next = (r.next + 1) % len(r.ids)
	return false
}
