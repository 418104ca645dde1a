#!/usr/bin/env bash
# Checks every Prometheus rule file in deploy/prometheus and runs its
# promtool unit tests (firing and not firing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../deploy/prometheus"
for rules in *-rules.yml; do
	promtool check rules "$rules"
done
for tests in *_test.yml; do
	promtool test rules "$tests"
done
