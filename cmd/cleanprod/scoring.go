package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cleanprod/cleanprod/outbox"
	"github.com/cleanprod/cleanprod/review"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/web"
)

// scoringData is the standard, policy and library in force.
type scoringData struct {
	std  *scoring.Standard
	pol  *scoring.Policy
	lib  *scoring.Library
	decl scoring.DeclarationFiles
	// sums are the SHA-256 of the standard, policy and library files
	// loaded (zero for the embedded defaults), so a reload can keep what
	// did not change.
	sums [3][sha256.Size]byte
}

// loadScoring loads the configured scoring files, or the shipped ones.
func loadScoring(cfg *Config) (*scoringData, error) { return reloadScoring(cfg, nil) }

// reloadScoring loads the configured scoring files, keeping prev's
// objects (when not nil) for files whose content did not change, so that
// an unchanged standard stays the same *Standard.
func reloadScoring(cfg *Config, prev *scoringData) (*scoringData, error) {
	var d scoringData
	paths := [3]string{cfg.Scoring.Standard, cfg.Scoring.Policy, cfg.Scoring.Solutions}
	for i, p := range paths {
		if p == "" {
			continue
		}
		sum, err := fingerprint(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", [3]string{"indicator standard", "code policy", "solution library"}[i], err)
		}
		d.sums[i] = sum
	}
	same := func(i int) bool { return prev != nil && prev.sums[i] == d.sums[i] }
	var err error
	switch {
	case same(0):
		d.std = prev.std
	case cfg.Scoring.Standard != "":
		d.std, err = scoring.LoadStandard(cfg.Scoring.Standard)
	default:
		d.std, err = scoring.DefaultStandard()
	}
	if err != nil {
		return nil, fmt.Errorf("indicator standard: %w", err)
	}
	switch {
	case same(0) && same(1):
		d.pol = prev.pol
	case cfg.Scoring.Policy != "":
		d.pol, err = scoring.LoadPolicy(cfg.Scoring.Policy, d.std)
	default:
		d.pol, err = scoring.DefaultPolicy(d.std)
	}
	if err != nil {
		return nil, fmt.Errorf("code policy: %w", err)
	}
	switch {
	case same(0) && same(2):
		d.lib = prev.lib
	case cfg.Scoring.Solutions != "":
		d.lib, err = scoring.LoadLibrary(cfg.Scoring.Solutions, d.std)
	default:
		d.lib, err = scoring.DefaultLibrary(d.std)
	}
	if err != nil {
		return nil, fmt.Errorf("solution library: %w", err)
	}
	switch {
	case cfg.builtinDeclarations != nil:
		d.decl = scoring.DeclarationFiles{Dir: "(embedded) scoring/declarations", Files: cfg.builtinDeclarations, Standard: d.std}
		if _, err := d.decl.Declarations(context.Background()); err != nil {
			return nil, fmt.Errorf("declarations: %w", err)
		}
	case cfg.Scoring.Declarations != "":
		if _, err := os.Stat(cfg.Scoring.Declarations); err != nil {
			return nil, fmt.Errorf("scoring.declarations: %w", err)
		}
		if _, err := scoring.LoadDeclarations(cfg.Scoring.Declarations, d.std); err != nil {
			return nil, fmt.Errorf("declarations: %w", err)
		}
		d.decl = scoring.DeclarationFiles{Dir: cfg.Scoring.Declarations, Standard: d.std}
	}
	return &d, nil
}

// fingerprint is the SHA-256 of a file, or of a folder's file names and
// contents.
func fingerprint(path string) ([sha256.Size]byte, error) {
	h := sha256.New()
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
		return nil
	})
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum, err
}

// seedDeclarations adds the declarations folder's entries that the store
// does not hold yet (or that changed in the folder) to the book, as
// accepted by the file. A failure is logged: the book keeps what it has.
// At start a store that fails is retried until it answers.
func seedDeclarations(ctx context.Context, book *review.Book, sd *scoringData, log *slog.Logger, start *startup) {
	if sd.decl.Dir == "" {
		return
	}
	ds, err := sd.decl.Declarations(ctx)
	if err != nil {
		log.Error("seed declarations from the folder; the stored declarations stay in force", "folder", sd.decl.Dir, "err", err)
		return
	}
	seed := func(ctx context.Context) error {
		n, err := book.Seed(ctx, ds, sd.decl.Dir)
		if err == nil {
			log.Info("declarations folder seeded the store", "folder", sd.decl.Dir, "declarations", len(ds), "written", n)
		}
		return err
	}
	if start != nil {
		// At start the store may be slow: the folder is seeded before
		// anything is graded, whatever it takes.
		if err := start.retry(ctx, log, "seed declarations", seed); err != nil && ctx.Err() == nil {
			log.Error("seed declarations from the folder; the stored declarations stay in force", "folder", sd.decl.Dir, "err", err)
		}
		return
	}
	if err := seed(ctx); err != nil {
		log.Error("seed declarations from the folder; the stored declarations stay in force", "folder", sd.decl.Dir, "err", err)
	}
}

// pastEvents reads the events already announced: those in the store and
// those the outbox still holds from the last run (pending: announced,
// maybe not yet stored; an event in both counts once). Of the store's, it
// reads what a start needs, bounded by the fleet and not by the history:
// the newest of each series (enterprise, kind, indicator, meter), which
// is all restoreEvents' state depends on, and each enterprise's keep
// newest, for its page.
func pastEvents(ctx context.Context, st readingStore, pending []scoring.Event, now time.Time, keep int) ([]scoring.Event, error) {
	from, to := now.Add(-400*24*time.Hour), now.Add(time.Hour)
	last, err := st.LatestPoints(ctx, scoring.MeasurementEvent, nil, 1, from, to)
	if err != nil {
		return nil, fmt.Errorf("read past events: %w", err)
	}
	recent, err := st.LatestPoints(ctx, scoring.MeasurementEvent, []string{"enterprise"}, keep, from, to)
	if err != nil {
		return nil, fmt.Errorf("read past events: %w", err)
	}
	return outbox.Announced(append(last, recent...), pending), nil
}

// restoreEvents replays the events already announced (pastEvents), so a
// restart does not announce them again. The case watcher gets them too,
// to open a case whose red code a stop announced but left without its
// case.
func restoreEvents(events []scoring.Event, eng *scoring.Engine, recent *web.RecentEvents, cases *review.Watcher) {
	eng.Restore(events)
	cases.Resume(events) // a red code whose case a stop left unopened
	for _, e := range events {
		recent.Add(e)
	}
}
