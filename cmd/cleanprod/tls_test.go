package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/internal/testenv"
)

// testCA is a throwaway certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key signed by the CA for the given
// IP addresses (a server) or for no address (a client).
func (ca *testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage, ips ...net.IP) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tlsPKI is everything the TLS tests use: the CA, a wrong CA, and files
// for cleanprod (client certificate, HTTP server certificate).
type tlsPKI struct {
	ca, wrongCA               *testCA
	brokerCert, brokerKey     []byte
	caFile, wrongCAFile       string
	clientCertFile, clientKey string
	httpCertFile, httpKeyFile string
	otherClientCert, otherKey string // signed by the wrong CA
}

func newTLSPKI(t *testing.T) *tlsPKI {
	t.Helper()
	dir := t.TempDir()
	p := &tlsPKI{ca: newTestCA(t, "cleanprod test CA"), wrongCA: newTestCA(t, "some other CA")}
	loopback := net.ParseIP("127.0.0.1")
	p.brokerCert, p.brokerKey = p.ca.issue(t, "mosquitto", x509.ExtKeyUsageServerAuth, loopback)
	cc, ck := p.ca.issue(t, "cleanprod", x509.ExtKeyUsageClientAuth)
	hc, hk := p.ca.issue(t, "cleanprod-http", x509.ExtKeyUsageServerAuth, loopback)
	oc, ok := p.wrongCA.issue(t, "cleanprod", x509.ExtKeyUsageClientAuth)
	p.caFile = writeFile(t, dir, "ca.pem", p.ca.pem)
	p.wrongCAFile = writeFile(t, dir, "wrong-ca.pem", p.wrongCA.pem)
	p.clientCertFile, p.clientKey = writeFile(t, dir, "client.pem", cc), writeFile(t, dir, "client.key", ck)
	p.httpCertFile, p.httpKeyFile = writeFile(t, dir, "http.pem", hc), writeFile(t, dir, "http.key", hk)
	p.otherClientCert, p.otherKey = writeFile(t, dir, "other-client.pem", oc), writeFile(t, dir, "other-client.key", ok)
	return p
}

// tlsBroker starts mosquitto with, besides its plain listener (used by the
// test's gateway), a TLS listener on its own port that requires a client
// certificate of the CA. It returns the broker and the TLS port.
func tlsBroker(t *testing.T, p *tlsPKI) (*testenv.Broker, int) {
	t.Helper()
	port := testenv.FreePort(t)
	b := testenv.Mosquitto(t,
		testenv.WithFile("ca.pem", p.ca.pem), testenv.WithFile("server.pem", p.brokerCert), testenv.WithFile("server.key", p.brokerKey),
		testenv.WithConfig(
			fmt.Sprintf("listener %d 127.0.0.1", port),
			"cafile ca.pem", "certfile server.pem", "keyfile server.key",
			"require_certificate true", "tls_version tlsv1.2",
		))
	return b, port
}

// startServeTLS runs serve with an HTTPS listener and returns once
// /healthz answers over TLS; the caller checks readiness itself. client
// trusts the test CA.
func startServeTLS(t *testing.T, p *tlsPKI, client *http.Client, args ...string) *service {
	t.Helper()
	s := &service{http: freeAddr(t), logs: &syncBuffer{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	args = append([]string{"serve", "-http.listen", s.http, "-scoring.declarations", "../../scoring/declarations",
		"-http.tls_cert_file", p.httpCertFile, "-http.tls_key_file", p.httpKeyFile,
		"-gateway_config", "testdata/gateway-config", "-data_dir", t.TempDir(), "-log.level", "debug"}, args...)
	go func() { s.done <- run(ctx, args, func(string) string { return "" }, s.logs, s.logs) }()
	t.Cleanup(func() { s.stop(t) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get("https://" + s.http + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case err := <-s.done:
			s.cancel = nil
			t.Fatalf("serve exited: %v\n%s", err, s.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve does not answer https://%s/healthz after 30s (%v)\n%s", s.http, err, s.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpsClient(roots ...[]byte) *http.Client {
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AppendCertsFromPEM(r)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func getBody(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricValue returns the value of the sample named name in a /metrics
// text, or -1.
func metricValue(body, name string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// TestServeTLS: serve connects to mosquitto over ssl:// with a throwaway
// CA (both ways: it verifies the broker, the broker verifies its client
// certificate), receives through that connection, and serves HTTP over TLS
// only.
func TestServeTLS(t *testing.T) {
	p := newTLSPKI(t)
	broker, tlsPort := tlsBroker(t, p)
	client := httpsClient(p.ca.pem)
	s := startServeTLS(t, p, client, "-mqtt.url", fmt.Sprintf("ssl://127.0.0.1:%d", tlsPort),
		"-mqtt.ca_file", p.caFile, "-mqtt.cert_file", p.clientCertFile, "-mqtt.key_file", p.clientKey)
	base := "https://" + s.http

	waitFor(t, 20*time.Second, "ready over TLS (broker connected over ssl://)", func() bool {
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !strings.Contains(s.logs.String(), fmt.Sprintf("ssl://127.0.0.1:%d", tlsPort)) {
		t.Errorf("serve does not say it uses the TLS listener:\n%s", s.logs)
	}

	// A reading published on the broker reaches serve through TLS.
	gw := mqttClient(t, broker.URL(), "test-gateway")
	pub(t, gw, sampleTopic, sample(1, time.Now().Add(-time.Minute), 182.7345, 41.7))
	waitFor(t, 20*time.Second, "2 readings written", func() bool {
		_, body := getBody(t, client, base+"/metrics")
		return metricValue(body, "cleanprod_ingest_readings_written_total") == 2
	})

	// HTTP is TLS only: plain HTTP on the port gets no metrics, and a
	// client that does not trust the CA refuses the server.
	resp, err := http.Get("http://" + s.http + "/metrics")
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || strings.Contains(string(b), "cleanprod_") {
			t.Errorf("plain HTTP got %d %.200q, want no answer but a TLS one", resp.StatusCode, b)
		}
	}
	if _, err := httpsClient(p.wrongCA.pem).Get(base + "/healthz"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client trusting another CA got %v, want a certificate error", err)
	}
	if !strings.Contains(s.logs.String(), "cleanprod serving: https://") {
		t.Errorf("the banner does not say https:\n%s", s.logs)
	}
}

// TestServeTLSRefusesWrongBroker: serve never connects to a broker whose
// certificate its CA did not sign, nor to one whose certificate does not
// name the address it dialled, nor (the broker refusing) with a client
// certificate of another CA. It keeps running, not ready, and logs why.
func TestServeTLSRefusesWrongBroker(t *testing.T) {
	p := newTLSPKI(t)
	_, tlsPort := tlsBroker(t, p)
	client := httpsClient(p.ca.pem)
	for _, tt := range []struct {
		name string
		host string
		ca   string
		cert string
		key  string
		why  string // the handshake error, as crypto/tls words it
		// logged: what serve's log says, any of them. A refused client
		// certificate reaches the client as the broker's alert or, when it
		// writes before reading it, as a reset.
		logged []string
	}{
		{"broker certificate of an unknown CA", "127.0.0.1", p.wrongCAFile, p.clientCertFile, p.clientKey, "certificate signed by unknown authority", nil},
		{"broker certificate for another name", "localhost", p.caFile, p.clientCertFile, p.clientKey, "not valid for any names, but wanted to match localhost", nil},
		{"client certificate of another CA", "127.0.0.1", p.caFile, p.otherClientCert, p.otherKey, "remote error: tls: ", []string{"remote error: tls: ", "connection reset by peer", "broken pipe", "EOF"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The same settings in a bare TLS handshake fail, and why.
			addr := net.JoinHostPort(tt.host, strconv.Itoa(tlsPort))
			if err := tlsHandshake(t, addr, tt.ca, tt.cert, tt.key); err == nil || !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("handshake with %s: got %v, want %q", addr, err, tt.why)
			}
			s := startServeTLS(t, p, client, "-mqtt.url", "ssl://"+addr, "-mqtt.ca_file", tt.ca,
				"-mqtt.cert_file", tt.cert, "-mqtt.key_file", tt.key, "-mqtt.max_reconnect_interval", "1s")
			deadline := time.Now().Add(4 * time.Second)
			for time.Now().Before(deadline) {
				code, _ := getBody(t, client, "https://"+s.http+"/readyz")
				if code == http.StatusOK {
					t.Fatalf("ready: connected to a broker it must refuse\n%s", s.logs)
				}
				time.Sleep(200 * time.Millisecond)
			}
			_, body := getBody(t, client, "https://"+s.http+"/metrics")
			if got := metricValue(body, "cleanprod_mqtt_connects_total"); got != 0 {
				t.Errorf("cleanprod_mqtt_connects_total %g, want 0", got)
			}
			if tt.logged == nil {
				tt.logged = []string{tt.why}
			}
			logs := s.logs.String()
			said := false
			for _, l := range strings.Split(logs, "\n") {
				if strings.Contains(l, "connecting to broker failed") {
					for _, why := range tt.logged {
						said = said || strings.Contains(l, why)
					}
				}
			}
			if !said {
				t.Errorf("the logs do not say the connection failed with any of %q:\n%s", tt.logged, logs)
			}
		})
	}
}

// tlsHandshake does the TLS handshake serve's MQTT client does with the
// given files (config.go's tlsConfig) and returns its error.
func tlsHandshake(t *testing.T, addr, caFile, certFile, keyFile string) error {
	t.Helper()
	cfg, err := tlsConfig(caFile, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	host, _, _ := net.SplitHostPort(addr)
	cfg.ServerName = host
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return err // TLS 1.3 reports a refused client certificate on the first read
	}
	return nil
}

// TestServeRefusesBadTLSFiles: a missing or mismatched HTTP key pair, or a
// key without a certificate, stops serve at start, naming the setting,
// before it binds anything: the embedded broker's address is taken here,
// and the error is still the file's.
func TestServeRefusesBadTLSFiles(t *testing.T) {
	p := newTLSPKI(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"key without certificate", []string{"-http.tls_key_file", p.httpKeyFile}, "http.tls_cert_file and http.tls_key_file go together"},
		{"missing certificate", []string{"-http.tls_cert_file", "testdata/nope.pem", "-http.tls_key_file", p.httpKeyFile}, "http tls: open testdata/nope.pem"},
		{"key of another certificate", []string{"-http.tls_cert_file", p.httpCertFile, "-http.tls_key_file", p.clientKey}, "http tls: tls: private key does not match public key"},
		{"unreadable CA", []string{"-mqtt.url", "ssl://127.0.0.1:1", "-mqtt.ca_file", p.httpKeyFile}, "mqtt tls: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out syncBuffer
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := run(ctx, append([]string{"serve", "-http.listen", freeAddr(t), "-embedded_broker.listen", taken.Addr().String(),
				"-gateway_config", "testdata/gateway-config", "-scoring.declarations", "../../scoring/declarations", "-data_dir", t.TempDir()},
				tt.args...), func(string) string { return "" }, &out, &out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q\n%s", err, tt.want, out.String())
			}
		})
	}
}
