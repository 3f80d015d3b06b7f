package deploy_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tokenvendor/tokenvendor/internal/config"
)

var update = flag.Bool("update", false, "rewrite the golden files from the rendered manifests")

// overlays are the kustomize overlays and their golden files.
var overlays = []string{"standalone", "sidecar"}

// manifest is one rendered Kubernetes object: its header decoded, the whole
// document kept for kind-specific decoding.
type manifest struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   meta   `yaml:"metadata"`
	doc        yaml.Node
}

type meta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// decode decodes the whole object into v.
func (m manifest) decode(t *testing.T, v any) {
	t.Helper()
	if err := m.doc.Decode(v); err != nil {
		t.Fatalf("%s %s: %v", m.Kind, m.Metadata.Name, err)
	}
}

type podTemplate struct {
	Metadata meta    `yaml:"metadata"`
	Spec     podSpec `yaml:"spec"`
}

type podSpec struct {
	ServiceAccountName           string          `yaml:"serviceAccountName"`
	AutomountServiceAccountToken *bool           `yaml:"automountServiceAccountToken"`
	SecurityContext              securityContext `yaml:"securityContext"`
	InitContainers               []container     `yaml:"initContainers"`
	Containers                   []container     `yaml:"containers"`
	Volumes                      []volume        `yaml:"volumes"`
}

type securityContext struct {
	RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
	RunAsUser                *int  `yaml:"runAsUser"`
	FSGroup                  *int  `yaml:"fsGroup"`
	AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
	Capabilities             struct {
		Drop []string `yaml:"drop"`
		Add  []string `yaml:"add"`
	} `yaml:"capabilities"`
	SeccompProfile struct {
		Type string `yaml:"type"`
	} `yaml:"seccompProfile"`
}

type container struct {
	Name          string   `yaml:"name"`
	Image         string   `yaml:"image"`
	Args          []string `yaml:"args"`
	RestartPolicy string   `yaml:"restartPolicy"`
	Env           []struct {
		Name      string     `yaml:"name"`
		Value     string     `yaml:"value"`
		ValueFrom *yaml.Node `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	StartupProbe    *probe          `yaml:"startupProbe"`
	ReadinessProbe  *probe          `yaml:"readinessProbe"`
	LivenessProbe   *probe          `yaml:"livenessProbe"`
	SecurityContext securityContext `yaml:"securityContext"`
	VolumeMounts    []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path   string `yaml:"path"`
		Port   string `yaml:"port"`
		Scheme string `yaml:"scheme"`
	} `yaml:"httpGet"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName  string      `yaml:"secretName"`
		DefaultMode *int        `yaml:"defaultMode"`
		Items       []keyToPath `yaml:"items"`
	} `yaml:"secret"`
	Projected *struct {
		Sources []struct {
			ServiceAccountToken *struct {
				Audience          string `yaml:"audience"`
				ExpirationSeconds int    `yaml:"expirationSeconds"`
				Path              string `yaml:"path"`
			} `yaml:"serviceAccountToken"`
		} `yaml:"sources"`
	} `yaml:"projected"`
}

type keyToPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
	Mode *int   `yaml:"mode"`
}

type ingressRule struct {
	From  []yaml.Node `yaml:"from"`
	Ports []struct {
		Port string `yaml:"port"`
	} `yaml:"ports"`
}

func (c container) env(name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func (c container) port(name string) int {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// render runs `kubectl kustomize` on an overlay. kubectl carries kustomize;
// the test fails loudly when it is missing.
func render(t *testing.T, overlay string) []byte {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl (with kustomize) is needed to render the manifests: %v", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", filepath.Join("kubernetes", "overlays", overlay))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", overlay, err, stderr.String())
	}
	return out
}

// parse decodes every document of a rendered overlay.
func parse(t *testing.T, rendered []byte) []manifest {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(rendered))
	var out []manifest
	for {
		var m manifest
		err := dec.Decode(&m.doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("document %d: %v", len(out), err)
		}
		if err := m.doc.Decode(&m); err != nil {
			t.Fatalf("document %d: %v", len(out), err)
		}
		if m.APIVersion == "" || m.Kind == "" || m.Metadata.Name == "" {
			t.Fatalf("document %d lacks apiVersion, kind or name: %+v", len(out), m)
		}
		out = append(out, m)
	}
	return out
}

func renderOverlay(t *testing.T, overlay string) []manifest {
	t.Helper()
	return parse(t, render(t, overlay))
}

// renderWith runs `kubectl kustomize` on a kustomization of a temporary
// folder holding a kustomization of deploy/kubernetes (overlays/standalone,
// base) and more of its components, as an operator's own overlay would.
func renderWith(t *testing.T, kustomization string, components ...string) []manifest {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl (with kustomize) is needed to render the manifests: %v", err)
	}
	dir := t.TempDir()
	abs, err := filepath.Abs("kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	// kustomize takes no absolute path to a kustomization.
	rel, err := filepath.Rel(dir, abs)
	if err != nil {
		t.Fatal(err)
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " +
		filepath.ToSlash(filepath.Join(rel, kustomization)) + "\ncomponents:\n"
	for _, c := range components {
		k += "  - " + filepath.ToSlash(filepath.Join(rel, "components", c)) + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize of %s with components %v: %v\n%s", kustomization, components, err, stderr.String())
	}
	return parse(t, out)
}

func find(t *testing.T, ms []manifest, kind, name string) manifest {
	t.Helper()
	for _, m := range ms {
		if m.Kind == kind && (name == "" || m.Metadata.Name == name) {
			return m
		}
	}
	t.Fatalf("no %s %q among the rendered manifests", kind, name)
	return manifest{}
}

func ofKind(ms []manifest, kind string) []manifest {
	var out []manifest
	for _, m := range ms {
		if m.Kind == kind {
			out = append(out, m)
		}
	}
	return out
}

// podTemplateOf is a Deployment's pod template, or a CronJob's job's.
func podTemplateOf(t *testing.T, m manifest) podTemplate {
	t.Helper()
	if m.Kind == "CronJob" {
		var cj struct {
			Spec struct {
				JobTemplate struct {
					Spec struct {
						Template podTemplate `yaml:"template"`
					} `yaml:"spec"`
				} `yaml:"jobTemplate"`
			} `yaml:"spec"`
		}
		m.decode(t, &cj)
		return cj.Spec.JobTemplate.Spec.Template
	}
	var d struct {
		Spec struct {
			Template podTemplate `yaml:"template"`
		} `yaml:"spec"`
	}
	m.decode(t, &d)
	return d.Spec.Template
}

// mounted finds the volume a container sees at path: the read-only mount
// holding it, the volume, and the path inside the volume. Of nested mounts
// (the Redis Secret inside the config's directory) the deepest one holds
// the path, as in the container.
func mounted(pod podTemplate, c container, path string) (v volume, readOnly bool, rel string, ok bool) {
	deepest := -1
	for _, mnt := range c.VolumeMounts {
		dir := strings.TrimSuffix(mnt.MountPath, "/") + "/"
		rest, found := strings.CutPrefix(path, dir)
		if !found || len(dir) <= deepest {
			continue
		}
		for _, vol := range pod.Spec.Volumes {
			if vol.Name == mnt.Name {
				v, readOnly, rel, ok = vol, mnt.ReadOnly, rest, true
				deepest = len(dir)
			}
		}
	}
	return v, readOnly, rel, ok
}

// standIns points the files a config names (TLS certificate, key and
// client CA, tenant registry, Redis URL, password, keys and CA), which live
// on the pod's volumes, at files here, so that config.Parse, which checks
// they exist, can load it. They are empty but for standInContent. Each must
// be on a read-only mount of the container. It returns the config to parse
// and the settings' real values.
func standIns(t *testing.T, raw string, pod podTemplate, c container) ([]byte, map[string]string) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(raw), &doc); err != nil || len(doc.Content) == 0 {
		t.Fatalf("config: %v", err)
	}
	value := func(m *yaml.Node, key string) *yaml.Node {
		if m == nil || m.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i+1]
			}
		}
		return nil
	}
	root := doc.Content[0]
	real := map[string]string{}
	standIn := func(setting, content string, n *yaml.Node) {
		if n == nil || n.Value == "" {
			return
		}
		if _, readOnly, _, ok := mounted(pod, c, n.Value); !ok || !readOnly {
			t.Errorf("container %s: %s %s is not on a read-only volume mount", c.Name, setting, n.Value)
		}
		real[setting] = n.Value
		n.Value = filepath.Join(t.TempDir(), filepath.Base(n.Value))
		if err := os.WriteFile(n.Value, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for section, keys := range map[string][]string{
		"tls":     {"cert_file", "key_file", "client_ca_file"},
		"tenants": {"file"},
		"redis":   {"url_file", "password_file", "key_file", "ca_file"},
	} {
		for _, key := range keys {
			setting := section + "." + key
			standIn(setting, standInContent[setting], value(value(root, section), key))
		}
	}
	if profiles := value(root, "profiles"); profiles != nil {
		for i, p := range profiles.Content {
			standIn(profileKeySetting(i), standInContent["profiles[].external_id_key_file"], value(p, "external_id_key_file"))
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out, real
}

// standInContent is what a stand-in file holds where an empty one would
// not load: tokenvendor reads the Redis URL and keys at start.
var standInContent = map[string]string{
	"redis.url_file": "rediss://redis.example.com:6379/0\n",
	"redis.key_file": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("k"), 32)) + "\n",
	// As components/external-id-key says to make it: base64 of 32 bytes.
	"profiles[].external_id_key_file": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("x"), 32)) + "\n",
}

// profileKeySetting names the key file of the config's i-th profile.
func profileKeySetting(i int) string { return fmt.Sprintf("profiles[%d].external_id_key_file", i) }

// configText finds the config the tokenvendor container is started with:
// the ConfigMap volume mounted where --config points. It returns the
// ConfigMap's name and the file's text.
func configText(t *testing.T, ms []manifest, pod podTemplate, c container) (configMap, text string) {
	t.Helper()
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("container %s has no --config argument: %q", c.Name, c.Args)
	}
	dir, file := filepath.Split(c.Args[i+1])
	for _, mnt := range c.VolumeMounts {
		if filepath.Clean(mnt.MountPath) != filepath.Clean(dir) {
			continue
		}
		for _, v := range pod.Spec.Volumes {
			if v.Name != mnt.Name || v.ConfigMap == nil {
				continue
			}
			var cm struct {
				Data map[string]string `yaml:"data"`
			}
			find(t, ms, "ConfigMap", v.ConfigMap.Name).decode(t, &cm)
			raw, ok := cm.Data[file]
			if !ok {
				t.Fatalf("ConfigMap %s has no %s", v.ConfigMap.Name, file)
			}
			return v.ConfigMap.Name, raw
		}
	}
	t.Fatalf("container %s: nothing from a ConfigMap is mounted at %s", c.Name, dir)
	return "", ""
}

// tokenvendorConfig loads the config the tokenvendor container is started
// with (configText). The files it names keep their paths in the pod.
func tokenvendorConfig(t *testing.T, ms []manifest, pod podTemplate, c container) *config.Config {
	t.Helper()
	name, raw := configText(t, ms, pod, c)
	parsable, real := standIns(t, raw, pod, c)
	cfg, err := config.Parse(parsable)
	if err != nil {
		t.Fatalf("the config in ConfigMap %s does not load (tokenvendor check would refuse it): %v", name, err)
	}
	for setting, field := range map[string]*string{
		"tls.cert_file": &cfg.TLS.CertFile, "tls.key_file": &cfg.TLS.KeyFile,
		"tls.client_ca_file": &cfg.TLS.ClientCAFile, "tenants.file": &cfg.Tenants.File,
		"redis.url_file": &cfg.Redis.URLFile, "redis.password_file": &cfg.Redis.PasswordFile,
		"redis.key_file": &cfg.Redis.KeyFile, "redis.ca_file": &cfg.Redis.CAFile,
	} {
		if path, ok := real[setting]; ok {
			*field = path
		}
	}
	for i := range cfg.Profiles {
		if path, ok := real[profileKeySetting(i)]; ok {
			cfg.Profiles[i].ExternalIDKeyFile = path
		}
	}
	return cfg
}

// tagsTheTenant checks that every profile tags its sessions with the
// tenant: the access role's trust refuses a session without a TenantID tag,
// and its ABAC policy scopes the data by it.
func tagsTheTenant(t *testing.T, where string, cfg *config.Config) {
	t.Helper()
	for _, p := range cfg.Profiles {
		if got := strings.ReplaceAll(p.Tags["TenantID"], " ", ""); got != "{{.TenantID}}" {
			t.Errorf("%s: profile %s tags TenantID %q, want the tenant ({{ .TenantID }})", where, p.Name, p.Tags["TenantID"])
		}
	}
}

func portOf(t *testing.T, hostport string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func isTrue(b *bool) bool  { return b != nil && *b }
func isFalse(b *bool) bool { return b != nil && !*b }

func TestOverlaysRenderToTheirGoldenFiles(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			got := render(t, overlay)
			parse(t, got)
			golden := filepath.Join("testdata", overlay+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./deploy/ -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("kubectl kustomize %s differs from %s; if the change is meant, run go test ./deploy/ -update and review the diff", overlay, golden)
			}
		})
	}
}

func TestEveryPodIsLockedDown(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			ms := renderOverlay(t, overlay)
			deployments := ofKind(ms, "Deployment")
			if len(deployments) == 0 {
				t.Fatal("no Deployment")
			}
			for _, d := range append(deployments, ofKind(ms, "CronJob")...) {
				pod := podTemplateOf(t, d)
				ps := pod.Spec.SecurityContext
				if !isTrue(ps.RunAsNonRoot) || ps.RunAsUser == nil || *ps.RunAsUser == 0 || ps.SeccompProfile.Type != "RuntimeDefault" {
					t.Errorf("%s: pod securityContext %+v: want runAsNonRoot, a non-zero runAsUser and seccomp RuntimeDefault", d.Metadata.Name, ps)
				}
				if !isFalse(pod.Spec.AutomountServiceAccountToken) {
					t.Errorf("%s: the Kubernetes API token is mounted; nothing here calls the API", d.Metadata.Name)
				}
				for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
					sc := c.SecurityContext
					switch {
					case !isTrue(sc.RunAsNonRoot):
						t.Errorf("%s/%s: runAsNonRoot not set", d.Metadata.Name, c.Name)
					case !isFalse(sc.AllowPrivilegeEscalation):
						t.Errorf("%s/%s: allowPrivilegeEscalation not false", d.Metadata.Name, c.Name)
					case !isTrue(sc.ReadOnlyRootFilesystem):
						t.Errorf("%s/%s: root filesystem writable", d.Metadata.Name, c.Name)
					case !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || len(sc.Capabilities.Add) > 0:
						t.Errorf("%s/%s: capabilities %+v, want drop [ALL] and none added", d.Metadata.Name, c.Name, sc.Capabilities)
					case sc.SeccompProfile.Type != "RuntimeDefault":
						t.Errorf("%s/%s: seccomp %q, want RuntimeDefault", d.Metadata.Name, c.Name, sc.SeccompProfile.Type)
					}
					for _, r := range []string{"cpu", "memory"} {
						if c.Resources.Requests[r] == "" || c.Resources.Limits[r] == "" {
							t.Errorf("%s/%s: no %s request and limit: %+v", d.Metadata.Name, c.Name, r, c.Resources)
						}
					}
				}
			}
		})
	}
}

func TestTokenvendorProbesHealthAndReadinessOnItsAdminListener(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			ms := renderOverlay(t, overlay)
			found := 0
			for _, d := range ofKind(ms, "Deployment") {
				pod := podTemplateOf(t, d)
				for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
					if c.Name != "tokenvendor" {
						continue
					}
					found++
					if !strings.HasPrefix(c.Image, "ghcr.io/tokenvendor/tokenvendor:") || strings.HasSuffix(c.Image, ":latest") {
						t.Errorf("image %q: want the release image with a pinned tag", c.Image)
					}
					for name, p := range map[string]struct {
						probe *probe
						path  string
					}{
						"liveness":  {c.LivenessProbe, "/healthz"},
						"readiness": {c.ReadinessProbe, "/readyz"},
						"startup":   {c.StartupProbe, "/readyz"},
					} {
						if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port != "admin" {
							t.Errorf("%s probe: want GET %s on the admin port", name, p.path)
						}
						// The admin listener is plain HTTP even when the API
						// has TLS.
						if p.probe != nil && p.probe.HTTPGet != nil && p.probe.HTTPGet.Scheme != "" && p.probe.HTTPGet.Scheme != "HTTP" {
							t.Errorf("%s probe scheme %s: the admin listener serves plain HTTP", name, p.probe.HTTPGet.Scheme)
						}
					}
					cfg := tokenvendorConfig(t, ms, pod, c)
					tagsTheTenant(t, overlay, cfg)
					if cfg.AdminListen == "" || portOf(t, cfg.AdminListen) != c.port("admin") {
						t.Errorf("admin_listen %q does not serve the admin port %d the probes use", cfg.AdminListen, c.port("admin"))
					}
					if portOf(t, cfg.AdminListen) == portOf(t, cfg.Listen) {
						t.Errorf("admin_listen %q and listen %q share a port", cfg.AdminListen, cfg.Listen)
					}
				}
			}
			if found != 1 {
				t.Fatalf("%d tokenvendor containers, want 1", found)
			}
		})
	}
}

func TestStandaloneHasItsOperationalPieces(t *testing.T) {
	ms := renderOverlay(t, "standalone")
	dep := find(t, ms, "Deployment", "tokenvendor")
	pod := podTemplateOf(t, dep)
	labels := pod.Metadata.Labels
	selects := func(what string, sel map[string]string) {
		t.Helper()
		if len(sel) == 0 {
			t.Errorf("%s selects nothing", what)
		}
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("%s selector %s=%s does not match the pods' labels %v", what, k, v, labels)
			}
		}
	}
	c := pod.Spec.Containers[0]
	cfg := tokenvendorConfig(t, ms, pod, c)
	if host, _, _ := net.SplitHostPort(cfg.Listen); (host != "0.0.0.0" && host != "") || portOf(t, cfg.Listen) != c.port("https") {
		t.Errorf("listen %q: want every address on the https port %d", cfg.Listen, c.port("https"))
	}
	if c.port("http") != 0 {
		t.Errorf("container port http %d: the API listens on the pod network with TLS only", c.port("http"))
	}

	// Bearer tokens and credentials cross the pod network: the API has TLS,
	// its certificate and key from a Secret mounted read-only, which the
	// overlay's cert-manager Certificate writes.
	if cfg.TLS.CertFile == "" || cfg.TLS.KeyFile == "" {
		t.Fatalf("tls %+v: the API listens on the pod network without TLS", cfg.TLS)
	}
	var certificate struct {
		Spec struct {
			SecretName string   `yaml:"secretName"`
			DNSNames   []string `yaml:"dnsNames"`
		} `yaml:"spec"`
	}
	find(t, ms, "Certificate", "").decode(t, &certificate)
	for setting, path := range map[string]string{"tls.cert_file": cfg.TLS.CertFile, "tls.key_file": cfg.TLS.KeyFile} {
		v, readOnly, rel, ok := mounted(pod, c, path)
		switch {
		case !ok || !readOnly || v.Secret == nil:
			t.Errorf("%s %s is not on a read-only Secret volume", setting, path)
		case v.Secret.SecretName != certificate.Spec.SecretName:
			t.Errorf("%s comes from Secret %s; the Certificate writes %s", setting, v.Secret.SecretName, certificate.Spec.SecretName)
		case len(v.Secret.Items) > 0 && !slices.ContainsFunc(v.Secret.Items, func(i keyToPath) bool {
			return i.Path == rel && (i.Key == "tls.crt" || i.Key == "tls.key")
		}):
			t.Errorf("%s %s is not one of the Secret's tls.crt and tls.key", setting, path)
		}
	}

	var svc struct {
		Spec struct {
			Selector map[string]string `yaml:"selector"`
			Ports    []struct {
				Name       string `yaml:"name"`
				TargetPort string `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	service := find(t, ms, "Service", "tokenvendor")
	service.decode(t, &svc)
	selects("Service", svc.Spec.Selector)
	svcPorts := map[string]string{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = p.TargetPort
	}
	if len(svcPorts) != 2 || svcPorts["https"] != "https" || svcPorts["admin"] != "admin" {
		t.Errorf("Service ports %v: want https and admin to the container's ports", svcPorts)
	}
	ns := find(t, ms, "Namespace", "")
	if name := "tokenvendor." + ns.Metadata.Name + ".svc"; !slices.Contains(certificate.Spec.DNSNames, name) {
		t.Errorf("Certificate names %v, not the Service's %s", certificate.Spec.DNSNames, name)
	}

	var pdb struct {
		Spec struct {
			MinAvailable int `yaml:"minAvailable"`
			Selector     struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
		} `yaml:"spec"`
	}
	find(t, ms, "PodDisruptionBudget", "tokenvendor").decode(t, &pdb)
	selects("PodDisruptionBudget", pdb.Spec.Selector.MatchLabels)
	if pdb.Spec.MinAvailable < 1 {
		t.Errorf("PodDisruptionBudget minAvailable %d", pdb.Spec.MinAvailable)
	}

	var hpa struct {
		Spec struct {
			ScaleTargetRef struct {
				Kind string `yaml:"kind"`
				Name string `yaml:"name"`
			} `yaml:"scaleTargetRef"`
			MinReplicas int `yaml:"minReplicas"`
			MaxReplicas int `yaml:"maxReplicas"`
		} `yaml:"spec"`
	}
	find(t, ms, "HorizontalPodAutoscaler", "tokenvendor").decode(t, &hpa)
	if hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != dep.Metadata.Name {
		t.Errorf("HorizontalPodAutoscaler scales %+v", hpa.Spec.ScaleTargetRef)
	}
	if hpa.Spec.MinReplicas <= pdb.Spec.MinAvailable || hpa.Spec.MaxReplicas < hpa.Spec.MinReplicas {
		t.Errorf("replicas %d..%d with minAvailable %d: a drain would block", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas, pdb.Spec.MinAvailable)
	}

	var np struct {
		Spec struct {
			PodSelector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"podSelector"`
			PolicyTypes []string      `yaml:"policyTypes"`
			Ingress     []ingressRule `yaml:"ingress"`
		} `yaml:"spec"`
	}
	find(t, ms, "NetworkPolicy", "tokenvendor").decode(t, &np)
	selects("NetworkPolicy", np.Spec.PodSelector.MatchLabels)
	if !slices.Contains(np.Spec.PolicyTypes, "Ingress") || !slices.Contains(np.Spec.PolicyTypes, "Egress") {
		t.Errorf("NetworkPolicy types %v: want Ingress and Egress", np.Spec.PolicyTypes)
	}
	for i, rule := range np.Spec.Ingress {
		if len(rule.From) == 0 || len(rule.Ports) == 0 {
			t.Errorf("NetworkPolicy ingress[%d] is open to every source or port", i)
		}
		for _, p := range rule.Ports {
			if c.port(p.Port) == 0 {
				t.Errorf("NetworkPolicy ingress[%d] opens port %s, which the container does not have", i, p.Port)
			}
		}
	}
	clients := false
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			clients = clients || p.Port == "https"
		}
	}
	if !clients {
		t.Error("NetworkPolicy lets no client reach the https port")
	}

	var sm struct {
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Endpoints []struct {
				Port string `yaml:"port"`
				Path string `yaml:"path"`
			} `yaml:"endpoints"`
		} `yaml:"spec"`
	}
	find(t, ms, "ServiceMonitor", "tokenvendor").decode(t, &sm)
	for k, v := range sm.Spec.Selector.MatchLabels {
		if service.Metadata.Labels[k] != v {
			t.Errorf("ServiceMonitor selector %s=%s does not match the Service", k, v)
		}
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Path != "/metrics" || svcPorts[sm.Spec.Endpoints[0].Port] == "" {
		t.Errorf("ServiceMonitor endpoints %+v: want /metrics on a Service port", sm.Spec.Endpoints)
	}

	sa := find(t, ms, "ServiceAccount", pod.Spec.ServiceAccountName)
	if !regexp.MustCompile(`^arn:aws:iam::\d{12}:role/[\w+=,.@-]+$`).MatchString(sa.Metadata.Annotations["eks.amazonaws.com/role-arn"]) {
		t.Errorf("ServiceAccount %s has no IRSA role annotation: %v", sa.Metadata.Name, sa.Metadata.Annotations)
	}
	if ns.Metadata.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("Namespace %s does not enforce the restricted Pod Security Standard", ns.Metadata.Name)
	}
}

func TestSidecarWiresTheAppToTokenvendorOnLoopback(t *testing.T) {
	ms := renderOverlay(t, "sidecar")
	deployments := ofKind(ms, "Deployment")
	if len(deployments) != 1 {
		t.Fatalf("%d Deployments, want the example app's alone", len(deployments))
	}
	pod := podTemplateOf(t, deployments[0])

	var tv *container
	for i, c := range pod.Spec.InitContainers {
		if c.Name == "tokenvendor" {
			tv = &pod.Spec.InitContainers[i]
		}
	}
	if tv == nil || tv.RestartPolicy != "Always" {
		t.Fatal("tokenvendor is not a native sidecar (an init container with restartPolicy Always)")
	}
	if tv.StartupProbe == nil {
		t.Error("tokenvendor has no startup probe: the app would start before it is ready")
	}
	cfg := tokenvendorConfig(t, ms, pod, *tv)
	if host, _, _ := net.SplitHostPort(cfg.Listen); host != "127.0.0.1" {
		t.Errorf("listen %q: credentials must stay on the pod's loopback", cfg.Listen)
	}
	if !strings.HasPrefix(cfg.Auth.Issuer, "https://oidc.eks.") || cfg.Auth.JWKSURL != strings.TrimSuffix(cfg.Auth.Issuer, "/")+"/keys" {
		t.Errorf("issuer %q, jwks_url %q: want the cluster's OIDC issuer and its /keys", cfg.Auth.Issuer, cfg.Auth.JWKSURL)
	}

	var skipped []string
	for _, s := range strings.Split(pod.Metadata.Annotations["eks.amazonaws.com/skip-containers"], ",") {
		skipped = append(skipped, strings.TrimSpace(s))
	}
	if len(pod.Spec.Containers) == 0 {
		t.Fatal("no app container")
	}
	for _, app := range pod.Spec.Containers {
		if !slices.Contains(skipped, app.Name) {
			t.Errorf("container %s gets the sidecar role from EKS Pod Identity, and its SDK would skip tokenvendor: name it in eks.amazonaws.com/skip-containers", app.Name)
		}
		for _, name := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN"} {
			if _, ok := app.env(name); ok {
				t.Errorf("container %s sets %s, which AWS SDKs would use instead of tokenvendor or beside it", app.Name, name)
			}
		}
		uri, _ := app.env("AWS_CONTAINER_CREDENTIALS_FULL_URI")
		u, err := url.Parse(uri)
		if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" || u.Path != "/v1/container-credentials/objects" {
			t.Errorf("container %s: AWS_CONTAINER_CREDENTIALS_FULL_URI = %q, want tokenvendor's container route on loopback", app.Name, uri)
		} else if u.Port() != strconv.Itoa(portOf(t, cfg.Listen)) {
			t.Errorf("container %s: AWS_CONTAINER_CREDENTIALS_FULL_URI port %s, tokenvendor listens on %s", app.Name, u.Port(), cfg.Listen)
		}
		if !slices.ContainsFunc(cfg.Profiles, func(p config.Profile) bool { return "/v1/container-credentials/"+p.Name == u.Path }) {
			t.Errorf("container %s asks for a profile tokenvendor does not have: %s", app.Name, u.Path)
		}

		tokenFile, _ := app.env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
		var source string
		for _, mnt := range app.VolumeMounts {
			if rest, ok := strings.CutPrefix(tokenFile, strings.TrimSuffix(mnt.MountPath, "/")+"/"); ok && mnt.ReadOnly {
				for _, v := range pod.Spec.Volumes {
					if v.Name != mnt.Name || v.Projected == nil {
						continue
					}
					for _, s := range v.Projected.Sources {
						if sat := s.ServiceAccountToken; sat != nil && sat.Path == rest {
							source = v.Name
							if !slices.Contains(cfg.Auth.Audiences, sat.Audience) || sat.Audience != "tokenvendor" {
								t.Errorf("projected token audience %q, want tokenvendor (and tokenvendor to accept it: %v)", sat.Audience, cfg.Auth.Audiences)
							}
							if sat.ExpirationSeconds < 600 || sat.ExpirationSeconds > 3600 {
								t.Errorf("projected token lives %d s, want a short life (600 s, the least Kubernetes allows, to 1 h)", sat.ExpirationSeconds)
							}
						}
					}
				}
			}
		}
		if source == "" {
			t.Errorf("container %s: AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE = %q is not a read-only projected service-account token", app.Name, tokenFile)
		}
	}
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		if c.Name == "tokenvendor" {
			continue
		}
		for _, mnt := range c.VolumeMounts {
			for _, v := range pod.Spec.Volumes {
				if v.Name == mnt.Name && v.ConfigMap != nil && strings.HasPrefix(v.ConfigMap.Name, "tokenvendor-config") {
					t.Errorf("container %s mounts tokenvendor's config", c.Name)
				}
			}
		}
	}
	// tokenvendor's own role comes from EKS Pod Identity, whose session tags
	// carry the namespace the access role binds the tenant to. An IRSA role
	// carries no such tag: any pod of the service account could name any
	// tenant with it.
	sa := find(t, ms, "ServiceAccount", pod.Spec.ServiceAccountName)
	if arn, ok := sa.Metadata.Annotations["eks.amazonaws.com/role-arn"]; ok {
		t.Errorf("ServiceAccount %s has the IRSA role %s: the sidecar's role comes from EKS Pod Identity, bound to the namespace", sa.Metadata.Name, arn)
	}
	if cfg.Auth.TenantClaim != "kubernetes.io.namespace" || cfg.Auth.OverrideScope != "" {
		t.Errorf("tenant_claim %q, override_scope %q: the sidecar serves its namespace's tenant alone, which is all the access role lets it tag", cfg.Auth.TenantClaim, cfg.Auth.OverrideScope)
	}
}

// redisSecret is the Secret the standalone replicas read Redis's URL and
// keys from; the user creates it, the repository never holds it.
const redisSecret = "tokenvendor-redis"

// redisOf decodes the redis section of a config; nil when it has none.
func redisOf(t *testing.T, where, raw string) *config.Redis {
	t.Helper()
	var doc struct {
		Redis yaml.Node `yaml:"redis"`
	}
	if err := yaml.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if doc.Redis.Kind == 0 {
		return nil
	}
	b, err := yaml.Marshal(&doc.Redis)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var r config.Redis
	if err := dec.Decode(&r); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("%s: redis: %v", where, err)
	}
	return &r
}

// tokenvendorContainer returns the container named tokenvendor, among the
// init containers too (a native sidecar).
func tokenvendorContainer(t *testing.T, pod podTemplate) container {
	t.Helper()
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		if c.Name == "tokenvendor" {
			return c
		}
	}
	t.Fatal("no tokenvendor container")
	return container{}
}

func octal(mode *int) string {
	if mode == nil {
		return "unset (0644)"
	}
	return fmt.Sprintf("%#o", *mode)
}

// The standalone replicas share Redis. Its URL may carry the AUTH token and
// its keys open every cached credential: both are files of the Secret
// tokenvendor-redis, mounted read-only, readable by the pod's non-root
// group and no one else.
func TestStandaloneReadsRedisFromTheSecretItMounts(t *testing.T) {
	ms := renderOverlay(t, "standalone")
	pod := podTemplateOf(t, find(t, ms, "Deployment", "tokenvendor"))
	c := tokenvendorContainer(t, pod)
	name, raw := configText(t, ms, pod, c)
	r := redisOf(t, "ConfigMap "+name, raw)
	if r == nil {
		t.Fatal("the standalone config has no redis section: each of its 2-10 replicas would call STS and count limits alone")
	}
	if r.URL != "" || r.URLFile == "" {
		t.Errorf("redis url %q, url_file %q: the URL may carry the AUTH token, so it comes from the Secret %s (url_file)", r.URL, r.URLFile, redisSecret)
	}
	for _, tc := range []struct {
		setting  string
		path     string
		key      string // the Secret's key the file must hold; "" for any
		required bool
	}{
		{setting: "redis.url_file", path: r.URLFile, key: "url", required: true},
		{setting: "redis.key_file", path: r.KeyFile, key: "key", required: true},
		{setting: "redis.password_file", path: r.PasswordFile},
		// Not redis.ca_file: a CA bundle is no secret, and may come from
		// any read-only mount (standIns checks that).
	} {
		t.Run(tc.setting, func(t *testing.T) {
			if tc.path == "" {
				if tc.required {
					t.Fatalf("%s is not set", tc.setting)
				}
				return
			}
			secretFile(t, pod, c, tc.setting, tc.path, redisSecret, tc.key)
		})
	}
}

// secretFile checks that the file a setting names is the Secret's key (any
// key when key is ""), on a read-only mount of the container, readable by
// the pod's non-root group and no one else.
func secretFile(t *testing.T, pod podTemplate, c container, setting, path, secret, key string) {
	t.Helper()
	v, readOnly, rel, ok := mounted(pod, c, path)
	switch {
	case !ok || v.Secret == nil:
		t.Fatalf("%s %s is not on a Secret volume of container %s", setting, path, c.Name)
	case v.Secret.SecretName != secret:
		t.Errorf("%s %s comes from Secret %s, want %s", setting, path, v.Secret.SecretName, secret)
	case !readOnly:
		t.Errorf("%s %s is on a writable mount", setting, path)
	}
	got, mode := rel, v.Secret.DefaultMode
	if len(v.Secret.Items) > 0 {
		i := slices.IndexFunc(v.Secret.Items, func(i keyToPath) bool { return i.Path == rel })
		if i < 0 {
			t.Fatalf("%s %s: the Secret volume projects no %s", setting, path, rel)
		}
		got = v.Secret.Items[i].Key
		if m := v.Secret.Items[i].Mode; m != nil {
			mode = m
		}
	}
	if key != "" && got != key {
		t.Errorf("%s %s is the Secret's key %q, want %q", setting, path, got, key)
	}
	// The kubelet gives the files the pod's fsGroup, which the non-root
	// process has; without one they belong to root.
	fsGroup := pod.Spec.SecurityContext.FSGroup
	if mode == nil || *mode&0o007 != 0 || *mode&0o040 == 0 || fsGroup == nil || *fsGroup == 0 {
		group := "unset"
		if fsGroup != nil {
			group = strconv.Itoa(*fsGroup)
		}
		t.Errorf("%s %s: mode %s, fsGroup %s: want it readable by the pod's fsGroup and by no other user", setting, path, octal(mode), group)
	}
}

// Nothing committed holds the Redis URL (it may carry the AUTH token) or a
// key sealing its entries: not a ConfigMap, which whoever may read the
// namespace's configuration reads, nor a Secret rendered from the
// repository.
func TestNoManifestCarriesARedisURLOrKey(t *testing.T) {
	redisURL := regexp.MustCompile(`(?i)rediss?://`)
	base64Key := regexp.MustCompile(`[A-Za-z0-9+/]{43}=`)
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			for _, m := range renderOverlay(t, overlay) {
				switch m.Kind {
				case "Secret":
					if m.Metadata.Name == redisSecret {
						t.Errorf("the Secret %s is rendered from the repository: its URL and key would be committed; the user creates it", redisSecret)
					}
				case "ConfigMap":
					var cm struct {
						Data map[string]string `yaml:"data"`
					}
					m.decode(t, &cm)
					for file, text := range cm.Data {
						where := "ConfigMap " + m.Metadata.Name + " " + file
						if redisURL.MatchString(text) {
							t.Errorf("%s holds a Redis URL, which may carry the AUTH token: it belongs in the Secret %s", where, redisSecret)
						}
						for _, k := range base64Key.FindAllString(text, -1) {
							if b, err := base64.StdEncoding.DecodeString(k); err == nil && len(b) == 32 {
								t.Errorf("%s holds a 32-byte key (%.8s…): it belongs in the Secret %s", where, k, redisSecret)
							}
						}
						if strings.HasSuffix(file, ".yaml") {
							if r := redisOf(t, where, text); r != nil && r.URL != "" {
								t.Errorf("%s sets redis.url, which may carry the AUTH token: use url_file and the Secret %s", where, redisSecret)
							}
						}
					}
				}
			}
		})
	}
}

// Redis (ElastiCache) is outside the cluster, on the port the template
// gives it and its security group opens to the pods.
func TestNetworkPolicyLetsTheReplicasReachRedis(t *testing.T) {
	_, rg := replicationGroup(t, deploy(t, loadTemplate(t), redisParams))
	port := fmt.Sprint(rg.Properties["Port"])
	var np struct {
		Spec struct {
			PolicyTypes []string `yaml:"policyTypes"`
			Egress      []struct {
				Ports []struct {
					Port     string `yaml:"port"`
					Protocol string `yaml:"protocol"`
				} `yaml:"ports"`
			} `yaml:"egress"`
		} `yaml:"spec"`
	}
	find(t, renderOverlay(t, "standalone"), "NetworkPolicy", "tokenvendor").decode(t, &np)
	if !slices.Contains(np.Spec.PolicyTypes, "Egress") {
		t.Fatalf("NetworkPolicy types %v: want Egress", np.Spec.PolicyTypes)
	}
	for _, rule := range np.Spec.Egress {
		for _, p := range rule.Ports {
			if p.Port == port && (p.Protocol == "" || p.Protocol == "TCP") {
				return
			}
		}
	}
	t.Errorf("NetworkPolicy egress opens no TCP %s: the replicas could not reach Redis and would each serve alone", port)
}

// A sidecar serves its own pod or task, and the app beside it shares its
// network: a Redis the sidecar reached, the app would reach too, and could
// spend or clear every tenant's leases and limits there.
func TestSidecarsShareNoRedis(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config func(t *testing.T) string
	}{
		{name: "kubernetes sidecar", config: func(t *testing.T) string {
			ms := renderOverlay(t, "sidecar")
			pod := podTemplateOf(t, find(t, ms, "Deployment", ""))
			for _, v := range pod.Spec.Volumes {
				if v.Secret != nil && v.Secret.SecretName == redisSecret {
					t.Errorf("the pod mounts the Secret %s", redisSecret)
				}
			}
			_, raw := configText(t, ms, pod, tokenvendorContainer(t, pod))
			return raw
		}},
		{name: "ECS task", config: func(t *testing.T) string {
			b, err := os.ReadFile("ecs/config.yaml")
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := redisOf(t, tc.name, tc.config(t)); r != nil {
				t.Errorf("the config has a redis section %+v", *r)
			}
		})
	}
}

func TestStandaloneRunsTheIsolationCanaryAsACronJob(t *testing.T) {
	ms := renderOverlay(t, "standalone")
	cj := find(t, ms, "CronJob", "tokenvendor-canary")
	var spec struct {
		Spec struct {
			Schedule          string `yaml:"schedule"`
			ConcurrencyPolicy string `yaml:"concurrencyPolicy"`
			JobTemplate       struct {
				Spec struct {
					BackoffLimit *int `yaml:"backoffLimit"`
				} `yaml:"spec"`
			} `yaml:"jobTemplate"`
		} `yaml:"spec"`
	}
	cj.decode(t, &spec)
	if spec.Spec.Schedule == "" || spec.Spec.ConcurrencyPolicy != "Forbid" || spec.Spec.JobTemplate.Spec.BackoffLimit == nil || *spec.Spec.JobTemplate.Spec.BackoffLimit != 0 {
		t.Errorf("schedule %q, concurrencyPolicy %q, backoffLimit %v: want a schedule, Forbid and no retry (a failed run is a verdict)",
			spec.Spec.Schedule, spec.Spec.ConcurrencyPolicy, spec.Spec.JobTemplate.Spec.BackoffLimit)
	}
	pod := podTemplateOf(t, cj)
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want the canary alone", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	if len(c.Args) < 1 || c.Args[0] != "canary" {
		t.Errorf("args %q, want the canary command", c.Args)
	}
	service := podTemplateOf(t, find(t, ms, "Deployment", "tokenvendor"))
	if pod.Spec.ServiceAccountName != service.Spec.ServiceAccountName || c.Image != tokenvendorContainer(t, service).Image {
		t.Errorf("service account %q, image %q: want the service's, so the canary vends as the service does", pod.Spec.ServiceAccountName, c.Image)
	}
	serviceConfig, _ := configText(t, ms, service, tokenvendorContainer(t, service))
	canaryConfig, _ := configText(t, ms, pod, c)
	if canaryConfig != serviceConfig {
		t.Errorf("the canary loads ConfigMap %s, the service %s", canaryConfig, serviceConfig)
	}
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "tokenvendor-tls" {
			t.Errorf("the canary mounts the API's TLS key (volume %s); it serves nothing", v.Name)
		}
	}
	// `tokenvendor canary` loads the config without the listeners' TLS
	// files (config.LoadWithoutListeners): leave them out, as it does.
	name, raw := configText(t, ms, pod, c)
	parsable, _ := standIns(t, withoutTLS(t, raw), pod, c)
	cfg, err := config.Parse(parsable)
	if err != nil {
		t.Fatalf("the config in ConfigMap %s does not load for the canary: %v", name, err)
	}
	if len(cfg.Canary.Probes) == 0 || len(cfg.Canary.Tenants) != 2 {
		t.Fatalf("the config has no canary probes or tenants: %+v", cfg.Canary)
	}
	if cfg.Canary.Interval != 0 {
		t.Errorf("canary.interval %s: the CronJob runs it; the service need not as well", cfg.Canary.Interval)
	}

	// Nothing meant for the service selects the canary's pods.
	for _, kind := range []string{"Service", "PodDisruptionBudget", "NetworkPolicy"} {
		for _, m := range ofKind(ms, kind) {
			var sel struct {
				Spec struct {
					Selector    map[string]any `yaml:"selector"`
					PodSelector struct {
						MatchLabels map[string]string `yaml:"matchLabels"`
					} `yaml:"podSelector"`
				} `yaml:"spec"`
			}
			m.decode(t, &sel)
			labels := sel.Spec.PodSelector.MatchLabels
			if kind == "Service" {
				labels = map[string]string{}
				for k, v := range sel.Spec.Selector {
					labels[k] = fmt.Sprint(v)
				}
			} else if ml, ok := sel.Spec.Selector["matchLabels"].(map[string]any); ok {
				labels = map[string]string{}
				for k, v := range ml {
					labels[k] = fmt.Sprint(v)
				}
			}
			selects := len(labels) > 0
			for k, v := range labels {
				if pod.Metadata.Labels[k] != v {
					selects = false
				}
			}
			if selects != (kind == "NetworkPolicy" && m.Metadata.Name == "tokenvendor-canary") {
				t.Errorf("%s %s selects the canary's pods: %v", kind, m.Metadata.Name, selects)
			}
		}
	}
	var np struct {
		Spec struct {
			PolicyTypes []string    `yaml:"policyTypes"`
			Ingress     []yaml.Node `yaml:"ingress"`
		} `yaml:"spec"`
	}
	find(t, ms, "NetworkPolicy", "tokenvendor-canary").decode(t, &np)
	if !slices.Contains(np.Spec.PolicyTypes, "Ingress") || len(np.Spec.Ingress) != 0 {
		t.Errorf("the canary's NetworkPolicy: policyTypes %v, %d ingress rules; want Ingress denied", np.Spec.PolicyTypes, len(np.Spec.Ingress))
	}
}

// withoutTLS is a config without its tls section, as `tokenvendor canary`
// loads it (config.LoadWithoutListeners): the canary serves nothing and
// mounts no TLS files.
func withoutTLS(t *testing.T, raw string) string {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "tls")
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The derived ExternalIds' key: components/external-id-key (and the chart's
// externalIdKey) mount the Secret's key key at externalIDKeyFile.
const (
	externalIDKeySecret = "tokenvendor-external-id"
	externalIDKeyFile   = "/etc/tokenvendor/external-id/key"
)

// withDerivedProfile adds to a config a silo profile (docs/isolation.md)
// whose ExternalId is derived from the key at externalIDKeyFile: the
// config's first profile with each tenant's own account and role.
func withDerivedProfile(t *testing.T, raw string) string {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	profiles, _ := doc["profiles"].([]any)
	if len(profiles) == 0 {
		t.Fatal("the config has no profiles")
	}
	silo := map[string]any{}
	for k, v := range profiles[0].(map[string]any) {
		silo[k] = v
	}
	silo["name"] = "silo"
	silo["role_arn"] = `arn:{{ .Partition }}:iam::{{ .Attr "account_id" }}:role/TenantAccess`
	silo["external_id"] = "derived"
	silo["external_id_key_file"] = externalIDKeyFile
	doc["profiles"] = append(profiles, silo)
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkExternalIDKey checks that the service and the canary load their
// config, edited by edit, with every profile's external_id_key_file the
// key of Secret tokenvendor-external-id on a read-only mount, and that at
// least one profile derives its ExternalIds from it.
func checkExternalIDKey(t *testing.T, ms []manifest, edit func(*testing.T, string) string) {
	t.Helper()
	for _, w := range []struct{ kind, name string }{{"Deployment", "tokenvendor"}, {"CronJob", "tokenvendor-canary"}} {
		pod := podTemplateOf(t, find(t, ms, w.kind, w.name))
		var c container
		if w.kind == "CronJob" {
			c = pod.Spec.Containers[0]
		} else {
			c = tokenvendorContainer(t, pod)
		}
		name, raw := configText(t, ms, pod, c)
		raw = edit(t, raw)
		if w.kind == "CronJob" {
			raw = withoutTLS(t, raw)
		}
		parsable, real := standIns(t, raw, pod, c)
		cfg, err := config.Parse(parsable)
		if err != nil {
			t.Fatalf("%s %s: the config in ConfigMap %s does not load: %v", w.kind, w.name, name, err)
		}
		derived := 0
		for i, p := range cfg.Profiles {
			path, ok := real[profileKeySetting(i)]
			if !ok {
				continue
			}
			if path != externalIDKeyFile {
				t.Errorf("%s %s: profile %s reads its key from %s, want %s", w.kind, w.name, p.Name, path, externalIDKeyFile)
			}
			secretFile(t, pod, c, w.kind+" "+w.name+": "+profileKeySetting(i), path, externalIDKeySecret, "key")
			if p.ExternalID == "derived" && p.Role != nil {
				derived++
			}
		}
		if derived == 0 {
			t.Errorf("%s %s: no profile derives its ExternalId from %s", w.kind, w.name, externalIDKeyFile)
		}
	}
}

// components/external-id-key gives the service and the canary the derived
// ExternalIds' key from its Secret, where a profile's external_id_key_file
// names it, and a config with such a profile loads.
func TestExternalIDKeyComponentMountsTheKeyFromItsSecret(t *testing.T) {
	checkExternalIDKey(t, renderWith(t, "overlays/standalone", "external-id-key"), withDerivedProfile)

	// Without components/canary there is no CronJob to patch: the service
	// alone gets the key.
	ms := renderWith(t, "base", "external-id-key")
	if cj := ofKind(ms, "CronJob"); len(cj) != 0 {
		t.Errorf("base with components/external-id-key renders %d CronJobs", len(cj))
	}
	pod := podTemplateOf(t, find(t, ms, "Deployment", "tokenvendor"))
	secretFile(t, pod, tokenvendorContainer(t, pod), "without the canary", externalIDKeyFile, externalIDKeySecret, "key")
}
