package main

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/tokenvendor/tokenvendor/internal/config"
)

// revokeConfig is a config with the revocation policy, and sections
// before prepended.
func revokeConfig(t *testing.T, sections string) string {
	t.Helper()
	path := writeConfig(t, scopedPolicy)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := sections + "revocation:\n  policy_arn: arn:aws:iam::123456789012:policy/tokenvendor-revocation\n" + string(b)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// These refusals come before any AWS call: none of them reaches IAM (the
// tests run without AWS credentials or endpoint).
func TestRevokeRefusesBeforeWriting(t *testing.T) {
	t.Parallel()
	valid := revokeConfig(t, "")
	noPolicy := writeConfig(t, scopedPolicy)
	untagged := revokeConfig(t, "")
	b, _ := os.ReadFile(untagged)
	if err := os.WriteFile(untagged, []byte(strings.Replace(string(b), `tags: {TenantID: "{{ .TenantID }}"}`, `tags: {Team: "{{ .TenantID }}"}`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	mistagged := revokeConfig(t, "")
	b, _ = os.ReadFile(mistagged)
	if err := os.WriteFile(mistagged, []byte(strings.Replace(string(b), `tags: {TenantID: "{{ .TenantID }}"}`, `tags: {TenantID: "tenant-{{ .TenantID }}"}`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	withSourceIdentity := revokeConfig(t, "session:\n  source_identity: true\n")

	tests := []struct {
		name      string
		args      []string
		wantUsage bool
		want      string
	}{
		{name: "no tenant", args: []string{"--config", valid}, wantUsage: true, want: "--tenant required"},
		{name: "no config", args: []string{"--tenant", "acme"}, wantUsage: true, want: "--config"},
		{name: "an argument after the flags", args: []string{"--config", valid, "--tenant", "acme", "now"}, wantUsage: true, want: `"now"`},
		{name: "a cut-off that is not RFC 3339", args: []string{"--config", valid, "--tenant", "acme", "--before", "1796400000"}, wantUsage: true, want: "RFC 3339"},
		{name: "no revocation policy", args: []string{"--config", noPolicy, "--tenant", "acme"}, want: "revocation.policy_arn is not set"},
		{name: "a profile without the TenantID tag", args: []string{"--config", untagged, "--tenant", "acme"}, want: "profile objects does not tag its sessions with the tenant"},
		{name: "a profile tagging something else as TenantID", args: []string{"--config", mistagged, "--tenant", "acme"}, want: "profile objects does not tag its sessions with the tenant"},
		{name: "a wildcard tenant", args: []string{"--config", valid, "--tenant", "*"}, want: "invalid tenant id"},
		{name: "a tenant breaking out of its string", args: []string{"--config", valid, "--tenant", `acme"]`}, want: "invalid tenant id"},
		{name: "a subject without source identity", args: []string{"--config", valid, "--tenant", "acme", "--subject", "orders-api"}, want: "session.source_identity is off"},
		{name: "a cut-off in the future", args: []string{"--config", valid, "--tenant", "acme", "--before", "2999-01-01T00:00:00Z"}, want: "in the future"},
		{name: "a cut-off every session outlived", args: []string{"--config", withSourceIdentity, "--tenant", "acme", "--subject", "orders-api", "--before", "2020-01-01T00:00:00Z"}, want: "has expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, err := runCLI(append([]string{"revoke"}, tt.args...)...)
			if err == nil {
				t.Fatalf("revoke %v succeeded: %s", tt.args, out)
			}
			if errors.Is(err, errUsage) != tt.wantUsage || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v; want usage %v and %q", err, tt.wantUsage, tt.want)
			}
			if out != "" {
				t.Errorf("printed %q", out)
			}
		})
	}
}

func TestRevocationConfigTakesTheLongestProfile(t *testing.T) {
	t.Parallel()
	path := revokeConfig(t, "")
	b, _ := os.ReadFile(path)
	long := strings.Replace(string(b), "profiles:\n", `profiles:
  - name: reports
    role_arn: arn:aws:iam::123456789012:role/TenantData
    duration: 4h
    policy: '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::reports/{{ .TenantID }}/*"}]}'
    tags: {TenantID: "{{ .TenantID }}"}
`, 1)
	if err := os.WriteFile(path, []byte(long), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadWithoutListeners(path)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := revocationConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rc.LongestDuration.Hours() != 4 || rc.PolicyARN != "arn:aws:iam::123456789012:policy/tokenvendor-revocation" || rc.TenantRule == nil {
		t.Errorf("config %+v, want the 4h profile's duration", rc)
	}
	if err := tagsTenants(cfg, "acme"); err != nil {
		t.Errorf("both profiles tag: %v", err)
	}
}
