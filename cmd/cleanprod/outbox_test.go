package main

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/outbox"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/store"
)

// downStore refuses every write, as a stopped InfluxDB does.
type downStore struct{}

func (downStore) WritePoints(context.Context, []store.Point) error {
	return &store.WriteError{Err: errors.New("connection refused")}
}

// TestServeDeliversOutboxLeftByACrash: a process stopped with events in
// its outbox that never reached the store (InfluxDB was down). The next
// serve on the same data folder counts them announced (its scorer holds
// those meters stale), stores each once and publishes each on its
// enterprise's topic.
func TestServeDeliversOutboxLeftByACrash(t *testing.T) {
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	dir := t.TempDir()

	// What the crashed process left: two stale meters, announced an hour
	// ago and not stored.
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	left := []scoring.Event{
		{Time: at, Enterprise: "cq-lj-yuntai-auto", Kind: scoring.EventStale, Meter: "E-PAINT-01", Reason: "no reading since the scorer started"},
		{Time: at, Enterprise: "cq-lj-yuntai-auto", Kind: scoring.EventStale, Meter: "NG-PAINT-01", Reason: "no reading since the scorer started"},
	}
	ob, err := outbox.Open(outbox.Config{Dir: filepath.Join(dir, "outbox"), Store: downStore{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Append(left); err != nil {
		t.Fatal(err)
	}
	ob.Close()

	var mu sync.Mutex
	published := map[string]int{}
	watcher := mqttClient(t, broker.URL(), "events-watcher")
	if tok := watcher.Subscribe("cp/v1/+/events", 1, func(_ mqtt.Client, m mqtt.Message) {
		var ev scoring.Event
		if json.Unmarshal(m.Payload(), &ev) == nil {
			mu.Lock()
			published[m.Topic()+" "+ev.Meter]++
			mu.Unlock()
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	s := startServe(t, map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token},
		"-mqtt.url", broker.URL(), "-influx.url", db.URL, "-influx.bucket", db.Bucket,
		"-gateway_config", "../../gateway-config", "-data_dir", dir, "-scoring.interval", "100ms")
	waitFor(t, 30*time.Second, "both events published", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return published["cp/v1/cq-lj-yuntai-auto/events E-PAINT-01"] > 0 && published["cp/v1/cq-lj-yuntai-auto/events NG-PAINT-01"] > 0
	})
	// The scorer counts them announced: both meters are stale from its
	// first grading on (a scorer that knew only the store would find
	// them fresh, and announce them stale again in six hours).
	waitFor(t, 30*time.Second, "the restored stale meters graded", func() bool {
		return s.metricOrZero(`cleanprod_scoring_stale_meters{enterprise="cq-lj-yuntai-auto"}`) == 2
	})
	st, err := store.OpenInflux(store.InfluxConfig{URL: db.URL, Token: db.Token, Bucket: db.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ps, err := st.Points(t.Context(), scoring.MeasurementEvent, map[string]string{"kind": string(scoring.EventStale)}, at.Add(-24*time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int{}
	for _, p := range ps {
		ev, _ := scoring.EventFromPoint(p)
		stored[ev.Meter]++
		if !ev.Time.Equal(at) {
			t.Errorf("stale event of %s at %s: announced again after the start", ev.Meter, ev.Time)
		}
	}
	for _, ev := range left {
		if stored[ev.Meter] != 1 {
			t.Errorf("stale event of %s stored %d times, want once", ev.Meter, stored[ev.Meter])
		}
	}
	if got := s.metricOrZero(`cleanprod_events_outbox_events{stage="store"}`); got != 0 {
		t.Errorf("%g events still wait for the store", got)
	}
}
