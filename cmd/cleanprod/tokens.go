package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/web"
)

const tokensUsage = `usage:
  cleanprod tokens add -role supervisor|enterprise [-enterprise ID] [-name NAME] [-http.tokens_file FILE]
  cleanprod tokens list [-http.tokens_file FILE]
  cleanprod tokens revoke -name NAME [-http.tokens_file FILE]`

// tokens runs "cleanprod tokens add|list|revoke" on http.tokens_file.
// add creates a random bearer token, appends its SHA-256 hash with a
// unique name, role and enterprise, and prints the token once: the file
// never holds the token itself. list prints the entries (never a token);
// revoke removes one by name.
func tokens(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(tokensUsage)
	}
	var role, enterprise, name string
	var flags func(fs *flag.FlagSet)
	switch args[0] {
	case "add":
		flags = func(fs *flag.FlagSet) {
			fs.StringVar(&role, "role", "", "supervisor (every enterprise) or enterprise (its own only)")
			fs.StringVar(&enterprise, "enterprise", "", "the enterprise id of an enterprise token")
			fs.StringVar(&name, "name", "", "a unique label for the token, shown in logs and declaration history (default: the enterprise id or the role)")
		}
	case "list":
		flags = func(*flag.FlagSet) {}
	case "revoke":
		flags = func(fs *flag.FlagSet) { fs.StringVar(&name, "name", "", "the name of the token to remove") }
	default:
		return errors.New(tokensUsage)
	}
	cmd := "tokens " + args[0]
	cfg, rest, err := loadConfig(cmd, args[1:], getenv, stderr, flags)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", cmd, rest)
	}
	if cfg.HTTP.TokensFile == "" {
		return fmt.Errorf("%s: name the file with -http.tokens_file (or CLEANPROD_HTTP_TOKENS_FILE, or the config file)", cmd)
	}
	path := cfg.HTTP.TokensFile
	switch args[0] {
	case "list":
		ts, err := web.ReadTokenFile(path, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tROLE\tENTERPRISE\tSHA256")
		for _, t := range ts {
			fmt.Fprintf(w, "%s\t%s\t%s\t%.12s…\n", t.Name, t.Role, t.Enterprise, t.SHA256)
		}
		return w.Flush()
	case "revoke":
		if name == "" {
			return fmt.Errorf("%s: -name is required (cleanprod tokens list shows the names)", cmd)
		}
		if err := web.RevokeToken(path, name, nil); err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		fmt.Fprintf(stderr, "revoked token %q in %s; a running serve refuses it after a reload (SIGHUP) or restart\n", name, path)
		return nil
	}
	r, err := web.ParseRole(role)
	if err != nil {
		return fmt.Errorf("%s: -role: %w", cmd, err)
	}
	if name == "" {
		name = string(r)
		if enterprise != "" {
			name = enterprise
		}
	}
	// Check the enterprise against the registry when there is one.
	var reg *registry.Registry
	if enterprise != "" {
		if reg, err = registry.Load(cfg.GatewayConfig); err != nil {
			return fmt.Errorf("%s: gateway registry (to check -enterprise): %w", cmd, err)
		}
	}
	tok, err := web.GenerateToken()
	if err != nil {
		return err
	}
	if err := web.AppendTokenFile(path, web.Token{Name: name, SHA256: web.HashToken(tok), Role: r, Enterprise: enterprise}, reg); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	fmt.Fprintf(stderr, "added %s token %q to %s; it is shown once, here (the file keeps its SHA-256 only):\n", r, name, path)
	fmt.Fprintln(stdout, tok)
	return nil
}
