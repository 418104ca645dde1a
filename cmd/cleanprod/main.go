// Command cleanprod is the continuous cleaner-production audit service.
//
//	cleanprod serve              ingest gateway telemetry, score, serve the API
//	cleanprod report -enterprise ID -out FILE   an enterprise's audit report
//	cleanprod tokens add|list|revoke  the API's bearer tokens
//	cleanprod gateways check DIR validate a gateway registry folder
//
// Run "cleanprod help" for every subcommand and "cleanprod serve -help"
// for every setting.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var logged loggedError
		if !errors.Is(err, flag.ErrHelp) && !errors.As(err, &logged) {
			fmt.Fprintln(os.Stderr, "cleanprod:", err)
		}
		os.Exit(1)
	}
}

// loggedError is an error already written to the log as a record; main
// does not print it again.
type loggedError struct{ err error }

func (e loggedError) Error() string { return e.err.Error() }
func (e loggedError) Unwrap() error { return e.err }

const usage = `cleanprod: a continuous cleaner-production audit for factories.

Usage:
  cleanprod demo                       the service on its embedded defaults with a simulated fleet
  cleanprod serve [flags]              run the service (embedded broker and store unless configured)
  cleanprod simulate [flags]           publish a simulated fleet of car plants to a broker
  cleanprod report -enterprise ID [-from DATE] [-to DATE] -out FILE.html|FILE.pdf
                                       an enterprise's audit report (from the store, or -server URL -token T)
  cleanprod tokens add -role supervisor|enterprise [-enterprise ID] [-name NAME]
                                       add an API bearer token to http.tokens_file and print it once
  cleanprod tokens list | revoke -name NAME
                                       list the tokens of http.tokens_file (no secrets), remove one
  cleanprod gateways check [DIR]       validate a gateway registry folder (default gateway-config)
  cleanprod gateways mosquitto-acl     write mosquitto passwd and acl files from the registry
  cleanprod hj212 frame -mn MN -pw PW CODE-FIELD=VALUE ...
                                       write an HJ 212 data frame as a station's logger sends it
  cleanprod shards prepare|retire|list -shard.count N
                                       persistent sessions of a shard count on the broker, for a reshard
  cleanprod version                    the version, commit and Go version of this binary
  cleanprod help                       this text

Run "cleanprod serve -help" for every setting.
`

// noArguments refuses what is left after a subcommand's flags: flag
// parsing stops at the first non-flag, so "-influx.gzip false -x y" would
// otherwise run without the flags after it. Boolean flags take "=".
func noArguments(cmd string, rest []string) error {
	if len(rest) == 0 {
		return nil
	}
	return fmt.Errorf("%s takes no arguments, got %q: flags after it were not read either (a boolean flag takes \"=\", e.g. -influx.gzip=false)", cmd, rest)
}

// run is the whole program; main only supplies the process's context,
// arguments, environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no subcommand given")
	}
	switch args[0] {
	case "serve":
		cfg, rest, err := loadConfig("serve", args[1:], getenv, stderr)
		if err != nil {
			return err
		}
		if err := noArguments("serve", rest); err != nil {
			return err
		}
		return serve(ctx, cfg, stdout, stderr)
	case "simulate":
		return simulate(ctx, args[1:], stdout, stderr)
	case "demo":
		return demo(ctx, args[1:], getenv, stdout, stderr)
	case "gateways":
		return gateways(args[1:], stdout, stderr)
	case "report":
		return report(ctx, args[1:], getenv, stdout, stderr)
	case "tokens":
		return tokens(args[1:], getenv, stdout, stderr)
	case "shards":
		return shardsCommand(ctx, args[1:], getenv, stdout, stderr)
	case "hj212":
		return hj212Command(args[1:], time.Now(), stdout, stderr)
	case "version", "-version", "--version":
		if len(args) > 1 {
			return fmt.Errorf("version takes no arguments, got %q", args[1:])
		}
		return version(stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown subcommand %q", args[0])
	}
}
