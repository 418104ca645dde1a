package ingest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanprod/cleanprod/internal/testenv"
	"github.com/cleanprod/cleanprod/store"
)

// The hostile input corpus is testdata/hostile: cases.txt lists every case
// (topic, expected reasons, readings stored) and NN-name.payload holds its
// payload. The file's header documents the format.

// hostileConfig is the Normaliser configuration the corpus is written for:
// that of startIngest, so the unit and the end-to-end tests agree.
var hostileConfig = NormaliserConfig{FutureHorizon: 5 * time.Minute, PastHorizon: 7 * 24 * time.Hour, History: 32, MaxPayload: 64 << 10, MaxReadings: 1000}

// minHostileCases is the corpus size issue 7 asks for.
const minHostileCases = 40

type hostileCase struct {
	Name         string
	Topic        string
	Reasons      []Reason // nil: none
	Accept       int      // readings stored
	Broker       string   // "": delivered; "refused"; "unrouted"
	SeqBackwards bool
	Last         bool
	Comment      string
	template     []byte
}

func loadHostileCases(tb testing.TB) []hostileCase {
	tb.Helper()
	const dir = "testdata/hostile"
	f, err := os.Open(filepath.Join(dir, "cases.txt"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var cases []hostileCase
	names := map[string]bool{}
	comment := ""
	sc := bufio.NewScanner(f)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			comment = ""
			continue
		}
		if c, ok := strings.CutPrefix(line, "#"); ok {
			comment = strings.TrimSpace(c)
			continue
		}
		bad := func(format string, args ...any) {
			tb.Fatalf("cases.txt:%d: %s", lineNo, fmt.Sprintf(format, args...))
		}
		name, rest, _ := strings.Cut(line, " ")
		quoted, err := strconv.QuotedPrefix(rest)
		if err != nil {
			bad("topic is not a Go string literal: %v", err)
		}
		topic, _ := strconv.Unquote(quoted)
		fields := strings.Fields(rest[len(quoted):])
		if len(fields) == 0 {
			bad("no reasons")
		}
		c := hostileCase{Name: name, Topic: topic, Comment: comment}
		if fields[0] != "-" {
			for _, r := range strings.Split(fields[0], ",") {
				if !knownReason(Reason(r)) {
					bad("unknown reason %q", r)
				}
				c.Reasons = append(c.Reasons, Reason(r))
			}
		}
		for _, opt := range fields[1:] {
			k, v, _ := strings.Cut(opt, "=")
			switch k {
			case "accept":
				if c.Accept, err = strconv.Atoi(v); err != nil {
					bad("accept=%q", v)
				}
			case "broker":
				if v != "refused" && v != "unrouted" {
					bad("broker=%q: want refused or unrouted", v)
				}
				c.Broker = v
			case "seq_backwards":
				c.SeqBackwards = true
			case "last":
				c.Last = true
			default:
				bad("unknown option %q", opt)
			}
		}
		if names[name] {
			bad("case %s listed twice", name)
		}
		names[name] = true
		if c.template, err = os.ReadFile(filepath.Join(dir, name+".payload")); err != nil {
			bad("%v", err)
		}
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	// Every payload file belongs to a case.
	files, _ := filepath.Glob(filepath.Join(dir, "*.payload"))
	for _, p := range files {
		if !names[strings.TrimSuffix(filepath.Base(p), ".payload")] {
			tb.Fatalf("%s is not listed in cases.txt", p)
		}
	}
	return cases
}

func knownReason(r Reason) bool {
	switch r {
	case ReasonBadTopic, ReasonUnknownGateway, ReasonEmptyPayload, ReasonPayloadTooLarge, ReasonMalformed,
		ReasonInvalidMessage, ReasonGatewayMismatch, ReasonNoReadings, ReasonTooManyReadings,
		ReasonUnknownMeter, ReasonSpoofed, ReasonInvalidReading, ReasonInvalidValue, ReasonOutOfRange,
		ReasonBadTimestamp, ReasonFuture, ReasonTooOld, ReasonDuplicate, ReasonConflict, ReasonCounterJump,
		ReasonOutsideHistory, ReasonStoreRejected:
		return true
	}
	return false
}

// messageLevel says whether r rejects a whole message.
func messageLevel(r Reason) bool {
	switch r {
	case ReasonBadTopic, ReasonUnknownGateway, ReasonEmptyPayload, ReasonPayloadTooLarge, ReasonMalformed,
		ReasonInvalidMessage, ReasonGatewayMismatch, ReasonNoReadings, ReasonTooManyReadings:
		return true
	}
	return false
}

var templateRE = regexp.MustCompile(`\{\{(?:ts([+-][0-9a-z.]+)?|seq|repeat ([0-9]+) ("(?:[^"\\]|\\.)*"))\}\}`)

// payload expands the case's template for its time ts and gateway seq.
func (c *hostileCase) payload(tb testing.TB, ts time.Time, seq int64) []byte {
	tb.Helper()
	var failed error
	out := templateRE.ReplaceAllFunc(c.template, func(m []byte) []byte {
		sub := templateRE.FindSubmatch(m)
		switch {
		case bytes.Equal(m, []byte("{{seq}}")):
			return strconv.AppendInt(nil, seq, 10)
		case sub[2] != nil:
			n, _ := strconv.Atoi(string(sub[2]))
			s, err := strconv.Unquote(string(sub[3]))
			if err != nil {
				failed = fmt.Errorf("%s: %s: %v", c.Name, m, err)
			}
			return bytes.Repeat([]byte(s), n)
		default:
			t := ts
			if sub[1] != nil {
				d, err := time.ParseDuration(string(sub[1]))
				if err != nil {
					failed = fmt.Errorf("%s: %s: %v", c.Name, m, err)
				}
				t = t.Add(d)
			}
			return []byte(t.UTC().Format(time.RFC3339Nano))
		}
	})
	if failed != nil {
		tb.Fatal(failed)
	}
	if c.Broker == "" && bytes.Contains(out, []byte("{{")) {
		tb.Fatalf("%s: template left unexpanded: %.80q", c.Name, out)
	}
	return out
}

// hostileMsg is one message of the interleaved sequence: a corpus case or
// a valid message.
type hostileMsg struct {
	Topic   string
	Payload []byte
	Case    *hostileCase // nil: valid, every reading must be stored
	Reads   int          // valid: its readings
}

// hostileSequence interleaves the corpus with valid messages, as the end
// to end test publishes them: before each case a valid message, alternately
// from gw-1 (W-FRESH counter, COD-OUT gauge) and gw-2 (V-1 counter); the
// cases marked last at the end. Each case has its own 20-minute window of
// the last two days ending at now, so cases never meet in a meter's
// history; the valid message of a window is 10 minutes after the case.
// seq rises by one per message from 1000.
func hostileSequence(tb testing.TB, cases []hostileCase, now time.Time) (seq []hostileMsg, valid map[string]validMeter) {
	tb.Helper()
	start := now.UTC().Truncate(time.Minute).Add(-48 * time.Hour)
	next := int64(1000)
	valid = map[string]validMeter{}
	n1, n2 := 0, 0
	addValid := func(at time.Time, i int) {
		ts := at.Format(time.RFC3339)
		if i%2 == 0 {
			n1++
			seq = append(seq, hostileMsg{Topic: TelemetryTopic("ent-a", "gw-1"), Reads: 2, Payload: []byte(fmt.Sprintf(
				`{"gateway":"gw-1","seq":%d,"sent":%q,"readings":[{"meter":"W-FRESH","ts":%q,"value":%d},{"meter":"COD-OUT","ts":%q,"value":%g}]}`,
				next, ts, ts, 1000*n1, ts, 40+float64(n1%10)/10))})
			// W-FRESH is in litres: +1000 L is 1 m3 a message.
			valid["W-FRESH"] = validMeter{Rows: n1, Sum: float64(n1 - 1)}
		} else {
			n2++
			seq = append(seq, hostileMsg{Topic: TelemetryTopic("ent-a", "gw-2"), Reads: 1, Payload: []byte(fmt.Sprintf(
				`{"gateway":"gw-2","seq":%d,"sent":%q,"readings":[{"meter":"V-1","ts":%q,"value":%d}]}`, next, ts, ts, 10*n2))})
			valid["V-1"] = validMeter{Rows: n2, Sum: float64(10 * (n2 - 1))}
		}
		next++
	}
	var last []int
	for i := range cases {
		if cases[i].Last {
			last = append(last, i)
			continue
		}
		window := start.Add(time.Duration(i) * 20 * time.Minute)
		addValid(window.Add(10*time.Minute), i)
		seq = append(seq, hostileMsg{Topic: cases[i].Topic, Payload: cases[i].payload(tb, window, next), Case: &cases[i]})
		next++
	}
	for _, i := range last {
		window := start.Add(time.Duration(i) * 20 * time.Minute)
		seq = append(seq, hostileMsg{Topic: cases[i].Topic, Payload: cases[i].payload(tb, window, next), Case: &cases[i]})
		next++
	}
	if end := start.Add(time.Duration(len(cases)) * 20 * time.Minute); !end.Before(now) {
		tb.Fatalf("%d cases need more than the 48 hours of windows", len(cases))
	}
	return seq, valid
}

// validMeter is what the valid messages store of a counter only they
// use (W-FRESH, V-1): rows and the sum of their deltas.
type validMeter struct {
	Rows int
	Sum  float64
}

// processSafely runs Process, turning a panic into a test failure that
// names the case.
func processSafely(t *testing.T, n *Normaliser, name, topic string, payload []byte, now time.Time, write, observe *[]store.Reading) (out Outcome, derr *DecodeError) {
	t.Helper()
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("%s: Process panicked: %v\n%s", name, p, debug.Stack())
			}
		}()
		out, derr = n.Process(topic, payload, false, now, write, observe)
	}()
	return out, derr
}

// gotReasons lists what Process made of a message: the message's reason,
// or its readings' reasons in reading order.
func gotReasons(out Outcome, derr *DecodeError) []Reason {
	if derr != nil {
		return []Reason{derr.Reason}
	}
	var rs []Reason
	for _, r := range out.Rejects {
		rs = append(rs, r.Reason)
	}
	return rs
}

// checkHostileOutcome checks one case's outcome: exactly its reasons, its
// stored readings, details for the logs, and dead-letters that encode.
func checkHostileOutcome(t *testing.T, c *hostileCase, topic string, payload []byte, out Outcome, derr *DecodeError, write []store.Reading) {
	t.Helper()
	if got := gotReasons(out, derr); !slices.Equal(got, c.Reasons) {
		detail := ""
		if derr != nil {
			detail = derr.Detail
		}
		for _, r := range out.Rejects {
			detail += fmt.Sprintf(" [#%d %s: %s]", r.Index, r.Reason, r.Detail)
		}
		t.Errorf("%s: got reasons %v, want %v (%s)", c.Name, got, c.Reasons, detail)
	}
	if derr != nil && (out.Accepted != 0 || len(write) != 0) {
		t.Errorf("%s: rejected whole, yet %d readings accepted", c.Name, out.Accepted)
	}
	if out.Accepted != c.Accept || len(write) < c.Accept {
		t.Errorf("%s: %d readings accepted (%d written), want %d", c.Name, out.Accepted, len(write), c.Accept)
	}
	if out.SeqBackwards != c.SeqBackwards {
		t.Errorf("%s: seq_backwards %v, want %v", c.Name, out.SeqBackwards, c.SeqBackwards)
	}
	for _, w := range write {
		if math.IsNaN(w.Value) || math.IsInf(w.Value, 0) || math.IsNaN(w.Delta) || math.IsInf(w.Delta, 0) || w.Delta < 0 {
			t.Errorf("%s: wrote %+v", c.Name, w)
		}
	}
	// What the pipeline would publish: every envelope encodes, and names
	// a dead-letter topic a client may publish to.
	var letters []DeadLetter
	if derr != nil {
		if derr.Detail == "" {
			t.Errorf("%s: %s without detail", c.Name, derr.Reason)
		}
		letters = append(letters, messageLetter(topic, payload, time.Now(), derr))
	} else {
		for _, r := range out.Rejects {
			if r.Detail == "" {
				t.Errorf("%s: reading %d rejected as %s without detail", c.Name, r.Index, r.Reason)
			}
		}
		letters = readingLetters(topic, len(payload), time.Now(), out.Rejects)
	}
	for _, dl := range letters {
		b, err := json.Marshal(dl)
		if err != nil || !json.Valid(b) {
			t.Errorf("%s: dead-letter does not encode: %v", c.Name, err)
		}
		if len(b) > 8*deadLetterPayloadLimit {
			t.Errorf("%s: dead-letter of %d bytes for a %d-byte payload", c.Name, len(b), len(payload))
		}
		dt := DeadLetterTopic(dl.Reason)
		if strings.ContainsAny(dt, "+#\x00") || !utf8.ValidString(dt) {
			t.Errorf("%s: dead-letter topic %q", c.Name, dt)
		}
	}
}

// TestHostileCorpus runs every case of testdata/hostile through a fresh
// Normaliser (after one valid message from gw-1, seq 1000, so that seq 1
// goes backwards): each gives exactly its reasons and stores exactly its
// good readings, never panics, and its dead-letters encode.
func TestHostileCorpus(t *testing.T) {
	reg := testRegistry(t)
	cases := loadHostileCases(t)
	rejecting := 0
	for _, c := range cases {
		if len(c.Reasons) > 0 {
			rejecting++
		}
	}
	if rejecting < minHostileCases {
		t.Fatalf("the corpus has %d rejecting cases, want at least %d", rejecting, minHostileCases)
	}
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	ts := now.Add(-time.Hour)
	for i := range cases {
		c := &cases[i]
		t.Run(c.Name, func(t *testing.T) {
			n := NewNormaliser(reg, hostileConfig)
			var write, observe []store.Reading
			prime := fmt.Sprintf(`{"gateway":"gw-1","seq":1000,"readings":[{"meter":"W-FRESH","ts":%q,"value":5}]}`, ts.Add(-time.Hour).Format(time.RFC3339))
			if out, derr := n.Process(TelemetryTopic("ent-a", "gw-1"), []byte(prime), false, now, &write, &observe); derr != nil || out.Accepted != 1 {
				t.Fatalf("priming message: %+v %v", out, derr)
			}
			write, observe = write[:0], observe[:0]
			payload := c.payload(t, ts, 1001)
			out, derr := processSafely(t, n, c.Name, c.Topic, payload, now, &write, &observe)
			checkHostileOutcome(t, c, c.Topic, payload, out, derr, write)
		})
	}
	t.Logf("%d cases, %d rejecting, %d counted only", len(cases), rejecting, len(cases)-rejecting)
}

// TestHostileCorpusInterleaved runs the sequence the end-to-end test
// publishes through one Normaliser: each case gives the same result as on
// its own, and every reading of the valid messages between them is stored.
func TestHostileCorpusInterleaved(t *testing.T) {
	reg := testRegistry(t)
	cases := loadHostileCases(t)
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	seq, valid := hostileSequence(t, cases, now)
	n := NewNormaliser(reg, hostileConfig)
	stored := map[string]validMeter{}
	for _, m := range seq {
		var write, observe []store.Reading
		name := "valid message"
		if m.Case != nil {
			name = m.Case.Name
		}
		out, derr := processSafely(t, n, name, m.Topic, m.Payload, now, &write, &observe)
		if m.Case != nil {
			checkHostileOutcome(t, m.Case, m.Topic, m.Payload, out, derr, write)
			continue
		}
		if derr != nil || len(out.Rejects) > 0 || out.Accepted != m.Reads || out.SeqBackwards {
			t.Errorf("valid message %s rejected: %v %+v", m.Payload, derr, out)
		}
		for _, r := range write {
			s := stored[r.Meter]
			s.Rows++
			s.Sum += r.Delta
			stored[r.Meter] = s
		}
	}
	for meter, want := range valid {
		if got := stored[meter]; got != want {
			t.Errorf("%s: stored %+v, want %+v", meter, got, want)
		}
	}
}

// TestHostileEndToEnd publishes the corpus, interleaved with valid
// messages, through a real mosquitto into cleanprod's pipeline writing to a
// real InfluxDB. Each message is published once the previous one entered
// the pipeline, so the order (and with it seq and counter history) is the
// one TestHostileCorpusInterleaved checks. Then:
//
//   - every delivered case is dead-lettered on cp/v1/deadletter/{reason},
//     one envelope per message and reason, with its topic and payload size;
//   - cleanprod_ingest_rejected_total counts exactly the corpus's reasons;
//   - every reading of the valid messages, and the good readings of the
//     partly rejected ones, are in InfluxDB, counters with the right sums;
//   - seq going backwards is stored and counted, not rejected: a gateway
//     that restarts from seq 1 or replays a backlog is legitimate, and
//     readings are deduplicated by meter and time, not by seq;
//   - cases whose topic MQTT forbids in a publish (wildcards, NUL, control
//     characters, invalid UTF-8) get the publishing client disconnected by
//     mosquitto and never reach cleanprod; topics outside
//     cp/v1/+/+/telemetry are taken by the broker and never routed to it.
//     TestHostileCorpus proves cleanprod's own check of both.
//
// The 10 MiB payload travels: mosquitto's message_size_limit defaults to
// the MQTT maximum (256 MiB), so it reaches cleanprod, whose
// ingest.max_payload_bytes rejects it (and the dead-letter carries its first
// 64 KiB only).
func TestHostileEndToEnd(t *testing.T) {
	broker := testenv.Mosquitto(t)
	db := testenv.Influx(t)
	reg := testRegistry(t)
	h := startIngest(t, broker.URL(), "cleanprod-hostile", reg, openInflux(t, db))
	letters := deadLetters(t, broker.URL())
	waitFor(t, 10*time.Second, "subscriber connected", h.sub.Connected)

	cases := loadHostileCases(t)
	seq, valid := hostileSequence(t, cases, time.Now())
	gw := connect(t, broker.URL(), "hostile-gateway")

	type letterKey struct {
		topic  string
		reason Reason
		bytes  int
	}
	wantLetters := map[letterKey]int{}
	wantRejected := map[Reason]int{}
	wantWritten, delivered, refused, unrouted, backwards := 0, 0, 0, 0, 0
	for _, m := range seq {
		c := m.Case
		switch {
		case c != nil && c.Broker == "refused":
			refused++
			publishRefused(t, broker.URL(), c.Name, m.Topic, m.Payload)
			continue
		case c != nil && c.Broker == "unrouted":
			unrouted++
			publish(t, gw, m.Topic, m.Payload)
			continue
		}
		publish(t, gw, m.Topic, m.Payload)
		delivered++
		waitFor(t, 20*time.Second, fmt.Sprintf("message %d in the pipeline", delivered), func() bool {
			return testutil.ToFloat64(h.metrics.messages) == float64(delivered)
		})
		if c == nil {
			wantWritten += m.Reads
			continue
		}
		wantWritten += c.Accept
		if c.SeqBackwards {
			backwards++
		}
		seen := map[Reason]bool{}
		for _, r := range c.Reasons {
			wantRejected[r]++
			if !seen[r] {
				seen[r] = true
				wantLetters[letterKey{m.Topic, r, len(m.Payload)}]++
			}
		}
	}
	nLetters := 0
	for _, n := range wantLetters {
		nLetters += n
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("%d readings written", wantWritten), func() bool {
		return testutil.ToFloat64(h.metrics.readings) == float64(wantWritten)
	})
	waitFor(t, 30*time.Second, fmt.Sprintf("%d dead-letters", nLetters), func() bool { return len(letters()) >= nLetters })
	waitFor(t, 10*time.Second, "every message acknowledged", func() bool { return testutil.ToFloat64(h.metrics.inflight) == 0 })
	time.Sleep(200 * time.Millisecond) // room for a letter too many to show

	if got := testutil.ToFloat64(h.metrics.messages); got != float64(delivered) {
		t.Errorf("messages received: got %g, want %d (refused and unrouted cases must not arrive)", got, delivered)
	}
	gotLetters := map[letterKey]int{}
	for _, dl := range letters() {
		gotLetters[letterKey{dl.Topic, dl.Reason, dl.PayloadBytes}]++
		if messageLevel(dl.Reason) {
			if dl.PayloadBytes > 0 && dl.Payload == "" && len(dl.PayloadBase64) == 0 {
				t.Errorf("%s dead-letter of %q without the payload", dl.Reason, dl.Topic)
			}
			if dl.Truncated != (dl.PayloadBytes > deadLetterPayloadLimit) {
				t.Errorf("%s dead-letter of %d bytes: truncated %v", dl.Reason, dl.PayloadBytes, dl.Truncated)
			}
		} else if len(dl.Readings) == 0 {
			t.Errorf("%s dead-letter of %q without readings", dl.Reason, dl.Topic)
		}
	}
	for k, n := range wantLetters {
		if gotLetters[k] != n {
			t.Errorf("dead-letters %s from %q (%d bytes): got %d, want %d", k.reason, k.topic, k.bytes, gotLetters[k], n)
		}
	}
	for k, n := range gotLetters {
		if wantLetters[k] == 0 {
			t.Errorf("unexpected dead-letters %s from %q (%d bytes): %d", k.reason, k.topic, k.bytes, n)
		}
	}
	for r, n := range wantRejected {
		if got := testutil.ToFloat64(h.metrics.rejected.WithLabelValues(string(r))); got != float64(n) {
			t.Errorf("cleanprod_ingest_rejected_total{reason=%q}: got %g, want %d", r, got, n)
		}
	}
	if got := testutil.CollectAndCount(h.metrics.rejected); got != len(wantRejected) {
		t.Errorf("cleanprod_ingest_rejected_total has %d reasons, want %d", got, len(wantRejected))
	}
	if got := testutil.ToFloat64(h.metrics.seqBackwards); got != float64(backwards) {
		t.Errorf("cleanprod_ingest_seq_backwards_total: got %g, want %d", got, backwards)
	}

	// Everything accepted is in InfluxDB, the valid messages' counters
	// with their exact sums, for the store and for the scorer.
	if got := db.MustCountReadings(t, ""); got != wantWritten {
		t.Errorf("readings in InfluxDB: got %d, want %d", got, wantWritten)
	}
	for meter, want := range valid {
		if got := db.MustCountReadings(t, fmt.Sprintf(`meter = '%s'`, meter)); got != want.Rows {
			t.Errorf("%s rows in InfluxDB: got %d, want %d", meter, got, want.Rows)
		}
		if got := sumDelta(t, db, meter); math.Abs(got-want.Sum) > 1e-9 {
			t.Errorf("%s: stored sum of deltas %g, want %g", meter, got, want.Sum)
		}
		if got := h.observedSum(meter); math.Abs(got-want.Sum) > 1e-9 {
			t.Errorf("%s: scorer's sum %g, want %g", meter, got, want.Sum)
		}
	}
	t.Logf("corpus: %d cases; %d messages delivered (%d hostile), %d refused by the broker, %d unrouted; %d dead-letters, %d readings stored",
		len(cases), delivered, len(cases)-refused-unrouted, refused, unrouted, nLetters, wantWritten)
}

// publishRefused publishes from a client of its own and expects mosquitto
// to disconnect it for the topic.
func publishRefused(t *testing.T, url, name, topic string, payload []byte) {
	t.Helper()
	lost := make(chan error, 1)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("hostile-" + name).SetAutoReconnect(false).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { lost <- err }))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: connect: %v", name, tok.Error())
	}
	defer c.Disconnect(0)
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("%s: the broker neither took nor refused topic %q", name, topic)
	}
	if tok.Error() == nil {
		t.Errorf("%s: the broker took a publish to %q; MQTT forbids that topic", name, topic)
		return
	}
	select {
	case err := <-lost:
		if err == nil {
			t.Errorf("%s: connection lost without an error", name)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("%s: publish failed (%v) but the broker kept the connection", name, tok.Error())
	}
	if errors.Is(tok.Error(), mqtt.ErrNotConnected) {
		t.Errorf("%s: not connected before publishing", name)
	}
}
