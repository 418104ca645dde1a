package deploycheck

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cleanprod/cleanprod/internal/yamlfile"
)

const composeShardsFile = deployDir + "/compose.shards.yaml"

// deploy/compose.shards.yaml over compose.yaml runs two shards: every
// cleanprod service has the same count and a different index, the peer
// URL names each by a network alias, the secret comes from deploy/.env,
// each has its own client id and data volume, and shard 1 mounts what
// shard 0 mounts (but its data).
func TestComposeShards(t *testing.T) {
	base := loadCompose(t)
	var over compose
	if _, err := yamlfile.DecodeFile(composeShardsFile, &over); err != nil {
		t.Fatal(err)
	}
	merged := map[string]composeService{}
	for name, s := range base.Services {
		merged[name] = s
	}
	for name, s := range over.Services {
		if b, ok := merged[name]; ok {
			for k, v := range s.Environment {
				if b.Environment == nil {
					b.Environment = map[string]string{}
				}
				b.Environment[k] = v
			}
			b.Networks = s.Networks
			merged[name] = b
			continue
		}
		merged[name] = s
	}
	var shards []string
	for name, s := range merged {
		if strings.HasPrefix(name, "cleanprod") && s.Environment["CLEANPROD_SHARD_COUNT"] != "" {
			shards = append(shards, name)
		}
	}
	slices.Sort(shards)
	if len(shards) != 2 {
		t.Fatalf("compose.shards.yaml: got shards %v, want two cleanprod services", shards)
	}
	seen := map[string]bool{}
	aliases := map[string]string{} // alias -> service
	for _, name := range shards {
		for _, a := range merged[name].Networks["default"].Aliases {
			aliases[a] = name
		}
	}
	for _, name := range shards {
		env := merged[name].Environment
		if env["CLEANPROD_SHARD_COUNT"] != strconv.Itoa(len(shards)) {
			t.Errorf("%s: CLEANPROD_SHARD_COUNT %q, want %d", name, env["CLEANPROD_SHARD_COUNT"], len(shards))
		}
		idx := env["CLEANPROD_SHARD_INDEX"]
		if seen["index"+idx] {
			t.Errorf("%s: index %s taken twice", name, idx)
		}
		seen["index"+idx] = true
		peer := strings.ReplaceAll(env["CLEANPROD_SHARD_PEER_URL"], "{index}", idx)
		host := strings.TrimPrefix(peer, "http://")
		host, _, _ = strings.Cut(host, ":")
		if aliases[host] != name {
			t.Errorf("%s: its peer URL %s names %q, not this service", name, peer, aliases[host])
		}
		if !strings.Contains(env["CLEANPROD_SHARD_SECRET"], "${CLEANPROD_SHARD_SECRET:?") {
			t.Errorf("%s: CLEANPROD_SHARD_SECRET %q, want it from deploy/.env", name, env["CLEANPROD_SHARD_SECRET"])
		}
		// Each shard's session is <user>-<i>of<n>, from the shard: the user
		// must carry {shard}, and no fixed client id may override it.
		if u := env["CLEANPROD_MQTT_USERNAME"]; u != "cleanprod-{shard}" {
			t.Errorf("%s: MQTT user %q, want cleanprod-{shard} (one broker user and session per shard)", name, u)
		}
		if id, ok := env["CLEANPROD_MQTT_CLIENT_ID"]; ok {
			t.Errorf("%s: MQTT client id %q fixed: it would differ from the one shards prepare subscribes", name, id)
		}
		for _, m := range merged[name].mounts() {
			if m.Named {
				if seen["vol"+m.Source] {
					t.Errorf("%s: volume %s shared with another shard", name, m.Source)
				}
				seen["vol"+m.Source] = true
				if _, ok := base.Volumes[m.Source]; !ok {
					if _, ok := over.Volumes[m.Source]; !ok {
						t.Errorf("%s: volume %s not declared", name, m.Source)
					}
				}
			} else if _, err := os.Stat(filepath.Join(deployDir, m.Source)); err != nil {
				if _, ok := generated[filepath.ToSlash(filepath.Clean(m.Source))]; !ok {
					t.Errorf("%s: mounts %s: %v", name, m.Source, err)
				}
			}
		}
	}
	unnamed := func(s composeService) []string {
		var out []string
		for _, v := range s.Volumes {
			if strings.HasPrefix(v, ".") {
				out = append(out, v)
			}
		}
		return out
	}
	if a, b := unnamed(merged[shards[0]]), unnamed(merged[shards[1]]); !slices.Equal(a, b) {
		t.Errorf("the shards mount different files:\n%v\n%v", a, b)
	}
	env, err := os.ReadFile(filepath.Join(deployDir, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(env), "CLEANPROD_SHARD_SECRET=") {
		t.Error(".env.example does not list CLEANPROD_SHARD_SECRET")
	}
}
