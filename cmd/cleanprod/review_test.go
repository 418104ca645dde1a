package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/outbox"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/web"
)

// TestDeclarationReviewAcrossReplicas runs two serve processes on one real
// InfluxDB and mosquitto, with the declarations folder read-only as it is
// mounted in the shipped stacks: an enterprise's declaration submitted to
// one is reviewed on the other, scored by both, and still there after a
// restart.
func TestDeclarationReviewAcrossReplicas(t *testing.T) {
	testenv.NeedServers(t)
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	dir := t.TempDir()

	// A read-only copy of the shipped folder.
	decl := filepath.Join(dir, "declarations")
	if err := os.CopyFS(decl, os.DirFS("../../scoring/declarations")); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(decl)
	for _, e := range entries {
		os.Chmod(filepath.Join(decl, e.Name()), 0o444)
	}
	os.Chmod(decl, 0o555)
	t.Cleanup(func() { os.Chmod(decl, 0o755) })
	// Modes do not stop root: compare the folder's files at the end too.
	before := testenv.FolderState(t, decl)

	tokensFile := filepath.Join(dir, "tokens.yaml")
	token := func(args ...string) string {
		var out, errOut bytes.Buffer
		args = append([]string{"tokens", "add", "-http.tokens_file", tokensFile, "-gateway_config", "../../gateway-config"}, args...)
		if err := run(t.Context(), args, func(string) string { return "" }, &out, &errOut); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut.String())
		}
		return strings.TrimSpace(out.String())
	}
	supervisor := token("-role", "supervisor")
	officer := token("-role", "enterprise", "-enterprise", "cq-lj-yuntai-auto")

	env := map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token}
	replica := func(name string) *service {
		return startServe(t, env, "-mqtt.url", broker.URL(), "-mqtt.client_id", "cleanprod-"+name,
			"-influx.url", db.URL, "-influx.bucket", db.Bucket, "-gateway_config", "../../gateway-config",
			"-data_dir", filepath.Join(dir, name), "-http.tokens_file", tokensFile,
			"-scoring.declarations", decl, "-scoring.interval", "200ms", "-scoring.declarations_every", "300ms")
	}
	a, b := replica("a"), replica("b")

	// Each review step is published on the enterprise's events topic,
	// through the replica's event outbox.
	var mu sync.Mutex
	published := map[scoring.EventKind]int{}
	watcher := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("events-watcher"))
	if tok := watcher.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect the events watcher: %v", tok.Error())
	}
	defer watcher.Disconnect(100)
	tok := watcher.Subscribe("cp/v1/cq-lj-yuntai-auto/events", 1, func(_ mqtt.Client, m mqtt.Message) {
		var ev scoring.Event
		if json.Unmarshal(m.Payload(), &ev) == nil {
			mu.Lock()
			published[ev.Kind]++
			mu.Unlock()
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe the events watcher: %v", tok.Error())
	}

	post := func(s *service, path, tok, body string) (int, []byte) {
		req, _ := http.NewRequest("POST", "http://"+s.http+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, data
	}

	// Submitted on A (its folder is read-only: nothing is written there).
	code, body := post(a, "/api/v1/enterprises/cq-lj-yuntai-auto/declarations", officer,
		`{"indicator": "management_systems", "level": "III", "evidence": "ISO 50001 certificate withdrawn", "valid_from": "2026-01-01"}`)
	var created web.DeclarationCreated
	if code != http.StatusCreated || json.Unmarshal(body, &created) != nil || created.Declaration.State != "submitted" {
		t.Fatalf("submit on A: %d %s", code, body)
	}
	code, body = post(a, "/api/v1/enterprises/cq-lj-yuntai-auto/declarations", officer,
		`{"indicator": "low_voc_coating_share", "not_applicable": true, "evidence": "x", "valid_from": "2026-01-01"}`)
	if code != http.StatusCreated {
		t.Fatalf("submit not applicable on A: %d %s", code, body)
	}
	code, body = post(a, "/api/v1/enterprises/cq-lj-yuntai-auto/declarations", officer,
		`{"indicator": "paint_transfer_efficiency", "value": 150, "evidence": "x", "valid_from": "2026-01-01"}`)
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(body), "0 to 100 %") {
		t.Errorf("150 %% on A: %d %s, want 422 naming the range", code, body)
	}

	// B lists it as waiting and accepts it.
	var pending web.DeclarationList
	if err := getJSON("http://"+b.http+"/api/v1/declarations", supervisor, &pending); err != nil || len(pending.Declarations) != 2 {
		t.Fatalf("pending on B: %+v, %v; want the two submitted on A", pending, err)
	}
	code, body = post(b, "/api/v1/declarations/"+created.Declaration.ID+"/accept", supervisor, `{"note": "certificate register checked"}`)
	if code != http.StatusOK {
		t.Fatalf("accept on B: %d %s", code, body)
	}

	waitFor(t, 30*time.Second, "the review steps published on MQTT", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return published[scoring.EventDeclarationSubmitted] >= 2 && published[scoring.EventDeclarationAccepted] >= 1
	})
	for _, name := range []string{"a", "b"} {
		if _, err := os.Stat(filepath.Join(dir, name, "outbox", outbox.FileName)); err != nil {
			t.Errorf("replica %s has no event outbox: %v", name, err)
		}
	}

	// Both replicas score it; the pending not-applicable counts on neither.
	for _, s := range []*service{a, b} {
		waitFor(t, 30*time.Second, "management_systems at Level III on "+s.http, func() bool {
			var d web.EnterpriseDetail
			if getJSON("http://"+s.http+"/api/v1/enterprises/cq-lj-yuntai-auto", supervisor, &d) != nil {
				return false
			}
			mgmt, voc := indicatorOf(d, "management_systems"), indicatorOf(d, "low_voc_coating_share")
			if voc != nil && voc.Status == "not_applicable" {
				t.Fatalf("a submitted not-applicable declaration is scored on %s", s.http)
			}
			return mgmt != nil && mgmt.Level != nil && *mgmt.Level == "III"
		})
	}

	// A restart keeps every declaration and its review.
	a.stop(t)
	a = replica("a")
	var list web.DeclarationsDTO
	if err := getJSON("http://"+a.http+"/api/v1/enterprises/cq-lj-yuntai-auto/declarations", officer, &list); err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	for _, d := range list.Declarations {
		states[d.State]++
		if d.ID == created.Declaration.ID && (d.State != "accepted" || d.ReviewedBy == nil || !strings.Contains(*d.ReviewedBy, "supervisor")) {
			t.Errorf("after a restart: %+v", d)
		}
	}
	if states["submitted"] != 1 || list.Pending != 1 || states["accepted"] < 10 {
		t.Errorf("after a restart: states %v, pending %d; want the seeded ones accepted and one waiting", states, list.Pending)
	}
	if after := testenv.FolderState(t, decl); after != before {
		t.Errorf("serve wrote into the declarations folder:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func indicatorOf(d web.EnterpriseDetail, id string) *web.IndicatorDTO {
	for _, a := range d.Assessments {
		if a.Window != d.Window {
			continue
		}
		for i := range a.Indicators {
			if a.Indicators[i].ID == id {
				return &a.Indicators[i]
			}
		}
	}
	return nil
}
