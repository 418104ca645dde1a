package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cleanprod/cleanprod/internal/testenv"
)

const (
	serveReadyTimeout = 5 * time.Minute  // registry load and scoring rebuild; seconds when the store is empty
	serveStopGrace    = 60 * time.Second // ingest.shutdown_grace (10s) plus the last scoring writes
	clockTicks        = 100              // USER_HZ of /proc/PID/stat on Linux
)

// servers are the real mosquitto and InfluxDB of a run, with their state
// under one directory.
type servers struct {
	broker *testenv.Broker
	influx *testenv.InfluxServer
}

// startServers starts mosquitto and influxd, configured as the tests
// configure them, with their state under dir. On an error nothing is left
// running.
func startServers(dir string) (*servers, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	b, err := testenv.StartMosquitto(filepath.Join(dir, "mosquitto"))
	if err != nil {
		return nil, err
	}
	in, err := testenv.StartInflux(filepath.Join(dir, "influxd"))
	if err != nil {
		return nil, errors.Join(err, b.Close())
	}
	return &servers{broker: b, influx: in}, nil
}

// close stops both servers.
func (s *servers) close() error {
	return errors.Join(s.influx.Close(), s.broker.Close())
}

// buildCleanprod builds the cleanprod binary into dir and returns its path.
func buildCleanprod(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "cleanprod")
	// -buildvcs: the binary records its commit (describeBinary) where git
	// can tell, even if GOFLAGS turns that off.
	cmd := exec.CommandContext(ctx, "go", "build", "-buildvcs=auto", "-o", bin, "github.com/cleanprod/cleanprod/cmd/cleanprod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build cleanprod: %w\n%s", err, out)
	}
	return bin, nil
}

// addToken runs "cleanprod tokens add" with args and returns the token it
// prints.
func addToken(ctx context.Context, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, append([]string{"tokens", "add"}, args...)...)
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("cleanprod tokens add: %w\n%s", err, stderr.Bytes())
	}
	tok := strings.TrimSpace(stdout.String())
	if tok == "" || strings.ContainsAny(tok, " \n") {
		return "", fmt.Errorf("cleanprod tokens add printed %q, want one token", stdout.String())
	}
	return tok, nil
}

// childEnv is the environment of cleanprod children: this process's,
// without any CLEANPROD_ setting, so a developer's configuration does not
// leak into the benchmark; settings come as flags.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLEANPROD_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// freeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// serveProcess is a running "cleanprod serve", a child of this process in
// its own process group, killed with it (parent-death signal).
type serveProcess struct {
	cmd       *exec.Cmd
	dir       string // its working directory
	base      string // http://127.0.0.1:PORT
	pprofBase string // http://127.0.0.1:PORT of its debug.pprof_listen; empty: none
	token     string // supervisor bearer token
	logPath   string
	started   time.Time     // when the process was started
	done      chan struct{} // closed once the process has exited
	err       error         // result of Wait; read after done is closed
	http      *http.Client
}

// startServe starts bin serve with args (plus -http.listen) in dir, its
// output going to dir/serve.log, and waits until /readyz answers 200: the
// registry is loaded, scoring rebuilt, the store reachable and the broker
// subscription made. env adds environment variables (secrets).
func startServe(ctx context.Context, bin, dir, token string, args, env []string) (*serveProcess, error) {
	p, err := launchServe(bin, dir, token, args, env)
	if err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx); err != nil {
		return nil, errors.Join(err, p.stop())
	}
	return p, nil
}

// launchServe starts bin serve as startServe does, without waiting for
// it to be ready.
func launchServe(bin, dir, token string, args, env []string) (*serveProcess, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "serve.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor once started
	cmd := exec.Command(bin, append([]string{"serve", "-http.listen", addr}, args...)...)
	cmd.Dir = dir
	cmd.Env = childEnv(env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start cleanprod serve: %w", err)
	}
	p := &serveProcess{cmd: cmd, dir: dir, base: "http://" + addr, token: token, logPath: logPath, started: time.Now(),
		done: make(chan struct{}), http: &http.Client{Timeout: 30 * time.Second}}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// waitReady polls /readyz until it answers 200.
func (p *serveProcess) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(serveReadyTimeout)
	for {
		resp, err := p.http.Get(p.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("cleanprod serve exited before it was ready (%v)\n%s", p.err, testenv.LogTail(p.logPath))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cleanprod serve not ready after %v\n%s", serveReadyTimeout, testenv.LogTail(p.logPath))
		}
	}
}

// pid returns the process id of cleanprod.
func (p *serveProcess) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM, waits for a clean exit and kills the process if it
// takes longer than serveStopGrace. Stopping a stopped process does
// nothing.
func (p *serveProcess) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
		var exit *exec.ExitError
		if errors.As(p.err, &exit) {
			return fmt.Errorf("cleanprod serve exited with %v\n%s", p.err, testenv.LogTail(p.logPath))
		}
		return nil
	case <-time.After(serveStopGrace):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("cleanprod serve did not stop within %v of SIGTERM; killed it\n%s", serveStopGrace, testenv.LogTail(p.logPath))
	}
}

// kill sends SIGKILL, as a crash or an OOM kill would end serve, and
// waits until the process is gone.
func (p *serveProcess) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
}

// exited reports an error if the process has exited.
func (p *serveProcess) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("cleanprod serve exited (%v)\n%s", p.err, testenv.LogTail(p.logPath))
	default:
		return nil
	}
}

// metrics scrapes /metrics and returns each metric's value summed over its
// labels, by name, and the size of the answer.
func (p *serveProcess) metrics(ctx context.Context) (map[string]float64, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/metrics", nil)
	if err != nil {
		return nil, 0, err
	}
	// Uncompressed: gzip would cost cleanprod CPU that the benchmark counts.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("scrape cleanprod /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("scrape cleanprod /metrics: %s", resp.Status)
	}
	cr := &countingReader{r: resp.Body}
	m, err := parseMetrics(cr)
	return m, cr.n, err
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// parseMetrics sums the samples of the Prometheus text format by metric
// name (labels dropped), and also keeps each sample under its name with
// its labels as written (name{label="value",...}).
func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := make(map[string]float64)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, series := line, "", ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if strings.HasPrefix(rest, "{") {
			// Label values may hold spaces: skip to the closing brace.
			j := strings.LastIndexByte(rest, '}')
			if j < 0 {
				return nil, fmt.Errorf("metrics line %q: unterminated labels", line)
			}
			series, rest = name+rest[:j+1], rest[j+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics line %q: no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		out[name] += v
		if series != "" {
			out[series] += v
		}
	}
	return out, sc.Err()
}

// cpu returns the CPU time (user + system) the process has used so far,
// from /proc/PID/stat.
func (p *serveProcess) cpu() (time.Duration, error) {
	return processCPU(p.pid())
}

func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu of pid %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// fields are counted after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu of pid %d: unexpected /proc stat %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	// After the name: state is field 3, utime field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu of pid %d: unexpected /proc stat %q", pid, b)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("cpu of pid %d: %w", pid, err)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// childrenCPU returns the CPU time (user + system) used so far by the
// running children of this process whose command name is comm (the
// servers: "influxd", "mosquitto"). Children that exit meanwhile are
// skipped.
func childrenCPU(comm string) (time.Duration, error) {
	pids, err := children(comm)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, pid := range pids {
		if cpu, err := processCPU(pid); err == nil {
			sum += cpu
		}
	}
	return sum, nil
}

// childrenRSS returns the resident set size (VmRSS) of the running
// children of this process whose command name is comm, in bytes.
func childrenRSS(comm string) (int64, error) {
	pids, err := children(comm)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, pid := range pids {
		if rss, err := processRSS(pid); err == nil {
			sum += rss
		}
	}
	return sum, nil
}

// children returns the pids of the running children of this process whose
// command name is comm.
func children(comm string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // gone
		}
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open || string(b[open+1:end]) != comm {
			continue
		}
		f := strings.Fields(string(b[end+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(self) { // state, then the parent's pid
			continue
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// cpuTimes are the machine's CPU times so far, summed over its CPUs.
type cpuTimes struct{ busy, total time.Duration }

// machineCPU returns the machine's CPU times from the first line of
// /proc/stat: busy is user, nice, system, irq, softirq and steal; total
// adds idle and iowait.
func machineCPU() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, fmt.Errorf("machine CPU: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("machine CPU: unexpected /proc/stat line %q", line)
	}
	var t [8]int64 // user nice system idle iowait irq softirq steal
	for i := range t {
		if t[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return cpuTimes{}, fmt.Errorf("machine CPU: %w", err)
		}
	}
	busy := t[0] + t[1] + t[2] + t[5] + t[6] + t[7]
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clockTicks }
	return cpuTimes{busy: tick(busy), total: tick(busy + t[3] + t[4])}, nil
}

// peakRSS returns the process's peak resident set size (VmHWM) in bytes.
func (p *serveProcess) peakRSS() (int64, error) {
	return processPeakRSS(p.pid())
}

func processPeakRSS(pid int) (int64, error) {
	return procStatusBytes(pid, "VmHWM")
}

// processRSS returns the process's resident set size now (VmRSS) in
// bytes.
func processRSS(pid int) (int64, error) {
	return procStatusBytes(pid, "VmRSS")
}

// procStatusBytes returns the field (in kB) of /proc/PID/status in bytes.
func procStatusBytes(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("%s of pid %d: %w", field, pid, err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("%s of pid %d: unexpected line %q", field, pid, line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s of pid %d: %w", field, pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%s of pid %d: not in /proc status", field, pid)
}
