#!/usr/bin/env bash
# Runs every go test -fuzz target of cleanprod briefly: the payload decoder,
# the normaliser's counter logic and the loaders of every configuration
# file. Without -fuzz, plain go test already runs their seeds and the
# crashers kept under testdata/fuzz/; this searches for new ones.
#
#   CLEANPROD_FUZZTIME  time per target (default 12s; 8 targets, so about
#                       2 minutes with the builds)
#   CLEANPROD_FUZZ_PARALLEL  fuzzing workers per target (default: go's, one
#                       per CPU)
#
# A failure leaves the input under PKG/testdata/fuzz/TARGET/: fix the bug,
# keep the file as a regression seed, and say so in the commit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

fuzztime=${CLEANPROD_FUZZTIME:-12s}
parallel=()
if [ -n "${CLEANPROD_FUZZ_PARALLEL:-}" ]; then
	parallel=(-parallel "$CLEANPROD_FUZZ_PARALLEL")
fi

# package target
targets=(
	"./ingest FuzzDecode"
	"./ingest FuzzNormalise"
	"./registry FuzzParse"
	"./scoring FuzzParseStandard"
	"./scoring FuzzParsePolicy"
	"./scoring FuzzParseDeclarations"
	"./internal/yamlfile FuzzDecode"
	"./cmd/cleanprod FuzzLoadConfig"
)

status=0
for t in "${targets[@]}"; do
	read -r pkg target <<<"$t"
	start=$SECONDS
	log=$(mktemp)
	# -fuzzminimizetime: minimising every new interesting input for the
	# default minute would eat the whole budget.
	fuzz() { go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s "${parallel[@]}" "$pkg" >"$log" 2>&1; }
	ok=0
	fuzz && ok=1
	# Go's fuzzing engine now and then ends a run with "context deadline
	# exceeded" and no failing input, when the time runs out while a
	# worker minimises a new interesting input: not a finding. Run again
	# once then; a real failure writes its input and fails either way.
	if [ "$ok" = 0 ] && grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
		echo "note $pkg $target: the fuzzing engine timed out without a failing input; running again"
		fuzz && ok=1
	fi
	if [ "$ok" = 1 ]; then
		execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
		echo "ok   $pkg $target: ${execs:-?} execs in $((SECONDS - start))s"
	else
		echo "FAIL $pkg $target ($((SECONDS - start))s):"
		cat "$log"
		status=1
	fi
	rm -f "$log"
done
exit "$status"
