package ingest

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

// MeterSeen is what LastSeen knows of one meter.
type MeterSeen struct {
	// Time and Value are those of the newest stored reading (Value in
	// canonical units: the register of a counter, the amount of a delta
	// meter, the measured value of a gauge). Zero Time: none seen.
	Time  time.Time
	Value float64
	// Rejects counts the meter's readings rejected since the server
	// started; LastReject and LastReason describe the newest.
	Rejects    int
	LastReject time.Time
	LastReason Reason
}

// GatewaySeen counts the rejects of a gateway that no registered meter
// can be blamed for: whole messages (malformed, unknown gateway, ...) and
// readings naming meters of other enterprises or none.
type GatewaySeen struct {
	Rejects    int
	LastReject time.Time
	LastReason Reason
}

type seenKey struct{ enterprise, meter string }

// LastSeen tracks, per registered meter, the newest stored reading and the
// rejected readings, for the API's meters view. It only observes: feed it
// the stored readings (Observe, as or next to the pipeline's ObserveFunc)
// and the dead-letters (wrap the pipeline's PublishFunc with
// PublishFunc). Only registered enterprises, gateways and meters are
// tracked, so its memory is bounded by the registry. Safe for concurrent
// use.
type LastSeen struct {
	mu  sync.RWMutex // guards reg, meters, gateways
	reg *registry.Registry
	// meters and gateways hold registered ids only.
	meters   map[seenKey]*MeterSeen
	gateways map[seenKey]*GatewaySeen // key meter field holds the gateway id
}

// NewLastSeen returns a tracker for the meters of reg.
func NewLastSeen(reg *registry.Registry) *LastSeen {
	return &LastSeen{reg: reg, meters: make(map[seenKey]*MeterSeen), gateways: make(map[seenKey]*GatewaySeen)}
}

// Observe records stored readings; its signature is an ObserveFunc's.
func (l *LastSeen) Observe(rs []store.Reading) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range rs {
		r := &rs[i]
		m := l.meter(r.Enterprise, r.Meter)
		if m != nil && !r.Time.Before(m.Time) {
			m.Time, m.Value = r.Time, r.Value
		}
	}
}

// SetRegistry switches to reg (a reloaded registry): what is known of
// meters and gateways that stay is kept, the others are forgotten.
func (l *LastSeen) SetRegistry(reg *registry.Registry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reg = reg
	for k := range l.meters {
		if _, ok := reg.Meter(k.enterprise, k.meter); !ok {
			delete(l.meters, k)
		}
	}
	for k := range l.gateways {
		if _, ok := reg.Gateway(k.enterprise, k.meter); !ok {
			delete(l.gateways, k)
		}
	}
}

// meter returns the entry of a registered meter (nil otherwise); call
// with mu held for writing.
func (l *LastSeen) meter(enterprise, meter string) *MeterSeen {
	k := seenKey{enterprise, meter}
	if m, ok := l.meters[k]; ok {
		return m
	}
	if _, ok := l.reg.Meter(enterprise, meter); !ok {
		return nil
	}
	m := &MeterSeen{}
	l.meters[k] = m
	return m
}

// PublishFunc wraps the pipeline's dead-letter publisher: every
// dead-letter published successfully is counted against its meters (or
// its gateway), then passed on unchanged.
func (l *LastSeen) PublishFunc(next PublishFunc) PublishFunc {
	return func(ctx context.Context, topic string, payload []byte) error {
		err := next(ctx, topic, payload)
		if err == nil && strings.HasPrefix(topic, DeadLetterPrefix) {
			l.deadLetter(payload)
		}
		return err
	}
}

func (l *LastSeen) deadLetter(payload []byte) {
	var dl DeadLetter
	if json.Unmarshal(payload, &dl) != nil {
		return
	}
	parts := strings.Split(dl.Topic, "/")
	if len(parts) != 5 || parts[0] != "cp" || parts[1] != "v1" {
		return
	}
	ent, gw := parts[2], parts[3]
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.reg.Gateway(ent, gw); !ok {
		return
	}
	blameGateway := func() {
		k := seenKey{ent, gw}
		g := l.gateways[k]
		if g == nil {
			g = &GatewaySeen{}
			l.gateways[k] = g
		}
		g.Rejects++
		if !dl.Received.Before(g.LastReject) {
			g.LastReject, g.LastReason = dl.Received, dl.Reason
		}
	}
	if len(dl.Readings) == 0 {
		blameGateway()
		return
	}
	for _, rr := range dl.Readings {
		var raw struct {
			Meter string `json:"meter"`
		}
		_ = json.Unmarshal(rr.Reading, &raw)
		m := l.meter(ent, raw.Meter)
		if m == nil || dl.Reason == ReasonSpoofed {
			blameGateway()
			continue
		}
		m.Rejects++
		if !dl.Received.Before(m.LastReject) {
			m.LastReject, m.LastReason = dl.Received, dl.Reason
		}
	}
}

// Meter returns what is known of a meter; ok is false when nothing is.
func (l *LastSeen) Meter(enterprise, meter string) (MeterSeen, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	m, ok := l.meters[seenKey{enterprise, meter}]
	if !ok {
		return MeterSeen{}, false
	}
	return *m, true
}

// Gateway returns the rejects blamed on a gateway rather than a meter.
func (l *LastSeen) Gateway(enterprise, gateway string) (GatewaySeen, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	g, ok := l.gateways[seenKey{enterprise, gateway}]
	if !ok {
		return GatewaySeen{}, false
	}
	return *g, true
}
