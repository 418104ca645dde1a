// Command dashgen writes cleanprod's Grafana dashboards (package dashgen)
// for the shipped indicator standard and policy, or for the files given.
//
//	go run ./internal/dashgen/cmd/dashgen -out dashboards/json
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/cleanprod/cleanprod/internal/dashgen"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "dashgen:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dashgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "dashboards/json", "folder for the dashboard JSON files")
	stdFile := fs.String("standard", "", "indicator standard YAML (empty: the shipped one)")
	polFile := fs.String("policy", "", "dynamic-code policy YAML (empty: the shipped one)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	std, pol, err := dashgen.Load(*stdFile, *polFile)
	if err != nil {
		return err
	}
	files, err := dashgen.Generate(std, pol)
	if err != nil {
		return err
	}
	if err := dashgen.Write(*out, files); err != nil {
		return err
	}
	for _, f := range files {
		fmt.Fprintf(stdout, "wrote %s/%s\n", *out, f.Name)
	}
	return nil
}
