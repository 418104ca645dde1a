package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/web"
)

// tokens runs "cleanprod tokens add": it creates a random bearer token,
// appends its SHA-256 hash with role and enterprise to http.tokens_file
// and prints the token, once; the file never holds the token itself.
func tokens(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "add" {
		return errors.New("usage: cleanprod tokens add -role supervisor|enterprise [-enterprise ID] [-name NAME] [-http.tokens_file FILE]")
	}
	var role, enterprise, name string
	cfg, rest, err := loadConfig("tokens add", args[1:], getenv, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&role, "role", "", "supervisor (every enterprise) or enterprise (its own only)")
		fs.StringVar(&enterprise, "enterprise", "", "the enterprise id of an enterprise token")
		fs.StringVar(&name, "name", "", "a label for the token, shown in logs and declaration history (default: the enterprise id or the role)")
	})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("tokens add: unexpected arguments %q", rest)
	}
	if cfg.HTTP.TokensFile == "" {
		return errors.New("tokens add: name the file with -http.tokens_file (or CLEANPROD_HTTP_TOKENS_FILE, or the config file)")
	}
	r, err := web.ParseRole(role)
	if err != nil {
		return fmt.Errorf("tokens add: -role: %w", err)
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
			return fmt.Errorf("tokens add: gateway registry (to check -enterprise): %w", err)
		}
	}
	tok, err := web.GenerateToken()
	if err != nil {
		return err
	}
	if err := web.AppendTokenFile(cfg.HTTP.TokensFile, web.Token{Name: name, SHA256: web.HashToken(tok), Role: r, Enterprise: enterprise}, reg); err != nil {
		return fmt.Errorf("tokens add: %w", err)
	}
	fmt.Fprintf(stderr, "added %s token %q to %s; it is shown once, here (the file keeps its SHA-256 only):\n", r, name, cfg.HTTP.TokensFile)
	fmt.Fprintln(stdout, tok)
	return nil
}
