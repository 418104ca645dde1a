package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadConfig loads fuzzed bytes as the -config file of serve.
// Invariant: an error, or a configuration that validates; never a panic.
func FuzzLoadConfig(f *testing.F) {
	for _, name := range []string{"../../deploy/cleanprod.yaml"} {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{
		"http:\n  listen: 127.0.0.1:0\nmqtt:\n  url: ssl://broker:8883\n  password: hunter2\n  ca_file: ca.pem\ninflux:\n  url: http://influx:8086\n  token: tok\n",
		"ingest:\n  batch_size: 0\n  history: -1\n  past_horizon: -5m\nlog:\n  level: loud\n",
		"ingest:\n  future_horizon: 2562047h\n  max_payload_bytes: 9223372036854775807\n",
		"mqtt:\n  keep_alive: 1.5\n", "mqtt:\n  cert_file: c.pem\n", "data_dir: ''\nmqtt:\n  url: ''\n", "unknown: 1\n", "http: 5\n", "[]\n", "",
		"mqtt: &m {url: tcp://x:1883}\nembedded_broker: *m\n",
	} {
		f.Add([]byte(s))
	}
	dir, err := os.MkdirTemp("", "cleanprod-fuzz-config-")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "cleanprod.yaml")
	getenv := func(string) string { return "" }
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := loadConfig("serve", []string{"-config", path}, getenv, io.Discard)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an empty error")
			}
			return
		}
		if errs := cfg.validate(); len(errs) > 0 {
			t.Fatalf("loaded a configuration that does not validate: %v", errs)
		}
	})
}
