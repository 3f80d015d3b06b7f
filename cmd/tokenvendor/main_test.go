package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const baseConfig = `auth:
  issuer: https://idp.example.com/
  jwks_url: https://idp.example.com/jwks
  audiences: [tokenvendor]
profiles:
  - name: objects
    role_arn: arn:aws:iam::123456789012:role/TenantData
    policy: '%s'
    tags: {TenantID: "{{ .TenantID }}"}
`

const scopedPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::data/{{ .TenantID }}/*"}]}`

func writeConfig(t *testing.T, policy string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	cfg := strings.Replace(baseConfig, "%s", strings.ReplaceAll(policy, "'", "''"), 1)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runCLI(args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr)
	return stdout.String(), err
}

func TestCheckAcceptsAScopedPolicy(t *testing.T) {
	out, err := runCLI("check", "--config", writeConfig(t, scopedPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "ok:") {
		t.Fatalf("out = %q", out)
	}
}

func TestCheckRefusesBadTemplatesNamingTheProfile(t *testing.T) {
	longResource := `"arn:aws:s3:::data/{{ .TenantID }}/` + strings.Repeat("x", 2100) + `"`
	tests := []struct {
		name   string
		policy string
		want   string
	}{
		{name: "statement not scoped by the tenant", policy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::data/*"}]}`, want: "does not reference the tenant"},
		{name: "over 2048 characters", policy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":` + longResource + `}]}`, want: "2048"},
		{name: "invalid JSON", policy: `{"Version":"2012-10-17","Statement":[`, want: "not valid JSON"},
		{name: "template in a key", policy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::d/{{ .TenantID }}","Condition":{"{{ .TenantID }}":{}}}]}`, want: "object key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runCLI("check", "--config", writeConfig(t, tt.policy))
			if err == nil {
				t.Fatal("check accepted the config")
			}
			if !strings.Contains(err.Error(), "profiles[0] (objects)") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v; want the profile named and %q", err, tt.want)
			}
		})
	}
}

func TestRenderPrintsTheExactPolicy(t *testing.T) {
	out, err := runCLI("render", "--config", writeConfig(t, scopedPolicy), "--profile", "objects", "--tenant", "acme")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		RoleArn, RoleSessionName string
		DurationSeconds          int
		Policy                   json.RawMessage
		Tags                     []struct{ Key, Value string }
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := `{"Statement":[{"Action":"s3:GetObject","Effect":"Allow","Resource":"arn:aws:s3:::data/acme/*"}],"Version":"2012-10-17"}`
	if string(got.Policy) != want {
		t.Errorf("Policy = %s\nwant %s", got.Policy, want)
	}
	if got.RoleSessionName != "acme@objects" || got.DurationSeconds != 3600 || len(got.Tags) != 1 || got.Tags[0].Value != "acme" {
		t.Errorf("got %+v", got)
	}
}

func TestRenderRefusesAWildcardTenant(t *testing.T) {
	for _, tenant := range []string{"*", "acme/*", "${aws:username}"} {
		out, err := runCLI("render", "--config", writeConfig(t, scopedPolicy), "--profile", "objects", "--tenant", tenant)
		if err == nil || !strings.Contains(err.Error(), "invalid tenant") {
			t.Errorf("tenant %q: err = %v, out = %q", tenant, err, out)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"bogus"}, {"check"}, {"render", "--config", "x"}, {"serve", "--nope"}} {
		if _, err := runCLI(args...); !errors.Is(err, errUsage) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}

func TestConfigFromEnvironment(t *testing.T) {
	path := writeConfig(t, scopedPolicy)
	var stdout bytes.Buffer
	getenv := func(k string) string {
		if k == "TOKENVENDOR_CONFIG" {
			return path
		}
		return ""
	}
	if err := run(context.Background(), []string{"check"}, getenv, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
}

func TestRenderShowsTheSessionNameAndSourceIdentityOfACaller(t *testing.T) {
	path := writeConfig(t, scopedPolicy)
	b, _ := os.ReadFile(path)
	cfg := "session:\n  name_template: '{{ .TenantID }}.{{ .Subject }}'\n  source_identity: true\n" + string(b)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI("render", "--config", path, "--profile", "objects", "--tenant", "acme", "--subject", "system:serviceaccount:orders:api")
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ RoleSessionName, SourceIdentity string }
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.RoleSessionName, "acme.system-serviceaccount-orders-api-") || !strings.HasPrefix(got.SourceIdentity, "system-serviceaccount-orders-api-") {
		t.Fatalf("got %+v", got)
	}
}

func TestCheckValidatesTheRedisSectionWithoutContactingRedis(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.key")
	short := filepath.Join(dir, "short.key")
	if err := os.WriteFile(good, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(short, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withRedis := func(keyFile string) string {
		path := writeConfig(t, scopedPolicy)
		b, _ := os.ReadFile(path)
		// Nothing listens on port 1: check must not try.
		cfg := "redis:\n  url: redis://127.0.0.1:1/0\n  key_file: " + keyFile + "\n" + string(b)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	out, err := runCLI("check", "--config", withRedis(good))
	if err != nil || !strings.Contains(out, "redis: 1 key(s)") {
		t.Fatalf("check = %q, %v", out, err)
	}
	if _, err := runCLI("check", "--config", withRedis(short)); err == nil || !strings.Contains(err.Error(), "redis.key_file: line 1") {
		t.Fatalf("check with a 16-byte key = %v", err)
	}
}
