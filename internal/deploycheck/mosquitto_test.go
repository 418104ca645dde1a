package deploycheck

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/cleanprod/cleanprod/gatewayauth"
	"github.com/cleanprod/cleanprod/registry"
)

// broker is a mosquitto started from deploy/mosquitto/mosquitto.conf.
type broker struct {
	url   string // ssl://127.0.0.1:port, the TLS listener
	certs string // make-certs.sh's folder: ca.crt, <user>.crt and .key
	creds gatewayauth.Credentials
	reg   *registry.Registry

	bin, conf, log string
	cred           *syscall.Credential
	addr           string
	cmd            *exec.Cmd
	done           <-chan struct{}
}

// brokerFiles are the files `cleanprod gateways mosquitto-acl` and
// make-certs.sh write.
type brokerFiles struct {
	passwd, acl []byte
	creds       gatewayauth.Credentials
	certs       string
}

// generateBrokerFiles makes them with package gatewayauth, as the command
// does, and with the shipped make-certs.sh.
func generateBrokerFiles(t *testing.T, reg *registry.Registry) brokerFiles {
	t.Helper()
	creds := gatewayauth.Credentials{}
	if _, err := creds.Complete(reg, "cleanprod", gatewayauth.MonitorUser); err != nil {
		t.Fatal(err)
	}
	passwd, err := gatewayauth.PasswordFile(creds)
	if err != nil {
		t.Fatal(err)
	}
	var cb bytes.Buffer
	if err := creds.Write(&cb); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	credFile := filepath.Join(dir, "credentials.txt")
	os.WriteFile(credFile, cb.Bytes(), 0o600)
	return brokerFiles{passwd: passwd, acl: gatewayauth.ACL(reg, "cleanprod"), creds: creds, certs: makeCerts(t, credFile)}
}

// makeCerts runs deploy/mosquitto/make-certs.sh for the users of
// credFile and returns its folder.
func makeCerts(t *testing.T, credFile string) string {
	t.Helper()
	tool(t, "openssl")
	out := filepath.Join(filepath.Dir(credFile), "certs")
	cmd := exec.Command("sh", filepath.Join(deployDir, "mosquitto", "make-certs.sh"), "-c", credFile, "-o", out)
	// As root the script hands keys to the containers' users; here every
	// file goes to whoever runs mosquitto and cleanprod below.
	cmd.Env = append(os.Environ(), "BROKER_UID="+strconv.Itoa(os.Getuid()), "CLEANPROD_UID="+strconv.Itoa(os.Getuid()))
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make-certs.sh: %v\n%s", err, msg)
	}
	return out
}

// startShippedMosquitto starts mosquitto with the shipped mosquitto.conf,
// changed only where a test must (listener on a free loopback port, files
// in a temporary folder), and with the password file, ACL and
// certificates given, read-only as compose mounts them, as an
// unprivileged user. It checks first that the committed ACL is the one
// the registry makes.
// override replaces directives of the shipped file ("autosave_interval
// 60"), for measurements that compare settings.
func startShippedMosquitto(t *testing.T, reg *registry.Registry, files brokerFiles, override ...string) *broker {
	t.Helper()
	bin := tool(t, "mosquitto", "/usr/sbin/mosquitto")
	committed, err := os.ReadFile(filepath.Join(deployDir, "mosquitto", "acl"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(committed, files.acl) {
		t.Errorf("deploy/mosquitto/acl is not what gateway-config/ makes: run go run ./cmd/cleanprod gateways mosquitto-acl")
	}

	// Not under t.TempDir(): its 0700 parent keeps the mosquitto user out.
	top, err := os.MkdirTemp("", "deploycheck-mosquitto-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	os.Chmod(top, 0o755)
	dir := filepath.Join(top, "mosquitto")
	config := filepath.Join(dir, "config")
	for _, d := range []string{filepath.Join(dir, "data"), filepath.Join(config, "certs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// What compose mounts: passwd, acl, and of the certificates only the
	// broker's and the CA's (never ca.key).
	os.WriteFile(filepath.Join(config, "passwd"), files.passwd, 0o400)
	os.WriteFile(filepath.Join(config, "acl"), files.acl, 0o400)
	for _, f := range []string{"ca.crt", "broker.crt", "broker.key"} {
		data, err := os.ReadFile(filepath.Join(files.certs, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(config, "certs", f), data, 0o400)
	}
	port := freePort(t)
	shipped, err := os.ReadFile(filepath.Join(deployDir, "mosquitto", "mosquitto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var conf strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(shipped))
	for sc.Scan() {
		line := sc.Text()
		key, val, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch key {
		case "listener":
			line = fmt.Sprintf("listener %d 127.0.0.1", port)
		case "password_file", "acl_file", "certfile", "keyfile", "cafile":
			rel, ok := strings.CutPrefix(val, "/mosquitto/config/")
			if !ok {
				t.Fatalf("mosquitto.conf: %s %s is not under /mosquitto/config, which compose mounts", key, val)
			}
			line = key + " " + filepath.Join(config, rel)
		case "persistence_location":
			line = "persistence_location " + filepath.Join(dir, "data") + "/"
		}
		for _, o := range override {
			if k, _, _ := strings.Cut(o, " "); k == key {
				line = o
			}
		}
		conf.WriteString(line + "\n")
	}
	confPath := filepath.Join(config, "mosquitto.conf")
	os.WriteFile(confPath, []byte(conf.String()), 0o444)

	// As root mosquitto would switch to the user mosquitto itself, which
	// clears the parent-death signal; start it as that user instead.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		if u, err := user.Lookup("mosquitto"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
			filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, uid, gid) })
		}
	}
	// The configuration is read-only, as compose's :ro mounts; only the
	// persistence folder is writable.
	os.Chmod(filepath.Join(config, "certs"), 0o555)
	os.Chmod(config, 0o555)
	b := &broker{url: fmt.Sprintf("ssl://127.0.0.1:%d", port), certs: files.certs, creds: files.creds, reg: reg,
		bin: bin, conf: confPath, log: filepath.Join(top, "mosquitto.log"), cred: cred, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	b.start(t)
	return b
}

// start runs mosquitto and waits until it listens.
func (b *broker) start(t *testing.T) {
	t.Helper()
	log := fmt.Sprintf("%s.%d", b.log, time.Now().UnixNano())
	b.cmd = exec.Command(b.bin, "-c", b.conf)
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: b.cred}
	b.done = startCmd(t, b.cmd, log, 10*time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.Dial("tcp", b.addr); err == nil {
			c.Close()
			return
		}
		select {
		case <-b.done:
			tail, _ := os.ReadFile(log)
			t.Fatalf("mosquitto exited with the shipped configuration:\n%s", tail)
		default:
		}
		if time.Now().After(deadline) {
			tail, _ := os.ReadFile(log)
			t.Fatalf("mosquitto not listening on %s after 15s:\n%s", b.addr, tail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// crash kills mosquitto with SIGKILL, as a power cut or the OOM killer
// would, and waits until it is gone.
func (b *broker) crash(t *testing.T) {
	t.Helper()
	b.cmd.Process.Kill()
	<-b.done
}

// tls returns the TLS configuration of user: the CA, and the user's
// client certificate unless user is "".
func (b *broker) tls(t *testing.T, user string) *tls.Config {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(b.certs, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if user != "" {
		cert, err := tls.LoadX509KeyPair(filepath.Join(b.certs, user+".crt"), filepath.Join(b.certs, user+".key"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

// connect connects over TLS as user, with user's client certificate and
// (unless given) password from the generated credentials.
func (b *broker) connect(t *testing.T, clientID, user, password string, clean bool, onMsg paho.MessageHandler) (paho.Client, error) {
	t.Helper()
	if password == "" && user != "" {
		password = b.creds[user]
	}
	certUser := user
	if _, ok := b.creds[user]; !ok {
		certUser = ""
	}
	return b.dial(t, clientID, user, password, b.tls(t, certUser), clean, onMsg)
}

func (b *broker) dial(t *testing.T, clientID, user, password string, tlsCfg *tls.Config, clean bool, onMsg paho.MessageHandler) (paho.Client, error) {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker(b.url).SetClientID(clientID).SetUsername(user).SetPassword(password).
		SetTLSConfig(tlsCfg).SetCleanSession(clean).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second)
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

// The shipped mosquitto.conf starts a real mosquitto, as an unprivileged
// user with the generated password file, ACL and certificates read-only,
// and they hold: no anonymous, wrong-password or certificate-less logins;
// a gateway publishes under its own prefix only; no credential connects
// under another's client id, so a gateway can neither disconnect the
// service nor wipe its session; the service reads all telemetry, and its
// persistent session keeps what arrived while it was away.
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
	if _, err := b.dial(t, "no-cert", gwUser, b.creds[gwUser], b.tls(t, ""), true, nil); err == nil {
		t.Error("a gateway connected without a client certificate")
	}

	in := &inbox{msgs: map[string]int{}}
	svc, err := b.connect(t, "cleanprod", "cleanprod", "", false, in.handle)
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

	// A gateway asking for the service's client id gets its own session.
	other2 := b.reg.Enterprises[1].Gateways[1]
	if _, err := b.connect(t, "cleanprod", gatewayauth.UserName(other2), "", true, nil); err != nil {
		t.Fatalf("gateway %s: %v", gatewayauth.UserName(other2), err)
	}
	time.Sleep(500 * time.Millisecond)
	if !svc.IsConnectionOpen() {
		t.Fatal("a gateway connecting with client id cleanprod disconnected the service")
	}

	// The persistent session queues while the service is away, and a
	// gateway's clean session under the service's id does not wipe it.
	svc.Disconnect(100)
	for range 3 {
		publish(t, g, own, []byte(`{}`))
	}
	if _, err := b.connect(t, "cleanprod", gatewayauth.UserName(other2), "", true, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.connect(t, "cleanprod", "cleanprod", "", false, in.handle); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the service got the 3 messages queued in its session", func() bool { return in.count(own) == 4 })
}
