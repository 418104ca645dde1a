package deploycheck

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cleanprod/cleanprod/internal/dashgen"
	"github.com/cleanprod/cleanprod/internal/yamlfile"
)

const (
	deployDir   = "../../deploy"
	serviceConf = deployDir + "/cleanprod.yaml"
	composeFile = deployDir + "/compose.yaml"
	readmeFile  = "../../README.md"
)

// serviceConfig is deploy/cleanprod.yaml, flattened to key paths
// ("mqtt.url") and string values.
type serviceConfig map[string]string

func loadServiceConfig(t *testing.T) serviceConfig {
	t.Helper()
	var doc map[string]any
	if _, err := yamlfile.DecodeFile(serviceConf, &doc); err != nil {
		t.Fatal(err)
	}
	c := serviceConfig{}
	var flatten func(prefix string, m map[string]any)
	flatten = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				flatten(prefix+k+".", sub)
				continue
			}
			c[prefix+k] = fmt.Sprint(v)
		}
	}
	flatten("", doc)
	return c
}

// documentedSettings reads the README's configuration table: key ->
// default ("" for none). The service's own test keeps that table equal to
// `cleanprod serve -help`.
func documentedSettings(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([a-z0-9_.]+)` \\| `CLEANPROD_[A-Z0-9_]+` \\| (?:`([^`]*)`|—) \\|")
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			out[m[1]] = m[2]
		}
	}
	if len(out) < 10 {
		t.Fatalf("%s: found %d settings in the configuration table", readmeFile, len(out))
	}
	return out
}

func port(t *testing.T, hostport string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%q: %v", hostport, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%q: %v", hostport, err)
	}
	return n
}

// urlHostPort returns host and port of a URL, with the scheme's default
// port.
func urlHostPort(t *testing.T, raw string) (string, int) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	p := u.Port()
	if p == "" {
		p = map[string]string{"http": "80", "https": "443", "tcp": "1883", "mqtt": "1883", "ssl": "8883"}[u.Scheme]
	}
	n, _ := strconv.Atoi(p)
	return u.Hostname(), n
}

// The shipped service configuration uses documented settings only, and
// its ports agree with the service's defaults.
func TestServiceConfigMatchesService(t *testing.T) {
	conf := loadServiceConfig(t)
	settings := documentedSettings(t)
	for k := range conf {
		if _, ok := settings[k]; !ok {
			t.Errorf("%s: %s is not a setting of the service", serviceConf, k)
		}
	}
	if got, def := port(t, conf["http.listen"]), port(t, settings["http.listen"]); got != def {
		t.Errorf("http.listen port %d, the service's default is %d", got, def)
	}
	// The broker is reached over TLS with a client certificate.
	if !strings.HasPrefix(conf["mqtt.url"], "ssl://") || conf["mqtt.ca_file"] == "" || conf["mqtt.cert_file"] == "" {
		t.Errorf("mqtt.url %s: want ssl:// with mqtt.ca_file and mqtt.cert_file", conf["mqtt.url"])
	}
	// The broker replaces client ids by user names
	// (use_username_as_clientid): the id cleanprod asks for is its user's.
	if conf["mqtt.client_id"] != conf["mqtt.username"] {
		t.Errorf("mqtt.client_id %q: the shipped broker uses the user name %q as the client id", conf["mqtt.client_id"], conf["mqtt.username"])
	}
	if conf["http.tokens_file"] == "" {
		t.Error("no http.tokens_file: the API and the overview would refuse every request")
	}
	if conf["influx.bucket"] != dashgen.DefaultBucket {
		t.Errorf("influx.bucket %q, the dashboards read %q", conf["influx.bucket"], dashgen.DefaultBucket)
	}
}

// mosquittoConf is deploy/mosquitto/mosquitto.conf: directive -> values.
func mosquittoConf(t *testing.T) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, "mosquitto", "mosquitto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		out[k] = append(out[k], strings.TrimSpace(v))
	}
	return out
}

// The mosquitto configuration queues instead of dropping, persists, and
// bounds what it hands cleanprod by what cleanprod holds (SETUP.md,
// README "Reliability").
func TestMosquittoConfSettings(t *testing.T) {
	mc := mosquittoConf(t)
	conf := loadServiceConfig(t)
	num := func(k string) int {
		if len(mc[k]) != 1 {
			t.Fatalf("mosquitto.conf: want one %s, got %v", k, mc[k])
		}
		n, err := strconv.Atoi(mc[k][0])
		if err != nil {
			t.Fatalf("mosquitto.conf: %s %q", k, mc[k][0])
		}
		return n
	}
	if q := num("max_queued_messages"); q < 100000 {
		t.Errorf("max_queued_messages %d: the default 1000 drops QoS 1 telemetry for a slow subscriber; want at least 100000", q)
	}
	inflight, _ := strconv.Atoi(conf["mqtt.max_inflight"])
	if m := num("max_inflight_messages"); m < 1 || m > inflight {
		t.Errorf("max_inflight_messages %d: want 1..mqtt.max_inflight (%d)", m, inflight)
	}
	payload, _ := strconv.Atoi(conf["ingest.max_payload_bytes"])
	if m := num("max_packet_size"); m <= payload {
		t.Errorf("max_packet_size %d: want above ingest.max_payload_bytes (%d), so oversized payloads are dead-lettered", m, payload)
	}
	for k, want := range map[string]string{"persistence": "true", "allow_anonymous": "false", "per_listener_settings": "false"} {
		if !slices.Equal(mc[k], []string{want}) {
			t.Errorf("mosquitto.conf: %s %v, want %s", k, mc[k], want)
		}
	}
	if len(mc["listener"]) != 1 {
		t.Fatalf("mosquitto.conf: want one listener (TLS; plain MQTT only where the operator asks), got %v", mc["listener"])
	}
	// Listener options follow their listener: TLS with client
	// certificates, and the client id bound to the user name.
	data, _ := os.ReadFile(filepath.Join(deployDir, "mosquitto", "mosquitto.conf"))
	after := string(data)[strings.Index(string(data), "\nlistener "):]
	for _, want := range []string{"use_username_as_clientid true", "require_certificate true", "certfile ", "keyfile ", "cafile "} {
		if !regexp.MustCompile(`(?m)^` + want).MatchString(after) {
			t.Errorf("mosquitto.conf: the listener lacks %q", want)
		}
	}
	lport, _ := strconv.Atoi(strings.Fields(mc["listener"][0])[0])
	if _, p := urlHostPort(t, conf["mqtt.url"]); p != lport {
		t.Errorf("mosquitto listens on %d, cleanprod.yaml's mqtt.url connects to %d", lport, p)
	}
}

// compose is the subset of the compose specification deploy/compose.yaml
// uses; decoding is strict, so a misspelt key is an error.
type compose struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string                      `yaml:"image"`
	Build       *composeBuild               `yaml:"build"`
	Restart     string                      `yaml:"restart"`
	Command     []string                    `yaml:"command"`
	Environment map[string]string           `yaml:"environment"`
	Ports       []string                    `yaml:"ports"`
	ReadOnly    bool                        `yaml:"read_only"`
	Tmpfs       []string                    `yaml:"tmpfs"`
	Volumes     []string                    `yaml:"volumes"`
	Healthcheck *composeHealthcheck         `yaml:"healthcheck"`
	DependsOn   map[string]composeCondition `yaml:"depends_on"`
	Networks    map[string]struct {
		Aliases []string `yaml:"aliases"`
	} `yaml:"networks"`
}

type composeHealthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	Retries     int      `yaml:"retries"`
	StartPeriod string   `yaml:"start_period"`
}

type composeCondition struct {
	Condition string `yaml:"condition"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

// mount is a volume entry: a bind mount (Source is a path relative to
// deploy/) or a named volume.
type mount struct {
	Source, Target string
	Named, RO      bool
}

func (s composeService) mounts() []mount {
	var out []mount
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		m := mount{Source: parts[0], Target: parts[1]}
		m.RO = len(parts) > 2 && parts[2] == "ro"
		m.Named = !strings.HasPrefix(m.Source, ".") && !strings.HasPrefix(m.Source, "/")
		out = append(out, m)
	}
	return out
}

// resolve maps a path inside the container to the mount that holds it and
// the path of the host file under deploy/ (empty for a named volume).
func resolve(mounts []mount, p string) (mount, string, bool) {
	var best mount
	found := false
	for _, m := range mounts {
		if (p == m.Target || strings.HasPrefix(p, m.Target+"/")) && len(m.Target) >= len(best.Target) {
			best, found = m, true
		}
	}
	if !found || best.Named {
		return best, "", found
	}
	return best, filepath.Join(deployDir, best.Source, strings.TrimPrefix(p, best.Target)), true
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	var c compose
	if _, err := yamlfile.DecodeFile(composeFile, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// generated lists files under deploy/ that the operator generates before
// `docker compose up` (README), so they are not in git.
var generated = map[string]string{
	"mosquitto/passwd":              "go run ./cmd/cleanprod gateways mosquitto-acl",
	"mosquitto/certs/ca.crt":        "deploy/mosquitto/make-certs.sh",
	"mosquitto/certs/broker.crt":    "deploy/mosquitto/make-certs.sh",
	"mosquitto/certs/broker.key":    "deploy/mosquitto/make-certs.sh",
	"mosquitto/certs/cleanprod.crt": "deploy/mosquitto/make-certs.sh",
	"mosquitto/certs/cleanprod.key": "deploy/mosquitto/make-certs.sh",
	"tokens/tokens.yaml":            "go run ./cmd/cleanprod tokens add",
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == "-"+name || a == "--"+name {
			if i+1 < len(args) {
				return args[i+1]
			}
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
		if v, ok := strings.CutPrefix(a, "-"+name+"="); ok {
			return v
		}
	}
	return ""
}

// The compose file: every file it mounts exists (or is generated as the
// README says), every named volume and dependency is declared, secrets
// come from .env.example's variables, and hosts, ports and paths agree
// with cleanprod.yaml, mosquitto.conf, prometheus.yml and the Grafana
// provisioning.
func TestComposeFile(t *testing.T) {
	c := loadCompose(t)
	conf := loadServiceConfig(t)
	envExample, err := os.ReadFile(filepath.Join(deployDir, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mosquitto", "influxdb", "cleanprod", "prometheus", "alertmanager", "grafana"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("compose: no service %s", name)
		}
	}
	varRef := regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)`)
	for name, s := range c.Services {
		if s.Image == "" {
			t.Errorf("compose: %s: no image", name)
		}
		for _, m := range s.mounts() {
			switch {
			case m.Named:
				if _, ok := c.Volumes[m.Source]; !ok {
					t.Errorf("compose: %s mounts volume %s, which is not declared", name, m.Source)
				}
			default:
				rel := filepath.ToSlash(filepath.Clean(m.Source))
				if _, err := os.Stat(filepath.Join(deployDir, m.Source)); err != nil {
					if how, ok := generated[rel]; ok {
						t.Logf("compose: %s mounts %s, generated by %s", name, rel, how)
						continue
					}
					t.Errorf("compose: %s mounts %s: %v", name, m.Source, err)
				}
			}
		}
		for d, cond := range s.DependsOn {
			if _, ok := c.Services[d]; !ok {
				t.Errorf("compose: %s depends on unknown service %s", name, d)
			}
			// Waiting for health, except Prometheus for cleanprod: it
			// scrapes whatever is up and alerts on what is not.
			if want := "service_healthy"; cond.Condition != want && !(name == "prometheus" && d == "cleanprod") {
				t.Errorf("compose: %s depends on %s with condition %q, want %s", name, d, cond.Condition, want)
			}
		}
		if hc := s.Healthcheck; hc == nil || len(hc.Test) < 2 || hc.Interval == "" || hc.Retries == 0 {
			t.Errorf("compose: %s has no healthcheck (test, interval, retries): %+v", name, hc)
		}
		// Configuration is mounted read-only everywhere; services write
		// to their named volumes only.
		for _, m := range s.mounts() {
			if !m.Named && !m.RO {
				t.Errorf("compose: %s mounts %s writable; configuration mounts are :ro", name, m.Source)
			}
		}
		// Services without authentication stay on the host's loopback.
		if name == "prometheus" || name == "alertmanager" {
			for _, p := range s.Ports {
				if !strings.HasPrefix(p, "127.0.0.1:") {
					t.Errorf("compose: %s publishes %s on every interface; it has no authentication (bind 127.0.0.1)", name, p)
				}
			}
		}
		if slices.ContainsFunc(s.Command, func(a string) bool { return strings.Contains(a, "enable-lifecycle") }) {
			t.Errorf("compose: %s enables the unauthenticated lifecycle API (%v)", name, s.Command)
		}
		for k, v := range s.Environment {
			for _, m := range varRef.FindAllStringSubmatch(v, -1) {
				if !regexp.MustCompile(`(?m)^` + m[1] + `=`).Match(envExample) {
					t.Errorf("compose: %s: %s uses ${%s}, which .env.example does not list", name, k, m[1])
				}
			}
		}
	}
	if b := c.Services["cleanprod"].Build; b == nil {
		t.Error("compose: cleanprod has no build")
	} else if _, err := os.Stat(filepath.Join(deployDir, b.Context, b.Dockerfile)); err != nil {
		t.Errorf("compose: cleanprod build: %v", err)
	}

	// cleanprod: its config file, the paths in it, its port.
	cp := c.Services["cleanprod"]
	cpMounts := cp.mounts()
	confPath := flagValue(cp.Command, "config")
	if _, host, ok := resolve(cpMounts, confPath); !ok || filepath.Clean(host) != filepath.Clean(serviceConf) {
		t.Errorf("compose: cleanprod reads -config %s, which is not deploy/cleanprod.yaml (%s)", confPath, host)
	}
	checkConfigPaths(t, "compose: cleanprod", conf, func(p string) (string, bool, bool) {
		m, host, ok := resolve(cpMounts, p)
		return host, m.Named, ok
	})
	if !cp.ReadOnly || !slices.Contains(cp.Tmpfs, "/tmp") {
		t.Errorf("compose: cleanprod: want read_only: true and a tmpfs /tmp (Chromium's profiles), got %v %v", cp.ReadOnly, cp.Tmpfs)
	}
	httpPort := port(t, conf["http.listen"])
	if !publishes(cp, httpPort) {
		t.Errorf("compose: cleanprod does not publish http.listen's port %d (ports %v)", httpPort, cp.Ports)
	}

	// The broker cleanprod connects to.
	host, p := urlHostPort(t, conf["mqtt.url"])
	mq, ok := c.Services[host]
	if !ok || !publishes(mq, p) {
		t.Errorf("compose: mqtt.url %s: no service %s publishing %d", conf["mqtt.url"], host, p)
	}
	mc := mosquittoConf(t)
	mqMounts := mq.mounts()
	if m, hostFile, ok := resolve(mqMounts, "/mosquitto/config/mosquitto.conf"); !ok || filepath.Base(hostFile) != "mosquitto.conf" || !m.RO {
		t.Errorf("compose: mosquitto does not mount mosquitto.conf read-only on /mosquitto/config/mosquitto.conf")
	}
	for _, k := range []string{"password_file", "acl_file", "certfile", "keyfile", "cafile"} {
		if _, hostFile, ok := resolve(mqMounts, mc[k][0]); !ok || filepath.Base(hostFile) != path.Base(mc[k][0]) {
			t.Errorf("compose: mosquitto.conf's %s %s is not mounted from deploy/mosquitto", k, mc[k][0])
		}
	}
	if m, _, ok := resolve(mqMounts, strings.TrimSuffix(mc["persistence_location"][0], "/")); !ok || !m.Named {
		t.Errorf("compose: mosquitto's persistence_location %s is not on a volume", mc["persistence_location"][0])
	}

	// InfluxDB: the database and the user cleanprod writes with.
	host, p = urlHostPort(t, conf["influx.url"])
	idb, ok := c.Services[host]
	if !ok || p != 8086 || idb.Environment["INFLUXDB_HTTP_BIND_ADDRESS"] != "" {
		t.Errorf("compose: influx.url %s: want service %s on InfluxDB's port 8086", conf["influx.url"], host)
	}
	db, _, _ := strings.Cut(conf["influx.bucket"], "/")
	if idb.Environment["INFLUXDB_DB"] != db || idb.Environment["INFLUXDB_HTTP_FLUX_ENABLED"] != "true" {
		t.Errorf("compose: influxdb: want INFLUXDB_DB=%s and Flux enabled, got %v", db, idb.Environment)
	}
	if user, _, _ := strings.Cut(cp.Environment["CLEANPROD_INFLUX_TOKEN"], ":"); user != idb.Environment["INFLUXDB_USER"] {
		t.Errorf("compose: cleanprod's token user %q is not INFLUXDB_USER %q", user, idb.Environment["INFLUXDB_USER"])
	}

	// Prometheus scrapes cleanprod and sends to Alertmanager.
	pr := c.Services["prometheus"]
	promConfPath := flagValue(pr.Command, "config.file")
	_, promConfHost, ok := resolve(pr.mounts(), promConfPath)
	if !ok {
		t.Fatalf("compose: prometheus -config.file %s is not mounted", promConfPath)
	}
	var pc struct {
		RuleFiles []string `yaml:"rule_files"`
		Alerting  struct {
			Alertmanagers []struct {
				StaticConfigs []struct {
					Targets []string `yaml:"targets"`
				} `yaml:"static_configs"`
			} `yaml:"alertmanagers"`
		} `yaml:"alerting"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
		Global map[string]any `yaml:"global"`
	}
	if _, err := yamlfile.DecodeFile(promConfHost, &pc); err != nil {
		t.Fatal(err)
	}
	targets := map[string][]string{}
	for _, sc := range pc.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			targets[sc.JobName] = append(targets[sc.JobName], st.Targets...)
		}
	}
	if want := fmt.Sprintf("cleanprod:%d", httpPort); !slices.Equal(targets["cleanprod"], []string{want}) {
		t.Errorf("prometheus.yml: job cleanprod scrapes %v, want %s", targets["cleanprod"], want)
	}
	for _, am := range pc.Alerting.Alertmanagers {
		for _, st := range am.StaticConfigs {
			for _, tg := range st.Targets {
				h, p, _ := net.SplitHostPort(tg)
				if s, ok := c.Services[h]; !ok || p != "9093" || !publishes(s, 9093) {
					t.Errorf("prometheus.yml: alertmanager %s is not a compose service on 9093", tg)
				}
			}
		}
	}
	for _, rf := range pc.RuleFiles {
		matches, _ := filepath.Glob(filepath.Join(filepath.Dir(promConfHost), rf))
		if len(matches) == 0 {
			t.Errorf("prometheus.yml: rule_files %s matches nothing", rf)
		}
	}
	am := c.Services["alertmanager"]
	if _, host, ok := resolve(am.mounts(), flagValue(am.Command, "config.file")); !ok {
		t.Errorf("compose: alertmanager's -config.file is not mounted")
	} else if _, err := os.Stat(host); err != nil {
		t.Errorf("compose: alertmanager config: %v", err)
	}

	// Grafana: provisioning and dashboards where the provider looks, and
	// datasources pointing at the compose services.
	gr := c.Services["grafana"]
	grMounts := gr.mounts()
	for target, src := range map[string]string{
		"/etc/grafana/provisioning/datasources": filepath.Dir(datasourcesFile),
		"/etc/grafana/provisioning/dashboards":  filepath.Dir(providersFile),
		grafanaDashboardsPath:                   dashboardsDir,
	} {
		if _, host, ok := resolve(grMounts, target); !ok || filepath.Clean(host) != filepath.Clean(src) {
			t.Errorf("compose: grafana: %s is mounted from %q, want %s", target, host, src)
		}
	}
	if home := gr.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" {
		if _, host, ok := resolve(grMounts, home); !ok {
			t.Errorf("compose: grafana home dashboard %s is not mounted", home)
		} else if _, err := os.Stat(host); err != nil {
			t.Errorf("compose: grafana home dashboard: %v", err)
		}
	}
	dsRaw, _ := os.ReadFile(datasourcesFile)
	dsText := regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(string(dsRaw), "")
	for _, m := range regexp.MustCompile(`\$\{?([A-Z_][A-Z0-9_]*)`).FindAllStringSubmatch(dsText, -1) {
		if _, ok := gr.Environment[m[1]]; !ok {
			t.Errorf("compose: grafana lacks %s, which the datasource provisioning uses", m[1])
		}
	}
	for _, ds := range loadDatasources(t).Datasources {
		h, p := urlHostPort(t, ds.URL)
		want := map[string]int{"influxdb": 8086, "prometheus": 9090}[h]
		if _, ok := c.Services[h]; !ok || p != want {
			t.Errorf("datasource %s: %s is not a compose service on its port", ds.UID, ds.URL)
		}
		if h == "influxdb" && ds.User != "" && !strings.Contains(ds.User, "GRAFANA_INFLUX_USER") {
			t.Errorf("datasource %s: user %s", ds.UID, ds.User)
		}
	}
	if gr.Environment["GRAFANA_INFLUX_USER"] != idb.Environment["INFLUXDB_READ_USER"] {
		t.Errorf("compose: grafana reads InfluxDB as %q, InfluxDB's read user is %q", gr.Environment["GRAFANA_INFLUX_USER"], idb.Environment["INFLUXDB_READ_USER"])
	}
}

// publishes reports whether a compose service publishes a container port.
func publishes(s composeService, p int) bool {
	for _, e := range s.Ports {
		parts := strings.Split(e, ":")
		if parts[len(parts)-1] == strconv.Itoa(p) {
			return true
		}
	}
	return false
}

// checkConfigPaths checks that every path setting of cleanprod.yaml is
// mounted: files and folders from the repository where they are, data_dir
// on a volume. at maps a container path to its host path (under deploy/),
// whether it is on a named volume, and whether it is mounted at all.
func checkConfigPaths(t *testing.T, where string, conf serviceConfig, at func(string) (host string, named, ok bool)) {
	t.Helper()
	sources := map[string]string{
		"gateway_config":       "../../gateway-config",
		"scoring.standard":     "../../scoring/standards/auto-manufacturing.yaml",
		"scoring.policy":       "../../scoring/policy/default.yaml",
		"scoring.solutions":    "../../scoring/solutions",
		"scoring.declarations": "../../scoring/declarations",
	}
	for key, src := range sources {
		p := conf[key]
		if p == "" {
			continue // the built-in copy
		}
		host, named, ok := at(p)
		switch {
		case !ok:
			t.Errorf("%s: %s %s is not mounted", where, key, p)
		case named:
			t.Errorf("%s: %s %s is on a volume, not the repository's %s", where, key, p, src)
		default:
			if filepath.Clean(host) != filepath.Clean(src) {
				t.Errorf("%s: %s %s comes from %s, want %s", where, key, p, host, src)
			}
			if _, err := os.Stat(host); err != nil {
				t.Errorf("%s: %s: %v", where, key, err)
			}
		}
	}
	// Files the operator generates (README): mounted from where the
	// commands write them.
	for _, key := range []string{"http.tokens_file", "mqtt.ca_file", "mqtt.cert_file", "mqtt.key_file"} {
		p := conf[key]
		if p == "" {
			continue
		}
		host, named, ok := at(p)
		rel, _ := filepath.Rel(deployDir, host)
		if _, gen := generated[filepath.ToSlash(rel)]; !ok || named || !gen {
			t.Errorf("%s: %s %s is not mounted from a file the README generates (%s)", where, key, p, host)
		}
	}
	if _, named, ok := at(conf["data_dir"]); !ok || !named {
		t.Errorf("%s: data_dir %s is not on a volume", where, conf["data_dir"])
	}
}

// The image: what the Dockerfile copies and builds exists, it exposes
// http.listen's port and runs the config path compose and Kubernetes mount.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	conf := loadServiceConfig(t)
	var exposed []string
	var cmd string
	for _, line := range strings.Split(text, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "COPY":
			if slices.ContainsFunc(fields, func(f string) bool { return strings.HasPrefix(f, "--from") }) {
				continue
			}
			for _, src := range fields[1 : len(fields)-1] {
				if _, err := os.Stat(filepath.Join("../..", src)); err != nil {
					t.Errorf("Dockerfile: COPY %s: %v", src, err)
				}
			}
		case "RUN":
			for _, m := range regexp.MustCompile(`go build .* (\./\S+)`).FindAllStringSubmatch(line, -1) {
				if _, err := os.Stat(filepath.Join("../..", m[1])); err != nil {
					t.Errorf("Dockerfile: builds %s: %v", m[1], err)
				}
			}
		case "EXPOSE":
			exposed = append(exposed, fields[1:]...)
		case "CMD":
			cmd = strings.Join(fields[1:], " ")
		}
	}
	// Report PDFs need Chromium and a CJK font in the image (web.BuiltinPDF
	// refuses to print without one), and the service runs unprivileged.
	for _, want := range []string{"chromium", "fonts-wqy-microhei"} {
		if !regexp.MustCompile(`(?m)^RUN .*apt-get install .*\b` + want + `\b`).MatchString(text) {
			t.Errorf("Dockerfile: the runtime image does not install %s", want)
		}
	}
	if m := regexp.MustCompile(`(?m)^USER (\S+)`).FindAllStringSubmatch(text, -1); len(m) == 0 || strings.HasPrefix(m[len(m)-1][1], "0") || strings.HasPrefix(m[len(m)-1][1], "root") {
		t.Errorf("Dockerfile: the image does not run as an unprivileged USER (%v)", m)
	}
	if want := strconv.Itoa(port(t, conf["http.listen"])); !slices.Contains(exposed, want) {
		t.Errorf("Dockerfile: EXPOSE %v, want http.listen's %s", exposed, want)
	}
	c := loadCompose(t)
	if want := flagValue(c.Services["cleanprod"].Command, "config"); !strings.Contains(cmd, want) {
		t.Errorf("Dockerfile: CMD %s does not read %s, which compose mounts", cmd, want)
	}
}
