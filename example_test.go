package cleanprod

import (
	"testing"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/scoring"
)

// TestExample loads the built-in example fleet and its declarations as
// the demo does: they are the folders' files and valid.
func TestExample(t *testing.T) {
	fleet, err := registry.Parse(ExampleFleet())
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := registry.Load("gateway-config")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(fleet.Enterprises), len(onDisk.Enterprises); got != want || got == 0 {
		t.Errorf("built-in fleet has %d enterprises, gateway-config/ %d", got, want)
	}
	if got, want := fleet.MeterCount(), onDisk.MeterCount(); got != want {
		t.Errorf("built-in fleet has %d meters, gateway-config/ %d", got, want)
	}
	std, err := scoring.DefaultStandard()
	if err != nil {
		t.Fatal(err)
	}
	ds, err := scoring.ParseDeclarationFiles(ExampleDeclarations(), std)
	if err != nil {
		t.Fatal(err)
	}
	want, err := scoring.LoadDeclarations("scoring/declarations", std)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != len(want) || len(ds) == 0 {
		t.Errorf("built-in declarations: %d, scoring/declarations/: %d", len(ds), len(want))
	}
	for _, d := range ds {
		if _, ok := fleet.Enterprise(d.Enterprise); !ok {
			t.Errorf("declaration of %s, not in the example fleet", d.Enterprise)
		}
	}
}
