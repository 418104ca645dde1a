package web

import (
	"bytes"
	"context"
	"fmt"
	stdhtml "html"
	"math"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-pdf/fpdf"
	"go.yaml.in/yaml/v3"

	"github.com/cleanprod/cleanprod/scoring"
)

// libraryCosts reads the cost class of every measure straight from the
// shipped solution library's YAML, not through scoring's loader.
func libraryCosts(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../scoring/solutions/auto-manufacturing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Solutions []struct {
			ID   string `yaml:"id"`
			Cost string `yaml:"cost"`
		} `yaml:"solutions"`
	}
	if err := yaml.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	costs := map[string]string{}
	for _, s := range file.Solutions {
		costs[s.ID] = s.Cost
	}
	if len(costs) == 0 {
		t.Fatal("no solutions in the library")
	}
	return costs
}

// The fixture's red plant: every measure of its steps and lagging
// indicators appears once, in the tier its cost in the library's YAML
// says (no/low: 无/低费, medium/high: 中/高费), with every indicator it
// helps and the sum of their index points.
func TestReportActionPlanFixture(t *testing.T) {
	f := newFixture(t)
	costs := libraryCosts(t)
	v, err := resultAt(context.Background(), f.points, f.std, f.pol, f.lib, entB, fixtureNow)
	if err != nil {
		t.Fatal(err)
	}
	ent, _ := f.reg.Enterprise(entB)
	rep, err := buildReport(context.Background(), reportInput{ent: ent, std: f.std, pol: f.pol, view: v, lib: f.lib, points: f.points,
		from: fixtureNow.Add(-30 * 24 * time.Hour), to: fixtureNow, now: fixtureNow})
	if err != nil {
		t.Fatal(err)
	}
	// What the plan must hold, from the report's steps and lagging rows.
	want := map[string]map[string]float64{} // measure -> indicator -> benefit
	seenInd := map[string]bool{}
	collect := func(ind string, ms []MatchDTO) {
		if seenInd[ind] {
			return
		}
		seenInd[ind] = true
		for _, m := range ms {
			if want[m.ID] == nil {
				want[m.ID] = map[string]float64{}
			}
			want[m.ID][ind] = m.Benefit
		}
	}
	if n := rep.Enterprise.NextLevel; n != nil {
		for _, s := range n.Steps {
			collect(s.Indicator, s.Solutions)
		}
	}
	for _, l := range rep.Enterprise.Lagging {
		collect(l.Indicator, l.Solutions)
	}
	if len(want) < 2 {
		t.Fatalf("the fixture's red plant has %d measures; the test needs several", len(want))
	}
	got := map[string]bool{}
	tiers := map[string]int{}
	for _, tier := range rep.Plan {
		for _, m := range tier.Measures {
			if got[m.ID] {
				t.Errorf("measure %s listed twice", m.ID)
			}
			got[m.ID] = true
			tiers[tier.ID]++
			wantTier := "high"
			if c := costs[m.ID]; c == "no" || c == "low" {
				wantTier = "low"
			}
			if tier.ID != wantTier || m.Cost != costs[m.ID] {
				t.Errorf("measure %s (cost %q in the library) in tier %s with cost %q, want tier %s", m.ID, costs[m.ID], tier.ID, m.Cost, wantTier)
			}
			sum := 0.0
			var inds []string
			for _, ef := range m.Effects {
				inds = append(inds, ef.Indicator)
				if b, ok := want[m.ID][ef.Indicator]; !ok || b != ef.Benefit {
					t.Errorf("measure %s on %s: benefit %v, want %v (listed: %v)", m.ID, ef.Indicator, ef.Benefit, b, ok)
				}
				sum += ef.Benefit
			}
			if len(inds) != len(want[m.ID]) {
				t.Errorf("measure %s improves %v, want the %d indicators %v", m.ID, inds, len(want[m.ID]), want[m.ID])
			}
			if diff := m.Benefit - sum; diff > 1e-9 || diff < -1e-9 {
				t.Errorf("measure %s: benefit %v, want the sum %v", m.ID, m.Benefit, sum)
			}
		}
	}
	for id := range want {
		if !got[id] {
			t.Errorf("measure %s missing from the plan", id)
		}
	}
	// Savings of the per-vehicle indicators: the change times the vehicles
	// of the live window, as the API's detail of the enterprise gives them.
	detail := decode[detailJSON](t, f.do(t, "GET", "/api/v1/enterprises/"+entB, supervisorToken, ""))
	vehicles := 0.0
	for _, a := range detail.Assessments {
		if a.Window == f.pol.Window {
			for _, tot := range a.Totals {
				if tot.ID == "vehicles" {
					vehicles = tot.Value
				}
			}
		}
	}
	if vehicles <= 0 {
		t.Fatalf("no vehicles on the %s window of %s", f.pol.Window, entB)
	}
	savings := 0
	for _, tier := range rep.Plan {
		for _, m := range tier.Measures {
			for _, ef := range m.Effects {
				if !strings.HasSuffix(ef.Indicator, "_per_vehicle") || ef.Value == nil || ef.Projected == nil || ef.Saving == nil {
					continue
				}
				savings++
				want := (*ef.Value - *ef.Projected) * vehicles
				if d := *ef.Saving - want; d > 1e-6*want || d < -1e-6*want {
					t.Errorf("%s on %s saves %v %s, want %v", m.ID, ef.Indicator, *ef.Saving, ef.SavingUnit, want)
				}
				if unit, _, _ := strings.Cut(ef.Unit, "/"); ef.SavingUnit != unit {
					t.Errorf("%s on %s: saving in %q, want %q", m.ID, ef.Indicator, ef.SavingUnit, unit)
				}
			}
		}
	}
	if savings == 0 {
		t.Error("no per-vehicle saving in the red plant's plan")
	}
	if tiers["low"] == 0 || tiers["high"] == 0 {
		t.Errorf("tiers %v: the red plant's plan should have both 无/低费 and 中/高费 measures", tiers)
	}
	if len(rep.Plan) > 0 && rep.Plan[0].NameZH != "无/低费方案" {
		t.Errorf("first tier %q, want 无/低费方案", rep.Plan[0].NameZH)
	}
}

func TestActionPlanGrouping(t *testing.T) {
	p := func(v float64) *float64 { return &v }
	m := func(id, cost string, benefit float64) MatchDTO {
		return MatchDTO{ID: id, NameZH: id, Cost: cost, Benefit: benefit, ProjectedValue: p(1)}
	}
	inds := []planIndicator{
		{id: "water", step: true, value: p(5), matches: []MatchDTO{m("rinse", "low", 1), m("reuse", "high", 2)}},
		{id: "energy", step: true, value: p(2), matches: []MatchDTO{m("rinse", "low", 0.5), m("leaks", "no", 0.2), m("pumps", "medium", 3)}},
		{id: "water", matches: []MatchDTO{m("rinse", "low", 9)}}, // the same indicator lagging: counted once
		{id: "waste", matches: []MatchDTO{m("odd", "unknown", 4), m("sort", "low", 5)}},
	}
	got := actionPlan(inds)
	type row struct {
		tier, id string
		effects  []string
		benefit  float64
	}
	var rows []row
	for _, tier := range got {
		for _, pm := range tier.Measures {
			var effs []string
			for _, ef := range pm.Effects {
				effs = append(effs, ef.Indicator)
			}
			rows = append(rows, row{tier.ID, pm.ID, effs, pm.Benefit})
		}
	}
	want := []row{
		// measures for steps first, then by benefit
		{"low", "rinse", []string{"water", "energy"}, 1.5},
		{"low", "leaks", []string{"energy"}, 0.2},
		{"low", "sort", []string{"waste"}, 5},
		{"high", "pumps", []string{"energy"}, 3},
		{"high", "reuse", []string{"water"}, 2},
		{"high", "odd", []string{"waste"}, 4},
	}
	if len(rows) != len(want) {
		t.Fatalf("got %+v, want %+v", rows, want)
	}
	for i := range want {
		if rows[i].tier != want[i].tier || rows[i].id != want[i].id || !slices.Equal(rows[i].effects, want[i].effects) || rows[i].benefit != want[i].benefit {
			t.Errorf("row %d: got %+v, want %+v", i, rows[i], want[i])
		}
	}
	if got := actionPlan(nil); len(got) != 0 {
		t.Errorf("no indicators: got %+v, want no tiers", got)
	}
	only := actionPlan([]planIndicator{{id: "x", matches: []MatchDTO{m("big", "high", 1)}}})
	if len(only) != 1 || only[0].ID != "high" || only[0].NameZH != "中/高费方案" {
		t.Errorf("only a high-cost measure: got %+v, want the 中/高费 tier alone", only)
	}
}

func TestGroupEvents(t *testing.T) {
	loc := time.FixedZone("UTC+8", 8*3600)
	gw := map[string]string{"E-1": "gw-a", "E-2": "gw-a", "E-3": "gw-a", "W-1": "gw-b"}
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	stale := func(meter, ts string, resolved bool) scoring.Event {
		return scoring.Event{Kind: scoring.EventStale, Meter: meter, Time: at(ts), Resolved: resolved}
	}
	exceed := func(ts string, v float64) scoring.Event {
		return scoring.Event{Kind: scoring.EventExceedance, Meter: "STACK-01-VOC", Time: at(ts), NewValue: v, OldValue: 120}
	}
	evs := []scoring.Event{
		// gw-a on 2026-05-10 local (02:00Z-15:59Z is the 10th in UTC+8)
		stale("E-1", "2026-05-10T02:00:00Z", false),
		stale("E-2", "2026-05-10T03:00:00Z", false),
		stale("E-3", "2026-05-10T15:59:00Z", false),
		stale("E-1", "2026-05-10T04:00:00Z", false), // again, after a resume
		// 16:00Z is already the 11th in UTC+8: a row of its own
		stale("E-1", "2026-05-10T16:00:00Z", false),
		// resumed: a row apart from the silences
		stale("E-1", "2026-05-10T05:00:00Z", true),
		stale("E-2", "2026-05-10T06:00:00Z", true),
		// gw-b the same day
		stale("W-1", "2026-05-10T07:00:00Z", false),
		// a meter of no known gateway is its own group
		stale("X-9", "2026-05-10T07:30:00Z", false),
		exceed("2026-05-12T01:00:00Z", 130),
		exceed("2026-05-12T03:00:00Z", 175.4),
		exceed("2026-05-12T02:00:00Z", 150),
		{Kind: scoring.EventCodeChange, Time: at("2026-05-13T00:00:00Z"), OldCode: "yellow", NewCode: "red"},
	}
	std, err := scoring.DefaultStandard()
	if err != nil {
		t.Fatal(err)
	}
	pol, err := scoring.DefaultPolicy(std)
	if err != nil {
		t.Fatal(err)
	}
	ex := explainer{std, pol}
	rows, omitted := groupEvents(evs, func(m string) string { return gw[m] }, loc, ex)
	if omitted != 0 {
		t.Errorf("omitted %d", omitted)
	}
	type want struct {
		kind     scoring.EventKind
		subject  string
		count    int
		resolved bool
		text     string // in the English summary
	}
	wants := []want{
		{scoring.EventCodeChange, "yellow → red", 1, false, ""},
		{scoring.EventExceedance, "STACK-01-VOC", 3, false, "3 hourly means above the limit 120, highest 175.4 (11:00)"},
		// newest last event first; a group of one keeps its meter and text
		{scoring.EventStale, "E-1", 1, false, "meter E-1 silent for more than"}, // the 11th, local
		{scoring.EventStale, "gw-a", 4, false, "4 stale-meter events (3 meters): E-1, E-2, E-3"},
		{scoring.EventStale, "X-9", 1, false, "meter X-9 silent"},
		{scoring.EventStale, "W-1", 1, false, "meter W-1 silent"},
		{scoring.EventStale, "gw-a", 2, true, "2 reports resumed (2 meters): E-1, E-2"},
	}
	if len(rows) != len(wants) {
		for _, r := range rows {
			t.Logf("%+v", r)
		}
		t.Fatalf("got %d rows, want %d", len(rows), len(wants))
	}
	for i, w := range wants {
		r := rows[i]
		if r.Kind != w.kind || r.Subject != w.subject || r.Count != w.count || r.Resolved != w.resolved || (w.text != "" && !strings.HasPrefix(r.EN, w.text)) {
			t.Errorf("row %d: got %s %q ×%d resolved=%v %q, want %s %q ×%d resolved=%v %q", i, r.Kind, r.Subject, r.Count, r.Resolved, r.EN,
				w.kind, w.subject, w.count, w.resolved, w.text)
		}
		if r.ZH == "" || r.EN == "" {
			t.Errorf("row %d has no text: %+v", i, r)
		}
	}
	if rows[3].Time != at("2026-05-10T02:00:00Z") || rows[3].Last != at("2026-05-10T15:59:00Z") {
		t.Errorf("gw-a's silences span %v – %v, want 02:00Z – 15:59Z", rows[3].Time, rows[3].Last)
	}
	rep := &Report{clock: clock{loc}}
	if got := rep.Until(rows[3]); got != "23:59" {
		t.Errorf("gw-a's silences until %q, want 23:59 (the same local day)", got)
	}
	if got := rep.Until(EventRow{Time: at("2026-05-10T02:00:00Z"), Last: at("2026-05-10T16:00:00Z")}); got != "2026-05-11 00:00 UTC+8" {
		t.Errorf("until the next local day: %q", got)
	}

	// Many days of silences: bounded, and what is left out is counted.
	var many []scoring.Event
	for d := range maxEventRows + 7 {
		many = append(many, stale("E-1", at("2026-01-01T02:00:00Z").AddDate(0, 0, d).Format(time.RFC3339), false))
	}
	rows, omitted = groupEvents(many, func(m string) string { return gw[m] }, loc, ex)
	if len(rows) != maxEventRows || omitted != 7 {
		t.Errorf("%d daily silences: %d rows, %d omitted; want %d and 7", len(many), len(rows), omitted, maxEventRows)
	}
	if !rows[0].Time.After(rows[len(rows)-1].Time) {
		t.Errorf("rows not newest first")
	}
	if rows, omitted := groupEvents(nil, func(string) string { return "" }, loc, ex); len(rows) != 0 || omitted != 0 {
		t.Errorf("no events: %v %d", rows, omitted)
	}
}

func TestReportUnit(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"m3", "m³"}, {"m2", "m²"}, {"g/m2", "g/m²"}, {"mg/m3", "mg/m³"}, {"m3/vehicle", "m³/辆"}, {"kgce/vehicle", "kgce/辆"},
		{"L/m2", "L/m²"}, {"Nm3", "Nm³"}, {"kgCO2/vehicle", "kgCO2/辆"}, {"%", "%"}, {"kWh", "kWh"}, {"", ""},
		{"measured 51.98 g/m2, benchmark ≤ 45 g/m2", "measured 51.98 g/m², benchmark ≤ 45 g/m²"},
		{"mm3", "mm³"}, {"cm23", "cm23"}, {"vehicles", "vehicles"}, {"vehicle", "辆"}, {"passenger vehicle", "passenger vehicle"},
	} {
		if got := reportUnit(c.in); got != c.want {
			t.Errorf("reportUnit(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestFitWidths(t *testing.T) {
	for _, c := range []struct {
		name           string
		ws, mins, want []float64
	}{
		{"fits", []float64{10, 20, 30}, []float64{5, 5, 5}, []float64{10, 20, 30}},
		// column 0 needs 4 more: taken from the others by their slack (15, 25)
		{"widened", []float64{10, 20, 30}, []float64{14, 5, 5}, []float64{14, 20 - 15*4.0/40, 30 - 25*4.0/40}},
		{"too narrow", []float64{10, 10}, []float64{30, 10}, []float64{15, 5}},
	} {
		got := fitWidths(c.ws, c.mins)
		sum, wantSum := 0.0, 0.0
		for i := range got {
			sum += got[i]
			wantSum += c.ws[i]
			if d := got[i] - c.want[i]; d > 1e-9 || d < -1e-9 {
				t.Errorf("%s: got %v, want %v", c.name, got, c.want)
				break
			}
		}
		if d := sum - wantSum; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s: total %v, want %v", c.name, sum, wantSum)
		}
	}
}

// splitLines never loses a character (fpdf's SplitText drops the Chinese
// character it breaks at) and never cuts a Latin word that fits a line.
func TestSplitLines(t *testing.T) {
	b := NewBuiltinPDF("")
	if b.FontPath == "" {
		t.Skip("no CJK font")
	}
	font, err := b.loadFont()
	if err != nil {
		t.Fatal(err)
	}
	d := newTestDoc(font)
	d.font(7.5, 20)
	for _, text := range []string{
		"单位涂装面积VOCs排放量 VOC emission per e-coated area",
		"低VOCs含量涂料(水性/高固体分/粉末)使用比例(按质量)，Share of low-VOC coatings (waterborne, high-solids, powder) by mass",
		"首次赋码：红码。依据：未达三级（国内一般）：综合评价指数 Y_III 为 27.50，三级要求全部指标达到三级基准值",
		"Weight\nkgce/辆",
		"averyveryveryverylongwordwithoutanyspacethatcannotfitonelineatall",
	} {
		for _, w := range []float64{12, 20, 35, 60} {
			lines := d.splitLines(text, w)
			joined := strings.Join(lines, "")
			if strip(joined) != strip(text) {
				t.Errorf("width %v: %q\nlost characters: %q", w, text, lines)
			}
			// Every word that fits a line is on one line.
			printed := map[string]int{}
			for _, l := range lines {
				for _, word := range latinWords(l) {
					printed[word]++
				}
			}
			for _, word := range latinWords(text) {
				if d.GetStringWidth(word)+2*d.GetCellMargin() <= w {
					if printed[word] == 0 {
						t.Errorf("width %v: %q cut: %q", w, word, lines)
					}
					printed[word]--
				}
			}
			for _, l := range lines {
				if d.GetStringWidth(l) > w-2*d.GetCellMargin()+0.01 && len(latinWords(l)) != 1 {
					t.Errorf("width %v: line %q is %.1f mm wide", w, l, d.GetStringWidth(l))
				}
				if strings.HasPrefix(l, "，") || strings.HasPrefix(l, "。") || strings.HasPrefix(l, "）") {
					t.Errorf("width %v: line %q starts with closing punctuation", w, l)
				}
			}
		}
	}
}

func strip(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\n' {
			return -1
		}
		return r
	}, s)
}

// newTestDoc is a page of the built-in writer with font as its body font.
func newTestDoc(font []byte) *pdfDoc {
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.AddUTF8FontFromBytes("body", "", font)
	pdf.AddPage()
	return &pdfDoc{Fpdf: pdf, family: "body"}
}

// TestReportPDFPages prints the reports of the fixture's Level I and red
// plants with each PDF writer and reads them back with pdftotext, page by
// page: a plausible page count, 第 N 页 / 共 M 页 on every page, no page
// (almost) blank, the Chinese names of quantities and the industry, units
// as m² and m³, and no English word split across lines of a cell: every
// word printed is a word of the report (its HTML, or the built-in writer's
// own labels).
func TestReportPDFPages(t *testing.T) {
	pdftotext := needTool(t, "poppler-utils", "pdftotext")
	f := newFixture(t)
	renderers := map[string]PDFRenderer{}
	if b := NewBuiltinPDF(""); b.FontPath != "" {
		renderers["builtin"] = b
	} else if os.Getenv("CLEANPROD_REQUIRE_SERVERS") == "1" {
		t.Error("no CJK font for the built-in PDF writer; scripts/test installs fonts-wqy-microhei")
	}
	if p := FindChromium(); p != "" {
		renderers["chromium"] = NewChromium(p)
	} else if os.Getenv("CLEANPROD_REQUIRE_SERVERS") == "1" {
		t.Error("chromium not found; scripts/test installs Debian chromium")
	}
	if len(renderers) == 0 {
		t.Skip("neither Chromium nor a CJK font for the built-in writer")
	}
	src, err := os.ReadFile("pdf_builtin.go")
	if err != nil {
		t.Fatal(err)
	}
	dir := artifactDir(t)
	for _, ent := range []string{entA, entB} {
		html := f.do(t, "GET", "/api/v1/enterprises/"+ent+"/report", supervisorToken, "")
		if html.Code != 200 {
			t.Fatalf("%s: HTML report %d", ent, html.Code)
		}
		vocab := words(pageText(html.Body.String()))
		for name, r := range renderers {
			t.Run(ent+"/"+name, func(t *testing.T) {
				h := newServer(f.handlerOptions(r)).handler()
				req := httptest.NewRequest("GET", "/api/v1/enterprises/"+ent+"/report?format=pdf", nil)
				req.Header.Set("Authorization", "Bearer "+supervisorToken)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 || w.Header().Get("Content-Type") != "application/pdf" {
					t.Fatalf("got %d %s %.200s", w.Code, w.Header().Get("Content-Type"), w.Body)
				}
				pdf := filepath.Join(dir, "pages-"+ent+"-"+name+".pdf")
				if err := os.WriteFile(pdf, w.Body.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				out, err := exec.Command(pdftotext, "-layout", pdf, "-").Output()
				if err != nil {
					t.Fatal(err)
				}
				pages := strings.Split(strings.TrimSuffix(string(out), "\f"), "\f")
				n := len(pages)
				if n < 4 || n > 25 {
					t.Errorf("%d pages, want 4 to 25", n)
				}
				for i, p := range pages {
					flat := strip(strings.ReplaceAll(p, "\t", ""))
					if want := fmt.Sprintf("第%d页/共%d页", i+1, n); !strings.Contains(flat, want) {
						t.Errorf("page %d lacks its number %q", i+1, want)
					}
					if i > 0 && !strings.Contains(flat, "清洁生产审核报告·") {
						t.Errorf("page %d lacks the running header", i+1)
					}
					// The header and footer are some 60 characters.
					if c := utf8.RuneCountInString(flat); c < 250 {
						t.Errorf("page %d is almost blank: %d characters:\n%s", i+1, c, p)
					}
				}
				// No page but the last ends early (a section or row kept
				// whole pushed to the next page): its text reaches past 60 %
				// of the page's height, the footer aside.
				bbox, err := exec.Command(pdftotext, "-bbox", pdf, "-").Output()
				if err != nil {
					t.Fatal(err)
				}
				fill := pageFill(string(bbox))
				if len(fill) != n {
					t.Fatalf("pdftotext -bbox found %d pages, -layout %d", len(fill), n)
				}
				for i, f := range fill[:n-1] {
					if f < 0.6 {
						t.Errorf("page %d ends at %.0f %% of its height, mostly blank:\n%s", i+1, 100*f, pages[i])
					}
				}
				text := string(out)
				for _, want := range []string{"化学需氧量", "电泳涂装面积", "新鲜水", "汽车制造业", "m³", "m²", "kgce/辆", "清洁生产方案", "第 1 页", "Rooftop photovoltaics"} {
					if want == "第 1 页" {
						continue // checked per page above, spacing aside
					}
					if !strings.Contains(text, want) {
						t.Errorf("the PDF's text lacks %q", want)
					}
				}
				if ent == entB {
					for _, want := range []string{"无/低费方案", "中/高费方案"} {
						if !strings.Contains(text, want) {
							t.Errorf("the red plant's PDF lacks %q", want)
						}
					}
				}
				if m := regexp.MustCompile(`\b(m[23]/|/m[23]\b|kgce/vehicle)`).FindString(text); m != "" {
					t.Errorf("the PDF prints the unit %q, want m², m³ and 辆", m)
				}
				known := vocab
				if name == "builtin" {
					known = words(string(src)) // the writer's own labels
					for w := range vocab {
						known[w] = true
					}
				}
				var split []string
				for w := range words(text) {
					if !known[w] && !slices.Contains(split, w) {
						split = append(split, w)
					}
				}
				slices.Sort(split)
				if len(split) > 0 {
					t.Errorf("words that are no word of the report (split across lines?): %q", split)
				}
			})
		}
	}
}

// pageText is the text of an HTML page: tags out, entities decoded.
func pageText(s string) string {
	s = regexp.MustCompile(`(?s)<style.*?</style>`).ReplaceAllString(s, " ")
	s = regexp.MustCompile(`</?(sub|sup)>`).ReplaceAllString(s, "") // Y<sub>I</sub> prints as YI
	s = regexp.MustCompile(`<[^>]*>`).ReplaceAllString(s, " ")
	return stdhtml.UnescapeString(s)
}

// words are the runs of Latin letters in s.
func words(s string) map[string]bool {
	out := map[string]bool{}
	for _, w := range regexp.MustCompile(`[A-Za-z]+`).FindAllString(s, -1) {
		out[w] = true
	}
	return out
}

// pageFill is, per page of pdftotext -bbox output, how far down the page
// its lowest word reaches (0 to 1), leaving out the footer (the bottom 8 %).
func pageFill(bbox string) []float64 {
	var out []float64
	for _, p := range strings.Split(bbox, "<page ")[1:] {
		m := regexp.MustCompile(`height="([0-9.]+)"`).FindStringSubmatch(p)
		if m == nil {
			out = append(out, 0)
			continue
		}
		h, _ := strconv.ParseFloat(m[1], 64)
		low := 0.0
		for _, w := range regexp.MustCompile(`yMin="([0-9.]+)" xMax="[0-9.]+" yMax="([0-9.]+)"`).FindAllStringSubmatch(p, -1) {
			y0, _ := strconv.ParseFloat(w[1], 64)
			y1, _ := strconv.ParseFloat(w[2], 64)
			if y0 < 0.92*h {
				low = max(low, y1/h)
			}
		}
		out = append(out, low)
	}
	return out
}

// Stale meters read per gateway, in the registry's gateway order.
func TestStaleByGateway(t *testing.T) {
	reg, _ := fleet(t)
	ent, ok := reg.Enterprise(entB)
	if !ok || len(ent.Gateways) < 2 {
		t.Fatalf("%s: want an enterprise of two gateways or more", entB)
	}
	g0, g1 := ent.Gateways[0], ent.Gateways[1]
	if len(g0.Meters) == 0 || len(g1.Meters) == 0 {
		t.Fatal("gateways without meters")
	}
	var stale []string
	for _, m := range g1.Meters {
		stale = append(stale, m.ID)
	}
	stale = append(stale, "NO-SUCH-METER", g0.Meters[0].ID)
	got := staleByGateway(ent, stale)
	if len(got) != 3 || got[0].Gateway != g0.ID || got[1].Gateway != g1.ID || got[2].Gateway != "" {
		t.Fatalf("got %+v, want %s, %s, then the unknown meter", got, g0.ID, g1.ID)
	}
	if len(got[0].Meters) != 1 || len(got[1].Meters) != len(g1.Meters) || got[2].Meters[0] != "NO-SUCH-METER" {
		t.Errorf("got %+v", got)
	}
	if got := staleByGateway(ent, nil); got != nil {
		t.Errorf("no stale meters: got %+v", got)
	}
}

// A report renders, as HTML and with the built-in writer, whatever the
// data: an enterprise with nothing at all, and one with huge values,
// non-finite benchmarks, endless names and characters outside the font.
func TestReportAnyData(t *testing.T) {
	f := newFixture(t)
	v, err := resultAt(context.Background(), f.points, f.std, f.pol, f.lib, entB, fixtureNow)
	if err != nil {
		t.Fatal(err)
	}
	ent, _ := f.reg.Enterprise(entB)
	build := func() *Report {
		rep, err := buildReport(context.Background(), reportInput{ent: ent, std: f.std, pol: f.pol, view: v, lib: f.lib, points: f.points,
			from: fixtureNow.Add(-30 * 24 * time.Hour), to: fixtureNow, now: fixtureNow})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	huge := build()
	long := strings.Repeat("Supercalifragilistic", 30) + "🏭"
	huge.Enterprise.Name, huge.Enterprise.NameZH = long, strings.Repeat("山川", 200)
	big := 1e300
	for i := range huge.Totals {
		for j := range huge.Totals[i].Values {
			huge.Totals[i].Values[j] = &big
		}
	}
	for i := range huge.Trends {
		for j := range huge.Trends[i].series {
			huge.Trends[i].series[j].v = float64(j%2*2-1) * 1e300
		}
	}
	for i := range huge.Plan {
		for j := range huge.Plan[i].Measures {
			huge.Plan[i].Measures[j].NameEN = long
			huge.Plan[i].Measures[j].Benefit = math.Inf(1)
		}
	}
	for i := 0; i < 500; i++ {
		huge.EventRows = append(huge.EventRows, EventRow{Time: fixtureNow, Last: fixtureNow, Kind: scoring.EventStale, Count: 2, Subject: long, ZH: long, EN: long})
	}
	empty := build()
	empty.Enterprise = EnterpriseDetail{EnterpriseSummary: EnterpriseSummary{ID: "empty"}}
	empty.Profile, empty.Coverage = Profile{}, Coverage{}
	empty.Totals, empty.Groups, empty.Plan, empty.Trends, empty.EventRows, empty.Declarations = nil, nil, nil, nil, nil, nil
	empty.Standard.Sources = nil
	b := NewBuiltinPDF("")
	for name, rep := range map[string]*Report{"huge": huge, "empty": empty} {
		html, err := renderReportHTML(rep)
		if err != nil || !bytes.Contains(html, []byte("</html>")) {
			t.Errorf("%s: HTML: %v", name, err)
		}
		if b.FontPath == "" {
			continue
		}
		pdf, err := b.RenderPDF(context.Background(), rep, html)
		if err != nil || !bytes.HasPrefix(pdf, []byte("%PDF-")) {
			t.Errorf("%s: built-in PDF: %v", name, err)
		}
		if bytes.Contains(pdf, []byte("NaN")) {
			t.Errorf("%s: the PDF has NaN coordinates", name)
		}
	}
}
