package deploycheck

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite deploy/kubernetes/configmaps.yaml from its sources")

const (
	k8sDir        = deployDir + "/kubernetes"
	configMapFile = k8sDir + "/configmaps.yaml"
)

// configMapSources are the ConfigMaps of deploy/kubernetes/configmaps.yaml
// and the files they hold: a file, or every *.yaml of a folder.
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

// generateConfigMaps renders the ConfigMaps from their sources.
func generateConfigMaps(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("# Generated from deploy/cleanprod.yaml, gateway-config/ and scoring/ by\n" +
		"#   go test ./internal/deploycheck -run TestKubernetesConfigMaps -update\n" +
		"# Do not edit: change the sources and generate again.\n")
	for _, cm := range configMapSources {
		data := &yaml.Node{Kind: yaml.MappingNode}
		for _, f := range configMapFiles(t, cm.source) {
			content, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			data.Content = append(data.Content,
				&yaml.Node{Kind: yaml.ScalarNode, Value: filepath.Base(f)},
				&yaml.Node{Kind: yaml.ScalarNode, Value: string(content), Style: yaml.LiteralStyle})
		}
		doc := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			scalar("apiVersion"), scalar("v1"),
			scalar("kind"), scalar("ConfigMap"),
			scalar("metadata"), {Kind: yaml.MappingNode, Content: []*yaml.Node{
				scalar("name"), scalar(cm.name),
				scalar("labels"), {Kind: yaml.MappingNode, Content: []*yaml.Node{
					scalar("app.kubernetes.io/name"), scalar("cleanprod"),
				}},
			}},
			scalar("data"), data,
		}}
		buf.WriteString("---\n")
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(doc); err != nil {
			t.Fatal(err)
		}
		enc.Close()
	}
	return buf.Bytes()
}

func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s} }

// The ConfigMaps hold exactly the files they are made from.
func TestKubernetesConfigMaps(t *testing.T) {
	want := generateConfigMaps(t)
	if *update {
		if err := os.WriteFile(configMapFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(configMapFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not what its sources make: run go test ./internal/deploycheck -run TestKubernetesConfigMaps -update", configMapFile)
	}
	// And it decodes to the files' contents (the encoding kept them intact).
	docs := loadManifests(t, configMapFile)
	for i, cm := range configMapSources {
		data, _ := docs[i]["data"].(map[string]any)
		for _, f := range configMapFiles(t, cm.source) {
			content, _ := os.ReadFile(f)
			if data[filepath.Base(f)] != string(content) {
				t.Errorf("%s: %s does not decode to %s", cm.name, filepath.Base(f), f)
			}
		}
	}
}

// loadManifests decodes every document of a YAML file.
func loadManifests(t *testing.T, file string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
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

// The manifests: kustomization lists them all; the Deployment runs one pod
// (Recreate: two would fight over the broker session) with probes on
// /healthz and /readyz, resources, secrets by reference, and mounts
// every path cleanprod.yaml names from the ConfigMap made of it; the
// Service and the PodDisruptionBudget select its pods.
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
	byKind := map[string][]map[string]any{}
	for _, f := range files {
		name := filepath.Base(f)
		if name == "kustomization.yaml" {
			continue
		}
		if !slices.Contains(kust.Resources, name) {
			t.Errorf("kustomization.yaml does not list %s", name)
		}
		for _, doc := range loadManifests(t, f) {
			kind := str(doc, "kind")
			if str(doc, "apiVersion") == "" || kind == "" || str(doc, "metadata", "name") == "" {
				t.Errorf("%s: a document without apiVersion, kind or name", name)
			}
			byKind[kind] = append(byKind[kind], doc)
		}
	}
	for _, r := range kust.Resources {
		if _, err := os.Stat(filepath.Join(k8sDir, r)); err != nil {
			t.Errorf("kustomization.yaml: %v", err)
		}
	}
	if len(byKind["Deployment"]) != 1 {
		t.Fatalf("want one Deployment, got %d", len(byKind["Deployment"]))
	}
	dep := byKind["Deployment"][0]
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
	selects("Deployment", get(dep, "spec", "selector", "matchLabels"))
	replicas, _ := get(dep, "spec", "replicas").(int)
	if replicas != 1 || str(dep, "spec", "strategy", "type") != "Recreate" {
		t.Errorf("Deployment: replicas %d, strategy %q: want 1 and Recreate (mqtt.client_id %s is fixed)", replicas, str(dep, "spec", "strategy", "type"), conf["mqtt.client_id"])
	}
	containers := list(pod, "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("Deployment: want one container, got %d", len(containers))
	}
	c := containers[0]
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
	cmSource := map[string]string{}
	for _, cm := range configMapSources {
		cmSource[cm.name] = cm.source
	}
	configMaps := map[string]map[string]any{}
	for _, cm := range byKind["ConfigMap"] {
		d, _ := cm["data"].(map[string]any)
		configMaps[str(cm, "metadata", "name")] = d
	}
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
		name := str(v, "configMap", "name")
		src, known := cmSource[name]
		if !known || configMaps[name] == nil {
			t.Errorf("volume %s: ConfigMap %q is not in configmaps.yaml", str(v, "name"), name)
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
	checkConfigPaths(t, "Deployment", conf, at)
	if ro, _ := get(c, "securityContext", "readOnlyRootFilesystem").(bool); ro {
		if _, named, ok := at("/tmp/x"); !ok || !named {
			t.Error("container: read-only root filesystem without a writable /tmp")
		}
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
}

// yamlUnmarshal decodes YAML leniently, for files whose schema another
// tool (amtool, promtool) checks.
func yamlUnmarshal(data []byte, v any) error { return yaml.Unmarshal(data, v) }
