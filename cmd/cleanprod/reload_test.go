package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/web"
)

// TestReloadOnSIGHUP runs the binary on its embedded broker and store and
// reloads it with SIGHUP: a reload with a broken registry file and a
// broken standard keeps everything in force and logs both problems; a good
// reload registers a new enterprise, whose gateway was refused before and
// is accepted and scored after, without a restart.
func TestReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	gwDir := filepath.Join(dir, "gateways")
	if err := os.Mkdir(gwDir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"cq-lj-yuntai-auto", "cq-lj-jiahe-motors", "cq-lj-hengrun-parts"} {
		copyFile("../../gateway-config/"+id+".yaml", filepath.Join(gwDir, id+".yaml"))
	}
	stdPath := filepath.Join(dir, "standard.yaml")
	copyFile("../../scoring/standards/auto-manufacturing.yaml", stdPath)
	goodStd, _ := os.ReadFile(stdPath)
	const token = "reload-test-supervisor"
	tokensFile := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokensFile, fmt.Appendf(nil, "tokens:\n  - name: bureau\n    sha256: %s\n    role: supervisor\n", web.HashToken(token)), 0o600); err != nil {
		t.Fatal(err)
	}
	brokerAddr := freeAddr(t)
	p := startProc(t, []string{"-gateway_config", gwDir, "-embedded_broker.listen", brokerAddr, "-data_dir", filepath.Join(dir, "data"),
		"-scoring.standard", stdPath, "-http.tokens_file", tokensFile}, nil)
	m := p.metrics()
	enterprises := func() []string {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+p.http+"/api/v1/enterprises", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var list struct {
			Enterprises []web.EnterpriseSummary `json:"enterprises"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
			t.Fatalf("GET /api/v1/enterprises: status %d: %v", resp.StatusCode, err)
		}
		var ids []string
		for _, e := range list.Enterprises {
			if e.Evaluated {
				ids = append(ids, e.ID+"*")
			} else {
				ids = append(ids, e.ID)
			}
		}
		return ids
	}
	hup := func() {
		t.Helper()
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	// The new plant's gateway is not registered yet: refused.
	gw := mqttClient(t, "tcp://"+brokerAddr, "shanchuan-gw")
	now := time.Now().UTC().Truncate(time.Second)
	msg := func(seq int, at time.Time, v float64) string {
		return fmt.Sprintf(`{"gateway":"gw-plant-01","seq":%d,"readings":[{"meter":"E-MAIN-01","ts":%q,"value":%g}]}`, seq, at.Format(time.RFC3339), v)
	}
	const topic = "cp/v1/cq-lj-shanchuan-auto/gw-plant-01/telemetry"
	pub(t, gw, topic, msg(1, now.Add(-2*time.Minute), 1000))
	waitFor(t, 20*time.Second, "the unregistered gateway's message refused", func() bool {
		return scrapeFamily(t, p.http, "cleanprod_ingest_rejected_total")[`cleanprod_ingest_rejected_total{reason="unknown_gateway"}`] == 1
	})
	if got := len(enterprises()); got != 3 {
		t.Fatalf("%d enterprises before the reload, want 3", got)
	}

	// A broken registry file and a broken standard: nothing changes, and
	// the log names both problems.
	if err := os.WriteFile(filepath.Join(gwDir, "broken.yaml"), []byte("enterprise:\n  id: [not, an, id]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stdPath, append(append([]byte{}, goodStd...), "\nbogus_key: 1\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	copyFile("../../gateway-config/cq-lj-shanchuan-auto.yaml", filepath.Join(gwDir, "cq-lj-shanchuan-auto.yaml"))
	hup()
	waitFor(t, 30*time.Second, "the failed reload counted", func() bool {
		return scrapeFamily(t, p.http, "cleanprod_config_reloads_total")[`cleanprod_config_reloads_total{result="failure"}`] == 1
	})
	if got := m.metric(t, "cleanprod_config_last_reload_successful"); got != 0 {
		t.Errorf("cleanprod_config_last_reload_successful = %g after a failed reload, want 0", got)
	}
	logs := p.logs.String()
	for _, want := range []string{"configuration reload failed", "broken.yaml", "standard.yaml", "bogus_key"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the failed reload's log does not mention %q:\n%s", want, logs)
		}
	}
	if got := len(enterprises()); got != 3 {
		t.Errorf("%d enterprises after a failed reload, want the 3 in force", got)
	}
	pub(t, gw, topic, msg(2, now.Add(-time.Minute), 1010))
	waitFor(t, 20*time.Second, "the gateway still refused", func() bool {
		return scrapeFamily(t, p.http, "cleanprod_ingest_rejected_total")[`cleanprod_ingest_rejected_total{reason="unknown_gateway"}`] == 2
	})

	// Fixed: the reload registers the plant.
	if err := os.Remove(filepath.Join(gwDir, "broken.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stdPath, goodStd, 0o644); err != nil {
		t.Fatal(err)
	}
	hup()
	waitFor(t, 60*time.Second, "the good reload counted", func() bool {
		return scrapeFamily(t, p.http, "cleanprod_config_reloads_total")[`cleanprod_config_reloads_total{result="success"}`] == 1
	})
	if got := m.metric(t, "cleanprod_config_last_reload_successful"); got != 1 {
		t.Errorf("cleanprod_config_last_reload_successful = %g after a good reload, want 1", got)
	}
	written := m.metric(t, "cleanprod_ingest_readings_written_total")
	pub(t, gw, topic, msg(3, now.Add(-30*time.Second), 1020))
	pub(t, gw, topic, msg(4, now, 1030))
	waitFor(t, 20*time.Second, "the new plant's readings written", func() bool {
		return m.metric(t, "cleanprod_ingest_readings_written_total") == written+2
	})
	waitFor(t, 30*time.Second, "the new plant evaluated", func() bool {
		return strings.Contains(strings.Join(enterprises(), " "), "cq-lj-shanchuan-auto*")
	})
	if got := len(enterprises()); got != 4 {
		t.Errorf("%d enterprises after the reload, want 4", got)
	}
	gw.Disconnect(100)
	p.stop(t)
}

// TestReloadScoringKeepsUnchanged checks that a reload keeps the objects
// of files whose content did not change (so the scorer refills nothing),
// and loads those that changed, including a file inside the solutions
// folder.
func TestReloadScoringKeepsUnchanged(t *testing.T) {
	dir := t.TempDir()
	cp := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cp("../../scoring/standards/auto-manufacturing.yaml", filepath.Join(dir, "std.yaml"))
	cp("../../scoring/policy/default.yaml", filepath.Join(dir, "policy.yaml"))
	sols, _ := filepath.Glob("../../scoring/solutions/*.yaml")
	for _, s := range sols {
		cp(s, filepath.Join(dir, "solutions", filepath.Base(s)))
	}
	cfg := &Config{}
	cfg.Scoring.Standard, cfg.Scoring.Policy, cfg.Scoring.Solutions = filepath.Join(dir, "std.yaml"), filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "solutions")
	first, err := loadScoring(cfg)
	if err != nil {
		t.Fatal(err)
	}
	same, err := reloadScoring(cfg, first)
	if err != nil {
		t.Fatal(err)
	}
	if same.std != first.std || same.pol != first.pol || same.lib != first.lib {
		t.Error("reload of unchanged files made new objects")
	}
	f, err := os.OpenFile(filepath.Join(dir, "solutions", filepath.Base(sols[0])), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\n# edited\n")
	f.Close()
	changed, err := reloadScoring(cfg, first)
	if err != nil {
		t.Fatal(err)
	}
	if changed.std != first.std || changed.pol != first.pol {
		t.Error("a solutions edit replaced the standard or the policy")
	}
	if changed.lib == first.lib {
		t.Error("a solutions edit kept the old library")
	}
}

// TestReloadDuringStoreOutage sends SIGHUP while InfluxDB refuses every
// write: the reload is postponed at once instead of waiting, with the
// reload lock, for the outage to end; the API keeps answering with the
// configuration in force; once writes pass the reload is tried again by
// itself and registers the new plant, and the reading held during the
// outage is stored.
func TestReloadDuringStoreOutage(t *testing.T) {
	testenv.NeedServers(t)
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	front := newWriteRefuser(t, db.URL)
	refuse, refused := &front.refuse, &front.refused

	dir := t.TempDir()
	gwDir := filepath.Join(dir, "gateways")
	if err := os.Mkdir(gwDir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile := func(id string) {
		t.Helper()
		b, err := os.ReadFile("../../gateway-config/" + id + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(gwDir, id+".yaml"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"cq-lj-yuntai-auto", "cq-lj-jiahe-motors", "cq-lj-hengrun-parts"} {
		copyFile(id)
	}
	const token = "outage-test-supervisor"
	tokensFile := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokensFile, fmt.Appendf(nil, "tokens:\n  - name: bureau\n    sha256: %s\n    role: supervisor\n", web.HashToken(token)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, []string{"-gateway_config", gwDir, "-mqtt.url", broker.URL(), "-influx.url", front.URL, "-influx.bucket", db.Bucket,
		"-data_dir", filepath.Join(dir, "data"), "-http.tokens_file", tokensFile}, map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token})
	enterprises := func() (int, int) {
		req, _ := http.NewRequest("GET", "http://"+p.http+"/api/v1/enterprises", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, 0
		}
		defer resp.Body.Close()
		var list struct {
			Enterprises []web.EnterpriseSummary `json:"enterprises"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&list)
		return resp.StatusCode, len(list.Enterprises)
	}
	reloads := func(result string) float64 {
		return scrapeFamily(t, p.http, "cleanprod_config_reloads_total")[`cleanprod_config_reloads_total{result="`+result+`"}`]
	}
	readyz := func() int { return readyzStatus(p.http) }

	// The fault: every write refused, a reading held unacknowledged.
	refuse.Store(true)
	gw := mqttClient(t, broker.URL(), "outage-gateway")
	now := time.Now().UTC().Truncate(time.Second)
	pub(t, gw, "cp/v1/cq-lj-yuntai-auto/gw-paint-01/telemetry",
		fmt.Sprintf(`{"gateway":"gw-paint-01","seq":1,"readings":[{"meter":"E-PAINT-01","ts":%q,"value":1000}]}`, now.Add(-time.Minute).Format(time.RFC3339)))
	waitFor(t, 20*time.Second, "a refused write", func() bool { return refused.Load() > 0 })
	waitFor(t, 20*time.Second, "/readyz 503 while writes fail", func() bool { return readyz() == http.StatusServiceUnavailable })

	copyFile("cq-lj-shanchuan-auto")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the reload postponed during the outage", func() bool { return reloads("postponed") >= 1 })
	if code, n := enterprises(); code != http.StatusOK || n != 3 {
		t.Errorf("during the outage: GET /api/v1/enterprises status %d with %d enterprises, want 200 with the 3 in force", code, n)
	}
	if got := reloads("success"); got != 0 {
		t.Fatalf("%g reloads succeeded while every write failed", got)
	}
	if got := reloads("failure"); got != 0 {
		t.Errorf("%g reloads failed: good files waiting for the store are postponed, not failed", got)
	}

	refuse.Store(false)
	waitFor(t, 90*time.Second, "the reload tried again once writes pass", func() bool { return reloads("success") == 1 })
	if code, n := enterprises(); code != http.StatusOK || n != 4 {
		t.Errorf("after the outage: GET /api/v1/enterprises status %d with %d enterprises, want 200 with 4", code, n)
	}
	waitFor(t, 30*time.Second, "the reading held during the outage stored", func() bool {
		return len(db.QueryInfluxQL(t, `SELECT register FROM reading WHERE meter = 'E-PAINT-01'`)) == 1
	})
	gw.Disconnect(100)
	p.stop(t)
}
