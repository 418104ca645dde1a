package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// version writes what this binary is: its module version (a tag with go
// install, "(devel)" from a checkout), the commit and time it was built
// from, whether the tree had changes, and the Go version.
func version(stdout io.Writer) error {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintln(stdout, "cleanprod (no build information in this binary)")
		return nil
	}
	fmt.Fprintln(stdout, versionText(bi))
	return nil
}

func versionText(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, at string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cleanprod %s", v)
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		fmt.Fprintf(&b, " commit %s", rev)
		if modified {
			b.WriteString(" (modified)")
		}
	}
	if at != "" {
		fmt.Fprintf(&b, " built from %s", at)
	}
	fmt.Fprintf(&b, " %s", bi.GoVersion)
	return b.String()
}
