package gatewayauth

import (
	"bytes"
	"encoding/base64"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/registry"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The hash matches what mosquitto_passwd wrote for alice/secret.
func TestHashMatchesMosquittoPasswd(t *testing.T) {
	const line = "$7$101$JDxhULnC7Wq5pM2s$7w7mV0ru5hciGa0QlCYXnMRGM4EDX14GZG7k8T2Y3zpI1MKAFKxVgGifXNg9YrWxAKHuRcANWqN1j87rHHVASg=="
	parts := strings.Split(line, "$")
	salt, err := base64.StdEncoding.DecodeString(parts[3])
	if err != nil {
		t.Fatal(err)
	}
	got, err := hashWithSalt("secret", salt, 101)
	if err != nil {
		t.Fatal(err)
	}
	if got != line {
		t.Errorf("got %s, want %s", got, line)
	}
}

func TestCredentialsKeepExistingPasswords(t *testing.T) {
	reg, err := registry.Load("../gateway-config")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ReadCredentials(strings.NewReader("# kept\ncleanprod:svc-pw\ncq-lj-yuntai-auto.gw-paint-01:old\n"))
	if err != nil {
		t.Fatal(err)
	}
	added, err := c.Complete(reg, "cleanprod")
	if err != nil {
		t.Fatal(err)
	}
	if c["cleanprod"] != "svc-pw" || c["cq-lj-yuntai-auto.gw-paint-01"] != "old" {
		t.Errorf("existing passwords changed: %v", c)
	}
	if len(added) != reg.GatewayCount()-1 {
		t.Errorf("added %d users, want %d", len(added), reg.GatewayCount()-1)
	}
	var buf bytes.Buffer
	c.Write(&buf)
	again, err := ReadCredentials(&buf)
	if err != nil || len(again) != len(c) {
		t.Errorf("round trip: got %d users, %v", len(again), err)
	}
}

// TestGatewayCannotPublishAsAnother runs a real mosquitto with the
// generated password file and ACL: gateway A's messages on its own topic
// reach the service, on gateway B's topic they do not, and a wrong
// password is refused.
func TestGatewayCannotPublishAsAnother(t *testing.T) {
	reg, err := registry.Load("../gateway-config")
	if err != nil {
		t.Fatal(err)
	}
	creds := Credentials{}
	if _, err := creds.Complete(reg, "cleanprod"); err != nil {
		t.Fatal(err)
	}
	pw, err := PasswordFile(creds)
	if err != nil {
		t.Fatal(err)
	}
	broker := testenv.Mosquitto(t, testenv.WithoutAnonymous(),
		testenv.WithFile("passwd", pw), testenv.WithFile("acl", ACL(reg, "cleanprod")),
		testenv.WithConfig("password_file passwd", "acl_file acl"))

	a := reg.Enterprises[0].Gateways[0]
	b := reg.Enterprises[1].Gateways[0]
	var mu sync.Mutex
	var got []string
	svc := client(t, broker.URL(), "cleanprod", creds["cleanprod"])
	if tok := svc.Subscribe("cp/v1/+/+/telemetry", 1, func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		got = append(got, m.Topic()+" "+string(m.Payload()))
		mu.Unlock()
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	gwA := client(t, broker.URL(), UserName(a), creds[UserName(a)])
	own := "cp/v1/" + a.Enterprise.ID + "/" + a.ID + "/telemetry"
	other := "cp/v1/" + b.Enterprise.ID + "/" + b.ID + "/telemetry"
	for _, topic := range []string{other, own} {
		if tok := gwA.Publish(topic, 1, false, "from A"); !tok.WaitTimeout(5 * time.Second) {
			t.Fatal("publish timed out")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the message to the other topic was published first
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != own+" from A" {
		t.Errorf("service received %q, want only %q", got, own+" from A")
	}
	bad := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("intruder").SetUsername(UserName(b)).SetPassword("wrong"))
	if tok := bad.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		t.Error("a wrong password was accepted")
		bad.Disconnect(0)
	}
}

func client(t *testing.T, url, user, pw string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(user).SetUsername(user).SetPassword(pw))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect as %s: %v", user, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// The monitor user may read dead-letters but not telemetry.
func TestMonitorReadsDeadLetters(t *testing.T) {
	reg, err := registry.Load("../gateway-config")
	if err != nil {
		t.Fatal(err)
	}
	creds := Credentials{}
	if _, err := creds.Complete(reg, "cleanprod", MonitorUser); err != nil {
		t.Fatal(err)
	}
	pw, err := PasswordFile(creds)
	if err != nil {
		t.Fatal(err)
	}
	broker := testenv.Mosquitto(t, testenv.WithoutAnonymous(),
		testenv.WithFile("passwd", pw), testenv.WithFile("acl", ACL(reg, "cleanprod")),
		testenv.WithConfig("password_file passwd", "acl_file acl"))
	var mu sync.Mutex
	var got []string
	mon := client(t, broker.URL(), MonitorUser, creds[MonitorUser])
	for _, f := range []string{"cp/v1/deadletter/#", "cp/v1/+/+/telemetry"} {
		if tok := mon.Subscribe(f, 1, func(_ mqtt.Client, m mqtt.Message) {
			mu.Lock()
			got = append(got, m.Topic())
			mu.Unlock()
		}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	svc := client(t, broker.URL(), "cleanprod", creds["cleanprod"])
	g := reg.Enterprises[0].Gateways[0]
	gw := client(t, broker.URL(), UserName(g), creds[UserName(g)])
	gw.Publish("cp/v1/"+g.Enterprise.ID+"/"+g.ID+"/telemetry", 1, false, "x").WaitTimeout(5 * time.Second)
	svc.Publish("cp/v1/deadletter/spoofed", 1, false, "y").WaitTimeout(5 * time.Second)
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "cp/v1/deadletter/spoofed" {
		t.Errorf("monitor received %v, want only the dead-letter", got)
	}
}

// The shards of the service get users of their own, with its password
// and its rights.
func TestShardUsers(t *testing.T) {
	users := ShardUsers("cleanprod", []int{1, 2})
	if got := strings.Join(users, " "); got != "cleanprod-0of2 cleanprod-1of2" {
		t.Fatalf("ShardUsers: got %q, want cleanprod-0of2 cleanprod-1of2", got)
	}
	c := Credentials{"cleanprod": "secret", "cleanprod-1of2": "kept"}
	added, err := c.Share("cleanprod", users...)
	if err != nil || len(added) != 1 || c["cleanprod-0of2"] != "secret" || c["cleanprod-1of2"] != "kept" {
		t.Errorf("Share: added %v (%v), credentials %v; want cleanprod-0of2 given the service's password, the other kept", added, err, c)
	}
	if _, err := (Credentials{}).Share("cleanprod", users...); err == nil {
		t.Error("Share from a user without a password: no error")
	}
	reg, err := registry.Load("../gateway-config")
	if err != nil {
		t.Fatal(err)
	}
	acl := string(ACL(reg, "cleanprod", users...))
	for _, u := range append([]string{"cleanprod"}, users...) {
		if !strings.Contains(acl, "user "+u+"\ntopic read cp/v1/+/+/telemetry\n") {
			t.Errorf("the ACL does not let %s read telemetry:\n%s", u, acl)
		}
	}
}
