package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/web"
)

// TestBrowser runs the demo and loads the fleet overview and one audit
// report in headless Chromium (Debian chromium) as a person would, with
// the supervisor token the demo prints: the visible text must be there,
// and a screenshot of each is left in $CLEANPROD_ARTIFACTS/browser (or
// the test's temporary folder) for people to look at.
func TestBrowser(t *testing.T) {
	chromium := web.FindChromium()
	if chromium == "" {
		if os.Getenv("CLEANPROD_REQUIRE_SERVERS") == "1" {
			t.Fatal("chromium not found; scripts/test installs Debian chromium")
		}
		t.Skip("chromium not found (Debian chromium); run scripts/test")
	}
	artifacts := os.Getenv("CLEANPROD_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	} else {
		artifacts = filepath.Join(artifacts, "browser")
		if err := os.MkdirAll(artifacts, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	httpAddr, brokerAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"demo", "-http.listen", httpAddr, "-embedded_broker.listen", brokerAddr,
			"-gateway_config", "../../gateway-config", "-scoring.declarations", "../../scoring/declarations", "-log.level", "warn"},
			func(string) string { return "" }, out, out)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo returned %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("demo did not stop within 30s")
		}
	})

	// The demo prints its tokens once the server is ready.
	tokenRE := regexp.MustCompile(`(?m)^\s+supervisor\s+(cp_\S+)$`)
	var token string
	waitFor(t, 60*time.Second, "the demo's tokens", func() bool {
		select {
		case err := <-done:
			t.Fatalf("demo exited: %v\n%s", err, out)
		default:
		}
		if m := tokenRE.FindStringSubmatch(out.String()); m != nil {
			token = m[1]
		}
		return token != ""
	})
	base := "http://" + httpAddr
	if !strings.Contains(out.String(), base+"/?token="+token) {
		t.Errorf("the demo does not print the overview's address:\n%s", out)
	}
	// Every enterprise has been evaluated (the scorer's first tick).
	waitFor(t, 60*time.Second, "every enterprise evaluated", func() bool {
		var list web.EnterpriseList
		if err := getJSON(base+"/api/v1/enterprises", token, &list); err != nil {
			return false
		}
		for _, e := range list.Enterprises {
			if !e.Evaluated {
				return false
			}
		}
		return len(list.Enterprises) == 4
	})

	browse := func(name, url string, want ...string) {
		t.Helper()
		dom := chromiumRun(t, chromium, "--dump-dom", url)
		for _, w := range want {
			if !bytes.Contains(dom, []byte(w)) {
				t.Errorf("%s: the page lacks %q", name, w)
			}
		}
		if bytes.Contains(dom, []byte(`"error"`)) && bytes.Contains(dom, []byte(`"code"`)) {
			t.Errorf("%s: got an API error instead of the page:\n%.500s", name, dom)
		}
		png := filepath.Join(artifacts, name+".png")
		chromiumRun(t, chromium, "--hide-scrollbars", "--window-size=1280,1600", "--screenshot="+png, url)
		if st, err := os.Stat(png); err != nil || st.Size() < 20_000 {
			t.Errorf("%s: screenshot %s: %v (too small to show the page)", name, png, err)
		} else {
			t.Logf("%s: screenshot %s", name, png)
		}
	}
	browse("overview", base+"/?token="+token,
		"清洁生产动态监管", "Fleet overview", "Enterprises by code", "Level distribution", "Latest regressions",
		"cq-lj-yuntai-auto", "cq-lj-shanchuan-auto", "/api/v1/enterprises/cq-lj-jiahe-motors/report")
	browse("report", base+"/api/v1/enterprises/cq-lj-yuntai-auto/report?token="+token,
		"清洁生产审核报告", "Cleaner-production audit report", "Yuntai Automobile", "Indicators against Level I / II / III",
		"Action plan: recommended measures", "Provenance of the standard", "<svg")

	// The PDF of the same report, through the API.
	req, _ := http.NewRequest("GET", base+"/api/v1/enterprises/cq-lj-yuntai-auto/report?format=pdf", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pdf, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.HasPrefix(pdf, []byte("%PDF-")) {
		t.Errorf("report PDF: %s %.300s", resp.Status, pdf)
	} else {
		os.WriteFile(filepath.Join(artifacts, "report.pdf"), pdf, 0o644)
	}
}

// chromiumRun runs headless Chromium with a fresh profile.
func chromiumRun(t *testing.T, chromium string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := web.RunChromium(ctx, chromium, t.TempDir(), args...)
	if err != nil {
		t.Fatalf("chromium %v: %v", args, err)
	}
	return out
}

func getJSON(url, token string, v any) error {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
