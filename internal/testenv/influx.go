package testenv

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	influxReadyTimeout = 90 * time.Second // ~5 s when idle; CI runs packages in parallel under -race
	influxStopGrace    = 30 * time.Second
	influxAdmin        = "admin"
	influxPassword     = "cleanprod-test" // loopback only
	influxOrg          = "cleanprod"      // InfluxDB 1.8 ignores the org
)

// InfluxServer is an influxd 1.8 process. NewInflux starts a dedicated one
// for a test; Influx shares one per test binary.
type InfluxServer struct {
	t        testing.TB // test that owns the server; nil for the shared one and one from StartInflux
	bin      string
	dir      string
	httpPort int
	rpcPort  int

	mu       sync.Mutex
	proc     *process // guarded by mu; nil while stopped
	hasAdmin bool     // guarded by mu; the admin user exists
}

// InfluxDB is a database of its own for one test, on an InfluxServer. Its
// fields are what a client needs, for the v2 API (URL, Token, Org, Bucket)
// as well as the 1.x API (URL, Token, Database).
type InfluxDB struct {
	URL      string // "http://127.0.0.1:PORT"
	Token    string // "admin:<password>", for "Authorization: Token ..."
	Org      string // any string; 1.8 ignores it
	Database string // unique per call: test name and a sequence number
	Bucket   string // Database + "/autogen"
}

// Shared server of the test binary: started by the first Influx call,
// stopped by Main.
var (
	sharedOnce   sync.Once
	sharedServer *InfluxServer
	sharedErr    error
	dbSeq        atomic.Int64 // numbers databases, unique within the binary
)

// Influx returns a fresh, empty database on the influxd shared by all tests
// of the binary, starting it on first use (which takes about 5 s). The
// database is dropped when the test ends. The package's TestMain must call
// Main, which stops the shared server.
//
// The binary is $CLEANPROD_INFLUXD, else .cache/bin/influxd in the module
// root (built by scripts/test), else influxd in PATH.
func Influx(t testing.TB) *InfluxDB {
	t.Helper()
	if !mainRunning.Load() {
		t.Fatal("testenv: Influx needs the package's TestMain to call testenv.Main(m), which stops the shared influxd: add\n\tfunc TestMain(m *testing.M) { testenv.Main(m) }")
	}
	bin := influxdBinary(t)
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cleanprod-influxd-")
		if err != nil {
			sharedErr = err
			return
		}
		sharedServer = &InfluxServer{bin: bin, dir: dir}
		sharedErr = sharedServer.startFresh()
	})
	if sharedErr != nil {
		t.Fatalf("testenv: shared influxd: %v", sharedErr)
	}
	db := sharedServer.Database(t)
	t.Cleanup(func() {
		if _, err := influxQL(db.URL, db.Token, "", `DROP DATABASE "`+db.Database+`"`); err != nil {
			t.Logf("testenv: drop database %s: %v", db.Database, err)
		}
	})
	return db
}

// stopShared stops the shared influxd, if it was started, and removes its
// data.
func stopShared() error {
	if sharedServer == nil {
		return nil
	}
	err := sharedServer.stop()
	if rmErr := os.RemoveAll(sharedServer.dir); rmErr != nil {
		err = errors.Join(err, rmErr)
	}
	if err != nil {
		return fmt.Errorf("stop shared influxd: %w", err)
	}
	return nil
}

// NewInflux starts an influxd for this test alone, with its data under
// t.TempDir(), for tests that Stop, Kill or Start the database. Call
// Database for a database on it. The test's cleanup stops it.
func NewInflux(t testing.TB) *InfluxServer {
	t.Helper()
	s := &InfluxServer{t: t, bin: influxdBinary(t), dir: filepath.Join(t.TempDir(), "influxd")}
	if err := os.Mkdir(s.dir, 0o755); err != nil {
		t.Fatalf("testenv: influxd: %v", err)
	}
	t.Cleanup(s.Stop)
	if err := s.startFresh(); err != nil {
		t.Fatalf("testenv: influxd: %v", err)
	}
	return s
}

// StartInflux starts a dedicated influxd as NewInflux does, for a program
// rather than a test (a benchmark, say): its data directory is dir, which
// StartInflux creates (its parent must exist), and the caller stops it
// with Close. Create databases on it with CreateDatabase. A missing binary
// is an error wrapping ErrNotInstalled.
func StartInflux(dir string) (*InfluxServer, error) {
	bin, looked := findInfluxd()
	if bin == "" {
		return nil, notInstalled("influxd 1.8.10", looked)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("testenv: influxd: %w", err)
	}
	s := &InfluxServer{bin: bin, dir: dir}
	if err := s.startFresh(); err != nil {
		return nil, fmt.Errorf("testenv: influxd: %w", err)
	}
	return s, nil
}

func influxdBinary(t testing.TB) string {
	t.Helper()
	bin, looked := findInfluxd()
	if bin == "" {
		missingBinary(t, "influxd 1.8.10", looked)
	}
	return bin
}

// findInfluxd returns the influxd binary to use, or "" and where it looked.
func findInfluxd() (path, looked string) {
	var cached string
	if root := moduleRoot(); root != "" {
		cached = filepath.Join(root, ".cache", "bin", "influxd")
	}
	return findBinary(envInfluxd, cached, "influxd")
}

// startFresh picks ports, writes the config and starts the server for the
// first time, trying new ports if the chosen ones were taken meanwhile.
func (s *InfluxServer) startFresh() error {
	var err error
	for range startAttempts {
		if s.httpPort, err = freePort(); err != nil {
			return err
		}
		if s.rpcPort, err = freePort(); err != nil {
			return err
		}
		if err = s.writeConfig(); err != nil {
			return err
		}
		if err = s.start(); !retryOnNewPort(err, s.logPath()) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("%w\n%s", err, LogTail(s.logPath()))
	}
	return nil
}

// writeConfig writes influxd.conf: the configuration of SETUP.md.
func (s *InfluxServer) writeConfig() error {
	conf := fmt.Sprintf(`# Written by cleanprod internal/testenv.
reporting-disabled = true
bind-address = "127.0.0.1:%[2]d"

[meta]
  dir = "%[1]s/meta"

[data]
  dir = "%[1]s/data"
  wal-dir = "%[1]s/wal"
  query-log-enabled = false
  # The 25 MB default snapshots the cache every couple of seconds under
  # cleanprod's load, at up to twice the CPU per point (BENCHMARKS.md).
  cache-snapshot-memory-size = "256m"

[monitor]
  store-enabled = false

[http]
  bind-address = "127.0.0.1:%[3]d"
  auth-enabled = true
  log-enabled = false
  flux-enabled = true

[continuous_queries]
  enabled = false
`, s.dir, s.rpcPort, s.httpPort)
	return os.WriteFile(s.confPath(), []byte(conf), 0o644)
}

func (s *InfluxServer) confPath() string { return filepath.Join(s.dir, "influxd.conf") }
func (s *InfluxServer) logPath() string  { return filepath.Join(s.dir, "influxd.log") }

// start starts influxd, waits until GET /ping answers 204 and creates the
// admin user on the first start.
func (s *InfluxServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("already running")
	}
	p, err := startProcess(s.bin, []string{"run", "-config", s.confPath()}, s.dir, s.logPath(), nil)
	if err != nil {
		return err
	}
	ping := &http.Client{Timeout: time.Second}
	ready := func() bool {
		resp, err := ping.Get(s.URL() + "/ping")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusNoContent
	}
	if err := p.waitReady(influxReadyTimeout, ready); err != nil {
		p.kill()
		return fmt.Errorf("influxd on %s: %w", s.URL(), err)
	}
	s.proc = p
	if !s.hasAdmin {
		// Needs no credentials while no user exists.
		q := fmt.Sprintf("CREATE USER %s WITH PASSWORD '%s' WITH ALL PRIVILEGES", influxAdmin, influxPassword)
		if _, err := influxQL(s.URL(), "", "", q); err != nil {
			return fmt.Errorf("create admin user: %w", err)
		}
		s.hasAdmin = true
	}
	return nil
}

// stop stops influxd cleanly, if it runs.
func (s *InfluxServer) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	err := s.proc.stop(influxStopGrace)
	s.proc = nil
	return err
}

// URL returns the server's HTTP address: "http://127.0.0.1:PORT".
func (s *InfluxServer) URL() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.httpPort))
}

// Token returns the admin credentials for "Authorization: Token ...":
// "admin:<password>".
func (s *InfluxServer) Token() string { return influxAdmin + ":" + influxPassword }

// Database creates a fresh, uniquely named database on the server and
// returns its handle. The server must be running.
func (s *InfluxServer) Database(t testing.TB) *InfluxDB {
	t.Helper()
	db, err := s.CreateDatabase(databaseName(t))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// CreateDatabase creates the database name (letters, digits and '_') on
// the server, if it does not exist yet, and returns its handle. The server
// must be running.
func (s *InfluxServer) CreateDatabase(name string) (*InfluxDB, error) {
	if name == "" || strings.IndexFunc(name, func(r rune) bool { return !isNameRune(r) }) >= 0 {
		return nil, fmt.Errorf("testenv: database name %q: want letters, digits and '_'", name)
	}
	db := &InfluxDB{
		URL:      s.URL(),
		Token:    s.Token(),
		Org:      influxOrg,
		Database: name,
		Bucket:   name + "/autogen",
	}
	if _, err := influxQL(db.URL, db.Token, "", `CREATE DATABASE "`+db.Database+`"`); err != nil {
		return nil, fmt.Errorf("testenv: create database %s: %w", db.Database, err)
	}
	return db, nil
}

// Drop drops the database and everything in it. Tests need not call it
// (Influx drops its databases when the test ends); programs using
// StartInflux free the server's memory with it.
func (db *InfluxDB) Drop() error {
	if _, err := influxQL(db.URL, db.Token, "", `DROP DATABASE "`+db.Database+`"`); err != nil {
		return fmt.Errorf("testenv: drop database %s: %w", db.Database, err)
	}
	return nil
}

func isNameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_'
}

// databaseName makes a database name from the test name and a number, so a
// leftover database tells which test made it.
func databaseName(t testing.TB) string {
	name := strings.Map(func(r rune) rune {
		if isNameRune(r) {
			return r
		}
		return '_'
	}, t.Name())
	if len(name) > 48 {
		name = name[:48]
	}
	return fmt.Sprintf("%s_%d", name, dbSeq.Add(1))
}

// Stop shuts the server down cleanly (SIGTERM) and waits for it to exit.
// Stopping a stopped server does nothing. Like Start, it reports failures
// on the test that called NewInflux: a server from StartInflux has none,
// use Close.
func (s *InfluxServer) Stop() {
	s.t.Helper()
	if err := s.Close(); err != nil {
		s.t.Errorf("%v", err)
	}
}

// Close shuts the server down as Stop does and returns what went wrong.
// Its data directory stays.
func (s *InfluxServer) Close() error {
	if err := s.stop(); err != nil {
		return fmt.Errorf("testenv: stop influxd on %s: %w", s.URL(), err)
	}
	return nil
}

// Kill kills the server (SIGKILL), as a crash would, and waits for it to
// exit. Writes it acknowledged survive in its WAL. Killing a stopped server
// does nothing.
func (s *InfluxServer) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.kill()
		s.proc = nil
	}
}

// Start starts a stopped server again on the same port with the same data,
// and returns once it answers /ping. Databases and their handles stay valid.
func (s *InfluxServer) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("testenv: restart influxd: %v\n%s", err, LogTail(s.logPath()))
	}
}

// LogText returns what influxd has logged so far, across restarts.
func (s *InfluxServer) LogText() string {
	data, err := os.ReadFile(s.logPath())
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(data)
}

// QueryInfluxQL runs an InfluxQL query on the database (POST /query) and
// returns the rows of every series of every statement, in order; the tags of
// grouped series are not included. Numbers are float64 and times RFC 3339
// strings, as in InfluxDB's JSON. An error, in the response or in any
// statement, fails the test.
func (db *InfluxDB) QueryInfluxQL(t testing.TB, q string) [][]any {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// Query runs an InfluxQL query as QueryInfluxQL does, for programs using
// StartInflux: it returns an error instead of failing a test.
func (db *InfluxDB) Query(q string) ([][]any, error) {
	rows, err := influxQL(db.URL, db.Token, db.Database, q)
	if err != nil {
		return nil, fmt.Errorf("testenv: InfluxQL %q: %w", q, err)
	}
	return rows, nil
}

// CountReadings counts cleanprod's readings in the database that meet the
// InfluxQL condition where (all when it is empty): every reading has a
// delta field (counters and delta meters) or a value field (gauges), never
// both.
func (db *InfluxDB) CountReadings(where string) (int, error) {
	n := 0
	for _, field := range []string{"delta", "value"} {
		q := fmt.Sprintf(`SELECT count(%q) FROM "reading"`, field)
		if where != "" {
			q += " WHERE " + where
		}
		rows, err := db.Query(q)
		if err != nil {
			return 0, err
		}
		if len(rows) == 0 {
			continue // none of this kind
		}
		if len(rows) != 1 || len(rows[0]) != 2 {
			return 0, fmt.Errorf("testenv: count readings: got rows %v, want one count", rows)
		}
		c, ok := rows[0][1].(float64)
		if !ok {
			return 0, fmt.Errorf("testenv: count readings: got %v, want a number", rows[0][1])
		}
		n += int(c)
	}
	return n, nil
}

// MustCountReadings is CountReadings failing the test on an error.
func (db *InfluxDB) MustCountReadings(t testing.TB, where string) int {
	t.Helper()
	n, err := db.CountReadings(where)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// QueryFlux runs a Flux query (POST /api/v2/query) and returns its rows as
// maps from column name to value, every table in order, including the
// "result" and "table" columns. Values are typed from the CSV annotations:
// string, int64 (long), uint64 (unsignedLong), float64 (double), bool
// (boolean) and time.Time (dateTime); null is nil. An error fails the test.
func (db *InfluxDB) QueryFlux(t testing.TB, flux string) []map[string]any {
	t.Helper()
	rows, err := fluxQuery(db.URL, db.Token, flux)
	if err != nil {
		t.Fatalf("testenv: Flux query: %v\n%s", err, flux)
	}
	return rows
}

// Write writes points in line protocol (nanosecond timestamps) to the
// database through POST /api/v2/write, as the service does.
func (db *InfluxDB) Write(t testing.TB, lineProtocol string) {
	t.Helper()
	u := db.URL + "/api/v2/write?" + url.Values{
		"org":       {db.Org},
		"bucket":    {db.Bucket},
		"precision": {"ns"},
	}.Encode()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(lineProtocol))
	if err != nil {
		t.Fatalf("testenv: write: %v", err)
	}
	req.Header.Set("Authorization", "Token "+db.Token)
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	if _, err := do(req, http.StatusNoContent); err != nil {
		t.Fatalf("testenv: write to %s: %v", db.Bucket, err)
	}
}
