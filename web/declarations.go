package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cleanprod/cleanprod/scoring"
)

// historyDir is the folder, inside the declarations folder, that keeps
// every version of every enterprise's file. scoring.LoadDeclarations skips
// folders and dot-files, so the engine never reads it.
const historyDir = ".history"

// DeclarationFolder keeps enterprise declarations as YAML files in scoring's
// schema (see scoring.DeclarationFiles), one file per enterprise, in the
// folder the engine reads. Add rewrites an enterprise's file atomically
// and keeps every version under .history/<enterprise>/, with who wrote it
// and when. Methods are safe for concurrent use; writes are serialised.
type DeclarationFolder struct {
	dir string
	std atomic.Pointer[scoring.Standard] // SetStandard swaps it
	now func() time.Time
	mu  sync.Mutex // serialises Add
}

// NewDeclarationFolder returns the store of the declarations folder dir
// (it must exist). now is the clock for revision times (nil: time.Now).
func NewDeclarationFolder(dir string, std *scoring.Standard, now func() time.Time) (*DeclarationFolder, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("declarations folder: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("declarations folder: %s is not a folder", dir)
	}
	if now == nil {
		now = time.Now
	}
	f := &DeclarationFolder{dir: dir, now: now}
	f.std.Store(std)
	return f, nil
}

// SetStandard makes the folder check declarations against std (a
// reloaded standard).
func (f *DeclarationFolder) SetStandard(std *scoring.Standard) { f.std.Store(std) }

// Declarations reads every file of the folder (scoring.Declarations).
func (f *DeclarationFolder) Declarations(ctx context.Context) ([]scoring.Declaration, error) {
	return scoring.LoadDeclarations(f.dir, f.std.Load())
}

// Revision is one stored version of an enterprise's declarations file.
type Revision struct {
	Time time.Time `json:"time"`
	By   string    `json:"by"`
	File string    `json:"file"` // relative to the declarations folder
}

// Enterprise returns an enterprise's declarations (every one, in force or
// not, oldest valid_from first by indicator order of the file) and the
// revisions of its file, newest first.
func (f *DeclarationFolder) Enterprise(id string) ([]scoring.Declaration, []Revision, error) {
	path, err := f.fileOf(id)
	if err != nil {
		return nil, nil, err
	}
	var ds []scoring.Declaration
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, err
		}
		if ds, err = scoring.ParseDeclarations(path, data, f.std.Load()); err != nil {
			return nil, nil, errorf(http.StatusConflict, codeConflict, "the declarations file of %s has problems; fix it first: %v", id, err)
		}
	}
	revs, err := f.revisions(id)
	return ds, revs, err
}

// Add stores d in its enterprise's file: it replaces the declaration of
// the same indicator with the same valid_from, or is added to the file's
// history of that indicator (the one with the latest valid_from in force
// counts). The file is validated as the engine will read it before it
// replaces the old one. by names who declared it.
func (f *DeclarationFolder) Add(d scoring.Declaration, by string) (Revision, error) {
	if err := d.Check(f.std.Load()); err != nil {
		return Revision{}, errorf(http.StatusUnprocessableEntity, codeInvalid, "%v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// The engine reads the whole folder or nothing: a broken file of
	// another enterprise would keep this declaration from counting.
	if _, err := scoring.LoadDeclarations(f.dir, f.std.Load()); err != nil {
		return Revision{}, errorf(http.StatusConflict, codeConflict, "the declarations folder has problems; fix them first: %v", err)
	}
	path, err := f.fileOf(d.Enterprise)
	if err != nil {
		return Revision{}, err
	}
	var (
		ds     []scoring.Declaration
		header []string
		old    []byte
	)
	if path == "" {
		path = filepath.Join(f.dir, d.Enterprise+".yaml")
		header = []string{"# Declarations of " + d.Enterprise + " (qualitative and non-metered indicators), kept by the cleanprod API."}
	} else {
		if old, err = os.ReadFile(path); err != nil {
			return Revision{}, err
		}
		if ds, err = scoring.ParseDeclarations(path, old, f.std.Load()); err != nil {
			return Revision{}, errorf(http.StatusConflict, codeConflict, "the declarations file of %s has problems; fix it first: %v", d.Enterprise, err)
		}
		header = leadingComments(old)
	}
	i := slices.IndexFunc(ds, func(o scoring.Declaration) bool { return o.Indicator == d.Indicator && o.ValidFrom.Equal(d.ValidFrom) })
	if i >= 0 {
		ds[i] = d
	} else {
		ds = append(ds, d)
	}
	now := f.now().UTC()
	data, err := f.marshal(d.Enterprise, header, ds)
	if err != nil {
		return Revision{}, err
	}
	if _, err := scoring.ParseDeclarations(path, data, f.std.Load()); err != nil {
		return Revision{}, fmt.Errorf("declarations of %s do not read back: %w", d.Enterprise, err)
	}
	hdir := filepath.Join(f.dir, historyDir, d.Enterprise)
	if err := os.MkdirAll(hdir, 0o750); err != nil {
		return Revision{}, err
	}
	if old != nil {
		// The version before the API's first write is kept too.
		if revs, _ := f.revisions(d.Enterprise); len(revs) == 0 {
			prev := append([]byte(revisionLine("file", now.Add(-time.Nanosecond))), old...)
			if err := writeFileAtomic(filepath.Join(hdir, revisionName(now.Add(-time.Nanosecond))), prev, 0o640); err != nil {
				return Revision{}, err
			}
		}
	}
	rev := Revision{Time: now, By: by, File: filepath.ToSlash(filepath.Join(historyDir, d.Enterprise, revisionName(now)))}
	if err := writeFileAtomic(filepath.Join(f.dir, rev.File), append([]byte(revisionLine(by, now)), data...), 0o640); err != nil {
		return Revision{}, err
	}
	if err := writeFileAtomic(path, data, 0o640); err != nil {
		return Revision{}, err
	}
	return rev, nil
}

// fileOf returns the file that declares enterprise id ("" if none).
func (f *DeclarationFolder) fileOf(id string) (string, error) {
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		return "", fmt.Errorf("declarations folder: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		path := filepath.Join(f.dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		var head struct {
			Enterprise string `yaml:"enterprise"`
		}
		if yaml.Unmarshal(data, &head) == nil && head.Enterprise == id {
			return path, nil
		}
	}
	return "", nil
}

const revisionPrefix = "# cleanprod declarations revision: "

func revisionLine(by string, t time.Time) string {
	return fmt.Sprintf("%sby %q at %s\n", revisionPrefix, by, t.UTC().Format(time.RFC3339Nano))
}

func revisionName(t time.Time) string { return t.UTC().Format("20060102T150405.000000000Z") + ".yaml" }

// revisions lists the stored versions of an enterprise's file, newest first.
func (f *DeclarationFolder) revisions(id string) ([]Revision, error) {
	dir := filepath.Join(f.dir, historyDir, id)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return []Revision{}, nil
	}
	if err != nil {
		return nil, err
	}
	revs := []Revision{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		rev := Revision{File: filepath.ToSlash(filepath.Join(historyDir, id, e.Name()))}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		line, _, _ := strings.Cut(string(data), "\n")
		if rest, ok := strings.CutPrefix(line, revisionPrefix); ok {
			var at string
			if _, err := fmt.Sscanf(rest, "by %q at %s", &rev.By, &at); err == nil {
				rev.Time, _ = time.Parse(time.RFC3339Nano, at)
			}
		}
		revs = append(revs, rev)
	}
	slices.SortFunc(revs, func(a, b Revision) int { return strings.Compare(b.File, a.File) })
	return revs, nil
}

// leadingComments returns the comment lines at the top of a file, so a
// rewrite keeps what a person wrote there.
func leadingComments(data []byte) []string {
	var out []string
	for line := range strings.Lines(string(data)) {
		line = strings.TrimRight(line, "\r\n")
		if !strings.HasPrefix(line, "#") || strings.HasPrefix(line, revisionPrefix) {
			break
		}
		out = append(out, line)
	}
	return out
}

type declarationYAML struct {
	Indicator     string   `yaml:"indicator,omitempty"`
	Absent        string   `yaml:"absent,omitempty"`
	Level         string   `yaml:"level,omitempty"`
	Value         *float64 `yaml:"value,omitempty"`
	NotApplicable bool     `yaml:"not_applicable,omitempty"`
	Evidence      string   `yaml:"evidence"`
	ValidFrom     string   `yaml:"valid_from"`
	ValidTo       string   `yaml:"valid_to,omitempty"`
}

// marshal writes declarations in scoring's file schema.
func (f *DeclarationFolder) marshal(enterprise string, header []string, ds []scoring.Declaration) ([]byte, error) {
	file := struct {
		Enterprise   string            `yaml:"enterprise"`
		Declarations []declarationYAML `yaml:"declarations"`
	}{Enterprise: enterprise}
	for _, d := range ds {
		y := declarationYAML{Indicator: d.Indicator, Absent: d.Absent, Value: d.Value, NotApplicable: d.NotApplicable, Evidence: d.Evidence,
			ValidFrom: f.formatDate(d.ValidFrom)}
		if d.Level != scoring.NoLevel {
			y.Level = strings.ReplaceAll(d.Level.String(), " ", "_")
		}
		if !d.ValidTo.IsZero() {
			y.ValidTo = f.formatDate(d.ValidTo)
		}
		file.Declarations = append(file.Declarations, y)
	}
	body, err := yaml.Marshal(&file)
	if err != nil {
		return nil, fmt.Errorf("encode declarations of %s: %w", enterprise, err)
	}
	var b strings.Builder
	for _, h := range header {
		b.WriteString(h + "\n")
	}
	b.Write(body)
	return []byte(b.String()), nil
}

// formatDate writes a date when t is a local midnight, else RFC 3339.
func (f *DeclarationFolder) formatDate(t time.Time) string {
	lt := t.In(time.FixedZone("local", int(f.std.Load().UTCOffset/time.Second)))
	if lt.Hour() == 0 && lt.Minute() == 0 && lt.Second() == 0 && lt.Nanosecond() == 0 {
		return lt.Format(time.DateOnly)
	}
	return t.Format(time.RFC3339)
}
