package web

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/scoring"
)

// TestDeclarationFolderKeepsAbsent: adding a declaration through the API
// rewrites the enterprise's file; an absent declaration in it survives.
func TestDeclarationFolderKeepsAbsent(t *testing.T) {
	std, err := scoring.DefaultStandard()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "parts.yaml")
	os.WriteFile(file, []byte("enterprise: parts-plant\ndeclarations:\n  - {absent: vehicles, evidence: parts supplier, valid_from: 2020-01-01}\n"), 0o644)
	f, err := NewDeclarationFolder(dir, std, func() time.Time { return fixtureNow })
	if err != nil {
		t.Fatal(err)
	}
	d := scoring.Declaration{Enterprise: "parts-plant", Indicator: "cp_audit", Level: scoring.LevelIII, Evidence: "audit 2025",
		ValidFrom: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := f.Add(d, "bureau"); err != nil {
		t.Fatal(err)
	}
	ds, _, err := f.Enterprise("parts-plant")
	if err != nil || len(ds) != 2 || ds[0].Absent != "vehicles" || ds[0].Indicator != "" || ds[1].Indicator != "cp_audit" {
		t.Errorf("got %+v, %v; want the absent vehicles declaration kept and cp_audit added", ds, err)
	}
	if data, _ := os.ReadFile(file); !strings.Contains(string(data), "absent: vehicles") || strings.Contains(string(data), `indicator: ""`) {
		t.Errorf("rewritten file:\n%s", data)
	}
}
