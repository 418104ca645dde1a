package sim_test

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/hj212"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/sim"
)

const stationOnly = `
enterprise: {id: plant-s, name: Plant S}
gateways:
  - id: st-ww-01
    hj212: {mn: PLANTS0WW01, password: "654321"}
    meters:
      - {id: WW-OUT, quantity: wastewater, unit: m3, kind: delta, hj212: {code: w00000, data: minute}}
      - {id: WW-OUT-COD, quantity: cod, unit: mg/L, kind: gauge, flow_meter: WW-OUT, hj212: {code: w01018, data: minute}}
`

// TestStationLink runs a station's logger against a platform that is
// down at first and then drops the 9014 of every frame's first send: the
// logger keeps its frames while it cannot connect, sends each again until
// it is acknowledged, in the order measured, and the garbled copies get
// their 9011 and are not sent again.
func TestStationLink(t *testing.T) {
	reg, err := registry.Parse(map[string][]byte{"s.yaml": []byte(stationOnly)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 14, 0, 0, 0, 0, time.UTC)
	cfg := sim.Config{Seed: 9, Start: start, Duration: 3 * time.Hour, Stations: sim.Stations{BadCRC: 15}, Now: fixedNow(start)}
	var want []string // QNs of the intact frames, in order
	garbled := 0
	ref, err := sim.New(reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var codec hj212.Codec
	for m := range ref.Messages() {
		p, err := codec.Decode(m.Payload)
		if m.Fault == sim.FaultBadCRC {
			garbled++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, p.QN)
	}
	if garbled == 0 {
		t.Fatal("no garbled frame in the run: pick another seed")
	}

	// The platform's address, not listening yet.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	var mu sync.Mutex
	seen := map[string]int{}
	var confirmed []string
	srv := &hj212.Server{Handler: func(r *hj212.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen[r.Packet.QN]++
		if seen[r.Packet.QN] == 1 {
			r.Drop() // the 9014 is lost on the way
			return
		}
		if !slices.Contains(confirmed, r.Packet.QN) {
			confirmed = append(confirmed, r.Packet.QN)
		}
		r.Confirm()
	}}
	var rejected int
	srv.OnError = func(_ net.Addr, e *hj212.Error) {
		mu.Lock()
		defer mu.Unlock()
		if e.Reason == hj212.ReasonBadCRC {
			rejected++
		}
	}

	s, err := sim.New(reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	link := &sim.StationLink{Addr: addr, AckTimeout: 100 * time.Millisecond, Retries: 3}
	defer link.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, link) }()
	for s.Stats().Errors == 0 { // the logger cannot connect
		select {
		case err := <-done:
			t.Fatalf("run ended with the platform down: %v", err)
		case <-ctx.Done():
			t.Fatal("no failed connection")
		case <-time.After(10 * time.Millisecond):
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the platform's port was taken meanwhile: %v", err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := link.Flush(ctx); err != nil {
		t.Fatalf("flush: %v (%+v)", err, link.Stats())
	}

	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(confirmed, want) {
		t.Errorf("confirmed %d frames %v,\nwant %d in the order measured %v", len(confirmed), confirmed, len(want), want)
	}
	if rejected != garbled {
		t.Errorf("%d garbled frames reached the platform, want %d (each once)", rejected, garbled)
	}
	st := link.Stats()
	if st.Acked != len(want) || st.Refused != 0 || st.Resent < len(want) {
		t.Errorf("link %+v: want %d acknowledged, none refused, each frame sent again", st, len(want))
	}
	if l := s.Ledger(); l.Messages != len(want)+garbled {
		t.Errorf("ledger: %d messages, want %d", l.Messages, len(want)+garbled)
	}
}
