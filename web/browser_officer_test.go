package web

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBrowserOfficerPage opens an enterprise's own page with its token in
// Chromium at a phone's width: the page fits the screen (no sideways
// scrolling), its tables stack, and the benefits show as figures.
func TestBrowserOfficerPage(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.handler)
	t.Cleanup(srv.Close)
	b := startBrowser(t)
	b.call(b.session, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}, nil)

	b.navigate(srv.URL + "/enterprises/" + entB + "?token=" + otherToken)
	b.waitTrue("the officer's page", `document.querySelector('[data-measure="compressed_air_leaks"]')`, 30*time.Second)
	var where string
	b.eval(`location.pathname + location.search`, &where)
	if where != "/enterprises/"+entB {
		t.Errorf("the page is at %q: want the token moved into the cookie", where)
	}
	var fits struct {
		Scroll, Inner int
		Head          string
		KWh           string
	}
	b.eval(`({Scroll: document.documentElement.scrollWidth, Inner: window.innerWidth,
		Head: getComputedStyle(document.querySelector("#indicator-table thead")).display,
		KWh: document.querySelector('[data-measure="compressed_air_leaks"] [data-benefit="electricity_kwh"]').innerText})`, &fits)
	if fits.Scroll > fits.Inner {
		t.Errorf("the page is %d px wide on a %d px screen", fits.Scroll, fits.Inner)
	}
	if fits.Head != "none" {
		t.Errorf("the indicator table's head shows (%q) on a phone: want its rows stacked", fits.Head)
	}
	if strings.Trim(fits.KWh, "0123456789,") != "" || fits.KWh == "" {
		t.Errorf("compressed_air_leaks saves %q kWh: want a figure", fits.KWh)
	}
	b.screenshot("officer-phone")
}
