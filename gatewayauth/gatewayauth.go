// Package gatewayauth turns the gateway registry into broker credentials
// and access rules, so that each gateway may publish only under its own
// topic prefix cp/v1/{enterprise}/{gateway}/.
//
// For mosquitto it writes a password file (PBKDF2-SHA512, the $7$ format
// of mosquitto_passwd) and an ACL file. Gateway user names are
// "{enterprise}.{gateway}". Plain-text passwords live in a credentials file
// the operator keeps secret and hands to each gateway; running the
// generator again keeps existing passwords and adds new gateways only.
//
// cleanprod still checks every topic against the registry (defence in
// depth): the broker rules stop a gateway from even reaching another's
// topic.
package gatewayauth

import (
	"bufio"
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/cleanprod/cleanprod/registry"
)

// MonitorUser is the broker user for operators and tools that read the
// dead-letter topics, the scoring events and gateway status.
const MonitorUser = "cleanprod-monitor"

// UserName returns the broker user name of a gateway.
func UserName(g *registry.Gateway) string { return g.Enterprise.ID + "." + g.ID }

// Credentials maps user names to plain-text passwords.
type Credentials map[string]string

// ReadCredentials parses "user:password" lines (# comments allowed).
func ReadCredentials(r io.Reader) (Credentials, error) {
	c := Credentials{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, pw, ok := strings.Cut(line, ":")
		if !ok || user == "" || pw == "" {
			return nil, fmt.Errorf("credentials line %d: want user:password", n)
		}
		c[user] = pw
	}
	return c, sc.Err()
}

// Write writes the credentials as "user:password" lines, sorted.
func (c Credentials) Write(w io.Writer) error {
	users := make([]string, 0, len(c))
	for u := range c {
		users = append(users, u)
	}
	sort.Strings(users)
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "# cleanprod broker credentials: keep secret; give each gateway its own line.")
	for _, u := range users {
		fmt.Fprintf(bw, "%s:%s\n", u, c[u])
	}
	return bw.Flush()
}

// Complete adds a random password for every gateway of reg and for each
// service user that has none, and returns the users it added.
func (c Credentials) Complete(reg *registry.Registry, serviceUsers ...string) ([]string, error) {
	var added []string
	add := func(u string) error {
		if _, ok := c[u]; ok {
			return nil
		}
		b := make([]byte, 18)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		c[u] = base64.RawURLEncoding.EncodeToString(b)
		added = append(added, u)
		return nil
	}
	for _, u := range serviceUsers {
		if err := add(u); err != nil {
			return nil, err
		}
	}
	for _, e := range reg.Enterprises {
		for _, g := range e.Gateways {
			if err := add(UserName(g)); err != nil {
				return nil, err
			}
		}
	}
	return added, nil
}

// ShardUsers returns the broker users of the shards of serviceUser for
// each shard count of counts above 1: "{serviceUser}-{i}of{n}", the user
// name serve logs in as with mqtt.username "{serviceUser}-{shard}". A
// broker that makes the user name the client id (mosquitto's
// use_username_as_clientid) then keeps each shard's session apart.
func ShardUsers(serviceUser string, counts []int) []string {
	var users []string
	for _, n := range counts {
		if n < 2 {
			continue
		}
		for i := range n {
			users = append(users, fmt.Sprintf("%s-%dof%d", serviceUser, i, n))
		}
	}
	return users
}

// Share gives each of users that has no password the password of from
// (which must have one), and returns the users it added: the shards of
// the service share its password, so that every replica is given the
// same secret whatever its shard.
func (c Credentials) Share(from string, users ...string) ([]string, error) {
	pw, ok := c[from]
	if !ok {
		return nil, fmt.Errorf("share the password of %s: it has none", from)
	}
	var added []string
	for _, u := range users {
		if _, ok := c[u]; !ok {
			c[u] = pw
			added = append(added, u)
		}
	}
	return added, nil
}

// HashPassword returns a mosquitto password-file hash ($7$: PBKDF2 with
// SHA-512, 101 iterations, 12-byte salt), as mosquitto_passwd writes.
func HashPassword(password string) (string, error) {
	salt := make([]byte, 12)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	return hashWithSalt(password, salt, 101)
}

func hashWithSalt(password string, salt []byte, iter int) (string, error) {
	key, err := pbkdf2.Key(sha512.New, password, salt, iter, sha512.Size)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("$7$%d$%s$%s", iter, base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(key)), nil
}

// PasswordFile returns a mosquitto password file for the credentials.
func PasswordFile(c Credentials) ([]byte, error) {
	users := make([]string, 0, len(c))
	for u := range c {
		users = append(users, u)
	}
	sort.Strings(users)
	var b bytes.Buffer
	for _, u := range users {
		h, err := HashPassword(c[u])
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	return b.Bytes(), nil
}

// ACL returns a mosquitto acl_file: the service user, and each of
// shardUsers (see ShardUsers), reads all telemetry (contract v1 and
// forwarded HJ 212 frames)
// and writes dead-letters, events, its watchdog and the replicas'
// statuses; the monitor user reads
// dead-letters, events and status; each gateway writes only under its own
// prefix and its status topic. Anonymous clients get nothing.
func ACL(reg *registry.Registry, serviceUser string, shardUsers ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintln(&b, "# Generated by cleanprod gateways mosquitto-acl from the gateway registry; do not edit.")
	for i, u := range append([]string{serviceUser}, shardUsers...) {
		if i == 0 {
			fmt.Fprintf(&b, "\n# cleanprod service\nuser %s\n", u)
		} else {
			fmt.Fprintf(&b, "\n# cleanprod service, one shard\nuser %s\n", u)
		}
		fmt.Fprintln(&b, "topic read cp/v1/+/+/telemetry")
		fmt.Fprintln(&b, "topic read cp/v1/+/+/hj212")
		fmt.Fprintln(&b, "topic read cp/v1/+/+/status")
		fmt.Fprintln(&b, "topic write cp/v1/deadletter/#")
		fmt.Fprintln(&b, "topic write cp/v1/+/events")
		fmt.Fprintln(&b, "topic readwrite cleanprod/watchdog/#")
		fmt.Fprintln(&b, "topic readwrite cleanprod/replicas/#")
	}
	fmt.Fprintf(&b, "\n# operators and tools: dead-letters, events, gateway status (read only)\nuser %s\n", MonitorUser)
	fmt.Fprintln(&b, "topic read cp/v1/deadletter/#")
	fmt.Fprintln(&b, "topic read cp/v1/+/events")
	fmt.Fprintln(&b, "topic read cp/v1/+/+/status")
	for _, e := range reg.Enterprises {
		for _, g := range e.Gateways {
			fmt.Fprintf(&b, "\n# %s: %s\nuser %s\n", e.ID, g.ID, UserName(g))
			fmt.Fprintf(&b, "topic write cp/v1/%s/%s/telemetry\n", e.ID, g.ID)
			if g.Station != nil {
				// Only a gateway of an HJ 212 station forwards its frames.
				fmt.Fprintf(&b, "topic write cp/v1/%s/%s/hj212\n", e.ID, g.ID)
			}
			fmt.Fprintf(&b, "topic write cp/v1/%s/%s/status\n", e.ID, g.ID)
		}
	}
	return b.Bytes()
}
