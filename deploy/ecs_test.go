package deploy_test

import (
	"encoding/json"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tokenvendor/tokenvendor/internal/config"
)

type taskDefinition struct {
	NetworkMode          string         `json:"networkMode"`
	TaskRoleArn          string         `json:"taskRoleArn"`
	ContainerDefinitions []ecsContainer `json:"containerDefinitions"`
}

type keyValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type secret struct {
	Name      string `json:"name"`
	ValueFrom string `json:"valueFrom"`
}

type mountPoint struct {
	SourceVolume  string `json:"sourceVolume"`
	ContainerPath string `json:"containerPath"`
	ReadOnly      bool   `json:"readOnly"`
}

type dependency struct {
	ContainerName string `json:"containerName"`
	Condition     string `json:"condition"`
}

type ecsContainer struct {
	Name                   string   `json:"name"`
	Image                  string   `json:"image"`
	Essential              *bool    `json:"essential"`
	User                   string   `json:"user"`
	EntryPoint             []string `json:"entryPoint"`
	Command                []string `json:"command"`
	ReadonlyRootFilesystem bool     `json:"readonlyRootFilesystem"`
	LinuxParameters        struct {
		Capabilities struct {
			Drop []string `json:"drop"`
			Add  []string `json:"add"`
		} `json:"capabilities"`
	} `json:"linuxParameters"`
	Environment []keyValue   `json:"environment"`
	Secrets     []secret     `json:"secrets"`
	MountPoints []mountPoint `json:"mountPoints"`
	DependsOn   []dependency `json:"dependsOn"`
	HealthCheck *struct {
		Command []string `json:"command"`
		Timeout int      `json:"timeout"`
	} `json:"healthCheck"`
}

// env returns the value of a plain variable, or where a secret one comes from.
func (c ecsContainer) env(name string) (string, bool) {
	for _, e := range c.Environment {
		if e.Name == name {
			return e.Value, true
		}
	}
	for _, s := range c.Secrets {
		if s.Name == name {
			return s.ValueFrom, true
		}
	}
	return "", false
}

func (c ecsContainer) dependsOn(name, condition string) bool {
	return slices.Contains(c.DependsOn, dependency{ContainerName: name, Condition: condition})
}

func TestECSTaskDefinitionWiresTheAppToTheSidecar(t *testing.T) {
	b, err := os.ReadFile("ecs/task-definition.json")
	if err != nil {
		t.Fatal(err)
	}
	var td taskDefinition
	if err := json.Unmarshal(b, &td); err != nil {
		t.Fatalf("task definition: %v", err)
	}
	// The app reaches tokenvendor on 127.0.0.1 only if they share a network
	// namespace.
	if td.NetworkMode != "awsvpc" {
		t.Errorf("networkMode %q, want awsvpc", td.NetworkMode)
	}
	byName := map[string]ecsContainer{}
	for _, c := range td.ContainerDefinitions {
		byName[c.Name] = c
	}
	tv, ok := byName["tokenvendor"]
	if !ok {
		t.Fatal("no tokenvendor container")
	}
	if tv.Essential == nil || !*tv.Essential {
		t.Error("tokenvendor is not essential: the task would run on without credentials")
	}
	if tv.HealthCheck == nil || !slices.Equal(tv.HealthCheck.Command, []string{"CMD", "/tokenvendor", "healthcheck"}) {
		t.Errorf("tokenvendor health check %+v, want [CMD /tokenvendor healthcheck] (distroless has no shell)", tv.HealthCheck)
	}
	if !tv.ReadonlyRootFilesystem || tv.User == "" || strings.HasPrefix(tv.User, "0") || !slices.Equal(tv.LinuxParameters.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("tokenvendor: read-only %v, user %q, capabilities %+v: want read-only, non-root, drop ALL", tv.ReadonlyRootFilesystem, tv.User, tv.LinuxParameters.Capabilities)
	}
	if i := slices.Index(tv.Command, "--config"); i < 0 || i+1 >= len(tv.Command) ||
		!slices.ContainsFunc(tv.MountPoints, func(m mountPoint) bool {
			return strings.HasPrefix(tv.Command[i+1], m.ContainerPath+"/") && m.ReadOnly
		}) {
		t.Errorf("tokenvendor's --config is not on a read-only mounted volume: %q", tv.Command)
	}

	cfgBytes, err := os.ReadFile("ecs/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(cfgBytes)
	if err != nil {
		t.Fatalf("ecs/config.yaml does not load: %v", err)
	}
	if cfg.Listen != "127.0.0.1:8080" {
		t.Errorf("listen %q: the health check's default URL is http://127.0.0.1:8080/readyz", cfg.Listen)
	}
	tagsTheTenant(t, "ecs/config.yaml", cfg)
	for i, p := range cfg.Profiles {
		if p.ExternalID == "" {
			t.Errorf("profiles[%d] has no external_id: the app shares the task role and could assume the access role itself", i)
		}
	}

	apps := 0
	for _, c := range td.ContainerDefinitions {
		if c.Name == "tokenvendor" || !slices.ContainsFunc(c.Environment, func(e keyValue) bool {
			return strings.HasPrefix(e.Name, "AWS_CONTAINER_")
		}) {
			continue
		}
		apps++
		if !c.dependsOn("tokenvendor", "HEALTHY") {
			t.Errorf("%s does not wait for tokenvendor to be HEALTHY: %+v", c.Name, c.DependsOn)
		}
		uri, _ := c.env("AWS_CONTAINER_CREDENTIALS_FULL_URI")
		u, err := url.Parse(uri)
		if err != nil || u.Scheme != "http" || u.Host != cfg.Listen || !slices.ContainsFunc(cfg.Profiles, func(p config.Profile) bool {
			return u.Path == "/v1/container-credentials/"+p.Name
		}) {
			t.Errorf("%s: AWS_CONTAINER_CREDENTIALS_FULL_URI = %q, want the container route of a profile on %s", c.Name, uri, cfg.Listen)
		}
		_, fromFile := c.env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
		token, tokenSet := c.env("AWS_CONTAINER_AUTHORIZATION_TOKEN")
		if fromFile == tokenSet {
			t.Errorf("%s: want exactly one of AWS_CONTAINER_AUTHORIZATION_TOKEN and _FILE", c.Name)
		}
		if tokenSet && !slices.ContainsFunc(c.Secrets, func(s secret) bool { return s.Name == "AWS_CONTAINER_AUTHORIZATION_TOKEN" }) {
			t.Errorf("%s: the token %q is in the task definition's plain environment, not a secret", c.Name, token)
		}
		for _, name := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"} {
			if _, ok := c.env(name); ok {
				t.Errorf("%s sets %s, which AWS SDKs would use instead of tokenvendor", c.Name, name)
			}
		}
		// The ECS agent gives every container of a task with a role
		// AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, which SDKs prefer to the
		// full URI: the app must drop it before it starts.
		if td.TaskRoleArn != "" && !strings.Contains(strings.Join(c.EntryPoint, " "), "unset AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
			t.Errorf("%s keeps the task role's AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: its SDK would use the task role, not tokenvendor", c.Name)
		}
		for _, m := range c.MountPoints {
			for _, tm := range tv.MountPoints {
				if m.SourceVolume == tm.SourceVolume {
					t.Errorf("%s mounts tokenvendor's volume %s (its config holds the ExternalId)", c.Name, m.SourceVolume)
				}
			}
		}
	}
	if apps == 0 {
		t.Fatal("no app container wired to tokenvendor")
	}
}
