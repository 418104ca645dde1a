package store

import (
	"context"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBoltPointsRoundTrip(t *testing.T) {
	ctx := context.Background()
	b := openTestBolt(t)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	fields := map[string]any{
		"value":    87.25,
		"negzero":  math.Copysign(0, -1),
		"count":    int64(-3),
		"big":      int64(math.MaxInt64),
		"small":    int64(math.MinInt64),
		"level":    "Level II",
		"empty":    "",
		"unicode":  "综合能耗 kgce/辆",
		"ok":       true,
		"not":      false,
		"float_0":  0.0,
		"int_zero": int64(0),
	}
	ind := func(ent, name string, min int, v float64) Point {
		return Point{
			Measurement: "indicator",
			Tags:        map[string]string{"enterprise": ent, "indicator": name},
			Fields:      map[string]any{"value": v},
			Time:        at(min),
		}
	}
	pts := []Point{
		{Measurement: "score", Tags: map[string]string{"enterprise": "e1"}, Fields: fields, Time: at(0)},
		ind("e1", "energy", 2, 1.5),
		ind("e1", "water", 1, 2.5),
		ind("e2", "energy", 0, 3.5),
		ind("e1", "energy", 0, 4.5),
		// One more tag: a different series, not a continuation of e1/energy.
		{Measurement: "indicator", Tags: map[string]string{"enterprise": "e1", "indicator": "energy", "workshop": "paint"}, Fields: map[string]any{"value": 5.5}, Time: at(1)},
		// No tags at all; an empty tag value counts as absent.
		{Measurement: "event", Fields: map[string]any{"kind": "code_change"}, Time: at(3)},
		{Measurement: "event", Tags: map[string]string{"enterprise": ""}, Fields: map[string]any{"kind": "overwritten"}, Time: at(3)},
		// Measurements that share a prefix with "indicator".
		{Measurement: "indicators", Fields: map[string]any{"value": 1.0}, Time: at(0)},
		{Measurement: "indicator_x", Fields: map[string]any{"value": 1.0}, Time: at(0)},
	}
	if err := b.WritePoints(ctx, pts); err != nil {
		t.Fatal(err)
	}
	// An int is stored as int64, as InfluxDB does.
	if err := b.WritePoints(ctx, []Point{{Measurement: "ints", Fields: map[string]any{"n": 7}, Time: at(0)}}); err != nil {
		t.Fatal(err)
	}
	// Same measurement, tags and time: replaces the point, fields and all.
	overwrite := ind("e1", "water", 1, 9.5)
	overwrite.Fields["note"] = "recomputed"
	if err := b.WritePoints(ctx, []Point{overwrite}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name        string
		measurement string
		tags        map[string]string
		from, to    time.Time
		want        []Point
	}{
		{"types survive", "score", nil, at(0), at(1), []Point{pts[0]}},
		{"all of a measurement, time order, then number of tags, then tags", "indicator", nil, at(0), at(10),
			[]Point{pts[4], pts[3], overwrite, pts[5], pts[1]}},
		{"filter one tag", "indicator", map[string]string{"enterprise": "e1"}, at(0), at(10),
			[]Point{pts[4], overwrite, pts[5], pts[1]}},
		{"filter two tags", "indicator", map[string]string{"enterprise": "e1", "indicator": "energy"}, at(0), at(10),
			[]Point{pts[4], pts[5], pts[1]}},
		{"filter empty value means tag absent", "indicator", map[string]string{"indicator": "energy", "workshop": ""}, at(0), at(10),
			[]Point{pts[4], pts[3], pts[1]}},
		{"filter unknown tag", "indicator", map[string]string{"plant": "x"}, at(0), at(10), nil},
		{"half-open range", "indicator", nil, at(1), at(2), []Point{overwrite, pts[5]}},
		{"no tags", "event", nil, at(0), at(10),
			[]Point{{Measurement: "event", Fields: map[string]any{"kind": "overwritten"}, Time: at(3)}}},
		{"unknown measurement", "indic", nil, at(0), at(10), nil},
		{"int comes back as int64", "ints", nil, at(0), at(10),
			[]Point{{Measurement: "ints", Fields: map[string]any{"n": int64(7)}, Time: at(0)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := b.Points(ctx, tt.measurement, tt.tags, tt.from, tt.to)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, tt.want, samePoint) {
				t.Errorf("got\n\t%v\nwant\n\t%v", got, tt.want)
			}
		})
	}
}

// samePoint compares points; an empty tag value is the same as no tag.
func samePoint(a, b Point) bool {
	tags := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if v != "" {
				out[k] = v
			}
		}
		return out
	}
	if a.Measurement != b.Measurement || !a.Time.Equal(b.Time) || !reflect.DeepEqual(tags(a.Tags), tags(b.Tags)) || len(a.Fields) != len(b.Fields) {
		return false
	}
	for k, va := range a.Fields {
		vb, ok := b.Fields[k]
		if !ok || reflect.TypeOf(va) != reflect.TypeOf(vb) {
			return false
		}
		if fa, ok := va.(float64); ok {
			if math.Float64bits(fa) != math.Float64bits(vb.(float64)) {
				return false
			}
		} else if va != vb {
			return false
		}
	}
	return true
}

func TestBoltWritePointsRejects(t *testing.T) {
	good := Point{Measurement: "m", Tags: map[string]string{"k": "v"}, Fields: map[string]any{"f": 1.0}, Time: t0}
	tests := []struct {
		name string
		edit func(p *Point)
		want string
	}{
		{"empty measurement", func(p *Point) { p.Measurement = "" }, "empty measurement"},
		{"NUL in measurement", func(p *Point) { p.Measurement = "m\x00" }, "NUL"},
		{"empty tag key", func(p *Point) { p.Tags = map[string]string{"": "v"} }, "empty tag key"},
		{"NUL in tag value", func(p *Point) { p.Tags = map[string]string{"k": "\x00"} }, "NUL"},
		{"no fields", func(p *Point) { p.Fields = nil }, "no fields"},
		{"empty field name", func(p *Point) { p.Fields = map[string]any{"": 1.0} }, "empty field name"},
		{"uint field", func(p *Point) { p.Fields = map[string]any{"n": uint(1)} }, "type uint"},
		{"NaN field", func(p *Point) { p.Fields = map[string]any{"n": math.NaN()} }, "not finite"},
		{"infinite field", func(p *Point) { p.Fields = map[string]any{"n": math.Inf(-1)} }, "not finite"},
		{"nil field", func(p *Point) { p.Fields = map[string]any{"n": nil} }, "type <nil>"},
		{"zero time", func(p *Point) { p.Time = time.Time{} }, "outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := openTestBolt(t)
			bad := good
			tt.edit(&bad)
			err := b.WritePoints(context.Background(), []Point{good, bad})
			if !IsPermanent(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want a permanent write error containing %q", err, tt.want)
			}
			got, err := b.Points(context.Background(), "m", nil, time.Time{}, t0.Add(time.Hour))
			if err != nil || len(got) != 0 {
				t.Errorf("got %v, %v stored, want nothing: a refused batch stores nothing", got, err)
			}
		})
	}
}

func TestBoltCorruptPoint(t *testing.T) {
	good, _ := appendFields(nil, map[string]any{"f": 1.0, "s": "x"}, nil)
	key, _ := appendSeriesKey(nil, "m", map[string]string{"k": "v"}, nil)
	seriesLen := len(key)
	key = append(key, 0, 0, 0, 0, 0, 0, 0, 1)
	tests := []struct {
		name string
		k, v []byte
	}{
		{"empty value", key, []byte{}},
		{"unknown version", key, append([]byte{2}, good[1:]...)},
		{"truncated", key, good[:len(good)-1]},
		{"trailing bytes", key, append(slices.Clone(good), 1)},
		{"too many fields", key, []byte{1, 0xff, 0xff, 0xff, 0x0f, 1, 'f', 4, 1}},
		{"unknown field type", key, []byte{1, 1, 1, 'f', 9, 0}},
		{"bad bool", key, []byte{1, 1, 1, 'f', fieldBool, 2}},
		{"tags truncated", append(slices.Clone(key[:seriesLen-2]), 0, 0, 0, 0, 0, 0, 0, 1), good},
		{"key too short", []byte("m\x00\x01"), good},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := openTestBolt(t)
			putRaw(t, b, bucketPoints, tt.k, tt.v)
			_, err := b.Points(context.Background(), "m", nil, time.Time{}, t0)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

func FuzzDecodeFields(f *testing.F) {
	for _, fields := range []map[string]any{
		{"f": 1.0, "i": int64(-1), "s": "x", "b": true},
		{"only": false},
	} {
		v, _ := appendFields(nil, fields, nil)
		f.Add(v)
	}
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, v []byte) {
		fields, err := decodeFields(v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v, want ErrCorrupt", err)
			}
			return
		}
		again, err := decodeFields(first(appendFields(nil, fields, nil)))
		if err != nil {
			t.Fatalf("decoding the re-encoded fields: %v", err)
		}
		if !samePoint(Point{Fields: fields}, Point{Fields: again}) {
			t.Errorf("round trip changed %v into %v", fields, again)
		}
	})
}

// first returns the first of two results.
func first[T, U any](v T, _ U) T { return v }
