package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cleanprod/cleanprod/hj212"
	"github.com/cleanprod/cleanprod/ingest"
	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/shard"
)

// logger is an HJ 212 data logger connected to cleanprod over TCP.
type logger struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialLogger(t *testing.T, addr string) *logger {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &logger{t: t, conn: c, r: bufio.NewReader(c)}
}

func (l *logger) send(frame []byte) {
	l.t.Helper()
	if _, err := l.conn.Write(frame); err != nil {
		l.t.Fatal(err)
	}
}

// reply reads the platform's next frame within d; ok false when none came.
func (l *logger) reply(d time.Duration) (hj212.Packet, bool) {
	l.t.Helper()
	l.conn.SetReadDeadline(time.Now().Add(d))
	line, err := l.r.ReadBytes('\n')
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() && len(line) == 0 {
			return hj212.Packet{}, false
		}
		l.t.Fatalf("reading the reply: %v (got %q)", err, line)
	}
	var c hj212.Codec
	p, err := c.Decode(line)
	if err != nil {
		l.t.Fatalf("reply %q: %v", line, err)
	}
	return p, true
}

// minuteFrame is a 2051 minute-data frame of the test plant's station.
func minuteFrame(t *testing.T, mn, pw string, at time.Time, cod, flow float64, qn string) []byte {
	t.Helper()
	var c hj212.Codec
	cp := c.FormatData(hj212.Data{Time: at, Values: []hj212.Value{
		{Code: "w01018", Field: "Avg", Value: cod, Flag: "N"},
		{Code: "w00000", Field: "Cou", Value: flow, Flag: "N"},
	}})
	f, err := c.Encode(hj212.Packet{QN: qn, ST: "32", CN: "2051", PW: pw, MN: mn, Flag: 5, CP: cp})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestHJ212Receiver runs serve with its HJ 212 TCP receiver against real
// mosquitto and InfluxDB: a logger's minute data is stored and
// acknowledged with a 9014 only once stored (InfluxDB stopped: no 9014
// until it is back); a bad CRC and an unknown MN get their 9011 and a
// dead-letter; the same frame forwarded over MQTT is stored too.
func TestHJ212Receiver(t *testing.T) {
	broker := testenv.Mosquitto(t)
	srv := testenv.NewInflux(t)
	db := srv.Database(t)
	stations := freeAddr(t)
	s := startServe(t, map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token},
		"-mqtt.url", broker.URL(), "-influx.url", db.URL, "-influx.bucket", db.Bucket, "-influx.timeout", "2s",
		"-gateway_config", "testdata/hj212-config", "-hj212.listen", stations)
	if !strings.Contains(s.logs.String(), "HJ 212 loggers tcp://"+stations) {
		t.Errorf("the start line does not name the HJ 212 receiver:\n%s", s.logs)
	}
	letters := make(chan ingest.DeadLetter, 8)
	mon := mqttClient(t, broker.URL(), "test-monitor")
	if tok := mon.Subscribe("cp/v1/deadletter/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		var dl ingest.DeadLetter
		json.Unmarshal(m.Payload(), &dl)
		letters <- dl
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	letter := func(want ingest.Reason) {
		t.Helper()
		select {
		case dl := <-letters:
			if dl.Reason != want || !strings.HasPrefix(dl.Topic, "hj212+tcp://127.0.0.1:") {
				t.Errorf("dead-letter %+v, want %s from the logger's address", dl, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no %s dead-letter", want)
		}
	}
	china := time.FixedZone("UTC+8", 8*3600)
	at := time.Now().In(china).Truncate(time.Minute).Add(-10 * time.Minute)
	log := dialLogger(t, stations)

	// Stored, then acknowledged.
	log.send(minuteFrame(t, "TESTPLANT0WW01", "123456", at, 23.4, 12.5, "20240601120000001"))
	ack, ok := log.reply(20 * time.Second)
	if !ok || ack.CN != "9014" || ack.QN != "20240601120000001" || ack.MN != "TESTPLANT0WW01" {
		t.Fatalf("got %+v (%v), want the 9014 of QN 20240601120000001", ack, ok)
	}
	rows := db.QueryInfluxQL(t, `SELECT value FROM reading WHERE meter = 'WW-OUT-COD'`)
	if len(rows) != 1 || rows[0][1] != 23.4 {
		t.Fatalf("WW-OUT-COD after the 9014: %v, want 23.4 stored", rows)
	}
	if ts, _ := time.Parse(time.RFC3339, rows[0][0].(string)); !ts.Equal(at) {
		t.Errorf("stored at %v, want the frame's DataTime %v (UTC+8)", rows[0][0], at.UTC())
	}

	// A bad CRC: 9011 QnRtn=9, dead-lettered, the connection kept.
	bad := minuteFrame(t, "TESTPLANT0WW01", "123456", at.Add(time.Minute), 24, 12, "20240601120100002")
	copy(bad[len(bad)-6:], "0000")
	log.send(bad)
	if r, ok := log.reply(20 * time.Second); !ok || r.CN != "9011" || r.CP != "QnRtn=9" {
		t.Errorf("bad CRC: got %+v (%v), want 9011 QnRtn=9", r, ok)
	}
	letter("hj212_bad_crc")

	// An unknown MN: 9011 QnRtn=4.
	log.send(minuteFrame(t, "NOSUCHSTATION1", "123456", at, 1, 1, "20240601120000003"))
	if r, ok := log.reply(20 * time.Second); !ok || r.CN != "9011" || r.CP != "QnRtn=4" {
		t.Errorf("unknown MN: got %+v (%v), want 9011 QnRtn=4", r, ok)
	}
	letter(ingest.ReasonUnknownMN)

	// A wrong PW: 9011 QnRtn=3.
	log.send(minuteFrame(t, "TESTPLANT0WW01", "999999", at, 1, 1, "20240601120000004"))
	if r, ok := log.reply(20 * time.Second); !ok || r.CN != "9011" || r.CP != "QnRtn=3" {
		t.Errorf("wrong PW: got %+v (%v), want 9011 QnRtn=3", r, ok)
	}
	letter(ingest.ReasonBadPassword)

	// The store down: no 9014 until the data is stored.
	srv.Stop()
	log.send(minuteFrame(t, "TESTPLANT0WW01", "123456", at.Add(2*time.Minute), 30.5, 11, "20240601120200005"))
	waitFor(t, 30*time.Second, "a failed store write", func() bool {
		return s.metricOrZero(`cleanprod_store_write_errors_total{kind="temporary"}`) > 0
	})
	if r, ok := log.reply(3 * time.Second); ok {
		t.Fatalf("got %+v while the store is down: a 9014 before the data is stored", r)
	}
	srv.Start()
	ack, ok = log.reply(60 * time.Second)
	if !ok || ack.CN != "9014" || ack.QN != "20240601120200005" {
		t.Fatalf("after the store came back: got %+v (%v), want the 9014 of QN 20240601120200005", ack, ok)
	}
	if rows := db.QueryInfluxQL(t, `SELECT value FROM reading WHERE meter = 'WW-OUT-COD'`); len(rows) != 2 {
		t.Errorf("WW-OUT-COD after the outage: %v, want 2 readings", rows)
	}

	// The same protocol forwarded over MQTT.
	gw := mqttClient(t, broker.URL(), "test-gateway")
	pub(t, gw, "cp/v1/test-plant/ww-station-01/hj212", string(minuteFrame(t, "TESTPLANT0WW01", "123456", at.Add(3*time.Minute), 19.5, 10, "20240601120300006")))
	waitFor(t, 20*time.Second, "the frame forwarded over MQTT stored", func() bool {
		return len(db.QueryInfluxQL(t, `SELECT value FROM reading WHERE meter = 'WW-OUT-COD'`)) == 3
	})
	// Sent again (a logger that missed its 9014): nothing counted twice.
	log.send(minuteFrame(t, "TESTPLANT0WW01", "123456", at, 23.4, 12.5, "20240601120000001"))
	if r, ok := log.reply(20 * time.Second); !ok || r.CN != "9014" {
		t.Fatalf("a resent frame: got %+v (%v), want its 9014", r, ok)
	}
	rows = db.QueryInfluxQL(t, `SELECT sum(delta) FROM reading WHERE meter = 'WW-OUT'`)
	if len(rows) != 1 || fmt.Sprint(rows[0][1]) != fmt.Sprint(12.5+11+10) {
		t.Errorf("WW-OUT total %v, want %g m3, each period once", rows, 12.5+11+10)
	}
	if got := s.metric(t, "cleanprod_hj212_acks_total"); got != 3 {
		t.Errorf("cleanprod_hj212_acks_total %g, want 3", got)
	}
}

// TestHJ212FrameCommand: the frame the CLI writes for trying a receiver
// by hand decodes to what was asked, in the station's clock.
func TestHJ212FrameCommand(t *testing.T) {
	now := time.Date(2026, 12, 6, 4, 5, 31, 0, time.UTC)
	var out, errOut strings.Builder
	err := hj212Command([]string{"frame", "-mn", "TESTPLANT0WW01", "-pw", "123456", "w01018-Avg=23.4", "w00000-Cou=12.5", "w01018-Flag=N"}, now, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out.String(), "\r\n") {
		t.Errorf("frame %q does not end in CRLF", out.String())
	}
	var c hj212.Codec
	p, err := c.Decode([]byte(out.String()))
	if err != nil {
		t.Fatalf("%q: %v", out.String(), err)
	}
	if p.MN != "TESTPLANT0WW01" || p.PW != "123456" || p.CN != "2051" || !p.Flag.Ack() || p.QN != "20261206120531000" {
		t.Errorf("packet %+v", p)
	}
	d, err := c.ParseData(p.CP)
	if err != nil {
		t.Fatal(err)
	}
	// 04:05 UTC is 12:05 China time: DataTime is the last whole minute.
	if !d.Time.Equal(now.Truncate(time.Minute)) || len(d.Values) != 2 || d.Values[0] != (hj212.Value{Code: "w01018", Field: "Avg", Value: 23.4, Flag: "N"}) || d.Values[1].Flag != "" {
		t.Errorf("data %+v", d)
	}
	for _, bad := range [][]string{
		{"frame", "-mn", "X"},
		{"frame", "-mn", "X", "-pw", "1", "w01018=3"},
		{"frame", "-mn", "X", "-pw", "1", "w01018-Avg=NaN"},
		{"frame", "-mn", "X", "-pw", "1", "-cn", "1062", "w01018-Avg=1"},
		{"frame", "-mn", "X", "-pw", "1", "-zone", "Mars", "w01018-Avg=1"},
		{"send"},
	} {
		if err := hj212Command(bad, now, &out, &errOut); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestHJ212LoggerOfAnotherShard: a logger whose enterprise another shard
// owns is refused with a 9011 QnRtn=2, counted and logged, and nothing
// of its frame is stored or dead-lettered.
func TestHJ212LoggerOfAnotherShard(t *testing.T) {
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	stations := freeAddr(t)
	other := 1 - shard.Of("test-plant", 2) // the shard that does not own it
	s := startServe(t, map[string]string{"CLEANPROD_INFLUX_TOKEN": db.Token, "CLEANPROD_SHARD_SECRET": testShardSecret},
		"-mqtt.url", broker.URL(), "-influx.url", db.URL, "-influx.bucket", db.Bucket,
		"-gateway_config", "testdata/hj212-config", "-hj212.listen", stations,
		"-shard.count", "2", "-shard.index", strconv.Itoa(other), "-shard.peer_url", "http://127.0.0.1:9/{index}")
	china := time.FixedZone("UTC+8", 8*3600)
	at := time.Now().In(china).Truncate(time.Minute).Add(-10 * time.Minute)
	log := dialLogger(t, stations)
	log.send(minuteFrame(t, "TESTPLANT0WW01", "123456", at, 23.4, 12.5, "20240601120000001"))
	r, ok := log.reply(20 * time.Second)
	if !ok || r.CN != "9011" || r.CP != "QnRtn=2" || r.QN != "20240601120000001" {
		t.Fatalf("got %+v (%v), want a 9011 QnRtn=2 of QN 20240601120000001", r, ok)
	}
	if n := s.metricOrZero(`cleanprod_ingest_not_owned_total{source="hj212_tcp"}`); n != 1 {
		t.Errorf("cleanprod_ingest_not_owned_total{source=\"hj212_tcp\"} = %g, want 1", n)
	}
	for k, n := range scrapeFamily(t, s.http, "cleanprod_ingest_rejected_total") {
		if n != 0 {
			t.Errorf("%s = %g, want no rejection: the frame is good data of another shard", k, n)
		}
	}
	if !strings.Contains(s.logs.String(), "HJ 212 logger of an enterprise of another shard refused") {
		t.Errorf("no log line says why the logger was refused:\n%s", s.logs)
	}
	if rows := db.QueryInfluxQL(t, `SELECT value FROM reading`); len(rows) != 0 {
		t.Errorf("stored %v, want nothing", rows)
	}
}
