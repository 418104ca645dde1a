package web

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/scoring"
)

// swappingScorer answers its first Snapshot call with before and every
// later one with after: a reload landing in the middle of a request.
type swappingScorer struct {
	calls         atomic.Int32
	before, after *scoring.Snapshot
}

func (s *swappingScorer) Snapshot() *scoring.Snapshot {
	if s.calls.Add(1) == 1 {
		return s.before
	}
	return s.after
}

func (s *swappingScorer) ReloadDeclarations() {}

// A request sees one snapshot from its authentication to its answer: a
// reload that removes the enterprise while the request runs leaves the
// request with the registry it started with, not a 500.
func TestRequestKeepsOneSnapshot(t *testing.T) {
	f := newFixture(t)
	files := map[string][]byte{}
	paths, _ := filepath.Glob("../gateway-config/*.yaml")
	for _, p := range paths {
		if filepath.Base(p) == entA+".yaml" {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(p)] = b
	}
	without, err := registry.Parse(files)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := without.Enterprise(entA); ok {
		t.Fatalf("the reloaded registry still has %s", entA)
	}
	before := f.eng.Snapshot()
	after := &scoring.Snapshot{Time: before.Time, Standard: before.Standard, Policy: before.Policy, Registry: without, Solutions: before.Solutions}
	for _, target := range []string{
		"/api/v1/enterprises/" + entA,
		"/api/v1/enterprises/" + entA + "/meters",
		"/api/v1/enterprises/" + entA + "/report",
	} {
		t.Run(target, func(t *testing.T) {
			o := f.handlerOptions(nil)
			o.Scorer = &swappingScorer{before: before, after: after}
			h := NewHandler(o)
			req, _ := http.NewRequest("GET", target, nil)
			req.Header.Set("Authorization", "Bearer "+supervisorToken)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				t.Errorf("GET %s with a reload during the request: status %d, want 200\n%.300s", target, w.Code, w.Body.String())
			}
		})
	}
}
