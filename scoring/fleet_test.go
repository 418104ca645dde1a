package scoring

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/registry"
)

// TestShippedFleet builds the engine over the shipped gateway registry and
// the shipped declarations: every enterprise is one the standard grades,
// and every declaration fits the standard and the registry.
func TestShippedFleet(t *testing.T) {
	const dir = "../gateway-config"
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("no shipped gateway registry: %v", err)
	}
	fx := newFixture(t)
	reg, err := registry.Load(dir)
	if err != nil {
		t.Fatalf("load %s: %v", dir, err)
	}
	eng, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: reg, Solutions: fx.lib,
		Declarations: DeclarationFiles{Dir: "declarations", Standard: fx.std}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(eng.order), len(reg.Enterprises); got != want {
		t.Errorf("enterprises scored: got %d, want all %d (industries %v)", got, want, fx.std.Industries)
	}
	eng.loadDeclarations(context.Background())
	for _, ent := range reg.Enterprises {
		es, ok := eng.ents[ent.ID]
		if !ok {
			continue
		}
		if len(es.decls) == 0 {
			t.Errorf("%s: got no declarations, want the shipped ones", ent.ID)
		}
	}
	eng.step(context.Background(), time.Now())
	if n := len(eng.Snapshot().Results()); n != len(eng.order) {
		t.Errorf("results: got %d, want %d", n, len(eng.order))
	}
}
