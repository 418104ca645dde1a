package scoring

import (
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"
)

// TestResultWireRoundTrip encodes a result with every kind of field,
// non-finite numbers and a matched solution, and reads it back.
func TestResultWireRoundTrip(t *testing.T) {
	fx := newFixture(t)
	at := time.Date(2026, 6, 1, 2, 0, 0, 0, time.UTC)
	sol := fx.lib.Solutions[0]
	a := Assessment{Window: "live", From: at.Add(-24 * time.Hour), To: at, Y: [3]float64{70, 86.5, 100}, Level: LevelII, Score: 81.25,
		Completeness: 0.75, Restrictive: LevelIII, Exceedance: []string{"cod_compliance"},
		Indicators: []IndicatorResult{
			{ID: "energy_per_vehicle", Unit: "kgce/vehicle", Status: Graded, Value: 140.5, valued: true, Level: LevelII, Score: 72, Weight: 0.1, Coverage: 0.9, Source: "metered", Notes: []string{"grid factor fallback"}},
			{ID: "voc_per_m2", Status: Insufficient, Value: math.NaN(), Coverage: 0.1, Short: []string{"VOC-01"}, Reason: "short"},
			{ID: "x", Status: NotApplicable, Value: math.Inf(1)},
		},
		Totals: []Total{{ID: "vehicles", Quantity: "vehicles", Unit: "vehicle", Value: 1200, Coverage: 1}}}
	v, bm := 140.5, 118.0
	r := &Result{Enterprise: "e1", Time: at, DataThrough: at.Add(-time.Minute), DataTime: at, CatchingUp: true, Assessments: []Assessment{a},
		Code: "yellow", CodeSince: at.Add(-48 * time.Hour), CodeReasons: []Reason{{Kind: "level_below", Indicator: "energy_per_vehicle", Level: LevelII, Value: &v, Benchmark: &bm, Unit: "kgce/vehicle", TextZH: "二级", TextEN: "II"}},
		PendingCode: "green", PendingSince: at.Add(-time.Hour), PendingDue: at.Add(time.Hour), PendingReasons: []Reason{{Kind: "always", TextZH: "z", TextEN: "e"}},
		LastAudit: at.Add(-400 * 24 * time.Hour), NextAuditDue: at.Add(300 * 24 * time.Hour), StaleMeters: []string{"E-01"},
		Lagging: []Lagging{{Indicator: "energy_per_vehicle", Level: LevelII, Target: LevelI, Value: 140.5, Needed: 118, Gap: 2.5,
			Solutions: []Match{{Solution: sol, Projected: 120, ProjectedLevel: LevelII, Benefit: 1.5}}}}}
	// The fixture sets every field of every type the wire carries, so that
	// a field added to Result (or what it holds) and not to its wire form
	// fails the round trip below instead of vanishing between shards.
	r.CodeHeld, r.Assessments[0].RestrictiveMissing, r.Assessments[0].Capped = true, true, "restrictive indicator at level III"
	r.Assessments[0].Indicators[0].Evidence = "audit 2026-05"
	r.Lagging[0].Restrictive, r.Lagging[0].Solutions[0].ReachesTarget = true, true
	if unset := unsetFields(reflect.ValueOf(r)); len(unset) > 0 {
		t.Fatalf("the fixture leaves %v unset: set them, and carry them in the wire form", unset)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got Result
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	if got.Lagging[0].Solutions[0].Solution.ID != sol.ID {
		t.Fatalf("solution: got %q, want %q", got.Lagging[0].Solutions[0].Solution.ID, sol.ID)
	}
	snap := (&Snapshot{Standard: fx.std, Solutions: fx.lib}).Merge([]*Result{&got})
	back, _ := snap.Result("e1")
	if back.Lagging[0].Solutions[0].Solution != sol {
		t.Errorf("Merge did not find solution %s in the library", sol.ID)
	}
	// NaN is never equal to itself: compare the encodings, then the rest.
	b2, err := json.Marshal(back)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(b2) {
		t.Errorf("round trip changed the result:\n got %s\nwant %s", b2, b)
	}
	if !math.IsNaN(back.Assessments[0].Indicators[1].Value) || !math.IsInf(back.Assessments[0].Indicators[2].Value, 1) {
		t.Errorf("non-finite values: got %v", back.Assessments[0].Indicators)
	}
	if !back.Assessments[0].Indicators[0].HasValue() || back.Assessments[0].Indicators[1].HasValue() {
		t.Errorf("HasValue not kept")
	}
	r.Assessments[0].Indicators[1].Value, back.Assessments[0].Indicators[1].Value = 0, 0
	r.Assessments[0].Indicators[2].Value, back.Assessments[0].Indicators[2].Value = 0, 0
	if !reflect.DeepEqual(r, back) {
		t.Errorf("round trip: got %+v, want %+v", back, r)
	}
	for _, bad := range []string{`{}`, `{"enterprise":"e","assessments":[{"score":"many"}]}`, `[1]`} {
		if err := json.Unmarshal([]byte(bad), new(Result)); err == nil {
			t.Errorf("decode %s: accepted", bad)
		}
	}
}

// TestMergedSnapshotRanksAsOne splits a snapshot into three shards,
// sends two of them through the wire form and merges: every ranking is
// the one snapshot of all enterprises gives.
func TestMergedSnapshotRanksAsOne(t *testing.T) {
	std := mustStandard(t, "standards/auto-manufacturing.yaml")
	all := snapshotOf(std, []rankRow{
		{"a", LevelII, 90, Graded, 140, ""},
		{"b", LevelI, 80, Graded, 118, ""},
		{"c", LevelII, 95, Graded, 140, ""},
		{"d", LevelII, 90, Graded, 150, ""},
		{"e", NoLevel, 0, Insufficient, 0, "vehicles has data in 10% of the window, needs 80%"},
		{"f", BelowIII, 99, NotApplicable, 0, ""},
		{"g", LevelIII, 60, Graded, 170, ""},
	})
	shardOf := map[string]int{"a": 0, "b": 1, "c": 2, "d": 0, "e": 1, "f": 2, "g": 1}
	part := func(i int) *Snapshot { return all.Only(func(id string) bool { return shardOf[id] == i }) }
	wire := func(s *Snapshot) []*Result {
		b, err := json.Marshal(s.Results())
		if err != nil {
			t.Fatal(err)
		}
		var rs []*Result
		if err := json.Unmarshal(b, &rs); err != nil {
			t.Fatal(err)
		}
		return rs
	}
	merged := part(0).Merge(wire(part(1)), wire(part(2)))
	if got, want := len(merged.Results()), len(all.Results()); got != want {
		t.Fatalf("merged results: got %d, want %d", got, want)
	}
	if got, want := merged.Ranking("live"), all.Ranking("live"); !reflect.DeepEqual(got, want) {
		t.Errorf("overall ranking: got %+v, want %+v", got, want)
	}
	got, _ := merged.IndicatorRanking("live", "energy_per_vehicle")
	want, _ := all.IndicatorRanking("live", "energy_per_vehicle")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("indicator ranking: got %+v, want %+v", got, want)
	}
	if n := len(part(0).Results()); n != 2 {
		t.Errorf("shard 0: got %d results, want 2 (Merge must not change its base)", n)
	}
}

// unsetFields lists the fields (Type.Field) of this package's structs in v
// that are zero in every value of that type v holds. A *Solution is a leaf:
// the wire carries only its ID.
func unsetFields(v reflect.Value) []string {
	set := map[string]bool{}
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() && v.Type() != reflect.TypeFor[*Solution]() {
				walk(v.Elem())
			}
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Struct:
			tp := v.Type()
			if tp.PkgPath() != reflect.TypeFor[Result]().PkgPath() {
				return
			}
			for i := range tp.NumField() {
				key := tp.Name() + "." + tp.Field(i).Name
				if _, ok := set[key]; !ok {
					set[key] = false
				}
				if !v.Field(i).IsZero() {
					set[key] = true
					walk(v.Field(i))
				}
			}
		}
	}
	walk(v)
	var out []string
	for k, ok := range set {
		if !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
