package policy_test

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tokenvendor/tokenvendor/internal/policy"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// s3Policy is a valid, tenant-scoped policy for tests that vary something
// other than the policy.
const s3Policy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/{{ .TenantID }}/*"}]}`

func TestCompileErrors(t *testing.T) {
	tooManyTags := map[string]string{}
	for i := range policy.MaxTags + 1 {
		tooManyTags[fmt.Sprintf("k%02d", i)] = "v"
	}
	tests := []struct {
		name    string
		policy  string
		tags    map[string]string
		wantErr string
	}{
		{name: "empty policy", policy: " \n", wantErr: "policy: empty"},
		{name: "invalid JSON", policy: `{"Version":`, wantErr: "policy: not valid JSON"},
		{name: "trailing data", policy: s3Policy + ` {}`, wantErr: "policy: trailing data"},
		{name: "template action in object key", policy: `{"Version":"2012-10-17","Statement":[{"{{ .TenantID }}":"x"}]}`, wantErr: "policy.Statement[0]: template action in object key"},
		{name: "bad template syntax", policy: `{"Version":"2012-10-17","Statement":[{"Resource":"{{ .TenantID "}]}`, wantErr: "policy.Statement[0].Resource: bad template"},
		{name: "unknown template function", policy: `{"Version":"2012-10-17","Statement":[{"Resource":"{{ exec .TenantID }}"}]}`, wantErr: "policy.Statement[0].Resource: bad template"},
		{name: "bad tag template", policy: s3Policy, tags: map[string]string{"TenantID": "{{ .TenantID"}, wantErr: "tags.TenantID: bad template"},
		{name: "tag key with aws prefix", policy: s3Policy, tags: map[string]string{"aws:x": "v"}, wantErr: "tags.aws:x: not a valid session tag key"},
		{name: "tag key with upper case aws prefix", policy: s3Policy, tags: map[string]string{"AWS:x": "v"}, wantErr: "tags.AWS:x: not a valid session tag key"},
		{name: "empty tag key", policy: s3Policy, tags: map[string]string{"": "v"}, wantErr: "tags.: not a valid session tag key"},
		{name: "tag key with wildcard", policy: s3Policy, tags: map[string]string{"a*b": "v"}, wantErr: "tags.a*b: not a valid session tag key"},
		{name: "too many tags", policy: s3Policy, tags: tooManyTags, wantErr: "tags: 51 tags, STS allows at most 50"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.Compile(policy.Spec{Profile: "p", Policy: tt.policy, Tags: tt.tags}, mustTenantRule(t, ""))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Compile() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCompileReportsEveryProblem(t *testing.T) {
	spec := policy.Spec{
		Profile: "p",
		Policy:  `{"Version":"2012-10-17","Statement":[{"{{ .A }}":"x","Resource":"{{ .B "}]}`,
		Tags:    map[string]string{"aws:x": "v"},
	}
	_, err := policy.Compile(spec, mustTenantRule(t, ""))
	if err == nil {
		t.Fatal("Compile() = nil, want errors")
	}
	for _, want := range []string{"template action in object key", "policy.Statement[0].Resource: bad template", "tags.aws:x"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Compile() error %q does not contain %q", err, want)
		}
	}
}

func TestCompileWithoutTenantRule(t *testing.T) {
	if _, err := policy.Compile(policy.Spec{Profile: "p", Policy: s3Policy}, nil); err == nil {
		t.Fatal("Compile() with a nil tenant rule = nil, want an error")
	}
}

// goldenProfiles are the profiles of examples/config.yaml; their policy text
// is copied into testdata/<name>.json.
var goldenProfiles = []struct {
	name string
	vars map[string]string
	tags map[string]string
}{
	{name: "objects", vars: map[string]string{"bucket": "tenant-data"}, tags: map[string]string{"TenantID": "{{ .TenantID }}"}},
	{name: "orders", tags: map[string]string{"TenantID": "{{ .TenantID }}"}},
}

func TestRenderGolden(t *testing.T) {
	for _, p := range goldenProfiles {
		t.Run(p.name, func(t *testing.T) {
			tmpl := compileFile(t, p.name, p.vars, p.tags)
			if err := tmpl.Lint(); err != nil {
				t.Fatalf("Lint() = %v", err)
			}
			r, err := tmpl.Render("acme")
			if err != nil {
				t.Fatalf("Render(acme) = %v", err)
			}
			if !json.Valid([]byte(r.Policy)) {
				t.Fatalf("Policy is not valid JSON: %s", r.Policy)
			}
			if strings.ContainsAny(r.Policy, " \n\t") {
				t.Errorf("Policy is not compact: %s", r.Policy)
			}
			got := formatRendered(r) + "session_name: " + sessionName(t, "acme", p.name) + "\n"
			golden := filepath.Join("testdata", p.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden file (run with -update to create it): %v", err)
			}
			if got != string(want) {
				t.Errorf("Render(acme) differs from %s\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestRenderMissingVar(t *testing.T) {
	tmpl := compileFile(t, "objects", nil, nil)
	_, err := tmpl.Render("acme")
	if err == nil || !strings.Contains(err.Error(), `no entry for key "bucket"`) {
		t.Fatalf("Render() error = %v, want a missing key error for bucket", err)
	}
	if errors.Is(err, policy.ErrInvalidTenant) {
		t.Errorf("Render() error %v wraps ErrInvalidTenant, but the tenant is valid", err)
	}
}

func TestRenderInvalidTenant(t *testing.T) {
	tmpl := compileFile(t, "objects", map[string]string{"bucket": "tenant-data"}, nil)
	for _, id := range []string{"*", "acme/*", "${aws:username}", ""} {
		if _, err := tmpl.Render(id); !errors.Is(err, policy.ErrInvalidTenant) {
			t.Errorf("Render(%q) error = %v, want ErrInvalidTenant", id, err)
		}
	}
}

func TestSessionName(t *testing.T) {
	valid := regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
	long := strings.Repeat("t", 63)
	longProfile := strings.Repeat("p", 64)
	tests := []struct {
		name    string
		tenant  string
		profile string
		want    string // "" checks only validity and length
	}{
		{name: "short", tenant: "acme", profile: "objects", want: "acme@objects"},
		{name: "floor characters kept", tenant: "a.b=c+d_e", profile: "p", want: "a.b=c+d_e@p"},
		{name: "invalid characters replaced, a hash added", tenant: "a b*c", profile: "p", want: "a-b-c@p-8a1ee84b"},
		{name: "padded to the minimum with a hash", tenant: "", profile: "", want: "@-c3641f85"},
		{name: "exactly 64", tenant: strings.Repeat("t", 61), profile: "pp", want: strings.Repeat("t", 61) + "@pp"},
		{name: "long tenant and profile", tenant: long, profile: longProfile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sessionName(t, tt.tenant, tt.profile)
			if again := sessionName(t, tt.tenant, tt.profile); again != got {
				t.Errorf("SessionName is not deterministic: %q then %q", got, again)
			}
			if !valid.MatchString(got) {
				t.Errorf("SessionName(%q, %q) = %q, outside [\\w+=,.@-]{2,64}", tt.tenant, tt.profile, got)
			}
			if tt.want != "" && got != tt.want {
				t.Errorf("SessionName(%q, %q) = %q, want %q", tt.tenant, tt.profile, got, tt.want)
			}
		})
	}
}

func TestSessionNameTruncatedNamesStayUnique(t *testing.T) {
	base := strings.Repeat("t", 62)
	a := sessionName(t, base+"a", "objects")
	b := sessionName(t, base+"b", "objects")
	if len(a) != policy.MaxSessionNameLength || len(b) != policy.MaxSessionNameLength {
		t.Fatalf("SessionName lengths = %d, %d, want %d", len(a), len(b), policy.MaxSessionNameLength)
	}
	if !regexp.MustCompile(`-[0-9a-f]{8}$`).MatchString(a) {
		t.Errorf("SessionName = %q, want a hash suffix", a)
	}
	if a == b {
		t.Errorf("SessionName gives %q for two tenants differing only at the end", a)
	}
	if !strings.HasPrefix(a, base[:40]) {
		t.Errorf("SessionName = %q, want it to keep the start of the tenant", a)
	}
}

func compileFile(t *testing.T, name string, vars, tags map[string]string) *policy.Template {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := policy.Compile(policy.Spec{Profile: name, Policy: string(text), Tags: tags, Vars: vars}, mustTenantRule(t, ""))
	if err != nil {
		t.Fatalf("Compile(%s) = %v", name, err)
	}
	return tmpl
}

func formatRendered(r policy.Rendered) string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy: %s\n", r.Policy)
	for _, tag := range r.Tags {
		fmt.Fprintf(&b, "tag: %s=%s\n", tag.Key, tag.Value)
	}
	return b.String()
}

// sessionName is the name the default session template gives.
func sessionName(t *testing.T, tenant, profile string) string {
	t.Helper()
	n, err := policy.NewSessionNamer("", false)
	if err != nil {
		t.Fatal(err)
	}
	name, err := n.Name(tenant, profile, "")
	if err != nil {
		t.Fatal(err)
	}
	return name
}
