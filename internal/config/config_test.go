package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/config"
)

// baseline is a valid configuration with one S3 profile, leaving every
// defaulted setting unset.
const baseline = `auth:
  issuer: https://idp.example.com
  jwks_url: https://idp.example.com/jwks
  audiences: [tokenvendor]
  algorithms: [RS256, ES256]
  tenant_pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$'
profiles:
  - name: objects
    role_arn: arn:aws:iam::123456789012:role/TenantData
    vars: {bucket: tenant-data}
    policy: |
      {"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:DeleteObject"],
         "Resource":["arn:aws:s3:::{{ .Vars.bucket }}/{{ .TenantID }}/*"]},
        {"Effect":"Allow","Action":["s3:ListBucket"],
         "Resource":["arn:aws:s3:::{{ .Vars.bucket }}"],
         "Condition":{"StringLike":{"s3:prefix":["{{ .TenantID }}/*"]}}}]}
    tags: {TenantID: "{{ .TenantID }}"}
`

// profileStart is where the baseline's profile list begins.
const profileStart = "  - name: objects\n"

func replace(old, new string) func(*string) {
	return func(y *string) { *y = strings.Replace(*y, old, new, 1) }
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*string)
		wantErr string // "" means the configuration is accepted
	}{
		{
			name:    "isolation neither session nor role",
			mutate:  replace("    vars: {bucket: tenant-data}", "    isolation: ambient\n    vars: {bucket: tenant-data}"),
			wantErr: "profiles[0] (objects).isolation: session or role",
		},
		{
			name:    "unknown key",
			mutate:  replace("  audiences:", "  audience_list: [x]\n  audiences:"),
			wantErr: "field audience_list not found",
		},
		{
			name:    "missing issuer",
			mutate:  replace("  issuer: https://idp.example.com\n", ""),
			wantErr: "auth.issuer: required",
		},
		{
			name:    "missing jwks_url",
			mutate:  replace("  jwks_url: https://idp.example.com/jwks\n", ""),
			wantErr: "auth.jwks_url: required",
		},
		{
			name:    "http jwks_url on a remote host",
			mutate:  replace("jwks_url: https://idp.example.com/jwks", "jwks_url: http://idp.example.com/jwks"),
			wantErr: "auth.jwks_url: http is allowed only on a loopback address",
		},
		{
			name:    "http jwks_url on a loopback-looking host name",
			mutate:  replace("jwks_url: https://idp.example.com/jwks", "jwks_url: http://127.0.0.1.example.com/jwks"),
			wantErr: "auth.jwks_url: http is allowed only on a loopback address",
		},
		{
			name:   "http jwks_url on 127.0.0.1",
			mutate: replace("jwks_url: https://idp.example.com/jwks", "jwks_url: http://127.0.0.1:9400/jwks"),
		},
		{
			name:    "jwks_url with another scheme",
			mutate:  replace("jwks_url: https://idp.example.com/jwks", "jwks_url: ftp://idp.example.com/jwks"),
			wantErr: "auth.jwks_url: scheme must be https",
		},
		{
			name:    "no audiences",
			mutate:  replace("  audiences: [tokenvendor]\n", ""),
			wantErr: "auth.audiences: at least one required",
		},
		{
			name:    "algorithm none",
			mutate:  replace("algorithms: [RS256, ES256]", "algorithms: [none]"),
			wantErr: "auth.algorithms[0]",
		},
		{
			name:    "algorithm HS256",
			mutate:  replace("algorithms: [RS256, ES256]", "algorithms: [RS256, HS256]"),
			wantErr: "auth.algorithms[1]",
		},
		{
			name:    "leeway 90s",
			mutate:  replace("  audiences:", "  leeway: 90s\n  audiences:"),
			wantErr: "auth.leeway: must be between 0s and 1m0s",
		},
		{
			name:    "unanchored tenant pattern",
			mutate:  replace("tenant_pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$'", "tenant_pattern: '[a-z]+'"),
			wantErr: "auth.tenant_pattern: must be anchored",
		},
		{
			name:    "tenant pattern not a regexp",
			mutate:  replace("tenant_pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$'", "tenant_pattern: '^[a-z$'"),
			wantErr: "auth.tenant_pattern: not a regular expression",
		},
		{
			name:    "no profiles",
			mutate:  func(y *string) { *y = (*y)[:strings.Index(*y, "profiles:")] + "profiles: []\n" },
			wantErr: "profiles: at least one required",
		},
		{
			name:    "duplicate profile names",
			mutate:  func(y *string) { *y += (*y)[strings.Index(*y, profileStart):] },
			wantErr: "profiles[1] (objects).name: defined twice",
		},
		{
			name:    "bad profile name",
			mutate:  replace("name: objects", "name: my/objects"),
			wantErr: "profiles[0] (my/objects).name: must match",
		},
		{
			name:    "role_arn not an ARN",
			mutate:  replace("role_arn: arn:aws:iam::123456789012:role/TenantData", "role_arn: TenantData"),
			wantErr: "profiles[0] (objects).role_arn: \"TenantData\" is not an IAM ARN",
		},
		{
			name:    "role_arn of a user",
			mutate:  replace("role/TenantData", "user/TenantData"),
			wantErr: "is not a role ARN",
		},
		{
			name:    "duration 10m",
			mutate:  replace("    vars:", "    duration: 10m\n    vars:"),
			wantErr: "profiles[0] (objects).duration: must be whole seconds between 15m0s and 12h0m0s",
		},
		{
			name:    "duration 13h",
			mutate:  replace("    vars:", "    duration: 13h\n    vars:"),
			wantErr: "profiles[0] (objects).duration: must be whole seconds between 15m0s and 12h0m0s",
		},
		{
			name:   "duration 12h",
			mutate: replace("    vars:", "    duration: 12h\n    vars:"),
		},
		{
			name:    "external_id of one character",
			mutate:  replace("    vars:", "    external_id: x\n    vars:"),
			wantErr: "profiles[0] (objects).external_id",
		},
		{
			name:   "external_id of two characters",
			mutate: replace("    vars:", "    external_id: xy\n    vars:"),
		},
		{
			name:    "Allow statement not scoped to the tenant",
			mutate:  replace(`"arn:aws:s3:::{{ .Vars.bucket }}/{{ .TenantID }}/*"`, `"arn:aws:s3:::{{ .Vars.bucket }}/*"`),
			wantErr: "profiles[0] (objects).policy.Statement[0]: Allow statement does not reference the tenant",
		},
		{
			name:    "policy not JSON",
			mutate:  replace(`{"Version":"2012-10-17"`, `{"Version":"2012-10-17",`),
			wantErr: "profiles[0] (objects).policy: not valid JSON",
		},
		{
			name:    "bad tag key",
			mutate:  replace("tags: {TenantID:", "tags: {'aws:TenantID':"),
			wantErr: "profiles[0] (objects).tags.aws:TenantID: not a valid session tag key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := baseline
			tt.mutate(&y)
			if y == baseline {
				t.Fatal("mutate left the baseline unchanged")
			}
			c, err := config.Parse([]byte(y))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse() = %v, want nil", err)
				}
				if c.Profiles[0].Template == nil {
					t.Error("Parse() left Profiles[0].Template nil")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	y := baseline
	for _, m := range []func(*string){
		replace("  issuer: https://idp.example.com\n", ""),
		replace("jwks_url: https://idp.example.com/jwks", "jwks_url: http://idp.example.com/jwks"),
		replace("algorithms: [RS256, ES256]", "algorithms: [HS256]"),
		replace("role/TenantData", "user/TenantData"),
		replace("    vars:", "    duration: 13h\n    vars:"),
		replace(`"arn:aws:s3:::{{ .Vars.bucket }}/{{ .TenantID }}/*"`, `"arn:aws:s3:::{{ .Vars.bucket }}/*"`),
	} {
		m(&y)
	}
	_, err := config.Parse([]byte(y))
	if err == nil {
		t.Fatal("Parse() = nil, want errors")
	}
	want := []string{
		"auth.issuer",
		"auth.jwks_url",
		"auth.algorithms[0]",
		"profiles[0] (objects).role_arn",
		"profiles[0] (objects).duration",
		"profiles[0] (objects).policy.Statement[0]",
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Parse() error does not report %q:\n%v", w, err)
		}
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) < len(want) {
		t.Errorf("Parse() error is not a join of at least %d errors:\n%v", len(want), err)
	}
}

func TestParseFillsDefaults(t *testing.T) {
	c, err := config.Parse([]byte(baseline))
	if err != nil {
		t.Fatalf("Parse() = %v", err)
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{name: "listen", got: c.Listen, want: "127.0.0.1:8080"},
		{name: "sts.region", got: c.STS.Region, want: "us-east-1"},
		{name: "profiles[0].duration", got: c.Profiles[0].Duration, want: time.Hour},
		{name: "auth.tenant_claim", got: c.Auth.TenantClaim, want: "tenant_id"},
		{name: "auth.leeway", got: c.Auth.Leeway, want: 30 * time.Second},
		{name: "shutdown_timeout", got: c.ShutdownTimeout, want: config.DefaultShutdown},
		{name: "sts.timeout", got: c.STS.Timeout, want: config.DefaultSTSTimeout},
		{name: "cache.max_entries", got: c.Cache.MaxEntries, want: config.DefaultMaxEntries},
		{name: "cache.refresh_ahead", got: c.Cache.RefreshAhead, want: config.DefaultRefreshAhead},
		{name: "cache.stale_floor", got: c.Cache.StaleFloor, want: config.DefaultStaleFloor},
		{name: "sts.role_chaining", got: string(c.STS.RoleChaining), want: "auto"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
			}
		})
	}
	if c.TenantRule == nil || c.SessionNamer == nil || c.Profiles[0].Template == nil {
		t.Fatal("Parse() did not compile the tenant rule and template")
	}
	if _, err := c.Profiles[0].Template.Render("acme"); err != nil {
		t.Errorf("Render(acme) = %v", err)
	}
}

func TestLoadExample(t *testing.T) {
	c, err := config.Load(filepath.Join("..", "..", "examples", "config.yaml"))
	if err != nil {
		t.Fatalf("Load(examples/config.yaml) = %v", err)
	}
	if len(c.Profiles) != 2 {
		t.Errorf("Load(examples/config.yaml) has %d profiles, want 2", len(c.Profiles))
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "absent.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(absent) error = %v, want one wrapping os.ErrNotExist", err)
	}
}
