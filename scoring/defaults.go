package scoring

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
)

// defaults holds the shipped standard, policy and solution library, so a
// binary runs without its source tree.
//
//go:embed standards/*.yaml policy/*.yaml solutions/*.yaml
var defaults embed.FS

// DefaultStandard returns the shipped indicator standard.
func DefaultStandard() (*Standard, error) {
	data, err := defaults.ReadFile("standards/auto-manufacturing.yaml")
	if err != nil {
		return nil, err
	}
	return ParseStandard("(embedded) standards/auto-manufacturing.yaml", data)
}

// DefaultPolicy returns the shipped dynamic-code policy for std.
func DefaultPolicy(std *Standard) (*Policy, error) {
	data, err := defaults.ReadFile("policy/default.yaml")
	if err != nil {
		return nil, err
	}
	return ParsePolicy("(embedded) policy/default.yaml", data, std)
}

// DefaultLibrary returns the shipped solution library for std.
func DefaultLibrary(std *Standard) (*Library, error) {
	names, err := fs.Glob(defaults, "solutions/*.yaml")
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, n := range names {
		data, err := defaults.ReadFile(n)
		if err != nil {
			return nil, err
		}
		files["(embedded) "+path.Clean(n)] = data
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no embedded solution library")
	}
	return ParseLibrary(files, std)
}
