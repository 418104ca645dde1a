package web

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/shard"
)

const testShardSecret = "test-shard-secret"

// shardScorer is the engine as a replica of shard set sees it once
// scoring is sharded: only its own enterprises.
type shardScorer struct {
	Scorer
	set     shard.Set
	reloads *atomic.Int32 // ReloadDeclarations calls
}

func (s shardScorer) ReloadDeclarations() {
	s.reloads.Add(1)
	s.Scorer.ReloadDeclarations()
}

func (s shardScorer) Snapshot() *scoring.Snapshot { return s.Scorer.Snapshot().Only(s.set.Owns) }

// shardedFleet is n replicas over the fixture's engine, each with its
// shard's results only, served by httptest servers that the peers reach
// as http://shard-{index}.test.
type shardedFleet struct {
	f       *fixture
	reloads []*atomic.Int32 // by shard
	metrics []*prometheus.Registry
	events  []*Broadcaster // each replica's own live events
	srvs    []*httptest.Server
	peerURL string
	client  *http.Client
}

func newShardedFleet(t *testing.T, f *fixture, n int) *shardedFleet {
	t.Helper()
	sf := &shardedFleet{f: f, peerURL: "http://shard-{index}.test"}
	handlers := make([]http.Handler, n)
	var mu sync.Mutex
	for i := range n {
		sf.srvs = append(sf.srvs, httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			h := handlers[i]
			mu.Unlock()
			h.ServeHTTP(w, r)
		})))
		t.Cleanup(sf.srvs[i].Close)
	}
	// The peers' client dials shard-N.test at server N.
	sf.client = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, _ := strings.Cut(addr, ":")
		var i int
		if _, err := fmt.Sscanf(host, "shard-%d.test", &i); err != nil || i >= n {
			return nil, fmt.Errorf("no test shard at %s", addr)
		}
		return (&net.Dialer{}).DialContext(ctx, network, sf.srvs[i].Listener.Addr().String())
	}}}
	for i := range n {
		o := f.opts
		reg := prometheus.NewRegistry()
		sf.metrics = append(sf.metrics, reg)
		o.Registerer = reg
		o.Events = NewBroadcaster(prometheus.NewRegistry())
		sf.events = append(sf.events, o.Events)
		o.Shard = shard.Set{Index: i, Count: n}
		sf.reloads = append(sf.reloads, new(atomic.Int32))
		o.Scorer = shardScorer{Scorer: f.eng, set: o.Shard, reloads: sf.reloads[i]}
		o.PeerURL, o.ShardSecret, o.PeerClient = sf.peerURL, testShardSecret, sf.client
		mu.Lock()
		handlers[i] = NewHandler(o)
		mu.Unlock()
	}
	return sf
}

// do asks replica i with a bearer token and a JSON body.
func (sf *shardedFleet) do(t *testing.T, i int, method, target, token, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, sf.srvs[i].URL+target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// get asks replica i with a bearer token.
func (sf *shardedFleet) get(t *testing.T, i int, target, token string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", sf.srvs[i].URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for j := 0; j+1 < len(hdr); j += 2 {
		req.Header.Set(hdr[j], hdr[j+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withoutTimes decodes JSON and drops what differs between two moments
// of the same data: the evaluation's time and the readings' age.
func withoutTimes(t *testing.T, body string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, body)
	}
	var strip func(any)
	strip = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			delete(v, "time")
			delete(v, "age_seconds")
			for _, x := range v {
				strip(x)
			}
		case []any:
			for _, x := range v {
				strip(x)
			}
		}
	}
	strip(v)
	return v
}

// Every replica of three answers the fleet's routes as the one unsharded
// server does, and one enterprise's routes as its owner does.
func TestShardedReplicasAnswerAsOne(t *testing.T) {
	f := newFixture(t)
	sf := newShardedFleet(t, f, 3)
	for _, target := range []string{
		"/api/v1/rankings",
		"/api/v1/rankings/energy_per_vehicle",
		"/api/v1/enterprises",
		"/api/v1/enterprises/" + entA,
		"/api/v1/enterprises/" + entB,
		"/api/v1/enterprises/" + entB + "/meters",
		"/api/v1/enterprises/" + entA + "/declarations",
	} {
		want := f.do(t, "GET", target, supervisorToken, "")
		if want.Code != http.StatusOK {
			t.Fatalf("GET %s unsharded: %d %s", target, want.Code, want.Body)
		}
		for i := range sf.srvs {
			resp := sf.get(t, i, target, supervisorToken)
			body := readBody(t, resp)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s from replica %d: got %d %s, want 200", target, i, resp.StatusCode, body)
				continue
			}
			if m := resp.Header.Get(missingShardsHeader); m != "" {
				t.Errorf("GET %s from replica %d: shards %s missing", target, i, m)
			}
			if got, want := withoutTimes(t, body), withoutTimes(t, want.Body.String()); !reflect.DeepEqual(got, want) {
				t.Errorf("GET %s from replica %d:\n got %s\nwant %s", target, i, clip(body, 2000), clip(f.do(t, "GET", target, supervisorToken, "").Body.String(), 2000))
			}
		}
	}
	// An enterprise token's ranking (the others anonymised) too.
	want := f.do(t, "GET", "/api/v1/rankings", enterpriseToken, "").Body.String()
	for i := range sf.srvs {
		body := readBody(t, sf.get(t, i, "/api/v1/rankings", enterpriseToken))
		if got, want := withoutTimes(t, body), withoutTimes(t, want); !reflect.DeepEqual(got, want) {
			t.Errorf("enterprise token's rankings from replica %d:\n got %s\nwant %s", i, clip(body, 1000), clip(f.do(t, "GET", "/api/v1/rankings", enterpriseToken, "").Body.String(), 1000))
		}
	}
	// The pages, with the script nonce aside, are the unsharded server's.
	nonce := regexp.MustCompile(`nonce="[^"]*"`)
	for _, target := range []string{"/", "/enterprises/" + entA, "/api/v1/enterprises/" + entB + "/report"} {
		want := nonce.ReplaceAllString(f.do(t, "GET", target, supervisorToken, "").Body.String(), "")
		for i := range sf.srvs {
			resp := sf.get(t, i, target, supervisorToken)
			if got := nonce.ReplaceAllString(readBody(t, resp), ""); resp.StatusCode != http.StatusOK || got != want {
				t.Errorf("GET %s from replica %d: got %d, %d bytes, want the unsharded page (%d bytes)", target, i, resp.StatusCode, len(got), len(want))
			}
		}
	}
	// The enterprise page, from a replica that does not own it.
	owner := shard.Of(entA, 3)
	other := (owner + 1) % 3
	resp := sf.get(t, other, "/enterprises/"+entA, enterpriseToken)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "<html") || resp.Header.Get(shardHeader) != fmt.Sprint(owner) {
		t.Errorf("enterprise page through replica %d: got %d (answered by shard %q), want 200 from shard %d", other, resp.StatusCode, resp.Header.Get(shardHeader), owner)
	}
	// The overview page of the fleet lists every enterprise.
	resp = sf.get(t, other, "/", supervisorToken)
	body = readBody(t, resp)
	for _, ent := range f.reg.Enterprises {
		if !strings.Contains(body, ent.ID) {
			t.Errorf("overview from replica %d: %s missing", other, ent.ID)
		}
	}
}

// An enterprise's token sees its own enterprise through any replica and
// never another: the replica refuses it before forwarding, and the owner
// would too.
func TestShardedEnterpriseTokenStaysOwn(t *testing.T) {
	f := newFixture(t)
	sf := newShardedFleet(t, f, 3)
	for i := range sf.srvs {
		if resp := sf.get(t, i, "/api/v1/enterprises/"+entA, enterpriseToken); resp.StatusCode != http.StatusOK {
			t.Errorf("own enterprise through replica %d: got %d %s", i, resp.StatusCode, readBody(t, resp))
		}
		resp := sf.get(t, i, "/api/v1/enterprises/"+entB, enterpriseToken)
		if body := readBody(t, resp); resp.StatusCode != http.StatusForbidden || strings.Contains(body, "indicators") {
			t.Errorf("other enterprise through replica %d: got %d %s, want 403", i, resp.StatusCode, body)
		}
		resp = sf.get(t, i, "/api/v1/enterprises", enterpriseToken)
		var list EnterpriseList
		if err := json.Unmarshal([]byte(readBody(t, resp)), &list); err != nil || len(list.Enterprises) != 1 || list.Enterprises[0].ID != entA {
			t.Errorf("enterprise list through replica %d: got %+v (%v), want only %s", i, list.Enterprises, err, entA)
		}
		// The loop guard does not let a forged header skip the token.
		resp = sf.get(t, shard.Of(entB, 3), "/api/v1/enterprises/"+entB, enterpriseToken, forwardedHeader, "0")
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("forged forward to the owner: got %d, want 403", resp.StatusCode)
		}
		readBody(t, resp)
	}
	// The internal endpoint takes the shard secret, never a token.
	for _, c := range []struct {
		name string
		hdr  []string
		want int
	}{
		{"supervisor token", []string{"Authorization", "Bearer " + supervisorToken}, http.StatusUnauthorized},
		{"enterprise token", []string{"Authorization", "Bearer " + enterpriseToken}, http.StatusUnauthorized},
		{"wrong secret", []string{secretHeader, "nope"}, http.StatusUnauthorized},
		{"secret", []string{secretHeader, testShardSecret}, http.StatusOK},
	} {
		resp := sf.get(t, 1, resultsPath, "", c.hdr...)
		if body := readBody(t, resp); resp.StatusCode != c.want {
			t.Errorf("%s on %s: got %d %s, want %d", c.name, resultsPath, resp.StatusCode, clip(body, 200), c.want)
		}
	}
}

// A request already forwarded once is never forwarded again: replicas
// that disagree on the shard count get an error, not a loop.
func TestShardedForwardsOnce(t *testing.T) {
	f := newFixture(t)
	sf := newShardedFleet(t, f, 3)
	other := (shard.Of(entA, 3) + 1) % 3
	resp := sf.get(t, other, "/api/v1/enterprises/"+entA, supervisorToken, forwardedHeader, "1")
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, codeShardMismatch) {
		t.Errorf("got %d %s, want 502 %s", resp.StatusCode, body, codeShardMismatch)
	}
}

// A replica down: its enterprises' routes answer 502 naming the shard,
// the fleet's routes answer with the other shards and say which is
// missing, and /readyz stays ready.
func TestShardedPeerDown(t *testing.T) {
	f := newFixture(t)
	sf := newShardedFleet(t, f, 3)
	down := shard.Of(entA, 3)
	other := (down + 1) % 3
	sf.srvs[down].Close()
	resp := sf.get(t, other, "/api/v1/enterprises/"+entA, supervisorToken)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, codeShardUnavailable) || !strings.Contains(body, fmt.Sprintf("shard %d of 3", down)) {
		t.Errorf("enterprise of the shard down: got %d %s, want 502 naming shard %d", resp.StatusCode, body, down)
	}
	resp = sf.get(t, other, "/api/v1/rankings", supervisorToken)
	body = readBody(t, resp)
	var rk RankingDTO
	if err := json.Unmarshal([]byte(body), &rk); err != nil {
		t.Fatalf("rankings: %v: %s", err, body)
	}
	if resp.StatusCode != http.StatusOK || !slices.Equal(rk.MissingShards, []int{down}) || resp.Header.Get(missingShardsHeader) != fmt.Sprint(down) {
		t.Errorf("rankings: got %d, missing %v (header %q), want 200 missing [%d]", resp.StatusCode, rk.MissingShards, resp.Header.Get(missingShardsHeader), down)
	}
	for _, e := range append(rk.Entries, rk.Unranked...) {
		if e.Enterprise != nil && shard.Of(*e.Enterprise, 3) == down {
			t.Errorf("rankings list %s of the shard down", *e.Enterprise)
		}
	}
	if n := len(rk.Entries) + len(rk.Unranked); n == 0 {
		t.Errorf("rankings: no entries of the shards up")
	}
	resp = sf.get(t, other, "/", supervisorToken)
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="missing-shards"`) {
		t.Errorf("overview: got %d, want 200 saying shard %d is missing", resp.StatusCode, down)
	}
	if resp := sf.get(t, other, "/readyz", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("readyz with a peer down: got %d, want 200", resp.StatusCode)
	}
	if err := testutil.GatherAndCompare(sf.metrics[other], strings.NewReader(`
# HELP cleanprod_shard_missing Shards whose results the latest merged fleet snapshot lacks (their replica did not answer).
# TYPE cleanprod_shard_missing gauge
cleanprod_shard_missing 1
`), "cleanprod_shard_missing"); err != nil {
		t.Error(err)
	}
	if err := testutil.GatherAndCompare(sf.metrics[other], strings.NewReader(fmt.Sprintf(`
# HELP cleanprod_shard_forwarded_requests_total Requests for another shard's enterprise passed to its owner, by shard and result (ok: it answered, error: it did not).
# TYPE cleanprod_shard_forwarded_requests_total counter
cleanprod_shard_forwarded_requests_total{result="error",shard="%d"} 1
`, down)), "cleanprod_shard_forwarded_requests_total"); err != nil {
		t.Error(err)
	}
}

// A cursor from one replica continues the list on another sharing the
// secret; one keyed at random (no secret) is refused elsewhere.
func TestCursorAcrossReplicas(t *testing.T) {
	f := newFixture(t)
	mk := func(secret string) http.Handler {
		o := f.opts
		o.Registerer = prometheus.NewRegistry()
		o.ShardSecret = secret
		return NewHandler(o)
	}
	get := func(h http.Handler, target string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", target, nil)
		req.Header.Set("Authorization", "Bearer "+supervisorToken)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	a, b, c := mk(testShardSecret), mk(testShardSecret), mk("")
	w := get(a, "/api/v1/enterprises?limit=1")
	var first EnterpriseList
	if err := json.Unmarshal(w.Body.Bytes(), &first); err != nil || first.NextCursor == "" {
		t.Fatalf("first page: %v %s", err, w.Body)
	}
	next := "/api/v1/enterprises?limit=1&cursor=" + url.QueryEscape(first.NextCursor)
	if w := get(b, next); w.Code != http.StatusOK {
		t.Errorf("cursor on a replica with the same secret: got %d %s, want 200", w.Code, w.Body)
	}
	if w := get(c, next); w.Code != http.StatusBadRequest {
		t.Errorf("cursor on a server without the secret: got %d, want 400", w.Code)
	}
}

// A declaration made and reviewed through replicas that do not own its
// enterprise lands at the owner, whose scorer reloads at once.
func TestShardedDeclarationReachesOwner(t *testing.T) {
	f := newFixture(t)
	sf := newShardedFleet(t, f, 3)
	owner := shard.Of(entA, 3)
	a, b := (owner+1)%3, (owner+2)%3
	resp := sf.do(t, a, "POST", "/api/v1/enterprises/"+entA+"/declarations", enterpriseToken,
		`{"indicator": "voc_per_m2", "not_applicable": true, "evidence": "we say so", "valid_from": "2026-05-01"}`)
	body := readBody(t, resp)
	var created DeclarationCreated
	if resp.StatusCode != http.StatusCreated || json.Unmarshal([]byte(body), &created) != nil {
		t.Fatalf("declare through replica %d: got %d %s", a, resp.StatusCode, body)
	}
	if resp.Header.Get(shardHeader) != fmt.Sprint(owner) {
		t.Errorf("declare: answered by shard %q, want the owner %d", resp.Header.Get(shardHeader), owner)
	}
	resp = sf.do(t, b, "POST", "/api/v1/declarations/"+created.Declaration.ID+"/accept", supervisorToken, `{"note": "checked"}`)
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK || resp.Header.Get(shardHeader) != fmt.Sprint(owner) {
		t.Errorf("accept through replica %d: got %d from shard %q: %s, want 200 from the owner %d", b, resp.StatusCode, resp.Header.Get(shardHeader), body, owner)
	}
	if got := sf.reloads[owner].Load(); got != 1 {
		t.Errorf("the owner's scorer reloaded %d times, want 1 (the review)", got)
	}
	if got := sf.reloads[a].Load() + sf.reloads[b].Load(); got != 0 {
		t.Errorf("the other replicas' scorers reloaded %d times, want 0", got)
	}
}

// Concurrent fleet requests share one fetch from each peer, and the
// merge is reused while it is fresh.
func TestShardedFleetFetchedOnce(t *testing.T) {
	f := newFixture(t)
	sf := newShardedFleet(t, f, 3)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			resp := sf.get(t, 0, "/api/v1/rankings", supervisorToken)
			if body := readBody(t, resp); resp.StatusCode != http.StatusOK {
				t.Errorf("rankings: got %d %s", resp.StatusCode, body)
			}
		})
	}
	wg.Wait()
	readBody(t, sf.get(t, 0, "/api/v1/enterprises", supervisorToken))
	if err := testutil.GatherAndCompare(sf.metrics[0], strings.NewReader(`
# HELP cleanprod_shard_peer_fetches_total Asks for a peer shard's results, for the fleet's answers, by shard and result (ok, error).
# TYPE cleanprod_shard_peer_fetches_total counter
cleanprod_shard_peer_fetches_total{result="ok",shard="1"} 1
cleanprod_shard_peer_fetches_total{result="ok",shard="2"} 1
`), "cleanprod_shard_peer_fetches_total"); err != nil {
		t.Error(err)
	}
}

// An enterprise's live event stream through a replica that does not own
// it is its owner's, streamed as it comes.
func TestShardedEventStreamForwarded(t *testing.T) {
	f := newFixture(t)
	sf := newShardedFleet(t, f, 3)
	owner := shard.Of(entA, 3)
	other := (owner + 1) % 3
	resp := sf.get(t, other, "/api/v1/events/stream", enterpriseToken)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get(shardHeader) != fmt.Sprint(owner) {
		t.Fatalf("stream through replica %d: got %d %s from shard %q, want a stream from shard %d", other, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get(shardHeader), owner)
	}
	ev := scoring.Event{Time: fixtureNow, Enterprise: entA, Kind: scoring.EventStale, Meter: "E-PAINT-01"}
	done := make(chan string, 1)
	go func() {
		r := bufio.NewReader(resp.Body)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				done <- "stream ended: " + err.Error()
				return
			}
			if strings.HasPrefix(line, "data: ") && strings.Contains(line, "E-PAINT-01") {
				done <- ""
				return
			}
		}
	}()
	// The subscription is made when the stream starts; publish until the
	// event comes through.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case msg := <-done:
			if msg != "" {
				t.Fatal(msg)
			}
			return
		case <-tick.C:
			sf.events[owner].Publish(ev)
		case <-deadline:
			t.Fatal("no event through the forwarded stream within 10s")
		}
	}
}

// A supervisor's fleet-wide stream on one replica carries the events
// every replica announces, each once.
func TestShardedFleetStream(t *testing.T) {
	f := newFixture(t)
	sf := newShardedFleet(t, f, 3)
	resp := sf.get(t, 0, "/api/v1/events/stream", supervisorToken)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("fleet stream: got %d", resp.StatusCode)
	}
	lines := make(chan string, 64)
	go func() {
		r := bufio.NewReader(resp.Body)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			if strings.HasPrefix(line, "data: ") {
				lines <- line
			}
		}
	}()
	stale := func(meter string) scoring.Event {
		return scoring.Event{Time: fixtureNow, Enterprise: entA, Kind: scoring.EventStale, Meter: meter}
	}
	// The peers subscribe when replica 0 starts following them: announce
	// until the first event comes through.
	got := map[string]int{}
	wait := func(meter string, publish func()) {
		t.Helper()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		deadline := time.After(10 * time.Second)
		for got[meter] == 0 {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatal("the stream ended")
				}
				for _, m := range []string{"M-FROM-1", "M-FROM-2", "M-TWICE", "M-LAST"} {
					if strings.Contains(line, m) {
						got[m]++
					}
				}
			case <-tick.C:
				if publish != nil {
					publish()
				}
			case <-deadline:
				t.Fatalf("no %s through replica 0's fleet stream within 10s (got %v)", meter, got)
			}
		}
	}
	wait("M-FROM-1", func() { sf.events[1].Publish(stale("M-FROM-1")) })
	wait("M-FROM-2", func() { sf.events[2].Publish(stale("M-FROM-2")) })
	sf.events[1].Publish(stale("M-TWICE"))
	sf.events[2].Publish(stale("M-TWICE"))
	sf.events[0].Publish(stale("M-TWICE"))
	time.Sleep(300 * time.Millisecond)
	sf.events[0].Publish(stale("M-LAST"))
	wait("M-LAST", nil)
	if got["M-TWICE"] != 1 {
		t.Errorf("an event three replicas announced came %d times, want once", got["M-TWICE"])
	}
}
