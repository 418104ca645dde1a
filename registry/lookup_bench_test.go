package registry_test

import (
	"testing"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/sim"
)

// BenchmarkMeterLookup looks up every meter of a 2,000-enterprise fleet,
// whose plants share meter ids (E-MAIN-01 in every one): a look-up must
// not grow with the fleet.
func BenchmarkMeterLookup(b *testing.B) {
	files, err := sim.SyntheticFleetMeters(2000, 50, 1)
	if err != nil {
		b.Fatal(err)
	}
	reg, err := registry.Parse(files)
	if err != nil {
		b.Fatal(err)
	}
	type key struct{ ent, meter string }
	var keys []key
	for _, e := range reg.Enterprises {
		for _, m := range e.Meters {
			keys = append(keys, key{e.ID, m.ID})
		}
	}
	b.ResetTimer()
	for i := range b.N {
		k := keys[i%len(keys)]
		if _, ok := reg.Meter(k.ent, k.meter); !ok {
			b.Fatalf("meter %s of %s not found", k.meter, k.ent)
		}
	}
}
