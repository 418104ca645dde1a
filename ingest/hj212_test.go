package ingest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

const stationPlant = `
enterprise: {id: plant-w, name: Plant W}
gateways:
  - id: ww-outlet
    hj212: {mn: PW0001WW01, password: "123456"}
    meters:
      - {id: WW-FLOW, quantity: wastewater, unit: m3, kind: delta, hj212: {code: w00000, data: minute}}
      - {id: WW-COD, quantity: cod, unit: mg/L, kind: gauge, flow_meter: WW-FLOW, hj212: {code: w01018, data: minute}}
      - {id: WW-NH3N-H, quantity: nh3n, unit: mg/L, kind: gauge, hj212: {code: w21003, data: hour}}
  - id: gw-plant
    meters:
      - {id: E-1, quantity: electricity, unit: kWh, kind: counter}
  - id: stack
    hj212: {mn: PW0001AIR1, password: "abcdef", manual_valid: true, time_zone: "+00:00"}
    meters:
      - {id: ST-FLOW, quantity: stack_gas, unit: m3, kind: delta, hj212: {code: a00000, data: minute}}
`

// frame212 builds a frame from a data segment by the facts of the
// protocol (##, 4-digit length, segment, CRC-16 with polynomial 0xA001
// over the segment, shifted in as crc>>8 ^ byte, CRLF), independently of
// the hj212 package.
func frame212(seg string) string {
	crc := uint16(0xFFFF)
	for i := 0; i < len(seg); i++ {
		crc = crc>>8 ^ uint16(seg[i])
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return fmt.Sprintf("##%04d%s%04X\r\n", len(seg), seg, crc)
}

func TestFrame212Vector(t *testing.T) {
	// The standard's example (facts file): CRC 1C80.
	seg := "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&"
	if got := frame212(seg); got != "##0101"+seg+"1C80\r\n" {
		t.Fatalf("frame212 = %q", got)
	}
}

func TestHJ212(t *testing.T) {
	reg, err := registry.Parse(map[string][]byte{"w.yaml": []byte(stationPlant)})
	if err != nil {
		t.Fatal(err)
	}
	topic := GatewayTopic("plant-w", "ww-outlet", LevelHJ212)
	now := time.Date(2024, 6, 1, 4, 5, 0, 0, time.UTC) // 12:05 China time
	minute := "QN=20240601120000123;ST=32;CN=2051;PW=123456;MN=PW0001WW01;Flag=5;CP=&&DataTime=20240601115900;" +
		"w01018-Avg=23.4,w01018-Min=21.0,w01018-Max=25.9,w01018-Flag=N;w21003-Avg=1.21,w21003-Flag=N;" +
		"w00000-Avg=12.3,w00000-Cou=738.0,w00000-Flag=N;w01001-Avg=7.1,w01001-Flag=N&&"
	tests := []struct {
		name, topic, payload string
		reason               Reason   // message rejected whole with this reason
		stored               []string // meter=value@UTC time
		rejects              []string // reason: detail part
	}{
		{
			name: "minute data", payload: frame212(minute),
			// 11:59 in UTC+8 is 03:59 UTC; Min and Max are not taken,
			// w21003 is taken from hourly data only, w01001 by no meter.
			stored:  []string{"WW-COD=23.4@03:59/N", "WW-FLOW=738@03:59/N"},
			rejects: []string{"unmapped_code: pollutant code w01001"},
		},
		{
			name: "hourly data", payload: frame212(strings.NewReplacer("CN=2051", "CN=2061", "DataTime=20240601115900", "DataTime=20240601110000").Replace(minute)),
			stored:  []string{"WW-NH3N-H=1.21@03:00/N"},
			rejects: []string{"unmapped_code: pollutant code w01001"},
		},
		{
			name: "invalid flags", payload: frame212(strings.NewReplacer("w01018-Flag=N", "w01018-Flag=C", "w00000-Flag=N", "w00000-Flag=S").Replace(minute)),
			// Kept apart with their flags (!), for the supervisor; the
			// scorer is handed neither.
			stored:  []string{"!WW-COD=23.4@03:59/C", "!WW-FLOW=738@03:59/S"},
			rejects: []string{"unmapped_code"},
		},
		{
			name: "hand-set values allowed", topic: GatewayTopic("plant-w", "stack", LevelHJ212),
			payload: frame212("QN=20240601120000123;ST=31;CN=2051;PW=abcdef;MN=PW0001AIR1;Flag=4;CP=&&DataTime=20240601035900;a00000-Cou=5000,a00000-Flag=S&&"),
			stored:  []string{"ST-FLOW=5000@03:59/S"}, // the station's clock is UTC
		},
		{
			name: "split packet in one message",
			payload: frame212("QN=20240601120000123;ST=32;CN=2051;PW=123456;MN=PW0001WW01;Flag=7;PNUM=2;PNO=2;CP=&&w00000-Cou=738.0,w00000-Flag=N&&") +
				frame212("QN=20240601120000123;ST=32;CN=2051;PW=123456;MN=PW0001WW01;Flag=7;PNUM=2;PNO=1;CP=&&DataTime=20240601115900;w01018-Avg=23.4,w01018-Flag=N&&"),
			stored: []string{"WW-COD=23.4@03:59/N", "WW-FLOW=738@03:59/N"},
		},
		{name: "split part alone", payload: frame212("QN=20240601120000123;ST=32;CN=2051;PW=123456;MN=PW0001WW01;Flag=7;PNUM=2;PNO=1;CP=&&DataTime=20240601115900;w01018-Avg=23.4&&"), reason: "hj212_split_incomplete"},
		{name: "bad crc", payload: strings.Replace(frame212(minute), "\r\n", "", 1)[:len(frame212(minute))-6] + "A84E\r\n", reason: "hj212_bad_crc"},
		{name: "wrong password", payload: frame212(strings.Replace(minute, "PW=123456", "PW=654321", 1)), reason: ReasonBadPassword},
		{name: "another station's MN", payload: frame212(strings.Replace(minute, "MN=PW0001WW01", "MN=PW0001AIR1", 1)), reason: ReasonSpoofed},
		{name: "gateway without station", topic: GatewayTopic("plant-w", "gw-plant", LevelHJ212), payload: frame212(minute), reason: ReasonNoStation},
		{name: "not data", payload: frame212("QN=20160801085857223;ST=32;CN=1062;PW=123456;MN=PW0001WW01;Flag=5;CP=&&RtdInterval=30&&"), reason: ReasonNotData},
		{name: "json on the hj212 topic", payload: `{"gateway":"ww-outlet","seq":1,"readings":[]}`, reason: "hj212_garbage"},
		{name: "two packets", payload: frame212(minute) + frame212(minute), reason: ReasonInvalidMessage},
		{name: "time without date", payload: frame212(strings.Replace(minute, "DataTime=20240601115900", "DataTime=115900", 1)), reason: "hj212_bad_datatime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := NewNormaliser(reg, NormaliserConfig{FutureHorizon: time.Hour, PastHorizon: 24 * time.Hour, History: 8})
			tp := topic
			if tt.topic != "" {
				tp = tt.topic
			}
			var write, observe []store.Reading
			out, derr := n.Process(tp, []byte(tt.payload), false, now, &write, &observe)
			if tt.reason != "" {
				if derr == nil || derr.Reason != tt.reason {
					t.Fatalf("got %v (%d readings), want a rejection %s", derr, len(write), tt.reason)
				}
				return
			}
			if derr != nil {
				t.Fatalf("rejected: %v", derr)
			}
			var got []string
			valid := 0
			for _, r := range write {
				mark := ""
				if r.Invalid {
					mark = "!"
				} else {
					valid++
				}
				got = append(got, fmt.Sprintf("%s%s=%g@%s/%s", mark, r.Meter, r.Value, r.Time.UTC().Format("15:04"), r.Flag))
			}
			if len(observe) != valid || out.Accepted != valid {
				t.Errorf("%d valid readings written, %d observed, %d accepted: the scorer must see the valid ones only", valid, len(observe), out.Accepted)
			}
			if strings.Join(got, " ") != strings.Join(tt.stored, " ") {
				t.Errorf("stored %v, want %v", got, tt.stored)
			}
			if len(out.Rejects) != len(tt.rejects) {
				t.Fatalf("rejects %+v, want %v", out.Rejects, tt.rejects)
			}
			for i, r := range out.Rejects {
				if !strings.HasPrefix(string(r.Reason)+": "+r.Detail, tt.rejects[i]) {
					t.Errorf("reject %d: %s: %s, want %s", i, r.Reason, r.Detail, tt.rejects[i])
				}
			}
			if out.SeqGap != 0 || out.SeqRepeat || out.SeqBackwards {
				t.Errorf("sequence tracked for a protocol without one: %+v", out)
			}
		})
	}
}

// FuzzHJ212 feeds arbitrary payloads on a station's hj212 topic: the
// normaliser never panics, a payload is either rejected whole with a
// reason or yields readings of the station's meters only, each with a
// finite value.
func FuzzHJ212(f *testing.F) {
	reg, err := registry.Parse(map[string][]byte{"w.yaml": []byte(stationPlant)})
	if err != nil {
		f.Fatal(err)
	}
	minute := "QN=20240601120000123;ST=32;CN=2051;PW=123456;MN=PW0001WW01;Flag=5;CP=&&DataTime=20240601115900;w01018-Avg=23.4,w01018-Flag=N;w00000-Cou=738.0,w00000-Flag=N&&"
	f.Add([]byte(frame212(minute)))
	f.Add([]byte(frame212(strings.Replace(minute, "Flag=5", "Flag=7;PNUM=2;PNO=1", 1)) + frame212(strings.Replace(minute, "Flag=5", "Flag=7;PNUM=2;PNO=2", 1))))
	f.Add([]byte("##0000\r\n"))
	f.Add([]byte("##9999" + strings.Repeat("A", 200)))
	f.Add([]byte(frame212(strings.Replace(minute, "w01018-Avg=23.4", "w01018-Avg=1e999", 1))))
	topic := GatewayTopic("plant-w", "ww-outlet", LevelHJ212)
	now := time.Date(2024, 6, 1, 4, 5, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, payload []byte) {
		n := NewNormaliser(reg, NormaliserConfig{FutureHorizon: time.Hour, PastHorizon: 24 * time.Hour, History: 8})
		var write, observe []store.Reading
		out, derr := n.Process(topic, payload, false, now, &write, &observe)
		if derr != nil {
			if derr.Reason == "" || len(write) > 0 {
				t.Fatalf("rejected %q with %v but wrote %d readings", payload, derr, len(write))
			}
			return
		}
		for _, r := range write {
			if r.Enterprise != "plant-w" || r.Gateway != "ww-outlet" || !(r.Value == r.Value) || r.Value > 1e300 {
				t.Fatalf("%q: wrote %+v", payload, r)
			}
		}
		for _, r := range out.Rejects {
			if r.Reason == "" {
				t.Fatalf("%q: a reject without a reason: %+v", payload, r)
			}
		}
	})
}
