package main

import (
	"bytes"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersion: "cleanprod version" names the binary's version and Go's.
func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"version"}, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "cleanprod ") || !strings.Contains(out.String(), runtime.Version()) {
		t.Errorf("version: %q, want cleanprod and %s", out.String(), runtime.Version())
	}
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/cleanprod/cleanprod", Version: "v1.4.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "9103eb4c0ffee0123456789abcdef0123456789a"},
			{Key: "vcs.time", Value: "2026-12-06T21:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	if got, want := versionText(bi), "cleanprod v1.4.0 commit 9103eb4c0ffe (modified) built from 2026-12-06T21:00:00Z go1.26.8"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := versionText(&debug.BuildInfo{GoVersion: "go1.26.8"}), "cleanprod (devel) go1.26.8"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestReportSaysWhichToken: "cleanprod report -server" against a serve
// that wants a token says to pass -token or CLEANPROD_TOKEN when none is
// given, says the token was refused when it is not valid, and lets the
// right one (from CLEANPROD_TOKEN) through.
func TestReportSaysWhichToken(t *testing.T) {
	dir := t.TempDir()
	tokensFile := filepath.Join(dir, "tokens.yaml")
	var out bytes.Buffer
	if err := run(t.Context(), []string{"tokens", "add", "-role", "supervisor", "-name", "bureau", "-http.tokens_file", tokensFile,
		"-gateway_config", "testdata/gateway-config"}, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatalf("tokens add: %v\n%s", err, out.String())
	}
	token := regexp.MustCompile(`cp_\S+`).FindString(out.String())
	if token == "" {
		t.Fatalf("tokens add printed no token:\n%s", out.String())
	}
	s := startServe(t, nil, "-embedded_broker.listen", freeAddr(t), "-gateway_config", "testdata/gateway-config", "-http.tokens_file", tokensFile)
	ent := "test-plant" // testdata/gateway-config/plant.yaml
	report := func(env map[string]string, extra ...string) error {
		args := append([]string{"report", "-enterprise", ent, "-server", "http://" + s.http, "-out", filepath.Join(dir, "r.html")}, extra...)
		var out bytes.Buffer
		return run(t.Context(), args, func(k string) string { return env[k] }, &out, &out)
	}
	if err := report(nil); err == nil || !strings.Contains(err.Error(), "needs a token (401 Unauthorized): pass -token TOKEN or set CLEANPROD_TOKEN") {
		t.Errorf("no token: got %v, want the hint to pass -token or CLEANPROD_TOKEN", err)
	}
	if err := report(nil, "-token", "cp_wrong"); err == nil || !strings.Contains(err.Error(), "refused the token (401 Unauthorized, the token is not valid): pass a valid one with -token or CLEANPROD_TOKEN") {
		t.Errorf("wrong token: got %v, want it refused with the hint", err)
	}
	// The plant has sent nothing, so it has no evaluation to report (503):
	// the token from CLEANPROD_TOKEN got past authentication.
	if err := report(map[string]string{"CLEANPROD_TOKEN": token}); err == nil || !strings.Contains(err.Error(), "503") || strings.Contains(err.Error(), "token") {
		t.Errorf("the supervisor's token from CLEANPROD_TOKEN: got %v, want past the token to the plant's missing evaluation (503)", err)
	}
}
