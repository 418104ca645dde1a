package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cleanprod/cleanprod/gatewayauth"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/shard"
)

const gatewaysUsage = `Usage:
  cleanprod gateways check [DIR]
  cleanprod gateways mosquitto-acl [-dir DIR] [-credentials FILE] [-out DIR] [-service-user NAME] [-shard-counts N,M]
`

// gateways runs "cleanprod gateways check|mosquitto-acl".
func gateways(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "mosquitto-acl" {
		return mosquittoACL(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(stderr, gatewaysUsage)
		return errors.New("gateways: want check or mosquitto-acl")
	}
	dir := "gateway-config"
	if len(args) > 1 {
		dir = args[1]
	}
	reg, err := registry.Load(dir)
	if err != nil {
		lines := strings.Split(err.Error(), "\n")
		fmt.Fprintf(stderr, "%s: %d problem(s):\n", dir, len(lines))
		for _, l := range lines {
			fmt.Fprintln(stderr, "  "+l)
		}
		return fmt.Errorf("gateway registry %s is not valid", dir)
	}
	fmt.Fprintf(stdout, "%s: OK: %d enterprises, %d gateways, %d meters\n", dir, len(reg.Enterprises), reg.GatewayCount(), reg.MeterCount())
	for _, e := range reg.Enterprises {
		fmt.Fprintf(stdout, "  %-24s %-40s %d gateways, %d meters\n", e.ID, e.Name, len(e.Gateways), len(e.Meters))
	}
	return nil
}

// mosquittoACL writes a mosquitto password file and ACL for the registry,
// keeping the passwords already in the credentials file.
func mosquittoACL(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gateways mosquitto-acl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "gateway-config", "gateway registry folder")
	credFile := fs.String("credentials", "deploy/mosquitto/credentials.txt", "plain-text user:password file; kept, completed with new gateways (keep it secret)")
	out := fs.String("out", "deploy/mosquitto", "folder for the generated passwd and acl files")
	service := fs.String("service-user", "cleanprod", "broker user of the cleanprod service")
	shardCounts := fs.String("shard-counts", "", "shard counts to add broker users for, e.g. 3 or 2,3: users {service-user}-{i}of{n} with the service's password and rights, one per shard (serve logs in as one with mqtt.username {service-user}-{shard})")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var counts []int
	for f := range strings.SplitSeq(*shardCounts, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 2 || n > shard.MaxCount {
			return fmt.Errorf("-shard-counts %q: want shard counts from 2 to %d separated by commas", *shardCounts, shard.MaxCount)
		}
		counts = append(counts, n)
	}
	shardUsers := gatewayauth.ShardUsers(*service, counts)
	reg, err := registry.Load(*dir)
	if err != nil {
		return fmt.Errorf("gateway registry %s: %w", *dir, err)
	}
	creds := gatewayauth.Credentials{}
	if f, err := os.Open(*credFile); err == nil {
		creds, err = gatewayauth.ReadCredentials(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", *credFile, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	added, err := creds.Complete(reg, *service, gatewayauth.MonitorUser)
	if err != nil {
		return err
	}
	shared, err := creds.Share(*service, shardUsers...)
	if err != nil {
		return err
	}
	added = append(added, shared...)
	pw, err := gatewayauth.PasswordFile(creds)
	if err != nil {
		return err
	}
	var cb bytes.Buffer
	if err := creds.Write(&cb); err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{*credFile, cb.Bytes(), 0o600},
		// Readable by the broker's user, which mosquitto switches to before
		// reading it: hashes (PBKDF2-SHA512) of 144-bit random passwords.
		{filepath.Join(*out, "passwd"), pw, 0o644},
		{filepath.Join(*out, "acl"), gatewayauth.ACL(reg, *service, shardUsers...), 0o644},
	} {
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "wrote %s and %s for %d gateways (%d new users); credentials in %s\n",
		filepath.Join(*out, "passwd"), filepath.Join(*out, "acl"), reg.GatewayCount(), len(added), *credFile)
	return nil
}
