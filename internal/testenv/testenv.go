package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Environment variables read by this package. scripts/test sets all three.
const (
	envMosquitto      = "CLEANPROD_MOSQUITTO"       // path of the mosquitto binary
	envInfluxd        = "CLEANPROD_INFLUXD"         // path of the influxd 1.8 binary
	envRequireServers = "CLEANPROD_REQUIRE_SERVERS" // "1": a missing binary fails the test
)

// mainRunning is set by Main; Influx refuses to start the shared server
// without it, because nothing else would stop it and remove its data.
var mainRunning atomic.Bool

// Main runs the tests of a package and then stops the servers shared by
// them (the influxd behind Influx), so none outlives the test binary. Call
// it as the whole TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// Main does not return: it exits with the tests' exit code.
func Main(m *testing.M) {
	mainRunning.Store(true)
	code := m.Run()
	if err := stopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// an extra listener a test configures itself (a TLS listener on a Broker,
// say). Another process may take it before the test binds it; servers
// started by this package retry with a new port when that happens.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return port
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// findBinary returns the path of a server binary: the file named by the
// environment variable env if it is set, else the first of candidates that
// exists (a bare name is looked up in PATH). It returns "" and a description
// of where it looked when there is none.
func findBinary(env string, candidates ...string) (path, looked string) {
	if p := os.Getenv(env); p != "" {
		if isExecutable(p) {
			return p, ""
		}
		return "", fmt.Sprintf("%s=%s is not an executable file", env, p)
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if !strings.Contains(c, "/") {
			if p, err := exec.LookPath(c); err == nil {
				return p, ""
			}
			continue
		}
		if isExecutable(c) {
			return c, ""
		}
	}
	return "", fmt.Sprintf("%s is unset and none of %q exists", env, candidates)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// ErrNotInstalled is what the error of StartMosquitto and StartInflux is
// (errors.Is) when the server's binary is not found.
var ErrNotInstalled = errors.New("testenv: server binary not found")

// notInstalledError says which binary is missing and where it was looked for.
type notInstalledError struct{ name, looked string }

func notInstalled(name, looked string) error { return &notInstalledError{name, looked} }

func (e *notInstalledError) Error() string {
	return fmt.Sprintf("testenv: %s not found (%s); run scripts/test, which installs it", e.name, e.looked)
}

func (e *notInstalledError) Is(target error) bool { return target == ErrNotInstalled }

// NeedServers skips the test when the mosquitto or influxd binary is not
// found, or fails it when CLEANPROD_REQUIRE_SERVERS=1, as Mosquitto and
// NewInflux do. Tests that start the servers through a program using
// StartMosquitto and StartInflux call it first.
func NeedServers(t testing.TB) {
	t.Helper()
	if bin, looked := findBinary(envMosquitto, mosquittoCandidates...); bin == "" {
		missingBinary(t, "mosquitto", looked)
	}
	influxdBinary(t)
}

// missingBinary skips the test, or fails it when CLEANPROD_REQUIRE_SERVERS=1.
func missingBinary(t testing.TB, name, looked string) {
	t.Helper()
	msg := notInstalled(name, looked).Error()
	if os.Getenv(envRequireServers) == "1" {
		t.Fatal(msg + " [" + envRequireServers + "=1, so this fails instead of skipping]")
	}
	t.Skip(msg)
}

// moduleRoot returns the nearest directory at or above the working
// directory that holds go.mod, or "" if there is none.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// makeTraversable adds execute (search) permission for others to dir and to
// each of its parents below the system temp directory, so a server running
// as another user can reach files in dir. Test temp dirs are created 0700;
// no read permission is added, so their listings stay private.
func makeTraversable(dir string) error {
	top := filepath.Clean(os.TempDir())
	for d := filepath.Clean(dir); strings.HasPrefix(d, top+string(filepath.Separator)); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if perm := fi.Mode().Perm(); perm&0o001 == 0 {
			if err := os.Chmod(d, perm|0o011); err != nil {
				return err
			}
		}
	}
	return nil
}

// chownTree gives dir and everything in it to uid:gid.
func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// process is one run of a server binary, started as a child of the test
// binary in its own process group.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // result of Wait; read only after done is closed
}

// startProcess starts bin with args in dir, appending its stdout and stderr
// to logPath. cred, if not nil, is the user to run as. The child gets
// SIGKILL when the test binary dies (Pdeathsig; it is set after the switch
// to cred, so it survives it).
func startProcess(bin string, args []string, dir, logPath string, cred *syscall.Credential) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor once started

	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
		Credential: cred,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// signal sends sig to the process group, unless the process has exited.
func (p *process) signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// stop sends SIGTERM and waits for the process to exit. If it has not
// exited after grace, stop kills it and reports that.
func (p *process) stop(grace time.Duration) error {
	p.signal(syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
		p.kill()
		return fmt.Errorf("pid %d did not exit within %v of SIGTERM; killed it", p.cmd.Process.Pid, grace)
	}
}

// kill sends SIGKILL and waits for the process to exit.
func (p *process) kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// errExited is returned by waitReady when the process exits before it is
// ready.
var errExited = errors.New("exited before it was ready")

// retryOnNewPort reports whether a first start that failed with err may
// succeed on another port: the server exited, and its log says a port was
// taken (by another process, after freePort found it free).
func retryOnNewPort(err error, logPath string) bool {
	if !errors.Is(err, errExited) {
		return false
	}
	log, _ := os.ReadFile(logPath)
	return bytes.Contains(bytes.ToLower(log), []byte("address already in use"))
}

// waitReady polls ready until it reports true, the process exits or timeout
// passes.
func (p *process) waitReady(timeout time.Duration, ready func() bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready() {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%w (%v)", errExited, p.err)
		case <-deadline.C:
			return fmt.Errorf("not ready after %v", timeout)
		case <-tick.C:
		}
	}
}

// tcpReady reports whether something accepts TCP connections on addr.
func tcpReady(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// LogTail returns the last lines of the file at path (a server's log),
// for failure messages.
func LogTail(path string) string {
	const maxBytes, maxLines = 8 << 10, 40
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > maxBytes {
		b = b[len(b)-maxBytes:]
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return fmt.Sprintf("--- last lines of %s ---\n%s\n---", path, bytes.Join(lines, []byte("\n")))
}

// FolderState lists every file and folder under dir with its size and
// modification time: equal states before and after show that nothing
// wrote there, where read-only modes prove nothing (tests running as
// root).
func FolderState(t testing.TB, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %s\n", p, fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
