package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/shard"
	"github.com/cleanprod/cleanprod/sim"
)

// Three serve processes, shard 0, 1 and 2 of 3, on one InfluxDB and one
// mosquitto: every replica answers the fleet's routes and any
// enterprise's alike, an enterprise token sees only its own enterprise
// through any of them, and a replica killed leaves the documented
// partial answer.
func TestThreeShardsAnswerAlike(t *testing.T) {
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	dir := t.TempDir()
	tokensFile := filepath.Join(dir, "tokens.yaml")
	super := addSupervisorToken(t, tokensFile)
	const own, other = "cq-lj-yuntai-auto", "cq-lj-shanchuan-auto"
	var tokOut, errOut bytes.Buffer
	if err := run(t.Context(), []string{"tokens", "add", "-role", "enterprise", "-enterprise", own, "-http.tokens_file", tokensFile,
		"-gateway_config", "../../gateway-config"}, func(string) string { return "" }, &tokOut, &errOut); err != nil {
		t.Fatalf("tokens add: %v\n%s", err, errOut.String())
	}
	entToken := strings.TrimSpace(tokOut.String())

	// Replica i listens on 127.0.0.1i (10, 11, 12): all on loopback, with
	// the same free port, so that one peer_url template names them all.
	port := testenv.FreePort(t)
	peerURL := fmt.Sprintf("http://127.0.0.1{index}:%d", port)
	env := map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token, "CLEANPROD_SHARD_SECRET": "test-shard-secret-of-three"}
	var procs []*proc
	for i := range 3 {
		procs = append(procs, startProc(t, []string{"-http.listen", fmt.Sprintf("127.0.0.1%d:%d", i, port),
			"-mqtt.url", broker.URL(), "-influx.url", db.URL, "-influx.bucket", db.Bucket, "-mqtt.client_id", fmt.Sprintf("shard-%d", i),
			"-http.tokens_file", tokensFile, "-data_dir", filepath.Join(dir, fmt.Sprint("data", i)),
			"-shard.count", "3", "-shard.index", fmt.Sprint(i), "-shard.peer_url", peerURL, "-ingest.past_horizon", "800h"}, env))
	}

	// A month of the shipped fleet, enough to grade it, which every
	// replica receives.
	reg, err := registry.Load("../../gateway-config")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Hour)
	simu, err := sim.New(reg, sim.Config{Seed: 5, Start: now.Add(-31 * 24 * time.Hour), Duration: 31*24*time.Hour - time.Hour, Interval: time.Hour, DriftScale: -1})
	if err != nil {
		t.Fatal(err)
	}
	client, err := sim.Dial(t.Context(), broker.URL(), "shard-test-gateways")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(100)
	mqttPub := sim.NewMQTTPublisher(client, 30*time.Second)
	var sent atomic.Int64
	if err := simu.Run(t.Context(), sim.PublisherFunc(func(ctx context.Context, topic string, payload []byte) error {
		sent.Add(1)
		return mqttPub.Publish(ctx, topic, payload)
	})); err != nil {
		t.Fatal(err)
	}
	for i, p := range procs {
		waitFor(t, 120*time.Second, fmt.Sprintf("replica %d evaluating every enterprise", i), func() bool {
			var list struct {
				Enterprises []struct {
					EvaluatedAt *time.Time `json:"evaluated_at"`
				} `json:"enterprises"`
			}
			code, body := shardGet(p.http, "/api/v1/enterprises", super)
			if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list.Enterprises) != len(reg.Enterprises) {
				return false
			}
			for _, e := range list.Enterprises {
				if e.EvaluatedAt == nil {
					return false
				}
			}
			return true
		})
	}

	targets := []string{"/api/v1/rankings", "/api/v1/rankings/energy_per_vehicle", "/api/v1/enterprises",
		"/api/v1/enterprises/" + own, "/api/v1/enterprises/" + other, "/api/v1/enterprises/" + own + "/meters"}
	for _, target := range targets {
		// The replicas converge once the last readings are scored: poll.
		var last []string
		ok := false
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && !ok; time.Sleep(300 * time.Millisecond) {
			last = last[:0]
			ok = true
			var first any
			for i, p := range procs {
				code, body := shardGet(p.http, target, super)
				last = append(last, fmt.Sprintf("replica %d: %d %s", i, code, clipText(body, 600)))
				if code != 200 {
					ok = false
					continue
				}
				v := stripTimes(body)
				if i == 0 {
					first = v
				} else if !reflect.DeepEqual(v, first) {
					ok = false
				}
			}
		}
		if !ok {
			t.Errorf("GET %s differs between the replicas:\n%s", target, strings.Join(last, "\n"))
		}
	}
	var rk struct {
		Entries, Unranked []struct {
			Enterprise string `json:"enterprise"`
		}
	}
	if _, body := shardGet(procs[0].http, "/api/v1/rankings", super); json.Unmarshal([]byte(body), &rk) != nil || len(rk.Entries)+len(rk.Unranked) != len(reg.Enterprises) || len(rk.Entries) == 0 {
		t.Errorf("rankings: got %s, want every enterprise, some ranked", clipText(body, 600))
	} else {
		t.Logf("rankings from replica 0: %d ranked, %d unranked", len(rk.Entries), len(rk.Unranked))
	}
	// The overview and the enterprise page, through every replica, the
	// script nonce and the clock aside.
	for _, page := range []struct{ target, token string }{{"/", super}, {"/enterprises/" + own, entToken}} {
		var last []string
		ok := false
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !ok; time.Sleep(300 * time.Millisecond) {
			last, ok = last[:0], true
			for i, p := range procs {
				code, body := shardGet(p.http, page.target, page.token)
				last = append(last, pageWithoutClock(body))
				if code != 200 || !strings.Contains(body, "<html") {
					t.Fatalf("GET %s through replica %d: got %d %s", page.target, i, code, clipText(body, 300))
				}
				if i > 0 && last[i] != last[0] {
					ok = false
				}
			}
		}
		if !ok {
			for i := 1; i < len(last); i++ {
				if last[i] != last[0] {
					a, b := firstDifference(last[0], last[i])
					t.Errorf("GET %s: replica %d differs from replica 0:\n%s\n---\n%s", page.target, i, b, a)
				}
			}
		}
	}

	// An enterprise token through any replica: its own enterprise only.
	for i, p := range procs {
		if code, body := shardGet(p.http, "/api/v1/enterprises/"+own, entToken); code != 200 {
			t.Errorf("own enterprise through replica %d: got %d %s", i, code, clipText(body, 300))
		}
		if code, body := shardGet(p.http, "/api/v1/enterprises/"+other, entToken); code != 403 {
			t.Errorf("another enterprise through replica %d: got %d %s, want 403", i, code, clipText(body, 300))
		}
		var list struct {
			Enterprises []struct {
				ID string `json:"id"`
			} `json:"enterprises"`
		}
		_, body := shardGet(p.http, "/api/v1/enterprises", entToken)
		if err := json.Unmarshal([]byte(body), &list); err != nil || len(list.Enterprises) != 1 || list.Enterprises[0].ID != own {
			t.Errorf("enterprise list through replica %d: got %s", i, clipText(body, 300))
		}
		if code, _ := shardGet(p.http, "/internal/v1/shard/results", entToken); code != 401 {
			t.Errorf("internal results with an enterprise token on replica %d: got %d, want 401", i, code)
		}
	}

	// Kill the owner of own: its enterprise answers 502 naming the shard;
	// the fleet's routes answer with the others and say which is missing;
	// /readyz stays ready.
	down := shard.Of(own, 3)
	procs[down].kill()
	asker := procs[(down+1)%3]
	if code, body := shardGet(asker.http, "/api/v1/enterprises/"+own, super); code != 502 || !strings.Contains(body, "shard_unavailable") || !strings.Contains(body, fmt.Sprintf("shard %d of 3", down)) {
		t.Errorf("enterprise of the killed shard: got %d %s, want 502 naming shard %d", code, body, down)
	}
	waitFor(t, 30*time.Second, "rankings without the killed shard", func() bool {
		req, _ := http.NewRequest("GET", "http://"+asker.http+"/api/v1/rankings", nil)
		req.Header.Set("Authorization", "Bearer "+super)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var rk struct {
			Missing []int `json:"missing_shards"`
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && json.Unmarshal(b, &rk) == nil && slices.Equal(rk.Missing, []int{down}) &&
			resp.Header.Get("X-Cleanprod-Missing-Shards") == fmt.Sprint(down)
	})
	if code, body := shardGet(asker.http, "/readyz", ""); code != 200 {
		t.Errorf("readyz with a peer killed: got %d %s, want 200", code, body)
	}
}

func shardGet(addr, path, token string) (int, string) {
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		return 0, err.Error()
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// stripTimes decodes JSON without what differs between two moments of
// the same data: evaluation and request times, and the readings' age.
func stripTimes(body string) any {
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		return body
	}
	var strip func(any)
	strip = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k := range v {
				if k == "time" || k == "age_seconds" || k == "evaluated_at" || k == "last_seen" || k == "age" {
					delete(v, k)
				}
			}
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

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

var (
	pageNonce = regexp.MustCompile(`nonce="[^"]*"`)
	pageClock = regexp.MustCompile(`\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?`)
)

// pageWithoutClock is an HTML page without its script nonce and times.
func pageWithoutClock(body string) string {
	return pageClock.ReplaceAllString(pageNonce.ReplaceAllString(body, ""), "<time>")
}

// firstDifference returns the two texts around where they first differ.
func firstDifference(a, b string) (string, string) {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	from := max(0, i-200)
	return clipText(a[from:], 400), clipText(b[from:], 400)
}
