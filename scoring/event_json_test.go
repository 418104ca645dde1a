package scoring

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestEventJSON(t *testing.T) {
	e := Event{Time: time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC), Enterprise: "e1", Kind: EventLevelDrop,
		Indicator: "voc_per_m2", OldLevel: LevelII, NewLevel: LevelIII, OldValue: 30, NewValue: 40, Reason: "worse"}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`"kind":"level_drop"`, `"old_level":"II"`, `"new_level":"III"`, `"indicator":"voc_per_m2"`} {
		if !strings.Contains(string(b), w) {
			t.Errorf("got %s, want it to contain %s", b, w)
		}
	}
	if strings.Contains(string(b), "meter") || strings.Contains(string(b), "old_code") {
		t.Errorf("empty fields should be left out: %s", b)
	}
}
