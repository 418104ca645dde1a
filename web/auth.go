package web

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/cleanprod/cleanprod/internal/atomicfile"
	"github.com/cleanprod/cleanprod/internal/yamlfile"
	"github.com/cleanprod/cleanprod/registry"
)

// Role is what a token may see.
type Role string

// Roles.
const (
	// RoleSupervisor sees every enterprise (the ecology and environment
	// bureau).
	RoleSupervisor Role = "supervisor"
	// RoleEnterprise sees its own enterprise only; rankings show the
	// others anonymised.
	RoleEnterprise Role = "enterprise"
)

// Principal is who a request was authenticated as.
type Principal struct {
	Name       string // label of the token, for logs and declaration history
	Role       Role
	Enterprise string // RoleEnterprise only
}

// Sees reports whether p may see enterprise id.
func (p Principal) Sees(id string) bool {
	return p.Role == RoleSupervisor || p.Enterprise == id
}

// Token is one entry of the tokens file: the SHA-256 of a bearer token
// (never the token itself) and what it grants.
type Token struct {
	Name       string `yaml:"name"`
	SHA256     string `yaml:"sha256"`
	Role       Role   `yaml:"role"`
	Enterprise string `yaml:"enterprise,omitempty"`
}

// Tokens is a loaded set of tokens. It is immutable and safe for
// concurrent use; a nil *Tokens refuses every token.
type Tokens struct {
	mu     sync.RWMutex // guards byHash, which Replace swaps
	byHash map[[sha256.Size]byte]Principal
}

type tokensFile struct {
	Tokens []Token `yaml:"tokens"`
}

// LoadTokens reads a tokens file:
//
//	tokens:
//	  - name: bureau
//	    sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
//	    role: supervisor
//	  - name: yuntai
//	    sha256: ...
//	    role: enterprise
//	    enterprise: cq-lj-yuntai-auto
//
// Every problem is reported at once with file and line. When reg is not
// nil, an enterprise token must name a registered enterprise.
func LoadTokens(path string, reg *registry.Registry) (*Tokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load tokens: %w", err)
	}
	return ParseTokens(path, data, reg)
}

// ParseTokens validates a tokens file read from name.
func ParseTokens(name string, data []byte, reg *registry.Registry) (*Tokens, error) {
	var f tokensFile
	doc, err := yamlfile.Decode(name, data, &f)
	if err != nil {
		return nil, err
	}
	ts := &Tokens{byHash: make(map[[sha256.Size]byte]Principal, len(f.Tokens))}
	var errs []error
	for i, t := range f.Tokens {
		if err := ts.add(t, i, reg); err != nil {
			errs = append(errs, doc.Errorf(yamlfile.P("tokens", i, err.key), "%s", err.msg))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ts, nil
}

// NewTokens builds a token set from entries, e.g. the demo's.
func NewTokens(entries ...Token) (*Tokens, error) {
	ts := &Tokens{byHash: make(map[[sha256.Size]byte]Principal, len(entries))}
	var errs []error
	for i, t := range entries {
		if err := ts.add(t, i, nil); err != nil {
			errs = append(errs, fmt.Errorf("token %d: %w", i+1, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ts, nil
}

// add validates t and adds it; the error says what is wrong and which key
// of the entry it concerns.
func (ts *Tokens) add(t Token, i int, reg *registry.Registry) *tokenError {
	raw, err := hex.DecodeString(strings.ToLower(t.SHA256))
	if err != nil || len(raw) != sha256.Size {
		return &tokenError{"sha256", "sha256: want the 64 hex digits of a SHA-256 hash (cleanprod tokens add writes them)"}
	}
	h := [sha256.Size]byte(raw)
	if _, dup := ts.byHash[h]; dup {
		return &tokenError{"sha256", "the same token is listed twice"}
	}
	if t.Name != "" {
		for _, p := range ts.byHash {
			if p.Name == t.Name {
				return &tokenError{"name", fmt.Sprintf("name %q is listed twice: names tell tokens apart in logs, declaration history and tokens revoke", t.Name)}
			}
		}
	}
	switch t.Role {
	case RoleSupervisor:
		if t.Enterprise != "" {
			return &tokenError{"enterprise", "a supervisor token sees every enterprise: remove enterprise"}
		}
	case RoleEnterprise:
		if !registry.ValidID(t.Enterprise) {
			return &tokenError{"role", fmt.Sprintf("an enterprise token needs a valid enterprise id, got %q", t.Enterprise)}
		}
		if reg != nil {
			if _, ok := reg.Enterprise(t.Enterprise); !ok {
				return &tokenError{"enterprise", fmt.Sprintf("enterprise %q is not in the gateway registry", t.Enterprise)}
			}
		}
	default:
		return &tokenError{"role", fmt.Sprintf("role %q: want supervisor or enterprise", t.Role)}
	}
	name := t.Name
	if name == "" {
		name = fmt.Sprintf("token %d", i+1)
	}
	ts.byHash[h] = Principal{Name: name, Role: t.Role, Enterprise: t.Enterprise}
	return nil
}

type tokenError struct{ key, msg string }

func (e *tokenError) Error() string { return e.msg }

// Len returns the number of tokens.
func (ts *Tokens) Len() int {
	if ts == nil {
		return 0
	}
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	return len(ts.byHash)
}

// Replace makes ts accept exactly the tokens of other (a reloaded tokens
// file), for the handlers that hold ts.
func (ts *Tokens) Replace(other *Tokens) {
	other.mu.RLock()
	m := other.byHash
	other.mu.RUnlock()
	ts.mu.Lock()
	ts.byHash = m
	ts.mu.Unlock()
}

// Lookup returns the principal of a bearer token. Only hashes are
// compared, so the lookup leaks nothing about stored tokens.
func (ts *Tokens) Lookup(token string) (Principal, bool) {
	if ts == nil || token == "" {
		return Principal{}, false
	}
	h := sha256.Sum256([]byte(token))
	ts.mu.RLock()
	p, ok := ts.byHash[h]
	ts.mu.RUnlock()
	return p, ok
}

// HashToken returns the hex SHA-256 of a bearer token, as the tokens file
// stores it.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// GenerateToken returns a new random bearer token ("cp_" and 43
// URL-safe characters, 256 bits).
func GenerateToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return "cp_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// ReadTokenFile returns the entries of the tokens file at path, checked
// as LoadTokens checks them; a missing file has none.
func ReadTokenFile(path string, reg *registry.Registry) ([]Token, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	if _, err := ParseTokens(path, data, reg); err != nil {
		return nil, err
	}
	var f tokensFile
	if _, err := yamlfile.Decode(path, data, &f); err != nil {
		return nil, err
	}
	return f.Tokens, nil
}

// ErrTokenName is returned by AppendTokenFile for a name the file already
// has, and by RevokeToken for a name it does not have.
var ErrTokenName = errors.New("web: token name")

// AppendTokenFile appends a token entry to the tokens file at path,
// creating it if needed. A name already in the file is refused: names
// identify tokens in logs, in declaration history and to RevokeToken.
func AppendTokenFile(path string, t Token, reg *registry.Registry) error {
	ts, err := ReadTokenFile(path, reg)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(ts, func(o Token) bool { return o.Name == t.Name }) {
		return fmt.Errorf("%w %q is taken in %s: choose another -name, or revoke the old token first", ErrTokenName, t.Name, path)
	}
	return writeTokenFile(path, append(ts, t), reg)
}

// RevokeToken removes the token named name from the tokens file at path.
// A running serve stops accepting it on its next reload (SIGHUP).
func RevokeToken(path, name string, reg *registry.Registry) error {
	ts, err := ReadTokenFile(path, reg)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(ts, func(o Token) bool { return o.Name == name })
	if i < 0 {
		return fmt.Errorf("%w %q is not in %s", ErrTokenName, name, path)
	}
	return writeTokenFile(path, slices.Delete(ts, i, i+1), reg)
}

// writeTokenFile writes ts to path atomically, after checking that the
// result loads. The file is readable by all (0644): it holds SHA-256
// hashes of 256-bit random tokens, which reveal nothing, and the service
// reading it runs as another user than the operator writing it.
func writeTokenFile(path string, ts []Token, reg *registry.Registry) error {
	var b strings.Builder
	b.WriteString("# Bearer tokens of the cleanprod API: SHA-256 hashes only.\n# Written by cleanprod tokens add|revoke; cleanprod tokens list shows them.\n")
	if len(ts) == 0 {
		b.WriteString("tokens: []\n")
	} else {
		b.WriteString("tokens:\n")
	}
	for _, t := range ts {
		fmt.Fprintf(&b, "  - name: %q\n    sha256: %s\n    role: %s\n", t.Name, t.SHA256, t.Role)
		if t.Enterprise != "" {
			fmt.Fprintf(&b, "    enterprise: %s\n", t.Enterprise)
		}
	}
	if _, err := ParseTokens(path, []byte(b.String()), reg); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, []byte(b.String()), 0o644)
}

var validRoles = []Role{RoleSupervisor, RoleEnterprise}

// ParseRole parses "supervisor" or "enterprise".
func ParseRole(s string) (Role, error) {
	if r := Role(s); slices.Contains(validRoles, r) {
		return r, nil
	}
	return "", fmt.Errorf("role %q: want supervisor or enterprise", s)
}
