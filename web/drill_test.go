package web

import (
	"regexp"
	"strings"
	"testing"
)

// TestDrillDown: the overview's and the enterprise page's badges open to
// the causes behind them. entB is red, below Level III with its
// restrictive VOC indicator failing; with a case opened on VOC, its code
// opens to the API's two code reasons, the VOC one linking to its
// history and to the case; its level opens to the level's facts, where
// a restrictive failure is said once (not again as below Level II); and
// on its own page the VOC level opens to its value against the Level III
// benchmark.
func TestDrillDown(t *testing.T) {
	f := newFixture(t)
	kase := decode[CaseDTO](t, f.do(t, "POST", "/api/v1/enterprises/"+entB+"/cases", supervisorToken,
		`{"reason": "VOC per m2 failed on the site visit", "indicator": "voc_per_m2"}`))
	history := "/api/v1/enterprises/" + entB + "/indicators/voc_per_m2/history"

	page := func(target, token string) string {
		t.Helper()
		w := f.do(t, "GET", target, token, "")
		if w.Code != 200 {
			t.Fatalf("GET %s: %d", target, w.Code)
		}
		return w.Body.String()
	}
	details := regexp.MustCompile(`(?s)<details class="drill" data-drill="(\w+)">(.*?)</details>`)
	drills := func(html string) map[string][]string {
		out := map[string][]string{}
		for _, m := range details.FindAllStringSubmatch(html, -1) {
			out[m[1]] = append(out[m[1]], m[2])
		}
		return out
	}
	kinds := regexp.MustCompile(`data-kind="(\w+)"`)
	kindsOf := func(s string) []string {
		var out []string
		for _, m := range kinds.FindAllStringSubmatch(s, -1) {
			out = append(out, m[1])
		}
		return out
	}

	// The overview: entB's row.
	html := page("/", supervisorToken)
	i := strings.Index(html, `<tr data-id="`+entB+`"`)
	if i < 0 {
		t.Fatalf("no row of %s on the overview", entB)
	}
	row := html[i : i+strings.Index(html[i:], "</tr>")]
	d := drills(row)
	if len(d["code"]) != 1 || len(d["level"]) != 1 {
		t.Fatalf("%s's row has drill-downs %v: want one for its code and one for its level", entB, d)
	}
	code := d["code"][0]
	if got := strings.Join(kindsOf(code), ","); got != "below_iii,restrictive_fail" {
		t.Errorf("the code opens to %s, want below_iii,restrictive_fail", got)
	}
	for _, want := range []string{`<summary><span class="badge red">红码 red</span>`, `href="` + history + `"`, `href="/cases/` + kase.ID + `"`, `href="/enterprises/` + entB + `#ind-voc_per_m2"`} {
		if !strings.Contains(code, want) {
			t.Errorf("the code's drill-down lacks %s:\n%s", want, code)
		}
	}
	level := kindsOf(d["level"][0])
	if len(level) == 0 || level[0] != "below_iii" {
		t.Errorf("the level opens to %v, want below_iii first", level)
	}
	if strings.Count(d["level"][0], `data-indicator="voc_per_m2"`) != 1 {
		t.Errorf("the level's drill-down names VOC %d times, want once (restrictive_fail, not again as restrictive_below_ii):\n%s",
			strings.Count(d["level"][0], `data-indicator="voc_per_m2"`), d["level"][0])
	}

	// Only an enterprise with a case has the case tag.
	if n := strings.Count(html, `class="tag case-tag"`); n != 1 {
		t.Errorf("the overview has %d case tags, want 1 (entB's)", n)
	}

	// The enterprise page.
	html = page("/enterprises/"+entB, otherToken)
	d = drills(html)
	if len(d["code"]) != 1 || len(d["level"]) != 1 || len(d["indicator"]) == 0 {
		t.Fatalf("the page of %s has drill-downs for %d codes, %d levels, %d indicators: want 1, 1 and some", entB, len(d["code"]), len(d["level"]), len(d["indicator"]))
	}
	if !strings.Contains(d["code"][0], `href="#ind-voc_per_m2"`) || !strings.Contains(html, `id="ind-voc_per_m2"`) {
		t.Errorf("the code's VOC cause does not link to the VOC row of the same page")
	}
	var voc string
	for _, s := range d["indicator"] {
		if strings.Contains(s, `href="`+history+`"`) {
			voc = s
		}
	}
	for _, want := range []string{"实测 51.98 g/m²", "三级（国内一般）基准值 ≤ 45 g/m²", "（限定性指标）", `href="/cases/` + kase.ID + `"`} {
		if !strings.Contains(voc, want) {
			t.Errorf("VOC's drill-down lacks %q:\n%s", want, voc)
		}
	}
}
