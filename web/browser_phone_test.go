package web

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"
)

// TestBrowserPhonePages opens the supervisor's pages in Chromium at a
// phone's width (390 px): the overview, a case and a report fit the
// screen (no sideways scrolling), and a red code's badge opens in place,
// on a tap and from the keyboard, to its causes with links to the
// indicator's history and to the case opened on it; printed, every
// badge's causes show.
func TestBrowserPhonePages(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.handler)
	t.Cleanup(srv.Close)
	kase := decode[CaseDTO](t, f.do(t, "POST", "/api/v1/enterprises/"+entB+"/cases", supervisorToken,
		`{"reason": "VOC per m2 failed on the site visit", "indicator": "voc_per_m2"}`))
	b := startBrowser(t)
	b.call(b.session, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}, nil)
	b.call(b.session, "Emulation.setTouchEmulationEnabled", map[string]any{"enabled": true}, nil)

	fits := func(page string) {
		t.Helper()
		var w struct{ Scroll, Inner int }
		b.eval(`({Scroll: document.documentElement.scrollWidth, Inner: window.innerWidth})`, &w)
		if w.Scroll > w.Inner || w.Inner != 390 {
			t.Errorf("%s is %d px wide on a %d px screen: want no sideways scrolling at 390 px", page, w.Scroll, w.Inner)
		}
	}

	// smallTargets lists the links and controls on the page less than
	// 40 px high (a checkbox counts by its label).
	smallTargets := func(page string) {
		t.Helper()
		var small []string
		b.eval(`Array.from(document.querySelectorAll("a, button, summary, select, input:not([type=checkbox]), textarea, label:has(input[type=checkbox])")).filter(function (e) {
			return e.checkVisibility() && e.getBoundingClientRect().height < 40; }).map(function (e) { return e.outerHTML.slice(0, 80); })`, &small)
		if len(small) > 0 {
			t.Errorf("%s: tap targets under 40 px high: %v", page, small)
		}
	}

	b.navigate(srv.URL + "/?token=" + supervisorToken)
	b.waitTrue("the overview", `document.querySelectorAll("#rows tr").length > 1`, 30*time.Second)
	fits("the overview")
	smallTargets("the overview")

	// A tap on entB's red badge opens its causes in place.
	drill := fmt.Sprintf(`document.querySelector('#rows tr[data-id=%q] details[data-drill="code"]')`, entB)
	var before struct {
		Open, Shown bool
		Height      float64
	}
	b.eval(`({Open: `+drill+`.open, Shown: `+drill+`.querySelector("ul.causes").checkVisibility(),
		Height: `+drill+`.querySelector("summary").getBoundingClientRect().height})`, &before)
	if before.Open || before.Shown {
		t.Fatalf("%s's causes are open before a tap: want them behind the badge", entB)
	}
	if before.Height < 40 {
		t.Errorf("%s's badge is a %.0f px tap target: want 40 px at least", entB, before.Height)
	}
	tap(b, drill+`.querySelector("summary .badge")`)
	b.waitTrue("the causes of the red code", drill+`.open && `+drill+`.querySelector("ul.causes").checkVisibility()`, 10*time.Second)
	var causes struct {
		Kinds       []string
		Case, Hist  string
		Where       string
		Fits, Inner int
	}
	b.eval(`(function () { var d = `+drill+`; return {
		Kinds: Array.from(d.querySelectorAll("li[data-kind]")).map(function (li) { return li.dataset.kind; }),
		Case: (d.querySelector('li[data-indicator="voc_per_m2"] a[href^="/cases/"]') || {}).pathname || "",
		Hist: (d.querySelector('li[data-indicator="voc_per_m2"] a[href$="/history"]') || {}).pathname || "",
		Where: location.pathname, Fits: document.documentElement.scrollWidth, Inner: innerWidth}; })()`, &causes)
	if len(causes.Kinds) != 2 || causes.Kinds[0] != "below_iii" || causes.Kinds[1] != "restrictive_fail" {
		t.Errorf("%s's red code opens to causes %v, want below_iii and restrictive_fail (the API's code_reasons)", entB, causes.Kinds)
	}
	if causes.Case != "/cases/"+kase.ID {
		t.Errorf("the VOC cause links to case %q, want /cases/%s", causes.Case, kase.ID)
	}
	if want := "/api/v1/enterprises/" + entB + "/indicators/voc_per_m2/history"; causes.Hist != want {
		t.Errorf("the VOC cause links to history %q, want %s", causes.Hist, want)
	}
	if causes.Where != "/" {
		t.Errorf("the tap left the page for %s: want the causes in place", causes.Where)
	}
	if causes.Fits > causes.Inner {
		t.Errorf("with its causes open the overview is %d px wide on a %d px screen", causes.Fits, causes.Inner)
	}
	smallTargets("the overview with a drill-down open")
	b.screenshot("overview-phone-drill")

	// The level opens from the keyboard: focus its summary, press Enter.
	level := fmt.Sprintf(`document.querySelector('#rows tr[data-id=%q] details[data-drill="level"]')`, entB)
	b.eval(level+`.querySelector("summary").focus()`, nil)
	for _, typ := range []string{"keyDown", "keyUp"} {
		b.call(b.session, "Input.dispatchKeyEvent", map[string]any{"type": typ, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"}, nil)
	}
	b.waitTrue("the level's causes opened with Enter", level+`.open && `+level+`.querySelector('li[data-kind="below_iii"]')`, 10*time.Second)

	// On paper every drill-down shows its causes, opened or not.
	b.call(b.session, "Emulation.setEmulatedMedia", map[string]any{"media": "print"}, nil)
	var hidden int
	b.eval(`Array.from(document.querySelectorAll("#rows details.drill:not([open]) ul.causes")).filter(function (u) { return !u.checkVisibility(); }).length`, &hidden)
	if hidden > 0 {
		t.Errorf("printed, %d closed drill-downs hide their causes: want every cause on paper", hidden)
	}
	b.call(b.session, "Emulation.setEmulatedMedia", map[string]any{"media": ""}, nil)

	b.navigate(srv.URL + "/cases/" + kase.ID)
	b.waitTrue("the case page", `document.getElementById("form-acknowledge")`, 30*time.Second)
	fits("the case page")
	smallTargets("the case page")
	b.screenshot("case-phone")

	b.navigate(srv.URL + "/api/v1/enterprises/" + entB + "/report")
	b.waitTrue("the report", `document.querySelector("h1")`, 30*time.Second)
	fits("the report")
	b.screenshot("report-phone")
}

// tap touches the element el (a JavaScript expression) at its centre.
func tap(b *browser, el string) {
	b.t.Helper()
	var at struct{ X, Y float64 }
	b.eval(`(function () { var e = `+el+`; e.scrollIntoView({block: "center"}); var r = e.getBoundingClientRect(); return {X: r.left + r.width / 2, Y: r.top + r.height / 2}; })()`, &at)
	point := []map[string]any{{"x": at.X, "y": at.Y}}
	b.call(b.session, "Input.dispatchTouchEvent", map[string]any{"type": "touchStart", "touchPoints": point}, nil)
	b.call(b.session, "Input.dispatchTouchEvent", map[string]any{"type": "touchEnd", "touchPoints": []map[string]any{}}, nil)
}
