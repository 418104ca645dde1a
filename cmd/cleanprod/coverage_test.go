package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/sim"
)

// TestSilentSubMeterEndToEnd plays 31 days of Yuntai's gateways through a
// real mosquitto into cleanprod serve with InfluxDB, with one of its four
// electricity meters, E-BODY-01, silent for the last 10 days. The other
// three report every hour, so the plant's electricity total has data in
// every bucket; the API must still show the coverage of E-BODY-01 (about
// 20 of 30 days), the indicators reading the plant's electricity as
// insufficient, and E-BODY-01 named as the meter short of data.
func TestSilentSubMeterEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("plays 31 simulated days through real servers")
	}
	const ent, silent = "cq-lj-yuntai-auto", "E-BODY-01"
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)

	dir := t.TempDir()
	tokensFile := filepath.Join(dir, "tokens.yaml")
	token := addSupervisorToken(t, tokensFile)
	s := startServe(t, map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token},
		"-mqtt.url", broker.URL(), "-influx.url", db.URL, "-influx.bucket", db.Bucket, "-mqtt.client_id", "coverage",
		"-gateway_config", "../../gateway-config", "-data_dir", filepath.Join(dir, "data"), "-http.tokens_file", tokensFile,
		"-ingest.past_horizon", "800h", "-scoring.interval", "200ms")

	data, err := os.ReadFile("../../gateway-config/" + ent + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Parse(map[string][]byte{ent + ".yaml": data})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Hour)
	start := now.Add(-31 * 24 * time.Hour)
	silentFrom := now.Add(-10 * 24 * time.Hour)
	simu, err := sim.New(reg, sim.Config{Seed: 12, Start: start, Duration: 31*24*time.Hour - time.Hour, Interval: time.Hour, DriftScale: -1})
	if err != nil {
		t.Fatal(err)
	}
	client, err := sim.Dial(t.Context(), broker.URL(), "yuntai-gateways")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(100)
	mqttPub := sim.NewMQTTPublisher(client, 30*time.Second)
	var sent, dropped atomic.Int64
	pub := sim.PublisherFunc(func(ctx context.Context, topic string, payload []byte) error {
		if strings.HasSuffix(topic, "/hj212") {
			return mqttPub.Publish(ctx, topic, payload) // the stations' frames, forwarded as they are
		}
		var m map[string]any
		if err := json.Unmarshal(payload, &m); err != nil {
			return err
		}
		rs, _ := m["readings"].([]any)
		kept := rs[:0]
		for _, r := range rs {
			rd, _ := r.(map[string]any)
			ts, _ := time.Parse(time.RFC3339, rd["ts"].(string))
			if rd["meter"] == silent && !ts.Before(silentFrom) {
				dropped.Add(1)
				continue
			}
			kept = append(kept, r)
		}
		m["readings"] = kept
		out, err := json.Marshal(m)
		if err != nil {
			return err
		}
		sent.Add(int64(len(kept)))
		return mqttPub.Publish(ctx, topic, out)
	})
	if err := simu.Run(t.Context(), pub); err != nil {
		t.Fatal(err)
	}
	if dropped.Load() < 10*24-1 {
		t.Fatalf("dropped %d readings of %s, want its last 10 days", dropped.Load(), silent)
	}
	waitFor(t, 120*time.Second, "every reading stored", func() bool {
		return s.metricOrZero("cleanprod_ingest_readings_written_total") >= float64(sent.Load())
	})
	stored := time.Now()

	type indicator struct {
		ID       string   `json:"id"`
		Status   string   `json:"status"`
		Coverage *float64 `json:"coverage"`
		Short    []string `json:"short_meters"`
		Reason   string   `json:"reason"`
	}
	type enterprise struct {
		EvaluatedAt *time.Time `json:"evaluated_at"`
		Window      string     `json:"window"`
		Assessments []struct {
			Window     string      `json:"window"`
			Indicators []indicator `json:"indicators"`
		} `json:"assessments"`
	}
	var detail enterprise
	base := "http://" + s.http + "/api/v1/enterprises/" + ent
	waitFor(t, 60*time.Second, "an evaluation after the last reading was stored", func() bool {
		detail = enterprise{} // decoding into a used value would keep fields the answer omits
		return getJSON(base, token, &detail) == nil && detail.EvaluatedAt != nil && detail.EvaluatedAt.After(stored)
	})
	byID := map[string]indicator{}
	for _, a := range detail.Assessments {
		if a.Window == detail.Window {
			for _, ind := range a.Indicators {
				byID[ind.ID] = ind
			}
		}
	}
	cov := func(ind indicator) float64 {
		if ind.Coverage == nil {
			return -1
		}
		return *ind.Coverage
	}
	for _, id := range []string{"energy_per_vehicle", "co2_per_vehicle", "renewable_electricity_share"} {
		ind := byID[id]
		// E-BODY-01 reported in about 20 of the window's 30 days.
		if c := cov(ind); ind.Status != "insufficient" || c < 0.64 || c > 0.69 || !slices.Equal(ind.Short, []string{silent}) ||
			!strings.Contains(ind.Reason, silent) {
			t.Errorf("%s: got status %s, coverage %v, short meters %q, reason %q; want insufficient, about 0.67, [%s]",
				id, ind.Status, c, ind.Short, ind.Reason, silent)
		}
	}
	// The paint shop's electricity is its own meter, which kept reporting.
	if ind := byID["paintshop_energy_per_m2"]; ind.Status != "graded" || cov(ind) < 0.95 || len(ind.Short) != 0 {
		t.Errorf("paintshop_energy_per_m2: got status %s, coverage %v, short meters %q; want graded with full coverage", ind.Status, cov(ind), ind.Short)
	}
}

// addSupervisorToken adds a supervisor token for the shipped fleet to
// tokensFile with "cleanprod tokens add" and returns it.
func addSupervisorToken(t *testing.T, tokensFile string) string {
	t.Helper()
	var tokOut, errOut bytes.Buffer
	if err := run(t.Context(), []string{"tokens", "add", "-role", "supervisor", "-http.tokens_file", tokensFile,
		"-gateway_config", "../../gateway-config"}, func(string) string { return "" }, &tokOut, &errOut); err != nil {
		t.Fatalf("tokens add: %v\n%s", err, errOut.String())
	}
	return strings.TrimSpace(tokOut.String())
}
