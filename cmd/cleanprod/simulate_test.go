package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/sim"
	"github.com/cleanprod/cleanprod/store"
)

// TestSimulatorAgainstService publishes two simulated days of the shipped
// fleet, with every kind of fault, counter resets and rollovers, into
// serve on its embedded broker and store, then checks that what was
// stored equals what the simulator says it sent, meter by meter, and that
// each injected fault was rejected with its reason.
func TestSimulatorAgainstService(t *testing.T) {
	dataDir := t.TempDir()
	brokerAddr := freeAddr(t)
	s := startServe(t, nil, "-embedded_broker.listen", brokerAddr, "-gateway_config", "../../gateway-config",
		"-data_dir", dataDir, "-ingest.past_horizon", "240h", "-log.level", "warn")

	reg, err := registry.Load("../../gateway-config")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	simulator, err := sim.New(reg, sim.Config{
		Seed: 7, Start: now.Add(-50 * time.Hour).Truncate(time.Hour), Duration: 48 * time.Hour,
		Interval: 15 * time.Minute, Workers: 4, Resets: 0.5,
		Now: func() time.Time { return now },
		Faults: sim.Faults{Malformed: 1, UnknownGateway: 1, Spoofed: 1, UnknownMeter: 1, NaN: 1, Future: 1,
			Duplicate: 2, OutOfOrder: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	client, err := sim.Dial(context.Background(), "tcp://"+brokerAddr, "test-simulator")
	if err != nil {
		t.Fatal(err)
	}
	if err := simulator.Run(context.Background(), sim.NewMQTTPublisher(client, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	client.Disconnect(100)
	ledger := simulator.Ledger()
	waitFor(t, 60*time.Second, fmt.Sprintf("%d readings written", ledger.Readings), func() bool {
		return s.metric(t, "cleanprod_ingest_readings_written_total") == float64(ledger.Readings) &&
			s.metric(t, "cleanprod_ingest_inflight_messages") == 0
	})
	for reason, n := range ledger.Rejected {
		if got := s.metric(t, fmt.Sprintf(`cleanprod_ingest_rejected_total{reason=%q}`, reason)); got != float64(n) {
			t.Errorf("rejected{%s}: got %g, want %d", reason, got, n)
		}
	}
	if ledger.Rejections() == 0 || ledger.Duplicates == 0 || ledger.Delayed == 0 {
		t.Fatalf("the run injected no faults: %+v", ledger)
	}
	if got := s.metric(t, "cleanprod_ingest_counter_events_total{event=\"reset\"}"); got == 0 {
		t.Errorf("no counter reset was seen; the simulator was asked for some")
	}
	s.stop(t)

	st, err := store.OpenBolt(dataDir + "/readings.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	for _, mt := range ledger.Meters {
		rs, err := st.Readings(ctx, mt.Enterprise, mt.Meter, mt.First, mt.Last.Add(time.Nanosecond))
		if err != nil {
			t.Fatal(err)
		}
		var sum, valueSum float64
		for _, r := range rs {
			sum += r.Delta
			valueSum += r.Value
		}
		if mt.Kind == registry.Gauge {
			sum = valueSum
		}
		want := mt.Stored()
		if len(rs) != mt.Readings || math.Abs(sum-want) > 1e-6*math.Max(1, math.Abs(want)) {
			t.Errorf("%s/%s (%s %s): stored %d readings summing to %.6f, simulator sent %d summing to %.6f",
				mt.Enterprise, mt.Meter, mt.Kind, mt.Quantity, len(rs), sum, mt.Readings, want)
		}
	}
	if t.Failed() {
		var b strings.Builder
		simulator.WriteSummary(&b)
		t.Log(b.String())
	}
}
