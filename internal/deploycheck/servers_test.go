package deploycheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tool returns the path of a command the tests need (prometheus,
// promtool, amtool, mosquitto). scripts/test installs them; a missing one
// fails the test when CLEANPROD_REQUIRE_SERVERS=1, else skips it.
func tool(t *testing.T, name string, more ...string) string {
	t.Helper()
	for _, n := range append([]string{name}, more...) {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%s is not installed (scripts/test installs it from Debian)", name)
	if os.Getenv("CLEANPROD_REQUIRE_SERVERS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// run runs a command and returns its combined output; failure fails the
// test with that output.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startServer starts a child process in its own process group that dies
// with the test binary, logging to log; the test's cleanup stops it.
func startServer(t *testing.T, bin string, args []string, log string) {
	t.Helper()
	startCmd(t, exec.Command(bin, args...), log, 10*time.Second)
}

// startCmd starts cmd (its Env and SysProcAttr.Credential kept) in its own
// process group that dies with the test binary, its output going to log.
// The test's cleanup sends SIGTERM and kills it after grace. The channel
// returned is closed when the process has exited.
func startCmd(t *testing.T, cmd *exec.Cmd, log string, grace time.Duration) <-chan struct{} {
	t.Helper()
	lf, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cmd.SysProcAttr != nil {
		attr.Credential = cmd.SysProcAttr.Credential
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		lf.Close()
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); lf.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(grace):
			cmd.Process.Kill()
			<-done
		}
	})
	return done
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitHTTP polls url until it answers 200 or the time is up.
func waitHTTP(t *testing.T, url string, within time.Duration, log string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if resp, err := httpClient.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	tail, _ := os.ReadFile(log)
	t.Fatalf("%s not ready after %s\n%s", url, within, tail)
}

// promServer is a real Prometheus scraping the test's metrics every
// second and evaluating rule files.
type promServer struct{ url string }

func startPrometheus(t *testing.T, target string, ruleFiles []string) *promServer {
	t.Helper()
	bin := tool(t, "prometheus")
	dir := t.TempDir()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	var rules strings.Builder
	for _, f := range ruleFiles {
		abs, _ := filepath.Abs(f)
		fmt.Fprintf(&rules, "  - %q\n", abs)
	}
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
%sscrape_configs:
  - job_name: cleanprod
    static_configs:
      - targets: [%q]
`, rules.String(), u.Host)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	log := filepath.Join(dir, "prometheus.log")
	startServer(t, bin, []string{"--config.file=" + filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path=" + filepath.Join(dir, "data"), fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
		"--log.level=warn"}, log)
	p := &promServer{url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	waitHTTP(t, p.url+"/-/ready", 60*time.Second, log)
	return p
}

// promSample is one series of an instant query's result.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s promSample) value() string { v, _ := s.Value[1].(string); return v }

// api calls a Prometheus HTTP API endpoint and decodes data into v.
func (p *promServer) api(path string, params url.Values, v any) error {
	resp, err := httpClient.Get(p.url + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
	}
	if r.Status != "success" {
		return fmt.Errorf("%s", r.Error)
	}
	return json.Unmarshal(r.Data, v)
}

// query runs an instant PromQL query now.
func (p *promServer) query(expr string) ([]promSample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.api("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType == "scalar" {
		var v [2]any
		json.Unmarshal(data.Result, &v)
		return []promSample{{Metric: map[string]string{}, Value: v}}, nil
	}
	var out []promSample
	err := json.Unmarshal(data.Result, &out)
	return out, err
}

// labelValues answers Grafana's label_values(metric, label).
func (p *promServer) labelValues(metric, label string) ([]string, error) {
	var out []string
	err := p.api("/api/v1/label/"+label+"/values", url.Values{"match[]": {metric}}, &out)
	return out, err
}

// influxQLSeries is one series of an InfluxQL answer.
type influxQLSeries struct {
	Name    string            `json:"name"`
	Tags    map[string]string `json:"tags"`
	Columns []string          `json:"columns"`
	Values  [][]any           `json:"values"`
}

// influxQL runs an InfluxQL query on the fleet's database and returns its
// series with their tags and columns.
func (f *fleet) influxQL(q string) ([]influxQLSeries, error) {
	form := url.Values{"q": {q}, "db": {f.db.Database}}
	req, _ := http.NewRequest(http.MethodPost, f.db.URL+"/query", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Token "+f.db.Token)
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Error   string
		Results []struct {
			Error  string
			Series []influxQLSeries
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: %w", resp.Status, err)
	}
	if r.Error != "" {
		return nil, fmt.Errorf("%s", r.Error)
	}
	var out []influxQLSeries
	for _, res := range r.Results {
		if res.Error != "" {
			return nil, fmt.Errorf("%s", res.Error)
		}
		out = append(out, res.Series...)
	}
	return out, nil
}
