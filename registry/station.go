package registry

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // a station's IANA time zone resolves in a minimal image too
)

// Station is the HJ 212 monitoring point behind a gateway: the data
// logger (数采仪) of a wastewater outlet or a stack, identified in every
// frame by its MN and password. Its pollutant codes map to the gateway's
// meters (Meter.HJ212).
type Station struct {
	MN       string // the monitoring point's device id
	Password string // PW: sent in clear in every frame, so an identifier more than a secret
	// Version is the protocol edition the logger speaks: "2017"
	// (HJ 212-2017) or "2025" (HJ 212-2025).
	Version string
	// Location is the station's clock: DataTime carries no zone.
	Location *time.Location
	// ManualValid says values flagged S (set by hand) count as valid
	// data, as the permit may allow; N always does.
	ManualValid bool
	sources     map[HJ212Source]*Meter
}

// Meter returns the meter that takes src's values.
func (s *Station) Meter(src HJ212Source) (*Meter, bool) {
	m, ok := s.sources[src]
	return m, ok
}

// Maps reports whether any meter takes some field of code.
func (s *Station) Maps(code string) bool {
	for src := range s.sources {
		if src.Code == code {
			return true
		}
	}
	return false
}

// HJ212Source is where a meter's values come from in a station's frames:
// a pollutant code, one of its fields, and the kind of data packet.
type HJ212Source struct {
	Code  string // pollutant code, e.g. w01018 (COD)
	Field string // Rtd, Avg, Min, Max, Cou, ZsRtd, ZsAvg, ZsMin or ZsMax
	CN    int    // data command: 2011 real-time, 2051 minute, 2061 hour, 2031 day
}

// HJ 212 data commands, by the names the registry files use.
var hj212Data = map[string]int{"realtime": 2011, "minute": 2051, "hour": 2061, "day": 2031}

// HJ212DataName is the registry's name of data command cn ("" if none).
func HJ212DataName(cn int) string {
	for name, c := range hj212Data {
		if c == cn {
			return name
		}
	}
	return ""
}

// hj212Fields are the fields of a pollutant code a meter may take.
var hj212Fields = []string{"Rtd", "Avg", "Min", "Max", "Cou", "ZsRtd", "ZsAvg", "ZsMin", "ZsMax"}

// hj212CodeRE is a pollutant code: w01018, a21026 (2017) or 011 (2005).
var hj212CodeRE = regexp.MustCompile(`^[A-Za-z0-9]{1,16}$`)

// hj212MNRE is an MN: the 2017 standard gives 24 characters; loggers in
// the field use shorter ones too.
var hj212MNRE = regexp.MustCompile(`^[A-Za-z0-9]{1,24}$`)

type stationSchema struct {
	MN          string `yaml:"mn"`
	Password    string `yaml:"password"`
	Version     string `yaml:"version"`
	TimeZone    string `yaml:"time_zone"`
	ManualValid bool   `yaml:"manual_valid"`
}

type hj212Schema struct {
	Code  string `yaml:"code"`
	Field string `yaml:"field"`
	Data  string `yaml:"data"`
}

// DefaultStationZone is a station's clock unless its file says otherwise:
// China time.
var DefaultStationZone = time.FixedZone("UTC+8", 8*3600)

// buildStation checks a gateway's hj212 block.
func buildStation(ss *stationSchema, gw string, at func(key string) []any, report func(path []any, format string, args ...any)) *Station {
	st := &Station{MN: ss.MN, Password: ss.Password, Version: ss.Version, Location: DefaultStationZone, ManualValid: ss.ManualValid, sources: make(map[HJ212Source]*Meter)}
	ok := true
	problem := func(key, format string, args ...any) {
		ok = false
		report(at(key), format, args...)
	}
	if !hj212MNRE.MatchString(st.MN) {
		problem("mn", "gateway %q: hj212 mn %q: want 1-24 letters and digits (the logger's MN)", gw, st.MN)
	}
	if st.Password == "" || len(st.Password) > 64 || strings.ContainsAny(st.Password, ";,=&\r\n") {
		problem("password", "gateway %q: hj212 password: want the logger's PW, 1-64 characters without ; , = & or line breaks", gw)
	}
	switch st.Version {
	case "":
		st.Version = "2017"
	case "2017", "2025":
	default:
		problem("version", "gateway %q: hj212 version %q: want 2017 or 2025", gw, st.Version)
	}
	if ss.TimeZone != "" {
		loc, err := ParseZone(ss.TimeZone)
		if err != nil {
			problem("time_zone", "gateway %q: hj212 time_zone: %v", gw, err)
		}
		st.Location = loc
	}
	if !ok {
		return nil
	}
	return st
}

// ParseZone reads "+08:00" or an IANA name such as "Asia/Shanghai".
func ParseZone(s string) (*time.Location, error) {
	if len(s) == 6 && (s[0] == '+' || s[0] == '-') && s[3] == ':' {
		if t, err := time.Parse("-07:00", s); err == nil {
			_, off := t.Zone()
			if off%60 == 0 && math.Abs(float64(off)) <= 14*3600 {
				return time.FixedZone("UTC"+s, off), nil
			}
		}
	}
	loc, err := time.LoadLocation(s)
	if err != nil || s == "Local" {
		return nil, fmt.Errorf("%q: want an offset such as +08:00 or a zone name such as Asia/Shanghai", s)
	}
	return loc, nil
}

// buildSource checks a meter's hj212 mapping against its kind.
func buildSource(hs *hj212Schema, m *Meter, problem func(key, format string, args ...any)) (HJ212Source, bool) {
	src := HJ212Source{Code: hs.Code, Field: hs.Field}
	ok := true
	bad := func(format string, args ...any) {
		ok = false
		problem("hj212", format, args...)
	}
	if !hj212CodeRE.MatchString(src.Code) {
		bad("meter %q: hj212 code %q: want a pollutant code such as w01018", m.ID, src.Code)
	}
	if src.Field == "" {
		src.Field = "Avg"
		if m.Kind == Delta {
			src.Field = "Cou"
		}
	}
	data := hs.Data
	if data == "" {
		data = "hour"
		if strings.HasSuffix(src.Field, "Rtd") {
			data = "realtime"
		}
	}
	src.CN = hj212Data[data]
	switch {
	case !slices.Contains(hj212Fields, src.Field):
		bad("meter %q: hj212 field %q: want one of %s", m.ID, src.Field, strings.Join(hj212Fields, ", "))
	case src.CN == 0:
		bad("meter %q: hj212 data %q: want realtime, minute, hour or day", m.ID, data)
	case (src.CN == 2011) != strings.HasSuffix(src.Field, "Rtd"):
		bad("meter %q: hj212 field %s comes in %s data, not %s", m.ID, src.Field, map[bool]string{true: "realtime", false: "minute, hour or day"}[strings.HasSuffix(src.Field, "Rtd")], data)
	case src.Field == "Cou" && m.Kind != Delta:
		bad("meter %q: hj212 field Cou is the amount over the data's period: the meter's kind must be delta", m.ID)
	case src.Field != "Cou" && m.Kind != Gauge:
		bad("meter %q: hj212 field %s is a concentration or value at a time: the meter's kind must be gauge", m.ID, src.Field)
	}
	return src, ok
}
