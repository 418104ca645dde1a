package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readmeSection returns the README's section under heading (up to the
// next "## ").
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	data, err := os.ReadFile(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no %q section", heading)
	}
	rest := text[i+len(heading)+2:]
	if j := strings.Index(rest, "\n## "); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// The README's section for supervisors and operators: its alert table
// lists every alert with its severity and audience, and no other; its
// dashboards exist; its commands name files that exist. (The stack's
// commands before docker compose run in TestStack; the others need Docker
// or a cluster, and what they read is checked by the tests of this
// package.)
func TestReadmeOperatorsSection(t *testing.T) {
	sec := readmeSection(t, "## Supervisors and operators")

	row := regexp.MustCompile("(?m)^\\| `(Cleanprod[A-Za-z]+)` \\| ([a-z]+), ([a-z]+) \\|")
	documented := map[string][2]string{}
	for _, m := range row.FindAllStringSubmatch(sec, -1) {
		documented[m[1]] = [2]string{m[2], m[3]}
	}
	for file, rules := range loadRules(t) {
		for _, r := range rules {
			if r.Alert == "" {
				continue
			}
			audience := r.Labels["audience"]
			if audience == "" {
				audience = "operator"
			}
			got, ok := documented[r.Alert]
			switch {
			case !ok:
				t.Errorf("README: alert %s (%s) is not in the alert table", r.Alert, file)
			case got != [2]string{r.Labels["severity"], audience}:
				t.Errorf("README: %s is %v in the table, %s/%s in %s", r.Alert, got, r.Labels["severity"], audience, file)
			}
			delete(documented, r.Alert)
		}
	}
	for name := range documented {
		t.Errorf("README: the alert table lists %s, which no rule defines", name)
	}

	uids := map[string]bool{}
	for _, d := range loadDashboards(t) {
		uids[d.uid] = true
	}
	for _, m := range regexp.MustCompile("`/d/([a-z-]+)").FindAllStringSubmatch(sec, -1) {
		if !uids[m[1]] {
			t.Errorf("README: dashboard /d/%s does not exist", m[1])
		}
	}

	var commands []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(sec, -1) {
		commands = append(commands, strings.Split(strings.TrimSpace(m[1]), "\n")...)
	}
	exists := func(p string) {
		if _, err := os.Stat(filepath.Join("../..", p)); err != nil {
			t.Errorf("README: %v", err)
		}
	}
	want := []string{"gateways mosquitto-acl", "make-certs.sh", "tokens add", "docker compose", "kubectl apply", "go generate", "TestKubernetesConfigMaps"}
	for _, c := range commands {
		f := strings.Fields(c)
		switch {
		case strings.HasPrefix(c, "docker compose -f "):
			exists(f[3])
			if filepath.Clean(filepath.Join("../..", f[3])) != filepath.Clean(composeFile) {
				t.Errorf("README: %q does not use %s", c, composeFile)
			}
			for i := 4; i+1 < len(f) && f[i] == "-f"; i += 2 {
				exists(f[i+1]) // an override, e.g. compose.shards.yaml
			}
		case strings.HasPrefix(c, "echo \"") && strings.HasSuffix(c, ">> deploy/.env"):
			// A setting appended to deploy/.env: .env.example names it.
			name, _, _ := strings.Cut(strings.TrimPrefix(c, "echo \""), "=")
			example, err := os.ReadFile(filepath.Join(deployDir, ".env.example"))
			if err != nil || !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(name)+`=`).Match(example) {
				t.Errorf("README: %q sets %s, which deploy/.env.example does not list", c, name)
			}
		case strings.HasPrefix(c, "kubectl apply -k "):
			exists(filepath.Join(f[3], "kustomization.yaml"))
		case strings.HasPrefix(c, "cp "):
			exists(f[1])
		case strings.HasPrefix(c, "go generate "):
			dir := strings.TrimSuffix(f[2], "/...")
			data, err := os.ReadFile(filepath.Join("../..", dir, "doc.go"))
			if err != nil || !strings.Contains(string(data), "//go:generate") {
				t.Errorf("README: %q: no //go:generate in %s/doc.go", c, dir)
			}
		case strings.HasPrefix(c, "go test ./internal/deploycheck -run "):
		case strings.HasPrefix(c, "go run ./cmd/cleanprod gateways mosquitto-acl"),
			strings.HasPrefix(c, "go run ./cmd/cleanprod tokens add"),
			strings.HasPrefix(c, "sudo deploy/mosquitto/make-certs.sh"):
			// Run as printed by TestStack.
		default:
			t.Errorf("README: command %q is not checked by any test", c)
		}
		want = slices.DeleteFunc(want, func(w string) bool { return strings.Contains(c, w) })
	}
	if len(want) > 0 {
		t.Errorf("README: the section lost its commands %v", want)
	}
}
