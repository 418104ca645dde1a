package ingest

import (
	"bufio"
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzDecode holds Decode to the encoding/json implementation it replaced
// (decodeRef): on every input both must reject the message with the same
// reason and detail, or decode the same message. The one deliberate
// difference is nesting: Decode rejects objects and arrays nested more
// than maxDepth levels deep as malformed_json, encoding/json allowed 10000.
//
// Without -fuzz it runs the seeds below and testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, p := range normaliseSeedPayloads(f) {
		f.Add(p, uint8(0))
	}
	for _, s := range decodeSeeds {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(2))
	}
	f.Fuzz(func(t *testing.T, payload []byte, max uint8) {
		maxReadings := int(max % 16) // 0: no bound
		orig := bytes.Clone(payload)
		got, gotErr := Decode(payload, maxReadings)
		if !bytes.Equal(payload, orig) {
			t.Fatalf("Decode modified its payload")
		}
		want, wantErr := decodeRef(payload, maxReadings)
		checkSameDecode(t, payload, got, gotErr, want, wantErr)
	})
}

// checkSameDecode fails t unless Decode's result (got) matches decodeRef's.
func checkSameDecode(t *testing.T, payload []byte, got *Message, gotErr error, want *Message, wantErr error) {
	t.Helper()
	if gotErr != nil {
		if gotErr.(*DecodeError).Detail == tooDeepDetail {
			if d := nestingDepth(payload); d <= maxDepth {
				t.Fatalf("got %v for a payload nested %d levels deep", gotErr, d)
			}
			return // the deliberate difference
		}
	}
	if (gotErr != nil) != (wantErr != nil) {
		t.Fatalf("got error %v, want %v\npayload: %q", gotErr, wantErr, payload)
	}
	if gotErr != nil {
		g, w := gotErr.(*DecodeError), wantErr.(*DecodeError)
		if g.Reason != w.Reason || (g.Reason != ReasonMalformed && g.Detail != w.Detail) {
			t.Fatalf("got %s: %s, want %s: %s\npayload: %q", g.Reason, g.Detail, w.Reason, w.Detail, payload)
		}
		return
	}
	if got.Gateway != want.Gateway || got.Seq != want.Seq || !sameTime(got.Sent, want.Sent) {
		t.Fatalf("got gateway %q seq %d sent %v, want %q %d %v\npayload: %q", got.Gateway, got.Seq, got.Sent, want.Gateway, want.Seq, want.Sent, payload)
	}
	if len(got.Readings) != len(want.Readings) || len(got.Rejects) != len(want.Rejects) {
		t.Fatalf("got %d readings and %d rejects, want %d and %d\npayload: %q", len(got.Readings), len(got.Rejects), len(want.Readings), len(want.Rejects), payload)
	}
	for i, g := range got.Readings {
		w := want.Readings[i]
		if g.Index != w.Index || g.Meter != w.Meter || !sameTime(g.Time, w.Time) ||
			math.Float64bits(g.Value) != math.Float64bits(w.Value) || !bytes.Equal(g.Raw, w.Raw) {
			t.Fatalf("reading %d: got %+v, want %+v\npayload: %q", i, g, w, payload)
		}
		checkAliases(t, payload, g.Raw)
	}
	for i, g := range got.Rejects {
		w := want.Rejects[i]
		if g.Index != w.Index || g.Reason != w.Reason || g.Detail != w.Detail || !bytes.Equal(g.Raw, w.Raw) {
			t.Fatalf("reject %d: got %+v, want %+v\npayload: %q", i, g, w, payload)
		}
		checkAliases(t, payload, g.Raw)
	}
}

// sameTime is true for the same instant in the same location and zone.
func sameTime(a, b time.Time) bool {
	an, ao := a.Zone()
	bn, bo := b.Zone()
	if a.Location() == time.UTC || b.Location() == time.UTC {
		return a == b // the hand-parsed UTC form must be time.Parse's value, bit for bit
	}
	return a.Equal(b) && an == bn && ao == bo && a.Location().String() == b.Location().String()
}

// checkAliases checks that raw is a sub-slice of payload whose capacity
// ends with it, so appending to it cannot overwrite the payload.
func checkAliases(t *testing.T, payload, raw []byte) {
	t.Helper()
	if len(raw) == 0 {
		t.Fatalf("empty Raw")
	}
	if cap(raw) != len(raw) {
		t.Fatalf("Raw %q has capacity %d beyond its length %d", raw, cap(raw), len(raw))
	}
	p0, p1 := &payload[0], &payload[len(payload)-1]
	r0 := &raw[0]
	inside := false
	for i := range payload {
		if &payload[i] == r0 {
			inside = len(payload)-i >= len(raw)
			break
		}
	}
	if !inside {
		t.Fatalf("Raw %q is not a sub-slice of the payload (%p..%p)", raw, p0, p1)
	}
}

// nestingDepth returns how deeply payload nests objects and arrays,
// counting brackets outside strings (without checking the grammar).
func nestingDepth(payload []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range payload {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
		case inString:
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// normaliseSeedPayloads returns the payloads of testdata/normalise/*/input.txt.
func normaliseSeedPayloads(tb testing.TB) [][]byte {
	tb.Helper()
	files, err := filepath.Glob("testdata/normalise/*/input.txt")
	if err != nil || len(files) == 0 {
		tb.Fatalf("no normalise inputs: %v", err)
	}
	var out [][]byte
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			tb.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			verb, rest, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
			if verb == "msg" || verb == "dup" {
				_, payload, _ := strings.Cut(rest, " ")
				out = append(out, []byte(payload))
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// decodeSeeds are hand-written payloads aimed at the corners of the
// grammar and of encoding/json's behaviour.
var decodeSeeds = []string{
	// The good case, spaced out.
	`{"gateway":"gw-1","seq":1,"sent":"2026-11-29T06:00:05Z","readings":[{"meter":"E-1","ts":"2026-11-29T06:00:00Z","value":182734.5}]}`,
	" \t\r\n{ \"gateway\" : \"gw-1\" , \"seq\" : 1 , \"readings\" : [ { \"meter\" : \"E-1\" , \"ts\" : \"2026-11-29T06:00:00Z\" , \"value\" : 1 } , 2 ] } \n",
	// Escapes, surrogate pairs, lone surrogates.
	`{"gateway":"gw\u002d1","seq":1,"readings":[{"meter":"E\"1\\\/\b\f\n\r\t","ts":"2026-11-29T06:00:00Z","value":1}]}`,
	`{"gateway":"\ud83d\ude00","seq":1,"readings":[{"meter":"\ud800","ts":"2026-11-29T06:00:00Z","value":1},{"meter":"\udc00\ud800x","ts":"2026-11-29T06:00:00Z","value":1},{"meter":"\ud800\u0041","ts":"2026-11-29T06:00:00Z","value":1},{"meter":"\ud800\\u0041","ts":"2026-11-29T06:00:00Z","value":1},{"meter":"\ud800\ud800\udc00","ts":"2026-11-29T06:00:00Z","value":1}]}`,
	`{"gateway":"\u0000","seq":1,"readings":[{"meter":"\u00e9\u4e2d","ts":"2026\u002d11-29T06:00:00Z","value":1}]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"x","value":1}],"x":"\x"}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"x","value":1}],"x":"\u12"}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"x","value":1}],"x":"\u12G4"}`,
	"{\"gateway\":\"g\tw\",\"seq\":1,\"readings\":[1]}",
	"{\"gateway\":\"g\x00w\",\"seq\":1,\"readings\":[1]}",
	"{\"gateway\":\"g\x7fw\",\"seq\":1,\"readings\":[1]}",
	// Keys: case folding, escapes, duplicates (last wins).
	`{"GATEWAY":"gw","Seq":1,"READINGS":[{"METER":"a","Ts":"2026-11-29T06:00:00Z","VALUE":1}]}`,
	`{"gateway":"gw","ſeq":1,"readingſ":[{"meter":"a","tſ":"2026-11-29T06:00:00Z","value":1}]}`,
	`{"gateway":"gw","\u017feq":1,"\u212aey":2,"readings":[{"meter":"a","TS":"2026-11-29T06:00:00Z","\u0056alue":1,"meters":"b","tss":1}]}`,
	`{"gateway":"gw","\u0073eq":1,"read\u0069ngs":[{"\u006deter":"a","\u0074s":"2026-11-29T06:00:00Z","valu\u0065":1}]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":1}],"seq":2,"gateway":"gx"}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":1}],"readings":[1,2]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":1}],"readings":null}`,
	`{"gateway":"gw","seq":1,"readings":null,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":1}]}`,
	`{"gateway":"gw","seq":1,"readings":"x","readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":1}]}`,
	`{"gateway":"gw","seq":1,"readings":[1],"readings":true}`,
	`{"gateway":"gw","seq":1,"readings":[1],"readings":{}}`,
	`{"gateway":"gw","seq":1,"readings":[1],"readings":-1.5}`,
	`{"gateway":"gw","seq":1,"readings":[],"readings":[]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","meter":"b","ts":"2026-11-29T06:00:00Z","value":1,"value":null}]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":1,"ts":5}]}`,
	// Unknown keys with nested values that look like the end.
	`{"x":{"a":[1,{"b":"}"}],"c":"\"]"},"gateway":"gw","y":[[],{},[[{}]]],"seq":1,"readings":[{"q":{"meter":"no"},"meter":"a","ts":"2026-11-29T06:00:00Z","value":1,"z":[true,false,null,-0.0e+1]}]}`,
	`{"":1,"gateway":"gw","seq":1,"readings":[{"":{},"meter":"a","ts":"2026-11-29T06:00:00Z","value":1}]}`,
	// Numbers.
	`{"gateway":"gw","seq":-0,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":-0},{"meter":"a","ts":"2026-11-29T06:00:00Z","value":0.5e-3},{"meter":"a","ts":"2026-11-29T06:00:00Z","value":1E+2},{"meter":"a","ts":"2026-11-29T06:00:00Z","value":1e309},{"meter":"a","ts":"2026-11-29T06:00:00Z","value":-1e309},{"meter":"a","ts":"2026-11-29T06:00:00Z","value":1e-400},{"meter":"a","ts":"2026-11-29T06:00:00Z","value":123456789012345678901234567890123456789}]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":00}]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":01}]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":1.}]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":.5}]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":-}]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":+1}]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":1e}]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":1e+}]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":NaN}]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":Infinity}]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":"1"},{"meter":"a","ts":"2026-11-29T06:00:00Z","value":true},{"meter":"a","ts":"2026-11-29T06:00:00Z","value":false},{"meter":"a","ts":"2026-11-29T06:00:00Z","value":null},{"meter":"a","ts":"2026-11-29T06:00:00Z","value":{}},{"meter":"a","ts":"2026-11-29T06:00:00Z","value":[1]}]}`,
	// seq.
	`{"gateway":"gw","seq":"7","readings":[1]}`,
	`{"gateway":"gw","seq":1.0,"readings":[1]}`,
	`{"gateway":"gw","seq":1e3,"readings":[1]}`,
	`{"gateway":"gw","seq":9223372036854775807,"readings":[1]}`,
	`{"gateway":"gw","seq":9223372036854775808,"readings":[1]}`,
	`{"gateway":"gw","seq":null,"readings":[1]}`,
	`{"gateway":"gw","seq":{"a":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"},"readings":[1]}`,
	// gateway and sent.
	`{"gateway":"","seq":1,"readings":[1]}`,
	`{"gateway":null,"seq":1,"readings":[1]}`,
	`{"gateway":["gw"],"seq":1,"readings":[1]}`,
	`{"gateway":"gw","seq":1,"sent":null,"readings":[1]}`,
	`{"gateway":"gw","seq":1,"sent":"","readings":[1]}`,
	`{"gateway":"gw","seq":1,"sent":5,"readings":[1]}`,
	`{"gateway":"gw","seq":1,"sent":"2026-11-29T06:00:05+08:00","readings":[1]}`,
	// Readings that are not objects or lack fields.
	`{"gateway":"gw","seq":1,"readings":[null,1,"x",[],{},[{"meter":"a"}],true]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":17},{"meter":""},{"meter":"a"},{"meter":"a","ts":""},{"meter":"a","ts":null},{"meter":"a","ts":1},{"meter":"a","ts":"2026-11-29T06:00:00Z"}]}`,
	`{"gateway":"gw","seq":1,"readings":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}`,
	// Timestamps.
	tsSeed("2026-11-29T06:00:00.123456789Z", "2026-11-29T06:00:00.1234567891Z", "2026-11-29T06:00:00.Z", "2026-11-29T06:00:00,5Z",
		"2026-02-29T00:00:00Z", "2024-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "0000-02-29T00:00:00Z", "9999-12-31T23:59:59.999999999Z",
		"2026-11-29T24:00:00Z", "2026-11-29T06:60:00Z", "2026-11-29T06:00:60Z", "2026-00-29T06:00:00Z", "2026-13-01T06:00:00Z", "2026-04-31T06:00:00Z",
		"2026-11-29t06:00:00z", "2026-11-29T06:00:00+01:00", "2026-11-29T06:00:00-00:00", "2026-11-29T06:00:00.5+05:30", "2026-11-29T06:00:00+24:00",
		"2026-11-29T6:00:00Z", "2026-11-29T06:00:00", "2026-11-29 06:00:00Z", "+2026-11-29T06:00:00Z", "2026-11-29T06:00:00ZZ", "2026-1a-29T06:00:00Z",
		"2026-11-29T06:00:00.-1Z", "2026-11-29T06:00:00.+1Z", "2026-11-29T06:00:00.1 Z"),
	// Malformed anywhere, including after a field problem.
	`{"gateway":42,"seq":1,"readings":[1]`,
	`{"gateway":"gw","seq":1,"readings":[1]} x`,
	`{"gateway":"gw","seq":1,"readings":[1]}{}`,
	`{"gateway":"gw","seq":1,"readings":[1],}`,
	`{"gateway":"gw","seq":1,"readings":[1,]}`,
	`{"gateway":"gw","seq":1,"readings":[,1]}`,
	`{"gateway":"gw","seq":1,"readings":[1 2]}`,
	`{"gateway":"gw","seq":1,,"readings":[1]}`,
	`{"gateway" "gw","seq":1,"readings":[1]}`,
	`{gateway:"gw"}`,
	`{'gateway':"gw"}`,
	`{"gateway":"gw","seq":1,"readings":[1],"x":tru}`,
	`{"gateway":"gw","seq":1,"readings":[1],"x":nul}`,
	`{"gateway":"gw","seq":1,"readings":[1],"x":nulll}`,
	`{"gateway":"gw","seq":1,"readings":[1],"x":truex}`,
	`{"gateway":"gw","seq":1,"readings":[1],"x":[}`,
	`{"gateway":"gw","seq":1,"readings":[1],"x":{]}`,
	`{"gateway":"gw","seq":1,"readings":[1],"x":{"a"}}`,
	`{"gateway":"gw","seq":1,"readings":[1],"x":{"a":}}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a",}]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter" "a"}]}`,
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a"`,
	`{"gateway":"gw`,
	`{"gateway":"gw\`,
	`{"gateway":"gw\u`,
	`{`, `{ `, `{}`, `{"":`, ` {} `, `{}}`, `{"a":1}x`, `[1]`, `"x"`, `1`, `null`, ` `, "\v{}", "\u00a0{}", "\ufeff{}", "{}\u00a0",
	"{\"gateway\":\"\xff\"}",
	"{\"gateway\":\"gw\",\"seq\":1,\"readings\":[1],\"x\":\"\xed\xa0\x80\"}",
	// Nesting around maxDepth.
	nestSeed(maxDepth - 2), nestSeed(maxDepth - 1), nestSeed(maxDepth), nestSeed(100), nestSeed(10001),
	`{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":1,"x":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}]}`,
}

// tsSeed returns a payload with one reading per timestamp and the first
// as sent.
func tsSeed(ts ...string) string {
	var b strings.Builder
	b.WriteString(`{"gateway":"gw","seq":1,"sent":"` + ts[0] + `","readings":[`)
	for i, s := range ts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"meter":"a","ts":"` + s + `","value":1}`)
	}
	b.WriteString("]}")
	return b.String()
}

// nestSeed returns a valid payload whose unknown key "x" nests arrays and
// objects so that the whole payload is depth levels deep.
func nestSeed(depth int) string {
	var open, close strings.Builder
	for i := 1; i < depth; i++ {
		if i%2 == 1 {
			open.WriteString("[")
			close.WriteString("]")
		} else {
			open.WriteString(`{"k":`)
			close.WriteString("}")
		}
	}
	cl := []byte(close.String())
	for i, j := 0, len(cl)-1; i < j; i, j = i+1, j-1 {
		cl[i], cl[j] = cl[j], cl[i]
	}
	return `{"gateway":"gw","seq":1,"readings":[{"meter":"a","ts":"2026-11-29T06:00:00Z","value":1}],"x":` + open.String() + "0" + string(cl) + "}"
}
