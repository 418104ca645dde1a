package main

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cleanprod/cleanprod/shard"
)

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
}
