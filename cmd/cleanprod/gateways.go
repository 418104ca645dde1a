package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cleanprod/cleanprod/registry"
)

// gateways runs "cleanprod gateways check [DIR]".
func gateways(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "Usage: cleanprod gateways check [DIR]")
		return errors.New("gateways: want the check subcommand")
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
