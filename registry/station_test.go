package registry

import (
	"strings"
	"testing"
	"time"
)

const stationFile = `
enterprise:
  id: plant-w
  name: Plant W
gateways:
  - id: gw-json
    meters:
      - {id: E-1, quantity: electricity, unit: kWh, kind: counter}
  - id: ww-outlet
    hj212:
      mn: PW0001WW01
      password: "123456"
      time_zone: Asia/Shanghai
    meters:
      - id: WW-FLOW
        quantity: wastewater
        unit: m3
        kind: delta
        hj212: {code: w00000}
      - id: WW-COD
        quantity: cod
        unit: g/L
        kind: gauge
        flow_meter: WW-FLOW
        permit_limit: 0.5
        hj212: {code: w01018, field: Avg, data: hour}
      - id: WW-COD-RT
        quantity: cod
        unit: mg/L
        kind: gauge
        hj212: {code: w01018, field: Rtd}
`

func TestStation(t *testing.T) {
	reg, err := Parse(map[string][]byte{"w.yaml": []byte(stationFile)})
	if err != nil {
		t.Fatal(err)
	}
	g, ok := reg.Station("PW0001WW01")
	if !ok || g.ID != "ww-outlet" || g.Enterprise.ID != "plant-w" {
		t.Fatalf("Station(PW0001WW01) = %v, %v", g, ok)
	}
	st := g.Station
	if st.Version != "2017" || st.Password != "123456" || st.ManualValid {
		t.Errorf("station defaults: %+v", st)
	}
	// Asia/Shanghai is UTC+8 without daylight saving.
	if _, off := time.Date(2026, 7, 1, 0, 0, 0, 0, st.Location).Zone(); off != 8*3600 {
		t.Errorf("time zone offset %d, want 8 h", off)
	}
	for _, tt := range []struct {
		src   HJ212Source
		meter string
	}{
		{HJ212Source{"w00000", "Cou", 2061}, "WW-FLOW"}, // a delta takes Cou of hourly data by default
		{HJ212Source{"w01018", "Avg", 2061}, "WW-COD"},
		{HJ212Source{"w01018", "Rtd", 2011}, "WW-COD-RT"}, // Rtd comes in real-time data
	} {
		m, ok := st.Meter(tt.src)
		if !ok || m.ID != tt.meter {
			t.Errorf("Meter(%+v) = %v, want %s", tt.src, m, tt.meter)
		}
	}
	if _, ok := st.Meter(HJ212Source{"w01018", "Avg", 2051}); ok {
		t.Error("minute data of w01018 maps to a meter; only hourly was declared")
	}
	if !st.Maps("w01018") || st.Maps("w21003") {
		t.Error("Maps: want w01018 mapped, w21003 not")
	}
	cod, _ := g.Meter("WW-COD")
	if cod.PermitLimit != 500 { // 0.5 g/L = 500 mg/L
		t.Errorf("permit limit %g mg/L, want 500", cod.PermitLimit)
	}
	if g, _ := reg.Gateway("plant-w", "gw-json"); g.Station != nil {
		t.Error("a gateway without hj212 has a station")
	}
	if _, ok := reg.Station("123456"); ok {
		t.Error("a password found a station")
	}
}

func TestStationBad(t *testing.T) {
	tests := []struct{ name, from, to, want string }{
		{"bad mn", "mn: PW0001WW01", "mn: PW-0001", `hj212 mn "PW-0001": want 1-24 letters and digits`},
		{"no password", `password: "123456"`, `password: ""`, "hj212 password: want the logger's PW"},
		{"password with separator", `password: "123456"`, `password: "12;34"`, "hj212 password"},
		{"bad version", "time_zone: Asia/Shanghai", "version: \"2005\"", `hj212 version "2005": want 2017 or 2025`},
		{"bad zone", "time_zone: Asia/Shanghai", "time_zone: Mars/Olympus", `time_zone: "Mars/Olympus"`},
		{"bad offset", "time_zone: Asia/Shanghai", `time_zone: "+25:00"`, `time_zone: "+25:00"`},
		{"bad field", "field: Avg, data: hour", "field: Mean, data: hour", `hj212 field "Mean": want one of Rtd, Avg`},
		{"bad data", "field: Avg, data: hour", "field: Avg, data: weekly", `hj212 data "weekly"`},
		{"rtd in hourly data", "field: Rtd}", "field: Rtd, data: hour}", "hj212 field Rtd comes in realtime data, not hour"},
		{"cou on a gauge", "field: Avg, data: hour", "field: Cou, data: hour", "hj212 field Cou is the amount over the data's period: the meter's kind must be delta"},
		{"avg on a delta", "hj212: {code: w00000}", "hj212: {code: w00000, field: Avg}", "hj212 field Avg is a concentration or value at a time: the meter's kind must be gauge"},
		{"bad code", "hj212: {code: w00000}", "hj212: {code: \"w0;0\"}", `hj212 code "w0;0"`},
		{"twice", "hj212: {code: w01018, field: Rtd}", "hj212: {code: w01018, field: Avg}", `already goes to meter "WW-COD"`},
		{"limit on a delta", "hj212: {code: w00000}", "hj212: {code: w00000}\n        permit_limit: 3", "permit_limit is a concentration's limit: it applies to gauges only"},
		{"negative limit", "permit_limit: 0.5", "permit_limit: -1", "permit_limit must be a positive number in g/L"},
		{"meter without station", "      - {id: E-1, quantity: electricity, unit: kWh, kind: counter}", "      - {id: E-1, quantity: electricity, unit: kWh, kind: delta, hj212: {code: e001}}", `meter "E-1" takes HJ 212 values, but gateway "gw-json" declares no hj212 station`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := strings.Replace(stationFile, tt.from, tt.to, 1)
			if file == stationFile {
				t.Fatalf("%q not in the file", tt.from)
			}
			_, err := Parse(map[string][]byte{"w.yaml": []byte(file)})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "w.yaml:") {
				t.Fatalf("got %v, want an error naming w.yaml and saying %q", err, tt.want)
			}
		})
	}
	t.Run("no meter mapped", func(t *testing.T) {
		file := stationFile
		for _, s := range []string{"        hj212: {code: w00000}\n", "        hj212: {code: w01018, field: Avg, data: hour}\n", "        hj212: {code: w01018, field: Rtd}\n"} {
			file = strings.Replace(file, s, "", 1)
		}
		_, err := Parse(map[string][]byte{"w.yaml": []byte(file)})
		if err == nil || !strings.Contains(err.Error(), `hj212 station "PW0001WW01" maps no pollutant code`) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("mn of two stations", func(t *testing.T) {
		other := strings.ReplaceAll(stationFile, "plant-w", "plant-x")
		_, err := Parse(map[string][]byte{"w.yaml": []byte(stationFile), "x.yaml": []byte(other)})
		if err == nil || !strings.Contains(err.Error(), `hj212 mn "PW0001WW01" is already the station of gateway "ww-outlet" of enterprise "plant-w"`) {
			t.Fatalf("got %v", err)
		}
	})
}

// TestStackStation maps a stack CEMS's codes for SO2, NOx and particulate
// (measured and converted to the reference oxygen content, Zs*) to gauges.
func TestStackStation(t *testing.T) {
	file := `
enterprise: {id: plant-s, name: Plant S}
gateways:
  - id: stack
    hj212: {mn: PS0001FQ01, password: "abc"}
    meters:
      - {id: FLOW, quantity: stack_gas, unit: Nm3, kind: delta, hj212: {code: a00000, field: Cou, data: hour}}
      - {id: SO2, quantity: so2, unit: mg/m3, kind: gauge, flow_meter: FLOW, permit_limit: 200, hj212: {code: a21026, field: ZsAvg, data: hour}}
      - {id: NOX, quantity: nox, unit: mg/m3, kind: gauge, flow_meter: FLOW, permit_limit: 200, hj212: {code: a21002, field: ZsAvg, data: hour}}
      - {id: PM, quantity: particulate, unit: ug/m3, kind: gauge, flow_meter: FLOW, hj212: {code: a34013, field: Avg, data: hour}}
`
	reg, err := Parse(map[string][]byte{"s.yaml": []byte(file)})
	if err != nil {
		t.Fatal(err)
	}
	g, ok := reg.Station("PS0001FQ01")
	if !ok {
		t.Fatal("no station PS0001FQ01")
	}
	for _, tt := range []struct {
		code, field, meter string
		factor             float64
	}{
		{"a21026", "ZsAvg", "SO2", 1},
		{"a21002", "ZsAvg", "NOX", 1},
		{"a34013", "Avg", "PM", 0.001}, // µg/m³ to mg/m³
	} {
		m, ok := g.Station.Meter(HJ212Source{Code: tt.code, Field: tt.field, CN: 2061})
		if !ok || m.ID != tt.meter || m.Quantity.Unit != "mg/m3" || m.Factor != tt.factor {
			t.Errorf("%s-%s: meter %v, %v; want %s in mg/m3, factor %g", tt.code, tt.field, m, ok, tt.meter, tt.factor)
		}
	}
}
