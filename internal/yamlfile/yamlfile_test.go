package yamlfile

import (
	"errors"
	"strings"
	"testing"
)

type inner struct {
	Name  string  `yaml:"name"`
	Value float64 `yaml:"value"`
}

type outer struct {
	ID    string  `yaml:"id"`
	Items []inner `yaml:"items"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr []string
	}{
		{name: "good", in: "id: a\nitems:\n  - name: x\n    value: 1\n"},
		{name: "unknown key", in: "id: a\nitems:\n  - name: x\n    valeu: 1\n", wantErr: []string{"f.yaml:4: field valeu not found"}},
		{name: "two problems at once", in: "idd: a\nitems:\n  - name: x\n    value: abc\n", wantErr: []string{"f.yaml:1: field idd", "f.yaml:4: cannot unmarshal"}},
		{name: "duplicate key", in: "id: a\nid: b\n", wantErr: []string{"f.yaml:2", "already"}},
		{name: "empty", in: "", wantErr: []string{"f.yaml: empty document"}},
		{name: "syntax", in: "id: [a\n", wantErr: []string{"f.yaml:"}},
		{name: "two documents", in: "id: a\n---\nid: b\n", wantErr: []string{"more than one YAML document"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o outer
			_, err := Decode("f.yaml", []byte(tt.in), &o)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestDocErrorfPointsAtLine(t *testing.T) {
	var o outer
	doc, err := Decode("f.yaml", []byte("id: a\nitems:\n  - name: x\n    value: 1\n  - name: y\n    value: 2\n"), &o)
	if err != nil {
		t.Fatal(err)
	}
	err = doc.Errorf(P("items", 1, "value"), "value %v too big", 2)
	var p *Problem
	if !errors.As(err, &p) {
		t.Fatalf("got %T, want *Problem", err)
	}
	if p.Line != 6 {
		t.Errorf("got line %d, want 6", p.Line)
	}
	if got, want := err.Error(), "f.yaml:6: value 2 too big"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// A path that ends early points at the deepest node found.
	if got := doc.Line("items", 1, "missing"); got != 5 {
		t.Errorf("got line %d, want 5", got)
	}
}

// Scalar gives a value as it is written, which decoding loses: the
// trailing zero of 1.50, the base of 0x1F.
func TestDocScalar(t *testing.T) {
	var o outer
	doc, err := Decode("f.yaml", []byte("id: a\nitems:\n  - name: x\n    value: 1.50\n  - name: y\n    value: &v 0x1F\n  - name: z\n    value: *v\n"), &o)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path   []any
		text   string
		wantOK bool
	}{
		{P("items", 0, "value"), "1.50", true},
		{P("items", 1, "value"), "0x1F", true},
		{P("items", 2, "value"), "0x1F", true}, // through the alias
		{P("items", 0, "missing"), "", false},
		{P("items", 5, "value"), "", false},
		{P("items", 0), "", false}, // a mapping, not a scalar
	}
	for _, tt := range tests {
		text, ok := doc.Scalar(tt.path...)
		if text != tt.text || ok != tt.wantOK {
			t.Errorf("Scalar(%v): got %q, %v; want %q, %v", tt.path, text, ok, tt.text, tt.wantOK)
		}
	}
}
