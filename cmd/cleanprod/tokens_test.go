package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cleanprod/cleanprod/web"
)

// TestTokensAddListRevoke runs the three token commands on one file: a
// name is unique, list shows no secret, revoke removes exactly one token,
// and the file stays readable by a service running as another user.
func TestTokensAddListRevoke(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	tokens := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(t.Context(), append([]string{"tokens"}, append(args, "-http.tokens_file", path, "-gateway_config", "../../gateway-config")...),
			func(string) string { return "" }, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	bureau, err := tokens("add", "-role", "supervisor", "-name", "bureau")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens("add", "-role", "enterprise", "-enterprise", "cq-lj-yuntai-auto"); err != nil {
		t.Fatal(err)
	}
	if _, err := tokens("add", "-role", "supervisor", "-name", "bureau"); !errors.Is(err, web.ErrTokenName) || !strings.Contains(err.Error(), `"bureau" is taken`) {
		t.Errorf("a second token named bureau: got %v, want it refused", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("tokens file mode: got %v %v, want 0644 (hashes only; the service runs as another user)", fi.Mode(), err)
	}
	list, err := tokens("list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bureau", "supervisor", "cq-lj-yuntai-auto"} {
		if !strings.Contains(list, want) {
			t.Errorf("list:\n%s\nwant it to name %q", list, want)
		}
	}
	secret := strings.TrimSpace(bureau[strings.LastIndex(bureau, "cp_"):])
	if strings.Contains(list, secret) || strings.Contains(list, web.HashToken(secret)) {
		t.Errorf("list shows a token or its whole hash:\n%s", list)
	}
	if _, err := tokens("revoke", "-name", "bureau"); err != nil {
		t.Fatal(err)
	}
	if _, err := tokens("revoke", "-name", "bureau"); !errors.Is(err, web.ErrTokenName) {
		t.Errorf("revoking a revoked token: got %v, want ErrTokenName", err)
	}
	ts, err := web.LoadTokens(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ts.Lookup(secret); ok || ts.Len() != 1 {
		t.Errorf("after revoke: bureau accepted %v, %d tokens left, want refused and 1", ok, ts.Len())
	}
}

// TestTokensFileRefusesDuplicateNames: a hand-edited file cannot give two
// tokens one name either.
func TestTokensFileRefusesDuplicateNames(t *testing.T) {
	data := "tokens:\n  - {name: a, sha256: " + web.HashToken("1") + ", role: supervisor}\n  - {name: a, sha256: " + web.HashToken("2") + ", role: supervisor}\n"
	if _, err := web.ParseTokens("tokens.yaml", []byte(data), nil); err == nil || !strings.Contains(err.Error(), `tokens.yaml:3`) {
		t.Errorf("got %v, want the second entry refused with its line", err)
	}
}
