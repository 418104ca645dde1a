package scoring

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanprod/cleanprod/registry"
)

// registryWithout parses the scoring fixtures' registry without the named
// enterprises' files.
func registryWithout(t *testing.T, ids ...string) *registry.Registry {
	t.Helper()
	paths, err := filepath.Glob("testdata/registry/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, p := range paths {
		id := strings.TrimSuffix(filepath.Base(p), ".yaml")
		if slices.Contains(ids, id) {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[p] = b
	}
	reg, err := registry.Parse(files)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestReloadKeepsStateAndRefills reloads a running engine: an enterprise
// joins (its windows come from History), the standard is replaced (every
// window is refilled, nothing counted twice), a bad policy is refused
// with the old configuration kept, and an enterprise leaves (its metric
// series go). Codes keep their start across reloads.
func TestReloadKeepsStateAndRefills(t *testing.T) {
	fx := newFixture(t)
	now := time.Date(2026, 6, 1, 3, 0, 0, 0, time.UTC)
	hist := &memHistory{}
	promReg := prometheus.NewRegistry()
	eng, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: registryWithout(t, "lj-gamma"), Solutions: fx.lib,
		History: hist, Registerer: promReg, Now: func() time.Time { return now }, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	alpha, _ := fx.reg.Enterprise("lj-alpha")
	gamma, _ := fx.reg.Enterprise("lj-gamma")
	// 40 days of both plants in the store; alpha's also observed live.
	// gamma's were stored before (it was registered once already).
	for h := 40 * 24; h > 0; h-- {
		at := now.Add(-time.Duration(h) * time.Hour)
		a := hourly(alpha, at, goodRates)
		hist.add(a)
		hist.add(hourly(gamma, at, goodRates))
		eng.Observe(a)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	defer func() { cancel(); <-done }()

	before := waitResult(t, eng, "lj-alpha")
	if _, ok := eng.Snapshot().Result("lj-gamma"); ok {
		t.Fatal("lj-gamma scored before it was registered")
	}

	// gamma joins.
	if err := reloadAndRefill(ctx, t, eng, Update{Standard: fx.std, Policy: fx.pol, Registry: fx.reg, Solutions: fx.lib}); err != nil {
		t.Fatalf("reload adding lj-gamma: %v", err)
	}
	snap := eng.Snapshot()
	a, _ := snap.Result("lj-alpha")
	g, ok := snap.Result("lj-gamma")
	if !ok {
		t.Fatal("lj-gamma not scored after the reload that registered it")
	}
	sameGrades(t, "lj-alpha after reload", before, a)
	wantVehicles := vehiclesIn(eng, "lj-alpha") // 30 days of 50 an hour, less the hour at the edge
	if wantVehicles != 30*24*50-50 {
		t.Errorf("lj-alpha's window holds %v vehicles, want %v", wantVehicles, 30*24*50-50)
	}
	if got := vehiclesIn(eng, "lj-gamma"); got != wantVehicles {
		t.Errorf("lj-gamma's refilled window holds %v vehicles, want %v", got, wantVehicles)
	}
	sameGrades(t, "lj-gamma refilled from the store", before, g)
	if a.Code != before.Code || !a.CodeSince.Equal(before.CodeSince) {
		t.Errorf("lj-alpha code %s since %v after reload, want %s since %v kept", a.Code, a.CodeSince, before.Code, before.CodeSince)
	}

	// A new standard object (same file): every window is refilled from the
	// store, and the readings applied live are not counted twice.
	std2 := mustStandard(t, "standards/auto-manufacturing.yaml")
	pol2, err := LoadPolicy("policy/default.yaml", std2)
	if err != nil {
		t.Fatal(err)
	}
	if err := reloadAndRefill(ctx, t, eng, Update{Standard: std2, Policy: pol2, Registry: fx.reg}); err != nil {
		t.Fatalf("reload with a new standard: %v", err)
	}
	a, _ = eng.Snapshot().Result("lj-alpha")
	sameGrades(t, "lj-alpha after a new standard", before, a)
	if got := vehiclesIn(eng, "lj-alpha"); got != wantVehicles {
		t.Errorf("after a new standard lj-alpha's window holds %v vehicles, want %v", got, wantVehicles)
	}
	if eng.Snapshot().Standard != std2 {
		t.Error("snapshot still carries the old standard")
	}

	// A policy naming a window the standard lacks is refused; the engine
	// keeps what it had.
	bad := *pol2
	bad.Window = "fortnight"
	if err := reloadAndRefill(ctx, t, eng, Update{Standard: std2, Policy: &bad, Registry: registryWithout(t, "lj-alpha")}); err == nil {
		t.Fatal("reload with a policy naming a missing window: got nil error")
	}
	if _, ok := eng.Snapshot().Result("lj-alpha"); !ok || eng.Snapshot().Policy != pol2 {
		t.Fatal("a refused reload changed the engine")
	}

	// alpha leaves: no result, no metric series.
	if err := reloadAndRefill(ctx, t, eng, Update{Standard: std2, Policy: pol2, Registry: registryWithout(t, "lj-alpha")}); err != nil {
		t.Fatal(err)
	}
	if _, ok := eng.Snapshot().Result("lj-alpha"); ok {
		t.Error("lj-alpha still has a result after leaving the registry")
	}
	mfs, err := promReg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "enterprise" && l.GetValue() == "lj-alpha" {
					t.Errorf("%s still has a series for lj-alpha", mf.GetName())
				}
			}
		}
	}
}

// TestReloadRefillsWhileIngesting: a reload that adds an enterprise
// returns without waiting for its refill; the refill then runs while
// readings of the others are observed, and the new enterprise is graded
// only once its windows are whole.
func TestReloadRefillsWhileIngesting(t *testing.T) {
	fx := newFixture(t)
	now := time.Date(2026, 6, 1, 3, 0, 0, 0, time.UTC)
	hist := &memHistory{}
	eng, err := NewEngine(Config{Standard: fx.std, Policy: fx.pol, Registry: registryWithout(t, "lj-gamma"), Solutions: fx.lib,
		History: hist, Now: func() time.Time { return now }, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	alpha, _ := fx.reg.Enterprise("lj-alpha")
	gamma, _ := fx.reg.Enterprise("lj-gamma")
	for h := 10 * 24; h > 0; h-- {
		at := now.Add(-time.Duration(h) * time.Hour)
		hist.add(hourly(alpha, at, goodRates))
		hist.add(hourly(gamma, at, goodRates))
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-eng.Ready()

	gate := make(chan struct{})
	hist.mu.Lock()
	hist.fail = func(int) error { <-gate; return nil }
	hist.mu.Unlock()
	reloaded := make(chan error, 1)
	go func() {
		reloaded <- eng.Reload(ctx, Update{Standard: fx.std, Policy: fx.pol, Registry: fx.reg, Solutions: fx.lib})
	}()
	select {
	case err := <-reloaded:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		close(gate)
		t.Fatal("the reload waited for the refill of the enterprise it added")
	}
	if got := eng.Loading(); got == "" {
		t.Error("Loading empty while lj-gamma refills")
	}
	observed := make(chan struct{})
	go func() { eng.Observe(hourly(alpha, now, goodRates)); close(observed) }()
	select {
	case <-observed:
	case <-time.After(5 * time.Second):
		t.Error("Observe blocked while a reload's refill ran")
	}
	if _, ok := eng.Snapshot().Result("lj-gamma"); ok {
		t.Error("lj-gamma graded from a half-refilled window")
	}
	close(gate)
	waitResult(t, eng, "lj-gamma")
	for eng.Loading() != "" {
		time.Sleep(5 * time.Millisecond)
	}
	if got := vehiclesIn(eng, "lj-gamma"); got != 10*24*50 {
		t.Errorf("lj-gamma's refilled window holds %v vehicles, want %v", got, 10*24*50)
	}
}

// reloadAndRefill reloads eng and waits until the enterprises it refills
// are refilled and graded.
func reloadAndRefill(ctx context.Context, t *testing.T, eng *Engine, u Update) error {
	t.Helper()
	if err := eng.Reload(ctx, u); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for eng.Loading() != "" {
		if time.Now().After(deadline) {
			t.Fatalf("still %s 10 s after the reload", eng.Loading())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// vehiclesIn sums the vehicles in an enterprise's first window. Call it
// when the engine is idle (after Reload returned, with no tick due).
func vehiclesIn(eng *Engine, id string) float64 {
	es := eng.ents[id]
	for i, sr := range eng.std.Series {
		if sr.String() == "vehicles" {
			return es.wins[0].sum(es.lay.series[i].track)
		}
	}
	return -1
}

// waitResult waits for the engine's first result of an enterprise.
func waitResult(t *testing.T, eng *Engine, id string) *Result {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if r, ok := eng.Snapshot().Result(id); ok {
			return r
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no result for %s within 10s", id)
	return nil
}

// sameGrades fails unless got grades like want on every window.
func sameGrades(t *testing.T, what string, want, got *Result) {
	t.Helper()
	for wi := range want.Assessments {
		w, g := &want.Assessments[wi], &got.Assessments[wi]
		if w.Y != g.Y || w.Level != g.Level || w.Completeness != g.Completeness {
			t.Errorf("%s: %s Y %v level %q completeness %v, want %v %q %v", what, w.Window, g.Y, g.Level, g.Completeness, w.Y, w.Level, w.Completeness)
		}
		for i := range w.Indicators {
			if wv, gv := w.Indicators[i].Value, g.Indicators[i].Value; wv != gv && (wv-gv)*(wv-gv) > 1e-18*wv*wv {
				t.Errorf("%s: %s %s = %v, want %v", what, w.Window, w.Indicators[i].ID, gv, wv)
			}
		}
	}
}
