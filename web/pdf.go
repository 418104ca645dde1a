package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// PDFRenderer turns a report into a PDF. It gets both the report and its
// rendered HTML, so an implementation may print the HTML (Chromium) or lay
// the report out itself (BuiltinPDF).
type PDFRenderer interface {
	RenderPDF(ctx context.Context, r *Report, html []byte) ([]byte, error)
}

// Chromium prints the report's HTML with headless Chromium
// (--print-to-pdf): the PDF is the HTML report as a browser prints it,
// with its CSS print rules, inline SVG charts and the system's CJK fonts
// (Debian: chromium plus fonts-wqy-microhei or fonts-noto-cjk). Each
// render runs a fresh browser with a fresh profile in a temporary folder,
// without network access to anything (the report has no external
// reference and its CSP forbids fetches); at most two run at once. Safe
// for concurrent use.
type Chromium struct {
	Path    string
	Timeout time.Duration // per render (default 60s)
	sem     chan struct{}
}

// NewChromium returns a renderer running the Chromium binary at path.
func NewChromium(path string) *Chromium {
	return &Chromium{Path: path, Timeout: 60 * time.Second, sem: make(chan struct{}, 2)}
}

// FindChromium returns the path of a Chromium or Chrome binary in PATH
// ("" if none).
func FindChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// ChromiumFlags are the flags every headless run uses: no sandbox (the
// content is our own, and containers rarely allow one), no GPU, no
// background traffic, a throw-away profile.
func ChromiumFlags(userDataDir string) []string {
	return []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "--user-data-dir=" + userDataDir}
}

// RunChromium runs Chromium with ChromiumFlags and extra arguments in its
// own process group, killed as a whole when ctx ends, and returns its
// standard output; the error carries the tail of its standard error.
func RunChromium(ctx context.Context, path, userDataDir string, extra ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, append(ChromiumFlags(userDataDir), extra...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(), "HOME="+userDataDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		// Helpers (zygote, renderers) die with the browser; make sure.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		tail := stderr.String()
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return stdout.Bytes(), fmt.Errorf("chromium: %w: %s", err, strings.TrimSpace(tail))
	}
	return stdout.Bytes(), nil
}

// RenderPDF prints html to PDF.
func (c *Chromium) RenderPDF(ctx context.Context, _ *Report, html []byte) ([]byte, error) {
	select {
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "cleanprod-pdf-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	in, out := filepath.Join(dir, "report.html"), filepath.Join(dir, "report.pdf")
	if err := os.WriteFile(in, html, 0o600); err != nil {
		return nil, err
	}
	profile := filepath.Join(dir, "profile")
	if _, err := RunChromium(ctx, c.Path, profile, "--no-pdf-header-footer", "--print-to-pdf="+out, "file://"+in); err != nil {
		if ctx.Err() != nil {
			return nil, errorf(http.StatusServiceUnavailable, codeUnavailable, "rendering the PDF took longer than %s", timeout)
		}
		return nil, err
	}
	pdf, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("chromium wrote no PDF: %w", err)
	}
	if !bytes.HasPrefix(pdf, []byte("%PDF-")) {
		return nil, errors.New("chromium wrote something that is not a PDF")
	}
	return pdf, nil
}
