package main

import (
	"bytes"
	"os"
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
	for _, w := range []string{"c.yaml:2: field urll not found", "c.yaml:4: cannot unmarshal"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("got %q, want it to contain %q", err, w)
		}
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
