package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// TestPastEventsBounded: a start reads back, of the events announced
// before, the newest of each series and each enterprise's recentKeep
// newest, plus what the outbox still holds: however long the history,
// an old code change still restores, and a year of hourly exceedances
// is not read back whole.
func TestPastEventsBounded(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "readings.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	t0 := now.Add(-300 * 24 * time.Hour)
	var evs []scoring.Event
	evs = append(evs,
		scoring.Event{Time: t0, Enterprise: "e1", Kind: scoring.EventCodeChange, OldCode: "green", NewCode: "red", NewLevel: scoring.LevelIII, Reason: "old"},
		scoring.Event{Time: t0.Add(time.Minute), Enterprise: "e1", Kind: scoring.EventLevelDrop, Indicator: "water", OldLevel: scoring.LevelI, NewLevel: scoring.LevelII},
		scoring.Event{Time: t0.Add(2 * time.Minute), Enterprise: "e1", Kind: scoring.EventStale, Meter: "flow", Resolved: true},
		scoring.Event{Time: t0.Add(3 * time.Minute), Enterprise: "e2", Kind: scoring.EventCodeChange, NewCode: "yellow", NewLevel: scoring.LevelII},
	)
	const hours = 24 * 200
	for h := range hours {
		evs = append(evs, scoring.Event{Time: t0.Add(time.Duration(h+1) * time.Hour), Enterprise: "e1", Kind: scoring.EventExceedance, Meter: "cod", NewValue: 60, OldValue: 50})
	}
	ps := make([]store.Point, len(evs))
	for i, e := range evs {
		ps[i] = scoring.EventPoint(e)
	}
	if err := st.WritePoints(t.Context(), ps); err != nil {
		t.Fatal(err)
	}
	// The outbox holds one announced just before the stop, not stored.
	pending := scoring.Event{Time: now.Add(-time.Minute), Enterprise: "e2", Kind: scoring.EventStale, Meter: "ph"}
	got, err := pastEvents(t.Context(), st, []scoring.Event{pending}, now, recentKeep)
	if err != nil {
		t.Fatal(err)
	}
	count := map[scoring.EventKind]int{}
	var newestExceedance time.Time
	for i, e := range got {
		count[e.Kind]++
		if i > 0 && e.Time.Before(got[i-1].Time) {
			t.Errorf("event %d (%s) before the one ahead of it: want oldest first", i, e)
		}
		if e.Kind == scoring.EventExceedance && e.Time.After(newestExceedance) {
			newestExceedance = e.Time
		}
		if e.Kind == scoring.EventCodeChange && e.Enterprise == "e1" && (e.NewCode != "red" || e.Reason != "old") {
			t.Errorf("e1's code change read back as %+v", e)
		}
	}
	// e1: its 50 newest (exceedances) and the newest of each other series
	// (code change, level drop, stale); e2: its code change and the
	// outbox's stale.
	want := map[scoring.EventKind]int{scoring.EventExceedance: recentKeep, scoring.EventCodeChange: 2, scoring.EventLevelDrop: 1, scoring.EventStale: 2}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Errorf("read back by kind %v, want %v (of %d stored)", count, want, len(evs))
	}
	if wantT := t0.Add(hours * time.Hour); !newestExceedance.Equal(wantT) {
		t.Errorf("newest exceedance read back %v, want %v", newestExceedance, wantT)
	}
}
