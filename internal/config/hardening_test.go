package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenvendor/tokenvendor/internal/config"
)

func TestParseHardeningSettings(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists.pem")
	if err := os.WriteFile(existing, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	prepend := func(block string) func(*string) {
		return func(y *string) { *y = block + *y }
	}
	tests := []struct {
		name    string
		mutate  func(*string)
		wantErr string
	}{
		{name: "limits", mutate: prepend("limits: {per_caller_rps: 5, per_caller_burst: 10, per_tenant_rps: 50, per_tenant_burst: 100, max_in_flight: 256}\n")},
		{name: "negative limit", mutate: prepend("limits: {per_tenant_rps: -1}\n"), wantErr: "limits.per_tenant_rps: negative"},
		{name: "audit to stdout", mutate: prepend("audit: {file: '-'}\n")},
		{name: "session template with the subject", mutate: prepend("session: {name_template: '{{ .TenantID }}.{{ .Subject }}', source_identity: true}\n")},
		{name: "session template without the tenant", mutate: prepend("session: {name_template: '{{ .Subject }}'}\n"), wantErr: "session.name_template: must include {{ .TenantID }}"},
		{name: "registry inline", mutate: prepend("tenants: {allow: [acme, globex]}\n")},
		{name: "registry with a wildcard", mutate: prepend("tenants: {allow: [acme, '*']}\n"), wantErr: "tenants.allow[1]: invalid tenant id"},
		{name: "registry file missing", mutate: prepend("tenants: {file: " + missing + "}\n"), wantErr: "tenants.file:"},
		{name: "registry file", mutate: prepend("tenants: {file: " + existing + "}\n")},
		{name: "tls", mutate: prepend("tls: {cert_file: " + existing + ", key_file: " + existing + ", client_ca_file: " + existing + "}\n")},
		{name: "tls cert without key", mutate: prepend("tls: {cert_file: " + existing + "}\n"), wantErr: "tls: cert_file and key_file go together"},
		{name: "tls client CA alone", mutate: prepend("tls: {client_ca_file: " + existing + "}\n"), wantErr: "tls.client_ca_file: needs cert_file and key_file"},
		{name: "duration exactly twice min_remaining", mutate: prepend("cache: {min_remaining: 30m}\n")},
		{name: "duration under twice min_remaining", mutate: prepend("cache: {min_remaining: 31m}\n"), wantErr: "profiles[0] (objects).duration: does not fit cache.min_remaining"},
		{name: "default min_remaining at the stale floor", mutate: func(y *string) {
			*y = "cache: {stale_floor: 15m}\n" + *y
		}, wantErr: "not above the stale floor"},
		{name: "tls file missing", mutate: prepend("tls: {cert_file: " + missing + ", key_file: " + existing + "}\n"), wantErr: "tls.cert_file:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := baseline
			tt.mutate(&y)
			_, err := config.Parse([]byte(y))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
