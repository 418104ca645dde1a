package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/cleanprod/cleanprod/hj212"
	"github.com/cleanprod/cleanprod/registry"
)

// hj212Command runs "cleanprod hj212 frame": it writes an HJ 212 data
// frame, as a station's data logger would send it, for trying a receiver
// by hand (| nc HOST PORT) or over MQTT (mosquitto_pub -m "$(...)").
func hj212Command(args []string, now time.Time, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "frame" {
		return errors.New(`usage: cleanprod hj212 frame -mn MN -pw PW [-cn 2051] [-st 32] [-time 2006-01-02T15:04] [-zone +08:00] [-ack=false] CODE-FIELD=VALUE ... [CODE-Flag=N]`)
	}
	fs := flag.NewFlagSet("hj212 frame", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mn := fs.String("mn", "", "the station's MN (registry: gateways[].hj212.mn)")
	pw := fs.String("pw", "", "the station's PW (registry: gateways[].hj212.password)")
	cn := fs.String("cn", hj212.CNMinute, "data command: 2011 real-time, 2051 minute, 2061 hour, 2031 day")
	st := fs.String("st", "32", "system code: 32 surface-water pollution source, 31 air pollution source")
	at := fs.String("time", "", "DataTime in the station's clock, 2006-01-02T15:04 (default: the last whole minute)")
	zone := fs.String("zone", "+08:00", "the station's time zone (registry: gateways[].hj212.time_zone)")
	ack := fs.Bool("ack", true, "ask for a 9014 acknowledgement (Flag=5; false: Flag=4)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *mn == "" || *pw == "" || fs.NArg() == 0 {
		return errors.New("hj212 frame needs -mn, -pw and at least one CODE-FIELD=VALUE (e.g. w01018-Avg=23.4)")
	}
	if !hj212.IsData(*cn) {
		return fmt.Errorf("-cn %s: want 2011, 2051, 2061 or 2031", *cn)
	}
	loc, err := registry.ParseZone(*zone)
	if err != nil {
		return fmt.Errorf("-zone: %w", err)
	}
	d := hj212.Data{Time: now.In(loc).Truncate(time.Minute)}
	if *at != "" {
		if d.Time, err = time.ParseInLocation("2006-01-02T15:04", *at, loc); err != nil {
			return fmt.Errorf("-time %q: want 2006-01-02T15:04", *at)
		}
	}
	flags := map[string]string{}
	for _, item := range fs.Args() {
		key, value, ok := strings.Cut(item, "=")
		code, field, ok2 := strings.Cut(key, "-")
		if !ok || !ok2 || code == "" {
			return fmt.Errorf("%q: want CODE-FIELD=VALUE, e.g. w01018-Avg=23.4 or w01018-Flag=N", item)
		}
		if field == "Flag" {
			flags[code] = value
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%q: the value is not a number", item)
		}
		d.Values = append(d.Values, hj212.Value{Code: code, Field: field, Value: v})
	}
	for i := range d.Values {
		d.Values[i].Flag = flags[d.Values[i].Code]
	}
	codec := hj212.Codec{Location: loc}
	flag := hj212.Flag(hj212.Version2017 << 2)
	if *ack {
		flag |= hj212.FlagAck
	}
	frame, err := codec.Encode(hj212.Packet{QN: hj212.NewQN(now, loc), ST: *st, CN: *cn, PW: *pw, MN: *mn, Flag: flag, CP: codec.FormatData(d)})
	if err != nil {
		return err
	}
	_, err = stdout.Write(frame)
	return err
}
