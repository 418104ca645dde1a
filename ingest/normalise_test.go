package ingest

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func testRegistry(t testing.TB) *registry.Registry {
	t.Helper()
	reg, err := registry.Load("testdata/registry")
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

var testConfig = NormaliserConfig{
	FutureHorizon: 5 * time.Minute,
	PastHorizon:   30 * 24 * time.Hour,
	History:       8,
	MaxPayload:    4096,
	MaxReadings:   20,
}

// TestNormaliseCases runs testdata/normalise/<case>/input.txt through a
// fresh Normaliser and compares everything it emits with want.txt.
//
// input.txt lines: "now RFC3339" sets the arrival time; "msg TOPIC PAYLOAD"
// and "dup TOPIC PAYLOAD" (an MQTT redelivery) process one message; lines
// starting with # are comments. Run with -update to rewrite want.txt, then
// read the diff: the goldens are the specification.
func TestNormaliseCases(t *testing.T) {
	reg := testRegistry(t)
	dirs, err := filepath.Glob("testdata/normalise/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			got := runCase(t, reg, filepath.Join(dir, "input.txt"))
			wantPath := filepath.Join(dir, "want.txt")
			if *update {
				if err := os.WriteFile(wantPath, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(wantPath)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (run with -update and review the diff)\ngot:\n%s\nwant:\n%s", wantPath, got, want)
			}
		})
	}
}

func runCase(t *testing.T, reg *registry.Registry, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := NewNormaliser(reg, testConfig)
	var now time.Time
	var b strings.Builder
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	msgNo := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		verb, rest, _ := strings.Cut(line, " ")
		switch verb {
		case "now":
			now, err = time.Parse(time.RFC3339, rest)
			if err != nil {
				t.Fatal(err)
			}
		case "msg", "dup":
			topic, payload, _ := strings.Cut(rest, " ")
			msgNo++
			var write, observe []store.Reading
			out, derr := n.Process(topic, []byte(payload), verb == "dup", now, &write, &observe)
			fmt.Fprintf(&b, "%s %d:", verb, msgNo)
			if derr != nil {
				fmt.Fprintf(&b, " rejected %s: %s\n", derr.Reason, derr.Detail)
				continue
			}
			fmt.Fprintf(&b, " accepted=%d duplicates=%d", out.Accepted, out.Duplicates)
			if out.SeqGap != 0 {
				fmt.Fprintf(&b, " seq_gap=%d", out.SeqGap)
			}
			if out.SeqRepeat {
				b.WriteString(" seq_repeat")
			}
			if out.SeqBackwards {
				b.WriteString(" seq_backwards")
			}
			if out.Resets+out.Rollovers+out.Replaced > 0 {
				fmt.Fprintf(&b, " resets=%d rollovers=%d replaced=%d", out.Resets, out.Rollovers, out.Replaced)
			}
			if out.Glitches+out.Rebased > 0 {
				fmt.Fprintf(&b, " glitches=%d rebased=%d", out.Glitches, out.Rebased)
			}
			if out.Rewrites > 0 {
				fmt.Fprintf(&b, " rewrites=%d", out.Rewrites)
			}
			b.WriteString("\n")
			for _, r := range write {
				fmt.Fprintf(&b, "  write   %s/%s %s %s %s value=%g delta=%g\n", r.Enterprise, r.Meter, r.Time.Format(time.RFC3339), r.Quantity, r.Kind, r.Value, r.Delta)
			}
			for _, r := range observe {
				fmt.Fprintf(&b, "  observe %s/%s %s amount=%g value=%g\n", r.Enterprise, r.Meter, r.Time.Format(time.RFC3339), r.Delta, r.Value)
			}
			for _, r := range out.Rejects {
				fmt.Fprintf(&b, "  reject  #%d %s: %s\n", r.Index, r.Reason, r.Detail)
			}
		default:
			t.Fatalf("%s: unknown line %q", path, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
