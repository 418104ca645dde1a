package web

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// needTool returns the path of a command the test needs: missing, it skips
// the test, or fails it when CLEANPROD_REQUIRE_SERVERS=1 (CI), where
// scripts/test installs it.
func needTool(t *testing.T, debianPackage string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if os.Getenv("CLEANPROD_REQUIRE_SERVERS") == "1" {
		t.Fatalf("%s not found; scripts/test installs Debian %s", names[0], debianPackage)
	}
	t.Skipf("%s not found (Debian %s); run scripts/test", names[0], debianPackage)
	return ""
}

// artifactDir is where tests leave files for people to look at: under
// $CLEANPROD_ARTIFACTS in CI, else in the test's temporary folder.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CLEANPROD_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, "web")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestReportGolden renders the report of the fixture's Level I plant and
// compares it with testdata/report/<id>.html (go test -run
// TestReportGolden -update rewrites it after an intended change).
func TestReportGolden(t *testing.T) {
	f := newFixture(t)
	w := f.do(t, "GET", "/api/v1/enterprises/"+entA+"/report", supervisorToken, "")
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") || w.Header().Get("Content-Security-Policy") != reportCSP {
		t.Fatalf("got %d %v", w.Code, w.Header())
	}
	got := w.Body.Bytes()
	// Self-contained: nothing to fetch.
	for _, ref := range []string{"<script", "src=", "<link", "url(", "@import"} {
		if bytes.Contains(got, []byte(ref)) {
			t.Errorf("the report refers to something outside itself: %q", ref)
		}
	}
	for _, want := range []string{"清洁生产审核报告", "Cleaner-production audit report", "企业概况", "数据覆盖 <span class=\"en\">Data coverage",
		"Y<sub>I</sub>", "指标评价表", "落后指标", "清洁生产方案", "<svg", "动态码与审核周期", "标准来源", "S18", "绿码 green", "Rooftop photovoltaics"} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("the report lacks %q", want)
		}
	}
	golden := filepath.Join("testdata", "report", entA+".html")
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./web -run TestReportGolden -update)", err)
	}
	if !bytes.Equal(got, want) {
		out := filepath.Join(artifactDir(t), entA+".got.html")
		os.WriteFile(out, got, 0o644)
		t.Errorf("the report differs from %s (got written to %s; diff them, and run with -update if the change is intended):\n%s", golden, out, firstDiff(string(want), string(got)))
	}
	// The same again is byte-identical.
	if again := f.do(t, "GET", "/api/v1/enterprises/"+entA+"/report", supervisorToken, "").Body.Bytes(); !bytes.Equal(again, got) {
		t.Errorf("two renders differ:\n%s", firstDiff(string(got), string(again)))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return "line " + strconv.Itoa(i+1) + ":\n- " + trunc(x) + "\n+ " + trunc(y)
		}
	}
	return ""
}

func trunc(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

// resultAt rebuilds from the stored points what the engine had.
func TestResultAtMatchesLive(t *testing.T) {
	f := newFixture(t)
	for _, ent := range []string{entA, entB} {
		live, _ := f.eng.Snapshot().Result(ent)
		v, err := resultAt(context.Background(), f.points, f.std, f.pol, f.lib, ent, fixtureNow)
		if err != nil {
			t.Fatal(err)
		}
		got := v.res
		if got.Code != live.Code || !got.NextAuditDue.Equal(live.NextAuditDue.Truncate(time.Second)) {
			t.Errorf("%s: code %s due %v, want %s %v", ent, got.Code, got.NextAuditDue, live.Code, live.NextAuditDue)
		}
		for wi := range live.Assessments {
			la, ga := &live.Assessments[wi], &got.Assessments[wi]
			if la.Level != ga.Level || la.Y != ga.Y || la.Score != ga.Score || la.Completeness != ga.Completeness {
				t.Errorf("%s %s: got %v %v %v, want %v %v %v", ent, la.Window, ga.Level, ga.Y, ga.Score, la.Level, la.Y, la.Score)
			}
			for ii := range la.Indicators {
				l, g := &la.Indicators[ii], &ga.Indicators[ii]
				if l.Status != g.Status || l.Level != g.Level || l.HasValue() != v.valued[wi][ii] || (l.HasValue() && l.Value != g.Value) || l.Weight != g.Weight {
					t.Errorf("%s %s %s: got %+v, want %+v", ent, la.Window, l.ID, g, l)
				}
			}
		}
		if len(got.Lagging) != len(live.Lagging) {
			t.Errorf("%s: %d lagging, want %d", ent, len(got.Lagging), len(live.Lagging))
		}
	}
	// A report as of a past time with nothing stored is a 404; as of now it
	// is the live one.
	expectError(t, f.do(t, "GET", "/api/v1/enterprises/"+entA+"/report?to=2026-05-01", supervisorToken, ""), 404, codeNotEvaluated)
	if w := f.do(t, "GET", "/api/v1/enterprises/"+entA+"/report?from=2026-05-01&to=2026-06-01T02:00:00Z", supervisorToken, ""); w.Code != 200 {
		t.Errorf("report to now: %d %s", w.Code, w.Body)
	}
	// RenderReport (the report subcommand) builds the report from points only.
	html, err := RenderReport(context.Background(), ReportOptions{Registry: f.reg, Standard: f.std, Policy: f.pol, Solutions: f.lib, Points: f.points,
		Enterprise: entB, From: fixtureNow.Add(-30 * 24 * time.Hour), To: fixtureNow, Format: "html", Now: fixtureNow})
	if err != nil || !bytes.Contains(html, []byte("rebuilt from the stored evaluation")) || !bytes.Contains(html, []byte("红码 red")) {
		t.Errorf("RenderReport: %v\n%.300s", err, html)
	}
}

// TestReportPDF renders the report with both PDF writers, renders each
// PDF's first pages with pdftoppm and checks the text with pdftotext: the
// Chinese title must come out as text, not as missing glyphs.
func TestReportPDF(t *testing.T) {
	pdftoppm := needTool(t, "poppler-utils", "pdftoppm")
	pdftotext := needTool(t, "poppler-utils", "pdftotext")
	f := newFixture(t)
	dir := artifactDir(t)
	renderers := map[string]PDFRenderer{"builtin": NewBuiltinPDF("")}
	if p := FindChromium(); p != "" {
		renderers["chromium"] = NewChromium(p)
	} else if os.Getenv("CLEANPROD_REQUIRE_SERVERS") == "1" {
		t.Error("chromium not found; scripts/test installs Debian chromium")
	}
	for name, r := range renderers {
		t.Run(name, func(t *testing.T) {
			if b, ok := r.(*BuiltinPDF); ok && b.FontPath == "" {
				if os.Getenv("CLEANPROD_REQUIRE_SERVERS") == "1" {
					t.Fatal("no CJK font for the built-in PDF writer; scripts/test installs fonts-wqy-microhei")
				}
				t.Skip("no CJK TrueType font; install fonts-wqy-microhei")
			}
			h := newServer(f.handlerOptions(r)).handler()
			req := httptest.NewRequest("GET", "/api/v1/enterprises/"+entB+"/report?format=pdf", nil)
			req.Header.Set("Authorization", "Bearer "+supervisorToken)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 || w.Header().Get("Content-Type") != "application/pdf" || !bytes.HasPrefix(w.Body.Bytes(), []byte("%PDF-")) {
				t.Fatalf("got %d %s %.200s", w.Code, w.Header().Get("Content-Type"), w.Body)
			}
			pdf := filepath.Join(dir, "report-"+name+".pdf")
			if err := os.WriteFile(pdf, w.Body.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			prefix := filepath.Join(dir, "report-"+name)
			if out, err := exec.Command(pdftoppm, "-r", "60", "-f", "1", "-l", "3", "-png", pdf, prefix).CombinedOutput(); err != nil {
				t.Fatalf("pdftoppm: %v\n%s", err, out)
			}
			pngs, _ := filepath.Glob(prefix + "-*.png")
			if len(pngs) < 2 {
				t.Fatalf("pdftoppm made %v, want at least two pages", pngs)
			}
			for _, p := range pngs {
				if st, err := os.Stat(p); err != nil || st.Size() < 10_000 {
					t.Errorf("%s: %v, looks empty", p, err)
				}
			}
			text, err := exec.Command(pdftotext, "-layout", pdf, "-").Output()
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"清洁生产审核报告", "Cleaner-production audit report", "Shanchuan", "Y_I", "S18",
				"Provisional grading", "To reach Level III", "Totals over the windows", "91500112202871357P001P"} {
				if want == "Y_I" && name == "chromium" {
					want = "Y"
				}
				if !bytes.Contains(text, []byte(want)) {
					t.Errorf("the PDF's text lacks %q", want)
				}
			}
			t.Logf("%s: %d bytes, pages rendered to %s-*.png", pdf, w.Body.Len(), prefix)
		})
	}
}

// TestReportPDFWithoutFont: without Chromium and without a CJK font, a PDF
// request gets the HTML report and the reason, never a 500 or a PDF
// without the Chinese names.
func TestReportPDFWithoutFont(t *testing.T) {
	f := newFixture(t)
	h := newServer(f.handlerOptions(&BuiltinPDF{})).handler()
	req := httptest.NewRequest("GET", "/api/v1/enterprises/"+entB+"/report?format=pdf", nil)
	req.Header.Set("Authorization", "Bearer "+supervisorToken)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") || !strings.Contains(w.Header().Get(PDFUnavailableHeader), "CJK") {
		t.Fatalf("got %d %s %q, want 200 HTML with %s", w.Code, w.Header().Get("Content-Type"), w.Header().Get(PDFUnavailableHeader), PDFUnavailableHeader)
	}
	if !strings.Contains(w.Body.String(), "山川汽车") {
		t.Errorf("the HTML fallback lacks the Chinese name")
	}
	if _, err := (&BuiltinPDF{}).RenderPDF(t.Context(), nil, nil); !errors.Is(err, ErrNoPDFFont) {
		t.Errorf("RenderPDF without a font: got %v, want ErrNoPDFFont", err)
	}
	if err := NewBuiltinPDF("/nonexistent/font.ttf").Check(); err == nil {
		t.Error("Check accepted a missing font")
	}
}

func TestFirstFace(t *testing.T) {
	const path = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("no %s", path)
	}
	ttf, err := firstFace(data)
	if err != nil {
		t.Fatal(err)
	}
	if string(ttf[:4]) != "\x00\x01\x00\x00" || len(ttf) != len(data) {
		t.Errorf("got a font starting %q of %d bytes", ttf[:4], len(ttf))
	}
	if _, err := firstFace([]byte("ttcf\x00\x01\x00\x00\x00\x00\x00\x01\x00\x00\x00\x10OTTO")); err == nil {
		t.Error("accepted a CFF face")
	}
}
