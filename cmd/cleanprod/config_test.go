package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The shipped example configuration loads, and sets what it says.
func TestShippedConfigLoads(t *testing.T) {
	var out bytes.Buffer
	cfg, _, err := loadConfig("serve", []string{"-config", "../../deploy/cleanprod.yaml"}, func(string) string { return "" }, &out)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.URL != "ssl://mosquitto:8883" || cfg.Influx.Bucket != "telemetry/autogen" || cfg.Ingest.BatchInterval != 250*time.Millisecond {
		t.Errorf("got %+v", cfg)
	}
}

// Flags beat the environment, which beats the file, which beats defaults.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/c.yaml"
	os.WriteFile(file, []byte("mqtt:\n  client_id: from-file\n  max_inflight: 7\nlog:\n  level: warn\n"), 0o644)
	env := map[string]string{"CLEANPROD_CONFIG": file, "CLEANPROD_MQTT_CLIENT_ID": "from-env", "CLEANPROD_INGEST_HISTORY": "9"}
	var out bytes.Buffer
	cfg, _, err := loadConfig("serve", []string{"-ingest.history", "11", "-influx.gzip=false"}, func(k string) string { return env[k] }, &out)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.ClientID != "from-env" || cfg.MQTT.MaxInflight != 7 || cfg.Log.Level != "warn" || cfg.Ingest.History != 11 || cfg.Influx.GZip || cfg.HTTP.Listen != "127.0.0.1:8080" {
		t.Errorf("got client_id %q max_inflight %d level %q history %d gzip %v listen %q",
			cfg.MQTT.ClientID, cfg.MQTT.MaxInflight, cfg.Log.Level, cfg.Ingest.History, cfg.Influx.GZip, cfg.HTTP.Listen)
	}
}

// A typo in the file is an error with file and line, never ignored.
func TestConfigFileIsStrict(t *testing.T) {
	file := t.TempDir() + "/c.yaml"
	os.WriteFile(file, []byte("mqtt:\n  urll: tcp://x:1883\ningest:\n  batch_size: many\n"), 0o644)
	var out bytes.Buffer
	_, _, err := loadConfig("serve", []string{"-config", file}, func(string) string { return "" }, &out)
	if err == nil {
		t.Fatal("got no error")
	}
	for _, w := range []string{"c.yaml:2: mqtt.urll: unknown key (did you mean mqtt.url?)", `c.yaml:4: ingest.batch_size: got "many", want a whole number`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("got %q, want it to contain %q", err, w)
		}
	}
}

// TestConfigErrorsNameKeyFileLine: every problem of a configuration
// names the key as the file writes it, the file and line (or the
// environment variable or flag that set it) and what the key takes,
// never the Go types behind it.
func TestConfigErrorsNameKeyFileLine(t *testing.T) {
	for _, c := range []struct {
		name, file string
		env        map[string]string
		args       []string
		want       []string
	}{
		{name: "types", file: "data_dir: /tmp/x\ningest:\n  batch_size: abc\n  batch_interval: 5\nmqtt:\n  keep_alive: soon\nhttp:\n  listen: [1, 2]\ninflux:\n  gzip: maybe\n",
			want: []string{
				`c.yaml:3: ingest.batch_size: got "abc", want a whole number`,
				"c.yaml:4: ingest.batch_interval: got the number 5, want a duration with its unit, such as 250ms, 30s, 5m or 1h30m",
				`c.yaml:6: mqtt.keep_alive: got "soon", want a duration`,
				"c.yaml:8: http.listen: got a list, want a string",
				`c.yaml:10: influx.gzip: got "maybe", want true or false`}},
		{name: "a section given a value", file: "ingest: 5\n",
			want: []string{"c.yaml:1: ingest: got the number 5, want a mapping of ingest.batch_size, ingest.batch_interval,"}},
		{name: "unknown keys", file: "mqtt:\n  urll: x\nbogus: 1\n",
			want: []string{"c.yaml:2: mqtt.urll: unknown key (did you mean mqtt.url?); mqtt takes url, client_id,",
				"c.yaml:3: bogus: unknown key; the file takes data_dir, gateway_config, http,"}},
		{name: "a value the key does not take", file: "data_dir: /tmp/x\nlog:\n  level: loud\n",
			want: []string{`c.yaml:3: log.level "loud": want debug, info, warn or error`}},
		{name: "from the environment", env: map[string]string{"CLEANPROD_LOG_LEVEL": "shout"},
			want: []string{`CLEANPROD_LOG_LEVEL: log.level "shout": want debug, info, warn or error`}},
		{name: "from a flag over the file", file: "log:\n  level: info\n", args: []string{"-log.level", "x"},
			want: []string{`-log.level: log.level "x": want debug, info, warn or error`}},
		{name: "shards without a secret", file: "shard:\n  count: 3\n  index: 1\n  peer_url: http://cleanprod-{index}:8080\n",
			want: []string{"shard.secret must be set, at least 16 characters, when shard.count is above 1"}},
		{name: "shards with a short secret", env: map[string]string{"CLEANPROD_SHARD_COUNT": "2", "CLEANPROD_SHARD_PEER_URL": "http://c-{index}:8080", "CLEANPROD_SHARD_SECRET": "short"},
			want: []string{"shard.secret must be set, at least 16 characters"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			args := c.args
			if c.file != "" {
				file := filepath.Join(dir, "c.yaml")
				if err := os.WriteFile(file, []byte(c.file), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append([]string{"-config", file}, args...)
			}
			_, _, err := loadConfig("serve", args, func(k string) string { return c.env[k] }, io.Discard)
			if err == nil {
				t.Fatal("got no error")
			}
			msg := strings.ReplaceAll(err.Error(), dir+"/", "")
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("got\n%s\nwant a line with %q", msg, w)
				}
			}
			if strings.Contains(msg, "struct {") || strings.Contains(msg, "cannot unmarshal") || strings.Contains(msg, "time.Duration") {
				t.Errorf("Go types in\n%s", msg)
			}
		})
	}
}

// serve -help documents every setting with its environment variable, and
// the README's configuration reference lists every one of them.
func TestEverySettingIsDocumented(t *testing.T) {
	var out bytes.Buffer
	loadConfig("serve", []string{"-help"}, func(string) string { return "" }, &out)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	for _, s := range settings(&cfg) {
		if s.help == "" {
			t.Errorf("%s has no help text", s.path)
		}
		if !strings.Contains(out.String(), "-"+s.path) || !strings.Contains(out.String(), s.env) {
			t.Errorf("serve -help does not mention -%s and %s", s.path, s.env)
		}
		if !strings.Contains(string(readme), "`"+s.env+"`") {
			t.Errorf("README.md does not document %s", s.env)
		}
	}
}

func TestShardSet(t *testing.T) {
	host := func(h string) func() (string, error) { return func() (string, error) { return h, nil } }
	cfg := defaultConfig()
	cfg.Shard.Count, cfg.Shard.Index = 3, 1
	if s, err := shardOf(&cfg, host("x")); err != nil || s.String() != "1/3" {
		t.Errorf("index 1 of 3: got %v, %v", s, err)
	}
	cfg.Shard.FromHostname = true
	if s, err := shardOf(&cfg, host("cleanprod-2")); err != nil || s.String() != "2/3" {
		t.Errorf("cleanprod-2: got %v, %v, want 2/3", s, err)
	}
	for _, h := range []string{"cleanprod", "cleanprod-3"} {
		if _, err := shardOf(&cfg, host(h)); err == nil {
			t.Errorf("host %s of 3 shards: accepted", h)
		}
	}
}
