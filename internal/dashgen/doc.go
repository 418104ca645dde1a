// Package dashgen generates cleanprod's Grafana dashboards from Go with the
// grafana-foundation-sdk, so that they are typed and built from the
// indicator standard rather than written by hand.
//
// In: the indicator standard and the dynamic-code policy (the shipped ones
// by default): windows, groups, indicators with their Level I/II/III
// benchmarks, direction and restrictive flag; the policy's code window,
// completeness floor and stale time. Out: dashboard JSON files that
// Grafana imports from dashboards/json/ (provisioned by
// dashboards/provisioning/):
//
//   - cleanprod-fleet.json: codes, level distribution, overall and
//     per-indicator rankings, regressions and code changes, audits due;
//   - cleanprod-enterprise.json: one enterprise's code, level, indices,
//     every indicator against its benchmarks, lagging indicators, meter
//     freshness and gateways, consumption and production;
//   - cleanprod-ingest.json: the pipeline's Prometheus metrics.
//
// The InfluxDB panels read the measurements reading (store), score,
// indicator and event (scoring/point.go) through two datasources, Flux and
// InfluxQL; the others read Prometheus. Datasource and dashboard uids are
// the constants below; alert annotations link to the dashboards by them.
//
// The committed JSON is what Grafana imports; regenerate it with
//
//	go generate ./internal/dashgen
//
// and a test fails while it differs from what Generate returns.
// internal/deploycheck runs every panel query against real servers.
package dashgen

//go:generate go run ./cmd/dashgen -out ../../dashboards/json
