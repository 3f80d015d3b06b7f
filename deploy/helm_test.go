package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The Helm chart, relative to this package, and the copy of the alert rules
// it carries (a chart reads no file outside its folder).
const (
	chartDir        = "helm/tokenvendor"
	chartRulesFile  = "helm/tokenvendor/files/rules.yaml"
	chartSchemaFile = "helm/tokenvendor/values.schema.json"
	chartValuesFile = "helm/tokenvendor/values.yaml"
	helmRelease     = "tokenvendor"
)

// objectKey names one rendered object.
type objectKey struct{ kind, name string }

func (k objectKey) String() string { return k.kind + " " + k.name }

// chartCase is a set of values and the kustomize overlay it must render the
// same objects as.
type chartCase struct {
	name      string
	values    string // a file under chartDir; "" for the defaults
	namespace string // the overlay's, which the release is installed into
	overlay   string
	// More of deploy/kubernetes/components, beside the overlay's own.
	components []string
	// What the overlay renders and the chart deliberately does not with
	// these values, and why.
	notRendered map[objectKey]string
}

// notANamespace: Helm keeps its release record in the release's namespace,
// so a chart cannot create it; `kubectl create namespace` (and the label)
// or `helm install --create-namespace` does.
const notANamespace = "the release's namespace exists before the release (helm install --create-namespace, or kubectl create namespace and label it restricted)"

var chartCases = []chartCase{{
	name: "default values", namespace: "tokenvendor", overlay: "standalone",
	notRendered: map[objectKey]string{
		{"Namespace", "tokenvendor"}:            notANamespace,
		{"Certificate", "tokenvendor"}:          "tls.certificate.enabled is off by default (cert-manager is the overlay's choice, not the base's)",
		{"CronJob", "tokenvendor-canary"}:       "canary.enabled is off by default (components/canary is not in the base)",
		{"NetworkPolicy", "tokenvendor-canary"}: "it comes with the canary",
		{"PrometheusRule", "tokenvendor"}:       "prometheusRule.enabled is off by default (deploy/monitoring is not in the base)",
	},
}, {
	name: "full values", values: "ci/full-values.yaml", namespace: "tokenvendor", overlay: "standalone",
	components:  []string{"external-id-key"},
	notRendered: map[objectKey]string{{"Namespace", "tokenvendor"}: notANamespace},
}, {
	name: "sidecar values", values: "ci/sidecar-values.yaml", namespace: "acme", overlay: "sidecar",
}}

// helmLabels are the labels the chart adds to every object, pod template
// and selector, which kustomize does not: the chart's and Helm's own, and
// the release's, so that two releases in a namespace select their own pods.
var helmLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "app.kubernetes.io/instance"}

// helmBin is scripts/tools.sh's helm; the test fails, never skips, without it.
func helmBin(t *testing.T) string {
	t.Helper()
	tools := os.Getenv("TOKENVENDOR_TOOLS")
	if tools == "" {
		tools = filepath.Join("..", ".tools")
	}
	bin, err := filepath.Abs(filepath.Join(tools, "bin", "helm"))
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		t.Fatalf("helm is not installed in %s (run scripts/tools.sh or make tools): %v", filepath.Join(tools, "bin"), err)
	}
	return bin
}

// runHelm runs helm with its caches and settings in a temporary folder,
// apart from the user's.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// valuesArgs are the -f flags of a chart case and any more values files.
func valuesArgs(files ...string) []string {
	var args []string
	for _, f := range files {
		if f == "" {
			continue
		}
		if !filepath.IsAbs(f) {
			f = filepath.Join(chartDir, f)
		}
		args = append(args, "-f", f)
	}
	return args
}

func helmTemplate(t *testing.T, namespace string, values ...string) []manifest {
	t.Helper()
	args := append([]string{"template", helmRelease, chartDir, "--namespace", namespace}, valuesArgs(values...)...)
	out, err := runHelm(t, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return parse(t, []byte(out))
}

func TestHelmChartLints(t *testing.T) {
	for _, tc := range chartCases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"lint", chartDir, "--strict", "--namespace", tc.namespace}, valuesArgs(tc.values)...)
			if out, err := runHelm(t, args...); err != nil {
				t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

// The chart renders the overlay's objects, field for field: kinds, names,
// namespaces, labels, images, pod and container security contexts, probes,
// ports, volumes, the config. The only differences are listed: notRendered
// of each case, helmLabels, and what normalize says.
func TestHelmChartRendersTheKustomizeObjects(t *testing.T) {
	for _, tc := range chartCases {
		t.Run(tc.name, func(t *testing.T) {
			want := objectsByKey(t, normalizeKustomize(t, renderWith(t, "overlays/"+tc.overlay, tc.components...)))
			got := objectsByKey(t, normalizeHelm(t, helmTemplate(t, tc.namespace, tc.values)))
			for key, why := range tc.notRendered {
				if _, ok := want[key]; !ok {
					t.Errorf("%s is listed as not rendered (%s), but the overlay does not render it either", key, why)
				}
				if _, ok := got[key]; ok {
					t.Errorf("%s is listed as not rendered (%s), but the chart renders it", key, why)
				}
				delete(want, key)
			}
			compareObjects(t, want, got)
		})
	}
}

func compareObjects(t *testing.T, want, got map[objectKey]map[string]any) {
	t.Helper()
	for _, key := range sortedKeys(want) {
		g, ok := got[key]
		if !ok {
			t.Errorf("the chart does not render %s", key)
			continue
		}
		for _, d := range diff(key.String(), want[key], g) {
			t.Errorf("%s", d)
		}
	}
	for _, key := range sortedKeys(got) {
		if _, ok := want[key]; !ok {
			t.Errorf("the chart renders %s, which the overlay does not", key)
		}
	}
}

func sortedKeys(m map[objectKey]map[string]any) []objectKey {
	keys := make([]objectKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	return keys
}

// objectsByKey decodes every object whole, keyed by kind and name.
func objectsByKey(t *testing.T, ms []manifest) map[objectKey]map[string]any {
	t.Helper()
	out := map[objectKey]map[string]any{}
	for _, m := range ms {
		key := objectKey{m.Kind, m.Metadata.Name}
		if _, dup := out[key]; dup {
			t.Fatalf("%s is rendered twice", key)
		}
		var obj map[string]any
		m.decode(t, &obj)
		out[key] = obj
	}
	return out
}

// generatedName is the hash kustomize's configMapGenerator appends to a
// ConfigMap's name, so that a change rolls the pods.
var generatedName = regexp.MustCompile(`^(.+)-[a-z0-9]{10}$`)

// normalizeKustomize takes the hash off the generated ConfigMap's name, in
// the ConfigMap and wherever it is referred to: the chart names it
// RELEASE-config and rolls the pods by a checksum annotation instead.
func normalizeKustomize(t *testing.T, ms []manifest) []manifest {
	t.Helper()
	renames := map[string]string{}
	for _, m := range ofKind(ms, "ConfigMap") {
		if sub := generatedName.FindStringSubmatch(m.Metadata.Name); sub != nil {
			renames[m.Metadata.Name] = sub[1]
		}
	}
	for i := range ms {
		renameValues(&ms[i].doc, renames)
		ms[i] = reparse(t, ms[i])
	}
	return ms
}

func renameValues(n *yaml.Node, renames map[string]string) {
	if n.Kind == yaml.ScalarNode {
		if to, ok := renames[n.Value]; ok {
			n.Value = to
		}
	}
	for _, c := range n.Content {
		renameValues(c, renames)
	}
}

func reparse(t *testing.T, m manifest) manifest {
	t.Helper()
	out := manifest{doc: m.doc}
	if err := out.doc.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// normalizeHelm undoes what the chart does differently on purpose: it drops
// helmLabels from every label map and selector, configMapLabels, and the
// checksum/config annotation of pod templates (kustomize's name hash plays
// its part), and
// gives back the replicas the chart leaves out of a Deployment that a
// HorizontalPodAutoscaler scales (normalizeReplicas).
func normalizeHelm(t *testing.T, ms []manifest) []manifest {
	t.Helper()
	for i := range ms {
		dropKeys(&ms[i].doc, helmLabels)
		dropChecksum(&ms[i].doc)
		if ms[i].Kind == "ConfigMap" {
			dropEmptied(lookup(&ms[i].doc, "metadata"), "labels", configMapLabels)
		}
		ms[i] = reparse(t, ms[i])
	}
	normalizeReplicas(t, ms)
	return ms
}

// dropKeys removes the given keys from every mapping.
func dropKeys(n *yaml.Node, keys []string) {
	if n.Kind == yaml.MappingNode {
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !slices.Contains(keys, n.Content[i].Value) {
				kept = append(kept, n.Content[i], n.Content[i+1])
			}
		}
		n.Content = kept
	}
	for _, c := range n.Content {
		dropKeys(c, keys)
	}
}

// configMapLabels are the labels the chart gives its ConfigMap, as it does
// every object, and kustomize's configMapGenerator does not.
var configMapLabels = []string{"app.kubernetes.io/name", "app.kubernetes.io/component"}

// dropChecksum removes checksum/config from pod template annotations.
func dropChecksum(n *yaml.Node) {
	dropEmptied(lookup(n, "spec", "template", "metadata"), "annotations", []string{"checksum/config"})
}

// dropEmptied removes keys from the mapping under parent's field, and the
// field when nothing is left in it.
func dropEmptied(parent *yaml.Node, field string, keys []string) {
	m := lookup(parent, field)
	if m == nil {
		return
	}
	dropKeys(m, keys)
	if len(m.Content) == 0 {
		dropKeys(parent, []string{field})
	}
}

// lookup follows a path of mapping keys from a document or mapping node.
func lookup(n *yaml.Node, path ...string) *yaml.Node {
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, key := range path {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = n.Content[i+1]
			}
		}
		n = next
	}
	return n
}

// normalizeReplicas gives a Deployment that a HorizontalPodAutoscaler of
// the chart scales, and that has no replicas of its own, the HPA's
// minReplicas: what kustomize's base sets beside its HPA.
func normalizeReplicas(t *testing.T, ms []manifest) {
	t.Helper()
	for _, h := range ofKind(ms, "HorizontalPodAutoscaler") {
		var hpa struct {
			Spec struct {
				ScaleTargetRef struct{ Kind, Name string } `yaml:"scaleTargetRef"`
				MinReplicas    int                         `yaml:"minReplicas"`
			} `yaml:"spec"`
		}
		h.decode(t, &hpa)
		for i, m := range ms {
			spec := lookup(&m.doc, "spec")
			if m.Kind != hpa.Spec.ScaleTargetRef.Kind || m.Metadata.Name != hpa.Spec.ScaleTargetRef.Name || spec == nil {
				continue
			}
			if lookup(spec, "replicas") != nil {
				t.Errorf("Deployment %s sets replicas while HorizontalPodAutoscaler %s scales it: an upgrade would reset the count", m.Metadata.Name, h.Metadata.Name)
				continue
			}
			spec.Content = append(spec.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "replicas"},
				&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: fmt.Sprint(hpa.Spec.MinReplicas)})
			ms[i] = reparse(t, m)
		}
	}
}

// diff lists where two decoded values differ, by path.
func diff(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		var out []string
		for _, k := range sortedUnion(w, g) {
			wv, inW := w[k]
			gv, inG := g[k]
			switch {
			case !inG:
				out = append(out, fmt.Sprintf("%s.%s: the chart lacks it (kustomize: %v)", path, k, wv))
			case !inW:
				out = append(out, fmt.Sprintf("%s.%s: the chart adds %v", path, k, gv))
			default:
				out = append(out, diff(path+"."+k, wv, gv)...)
			}
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			break
		}
		var out []string
		for i := range w {
			out = append(out, diff(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return out
	}
	if reflect.DeepEqual(want, got) {
		return nil
	}
	return []string{fmt.Sprintf("%s: the chart has %#v, kustomize %#v", path, got, want)}
}

func sortedUnion(a, b map[string]any) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// The chart's alerts are deploy/monitoring's: go test ./deploy/ -update
// copies rules.yaml into the chart.
func TestHelmChartCarriesTheMonitoringRules(t *testing.T) {
	want, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	checkGenerated(t, chartRulesFile, want, rulesFile)
}

// Each row breaks one value, or sets values the chart refuses together.
// What values.schema.json refuses, helm lint and helm template (as helm
// install) refuse. What the chart's checks (templates/checks.yaml) refuse,
// across values and against the config, helm template and install refuse;
// helm lint only logs it, since its lint mode makes fail non-fatal.
func TestHelmRefusesValuesTheChartDoesNotAllow(t *testing.T) {
	sidecar := "ci/sidecar-values.yaml"
	for _, tc := range []struct {
		name   string
		base   string // a values file under chartDir the row starts from
		values string
		want   string // in helm's error
		check  bool   // refused by the chart's checks, not the schema
	}{
		{name: "replicas not a number", values: "replicas: three", want: "/replicas"},
		{name: "an unknown value", values: "replica: 3", want: "'replica' not allowed"},
		{name: "an unknown nested value", values: "serviceMonitor: {intervall: 1m}", want: "'intervall' not allowed"},
		{name: "runAsNonRoot as a value", values: "podSecurityContext: {runAsNonRoot: false}", want: "'runAsNonRoot' not allowed"},
		{name: "root user", values: "podSecurityContext: {runAsUser: 0}", want: "/podSecurityContext/runAsUser"},
		{name: "root fsGroup", values: "podSecurityContext: {fsGroup: 0}", want: "/podSecurityContext/fsGroup"},
		{name: "unknown mode", values: "mode: daemonset", want: "/mode"},
		{name: "unknown pull policy", values: "image: {pullPolicy: Sometimes}", want: "/image/pullPolicy"},
		{name: "latest tag", values: "image: {tag: latest}", want: "/image/tag"},
		{name: "digest not sha256", values: "image: {digest: md5:abc}", want: "/image/digest"},
		{name: "no memory limit", values: "resources: {limits: {memory: null}}", want: "/resources/limits"},
		{name: "memory not a quantity", values: "resources: {requests: {memory: lots}}", want: "/resources/requests/memory"},
		{name: "port out of range", values: "service: {port: 70000}", want: "/service/port"},
		{name: "no client namespace labels", values: "networkPolicy: {clientNamespaceLabels: null}", want: "clientNamespaceLabels"},
		{name: "role ARN not an ARN", values: "serviceAccount: {roleArn: tokenvendor}", want: "/serviceAccount/roleArn"},
		{name: "sidecar without an app", values: "mode: sidecar", want: "/sidecar/app/name"},
		{name: "sidecar token for a day", base: sidecar, values: "sidecar: {tokenExpirationSeconds: 86400}", want: "/sidecar/tokenExpirationSeconds"},
		{name: "sidecar app with static keys", base: sidecar, values: "sidecar: {app: {env: [{name: AWS_ACCESS_KEY_ID, value: AKIA}]}}", want: "/sidecar/app/env/0/name"},
		{name: "standalone without TLS", values: "config: |\n  listen: 0.0.0.0:8443\n  admin_listen: 0.0.0.0:9090\n", want: "no tls.cert_file", check: true},
		{name: "config without admin_listen", values: "config: |\n  listen: 0.0.0.0:8443\n  tls: {cert_file: /c, key_file: /k}\n", want: "admin_listen is not set", check: true},
		{name: "config not YAML", values: "config: 'listen: [0.0.0.0'", want: "config: not a YAML mapping", check: true},
		{name: "redis section without its Secret", values: "redis: {enabled: false}", want: "redis.enabled is false", check: true},
		{name: "redis URL in the ConfigMap", values: "config: |\n  listen: 0.0.0.0:8443\n  admin_listen: 0.0.0.0:9090\n  tls: {cert_file: /c, key_file: /k}\n  redis: {url: 'rediss://:secret@redis:6379/0'}\n", want: "sets redis.url", check: true},
		{name: "a drain would block", values: "podDisruptionBudget: {minAvailable: 2}", want: "a node drain would block", check: true},
		{name: "fewer max than min replicas", values: "autoscaling: {minReplicas: 3, maxReplicas: 2}", want: "maxReplicas is below", check: true},
		{name: "canary without its config section", values: "canary: {enabled: true}\nconfig: |\n  listen: 0.0.0.0:8443\n  admin_listen: 0.0.0.0:9090\n  tls: {cert_file: /c, key_file: /k}\n", want: "no canary section", check: true},
		{name: "sidecar sharing Redis", base: sidecar, values: "config: |\n  listen: 127.0.0.1:8080\n  admin_listen: 0.0.0.0:9090\n  redis: {url_file: /u}\n  profiles: [{name: objects}]\n", want: "sidecar mode: the config has a redis section", check: true},
		{name: "sidecar listening on the pod network", base: sidecar, values: "config: |\n  listen: 0.0.0.0:8080\n  admin_listen: 0.0.0.0:9090\n  profiles: [{name: objects}]\n", want: "must stay on the pod's loopback", check: true},
		{name: "sidecar asking for an unknown profile", base: sidecar, values: "sidecar: {app: {profile: orders}}", want: "is not one of the config's profiles", check: true},
		{name: "external id key Secret without a name", values: "externalIdKey: {enabled: true, secret: {name: ''}}", want: "/externalIdKey/secret/name"},
		{name: "external id key file without its Secret", values: "config: |\n  listen: 0.0.0.0:8443\n  admin_listen: 0.0.0.0:9090\n  tls: {cert_file: /c, key_file: /k}\n  redis: {url_file: /etc/tokenvendor/redis/url}\n  profiles: [{name: silo, external_id: derived, external_id_key_file: /etc/tokenvendor/external-id/key}]\n", want: "externalIdKey.enabled is false", check: true},
		{name: "external id key in the ConfigMap", values: "externalIdKey: {enabled: true}\nconfig: |\n  listen: 0.0.0.0:8443\n  admin_listen: 0.0.0.0:9090\n  tls: {cert_file: /c, key_file: /k}\n  redis: {url_file: /etc/tokenvendor/redis/url}\n  profiles: [{name: silo, external_id: derived, external_id_key_file: /etc/tokenvendor/external-id.key}]\n", want: "externalIdKey mounts the key at /etc/tokenvendor/external-id/key", check: true},
		{name: "sidecar with the external id key", base: sidecar, values: "externalIdKey: {enabled: true}", want: "sidecar mode: externalIdKey.enabled", check: true},
		{name: "sidecar profile with an external id key file", base: sidecar, values: "config: |\n  listen: 127.0.0.1:8080\n  admin_listen: 0.0.0.0:9090\n  profiles: [{name: objects, external_id: derived, external_id_key_file: /etc/tokenvendor/external-id.key}]\n", want: "sets external_id_key_file", check: true},
		{name: "sidecar with an IRSA role", base: sidecar, values: "serviceAccount: {annotations: {eks.amazonaws.com/role-arn: 'arn:aws:iam::123456789012:role/x'}}", want: "has an IRSA role", check: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(file, []byte(tc.values), 0o600); err != nil {
				t.Fatal(err)
			}
			values := valuesArgs(tc.base, file)
			runs := [][]string{append([]string{"template", helmRelease, chartDir}, values...)}
			if !tc.check {
				runs = append(runs, append([]string{"lint", chartDir, "--strict"}, values...))
			}
			for _, args := range runs {
				out, err := runHelm(t, args...)
				if err == nil {
					t.Errorf("helm %s accepted %q", args[0], tc.values)
				} else if !strings.Contains(out, tc.want) {
					t.Errorf("helm %s refused %q without saying %q:\n%s", args[0], tc.values, tc.want, out)
				}
			}
		})
	}
}

// jsonSchema is the part of a JSON Schema the checks below read.
type jsonSchema struct {
	Ref                  string                 `json:"$ref"`
	Type                 any                    `json:"type"`
	Description          string                 `json:"description"`
	Properties           map[string]*jsonSchema `json:"properties"`
	AdditionalProperties json.RawMessage        `json:"additionalProperties"`
	Items                *jsonSchema            `json:"items"`
	Defs                 map[string]*jsonSchema `json:"$defs"`
}

func loadSchema(t *testing.T) *jsonSchema {
	t.Helper()
	b, err := os.ReadFile(chartSchemaFile)
	if err != nil {
		t.Fatal(err)
	}
	var s jsonSchema
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s: %v", chartSchemaFile, err)
	}
	return &s
}

// resolve follows a local $ref ("#/$defs/NAME"), keeping the referring
// schema's description.
func (s *jsonSchema) resolve(root *jsonSchema) *jsonSchema {
	name, ok := strings.CutPrefix(s.Ref, "#/$defs/")
	if !ok || root.Defs[name] == nil {
		return s
	}
	r := *root.Defs[name]
	if s.Description != "" {
		r.Description = s.Description
	}
	return &r
}

// Every value is described, and every object of values is closed: a key
// the schema does not list is refused (TestHelmRefusesValuesTheChartDoesNotAllow
// shows helm applying it), unless the object is a map of names to strings
// (labels, annotations, nodeSelector).
func TestHelmSchemaDescribesEveryValue(t *testing.T) {
	root := loadSchema(t)
	var walk func(path string, s *jsonSchema)
	walk = func(path string, s *jsonSchema) {
		s = s.resolve(root)
		if s.Description == "" {
			t.Errorf("%s has no description", path)
		}
		if s.Type == nil {
			t.Errorf("%s has no type", path)
		}
		if s.Properties != nil && string(s.AdditionalProperties) != "false" {
			t.Errorf("%s lists its properties but allows others: want additionalProperties false", path)
		}
		for name, p := range s.Properties {
			walk(path+"."+name, p)
		}
		if s.Items != nil {
			walk(path+"[]", s.Items)
		}
	}
	walk("values", root)
	if len(root.Properties) == 0 {
		t.Fatal("the schema lists no values")
	}
}

// Every default in values.yaml is a value the schema lists, with its type:
// the schema is the whole documentation of the values.
func TestHelmSchemaListsEveryDefault(t *testing.T) {
	b, err := os.ReadFile(chartValuesFile)
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatalf("%s: %v", chartValuesFile, err)
	}
	root := loadSchema(t)
	var walk func(path string, v any, s *jsonSchema)
	walk = func(path string, v any, s *jsonSchema) {
		s = s.resolve(root)
		m, ok := v.(map[string]any)
		if !ok || s.Properties == nil {
			return
		}
		for k, sub := range m {
			p, listed := s.Properties[k]
			if !listed {
				t.Errorf("%s.%s is in values.yaml but not in the schema", path, k)
				continue
			}
			walk(path+"."+k, sub, p)
		}
	}
	walk("values", values, root)
}

// helmDocFile documents the chart; its values table names every value.
const helmDocFile = "../docs/deploy-kubernetes.md"

// schemaLeaves are the values a user sets: the schema's properties, down to
// objects of their own (not $defs such as resources, and not global).
func schemaLeaves(path string, s *jsonSchema, out map[string]bool) {
	for name, p := range s.Properties {
		if path == "" && name == "global" {
			continue
		}
		sub := strings.TrimPrefix(path+"."+name, ".")
		if p.Ref == "" && p.Properties != nil {
			schemaLeaves(sub, p, out)
			continue
		}
		out[sub] = true
	}
}

func TestHelmValuesTableListsEveryValue(t *testing.T) {
	b, err := os.ReadFile(helmDocFile)
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([A-Za-z.]+)` \\|")
	documented := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		documented[m[1]] = true
	}
	values := map[string]bool{}
	schemaLeaves("", loadSchema(t), values)
	for v := range values {
		if !documented[v] {
			t.Errorf("%s is not in the values table of %s", v, helmDocFile)
		}
	}
	for v := range documented {
		if !values[v] {
			t.Errorf("%s documents %s, which the schema does not have", helmDocFile, v)
		}
	}
}

// With externalIdKey on, the chart takes a config whose profile derives
// its ExternalIds from the key at /etc/tokenvendor/external-id/key (its
// checks refuse any other path), and the service and the canary read that
// file from the Secret, read-only; the config loads there.
func TestHelmMountsTheExternalIDKeyWhereTheConfigReadsIt(t *testing.T) {
	b, err := os.ReadFile(chartValuesFile)
	if err != nil {
		t.Fatal(err)
	}
	var defaults struct {
		Config string `yaml:"config"`
	}
	if err := yaml.Unmarshal(b, &defaults); err != nil {
		t.Fatalf("%s: %v", chartValuesFile, err)
	}
	values, err := yaml.Marshal(map[string]any{"config": withDerivedProfile(t, defaults.Config)})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(file, values, 0o600); err != nil {
		t.Fatal(err)
	}
	ms := helmTemplate(t, "tokenvendor", "ci/full-values.yaml", file)
	checkExternalIDKey(t, ms, func(_ *testing.T, raw string) string { return raw })
}
