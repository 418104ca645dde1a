package yamlfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fuzzDoc has a field of every type cleanprod's configuration files use.
type fuzzDoc struct {
	S string                  `yaml:"s"`
	I int                     `yaml:"i"`
	U uint8                   `yaml:"u"`
	F float64                 `yaml:"f"`
	B bool                    `yaml:"b"`
	D time.Duration           `yaml:"d"`
	T time.Time               `yaml:"t"`
	P *float64                `yaml:"p"`
	L []string                `yaml:"l"`
	M map[string]int          `yaml:"m"`
	A any                     `yaml:"a"`
	N []fuzzDocInner          `yaml:"n"`
	O *fuzzDocInner           `yaml:"o"`
	X map[string]fuzzDocInner `yaml:"x"`
}

type fuzzDocInner struct {
	ID   string        `yaml:"id"`
	Vals []float64     `yaml:"vals"`
	Next *fuzzDocInner `yaml:"next"`
}

// FuzzDecode: Decode returns an error whose every line names the file, or
// a Doc whose look-ups work on any path. It never panics.
//
// Without -fuzz it runs the seeds: every YAML file of the repository's
// data folders and a few corner cases.
func FuzzDecode(f *testing.F) {
	for _, pattern := range []string{"../../gateway-config/*.yaml", "../../scoring/*/*.yaml", "../../deploy/*.yaml", "../../registry/testdata/*/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	for _, s := range []string{
		"s: a\ni: 1\nu: 300\nf: .nan\nb: yes\nd: 5m\nt: 2026-11-29T06:00:00Z\np: 1e309\nl: [a, b]\nm: {a: 1}\na: [1, {b: c}]\nn: [{id: x, vals: [1, 2]}]\no: {id: y, next: {id: z}}\nx: {k: {id: w}}\n",
		"a: &a [*a]\n", "a: &x {k: *x}\n", "a: !!binary gIGC\n", "a: !!int 0x1F\n", "<<: {s: a}\n", "s: a\n---\ns: b\n",
		"n:\n  - id: a\n    vals: [1, b]\n  - idd: c\n", "\ufeffs: a\n", "s: \"\\u0000\"\n", "? [a, b]\n: c\n", "s: |\n  a\n b\n",
		"a: &a [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
		"%YAML 1.1\n---\ns: a\n", "%TAG ! tag:x,2000:\n---\ns: !foo a\n", "s: *undefined\n", "{", "- a\n- b\n", "null\n", "~\n", "s: 'a\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v fuzzDoc
		doc, err := Decode("f.yaml", data, &v)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "f.yaml") {
					t.Fatalf("error line %q does not name the file (in %q)", line, err)
				}
			}
			return
		}
		if doc == nil {
			t.Fatal("no error and no Doc")
		}
		for _, path := range [][]any{nil, {"s"}, {"n", 0, "vals", 1}, {"o", "next", "next", "id"}, {"x", "k", "id"}, {"a", 0, 1, "b"}, {3}, {"n", -1}, {"l", 1 << 40}} {
			if l := doc.Line(path...); l < 0 {
				t.Fatalf("Line(%v) = %d", path, l)
			}
			if e := doc.Errorf(path, "x"); !strings.HasPrefix(e.Error(), "f.yaml") {
				t.Fatalf("Errorf(%v) = %q", path, e)
			}
		}
	})
}

// An error quoting a multi-line value lost its "f.yaml:1:" prefix and
// spread over lines, each of which gateways check counted as a problem
// (found by FuzzDecode).
func TestDecodeErrorQuotingMultilineValue(t *testing.T) {
	var v fuzzDoc
	_, err := Decode("f.yaml", []byte("i: |\n  00\n  11\n"), &v)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "f.yaml:1: ") || !strings.Contains(err.Error(), `00\n11`) {
		t.Fatalf("got %q, want one line f.yaml:1: ... quoting 00\\n11", err)
	}
	p := &Problem{File: "f.yaml", Line: 2, Msg: "unit \"a\nb\" is not declared"}
	if got := p.Error(); got != `f.yaml:2: unit "a\nb" is not declared` {
		t.Fatalf("Problem.Error() = %q", got)
	}
}
