package deploycheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/gatewayauth"
	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/registry"
)

// buildCleanprod builds the binary the image carries.
func buildCleanprod(t *testing.T) string {
	t.Helper()
	started := time.Now()
	bin := filepath.Join(t.TempDir(), "cleanprod")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "./cmd/cleanprod")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/cleanprod: %v\n%s", err, out)
	}
	t.Logf("built cleanprod in %s", time.Since(started).Round(time.Millisecond))
	return bin
}

// wecom is a stand-in for WeCom's API (qyapi.weixin.qq.com/cgi-bin/), the
// far end of Alertmanager's WeChat receiver: it hands out an access token
// and keeps the messages sent.
type wecom struct {
	mu   sync.Mutex
	msgs []map[string]any
}

func (w *wecom) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/cgi-bin/gettoken":
		fmt.Fprint(rw, `{"errcode": 0, "errmsg": "ok", "access_token": "test-token", "expires_in": 7200}`)
	case "/cgi-bin/message/send":
		var m map[string]any
		body, _ := io.ReadAll(r.Body)
		if r.URL.Query().Get("access_token") != "test-token" || json.Unmarshal(body, &m) != nil {
			http.Error(rw, "bad request", http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.msgs = append(w.msgs, m)
		w.mu.Unlock()
		fmt.Fprint(rw, `{"errcode": 0, "errmsg": "ok"}`)
	default:
		http.NotFound(rw, r)
	}
}

// find returns the first message whose text contains s.
func (w *wecom) find(s string) map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.msgs {
		if text, _ := m["text"].(map[string]any); text != nil && strings.Contains(fmt.Sprint(text["content"]), s) {
			return m
		}
	}
	return nil
}

// copyTree copies src into dst (created), every file read-only.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// readOnly takes write permission from everything under dir.
func readOnly(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			if d.IsDir() {
				os.Chmod(p, 0o555)
			} else {
				os.Chmod(p, 0o444)
			}
		}
		return nil
	})
	t.Cleanup(func() {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}

// TestStack runs the shipped stack the way deploy/compose.yaml does,
// without Docker: the README's commands make the broker's users, ACL and
// certificates and the API's tokens; mosquitto runs unprivileged with
// deploy/mosquitto/mosquitto.conf and those files read-only; cleanprod
// serve runs with deploy/cleanprod.yaml and its folders read-only where
// compose mounts them (addresses moved by flags); the real Prometheus
// scrapes it with deploy/prometheus's configuration and rules, and the
// real Alertmanager delivers with deploy/alertmanager's WeCom receiver to
// a stand-in of WeCom's API. Only scrape and evaluation intervals,
// Alertmanager's group waits and the policy's restrictive_fail hold are
// shortened, in test copies.
func TestStack(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs cleanprod with every server")
	}
	pdftotext := tool(t, "pdftotext")
	amBin := tool(t, "prometheus-alertmanager", "alertmanager")
	promBin := tool(t, "prometheus")
	db := testenv.Influx(t)
	bin := buildCleanprod(t)
	started := time.Now()
	reg, err := registry.Load("../../gateway-config")
	if err != nil {
		t.Fatal(err)
	}

	// The README's commands as printed, run from a folder laid out as the
	// repository, writing where compose mounts from.
	work := t.TempDir()
	mosqDir := filepath.Join(work, "deploy", "mosquitto")
	tokensFile := filepath.Join(work, "deploy", "tokens", "tokens.yaml")
	os.MkdirAll(filepath.Dir(tokensFile), 0o755)
	os.MkdirAll(mosqDir, 0o755)
	gwConf, _ := filepath.Abs("../../gateway-config")
	os.Symlink(gwConf, filepath.Join(work, "gateway-config"))
	script, _ := os.ReadFile(filepath.Join(deployDir, "mosquitto", "make-certs.sh"))
	os.WriteFile(filepath.Join(mosqDir, "make-certs.sh"), script, 0o755)
	var bureau string
	for _, line := range readmeStackCommands(t) {
		f := strings.Fields(line)
		var cmd *exec.Cmd
		switch {
		case strings.HasPrefix(line, "go run ./cmd/cleanprod "):
			cmd = exec.Command(bin, f[3:]...)
		case strings.HasPrefix(line, "sudo deploy/mosquitto/make-certs.sh"):
			// Keys go to whoever runs mosquitto and cleanprod below.
			cmd = exec.Command("sh", f[1:]...)
			cmd.Env = append(os.Environ(), "BROKER_UID="+strconv.Itoa(os.Getuid()), "CLEANPROD_UID="+strconv.Itoa(os.Getuid()))
		case strings.HasPrefix(line, "cp deploy/.env.example"), strings.HasPrefix(line, "docker compose"):
			continue // Docker's part: this test plays it
		default:
			t.Fatalf("README: stack command %q: the test does not know how to run it", line)
		}
		cmd.Dir = work
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("README: %s: %v\n%s", line, err, errOut.String())
		}
		if strings.Contains(line, "tokens add -role supervisor") {
			bureau = strings.TrimSpace(out.String())
		}
	}
	if !strings.HasPrefix(bureau, "cp_") {
		t.Fatalf("README: the stack commands made no supervisor token (%q)", bureau)
	}
	for _, f := range []string{"passwd", "acl"} {
		if fi, err := os.Stat(filepath.Join(mosqDir, f)); err != nil || fi.Mode().Perm()&0o004 == 0 {
			t.Errorf("%s: %v %v: the broker's user (another user than the operator) cannot read it", f, fi.Mode(), err)
		}
	}
	var files brokerFiles
	files.passwd, _ = os.ReadFile(filepath.Join(mosqDir, "passwd"))
	files.acl, _ = os.ReadFile(filepath.Join(mosqDir, "acl"))
	cf, err := os.Open(filepath.Join(mosqDir, "credentials.txt"))
	if err != nil {
		t.Fatal(err)
	}
	files.creds, err = gatewayauth.ReadCredentials(cf)
	cf.Close()
	if err != nil {
		t.Fatal(err)
	}
	files.certs = filepath.Join(mosqDir, "certs")
	const ent = "cq-lj-yuntai-auto"
	out, err := exec.Command(bin, "tokens", "add", "-role", "enterprise", "-enterprise", ent, "-http.tokens_file", tokensFile, "-gateway_config", gwConf).Output()
	if err != nil {
		t.Fatal(err)
	}
	officer := strings.TrimSpace(string(out))

	b := startShippedMosquitto(t, reg, files)

	// /etc/cleanprod as compose mounts it, read-only.
	etc := filepath.Join(work, "etc", "cleanprod")
	conf, err := os.ReadFile(serviceConf)
	if err != nil {
		t.Fatal(err)
	}
	conf = bytes.ReplaceAll(conf, []byte("/etc/cleanprod/"), []byte(etc+"/"))
	os.MkdirAll(filepath.Join(etc, "config"), 0o755)
	os.WriteFile(filepath.Join(etc, "config", "cleanprod.yaml"), conf, 0o644)
	os.MkdirAll(filepath.Join(etc, "tokens"), 0o755)
	data, _ := os.ReadFile(tokensFile)
	os.WriteFile(filepath.Join(etc, "tokens", "tokens.yaml"), data, 0o644)
	os.MkdirAll(filepath.Join(etc, "mqtt"), 0o755)
	for _, f := range []string{"ca.crt", "cleanprod.crt", "cleanprod.key"} {
		data, err := os.ReadFile(filepath.Join(files.certs, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(etc, "mqtt", f), data, 0o400)
	}
	for dst, src := range map[string]string{"gateway-config": "../../gateway-config", "standards": "../../scoring/standards",
		"policy": "../../scoring/policy", "solutions": "../../scoring/solutions", "declarations": "../../scoring/declarations"} {
		copyTree(t, src, filepath.Join(etc, dst))
	}
	// A restrictive failure is announced after an hour; a second here.
	policy := filepath.Join(etc, "policy", "default.yaml")
	pol, _ := os.ReadFile(policy)
	if !bytes.Contains(pol, []byte("restrictive_fail: {for: 1h}")) {
		t.Fatal("scoring/policy/default.yaml: no restrictive_fail: {for: 1h} to shorten")
	}
	os.WriteFile(policy, bytes.Replace(pol, []byte("restrictive_fail: {for: 1h}"), []byte("restrictive_fail: {for: 1s}"), 1), 0o644)
	readOnly(t, etc)
	etcBefore := testenv.FolderState(t, etc)

	// Alertmanager with the shipped configuration, WeCom's API moved here.
	wc := &wecom{}
	wcSrv := httptest.NewServer(wc)
	t.Cleanup(wcSrv.Close)
	amConf, err := os.ReadFile(alertmanagerFile)
	if err != nil {
		t.Fatal(err)
	}
	amConf = bytes.Replace(amConf, []byte("wechat_api_url: https://qyapi.weixin.qq.com/cgi-bin/"), []byte("wechat_api_url: "+wcSrv.URL+"/cgi-bin/"), 1)
	amConf = regexpReplace(amConf, `group_wait: \S+`, "group_wait: 1s")
	amDir := t.TempDir()
	os.WriteFile(filepath.Join(amDir, "alertmanager.yml"), amConf, 0o644)
	amAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	amLog := filepath.Join(amDir, "alertmanager.log")
	startServer(t, amBin, []string{"--config.file=" + filepath.Join(amDir, "alertmanager.yml"), "--storage.path=" + filepath.Join(amDir, "data"),
		"--web.listen-address=" + amAddr, "--cluster.listen-address="}, amLog)
	waitHTTP(t, "http://"+amAddr+"/-/ready", 30*time.Second, amLog)

	// cleanprod serve, as compose runs it.
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	log := filepath.Join(t.TempDir(), "cleanprod.log")
	cmd := exec.Command(bin, "serve", "-config", filepath.Join(etc, "config", "cleanprod.yaml"),
		"-http.listen", httpAddr, "-mqtt.url", b.url, "-mqtt.watchdog_interval", "1s",
		"-influx.url", db.URL, "-influx.bucket", db.Bucket, "-data_dir", t.TempDir(),
		"-scoring.interval", "1s", "-scoring.declarations_every", "1s", "-log.format", "text")
	cmd.Env = append(os.Environ(), "CLEANPROD_MQTT_PASSWORD="+b.creds["cleanprod"], "CLEANPROD_INFLUX_TOKEN="+db.Token)
	done := startCmd(t, cmd, log, 20*time.Second)
	fail := func(format string, args ...any) {
		t.Helper()
		tail, _ := os.ReadFile(log)
		t.Fatalf(format+"\ncleanprod's log:\n%s", append(args, tail)...)
	}
	ready := func() bool {
		resp, err := httpClient.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	waitReady := func(within time.Duration, what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !cond() {
			select {
			case <-done:
				fail("cleanprod serve exited while waiting for: %s", what)
			default:
			}
			if time.Now().After(deadline) {
				fail("after %s: %s", within, what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitReady(60*time.Second, "cleanprod ready", ready)
	t.Logf("cleanprod ready %s after start", time.Since(started).Round(time.Millisecond))

	// Prometheus with the shipped configuration and rules.
	promConf, err := os.ReadFile(filepath.Join(deployDir, "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	promAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	rulesGlob, _ := filepath.Abs(filepath.Join(deployDir, "prometheus", "*-rules.yml"))
	for old, new := range map[string]string{"scrape_interval: 15s": "scrape_interval: 1s", "evaluation_interval: 15s": "evaluation_interval: 1s",
		`"cleanprod:8080"`: strconv.Quote(httpAddr), `"alertmanager:9093"`: strconv.Quote(amAddr), `"localhost:9090"`: strconv.Quote(promAddr),
		`"*-rules.yml"`: strconv.Quote(rulesGlob)} {
		if !bytes.Contains(promConf, []byte(old)) {
			t.Fatalf("deploy/prometheus/prometheus.yml: no %s to move", old)
		}
		promConf = bytes.ReplaceAll(promConf, []byte(old), []byte(new))
	}
	promDir := t.TempDir()
	os.WriteFile(filepath.Join(promDir, "prometheus.yml"), promConf, 0o644)
	promLog := filepath.Join(promDir, "prometheus.log")
	startServer(t, promBin, []string{"--config.file=" + filepath.Join(promDir, "prometheus.yml"),
		"--storage.tsdb.path=" + filepath.Join(promDir, "data"), "--web.listen-address=" + promAddr, "--log.level=warn"}, promLog)
	waitHTTP(t, "http://"+promAddr+"/-/ready", 60*time.Second, promLog)

	metric := func(name string) float64 {
		resp, err := httpClient.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		return -1
	}

	// A gateway publishes over TLS and is stored; its message on another
	// gateway's topic never reaches cleanprod.
	e, _ := reg.Enterprise(ent)
	gw, other := e.Gateways[0], reg.Enterprises[0].Gateways[0]
	g, err := b.connect(t, "stack-gateway", gatewayauth.UserName(gw), "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second).Format(time.RFC3339)
	reading := func(gw *registry.Gateway) []byte {
		return fmt.Appendf(nil, `{"gateway": %q, "seq": 1, "sent": %q, "readings": [{"meter": %q, "ts": %q, "value": 1}]}`, gw.ID, now, gw.Meters[0].ID, now)
	}
	msgs := metric("cleanprod_ingest_messages_total")
	publish(t, g, "cp/v1/"+other.Enterprise.ID+"/"+other.ID+"/telemetry", reading(other))
	publish(t, g, "cp/v1/"+ent+"/"+gw.ID+"/telemetry", reading(gw))
	waitReady(30*time.Second, "the gateway's reading stored", func() bool { return metric("cleanprod_ingest_readings_written_total") >= 1 })
	time.Sleep(500 * time.Millisecond)
	if got := metric("cleanprod_ingest_messages_total"); got != msgs+1 {
		t.Errorf("cleanprod received %g messages, want %g: the one published as %s on %s's topic passed the ACL", got-msgs, 1.0, gw.ID, other.ID)
	}

	// A gateway asking for cleanprod's client id neither disconnects it
	// nor takes its session.
	if _, err := b.connect(t, "cleanprod", gatewayauth.UserName(gw), "", true, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if lost := metric("cleanprod_mqtt_connection_lost_total"); lost != 0 || !ready() {
		fail("a gateway connecting with client id cleanprod: cleanprod lost its connection %g times", lost)
	}

	// The API answers with a provisioned token, and only with one.
	api := func(method, path, tok, body string) (int, []byte, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+httpAddr+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, data, resp.Header
	}
	if code, body, _ := api("GET", "/api/v1/enterprises", bureau, ""); code != 200 || !bytes.Contains(body, []byte(ent)) {
		t.Errorf("GET /api/v1/enterprises with the bureau's token: %d %.300s", code, body)
	}
	if code, _, _ := api("GET", "/api/v1/enterprises", "", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/enterprises without a token: %d, want 401", code)
	}

	// HTML and PDF reports with the Chinese names.
	waitReady(60*time.Second, "the report of "+ent, func() bool {
		code, _, _ := api("GET", "/api/v1/enterprises/"+ent+"/report", bureau, "")
		return code == 200
	})
	if code, body, _ := api("GET", "/api/v1/enterprises/"+ent+"/report?format=html", officer, ""); code != 200 || !bytes.Contains(body, []byte(e.NameZH)) {
		t.Errorf("HTML report: %d, want 200 with %s", code, e.NameZH)
	}
	code, pdf, hdr := api("GET", "/api/v1/enterprises/"+ent+"/report?format=pdf", officer, "")
	if code != 200 || hdr.Get("Content-Type") != "application/pdf" {
		t.Errorf("PDF report: %d %s %s", code, hdr.Get("Content-Type"), hdr.Get("X-Cleanprod-Pdf-Unavailable"))
	} else {
		pdfFile := filepath.Join(t.TempDir(), "report.pdf")
		os.WriteFile(pdfFile, pdf, 0o644)
		text, err := exec.Command(pdftotext, pdfFile, "-").Output()
		if err != nil || !bytes.Contains(text, []byte(e.NameZH)) {
			t.Errorf("the PDF report's text lacks %s (%v)", e.NameZH, err)
		}
	}

	// A declaration submitted by the enterprise and accepted by the
	// bureau: the permit is not complied with, a restrictive failure.
	today := time.Now().Format(time.DateOnly)
	code, body, _ := api("POST", "/api/v1/enterprises/"+ent+"/declarations", officer,
		`{"indicator": "permit_compliance", "level": "no", "evidence": "annual permit report overdue", "valid_from": "`+today+`"}`)
	var created struct {
		Declaration struct{ ID, State string } `json:"declaration"`
	}
	if code != http.StatusCreated || json.Unmarshal(body, &created) != nil || created.Declaration.State != "submitted" {
		fail("submit a declaration: %d %s", code, body)
	}
	if code, body, _ := api("POST", "/api/v1/declarations/"+created.Declaration.ID+"/accept", bureau, `{"note": "confirmed with the permit office"}`); code != http.StatusOK {
		fail("accept the declaration: %d %s", code, body)
	}

	// The scorer announces the regression, Prometheus fires the shipped
	// rule, Alertmanager sends it to WeCom.
	waitReady(60*time.Second, "a restrictive_fail event", func() bool {
		resp, err := httpClient.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return bytes.Contains(body, []byte(`cleanprod_scoring_events_total{kind="restrictive_fail"} 1`))
	})
	deadline := time.Now().Add(90 * time.Second)
	for wc.find("CleanprodRegressionAnnounced") == nil {
		if time.Now().After(deadline) {
			amTail, _ := os.ReadFile(amLog)
			fail("no CleanprodRegressionAnnounced reached WeCom after 90s; alertmanager's log:\n%s", amTail)
		}
		time.Sleep(250 * time.Millisecond)
	}
	m := wc.find("CleanprodRegressionAnnounced")
	t.Logf("WeCom got %v (to_party %v) %s after start", m["msgtype"], m["toparty"], time.Since(started).Round(time.Second))

	// The heartbeat (every second here) passed the ACL all along: a
	// dropped one would have forced a reconnect.
	if n := metric("cleanprod_mqtt_watchdog_reconnects_total"); n != 0 {
		fail("the service's heartbeat did not come back through the broker (%g watchdog reconnects): does the ACL let user cleanprod read and write cleanprod/watchdog/#?", n)
	}
	if after := testenv.FolderState(t, etc); after != etcBefore {
		t.Errorf("serve wrote into its read-only configuration:\nbefore:\n%s\nafter:\n%s", etcBefore, after)
	}
}

// readmeStackCommands returns the commands of the README's "Bring the
// stack up" block, one a line.
func readmeStackCommands(t *testing.T) []string {
	t.Helper()
	sec := readmeSection(t, "### Bring the stack up")
	m := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(sec)
	if m == nil {
		t.Fatal("README: no commands under Bring the stack up")
	}
	return strings.Split(strings.TrimSpace(m[1]), "\n")
}

// regexpReplace replaces every match of expr in data.
func regexpReplace(data []byte, expr, repl string) []byte {
	return regexp.MustCompile(expr).ReplaceAll(data, []byte(repl))
}
