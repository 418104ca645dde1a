// Package cleanprod ships the example fleet inside the binary: the four
// car plants of gateway-config/ and their declarations in
// scoring/declarations/, so that "cleanprod demo" runs in any folder. The
// indicator standard, code policy and solution library are built in by
// package scoring (scoring.DefaultStandard and the others).
package cleanprod

import (
	"embed"
	"io/fs"
	"path"
)

//go:embed gateway-config/*.yaml scoring/declarations/*.yaml
var example embed.FS

// ExampleFleet returns the example fleet's registry files
// (gateway-config/*.yaml) keyed by a name such as
// "(embedded) gateway-config/cq-lj-yuntai-auto.yaml", for registry.Parse.
func ExampleFleet() map[string][]byte { return exampleFiles("gateway-config") }

// ExampleDeclarations returns the example fleet's declarations
// (scoring/declarations/*.yaml) keyed like ExampleFleet's files, for
// scoring.ParseDeclarationFiles.
func ExampleDeclarations() map[string][]byte { return exampleFiles("scoring/declarations") }

func exampleFiles(dir string) map[string][]byte {
	names, err := fs.Glob(example, dir+"/*.yaml")
	if err != nil {
		panic(err) // the pattern is constant and valid
	}
	files := make(map[string][]byte, len(names))
	for _, n := range names {
		data, err := example.ReadFile(n)
		if err != nil {
			panic(err) // embedded: cannot fail
		}
		files["(embedded) "+path.Clean(n)] = data
	}
	return files
}
