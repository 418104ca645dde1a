package registry

import (
	"os"
	"strings"
	"testing"
)

func TestOnlyKeepsOneShardsEnterprises(t *testing.T) {
	data, err := os.ReadFile("testdata/good/plant.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := strings.Replace(string(data), "id: plant-a", "id: plant-b", 1)
	b = strings.Replace(b, "uscc: 91130200699229617X", "uscc: \"\"", 1)
	b = strings.Replace(b, "discharge_permit: 91130200699229617X001P", "", 1)
	reg, err := Parse(map[string][]byte{"a.yaml": data, "b.yaml": []byte(b)})
	if err != nil {
		t.Fatal(err)
	}
	v := reg.Only(func(id string) bool { return id == "plant-b" })
	if len(v.Enterprises) != 1 || v.Enterprises[0].ID != "plant-b" {
		t.Fatalf("view holds %d enterprises, want plant-b alone", len(v.Enterprises))
	}
	if _, ok := v.Enterprise("plant-a"); ok {
		t.Error("view has plant-a")
	}
	if _, ok := v.Gateway("plant-a", "gw-1"); ok {
		t.Error("view has plant-a's gateway")
	}
	if _, ok := v.Meter("plant-a", "E-1"); ok {
		t.Error("view has plant-a's meter")
	}
	if _, ok := v.Meter("plant-b", "E-1"); !ok {
		t.Error("view lacks plant-b's meter")
	}
	if got, want := v.MeterCount(), reg.MeterCount()/2; got != want {
		t.Errorf("view has %d meters, want %d", got, want)
	}
	// Meters named anywhere: a reading of another shard's meter is spoofed.
	if got := len(v.MetersNamed("E-1")); got != 2 {
		t.Errorf("MetersNamed(E-1) = %d meters, want 2 (every enterprise)", got)
	}
	if len(reg.Enterprises) != 2 {
		t.Error("Only changed the full registry")
	}
}
