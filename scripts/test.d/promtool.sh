#!/usr/bin/env bash
# Checks the Prometheus configuration and every rule file in
# deploy/prometheus, runs the rules' promtool unit tests (firing and not
# firing), and checks the Alertmanager example with amtool.
# (internal/deploycheck runs these too, and more: routes, links, coverage.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../deploy/prometheus"
for rules in *-rules.yml; do
	promtool check rules "$rules"
done
for tests in *_test.yml; do
	promtool test rules "$tests"
done
promtool check config prometheus.yml
amtool check-config ../alertmanager/alertmanager.yml
