package web

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/scoring"
)

func TestDeclarationFolder(t *testing.T) {
	std, err := scoring.DefaultStandard()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	f, err := NewDeclarationFolder(dir, std, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	loc := time.FixedZone("local", 8*3600)
	v := 64.5
	d := scoring.Declaration{Enterprise: "new-plant", Indicator: "paint_transfer_efficiency", Value: &v, Evidence: "trial 2026-05",
		ValidFrom: time.Date(2026, 5, 1, 0, 0, 0, 0, loc), ValidTo: time.Date(2027, 5, 1, 12, 30, 0, 0, time.UTC)}
	rev, err := f.Add(d, "supervisor bureau")
	if err != nil {
		t.Fatal(err)
	}
	if rev.By != "supervisor bureau" || !rev.Time.Equal(now) {
		t.Errorf("revision %+v", rev)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "new-plant.yaml"))
	for _, want := range []string{"enterprise: new-plant", "value: 64.5", "valid_from: \"2026-05-01\"", "valid_to: \"2027-05-01T12:30:00Z\""} {
		if !strings.Contains(string(data), want) {
			t.Errorf("file lacks %q:\n%s", want, data)
		}
	}
	ds, revs, err := f.Enterprise("new-plant")
	if err != nil || len(ds) != 1 || len(revs) != 1 || !ds[0].ValidFrom.Equal(d.ValidFrom) || *ds[0].Value != v {
		t.Fatalf("got %+v %+v %v", ds, revs, err)
	}
	// Level below III round-trips.
	d2 := scoring.Declaration{Enterprise: "new-plant", Indicator: "cp_audit", Level: scoring.BelowIII, Evidence: "no audit", ValidFrom: d.ValidFrom}
	if _, err := f.Add(d2, "x"); err != nil {
		t.Fatal(err)
	}
	if ds, _, _ := f.Enterprise("new-plant"); len(ds) != 2 || ds[1].Level != scoring.BelowIII {
		t.Errorf("got %+v", ds)
	}
	// A broken file elsewhere in the folder is refused with 409 before anything is written.
	os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte("enterprise: other\ndeclarations:\n  - {indicator: nope}\n"), 0o644)
	_, err = f.Add(d2, "x")
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(err.Error(), "broken.yaml") {
		t.Errorf("got %v, want a 409 naming broken.yaml", err)
	}
	if _, err := NewDeclarationFolder(filepath.Join(dir, "missing"), std, nil); err == nil {
		t.Error("a missing folder was accepted")
	}
}
