package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cleanprod/cleanprod/ingest"
	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/sim"
)

// TestSimulatedStation runs the simulator's HJ 212 logger over TCP against
// serve with real mosquitto and InfluxDB for six simulated hours, with
// garbled frames, flagged values and offline periods: every valid value
// is stored once (the backlog of the offline periods too), each frame is
// acknowledged, each garbled frame is rejected with its reason and
// dead-lettered, and each value flagged invalid is kept apart with its
// flag, counted toward nothing.
func TestSimulatedStation(t *testing.T) {
	broker := testenv.Mosquitto(t)
	srv := testenv.NewInflux(t)
	db := srv.Database(t)
	stations := freeAddr(t)
	s := startServe(t, map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token},
		"-mqtt.url", broker.URL(), "-influx.url", db.URL, "-influx.bucket", db.Bucket,
		"-gateway_config", "testdata/hj212-config", "-hj212.listen", stations)

	var mu sync.Mutex
	letters := map[ingest.Reason]int{}
	mon := mqttClient(t, broker.URL(), "test-monitor")
	if tok := mon.Subscribe("cp/v1/deadletter/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		var dl ingest.DeadLetter
		json.Unmarshal(m.Payload(), &dl)
		mu.Lock()
		letters[dl.Reason]++
		mu.Unlock()
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	reg, err := registry.Load("testdata/hj212-config")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cfg := sim.Config{
		Seed: 3, Start: now.Add(-8 * time.Hour), Duration: 6 * time.Hour, Interval: 5 * time.Minute,
		Stations: sim.Stations{BadCRC: 8, DataFlag: 8, Offline: 8, OfflineFor: 40 * time.Minute},
	}
	simulator, err := sim.New(reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	client, err := sim.Dial(t.Context(), broker.URL(), "test-simulator")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(100)
	link := &sim.StationLink{Addr: stations, Next: sim.NewMQTTPublisher(client, 10*time.Second), AckTimeout: 5 * time.Second}
	defer link.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := simulator.Run(ctx, link); err != nil {
		t.Fatal(err)
	}
	if err := link.Flush(ctx); err != nil {
		t.Fatalf("flush: %v (%+v)", err, link.Stats())
	}

	l := simulator.Ledger()
	badCRC, flagged := l.Rejected["hj212_bad_crc"], l.Flagged
	if l.Backlog == 0 || badCRC == 0 || flagged == 0 {
		t.Fatalf("ledger %+v: want backlog, bad CRC and flagged values in six hours", l)
	}
	st := link.Stats()
	// Every intact frame answered by a 9014 (each minute frame, and the
	// hourly ones), none refused.
	frames := int(l.Messages) - badCRC - meterReadings(l, "E-PAINT-01")
	if st.Acked != frames || st.Refused != 0 {
		t.Errorf("link %+v: want %d frames acknowledged, none refused", st, frames)
	}

	checkStored(t, db, l)
	waitFor(t, 30*time.Second, "the rejections counted", func() bool {
		return s.metricOrZero(`cleanprod_ingest_rejected_total{reason="hj212_bad_crc"}`) == float64(badCRC) &&
			s.metricOrZero(`cleanprod_ingest_flagged_values_total{flag="C"}`)+
				s.metricOrZero(`cleanprod_ingest_flagged_values_total{flag="M"}`)+
				s.metricOrZero(`cleanprod_ingest_flagged_values_total{flag="D"}`) == float64(flagged)
	})
	waitFor(t, 30*time.Second, "the flagged values kept apart", func() bool {
		rows := db.QueryInfluxQL(t, `SELECT count(value) FROM reading_flagged`)
		return len(rows) == 1 && fmt.Sprint(rows[0][1]) == fmt.Sprint(flagged)
	})
	if rows := db.QueryInfluxQL(t, `SELECT count(value) FROM reading_flagged WHERE flag = 'N' OR flag = 'S'`); len(rows) != 0 {
		t.Errorf("valid values among the flagged ones: %v", rows)
	}
	waitFor(t, 30*time.Second, "the garbled frames dead-lettered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return letters["hj212_bad_crc"] == badCRC
	})
	t.Logf("ledger: %d readings, %d backlog frames, %d bad CRC, %d flagged; link %+v", l.Readings, l.Backlog, badCRC, flagged, st)

	// The logger sends its whole history again (its memory replayed after
	// a platform restore): the same frames, taken as duplicates and
	// acknowledged, nothing stored twice.
	dups := s.metricOrZero("cleanprod_ingest_duplicates_total")
	again, err := sim.New(reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	link2 := &sim.StationLink{Addr: stations, Next: sim.NewMQTTPublisher(client, 10*time.Second), AckTimeout: 5 * time.Second, Window: 8}
	defer link2.Close()
	if err := again.Run(ctx, link2); err != nil {
		t.Fatal(err)
	}
	if err := link2.Flush(ctx); err != nil {
		t.Fatalf("flush: %v (%+v)", err, link2.Stats())
	}
	if st2 := link2.Stats(); st2.Acked != frames {
		t.Errorf("history sent again: %d frames acknowledged, want %d", st2.Acked, frames)
	}
	waitFor(t, 30*time.Second, "the history counted as duplicates", func() bool {
		return s.metricOrZero("cleanprod_ingest_duplicates_total")-dups >= float64(l.Readings)
	})
	checkStored(t, db, l)
}

// checkStored checks that the station's meters hold what the simulator
// sent: as many points as valid readings, and their sum.
func checkStored(t *testing.T, db *testenv.InfluxDB, l sim.Ledger) {
	t.Helper()
	for _, m := range []string{"WW-OUT-COD", "WW-OUT"} {
		want, _ := l.Meter("test-plant", m)
		field := "value" // the analyser, a gauge
		if m == "WW-OUT" {
			field = "delta" // the flow: the station sends each period's volume
		}
		q := fmt.Sprintf(`SELECT count(%[1]q), sum(%[1]q) FROM reading WHERE meter = '%[2]s'`, field, m)
		waitFor(t, 30*time.Second, m+" stored", func() bool {
			rows := db.QueryInfluxQL(t, q)
			return len(rows) == 1 && fmt.Sprint(rows[0][1]) == fmt.Sprint(want.Readings)
		})
		rows := db.QueryInfluxQL(t, q)
		sum, _ := rows[0][2].(float64)
		if m == "WW-OUT-COD" {
			// Every stored value of the station carries its valid flag.
			flags := db.QueryInfluxQL(t, `SELECT count(flag) FROM reading WHERE meter = 'WW-OUT-COD' AND flag = 'N'`)
			if len(flags) != 1 || fmt.Sprint(flags[0][1]) != fmt.Sprint(want.Readings) {
				t.Errorf("%s: stored flags %v, want %d values flagged N", m, flags, want.Readings)
			}
		}
		wantSum := want.ValueSum
		if m == "WW-OUT" {
			wantSum = want.Sum
		}
		if math.Abs(sum-wantSum) > 1e-9*math.Abs(wantSum) {
			t.Errorf("%s: stored sum %v, the simulator sent %v: each value once", m, sum, wantSum)
		}
	}
}

// meterReadings is the number of messages a JSON meter sent: here one
// per interval, as its gateway has no other meter.
func meterReadings(l sim.Ledger, meter string) int {
	for _, m := range l.Meters {
		if m.Meter == meter {
			return m.Readings
		}
	}
	return 0
}
