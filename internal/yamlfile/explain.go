package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DecodeFileExplained reads path and decodes it like Decode, but tells a
// value of the wrong type or an unknown key in the words of the file:
// the key's path, what the file has and what the key takes, e.g.
//
//	c.yaml:4: ingest.batch_size: got the string "many", want a whole number
//	c.yaml:2: mqtt.urll: unknown key (did you mean mqtt.url?); mqtt takes url, client_id, ...
//
// rather than the Go types behind v (yaml's "cannot unmarshal !!str into
// int", "field urll not found in type struct { ... }"). With such
// problems the document is returned beside the error.
func DecodeFileExplained(path string, v any) (*Doc, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	doc, err := Decode(path, data, v)
	if err == nil {
		return doc, nil
	}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var te *yaml.TypeError
	if !errors.As(dec.Decode(reflect.New(reflect.TypeOf(v).Elem()).Interface()), &te) {
		return nil, err
	}
	errs := make([]error, 0, len(te.Errors))
	for _, e := range te.Errors {
		errs = append(errs, explain(path, &root, reflect.TypeOf(v), oneLine.Replace(e)))
	}
	// yaml decodes every value it can around the ones it reports: the
	// document is returned too, so that a caller can place the problems
	// it finds in those values.
	return &Doc{Name: path, root: &root}, errors.Join(errs...)
}

var (
	typeRE    = regexp.MustCompile("^line (\\d+): cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.*)$")
	unknownRE = regexp.MustCompile(`^line (\d+): field (\S+) not found in type (.*)$`)
)

// explain rewrites one of yaml's messages about the file name.
func explain(name string, root *yaml.Node, t reflect.Type, msg string) error {
	if m := typeRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if path, ft, ok := locate(root, t, line, func(n *yaml.Node) bool { return n.Tag == m[2] && (m[3] == "" || n.Value == m[3]) }); ok {
			return fmt.Errorf("%s:%d: %s: got %s, want %s", name, line, path, gotText(m[2], m[3]), wantText(ft, path))
		}
		return fmt.Errorf("%s:%d: got %s, want %s", name, line, gotText(m[2], m[3]), strings.TrimPrefix(noStruct(m[4]), "a "))
	}
	if m := unknownRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if path, parent, ok := locateKey(root, t, line, m[2]); ok {
			keys := fieldNames(parent)
			where := "the file"
			if i := strings.LastIndexByte(path, '.'); i >= 0 {
				where = path[:i]
			}
			hint := ""
			if near := nearest(m[2], keys); near != "" {
				if i := strings.LastIndexByte(path, '.'); i >= 0 {
					near = path[:i+1] + near
				}
				hint = fmt.Sprintf(" (did you mean %s?)", near)
			}
			return fmt.Errorf("%s:%d: %s: unknown key%s; %s takes %s", name, line, path, hint, where, strings.Join(keys, ", "))
		}
		return fmt.Errorf("%s:%d: unknown key %s", name, line, m[2])
	}
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: %s", name, m[1], noStruct(m[2]))
	}
	return fmt.Errorf("%s: %s", name, noStruct(msg))
}

var structRE = regexp.MustCompile(`struct \{.*\}`)

// noStruct replaces a Go struct type in a message by what it is in YAML.
func noStruct(s string) string { return structRE.ReplaceAllString(s, "a mapping") }

// locate finds the value node on line that match accepts, with its key
// path ("ingest.batch_size", "meters[2].unit") and the Go type it decodes
// into.
func locate(root *yaml.Node, t reflect.Type, line int, match func(*yaml.Node) bool) (path string, ft reflect.Type, ok bool) {
	walk(root, t, "", func(_, v *yaml.Node, vt, _ reflect.Type, p string) bool {
		if v.Line == line && match(v) {
			path, ft, ok = p, vt, true
		}
		return ok
	})
	return path, ft, ok
}

// locateKey finds the mapping key named key on line, with its path and
// the Go type of the mapping holding it.
func locateKey(root *yaml.Node, t reflect.Type, line int, key string) (path string, parent reflect.Type, ok bool) {
	walk(root, t, "", func(k, _ *yaml.Node, _, mt reflect.Type, p string) bool {
		if k != nil && k.Line == line && k.Value == key && mt != nil && mt.Kind() == reflect.Struct {
			path, parent, ok = p, mt, true
		}
		return ok
	})
	return path, parent, ok
}

// walk visits every value below n (decoding into t) with its key (nil in
// a sequence), its path, the Go type it decodes into and the type of the
// mapping or list holding it, until visit returns true.
func walk(n *yaml.Node, t reflect.Type, path string, visit func(k, v *yaml.Node, vt, mt reflect.Type, path string) bool) bool {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	n = deref(n)
	if n == nil {
		return false
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if walk(c, t, path, visit) {
				return true
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			vt := fieldType(t, k.Value)
			if visit(k, deref(v), vt, t, p) || walk(v, vt, p, visit) {
				return true
			}
		}
	case yaml.SequenceNode:
		var et reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			et = t.Elem()
		}
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if visit(nil, deref(c), et, t, p) || walk(c, et, p, visit) {
				return true
			}
		}
	}
	return false
}

// fieldType is the type key decodes into within t (nil: unknown).
func fieldType(t reflect.Type, key string) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return nil
	}
	switch t.Kind() {
	case reflect.Map:
		return t.Elem()
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")
			if tag[0] == "-" || !f.IsExported() {
				continue
			}
			if len(tag) > 1 && tag[1] == "inline" {
				if ft := fieldType(f.Type, key); ft != nil {
					return ft
				}
				continue
			}
			name := tag[0]
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if name == key {
				return f.Type
			}
		}
	}
	return nil
}

// fieldNames lists the keys a struct type takes, in order.
func fieldNames(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")
		if tag[0] == "-" || !f.IsExported() {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if len(tag) > 1 && tag[1] == "inline" && ft.Kind() == reflect.Struct {
			out = append(out, fieldNames(ft)...)
			continue
		}
		if tag[0] == "" {
			out = append(out, strings.ToLower(f.Name))
		} else {
			out = append(out, tag[0])
		}
	}
	return out
}

// gotText says what the file has: the string "abc", the number 5.
func gotText(tag, value string) string {
	switch tag {
	case "!!str":
		return strconv.Quote(value)
	case "!!int", "!!float":
		return "the number " + value
	case "!!bool":
		return "the boolean " + value
	case "!!seq":
		return "a list"
	case "!!map":
		return "a mapping"
	case "!!null":
		return "nothing"
	}
	if value != "" {
		return tag + " " + strconv.Quote(value)
	}
	return tag
}

var durationType = reflect.TypeOf(time.Duration(0))

// wantText says what a Go type takes in YAML.
func wantText(t reflect.Type, path string) string {
	if t == nil {
		return "another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		return "a duration with its unit, such as 250ms, 30s, 5m or 1h30m"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, 0 or more"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string (quote it if it looks like a number or a list)"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map:
		return "a mapping"
	case reflect.Struct:
		keys := fieldNames(t)
		for i := range keys {
			keys[i] = path + "." + keys[i]
		}
		return "a mapping of " + strings.Join(keys, ", ")
	}
	return t.String()
}

// nearest returns the key of keys closest to k by edit distance, if it is
// close enough to be a typo ("" otherwise).
func nearest(k string, keys []string) string {
	best, bestD := "", 3
	for _, c := range keys {
		if d := Distance(k, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// Distance is the Levenshtein distance of a and b, for "did you mean"
// suggestions of misspelt keys and names.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
