package ingest

import (
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/sim"
	"github.com/cleanprod/cleanprod/store"
)

// A register's rollover is the largest value it shows; one step later it
// reads 0. So a wrap counts up to the rollover, the step to 0, and the
// new register: rollover 99999 from 99980 to 30 is 19 + 1 + 30 = 50.

// rolloverPlant is a registry of one gateway whose meters are the given
// flow-style YAML mappings.
func rolloverPlant(t *testing.T, meters ...string) *registry.Registry {
	t.Helper()
	var b strings.Builder
	b.WriteString("enterprise: {id: ent-r, name: Rollover Plant}\ngateways:\n  - id: gw-1\n    meters:\n")
	for _, m := range meters {
		fmt.Fprintf(&b, "      - %s\n", m)
	}
	reg, err := registry.Parse(map[string][]byte{"plant.yaml": []byte(b.String())})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// counterRun feeds one meter's raw registers (as the gateway writes them),
// 15 minutes apart, each in its own message, and returns what was written
// for each and the outcomes.
func counterRun(t *testing.T, reg *registry.Registry, enterprise, gateway, meter string, values ...string) ([]store.Reading, Outcome) {
	t.Helper()
	n := NewNormaliser(reg, testConfig)
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	t0 := now.Add(-time.Duration(len(values)) * 15 * time.Minute)
	topic := TelemetryTopic(enterprise, gateway)
	var written []store.Reading
	var total Outcome
	for i, v := range values {
		ts := t0.Add(time.Duration(i) * 15 * time.Minute).Format(time.RFC3339)
		p := fmt.Sprintf(`{"gateway":%q,"seq":%d,"readings":[{"meter":%q,"ts":%q,"value":%s}]}`, gateway, i+1, meter, ts, v)
		var write, observe []store.Reading
		out, derr := n.Process(topic, []byte(p), false, now, &write, &observe)
		if derr != nil {
			t.Fatalf("reading %s: %v", v, derr)
		}
		if len(out.Rejects) > 0 || len(write) != 1 {
			t.Fatalf("reading %s: rejects %+v, %d written; want it written", v, out.Rejects, len(write))
		}
		written = append(written, write[0])
		total.Rollovers += out.Rollovers
		total.Resets += out.Resets
	}
	return written, total
}

// within reports whether got is want to within 1e-9 relative.
func within(got, want float64) bool {
	return math.Abs(got-want) <= 1e-9*math.Max(math.Abs(want), 1e-300)
}

func TestRolloverWrap(t *testing.T) {
	tests := []struct {
		name     string
		meter    string // flow mapping of meter M
		from, to string // registers as the gateway writes them
		want     float64
	}{
		{"five digits", "{id: M, quantity: electricity, unit: kWh, kind: counter, rollover: 99999}", "99980", "30", 50},
		{"from the largest value", "{id: M, quantity: electricity, unit: kWh, kind: counter, rollover: 99999}", "99999", "0", 1},
		{"a tenth", "{id: M, quantity: electricity, unit: kWh, kind: counter, rollover: 999999.9}", "999999.8", "0.3", 0.5},
		{"a tenth, far from the top", "{id: M, quantity: electricity, unit: kWh, kind: counter, rollover: 999999.9}", "999000.1", "0.3", 999.8 + 0.1 + 0.3},
		{"MWh to kWh", "{id: M, quantity: electricity, unit: MWh, kind: counter, rollover: 99999.999}", "99999.990", "0.005", (0.009 + 0.001 + 0.005) * 1000},
		{"scaled counts", "{id: M, quantity: ecoat_area, unit: m2, kind: counter, scale: 95, rollover: 9999}", "9998", "2", (1 + 1 + 2) * 95},
		{"16-bit register", "{id: M, quantity: vehicles, unit: vehicle, kind: counter, rollover: 0xFFFF}", "65530", "5", 5 + 1 + 5},
		{"pulses of half a unit", "{id: M, quantity: fresh_water, unit: m3, kind: counter, rollover: 32767.5, resolution: 0.5}", "32767", "0.5", 0.5 + 0.5 + 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := rolloverPlant(t, tt.meter)
			w, out := counterRun(t, reg, "ent-r", "gw-1", "M", tt.from, tt.to)
			if got := w[1].Delta; !within(got, tt.want) {
				t.Errorf("%s -> %s: got delta %.12g, want %.12g", tt.from, tt.to, got, tt.want)
			}
			if out.Rollovers != 1 || out.Resets != 0 {
				t.Errorf("got %d rollovers and %d resets, want one rollover", out.Rollovers, out.Resets)
			}
		})
	}
}

// Several wraps in a row each count the step to 0: the deltas add up to
// what the register counted, to the step.
func TestRolloverSeveralWraps(t *testing.T) {
	reg := rolloverPlant(t, "{id: M, quantity: fresh_water, unit: m3, kind: counter, rollover: 999.9}")
	const turn = 10000 // tenths of m3 one turn counts: 0.0 ... 999.9
	counted := []int64{4321, 4999, 4999, 10, 4444, 4000, 4999, 1, 3456, 4000}
	reg10, wraps := int64(9990), 0 // 999.0
	values := []string{"999.0"}
	for _, c := range counted {
		if reg10+c >= turn {
			wraps++
		}
		reg10 = (reg10 + c) % turn
		values = append(values, strconv.FormatFloat(float64(reg10)/10, 'f', 1, 64))
	}
	if wraps < 4 {
		t.Fatalf("the registers %v wrap %d times: want several", values, wraps)
	}
	w, out := counterRun(t, reg, "ent-r", "gw-1", "M", values...)
	var sum, want float64
	for i, c := range counted {
		if got, want := w[i+1].Delta, float64(c)/10; !within(got, want) {
			t.Errorf("%s -> %s: got delta %.12g, want %.12g", values[i], values[i+1], got, want)
		}
		sum += w[i+1].Delta
		want += float64(c) / 10
	}
	if !within(sum, want) {
		t.Errorf("deltas add up to %.12g, want %.12g", sum, want)
	}
	if out.Rollovers != wraps {
		t.Errorf("got %d rollovers, want %d (registers %v)", out.Rollovers, wraps, values)
	}
}

// A late reading on either side of a wrap splits its interval: the
// reading after it is rewritten, and the amounts told to the scorer still
// add up to the wrap's 50.
func TestRolloverLateReading(t *testing.T) {
	reg := rolloverPlant(t, "{id: M, quantity: electricity, unit: kWh, kind: counter, rollover: 99999}")
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	t0 := now.Add(-time.Hour)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	topic := TelemetryTopic("ent-r", "gw-1")
	for _, tt := range []struct {
		name       string
		late       float64
		lateDelta  float64 // of the late reading
		afterDelta float64 // of the reading after it, rewritten
	}{
		{"before the wrap", 99998, 8, 1 + 1 + 40},
		{"after the wrap", 5, 9 + 1 + 5, 35},
		{"at the largest value", 99999, 9, 1 + 40},
		{"at zero", 0, 9 + 1, 40},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := NewNormaliser(reg, testConfig)
			var write, observe []store.Reading
			for i, r := range []struct {
				min int
				v   float64
			}{{0, 99990}, {30, 40}, {15, tt.late}} {
				p := fmt.Sprintf(`{"gateway":"gw-1","seq":%d,"readings":[%s]}`, i+1, reading("M", at(r.min), r.v))
				out, derr := n.Process(topic, []byte(p), false, now, &write, &observe)
				if derr != nil || len(out.Rejects) > 0 {
					t.Fatalf("reading %g: %v %+v", r.v, derr, out.Rejects)
				}
			}
			deltas := map[time.Time]float64{}
			for _, w := range write {
				deltas[w.Time] = w.Delta // a rewrite replaces the key
			}
			if got := deltas[at(30)]; got != tt.afterDelta {
				t.Errorf("reading after the late one: got delta %g, want %g", got, tt.afterDelta)
			}
			if got := deltas[at(15)]; got != tt.lateDelta {
				t.Errorf("late reading: got delta %g, want %g", got, tt.lateDelta)
			}
			var observed float64
			for _, o := range observe {
				observed += o.Delta
			}
			if observed != 50 {
				t.Errorf("the scorer was told %g in all, want 50", observed)
			}
		})
	}
}

// shippedRegistry is one set of gateway-config files that cleanprod ships.
type shippedRegistry struct {
	name  string
	files map[string][]byte
}

// shippedRegistries returns every gateway-config cleanprod ships: the
// folder, its copy in the Kubernetes ConfigMap, and synthetic fleets the
// simulator generates for load tests.
// readYAMLFiles returns the .yaml files of dir by path.
func readYAMLFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	names, err := filepath.Glob(dir + "/*.yaml")
	if err != nil || len(names) == 0 {
		t.Fatalf("no %s files: %v", dir, err)
	}
	files := map[string][]byte{}
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = data
	}
	return files
}

func shippedRegistries(t *testing.T) []shippedRegistry {
	t.Helper()
	out := []shippedRegistry{
		{"gateway-config", readYAMLFiles(t, "../gateway-config")},
		// The Kubernetes ConfigMap is generated from these copies.
		{"deploy/kubernetes/config", readYAMLFiles(t, "../deploy/kubernetes/config/cleanprod-gateway-config")},
	}
	for _, seed := range []int64{1, 2} {
		files, err := sim.SyntheticFleet(12, seed)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, shippedRegistry{fmt.Sprintf("sim.SyntheticFleet(12, %d)", seed), files})
	}
	return out
}

// declaredRollover is a counter's rollover as its file writes it.
type declaredRollover struct {
	file, enterprise, gateway, meter string
	unit, quantity                   string
	scale                            float64
	rollover                         string  // as written
	resolution                       float64 // given, or one unit of the rollover's last decimal
	decimals                         int     // to write registers with
}

// declaredRollovers reads the meters with a rollover from gateway-config
// files with a schema of its own, not the registry's: what the file says.
func declaredRollovers(t *testing.T, files map[string][]byte) []declaredRollover {
	t.Helper()
	plain := regexp.MustCompile(`^[0-9]+(\.([0-9]+))?$`)
	var out []declaredRollover
	for _, name := range slices.Sorted(maps.Keys(files)) {
		var f struct {
			Enterprise struct{ ID string }
			Gateways   []struct {
				ID     string
				Meters []map[string]yaml.Node
			}
		}
		if err := yaml.Unmarshal(files[name], &f); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, g := range f.Gateways {
			for _, m := range g.Meters {
				r, ok := m["rollover"]
				if !ok {
					continue
				}
				d := declaredRollover{file: name, enterprise: f.Enterprise.ID, gateway: g.ID,
					meter: m["id"].Value, unit: m["unit"].Value, quantity: m["quantity"].Value, scale: 1, rollover: r.Value}
				if s, ok := m["scale"]; ok {
					d.scale, _ = strconv.ParseFloat(s.Value, 64)
				}
				match := plain.FindStringSubmatch(r.Value)
				if match == nil {
					t.Fatalf("%s: meter %s: rollover %q: this test reads plain decimals only", name, d.meter, r.Value)
				}
				d.decimals = len(match[2])
				d.resolution = math.Pow10(-d.decimals)
				if res, ok := m["resolution"]; ok {
					d.resolution, _ = strconv.ParseFloat(res.Value, 64)
					if match := plain.FindStringSubmatch(res.Value); match != nil {
						d.decimals = max(d.decimals, len(match[2]))
					}
				}
				out = append(out, d)
			}
		}
	}
	return out
}

// TestRolloverShippedExamples steps every counter that a shipped
// gateway-config declares a rollover for across its wrap, from k steps
// below the largest value to m steps above 0, and checks that ingest
// counts k+1+m steps, converted to the canonical unit.
func TestRolloverShippedExamples(t *testing.T) {
	for _, sr := range shippedRegistries(t) {
		t.Run(sr.name, func(t *testing.T) {
			reg, err := registry.Parse(sr.files)
			if err != nil {
				t.Fatal(err)
			}
			declared := declaredRollovers(t, sr.files)
			if len(declared) < 3 {
				t.Fatalf("%d meters with a rollover: want several", len(declared))
			}
			for _, d := range declared {
				q, ok := registry.LookupQuantity(d.quantity)
				if !ok {
					t.Fatalf("%s: meter %s: unknown quantity %s", d.file, d.meter, d.quantity)
				}
				unitFactor, ok := q.Factor(d.unit)
				if !ok {
					t.Fatalf("%s: meter %s: unit %s", d.file, d.meter, d.unit)
				}
				largest, _ := strconv.ParseFloat(d.rollover, 64)
				top := int64(math.Round(largest / d.resolution)) // the largest value, in steps
				for _, km := range [][2]int64{{0, 0}, {1, 3}, {20, 7}} {
					k, m := km[0], km[1]
					from := strconv.FormatFloat(float64(top-k)*d.resolution, 'f', d.decimals, 64)
					to := strconv.FormatFloat(float64(m)*d.resolution, 'f', d.decimals, 64)
					want := float64(k+1+m) * d.resolution * d.scale * unitFactor
					w, out := counterRun(t, reg, d.enterprise, d.gateway, d.meter, from, to)
					if got := w[1].Delta; !within(got, want) || out.Rollovers != 1 {
						t.Errorf("%s: %s (rollover %s %s): %s -> %s: got %.12g %s with %d rollovers, want %.12g (%d steps) and one rollover",
							d.file, d.meter, d.rollover, d.unit, from, to, got, q.Unit, out.Rollovers, want, k+1+m)
					}
				}
			}
		})
	}
}
