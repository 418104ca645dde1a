package main

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/internal/testenv"
)

// data_through, the newest reading an enterprise's result includes,
// never goes back: not across a restart either, also when the newest
// reading is older than ingest.past_horizon by then (meter state is not
// read back for it, only the scorer's windows are).
func TestDataThroughAcrossRestart(t *testing.T) {
	for _, tt := range []struct {
		name    string
		influx  bool          // InfluxDB, else the embedded store
		horizon time.Duration // ingest.past_horizon
		age     time.Duration // how old the newest reading is when published
	}{
		{"within the past horizon", false, 24 * time.Hour, 10*time.Minute + 17*time.Second},
		{"beyond the past horizon at the restart", false, 20 * time.Second, 7 * time.Second},
		{"beyond the past horizon at the restart, InfluxDB", true, 20 * time.Second, 7 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var env map[string]string
			var storeArgs []string
			if tt.influx {
				testenv.NeedServers(t)
				db := testenv.Influx(t)
				env = map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token}
				storeArgs = []string{"-influx.url", db.URL, "-influx.bucket", db.Bucket}
			}
			dir := t.TempDir()
			tokensFile := filepath.Join(dir, "tokens.yaml")
			token := addSupervisorToken(t, tokensFile)
			brokerAddr := freeAddr(t)
			args := []string{"-embedded_broker.listen", brokerAddr, "-gateway_config", "../../gateway-config", "-data_dir", filepath.Join(dir, "data"),
				"-http.tokens_file", tokensFile, "-ingest.past_horizon", tt.horizon.String(), "-scoring.interval", "200ms"}
			args = append(args, storeArgs...)
			dataThrough := func(s *service) time.Time {
				var d struct {
					DataThrough *time.Time `json:"data_through"`
				}
				if getJSON("http://"+s.http+"/api/v1/enterprises/cq-lj-yuntai-auto", token, &d) != nil || d.DataThrough == nil {
					return time.Time{}
				}
				return *d.DataThrough
			}

			s := startServe(t, env, args...)
			gw := mqttClient(t, "tcp://"+brokerAddr, "data-through-gateway")
			ts := time.Now().UTC().Truncate(time.Second).Add(-tt.age)
			const topic = "cp/v1/cq-lj-yuntai-auto/gw-paint-01/telemetry"
			pub(t, gw, topic, fmt.Sprintf(`{"gateway":"gw-paint-01","seq":1,"readings":[{"meter":"E-PAINT-01","ts":%q,"value":100},{"meter":"E-PAINT-01","ts":%q,"value":100.1}]}`,
				ts.Add(-time.Minute).Format(time.RFC3339), ts.Format(time.RFC3339)))
			waitFor(t, 30*time.Second, "data_through at the newest reading", func() bool { return dataThrough(s).Equal(ts) })
			gw.Disconnect(100)
			s.stop(t)
			if wait := time.Until(ts.Add(tt.horizon + time.Second)); tt.horizon < time.Hour && wait > 0 {
				time.Sleep(wait) // the newest reading now older than the past horizon
			}

			s = startServe(t, env, args...)
			// From the first answer on, and for a few evaluations after.
			var seen []time.Time
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				if d := dataThrough(s); !d.IsZero() {
					seen = append(seen, d)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if len(seen) == 0 {
				t.Fatal("no data_through after the restart")
			}
			for _, d := range seen {
				if !d.Equal(ts) {
					t.Fatalf("data_through after the restart went to %s, want %s as before it", d.Format(time.RFC3339), ts.Format(time.RFC3339))
				}
			}
		})
	}
}
