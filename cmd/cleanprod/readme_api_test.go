package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cleanprod/cleanprod/web"
)

// readmeCommands returns the cleanprod arguments of each "go run
// ./cmd/cleanprod ..." line of a README block.
func readmeCommands(t *testing.T, block string) [][]string {
	t.Helper()
	var out [][]string
	for _, line := range strings.Split(block, "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[0] == "go" && f[1] == "run" && f[2] == "./cmd/cleanprod" {
			out = append(out, f[3:])
		}
	}
	return out
}

func replaceArg(args []string, old, new string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, old, new)
	}
	return out
}

// TestReadmeAPI runs the README's "API and report" commands as printed:
// tokens add makes the tokens, serve takes them, curl and report -server
// use one; then report reads the stopped service's store by itself.
func TestReadmeAPI(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not found")
	}
	dir := t.TempDir()
	tokensFile := filepath.Join(dir, "tokens.yaml")
	var tokens []string
	for _, args := range readmeCommands(t, readmeBlock(t, "tokens add")) {
		args = append(replaceArg(args, "tokens.yaml", tokensFile), "-gateway_config", "../../gateway-config")
		var out, errOut bytes.Buffer
		if err := run(t.Context(), args, func(string) string { return "" }, &out, &errOut); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut.String())
		}
		tokens = append(tokens, strings.TrimSpace(out.String()))
	}
	if len(tokens) != 2 || !strings.HasPrefix(tokens[0], "cp_") {
		t.Fatalf("tokens add printed %q", tokens)
	}
	supervisor, yuntai := tokens[0], tokens[1]
	if data, _ := os.ReadFile(tokensFile); bytes.Contains(data, []byte(supervisor)) {
		t.Error("the tokens file holds a token, not only its hash")
	}

	dataDir := filepath.Join(dir, "data")
	serveArgs := []string{"-gateway_config", "../../gateway-config", "-data_dir", dataDir, "-embedded_broker.listen", freeAddr(t),
		"-http.tokens_file", tokensFile, "-scoring.interval", "200ms"}
	s := startServe(t, nil, serveArgs...)
	base := "http://" + s.http

	block := readmeBlock(t, "curl -s -H")
	env := map[string]string{"CLEANPROD_TOKEN": yuntai}
	for _, line := range strings.Split(block, "\n") {
		if !strings.HasPrefix(line, "curl ") {
			continue
		}
		cmd := exec.Command("bash", "-euc", strings.ReplaceAll(line, "http://127.0.0.1:8080", base))
		cmd.Env = append(os.Environ(), "CLEANPROD_TOKEN="+yuntai)
		out, err := cmd.Output()
		var d struct {
			ID        string `json:"id"`
			Evaluated bool   `json:"evaluated"`
		}
		if err != nil || json.Unmarshal(out, &d) != nil || d.ID != "cq-lj-yuntai-auto" {
			t.Errorf("README curl: %v\n%s", err, out)
		}
	}
	reports := readmeCommands(t, block)
	if len(reports) != 1 {
		t.Fatalf("README block has %d cleanprod commands, want the report", len(reports))
	}
	pdf := filepath.Join(dir, "yuntai.pdf")
	args := replaceArg(reports[0], "http://127.0.0.1:8080", base)
	args = replaceArg(args, "yuntai.pdf", pdf)
	var out bytes.Buffer
	if err := run(t.Context(), args, func(k string) string { return env[k] }, &out, &out); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out.String())
	}
	if data, _ := os.ReadFile(pdf); !bytes.HasPrefix(data, []byte("%PDF-")) {
		t.Errorf("report -server wrote %.100q", data)
	}
	// An enterprise token may not get another's report.
	err := run(t.Context(), replaceArg(args, "cq-lj-yuntai-auto", "cq-lj-jiahe-motors"), func(k string) string { return env[k] }, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("another enterprise's report: got %v, want 403", err)
	}

	// Offline: wait until the scorer stored an evaluation, stop, read the store.
	waitFor(t, 30*time.Second, "a stored evaluation", func() bool {
		var h web.HistoryDTO
		return getJSON(base+"/api/v1/enterprises/cq-lj-yuntai-auto/indicators/energy_per_vehicle/history", supervisor, &h) == nil && h.Stored > 0
	})
	// The embedded store is locked while serve runs.
	html := filepath.Join(dir, "yuntai.html")
	offline := []string{"report", "-enterprise", "cq-lj-yuntai-auto", "-out", html, "-data_dir", dataDir, "-gateway_config", "../../gateway-config",
		"-scoring.declarations", "../../scoring/declarations"}
	if err := run(t.Context(), offline, func(string) string { return "" }, &out, &out); err == nil || !strings.Contains(err.Error(), "-server") {
		t.Errorf("offline report while serve runs: got %v, want advice to use -server", err)
	}
	s.stop(t)
	if err := run(t.Context(), offline, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatalf("offline report: %v\n%s", err, out.String())
	}
	if data, _ := os.ReadFile(html); !bytes.Contains(data, []byte("rebuilt from the stored evaluation")) || !bytes.Contains(data, []byte("Yuntai Automobile")) {
		t.Errorf("offline report:\n%.500s", data)
	}
}

func TestReportAndTokensUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"report"}, "-enterprise is required"},
		{[]string{"report", "-enterprise", "x", "-format", "docx"}, `-format "docx"`},
		{[]string{"report", "-enterprise", "x", "-out", "report.docx"}, `-out "report.docx": a report is .html or .pdf, not .docx`},
		{[]string{"report", "-enterprise", "x", "-out", "report"}, `-out "report" has no extension: name it .html or .pdf, or give -format`},
		{[]string{"report", "-enterprise", "x", "-out", "r.PDF", "-format", "html"}, `-out "r.PDF" is a .pdf name but -format is html`},
		{[]string{"report", "-enterprise", "cq-lj-yuntai-auto", "-to", "soon", "-gateway_config", "../../gateway-config", "-scoring.declarations", "../../scoring/declarations"}, `-to "soon"`},
		{[]string{"tokens"}, "cleanprod tokens add"},
		{[]string{"tokens", "revoke", "-http.tokens_file", "x.yaml"}, "-name is required"},
		{[]string{"tokens", "add", "-role", "supervisor"}, "-http.tokens_file"},
		{[]string{"tokens", "add", "-role", "admin", "-http.tokens_file", "x.yaml"}, `role "admin"`},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := run(t.Context(), tt.args, func(string) string { return "" }, &out, &out)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: got %v, want %q", tt.args, err, tt.want)
		}
	}
}
