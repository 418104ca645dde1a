package scoring

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The loaders of the scoring data files are fuzzed for one invariant:
// an error every line of which names the file, or a value that works
// (checked below); never a panic. Without -fuzz each target runs its seeds,
// the shipped files and the testdata fixtures.

func addFileSeeds(f *testing.F, patterns ...string) {
	f.Helper()
	n := 0
	for _, pattern := range patterns {
		files, _ := filepath.Glob(pattern)
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
			n++
		}
	}
	if n == 0 {
		f.Fatalf("no seed files in %v", patterns)
	}
}

// checkErrorNamesFile fails t unless every line of err starts with name.
func checkErrorNamesFile(t *testing.T, err error, name string) {
	t.Helper()
	for _, line := range strings.Split(err.Error(), "\n") {
		if !strings.HasPrefix(line, name) {
			t.Fatalf("error line %q does not name %s (in %q)", line, name, err)
		}
	}
}

func FuzzParseStandard(f *testing.F) {
	addFileSeeds(f, "standards/*.yaml", "testdata/standards/*.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		std, err := ParseStandard("std.yaml", data)
		if err != nil {
			checkErrorNamesFile(t, err, "std.yaml")
			return
		}
		checkStandard(t, std)
	})
}

// checkStandard checks that a standard ParseStandard accepted can be used:
// windows of whole buckets, continuous scores in 0..100 whatever the value,
// and a grade of 0..100 with weights summing to 1 for any marks.
func checkStandard(t *testing.T, std *Standard) {
	t.Helper()
	if len(std.Indicators) == 0 {
		t.Fatal("a standard without indicators")
	}
	for _, w := range std.Windows {
		if w.Bucket <= 0 || w.Length < w.Bucket || w.Buckets() < 1 {
			t.Fatalf("window %s: length %s, bucket %s", w.Name, w.Length, w.Bucket)
		}
	}
	marks := make([]Mark, len(std.Indicators))
	for i, ind := range std.Indicators {
		if ind.Index != i {
			t.Fatalf("indicator %s has index %d at %d", ind.ID, ind.Index, i)
		}
		if got, ok := std.Indicator(ind.ID); !ok || got != ind {
			t.Fatalf("indicator %s is not found by id", ind.ID)
		}
		if w := ind.EffectiveWeight(); !(w >= 0) || math.IsInf(w, 0) {
			t.Fatalf("indicator %s: effective weight %g", ind.ID, w)
		}
		marks[i] = Mark{Status: NotApplicable}
		if ind.Kind != Quantitative {
			marks[i] = Mark{Status: Graded, Level: Level(1 + i%4), Score: LevelScore(Level(1 + i%4))}
			continue
		}
		b := ind.Benchmarks
		for _, v := range []float64{b[0], b[1], b[2], (b[0] + b[1]) / 2, (b[1] + b[2]) / 2, 0, -1, 2 * b[2], 1e300, -1e300} {
			s := ind.IndicatorScore(v)
			if !(s >= 0 && s <= 100) {
				t.Fatalf("indicator %s (%v, benchmarks %v): score of %g is %g", ind.ID, ind.Direction, b, v, s)
			}
			marks[i] = Mark{Status: Graded, Level: ind.LevelOf(v), Score: s}
		}
		if i%3 == 1 {
			marks[i] = Mark{Status: Insufficient}
		}
	}
	for _, policy := range []InsufficientPolicy{InsufficientFails, InsufficientExcluded} {
		g := std.Grade(marks, DataPolicy{policy, policy})
		if !(g.Score >= 0 && g.Score <= 100) {
			t.Fatalf("grade score %g", g.Score)
		}
		sum := 0.0
		for _, w := range g.Weights {
			if !(w >= 0 && w <= 1+1e-9) {
				t.Fatalf("effective weight %g", w)
			}
			sum += w
		}
		for _, y := range g.Y {
			if !(y >= 0 && y <= 100+1e-6) {
				t.Fatalf("Y %v", g.Y)
			}
		}
		if g.Level != NoLevel && math.Abs(sum-1) > 1e-6 {
			t.Fatalf("level %v with weights summing to %g", g.Level, sum)
		}
	}
}

func loadShippedStandard(f *testing.F) *Standard {
	f.Helper()
	std, err := LoadStandard("standards/auto-manufacturing.yaml")
	if err != nil {
		f.Fatal(err)
	}
	return std
}

func FuzzParsePolicy(f *testing.F) {
	addFileSeeds(f, "policy/*.yaml", "testdata/policy/*.yaml")
	std := loadShippedStandard(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy("policy.yaml", data, std)
		if err != nil {
			checkErrorNamesFile(t, err, "policy.yaml")
			return
		}
		if p == nil {
			t.Fatal("no error and no policy")
		}
	})
}

func FuzzParseDeclarations(f *testing.F) {
	addFileSeeds(f, "declarations/*.yaml", "testdata/declarations/*/*.yaml")
	std := loadShippedStandard(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		ds, err := ParseDeclarations("decl.yaml", data, std)
		if err != nil {
			checkErrorNamesFile(t, err, "decl.yaml")
			return
		}
		for _, d := range ds {
			if err := d.Check(std); err != nil {
				t.Fatalf("accepted a declaration that fails Check: %v", err)
			}
			if !d.ValidTo.IsZero() && !d.ValidTo.After(d.ValidFrom) {
				t.Fatalf("declaration of %s valid from %v to %v", d.Indicator, d.ValidFrom, d.ValidTo)
			}
			if d.Value != nil && (math.IsNaN(*d.Value) || math.IsInf(*d.Value, 0)) {
				t.Fatalf("declaration of %s with value %g", d.Indicator, *d.Value)
			}
		}
	})
}
