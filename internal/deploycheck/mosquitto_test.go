package deploycheck

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/cleanprod/cleanprod/gatewayauth"
	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/registry"
)

// broker is a mosquitto started from deploy/mosquitto/mosquitto.conf.
type broker struct {
	url   string
	creds gatewayauth.Credentials
	reg   *registry.Registry
}

// brokerFiles are the files `cleanprod gateways mosquitto-acl` writes.
type brokerFiles struct {
	passwd, acl []byte
	creds       gatewayauth.Credentials
}

// generateBrokerFiles makes them with package gatewayauth, as the command
// does.
func generateBrokerFiles(t *testing.T, reg *registry.Registry) brokerFiles {
	t.Helper()
	creds := gatewayauth.Credentials{}
	if _, err := creds.Complete(reg, "cleanprod"); err != nil {
		t.Fatal(err)
	}
	passwd, err := gatewayauth.PasswordFile(creds)
	if err != nil {
		t.Fatal(err)
	}
	return brokerFiles{passwd: passwd, acl: gatewayauth.ACL(reg, "cleanprod"), creds: creds}
}

// startShippedMosquitto starts mosquitto with the shipped mosquitto.conf,
// changed only where a test must (listener on a free loopback port, files
// in a temporary folder), and with the password file and ACL given. It
// checks first that the committed ACL is the one the registry makes.
func startShippedMosquitto(t *testing.T, reg *registry.Registry, files brokerFiles) *broker {
	t.Helper()
	bin := tool(t, "mosquitto", "/usr/sbin/mosquitto")
	committed, err := os.ReadFile(filepath.Join(deployDir, "mosquitto", "acl"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(committed, files.acl) {
		t.Errorf("deploy/mosquitto/acl is not what gateway-config/ makes: run go run ./cmd/cleanprod gateways mosquitto-acl")
	}
	passwd, acl, creds := files.passwd, files.acl, files.creds

	// Not under t.TempDir(): its 0700 parent keeps the mosquitto user out.
	top, err := os.MkdirTemp("", "deploycheck-mosquitto-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	os.Chmod(top, 0o755)
	dir := filepath.Join(top, "mosquitto")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "passwd"), passwd, 0o600)
	os.WriteFile(filepath.Join(dir, "acl"), acl, 0o644)
	port := freePort(t)
	shipped, err := os.ReadFile(filepath.Join(deployDir, "mosquitto", "mosquitto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var conf strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(shipped))
	for sc.Scan() {
		line := sc.Text()
		key, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch key {
		case "listener":
			line = fmt.Sprintf("listener %d 127.0.0.1", port)
		case "password_file":
			line = "password_file " + filepath.Join(dir, "passwd")
		case "acl_file":
			line = "acl_file " + filepath.Join(dir, "acl")
		case "persistence_location":
			line = "persistence_location " + filepath.Join(dir, "data") + "/"
		}
		conf.WriteString(line + "\n")
	}
	confPath := filepath.Join(dir, "mosquitto.conf")
	os.WriteFile(confPath, []byte(conf.String()), 0o644)

	// As root mosquitto would switch to the user mosquitto itself, which
	// clears the parent-death signal; start it as that user instead.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		if u, err := user.Lookup("mosquitto"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
			filepath.Walk(filepath.Dir(dir), func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, uid, gid) })
		}
	}
	log := filepath.Join(filepath.Dir(dir), "mosquitto.log")
	cmd := exec.Command(bin, "-c", confPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	done := startCmd(t, cmd, log, 10*time.Second)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			tail, _ := os.ReadFile(log)
			t.Fatalf("mosquitto exited with the shipped configuration:\n%s", tail)
		default:
		}
		if time.Now().After(deadline) {
			tail, _ := os.ReadFile(log)
			t.Fatalf("mosquitto not listening on %s after 15s:\n%s", addr, tail)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &broker{url: "tcp://" + addr, creds: creds, reg: reg}
}

// connect connects as user (password from the generated credentials
// unless given).
func (b *broker) connect(t *testing.T, clientID, user, password string, clean bool, onMsg paho.MessageHandler) (paho.Client, error) {
	t.Helper()
	if password == "" && user != "" {
		password = b.creds[user]
	}
	opts := paho.NewClientOptions().AddBroker(b.url).SetClientID(clientID).SetUsername(user).SetPassword(password).
		SetCleanSession(clean).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second)
	if onMsg != nil {
		opts.SetDefaultPublishHandler(onMsg)
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect %s: timeout", user)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func publish(t *testing.T, c paho.Client, topic string, payload []byte) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// inbox collects messages by topic.
type inbox struct {
	mu   sync.Mutex
	msgs map[string]int
}

func (in *inbox) handle(_ paho.Client, m paho.Message) {
	in.mu.Lock()
	in.msgs[m.Topic()]++
	in.mu.Unlock()
	m.Ack()
}

func (in *inbox) count(topic string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.msgs[topic]
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The shipped mosquitto.conf starts a real mosquitto with the generated
// password file and ACL, and they hold: no anonymous or wrong-password
// logins; a gateway publishes under its own prefix only; the service reads
// all telemetry, and its persistent session keeps what arrived while it
// was away.
func TestShippedMosquitto(t *testing.T) {
	reg, err := registry.Load("../../gateway-config")
	if err != nil {
		t.Fatal(err)
	}
	b := startShippedMosquitto(t, reg, generateBrokerFiles(t, reg))
	gw := b.reg.Enterprises[0].Gateways[0]
	other := b.reg.Enterprises[1].Gateways[0]
	gwUser := gatewayauth.UserName(gw)

	if _, err := b.connect(t, "anon", "", "", true, nil); err == nil {
		t.Error("an anonymous client connected")
	}
	if _, err := b.connect(t, "wrong", gwUser, "not-the-password", true, nil); err == nil {
		t.Error("a gateway connected with a wrong password")
	}

	in := &inbox{msgs: map[string]int{}}
	svc, err := b.connect(t, "deploycheck-service", "cleanprod", "", false, in.handle)
	if err != nil {
		t.Fatalf("the service user cannot log in: %v", err)
	}
	if tok := svc.Subscribe("cp/v1/+/+/telemetry", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	g, err := b.connect(t, "deploycheck-gateway", gwUser, "", true, nil)
	if err != nil {
		t.Fatalf("gateway %s cannot log in: %v", gwUser, err)
	}
	own := "cp/v1/" + gw.Enterprise.ID + "/" + gw.ID + "/telemetry"
	foreign := "cp/v1/" + other.Enterprise.ID + "/" + other.ID + "/telemetry"
	publish(t, g, foreign, []byte(`{}`))
	publish(t, g, own, []byte(`{}`))
	waitUntil(t, 10*time.Second, "the service got the gateway's message on its own topic", func() bool { return in.count(own) == 1 })
	time.Sleep(300 * time.Millisecond) // the foreign one was published first
	if n := in.count(foreign); n != 0 {
		t.Errorf("gateway %s published on %s: the ACL let it through", gwUser, foreign)
	}

	// The persistent session queues while the service is away.
	svc.Disconnect(100)
	for range 3 {
		publish(t, g, own, []byte(`{}`))
	}
	if _, err := b.connect(t, "deploycheck-service", "cleanprod", "", false, in.handle); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the service got the 3 messages queued in its session", func() bool { return in.count(own) == 4 })
}

// The README's first command, `cleanprod gateways mosquitto-acl`, writes
// by default where deploy/compose.yaml mounts from, and what it writes
// works: cleanprod serve starts with deploy/cleanprod.yaml against the
// shipped mosquitto configuration with those files and a real InfluxDB,
// paths and addresses moved by flags only (as compose and Kubernetes move
// them by mounts); it gets ready, its heartbeat passes the ACL, and a
// gateway's reading is stored.
func TestServeWithDeployConfig(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs cleanprod")
	}
	db := testenv.Influx(t)
	started := time.Now()
	bin := filepath.Join(t.TempDir(), "cleanprod")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "./cmd/cleanprod")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/cleanprod: %v\n%s", err, out)
	}
	t.Logf("built cleanprod in %s", time.Since(started).Round(time.Millisecond))

	help, _ := exec.Command(bin, "gateways", "mosquitto-acl", "-help").CombinedOutput()
	for _, want := range []string{`"deploy/mosquitto"`, `"deploy/mosquitto/credentials.txt"`} {
		if !strings.Contains(string(help), want) {
			t.Errorf("gateways mosquitto-acl no longer defaults to %s, which deploy/compose.yaml mounts from and the README names:\n%s", want, help)
		}
	}
	reg, err := registry.Load("../../gateway-config")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if msg, err := exec.Command(bin, "gateways", "mosquitto-acl", "-dir", "../../gateway-config",
		"-credentials", filepath.Join(out, "credentials.txt"), "-out", out).CombinedOutput(); err != nil {
		t.Fatalf("gateways mosquitto-acl: %v\n%s", err, msg)
	}
	var files brokerFiles
	files.passwd, _ = os.ReadFile(filepath.Join(out, "passwd"))
	files.acl, _ = os.ReadFile(filepath.Join(out, "acl"))
	cf, err := os.Open(filepath.Join(out, "credentials.txt"))
	if err != nil {
		t.Fatal(err)
	}
	files.creds, err = gatewayauth.ReadCredentials(cf)
	cf.Close()
	if err != nil {
		t.Fatal(err)
	}
	b := startShippedMosquitto(t, reg, files)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"serve", "-config", serviceConf,
		"-http.listen", httpAddr, "-mqtt.url", b.url, "-mqtt.watchdog_interval", "1s",
		"-influx.url", db.URL, "-influx.bucket", db.Bucket,
		"-data_dir", t.TempDir(), "-gateway_config", "../../gateway-config",
		"-scoring.standard", "../../scoring/standards/auto-manufacturing.yaml",
		"-scoring.policy", "../../scoring/policy/default.yaml",
		"-scoring.solutions", "../../scoring/solutions",
		"-scoring.declarations", "../../scoring/declarations",
		"-log.format", "text"}
	log := filepath.Join(t.TempDir(), "cleanprod.log")
	cmd := exec.Command(bin, args...)
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
	deadline := time.Now().Add(60 * time.Second)
	for !ready() {
		select {
		case <-done:
			fail("cleanprod serve exited")
		default:
		}
		if time.Now().After(deadline) {
			fail("cleanprod not ready after 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("cleanprod ready %s after start", time.Since(started).Round(time.Millisecond))

	gw := b.reg.Enterprises[0].Gateways[0]
	g, err := b.connect(t, "deploycheck-gateway", gatewayauth.UserName(gw), "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := gw.Meters[0]
	now := time.Now().UTC().Truncate(time.Second).Format(time.RFC3339)
	payload := fmt.Sprintf(`{"gateway": %q, "seq": 1, "sent": %q, "readings": [{"meter": %q, "ts": %q, "value": 1}]}`, gw.ID, now, m.ID, now)
	publish(t, g, "cp/v1/"+gw.Enterprise.ID+"/"+gw.ID+"/telemetry", []byte(payload))
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
	deadline = time.Now().Add(30 * time.Second)
	for metric("cleanprod_ingest_readings_written_total") < 1 {
		if time.Now().After(deadline) {
			fail("the gateway's reading was not stored after 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Three heartbeat periods have passed since ready: a heartbeat the ACL
	// dropped would have forced a reconnect by now.
	time.Sleep(3500 * time.Millisecond)
	if n := metric("cleanprod_mqtt_watchdog_reconnects_total"); n != 0 {
		fail("the service's heartbeat did not come back through the broker (%g watchdog reconnects): does the ACL let user cleanprod read and write cleanprod/watchdog/#?", n)
	}
	if !ready() {
		fail("cleanprod not ready any more")
	}
}
