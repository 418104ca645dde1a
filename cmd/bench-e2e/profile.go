package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

const (
	// segmentSeconds is the length of each CPU profile fetched from serve.
	// pprof's /debug/pprof/profile takes whole seconds and returns nothing
	// when the request is cancelled, so the timed part of a phase (whose
	// end is not known beforehand) is covered by back-to-back profiles of
	// this length, merged afterwards: the last one ends at most this long
	// after the timed part.
	segmentSeconds = 1
	// topNodes is how many functions the results list of each profile.
	topNodes = 25
	// listenWait is how long the first CPU profile is asked for again
	// while serve, just launched, does not answer yet.
	listenWait = time.Minute
)

// cpuProfiler fetches CPU profiles of segmentSeconds from a pprof listener
// back to back into dir until it is stopped.
type cpuProfiler struct {
	base     string // http://ADDR of serve's debug.pprof_listen
	dir      string
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	// Read after done is closed.
	segments []string      // the profiles fetched
	span     time.Duration // from the first request to the last answer
	err      error
}

// startCPUProfiler starts fetching CPU profiles from base.
func startCPUProfiler(ctx context.Context, base, dir string) (*cpuProfiler, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &cpuProfiler{base: base, dir: dir, stop: make(chan struct{}), done: make(chan struct{})}
	go p.run(ctx)
	return p, nil
}

func (p *cpuProfiler) run(ctx context.Context) {
	defer close(p.done)
	client := &http.Client{Timeout: segmentSeconds*time.Second + 30*time.Second}
	start := time.Now()
	defer func() { p.span = time.Since(start) }()
	for i := 1; ; i++ {
		select {
		case <-p.stop:
			return
		default:
		}
		path := filepath.Join(p.dir, fmt.Sprintf("cpu-%04d.pprof", i))
		if err := fetch(ctx, client, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", p.base, segmentSeconds), path); err != nil {
			// A process just launched may not listen yet.
			if len(p.segments) == 0 && time.Since(start) < listenWait && sleep(ctx, 20*time.Millisecond) {
				i--
				continue
			}
			p.err = fmt.Errorf("CPU profile %d: %w", i, err)
			return
		}
		p.segments = append(p.segments, path)
	}
}

// finish stops fetching after the current profile, waits for it and
// returns the profiles fetched and the time they span. It may be called
// again.
func (p *cpuProfiler) finish() ([]string, time.Duration, error) {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.done
	if p.err == nil && len(p.segments) == 0 {
		p.err = errors.New("no CPU profile fetched")
	}
	return p.segments, p.span, p.err
}

// fetch gets url into the file at path.
func fetch(ctx context.Context, client *http.Client, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(msg))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return f.Close()
}

// profileResult is what -profile saved of one phase.
type profileResult struct {
	Phase  string `json:"phase"`
	Binary string `json:"binary"` // the serve binary, for go tool pprof BIN PROFILE
	CPU    string `json:"cpu_profile"`
	Heap   string `json:"heap_profile"`
	// CPU profiles of segmentSeconds fetched back to back from the first
	// publish until the last one ended, after the timed part.
	Segments       int     `json:"cpu_segments"`
	ProfileSeconds float64 `json:"cpu_profile_seconds"` // wall time the segments span
	TimedSeconds   float64 `json:"timed_seconds"`       // the phase's timed part
	// go tool pprof -top output: CPU by flat and by cumulative time, heap
	// (inuse_space, after a GC) by flat and by cumulative bytes.
	CPUTopFlat  string `json:"cpu_top_flat,omitempty"`
	CPUTopCum   string `json:"cpu_top_cum,omitempty"`
	HeapTopFlat string `json:"heap_top_flat,omitempty"`
	HeapTopCum  string `json:"heap_top_cum,omitempty"`
	Error       string `json:"error,omitempty"` // why the tops are missing
}

// profilePhase starts profiling srv's CPU for phase if it has a pprof
// listener (-profile); it returns nil otherwise.
func (b *bench) profilePhase(ctx context.Context, srv *serveProcess, phase string) (*cpuProfiler, error) {
	if srv.pprofBase == "" {
		return nil, nil
	}
	return startCPUProfiler(ctx, srv.pprofBase, filepath.Join(srv.dir, "cpu-profiles"))
}

// finishProfile ends prof once the timed part (timed long) of phase is
// over: it waits for the last CPU profile, fetches a heap profile (after a
// GC, so it shows what is live), and saves both, merged, into -profile
// with the serve binary.
func (b *bench) finishProfile(ctx context.Context, prof *cpuProfiler, srv *serveProcess, phase string, timed time.Duration) (*profileResult, error) {
	b.progress("waiting for the last CPU profile; fetching a heap profile")
	segs, span, err := prof.finish()
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", phase, err)
	}
	if err := os.MkdirAll(b.cfg.profile, 0o755); err != nil {
		return nil, err
	}
	base := filepath.Join(b.cfg.profile, fmt.Sprintf("bench-%s-%s", b.stamp, phase))
	r := &profileResult{Phase: phase, CPU: base + "-cpu.pprof", Heap: base + "-heap.pprof",
		Segments: len(segs), ProfileSeconds: span.Seconds(), TimedSeconds: timed.Seconds()}
	client := &http.Client{Timeout: 60 * time.Second}
	if err := fetch(ctx, client, srv.pprofBase+"/debug/pprof/heap?gc=1", r.Heap); err != nil {
		return nil, fmt.Errorf("heap profile %s: %w", phase, err)
	}
	if r.Binary, err = b.profileBinary(); err != nil {
		return nil, err
	}
	// Without go in PATH the run goes on without the CPU profile.
	if err := mergeCPU(ctx, r.CPU, segs); err != nil {
		r.Error = fmt.Sprintf("merge the CPU profiles: %v", err)
		b.progress("warning: %s: %s", phase, r.Error)
	}
	return r, nil
}

// mergeCPU writes the CPU profiles segs, merged, to out: pprof itself
// adds up the samples of profiles of one binary.
func mergeCPU(ctx context.Context, out string, segs []string) error {
	_, err := goTool(ctx, append([]string{"pprof", "-proto", "-output", out}, segs...)...)
	return err
}

// tops fills in the top functions of r's profiles (go tool pprof -top,
// four at once); a failure is recorded in r, not fatal.
func (r *profileResult) tops(ctx context.Context) {
	if r.Error != "" {
		return
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	top := func(out *string, args ...string) {
		wg.Go(func() {
			text, err := goTool(ctx, append([]string{"pprof", "-top", fmt.Sprintf("-nodecount=%d", topNodes)}, args...)...)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			*out = strings.TrimSpace(text)
		})
	}
	top(&r.CPUTopFlat, r.Binary, r.CPU)
	top(&r.CPUTopCum, "-cum", r.Binary, r.CPU)
	top(&r.HeapTopFlat, "-sample_index=inuse_space", r.Binary, r.Heap)
	top(&r.HeapTopCum, "-sample_index=inuse_space", "-cum", r.Binary, r.Heap)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		r.Error = err.Error()
	}
}

// profileBinary returns the serve binary for the saved profiles: -cleanprod
// as given, or the one built for the run copied into -profile (the
// temporary directory goes at the end).
func (b *bench) profileBinary() (string, error) {
	if b.cfg.cleanprod != "" {
		return filepath.Abs(b.bin)
	}
	if b.savedBin != "" {
		return b.savedBin, nil
	}
	dst := filepath.Join(b.cfg.profile, fmt.Sprintf("bench-%s-cleanprod", b.stamp))
	data, err := os.ReadFile(b.bin)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		return "", err
	}
	b.savedBin = dst
	return dst, nil
}

// goTool runs "go tool ARGS" and returns its standard output.
func goTool(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", append([]string{"tool"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go tool %s: %w\n%s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}
