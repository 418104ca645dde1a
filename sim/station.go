package sim

import (
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/cleanprod/cleanprod/hj212"
	"github.com/cleanprod/cleanprod/registry"
)

// station is the HJ 212 data logger of a gateway that declares a station:
// it turns the readings the gateway's meters take each interval into a
// minute-data frame (2051) and, at each full hour of the station's clock,
// an hourly-data frame (2061) of the hour before. Its own random stream
// decides its faults only, so the signals do not change with them.
type station struct {
	gw    *gateway
	st    *registry.Station
	codec hj212.Codec
	topic string
	sys   string // ST: 32 water pollution source, 31 air pollution source
	flag  hj212.Flag
	rng   *rand.Rand
	cfg   Stations
	// offlineP is the chance that an offline period starts at a tick.
	offlineP float64

	qn    int // frames numbered within a millisecond field of the QN
	hour  map[*meter]*hourAgg
	order []*meter // meters in the hourly frame, in the gateway's order

	offlineUntil time.Time // zero: online
	backlog      []Message // frames kept while offline
}

// hourAgg is one meter's values over the current hour, in steps of
// 10^-dec raw units.
type hourAgg struct {
	n             int
	sum, min, max int64
}

// HJ212Topic returns the topic on which a gateway forwards its station's
// HJ 212 frames.
func HJ212Topic(ent, gw string) string { return "cp/v1/" + ent + "/" + gw + "/hj212" }

func newStation(g *gateway, seed uint64, cfg Config) *station {
	s := &station{
		gw: g, st: g.g.Station,
		codec: hj212.Codec{Location: g.g.Station.Location},
		topic: HJ212Topic(g.g.Enterprise.ID, g.g.ID),
		sys:   "32",
		flag:  hj212.Flag(hj212.Version2017<<2) | hj212.FlagAck,
		rng:   newRand(seed, "hj212", g.g.Enterprise.ID, g.g.ID),
		cfg:   cfg.Stations,
		hour:  make(map[*meter]*hourAgg),
	}
	for _, m := range g.g.Meters {
		if m.HJ212 != nil && strings.HasPrefix(m.HJ212.Code, "a") {
			s.sys = "31" // an air pollution source
		}
	}
	if ticks := float64(24*time.Hour) / float64(cfg.Interval); ticks > 0 {
		s.offlineP = s.cfg.Offline / ticks
	}
	return s
}

// frame encodes one data packet of command cn; a nil error is certain for
// the values the simulator writes, so an error means a bug.
func (s *station) frame(cn string, at time.Time, d hj212.Data) ([]byte, string) {
	// The QN is the time of sending in milliseconds; frames sent at the
	// same simulated instant differ in the milliseconds.
	s.qn = (s.qn + 1) % 1000
	qn := hj212.NewQN(at.Add(time.Duration(s.qn)*time.Millisecond), s.st.Location)
	b, err := s.codec.Encode(hj212.Packet{QN: qn, ST: s.sys, CN: cn, PW: s.st.Password, MN: s.st.MN, Flag: s.flag, CP: s.codec.FormatData(d)})
	if err != nil {
		panic("sim: encode HJ 212 frame: " + err.Error())
	}
	return b, qn
}

// value is a reading's value as the analyser prints it.
func value(units int64, dec int) float64 { return float64(units) / math.Pow10(dec) }

// tick turns the readings due at t into frames and appends those to send
// now to out.
func (s *station) tick(t time.Time, rs []reading, out []Message) []Message {
	var now []Message
	if len(rs) > 0 {
		now = s.minute(t, rs, now)
	}
	if lt := t.In(s.st.Location); lt.Minute() == 0 && lt.Second() == 0 && len(s.order) > 0 {
		now = s.hourly(t, now)
	}
	// The logger goes offline now and then; what it measures meanwhile
	// waits in its memory.
	if s.offlineUntil.IsZero() && s.offlineP > 0 && s.rng.Float64() < s.offlineP {
		s.offlineUntil = t.Add(s.cfg.OfflineFor)
	}
	if !s.offlineUntil.IsZero() {
		if t.Before(s.offlineUntil) {
			s.backlog = append(s.backlog, now...)
			return out
		}
		out = s.release(t, out)
	}
	return append(out, now...)
}

// release appends the backlog: history sent at t, when the logger is back.
func (s *station) release(t time.Time, out []Message) []Message {
	s.offlineUntil = time.Time{}
	for i, m := range s.backlog {
		m.Sent = t
		if m.Fault == FaultNone {
			m.Fault = FaultBacklog
		}
		if i == 0 {
			f := *m.frame
			f.reconnect = true
			m.frame = &f
		}
		out = append(out, m)
	}
	clear(s.backlog)
	s.backlog = s.backlog[:0]
	return out
}

// flush sends the backlog at the end of a run.
func (s *station) flush(t time.Time, out []Message) []Message {
	if len(s.backlog) == 0 {
		return out
	}
	return s.release(t, out)
}

// minute builds the minute-data frame of the readings at t, with its
// faults.
func (s *station) minute(t time.Time, rs []reading, out []Message) []Message {
	f := FaultNone
	switch u := s.rng.Float64() * 100; {
	case u < s.cfg.BadCRC:
		f = FaultBadCRC
	case u < s.cfg.BadCRC+s.cfg.DataFlag:
		f = FaultDataFlag
	}
	bad, badFlag := -1, ""
	if f == FaultDataFlag {
		bad = s.rng.IntN(len(rs))
		badFlag = [...]string{"C", "M", "D"}[s.rng.IntN(3)]
	}
	d := hj212.Data{Time: t}
	eff := &effects{valid: make([]reading, 0, len(rs))}
	for i, r := range rs {
		src := r.mt.m.HJ212
		flag := "N"
		if i == bad {
			flag = badFlag
		} else {
			eff.valid = append(eff.valid, r)
		}
		d.Values = append(d.Values, hj212.Value{Code: src.Code, Field: src.Field, Value: value(r.units, r.mt.dec), Flag: flag})
		if flag == "N" {
			s.add(r)
		}
	}
	b, qn := s.frame(hj212.CNMinute, t, d)
	if f == FaultBadCRC {
		// The copy the line garbled: the receiver answers 9011 QnRtn=9
		// and dead-letters it; the logger sends the frame again, intact.
		garbled := append([]byte(nil), b...)
		i := len(garbled) - 6 // the first CRC digit
		garbled[i] = "0123456789ABCDEF"[(strings.IndexByte("0123456789ABCDEF", garbled[i])+1+s.rng.IntN(15))%16]
		out = append(out, Message{Topic: s.topic, Payload: garbled, Sent: t, Readings: len(rs), Fault: FaultBadCRC, eff: &effects{}, shard: s.gw.shard, frame: &frameInfo{mn: s.st.MN, qn: qn}})
		f = FaultNone
	}
	return append(out, Message{Topic: s.topic, Payload: b, Sent: t, Readings: len(rs), Fault: f, eff: eff, shard: s.gw.shard, frame: &frameInfo{mn: s.st.MN, qn: qn}})
}

// add counts a valid minute value into the hour.
func (s *station) add(r reading) {
	a := s.hour[r.mt]
	if a == nil {
		a = &hourAgg{}
		s.hour[r.mt] = a
		s.order = append(s.order, r.mt)
	}
	if a.n == 0 || r.units < a.min {
		a.min = r.units
	}
	if a.n == 0 || r.units > a.max {
		a.max = r.units
	}
	a.n++
	a.sum += r.units
}

// hourly builds the hourly-data frame of the hour ending at t: Avg, Min
// and Max of each concentration, Cou of each volume, DataTime the hour's
// start. The registry's meters take minute data, so the receiver stores
// none of it; it acknowledges it as a platform does.
func (s *station) hourly(t time.Time, out []Message) []Message {
	d := hj212.Data{Time: t.Add(-time.Hour)}
	for _, mt := range s.order {
		a := s.hour[mt]
		if a.n == 0 {
			continue
		}
		code := mt.m.HJ212.Code
		if mt.m.Kind == registry.Delta {
			d.Values = append(d.Values, hj212.Value{Code: code, Field: "Cou", Value: value(a.sum, mt.dec), Flag: "N"})
		} else {
			avg := int64(math.Round(float64(a.sum) / float64(a.n)))
			for _, v := range []struct {
				field string
				units int64
			}{{"Avg", avg}, {"Min", a.min}, {"Max", a.max}} {
				d.Values = append(d.Values, hj212.Value{Code: code, Field: v.field, Value: value(v.units, mt.dec), Flag: "N"})
			}
		}
		*a = hourAgg{}
	}
	if len(d.Values) == 0 {
		return out
	}
	b, qn := s.frame(hj212.CNHourly, t, d)
	return append(out, Message{Topic: s.topic, Payload: b, Sent: t, eff: &effects{}, shard: s.gw.shard, frame: &frameInfo{mn: s.st.MN, qn: qn}})
}
