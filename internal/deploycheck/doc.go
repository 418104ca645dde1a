// Package deploycheck proves the files operators and supervisors deploy,
// which live in data folders and cannot test themselves: the Grafana
// dashboards and their provisioning (dashboards/), and the compose file,
// Kubernetes manifests, mosquitto, Prometheus and Alertmanager
// configuration (deploy/).
//
// The package has tests only. They check
//
//   - every dashboard decodes strictly with the grafana-foundation-sdk and
//     validates; its layout fits the grid without overlaps; every variable
//     it uses is defined and every one it defines is used; every datasource
//     it names is provisioned under that uid and type;
//   - every panel query runs, its variables substituted as Grafana does,
//     against a real InfluxDB filled with a simulated fleet (through the
//     real ingest pipeline) and the real scorer's outputs, or against a
//     real Prometheus scraping the same pipeline's and scorer's metrics,
//     and returns rows with the fields, labels and names the panel uses;
//   - the alerting rules pass promtool's checks and unit tests, they load
//     in a real Prometheus, their annotations link to existing dashboards,
//     and the Alertmanager example passes amtool and routes as documented;
//   - the deploy files parse, the files they mount exist, their ports,
//     hosts and paths agree with deploy/cleanprod.yaml and the service's
//     defaults, and mosquitto starts with the shipped mosquitto.conf and
//     the generated password file and ACL, and enforces them.
//
// Real servers come from internal/testenv (InfluxDB, mosquitto) and from
// PATH (prometheus, promtool, amtool; scripts/test installs them).
package deploycheck
