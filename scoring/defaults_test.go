package scoring

import "testing"

// The embedded defaults are the shipped files and load cleanly.
func TestDefaults(t *testing.T) {
	std, err := DefaultStandard()
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := LoadStandard("standards/auto-manufacturing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(std.Indicators) == 0 || len(std.Indicators) != len(fromFile.Indicators) {
		t.Errorf("embedded standard has %d indicators, the file %d", len(std.Indicators), len(fromFile.Indicators))
	}
	if _, err := DefaultPolicy(std); err != nil {
		t.Error(err)
	}
	if _, err := DefaultLibrary(std); err != nil {
		t.Error(err)
	}
}
