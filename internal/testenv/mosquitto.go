package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	mosquittoReadyTimeout = 15 * time.Second
	mosquittoStopGrace    = 10 * time.Second
	startAttempts         = 3 // new ports tried when a fresh server cannot bind
)

// Broker is a mosquitto broker started by Mosquitto for one test.
//
// Its state directory (Dir) holds the config, the persistence database and
// the log, and is its working directory, so relative paths in extra config
// lines resolve there.
type Broker struct {
	t    testing.TB // test that owns the broker; nil for one from StartMosquitto
	name string     // who started it, for the config file's header
	bin  string
	dir  string
	port int
	cred *syscall.Credential // user the broker runs as; nil: the test's own

	mu   sync.Mutex
	proc *process // guarded by mu; nil while stopped
}

// MosquittoOption changes the configuration of a Broker.
type MosquittoOption func(*mosquittoConfig)

type mosquittoConfig struct {
	anonymous bool
	lines     []string
	files     []mosquittoFile
}

type mosquittoFile struct {
	name string
	data []byte
}

// WithConfig appends raw lines to the broker's config file, such as
// "password_file passwd", "acl_file acl" or a second "listener PORT
// 127.0.0.1" with its TLS settings (see FreePort). Relative paths resolve in
// the broker's state directory.
func WithConfig(lines ...string) MosquittoOption {
	return func(c *mosquittoConfig) { c.lines = append(c.lines, lines...) }
}

// WithFile writes data to the file name in the broker's state directory
// before it starts, readable by the broker: a password file, an ACL file, a
// certificate or key. Refer to it by name in WithConfig lines.
func WithFile(name string, data []byte) MosquittoOption {
	return func(c *mosquittoConfig) { c.files = append(c.files, mosquittoFile{name, data}) }
}

// WithoutAnonymous makes the broker refuse clients without a user name
// ("allow_anonymous false"); pair it with a password_file.
func WithoutAnonymous() MosquittoOption {
	return func(c *mosquittoConfig) { c.anonymous = false }
}

// Mosquitto starts a fresh mosquitto broker on a free port of 127.0.0.1 and
// returns once it accepts TCP connections. The broker persists its state
// (retained messages, persistent sessions and their queues) in a state
// directory under t.TempDir(), which survives Stop and Start; mosquitto
// saves it on a clean shutdown (Stop), not on Kill. The test's cleanup stops
// the broker.
//
// The binary is $CLEANPROD_MOSQUITTO, else mosquitto in PATH, else
// /usr/sbin/mosquitto. When running as root, the broker runs as the user
// mosquitto, which owns the state directory.
func Mosquitto(t testing.TB, opts ...MosquittoOption) *Broker {
	t.Helper()
	bin, looked := findBinary(envMosquitto, mosquittoCandidates...)
	if bin == "" {
		missingBinary(t, "mosquitto", looked)
	}
	b, err := startMosquitto(bin, filepath.Join(t.TempDir(), "mosquitto"), t.Name(), opts)
	if err != nil {
		t.Fatalf("testenv: mosquitto: %v", err)
	}
	b.t = t
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(b.Stop)
	return b
}

// StartMosquitto starts a fresh mosquitto broker as Mosquitto does, for a
// program rather than a test (a benchmark, say): its state directory is
// dir, which StartMosquitto creates (its parent must exist), and the caller
// stops it with Close. A missing binary is an error wrapping
// ErrNotInstalled.
func StartMosquitto(dir string, opts ...MosquittoOption) (*Broker, error) {
	bin, looked := findBinary(envMosquitto, mosquittoCandidates...)
	if bin == "" {
		return nil, notInstalled("mosquitto", looked)
	}
	b, err := startMosquitto(bin, dir, "StartMosquitto", opts)
	if err != nil {
		return nil, fmt.Errorf("testenv: mosquitto: %w", err)
	}
	return b, nil
}

var mosquittoCandidates = []string{"mosquitto", "/usr/sbin/mosquitto"}

// startMosquitto starts bin with its state in dir (created here) on a free
// port, trying new ports if the chosen one was taken meanwhile. On an error
// nothing is left running.
func startMosquitto(bin, dir, name string, opts []MosquittoOption) (*Broker, error) {
	cfg := mosquittoConfig{anonymous: true}
	for _, o := range opts {
		o(&cfg)
	}
	b := &Broker{name: name, bin: bin, dir: dir}
	if err := b.prepare(cfg); err != nil {
		return nil, err
	}
	var err error
	for range startAttempts {
		if b.port, err = freePort(); err != nil {
			return nil, err
		}
		if err = b.writeConfig(cfg); err != nil {
			return nil, err
		}
		if err = b.start(); !retryOnNewPort(err, b.logPath()) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, LogTail(b.logPath()))
	}
	return b, nil
}

// prepare creates the state directory and the files of cfg, and decides
// which user the broker runs as.
func (b *Broker) prepare(cfg mosquittoConfig) error {
	if err := os.Mkdir(b.dir, 0o755); err != nil {
		return err
	}
	for _, f := range cfg.files {
		if err := os.WriteFile(filepath.Join(b.dir, f.name), f.data, 0o600); err != nil {
			return err
		}
	}
	if os.Geteuid() != 0 {
		return nil
	}
	// As root mosquitto would switch to the user mosquitto itself, which
	// clears the parent-death signal; starting it as that user keeps it.
	u, err := user.Lookup("mosquitto")
	if err != nil {
		return nil // no such user: mosquitto runs as root and says so in its log
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	b.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return makeTraversable(b.dir)
}

// writeConfig writes mosquitto.conf for the current port; the settings are
// those of SETUP.md.
func (b *Broker) writeConfig(cfg mosquittoConfig) error {
	lines := []string{
		"# Written by cleanprod internal/testenv for " + b.name,
		"per_listener_settings false",
		fmt.Sprintf("allow_anonymous %t", cfg.anonymous),
		fmt.Sprintf("listener %d 127.0.0.1", b.port),
		"persistence true",
		"persistence_location " + b.dir + "/",
		// Debian's default of 1000 silently drops QoS 1 messages for a slow
		// subscriber.
		"max_queued_messages 1000000",
		"max_inflight_messages 1000",
		"pid_file " + filepath.Join(b.dir, "mosquitto.pid"),
		"log_dest file " + b.logPath(),
	}
	lines = append(lines, cfg.lines...)
	conf := strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(b.confPath(), []byte(conf), 0o644); err != nil {
		return err
	}
	// The log is shared: mosquitto appends to it, and so does its stderr.
	f, err := os.OpenFile(b.logPath(), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	f.Close()
	if b.cred != nil {
		return chownTree(b.dir, int(b.cred.Uid), int(b.cred.Gid))
	}
	return nil
}

func (b *Broker) confPath() string { return filepath.Join(b.dir, "mosquitto.conf") }
func (b *Broker) logPath() string  { return filepath.Join(b.dir, "mosquitto.log") }

// start starts the broker process and waits until its port accepts TCP.
func (b *Broker) start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc != nil {
		return errors.New("already running")
	}
	p, err := startProcess(b.bin, []string{"-c", b.confPath()}, b.dir, b.logPath(), b.cred)
	if err != nil {
		return err
	}
	if err := p.waitReady(mosquittoReadyTimeout, func() bool { return tcpReady(b.Addr()) }); err != nil {
		p.kill()
		return fmt.Errorf("mosquitto on %s: %w", b.Addr(), err)
	}
	b.proc = p
	return nil
}

// URL returns the broker's address for paho: "tcp://127.0.0.1:PORT".
func (b *Broker) URL() string { return "tcp://" + b.Addr() }

// Addr returns the broker's "127.0.0.1:PORT".
func (b *Broker) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// Port returns the broker's TCP port.
func (b *Broker) Port() int { return b.port }

// Dir returns the broker's state directory.
func (b *Broker) Dir() string { return b.dir }

// Stop shuts the broker down cleanly (SIGTERM), saving its persistent state,
// and waits for it to exit. Stopping a stopped broker does nothing. Like
// Start, it reports failures on the test that called Mosquitto: a broker
// from StartMosquitto has none, use Close.
func (b *Broker) Stop() {
	b.t.Helper()
	if err := b.Close(); err != nil {
		b.t.Errorf("%v", err)
	}
}

// Close shuts the broker down as Stop does and returns what went wrong.
// Its state directory stays.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc == nil {
		return nil
	}
	err := b.proc.stop(mosquittoStopGrace)
	b.proc = nil
	if err != nil {
		return fmt.Errorf("testenv: stop mosquitto on %s: %w", b.Addr(), err)
	}
	return nil
}

// Kill kills the broker (SIGKILL), as a crash would, and waits for it to
// exit. State changed since the last save is lost. Killing a stopped broker
// does nothing.
func (b *Broker) Kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc != nil {
		b.proc.kill()
		b.proc = nil
	}
}

// Start starts a stopped broker again on the same port with the same state
// directory, and returns once it accepts TCP connections.
func (b *Broker) Start() {
	b.t.Helper()
	if err := b.start(); err != nil {
		b.t.Fatalf("testenv: restart mosquitto: %v\n%s", err, LogTail(b.logPath()))
	}
}

// LogText returns the broker's log so far: mosquitto's own log lines and
// anything it wrote to stderr, across restarts.
func (b *Broker) LogText() string {
	data, err := os.ReadFile(b.logPath())
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(data)
}
