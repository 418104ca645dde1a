// Package yamlfile decodes YAML configuration strictly and reports problems
// with the file name and line they come from.
//
// Every YAML file cleanprod reads (service config, gateway registry,
// indicator standard, code policy, solution library) goes through Decode, so
// an unknown key, a wrong type or a duplicate key is always an error that
// names file and line, and validators can point at the line of the value
// they reject through Doc.Errorf.
package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Doc is a decoded YAML document kept for locating values by path.
type Doc struct {
	Name string // file name used in messages
	root *yaml.Node
}

var lineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// oneLine escapes line breaks: a message quoting a multi-line value (a
// block scalar where a number belongs) stays one "name:line: msg" line, so
// that a list of problems has one per line (gateways check counts them).
var oneLine = strings.NewReplacer("\r", `\r`, "\n", `\n`)

// Decode decodes data (named name in messages) into v. Unknown keys, wrong
// types, duplicate keys, an empty document and more than one document are
// errors; every problem is returned at once, joined, each as "name:line: msg".
func Decode(name string, data []byte, v any) (*Doc, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fileError(name, err)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, fmt.Errorf("%s: empty document", name)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return nil, fileError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: more than one YAML document; put one per file", name)
	}
	return &Doc{Name: name, root: &root}, nil
}

// DecodeFile reads path and decodes it like Decode.
func DecodeFile(path string, v any) (*Doc, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Decode(path, data, v)
}

// fileError turns a yaml error into one error per problem, each prefixed
// with the file name and line.
func fileError(name string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		errs := make([]error, 0, len(te.Errors))
		for _, e := range te.Errors {
			e = oneLine.Replace(e)
			if m := lineRE.FindStringSubmatch(e); m != nil {
				errs = append(errs, fmt.Errorf("%s:%s: %s", name, m[1], m[2]))
			} else {
				errs = append(errs, fmt.Errorf("%s: %s", name, e))
			}
		}
		return errors.Join(errs...)
	}
	msg := oneLine.Replace(err.Error())
	msg = trimPrefix(msg, "yaml: ")
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: %s", name, m[1], m[2])
	}
	return fmt.Errorf("%s: %s", name, msg)
}

func trimPrefix(s, p string) string {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// Line returns the line of the value at path (map keys as strings, sequence
// indexes as ints). Where the path ends early it returns the line of the
// deepest node found, so a message still points near the problem.
func (d *Doc) Line(path ...any) int {
	n, _ := d.find(path)
	if n == nil {
		return 0
	}
	return n.Line
}

// Scalar returns the scalar at path as it is written in the file (after
// following an alias), so that a validator can read what a decoded number
// loses, such as the decimals "999999.90" is written with. ok is false
// when the path leads to no scalar.
func (d *Doc) Scalar(path ...any) (text string, ok bool) {
	n, whole := d.find(path)
	if !whole {
		return "", false
	}
	n = deref(n)
	if n.Kind != yaml.ScalarNode {
		return "", false
	}
	return n.Value, true
}

// find walks path from the document's root; it returns the deepest node
// found and whether that is the node at the whole path.
func (d *Doc) find(path []any) (n *yaml.Node, whole bool) {
	if d == nil || d.root == nil {
		return nil, false
	}
	n = d.root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, p := range path {
		next := child(n, p)
		if next == nil {
			return n, false
		}
		n = next
	}
	return n, true
}

// deref follows aliases to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func child(n *yaml.Node, p any) *yaml.Node {
	n = deref(n)
	switch k := p.(type) {
	case string:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				return n.Content[i+1]
			}
		}
	case int:
		if n.Kind == yaml.SequenceNode && k >= 0 && k < len(n.Content) {
			return n.Content[k]
		}
	}
	return nil
}

// Errorf returns an error "name:line: msg" for the value at path.
func (d *Doc) Errorf(path []any, format string, args ...any) error {
	return &Problem{File: d.Name, Line: d.Line(path...), Msg: fmt.Sprintf(format, args...)}
}

// Problem is one validation problem at a place in a file.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p *Problem) Error() string {
	msg := oneLine.Replace(p.Msg)
	if p.Line > 0 {
		return p.File + ":" + strconv.Itoa(p.Line) + ": " + msg
	}
	return p.File + ": " + msg
}

// P is shorthand for building a path: P("gateways", 2, "meters", 0, "unit").
func P(elems ...any) []any { return elems }
