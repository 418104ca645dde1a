package sim_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/hj212"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/sim"
)

// TestStationFrames runs the shipped fleet's HJ 212 stations for four
// simulated days with every station fault and reads each frame back with
// the codec: good frames decode, carry their station's MN and PW and ask
// for a 9014; garbled ones fail on their CRC; the faults come at their
// configured rates; the valid values add up to the ledger.
func TestStationFrames(t *testing.T) {
	reg := loadFleet(t)
	start := time.Date(2026, 11, 14, 0, 0, 0, 0, time.UTC)
	const days = 4
	cfg := sim.Config{
		Seed: 7, Start: start, Duration: days * 24 * time.Hour, Now: fixedNow(start),
		Stations: sim.Stations{BadCRC: 4, DataFlag: 6, Offline: 1, OfflineFor: 3 * time.Hour},
	}
	s, err := sim.New(reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	type stationCount struct{ minute, hourly, badCRC, flagged, backlog int }
	counts := map[string]*stationCount{}
	cou := map[string]float64{} // valid w00000/a00000 Cou of minute data per station MN
	late := 0
	for m := range s.Messages() {
		if !strings.HasSuffix(m.Topic, "/hj212") {
			continue
		}
		parts := strings.Split(m.Topic, "/")
		gw, ok := reg.Gateway(parts[2], parts[3])
		if !ok || gw.Station == nil {
			t.Fatalf("frame on %s: not a registered station", m.Topic)
		}
		st := gw.Station
		c := counts[st.MN]
		if c == nil {
			c = &stationCount{}
			counts[st.MN] = c
		}
		codec := hj212.Codec{Location: st.Location}
		p, err := codec.Decode(m.Payload)
		if m.Fault == sim.FaultBadCRC {
			var e *hj212.Error
			if !errors.As(err, &e) || e.Reason != hj212.ReasonBadCRC {
				t.Fatalf("garbled frame %q: got %v, want a bad CRC", m.Payload, err)
			}
			c.badCRC++
			continue
		}
		if err != nil {
			t.Fatalf("frame %q: %v", m.Payload, err)
		}
		if p.MN != st.MN || p.PW != st.Password || !p.Flag.Ack() || p.Flag.Version() != hj212.Version2017 {
			t.Fatalf("frame %q: MN %s PW %s Flag %d, want %s %s and an acknowledgement asked for", m.Payload, p.MN, p.PW, p.Flag, st.MN, st.Password)
		}
		d, err := codec.ParseData(p.CP)
		if err != nil || len(d.Rejects) > 0 {
			t.Fatalf("frame %q: data %v %v", m.Payload, err, d.Rejects)
		}
		if m.Fault == sim.FaultBacklog {
			c.backlog++
			if d.Time.After(m.Sent) {
				t.Errorf("backlog frame %q sent at %v, before its data", m.Payload, m.Sent)
			}
		}
		switch p.CN {
		case hj212.CNMinute:
			c.minute++
			if m.Sent.Sub(d.Time) >= time.Hour {
				late++
			}
			flagged := 0
			for _, v := range d.Values {
				if _, ok := st.Meter(registry.HJ212Source{Code: v.Code, Field: v.Field, CN: 2051}); !ok {
					t.Fatalf("frame %q: %s-%s goes to no meter", m.Payload, v.Code, v.Field)
				}
				switch v.Flag {
				case "N":
					if v.Code == "w00000" || v.Code == "a00000" {
						cou[st.MN] += v.Value
					}
				case "C", "M", "D":
					flagged++
				default:
					t.Fatalf("frame %q: flag %q", m.Payload, v.Flag)
				}
			}
			if want := map[bool]int{true: 1, false: 0}[m.Fault == sim.FaultDataFlag]; flagged != want {
				t.Fatalf("frame %q (fault %v): %d flagged values, want %d", m.Payload, m.Fault, flagged, want)
			}
			if flagged > 0 {
				c.flagged++
			}
		case hj212.CNHourly:
			c.hourly++
			if lt := d.Time.In(st.Location); lt.Minute() != 0 || lt.Second() != 0 {
				t.Errorf("hourly frame %q: DataTime not on the hour", m.Payload)
			}
		default:
			t.Fatalf("frame %q: CN %s, want 2051 or 2061", m.Payload, p.CN)
		}
	}

	if len(counts) != 8 {
		t.Fatalf("%d stations sent frames, want 8 (two per plant)", len(counts))
	}
	var total stationCount
	for mn, c := range counts {
		// 12 frames an hour, every hour an hourly one.
		if want := days * 24 * 12; c.minute < want-1 || c.minute > want+1 {
			t.Errorf("station %s: %d minute frames, want %d", mn, c.minute, want)
		}
		if want := days * 24; c.hourly < want-1 || c.hourly > want+1 {
			t.Errorf("station %s: %d hourly frames, want %d", mn, c.hourly, want)
		}
		total.minute += c.minute
		total.badCRC += c.badCRC
		total.flagged += c.flagged
		total.backlog += c.backlog
	}
	// Binomial counts over about 9,200 frames: 4 % ± 0.8 and 6 % ± 1.0
	// at four standard deviations (seed 7 draws 6.8 % data flags).
	for _, r := range []struct {
		name      string
		got, want float64
	}{
		{"bad CRC", float64(total.badCRC), 4},
		{"data flag", float64(total.flagged), 6},
	} {
		got := 100 * r.got / float64(total.minute)
		if tol := 4 * 100 * math.Sqrt(r.want/100*(1-r.want/100)/float64(total.minute)); math.Abs(got-r.want) > tol {
			t.Errorf("%s in %.2f %% of minute frames, want %v %% ± %.2f", r.name, got, r.want, tol)
		}
	}
	if total.backlog == 0 || late == 0 {
		t.Errorf("backlog frames %d, late minute data %d: want an offline period with its history", total.backlog, late)
	}

	l := s.Ledger()
	if l.Backlog != total.backlog {
		t.Errorf("ledger backlog %d, want %d", l.Backlog, total.backlog)
	}
	if l.Rejected["hj212_bad_crc"] != total.badCRC || l.Flagged != total.flagged || len(l.Rejected) != 1 {
		t.Errorf("ledger rejections %v, flagged %d; want only hj212_bad_crc %d, and %d flagged", l.Rejected, l.Flagged, total.badCRC, total.flagged)
	}
	// The frames carry the ledger's readings: the valid volumes add up.
	for _, mt := range l.Meters {
		if mt.Meter != "WW-OUT-FLOW" && mt.Meter != "STACK-01-FLOW" {
			continue
		}
		gw, _ := reg.Gateway(mt.Enterprise, mt.Gateway)
		m, _ := gw.Meter(mt.Meter)
		if got := cou[gw.Station.MN] * m.Factor; math.Abs(got-mt.Sum) > 1e-6*mt.Sum {
			t.Errorf("%s/%s: the frames' valid Cou add up to %g, the ledger to %g", mt.Enterprise, mt.Meter, got, mt.Sum)
		}
	}
}

// TestStationMinuteData refuses a station meter that takes other than
// minute data: the logger sends its readings as minute data.
func TestStationMinuteData(t *testing.T) {
	reg, err := registry.Parse(map[string][]byte{"p.yaml": []byte(`
enterprise: {id: plant-h, name: Plant H}
gateways:
  - id: st-1
    hj212: {mn: MN1, password: pw}
    meters:
      - {id: COD, quantity: cod, unit: mg/L, kind: gauge, hj212: {code: w01018, field: Avg, data: hour}}
`)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sim.New(reg, sim.Config{Start: time.Date(2026, 11, 14, 0, 0, 0, 0, time.UTC)})
	if err == nil || !strings.Contains(err.Error(), "minute data") {
		t.Fatalf("New: got %v, want a complaint about minute data", err)
	}
}
