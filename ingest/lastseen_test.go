package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

func TestLastSeen(t *testing.T) {
	reg, err := registry.Load("testdata/registry")
	if err != nil {
		t.Fatal(err)
	}
	ent := reg.Enterprises[0]
	m, gw := ent.Meters[0], ent.Gateways[0]
	l := NewLastSeen(reg)
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	l.Observe([]store.Reading{
		{Enterprise: ent.ID, Meter: m.ID, Time: t0.Add(time.Hour), Value: 2},
		{Enterprise: ent.ID, Meter: m.ID, Time: t0, Value: 1}, // late: older, does not win
		{Enterprise: "nobody", Meter: "X", Time: t0, Value: 3},
	})
	if got, ok := l.Meter(ent.ID, m.ID); !ok || got.Value != 2 || !got.Time.Equal(t0.Add(time.Hour)) {
		t.Errorf("got %+v %v, want the newest reading", got, ok)
	}
	if _, ok := l.Meter("nobody", "X"); ok {
		t.Error("tracked an unregistered meter")
	}

	topic := "cp/v1/" + ent.ID + "/" + gw.ID + "/telemetry"
	letter := func(dl DeadLetter) []byte { b, _ := json.Marshal(dl); return b }
	var failing bool
	publish := l.PublishFunc(func(ctx context.Context, topic string, payload []byte) error {
		if failing {
			return errors.New("broker down")
		}
		return nil
	})
	reading := json.RawMessage(`{"meter": "` + m.ID + `", "ts": "x", "value": 1}`)
	ctx := context.Background()
	publish(ctx, DeadLetterTopic(ReasonBadTimestamp), letter(DeadLetter{Reason: ReasonBadTimestamp, Topic: topic, Received: t0,
		Readings: []RejectedReading{{Reading: reading}, {Reading: json.RawMessage(`{"meter": "NOT-MINE"}`)}}}))
	publish(ctx, DeadLetterTopic(ReasonMalformed), letter(DeadLetter{Reason: ReasonMalformed, Topic: topic, Received: t0}))
	failing = true // not published: not counted (the pipeline retries it)
	publish(ctx, DeadLetterTopic(ReasonMalformed), letter(DeadLetter{Reason: ReasonMalformed, Topic: topic, Received: t0}))
	failing = false
	publish(ctx, "cp/v1/"+ent.ID+"/events", []byte(`{}`)) // not a dead-letter
	publish(ctx, DeadLetterTopic(ReasonUnknownGateway), letter(DeadLetter{Reason: ReasonUnknownGateway, Topic: "cp/v1/x/y/telemetry", Received: t0}))

	if got, _ := l.Meter(ent.ID, m.ID); got.Rejects != 1 || got.LastReason != ReasonBadTimestamp {
		t.Errorf("meter rejects: got %+v", got)
	}
	if got, ok := l.Gateway(ent.ID, gw.ID); !ok || got.Rejects != 2 || got.LastReason != ReasonMalformed {
		t.Errorf("gateway rejects: got %+v, want the malformed message and the reading of a meter not its own", got)
	}
}
