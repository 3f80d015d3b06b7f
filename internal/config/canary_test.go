package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/config"
)

// withOrders adds a DynamoDB profile to the baseline.
const ordersProfile = `  - name: orders
    role_arn: arn:aws:iam::123456789012:role/TenantData
    policy: |
      {"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["dynamodb:GetItem"],
        "Resource":"arn:aws:dynamodb:us-east-1:123456789012:table/Orders",
        "Condition":{"ForAllValues:StringEquals":{"dynamodb:LeadingKeys":["TENANT#{{ .TenantID }}"]},"Null":{"dynamodb:LeadingKeys":"false"}}}]}
`

const validCanary = `canary:
  interval: 5m
  tenants: [canary-a, canary-b]
  endpoints: {s3: "http://127.0.0.1:9000", dynamodb: "http://127.0.0.1:5000"}
  probes:
    - profile: objects
      s3: {bucket: tenant-data, key: "{{ .TenantID }}/canary"}
    - profile: orders
      dynamodb: {table: Orders, key: {pk: "TENANT#{{ .TenantID }}", sk: CANARY}}
`

func TestParseCanary(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*string)
		wantErr string
	}{
		{name: "valid"},
		{name: "off in serve, still runnable by the command", mutate: replace("  interval: 5m\n", "")},
		{name: "interval under a minute", mutate: replace("interval: 5m", "interval: 10s"), wantErr: "canary.interval: at least 1m"},
		{name: "one tenant", mutate: replace("[canary-a, canary-b]", "[canary-a]"), wantErr: "canary.tenants: two different tenant ids"},
		{name: "same tenant twice", mutate: replace("[canary-a, canary-b]", "[canary-a, canary-a]"), wantErr: "canary.tenants: two different"},
		{name: "tenant outside the pattern", mutate: replace("[canary-a, canary-b]", "[canary-a, 'canary/*']"), wantErr: "canary.tenants[1]"},
		{name: "plain http endpoint beyond loopback", mutate: replace(`s3: "http://127.0.0.1:9000"`, `s3: "http://minio.internal:9000"`), wantErr: "canary.endpoints.s3: http is allowed only on a loopback"},
		{name: "unknown profile", mutate: replace("- profile: objects", "- profile: nope"), wantErr: "canary.probes[0].profile: no such profile"},
		{name: "neither s3 nor dynamodb", mutate: replace(`      s3: {bucket: tenant-data, key: "{{ .TenantID }}/canary"}`+"\n", ""), wantErr: "canary.probes[0]: one of s3 or dynamodb"},
		{name: "s3 key without the tenant", mutate: replace(`key: "{{ .TenantID }}/canary"`, `key: "canary"`), wantErr: "canary.probes[0].s3.key: does not depend on {{ .TenantID }}"},
		{name: "s3 key not a template", mutate: replace(`key: "{{ .TenantID }}/canary"`, `key: "{{ .Nope }}"`), wantErr: "canary.probes[0].s3.key: template"},
		{name: "item key without the tenant", mutate: replace(`pk: "TENANT#{{ .TenantID }}"`, `pk: "TENANT#all"`), wantErr: "canary.probes[1].dynamodb.key: no attribute holds {{ .TenantID }}"},
		{name: "no probes", mutate: func(y *string) { *y = (*y)[:strings.Index(*y, "  probes:")] }, wantErr: "canary.probes: at least one"},
		{name: "tenant not in the registry", mutate: replace("canary:\n", "tenants:\n  allow: [acme, canary-a]\ncanary:\n"), wantErr: "canary.tenants[1]: not in tenants.allow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := validCanary + baseline + ordersProfile
			if tt.mutate != nil {
				tt.mutate(&y)
			}
			c, err := config.Parse([]byte(y))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse() = %v", err)
			}
			if len(c.Canary.Probes) != 2 || (c.Canary.Interval != 5*time.Minute && tt.name == "valid") {
				t.Fatalf("canary = %+v", c.Canary)
			}
		})
	}
}

func TestLoadWithoutListenersIgnoresTheAPIsTLSFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	y := "tls:\n  cert_file: /nonexistent/tls.crt\n  key_file: /nonexistent/tls.key\n" + validCanary + baseline + ordersProfile
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path); err == nil || !strings.Contains(err.Error(), "tls.cert_file") {
		t.Fatalf("Load = %v, want the missing certificate named", err)
	}
	c, err := config.LoadWithoutListeners(path)
	if err != nil {
		t.Fatalf("LoadWithoutListeners = %v", err)
	}
	if c.TLS.CertFile != "" || c.Canary.Probes[0].S3.Compiled == nil || c.Canary.Probes[1].DynamoDB.Compiled["sk"] == nil {
		t.Fatalf("TLS %+v kept or canary keys not compiled", c.TLS)
	}
}
