package deploycheck

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

var update = flag.Bool("update", false, "rewrite deploy/kubernetes/config/ from its sources")

const (
	k8sDir    = deployDir + "/kubernetes"
	configDir = k8sDir + "/config"
)

// configMapSources are the ConfigMaps that deploy/kubernetes/config/
// generates (kustomize configMapGenerator) and the files they hold: a
// file, or every *.yaml of a folder. kustomize reads files only below its
// kustomization, so the folder holds copies.
var configMapSources = []struct{ name, source string }{
	{"cleanprod-config", serviceConf},
	{"cleanprod-gateway-config", "../../gateway-config"},
	{"cleanprod-standards", "../../scoring/standards"},
	{"cleanprod-policy", "../../scoring/policy"},
	{"cleanprod-solutions", "../../scoring/solutions"},
	{"cleanprod-declarations", "../../scoring/declarations"},
}

func configMapFiles(t *testing.T, source string) []string {
	t.Helper()
	if strings.HasSuffix(source, ".yaml") {
		return []string{source}
	}
	files, err := filepath.Glob(filepath.Join(source, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: no YAML files (%v)", source, err)
	}
	return files
}

// generateConfigFolder returns what deploy/kubernetes/config/ holds:
// path (relative to it) -> content.
func generateConfigFolder(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	var k strings.Builder
	k.WriteString("# Generated from deploy/cleanprod.yaml, gateway-config/ and scoring/ by\n" +
		"#   go test ./internal/deploycheck -run TestKubernetesConfigMaps -update\n" +
		"# Do not edit: change the sources and generate again. The ConfigMaps'\n" +
		"# names end in a hash of their content, so a change rolls the pod.\n" +
		"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n" +
		"generatorOptions:\n  labels:\n    app.kubernetes.io/name: cleanprod\nconfigMapGenerator:\n")
	for _, cm := range configMapSources {
		fmt.Fprintf(&k, "  - name: %s\n    files:\n", cm.name)
		for _, f := range configMapFiles(t, cm.source) {
			content, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rel := cm.name + "/" + filepath.Base(f)
			out[rel] = content
			fmt.Fprintf(&k, "      - %s\n", rel)
		}
	}
	out["kustomization.yaml"] = []byte(k.String())
	return out
}

// The generated folder holds exactly the files its ConfigMaps are made
// from.
func TestKubernetesConfigMaps(t *testing.T) {
	want := generateConfigFolder(t)
	if *update {
		if err := os.RemoveAll(configDir); err != nil {
			t.Fatal(err)
		}
		for rel, data := range want {
			os.MkdirAll(filepath.Dir(filepath.Join(configDir, rel)), 0o755)
			if err := os.WriteFile(filepath.Join(configDir, rel), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := map[string][]byte{}
	err := filepath.WalkDir(configDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(configDir, p)
		got[filepath.ToSlash(rel)], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for rel, data := range want {
		if !bytes.Equal(got[rel], data) {
			t.Errorf("%s/%s is not what its source makes: run go test ./internal/deploycheck -run TestKubernetesConfigMaps -update", configDir, rel)
		}
	}
	for rel := range got {
		if _, ok := want[rel]; !ok {
			t.Errorf("%s/%s has no source: run go test ./internal/deploycheck -run TestKubernetesConfigMaps -update", configDir, rel)
		}
	}
}

// renderKustomize renders deploy/kubernetes as kubectl apply -k does,
// with the kustomize library kubectl embeds.
func renderKustomize(t *testing.T) []map[string]any {
	t.Helper()
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), k8sDir)
	if err != nil {
		t.Fatalf("kustomize build deploy/kubernetes: %v", err)
	}
	out, err := resources.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	return decodeManifests(t, "kustomize build deploy/kubernetes", out)
}

// decodeManifests decodes every document of a YAML stream.
func decodeManifests(t *testing.T, file string, data []byte) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if doc != nil {
			out = append(out, doc)
		}
	}
}

// get walks a decoded YAML document: keys for maps, ints for lists.
func get(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, keys ...any) string { s, _ := get(v, keys...).(string); return s }

func list(v any, keys ...any) []any { l, _ := get(v, keys...).([]any); return l }

// The manifests: kustomization lists them all; the StatefulSet runs one
// pod per shard (shard.count = replicas, the index from the pod's host
// name, the peers through a headless Service, each pod its own MQTT
// client id) with probes on /healthz and /readyz, resources, secrets by
// reference, and mounts every path cleanprod.yaml names from the
// ConfigMap made of it; the Services and the PodDisruptionBudget select
// its pods, which it lets go one at a time.
func TestKubernetesManifests(t *testing.T) {
	var kust struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Labels     []struct {
			Pairs map[string]string `yaml:"pairs"`
		} `yaml:"labels"`
		Resources []string `yaml:"resources"`
		Images    []struct {
			Name    string `yaml:"name"`
			NewName string `yaml:"newName"`
			NewTag  string `yaml:"newTag"`
		} `yaml:"images"`
	}
	data, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	for _, f := range files {
		if name := filepath.Base(f); name != "kustomization.yaml" && !slices.Contains(kust.Resources, name) {
			t.Errorf("kustomization.yaml does not list %s", name)
		}
	}
	if !slices.Contains(kust.Resources, "config") {
		t.Error("kustomization.yaml does not list config (the generated ConfigMaps)")
	}
	for _, r := range kust.Resources {
		if _, err := os.Stat(filepath.Join(k8sDir, r)); err != nil {
			t.Errorf("kustomization.yaml: %v", err)
		}
	}
	byKind := map[string][]map[string]any{}
	for _, doc := range renderKustomize(t) {
		kind := str(doc, "kind")
		if str(doc, "apiVersion") == "" || kind == "" || str(doc, "metadata", "name") == "" {
			t.Errorf("rendered: a document without apiVersion, kind or name: %v", doc)
		}
		byKind[kind] = append(byKind[kind], doc)
	}
	if len(byKind["StatefulSet"]) != 1 || len(byKind["Deployment"]) != 0 {
		t.Fatalf("want one StatefulSet and no Deployment, got %d and %d", len(byKind["StatefulSet"]), len(byKind["Deployment"]))
	}
	dep := byKind["StatefulSet"][0]
	conf := loadServiceConfig(t)
	pod := get(dep, "spec", "template")
	podLabels, _ := get(pod, "metadata", "labels").(map[string]any)
	selects := func(what string, sel any) {
		m, _ := sel.(map[string]any)
		if len(m) == 0 {
			t.Errorf("%s: empty selector", what)
		}
		for k, v := range m {
			if podLabels[k] != v {
				t.Errorf("%s: selector %s=%v does not match the pod's labels %v", what, k, v, podLabels)
			}
		}
	}
	selects("StatefulSet", get(dep, "spec", "selector", "matchLabels"))
	replicas, _ := get(dep, "spec", "replicas").(int)
	containers := list(pod, "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("StatefulSet: want one container, got %d", len(containers))
	}
	c := containers[0]
	checkShards(t, dep, c, replicas, byKind["Service"])
	httpPort := port(t, conf["http.listen"])
	portName := ""
	for _, p := range list(c, "ports") {
		if n, _ := get(p, "containerPort").(int); n == httpPort {
			portName = str(p, "name")
		}
	}
	if portName == "" {
		t.Errorf("container: no port %d (http.listen)", httpPort)
	}
	if got := str(pod, "metadata", "annotations", "prometheus.io/port"); got != strconv.Itoa(httpPort) {
		t.Errorf("pod: prometheus.io/port %q, want %d", got, httpPort)
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
		p := get(c, probe, "httpGet")
		if str(p, "path") != path || (str(p, "port") != portName && get(p, "port") != httpPort) {
			t.Errorf("container: %s %v, want GET %s on port %s", probe, p, path, portName)
		}
	}
	for _, k := range [][]any{{"requests", "cpu"}, {"requests", "memory"}, {"limits", "memory"}} {
		if get(c, append([]any{"resources"}, k...)...) == nil {
			t.Errorf("container: no resources.%s.%s", k[0], k[1])
		}
	}
	envs := map[string]any{}
	for _, e := range list(c, "env") {
		envs[str(e, "name")] = e
	}
	for _, name := range []string{"CLEANPROD_MQTT_PASSWORD", "CLEANPROD_INFLUX_TOKEN"} {
		ref := get(envs[name], "valueFrom", "secretKeyRef")
		if str(ref, "name") == "" || str(ref, "key") == "" {
			t.Errorf("container: %s does not come from a Secret", name)
		}
	}

	// Mounts: container path -> volume -> ConfigMap -> source file.
	volumes := map[string]any{}
	for _, v := range list(pod, "spec", "volumes") {
		volumes[str(v, "name")] = v
	}
	// Generated ConfigMaps carry a hash of their content in their name,
	// so that a change makes a new pod.
	cmSource := map[string]string{}
	configMaps := map[string]map[string]any{}
	for _, cm := range byKind["ConfigMap"] {
		name := str(cm, "metadata", "name")
		d, _ := cm["data"].(map[string]any)
		configMaps[name] = d
		for _, src := range configMapSources {
			if regexp.MustCompile(`^` + src.name + `-[a-z0-9]{10}$`).MatchString(name) {
				cmSource[name] = src.source
			}
		}
		if _, ok := cmSource[name]; !ok {
			t.Errorf("ConfigMap %s: not a generated one with a content hash (kustomize configMapGenerator)", name)
		}
	}
	// Secrets the operator creates from the files the README generates.
	secretSource := map[string]string{"cleanprod-tokens": "tokens", "cleanprod-mqtt": "mosquitto/certs"}
	at := func(p string) (host string, named, ok bool) {
		var best any
		bestPath := ""
		for _, m := range list(c, "volumeMounts") {
			mp := str(m, "mountPath")
			if (p == mp || strings.HasPrefix(p, mp+"/")) && len(mp) > len(bestPath) {
				best, bestPath = m, mp
			}
		}
		if best == nil {
			return "", false, false
		}
		v, ok := volumes[str(best, "name")]
		if !ok {
			t.Errorf("container: mount %s of unknown volume %s", bestPath, str(best, "name"))
			return "", false, false
		}
		if get(v, "emptyDir") != nil || get(v, "persistentVolumeClaim") != nil {
			return "", true, true
		}
		if sec := str(v, "secret", "secretName"); sec != "" {
			dir, ok := secretSource[sec]
			if !ok {
				t.Errorf("volume %s: Secret %s is not one the README makes", str(v, "name"), sec)
				return "", false, false
			}
			return filepath.Join(deployDir, dir, strings.TrimPrefix(strings.TrimPrefix(p, bestPath), "/")), false, true
		}
		name := str(v, "configMap", "name")
		src, known := cmSource[name]
		if !known || configMaps[name] == nil {
			t.Errorf("volume %s: ConfigMap %q is not a generated one", str(v, "name"), name)
			return "", false, false
		}
		rest := strings.TrimPrefix(strings.TrimPrefix(p, bestPath), "/")
		if rest == "" { // the folder itself
			return src, false, true
		}
		if _, ok := configMaps[name][rest]; !ok {
			t.Errorf("%s: ConfigMap %s has no key %s", p, name, rest)
		}
		if strings.HasSuffix(src, ".yaml") {
			return src, false, true
		}
		return filepath.Join(src, rest), false, true
	}
	args, _ := get(c, "args").([]any)
	var sargs []string
	for _, a := range args {
		sargs = append(sargs, fmt.Sprint(a))
	}
	if host, _, ok := at(flagValue(sargs, "config")); !ok || filepath.Clean(host) != filepath.Clean(serviceConf) {
		t.Errorf("container: -config %s does not come from %s", flagValue(sargs, "config"), serviceConf)
	}
	checkConfigPaths(t, "StatefulSet", conf, at)
	if ro, _ := get(c, "securityContext", "readOnlyRootFilesystem").(bool); ro {
		if _, named, ok := at("/tmp/x"); !ok || !named {
			t.Error("container: read-only root filesystem without a writable /tmp")
		}
	}

	// The API server's token stays out of the pod: cleanprod never calls it.
	if auto, ok := get(pod, "spec", "automountServiceAccountToken").(bool); !ok || auto {
		t.Error("pod: automountServiceAccountToken is not false")
	}
	// Memory headroom: the Go runtime collects harder before its limit,
	// 80-90 % of Go's part of the container's limit, leaving the rest to
	// stacks and the kernel. Chromium's renders (2 at most, 434 MiB each
	// measured as the sum of its processes' PSS) share the container.
	const chromium = 900 << 20
	limit := quantity(t, str(c, "resources", "limits", "memory"))
	gml := str(envs["GOMEMLIMIT"], "value")
	if r := float64(quantity(t, strings.TrimSuffix(gml, "B"))) / float64(limit-chromium); limit <= chromium || r < 0.8 || r > 0.9 {
		t.Errorf("container: GOMEMLIMIT %q is %.0f %% of the memory limit %s less Chromium's 900 MiB, want 80-90 %%", gml, 100*r, str(c, "resources", "limits", "memory"))
	}
	if req := quantity(t, str(c, "resources", "requests", "memory")); req > limit || req < 256<<20 {
		t.Errorf("container: memory request %d bytes, want 256 MiB up to the limit", req)
	}

	for _, svc := range byKind["Service"] {
		selects("Service", get(svc, "spec", "selector"))
		for _, p := range list(svc, "spec", "ports") {
			if tp := get(p, "targetPort"); tp != portName && tp != httpPort {
				t.Errorf("Service: targetPort %v is not the container's %s", tp, portName)
			}
		}
	}
	if len(byKind["Service"]) == 0 {
		t.Error("no Service")
	}
	if len(byKind["PodDisruptionBudget"]) != 1 {
		t.Fatal("want one PodDisruptionBudget")
	}
	pdb := byKind["PodDisruptionBudget"][0]
	selects("PodDisruptionBudget", get(pdb, "spec", "selector", "matchLabels"))
	if minAvail, _ := get(pdb, "spec", "minAvailable").(int); minAvail >= replicas {
		t.Errorf("PodDisruptionBudget: minAvailable %d with %d replica(s) blocks every node drain", minAvail, replicas)
	}
	if get(pdb, "spec", "minAvailable") == nil && get(pdb, "spec", "maxUnavailable") == nil {
		t.Error("PodDisruptionBudget: neither minAvailable nor maxUnavailable")
	}
	if maxUnavail, _ := get(pdb, "spec", "maxUnavailable").(int); maxUnavail != 1 {
		t.Errorf("PodDisruptionBudget: maxUnavailable %v, want 1 (one shard down at a time)", get(pdb, "spec", "maxUnavailable"))
	}
}

// checkShards checks the StatefulSet's shard settings: the count is the
// replicas, each pod takes its index from its host name, the peer URL
// names the pods on a headless Service that selects them (listing pods
// not ready), the shard secret comes from a Secret, and each pod has its
// own MQTT client id.
func checkShards(t *testing.T, sts map[string]any, c any, replicas int, services []map[string]any) {
	t.Helper()
	env := map[string]any{}
	for _, e := range list(c, "env") {
		env[str(e, "name")] = e
	}
	val := func(name string) string { return str(env[name], "value") }
	if n, err := strconv.Atoi(val("CLEANPROD_SHARD_COUNT")); err != nil || n != replicas || replicas < 2 {
		t.Errorf("StatefulSet: CLEANPROD_SHARD_COUNT %q with %d replicas: want the replicas, 2 or more", val("CLEANPROD_SHARD_COUNT"), replicas)
	}
	if val("CLEANPROD_SHARD_INDEX_FROM_HOSTNAME") != "true" {
		t.Error("StatefulSet: CLEANPROD_SHARD_INDEX_FROM_HOSTNAME is not true")
	}
	headless := str(sts, "spec", "serviceName")
	peer := val("CLEANPROD_SHARD_PEER_URL")
	name := str(sts, "metadata", "name")
	if !strings.HasPrefix(peer, "http://"+name+"-{index}."+headless+":") {
		t.Errorf("StatefulSet: CLEANPROD_SHARD_PEER_URL %q does not name the pods %s-{index} on %s", peer, name, headless)
	}
	found := false
	for _, svc := range services {
		if str(svc, "metadata", "name") == headless {
			found = true
			if str(svc, "spec", "clusterIP") != "None" {
				t.Errorf("Service %s: clusterIP %q, want None (headless)", headless, str(svc, "spec", "clusterIP"))
			}
			if p, _ := get(svc, "spec", "publishNotReadyAddresses").(bool); !p {
				t.Errorf("Service %s: publishNotReadyAddresses is not true", headless)
			}
		}
	}
	if !found {
		t.Errorf("no Service %s (the StatefulSet's serviceName)", headless)
	}
	if ref := get(env["CLEANPROD_SHARD_SECRET"], "valueFrom", "secretKeyRef"); str(ref, "name") == "" || str(ref, "key") == "" {
		t.Error("StatefulSet: CLEANPROD_SHARD_SECRET does not come from a Secret")
	}
	// One broker session per shard: the client id gets the shard's
	// <i>of<n> from serve, and the broker user (which names the session
	// under use_username_as_clientid) must carry it too. A client id set
	// per pod would differ from the one shards prepare subscribes.
	if str(env["CLEANPROD_MQTT_USERNAME"], "value") != "cleanprod-{shard}" {
		t.Error("StatefulSet: CLEANPROD_MQTT_USERNAME is not cleanprod-{shard} (one broker user and session per shard)")
	}
	if _, ok := env["CLEANPROD_MQTT_CLIENT_ID"]; ok {
		t.Error("StatefulSet: CLEANPROD_MQTT_CLIENT_ID is set: serve's shard client id would differ from the one shards prepare subscribes")
	}
}

// quantity parses a Kubernetes memory quantity in binary units (512Mi,
// 1Gi) or Go's (870MiB after the B is cut).
func quantity(t *testing.T, q string) int64 {
	t.Helper()
	m := regexp.MustCompile(`^(\d+)(Ki|Mi|Gi)?$`).FindStringSubmatch(q)
	if m == nil {
		t.Errorf("quantity %q: want digits and Ki, Mi or Gi", q)
		return 0
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n << map[string]int{"": 0, "Ki": 10, "Mi": 20, "Gi": 30}[m[2]]
}

// yamlUnmarshal decodes YAML leniently, for files whose schema another
// tool (amtool, promtool) checks.
func yamlUnmarshal(data []byte, v any) error { return yaml.Unmarshal(data, v) }
