package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cleanprod/cleanprod/gatewayauth"
	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/shard"
)

// testShardSecret is the shard.secret the tests' replicas share.
const testShardSecret = "test-shard-secret-0123456789"

func TestShardOf(t *testing.T) {
	host := func(h string) func() (string, error) { return func() (string, error) { return h, nil } }
	tests := []struct {
		name     string
		index    int
		count    int
		fromHost bool
		host     func() (string, error)
		want     shard.Set
		wantErr  string
	}{
		{name: "single", count: 1, want: shard.One},
		{name: "index", index: 2, count: 3, want: shard.Set{Index: 2, Count: 3}},
		{name: "statefulset ordinal", count: 3, fromHost: true, host: host("cleanprod-1"), want: shard.Set{Index: 1, Count: 3}},
		{name: "ordinal past the count", count: 3, fromHost: true, host: host("cleanprod-3"), wantErr: "host cleanprod-3 is replica 3 but shard.count is 3"},
		{name: "no ordinal", count: 3, fromHost: true, host: host("cleanprod"), wantErr: "has no ordinal"},
		{name: "no host name", count: 3, fromHost: true, host: func() (string, error) { return "", errors.New("uname failed") }, wantErr: "uname failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defaultConfig()
			cfg.Shard.Index, cfg.Shard.Count, cfg.Shard.FromHostname = tt.index, tt.count, tt.fromHost
			got, err := shardOf(&cfg, tt.host)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	if got := shardClientID("cleanprod", shard.One); got != "cleanprod" {
		t.Errorf("single replica's client id: got %q, want cleanprod", got)
	}
	if got := shardClientID("cleanprod", shard.Set{Index: 1, Count: 3}); got != "cleanprod-1of3" {
		t.Errorf("shard 1/3's client id: got %q, want cleanprod-1of3", got)
	}
	for _, c := range []struct {
		user string
		set  shard.Set
		want string
	}{
		{"cleanprod-{shard}", shard.Set{Index: 1, Count: 3}, "cleanprod-1of3"},
		{"cleanprod-{shard}", shard.One, "cleanprod"},
		{"cleanprod", shard.Set{Index: 1, Count: 3}, "cleanprod"},
		{"", shard.Set{Index: 0, Count: 2}, ""},
	} {
		if got := shardUsername(c.user, c.set); got != c.want {
			t.Errorf("shardUsername(%q, %v) = %q, want %q", c.user, c.set, got, c.want)
		}
	}
}

// TestSharedGroupRemoved: a configuration of an earlier release that
// still sets mqtt.shared_group is refused with what replaced it, from a
// file (with its line) or the environment.
func TestSharedGroupRemoved(t *testing.T) {
	file := t.TempDir() + "/c.yaml"
	os.WriteFile(file, []byte("mqtt:\n  url: tcp://x:1883\n  shared_group: cleanprod\n  urll: x\n"), 0o644)
	var out bytes.Buffer
	_, _, err := loadConfig("serve", []string{"-config", file}, func(string) string { return "" }, &out)
	for _, w := range []string{"c.yaml:3: mqtt.shared_group was removed", "shard.count and shard.index", "c.yaml:4: mqtt.urll: unknown key"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("got %v, want it to contain %q", err, w)
		}
	}
	env := map[string]string{"CLEANPROD_MQTT_SHARED_GROUP": "cleanprod"}
	_, _, err = loadConfig("serve", nil, func(k string) string { return env[k] }, &out)
	if w := "CLEANPROD_MQTT_SHARED_GROUP: mqtt.shared_group was removed"; err == nil || !strings.Contains(err.Error(), w) {
		t.Errorf("got %v, want it to contain %q", err, w)
	}
	// A shard of an embedded broker and store would share nothing.
	_, _, err = loadConfig("serve", []string{"-shard.count", "2", "-shard.peer_url", "http://c-{index}:8080"}, func(string) string { return "" }, &out)
	for _, w := range []string{"shard.count 2 needs mqtt.url", "shard.count 2 needs influx.url"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("got %v, want it to contain %q", err, w)
		}
	}
	// A serving shard needs its peers' address and the shared secret; the
	// shards subcommands, which only talk to the broker, need neither.
	servers := []string{"-shard.count", "3", "-mqtt.url", "tcp://broker:1883", "-influx.url", "http://influx:8086"}
	_, _, err = loadConfig("serve", servers, func(string) string { return "" }, &out)
	for _, w := range []string{"shard.peer_url must name", "shard.secret must be set"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("serve: got %v, want it to contain %q", err, w)
		}
	}
	if _, _, err = loadConfig("shards prepare", servers, func(string) string { return "" }, &out); err != nil {
		t.Errorf("shards prepare without peer_url and secret: %v", err)
	}
}

// TestShardReloadSubscribes: a shard's replica does not subscribe to an
// enterprise it owns before the registry has it; a reload (SIGHUP) that
// adds the enterprise subscribes to its topics on the live connection,
// and its telemetry is stored from then on.
func TestShardReloadSubscribes(t *testing.T) {
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	gwDir := t.TempDir()
	copyGateways := func(ids ...string) {
		t.Helper()
		for _, id := range ids {
			b, err := os.ReadFile("../../gateway-config/" + id + ".yaml")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(gwDir, id+".yaml"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	const added, kept = "cq-lj-yuntai-auto", "cq-lj-hengrun-parts"
	index := shard.Of(added, 2)
	if shard.Of(kept, 2) != index {
		t.Fatalf("%s and %s are on different shards of 2: pick others", added, kept)
	}
	copyGateways(kept, "cq-lj-jiahe-motors", "cq-lj-shanchuan-auto")
	p := startProc(t, []string{"-mqtt.url", broker.URL(), "-influx.url", db.URL, "-influx.bucket", db.Bucket, "-mqtt.client_id", "reload",
		"-gateway_config", gwDir, "-shard.count", "2", "-shard.index", strconv.Itoa(index), "-shard.peer_url", "http://127.0.0.1:9/{index}", "-log.level", "info"},
		map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token, "CLEANPROD_SHARD_SECRET": testShardSecret})
	m := p.metrics()
	gw := mqttClient(t, broker.URL(), "reload-gateways")
	now := time.Now().UTC().Truncate(time.Second)
	msg := func(gateway, meter string, seq int, v float64) string {
		return fmt.Sprintf(`{"gateway":%q,"seq":%d,"readings":[{"meter":%q,"ts":%q,"value":%g}]}`, gateway, seq, meter, now.Add(time.Duration(seq-10)*time.Minute).Format(time.RFC3339), v)
	}
	addedTopic, keptTopic := "cp/v1/"+added+"/gw-paint-01/telemetry", "cp/v1/"+kept+"/gw-plant-01/telemetry"

	// Not subscribed to: the added enterprise's message does not come;
	// the kept one's, published after it, does.
	pub(t, gw, addedTopic, msg("gw-paint-01", "E-PAINT-01", 1, 1000))
	pub(t, gw, keptTopic, msg("gw-plant-01", "E-MAIN-01", 1, 500))
	waitFor(t, 20*time.Second, "the kept enterprise's reading stored", func() bool {
		return m.metricOrZero("cleanprod_ingest_readings_written_total") == 1
	})
	if n := m.metricOrZero("cleanprod_ingest_messages_total"); n != 1 {
		t.Fatalf("%g messages received before the reload, want 1 (the added enterprise is not subscribed to)", n)
	}

	copyGateways(added)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the reload", func() bool {
		return scrapeFamily(t, p.http, "cleanprod_config_reloads_total")[`cleanprod_config_reloads_total{result="success"}`] == 1
	})
	if !strings.Contains(p.logs.String(), "subscriptions changed") {
		t.Errorf("the reload did not log its subscriptions:\n%s", p.logs)
	}
	pub(t, gw, addedTopic, msg("gw-paint-01", "E-PAINT-01", 2, 1010))
	waitFor(t, 20*time.Second, "the added enterprise's reading stored", func() bool {
		return m.metricOrZero("cleanprod_ingest_readings_written_total") == 2
	})
	if rows := db.QueryInfluxQL(t, `SELECT register FROM reading WHERE enterprise = '`+added+`'`); len(rows) != 1 {
		t.Errorf("%s's readings: %v, want the one published after the reload", added, rows)
	}
}

// TestShardsOwnBrokerUsers runs two shards on a mosquitto that makes the
// user name the client id (use_username_as_clientid, as the shipped
// configuration does) with the users gateways mosquitto-acl -shard-counts
// makes: with mqtt.username cleanprod-{shard} each shard logs in as its
// own user and keeps its own session, so neither takes the other's, and
// shards prepare logs in as them too.
func TestShardsOwnBrokerUsers(t *testing.T) {
	reg, err := registry.Load("../../gateway-config")
	if err != nil {
		t.Fatal(err)
	}
	creds := gatewayauth.Credentials{}
	if _, err := creds.Complete(reg, "cleanprod", gatewayauth.MonitorUser); err != nil {
		t.Fatal(err)
	}
	shardUsers := gatewayauth.ShardUsers("cleanprod", []int{2})
	if _, err := creds.Share("cleanprod", shardUsers...); err != nil {
		t.Fatal(err)
	}
	passwd, err := gatewayauth.PasswordFile(creds)
	if err != nil {
		t.Fatal(err)
	}
	broker := testenv.Mosquitto(t, testenv.WithoutAnonymous(),
		testenv.WithFile("passwd", passwd), testenv.WithFile("acl", gatewayauth.ACL(reg, "cleanprod", shardUsers...)),
		testenv.WithConfig("use_username_as_clientid true", "password_file passwd", "acl_file acl"))
	db := testenv.Influx(t)
	env := map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token, "CLEANPROD_MQTT_PASSWORD": creds["cleanprod"], "CLEANPROD_SHARD_SECRET": testShardSecret}
	args := func(i int) []string {
		return []string{"-mqtt.url", broker.URL(), "-influx.url", db.URL, "-influx.bucket", db.Bucket,
			"-mqtt.username", "cleanprod-{shard}", "-mqtt.client_id", "cleanprod", "-gateway_config", "../../gateway-config",
			"-shard.count", "2", "-shard.index", strconv.Itoa(i), "-shard.peer_url", "http://127.0.0.1:9/{index}",
			"-data_dir", t.TempDir()}
	}
	prep := exec.Command(cleanprodBinary(t), append([]string{"shards", "prepare"}, args(0)...)...)
	prep.Env = append(os.Environ(), "CLEANPROD_INFLUX_TOKEN="+db.Token, "CLEANPROD_MQTT_PASSWORD="+creds["cleanprod"])
	if out, err := prep.CombinedOutput(); err != nil {
		t.Fatalf("shards prepare as the shards' users: %v\n%s", err, out)
	}
	ps := []*proc{startProc(t, args(0), env), startProc(t, args(1), env)}

	now := time.Now().UTC().Truncate(time.Second)
	for _, e := range reg.Enterprises {
		g := e.Gateways[0]
		user := gatewayauth.UserName(g)
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID(user).SetUsername(user).SetPassword(creds[user]))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect as %s: %v", user, tok.Error())
		}
		pub(t, c, "cp/v1/"+e.ID+"/"+g.ID+"/telemetry", fmt.Sprintf(`{"gateway":%q,"seq":1,"readings":[{"meter":%q,"ts":%q,"value":1}]}`,
			g.ID, g.Meters[0].ID, now.Add(-time.Minute).Format(time.RFC3339)))
		c.Disconnect(100)
	}
	waitFor(t, 20*time.Second, "a reading of each enterprise stored by its shard", func() bool {
		return ps[0].metrics().metricOrZero("cleanprod_ingest_readings_written_total")+ps[1].metrics().metricOrZero("cleanprod_ingest_readings_written_total") == float64(len(reg.Enterprises))
	})
	time.Sleep(2 * time.Second) // a session taken over would show by now
	for i, p := range ps {
		if n := p.metrics().metricOrZero("cleanprod_mqtt_connection_lost_total"); n != 0 {
			t.Errorf("shard %d/2 lost its connection %g times: another client took its session\n%s", i, n, p.logs)
		}
		want := 0
		for _, e := range reg.Enterprises {
			if shard.Of(e.ID, 2) == i {
				want++
			}
		}
		if n := p.metrics().metricOrZero("cleanprod_ingest_messages_total"); n != float64(want) {
			t.Errorf("shard %d/2 received %g messages, want %d (its enterprises')", i, n, want)
		}
	}
}

// TestShardWaitsForOtherCount: a replica of shard count 2 started while
// the replica of count 1 still runs (a reshard done out of order) is not
// ready and takes no telemetry; once the old replica stops it takes its
// shard's messages, those published meanwhile included.
func TestShardWaitsForOtherCount(t *testing.T) {
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	env := map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token, "CLEANPROD_SHARD_SECRET": testShardSecret}
	args := func(count, index int) []string {
		return []string{"-mqtt.url", broker.URL(), "-influx.url", db.URL, "-influx.bucket", db.Bucket, "-mqtt.client_id", "waits",
			"-shard.count", strconv.Itoa(count), "-shard.index", strconv.Itoa(index), "-shard.peer_url", "http://127.0.0.1:9/{index}", "-data_dir", t.TempDir()}
	}
	old := startProc(t, args(1, 0), env)
	const ent = "cq-lj-hengrun-parts"
	index := shard.Of(ent, 2)
	// Its session exists, as shards prepare leaves it.
	prep := exec.Command(cleanprodBinary(t), append([]string{"shards", "prepare", "-gateway_config", "../../gateway-config"}, args(2, 0)...)...)
	prep.Env = append(os.Environ(), "CLEANPROD_INFLUX_TOKEN="+db.Token)
	if out, err := prep.CombinedOutput(); err != nil {
		t.Fatalf("shards prepare: %v\n%s", err, out)
	}
	newer := &proc{http: freeAddr(t), logs: &syncBuffer{}, done: make(chan struct{})}
	newer.cmd = exec.Command(cleanprodBinary(t), append([]string{"serve", "-http.listen", newer.http, "-gateway_config", "../../gateway-config",
		"-scoring.declarations", "../../scoring/declarations", "-log.level", "info"}, args(2, index)...)...)
	newer.cmd.Stdout, newer.cmd.Stderr = newer.logs, newer.logs
	newer.cmd.Env = append(os.Environ(), "CLEANPROD_INFLUX_TOKEN="+db.Token, "CLEANPROD_SHARD_SECRET="+testShardSecret)
	if err := newer.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { newer.cmd.Wait(); close(newer.done) }()
	t.Cleanup(newer.kill)
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + newer.http + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, 60*time.Second, "the new replica saying it waits for the old one", func() bool {
		_, body := readyz()
		return strings.Contains(body, "0of1 (shard count 1)")
	})

	gw := mqttClient(t, broker.URL(), "waits-gateway")
	now := time.Now().UTC().Truncate(time.Second)
	pub(t, gw, "cp/v1/"+ent+"/gw-plant-01/telemetry", fmt.Sprintf(`{"gateway":"gw-plant-01","seq":1,"readings":[{"meter":"E-MAIN-01","ts":%q,"value":10}]}`, now.Add(-2*time.Minute).Format(time.RFC3339)))
	waitFor(t, 20*time.Second, "the old replica storing the reading", func() bool {
		return old.metrics().metricOrZero("cleanprod_ingest_readings_written_total") == 1
	})
	if code, body := readyz(); code != http.StatusServiceUnavailable {
		t.Errorf("new replica's /readyz while the old runs: %d %s, want 503", code, body)
	}
	if n := newer.metrics().metricOrZero("cleanprod_ingest_messages_total"); n != 0 {
		t.Errorf("the new replica took %g messages while the old one runs, want 0", n)
	}

	old.stop(t)
	waitFor(t, 30*time.Second, "the new replica ready", func() bool { code, _ := readyz(); return code == http.StatusOK })
	pub(t, gw, "cp/v1/"+ent+"/gw-plant-01/telemetry", fmt.Sprintf(`{"gateway":"gw-plant-01","seq":2,"readings":[{"meter":"E-MAIN-01","ts":%q,"value":25}]}`, now.Add(-time.Minute).Format(time.RFC3339)))
	waitFor(t, 20*time.Second, "the new replica storing the reading after the old one stopped", func() bool {
		return newer.metrics().metricOrZero("cleanprod_ingest_readings_written_total") >= 1
	})
	// The reading the old replica stored came to the new one too (its
	// session was prepared, and held it back while the old one ran): it
	// is replayed, stored over itself, not counted again.
	waitFor(t, 20*time.Second, "the replayed message received", func() bool {
		return newer.metrics().metricOrZero("cleanprod_ingest_messages_total") == 2
	})
	t.Logf("new replica: written %g, duplicates %g, held %g, seq repeats %g", newer.metrics().metricOrZero("cleanprod_ingest_readings_written_total"),
		newer.metrics().metricOrZero("cleanprod_ingest_duplicates_total"), newer.metrics().metricOrZero("cleanprod_ingest_held_for_replicas_total"),
		newer.metrics().metricOrZero("cleanprod_ingest_sequence_repeats_total"))
	rows := db.QueryInfluxQL(t, `SELECT sum(delta) FROM reading WHERE meter = 'E-MAIN-01' AND enterprise = '`+ent+`'`)
	if len(rows) != 1 || fmt.Sprint(rows[0][1]) != "15000" {
		t.Errorf("E-MAIN-01's deltas: %v, want 15000 kWh (10 then 25 MWh, each once)", rows)
	}
}
