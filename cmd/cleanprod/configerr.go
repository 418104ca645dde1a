package main

import (
	"fmt"
	"strings"

	"github.com/cleanprod/cleanprod/internal/yamlfile"
)

// placeProblems says where each problem of Config.validate comes from:
// each starts with the key path it concerns ("log.level ..."), set by an
// environment variable or flag (from), or else written in the
// configuration file (doc, nil without one) at a line. A problem of a
// default value, or one that names no key, is left as it is.
func placeProblems(errs []error, doc *yamlfile.Doc, from map[string]string) []error {
	out := make([]error, 0, len(errs))
	for _, err := range errs {
		msg := err.Error()
		key, _, _ := strings.Cut(msg, " ")
		key = strings.TrimSuffix(key, ":")
		if src, ok := from[key]; ok {
			out = append(out, fmt.Errorf("%s: %w", src, err))
			continue
		}
		if doc != nil {
			parts := strings.Split(key, ".")
			path := make([]any, len(parts))
			for i, p := range parts {
				path[i] = p
			}
			if _, ok := doc.Scalar(path...); ok {
				out = append(out, fmt.Errorf("%s:%d: %w", doc.Name, doc.Line(path...), err))
				continue
			}
		}
		out = append(out, err)
	}
	return out
}
