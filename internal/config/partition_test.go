package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenvendor/tokenvendor/internal/config"
)

// withSTS puts an sts section before the baseline.
func withSTS(section string) func(*string) {
	return func(y *string) { *y = "sts:\n" + section + *y }
}

func TestPartitionsAndFIPS(t *testing.T) {
	key := filepath.Join(t.TempDir(), "external-id.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("k", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(t.TempDir(), "short.key")
	if err := os.WriteFile(short, []byte("kkkk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	silo := func(extra string) func(*string) {
		return replace("    role_arn: arn:aws:iam::123456789012:role/TenantData\n",
			"    role_arn: 'arn:{{ .Partition }}:iam::{{ .Attr \"account_id\" }}:role/TenantAccess'\n"+extra)
	}
	tests := []struct {
		name    string
		mutate  []func(*string)
		wantErr string
		wantURL string
	}{
		{name: "the default region", wantURL: "https://sts.us-east-1.amazonaws.com"},
		{name: "China", mutate: []func(*string){withSTS("  region: cn-north-1\n"), replace("arn:aws:iam::", "arn:aws-cn:iam::")}, wantURL: "https://sts.cn-north-1.amazonaws.com.cn"},
		{name: "GovCloud with FIPS", mutate: []func(*string){withSTS("  region: us-gov-west-1\n  fips: true\n"), replace("arn:aws:iam::", "arn:aws-us-gov:iam::")}, wantURL: "https://sts.us-gov-west-1.amazonaws.com"},
		{name: "FIPS in us-east-2", mutate: []func(*string){withSTS("  region: us-east-2\n  fips: true\n")}, wantURL: "https://sts-fips.us-east-2.amazonaws.com"},
		{name: "FIPS where there is none", mutate: []func(*string){withSTS("  region: eu-west-1\n  fips: true\n")}, wantErr: "sts.fips: STS has no FIPS endpoint in this region: eu-west-1"},
		{name: "FIPS beside an endpoint", mutate: []func(*string){withSTS("  endpoint: https://sts.example.com\n  fips: true\n")}, wantErr: "sts.fips: with sts.endpoint"},
		{name: "an isolated partition", mutate: []func(*string){withSTS("  region: us-iso-east-1\n")}, wantErr: "sts.region: region us-iso-east-1 is in a partition"},
		{name: "a region of another STS's own", mutate: []func(*string){withSTS("  region: minio\n  endpoint: http://127.0.0.1:9000\n")}, wantURL: "http://127.0.0.1:9000"},
		{name: "a region no STS of AWS has", mutate: []func(*string){withSTS("  region: minio\n")}, wantErr: `sts.region: "minio" is not an AWS region name`},
		{name: "a role of another partition", mutate: []func(*string){withSTS("  region: cn-north-1\n")}, wantErr: `(objects).role_arn: "arn:aws:iam::123456789012:role/TenantData" is in partition "aws", not aws-cn`},
		{name: "a silo role template", mutate: []func(*string){silo("")}, wantURL: "https://sts.us-east-1.amazonaws.com"},
		{name: "a derived ExternalId", mutate: []func(*string){silo("    external_id: derived\n    external_id_key_file: " + key + "\n")}, wantURL: "https://sts.us-east-1.amazonaws.com"},
		{name: "derived without a key", mutate: []func(*string){silo("    external_id: derived\n")}, wantErr: "(objects).external_id: derived needs a key of at least 32 bytes"},
		{name: "derived with a short key", mutate: []func(*string){silo("    external_id: derived\n    external_id_key_file: " + short + "\n")}, wantErr: "at least 32 bytes"},
		{name: "a key file that is not there", mutate: []func(*string){silo("    external_id: derived\n    external_id_key_file: /nonexistent/key\n")}, wantErr: "(objects).external_id_key_file: open /nonexistent/key"},
		{name: "a role template that is not an ARN", mutate: []func(*string){silo(""), replace(":role/TenantAccess", ":role/{{ .Region }}:x")}, wantErr: "role name"},
		{name: "a revocation policy of another partition", mutate: []func(*string){withSTS("  region: cn-north-1\n"), replace("arn:aws:iam::", "arn:aws-cn:iam::"),
			func(y *string) { *y = "revocation:\n  policy_arn: arn:aws:iam::123456789012:policy/Revoked\n" + *y }}, wantErr: "revocation.policy_arn: not a customer-managed IAM policy ARN of partition aws-cn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := baseline
			for _, m := range tt.mutate {
				m(&y)
			}
			c, err := config.Parse([]byte(y))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse() = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse() = %v", err)
			}
			if c.STS.URL != tt.wantURL || c.Profiles[0].Role == nil {
				t.Errorf("sts URL %q (role compiled: %v), want %q", c.STS.URL, c.Profiles[0].Role != nil, tt.wantURL)
			}
		})
	}
}

func TestAWSIAMCallersUseTheRegionsPartitionAndFIPSEndpoint(t *testing.T) {
	section := "  aws_iam:\n    server_id: tokenvendor.example.com\n    principals:\n      - {role_arn: \"arn:aws-us-gov:iam::123456789012:role/orders-api\", tenant: acme}\n"
	y := "sts:\n  region: us-gov-east-1\n  fips: true\n" + strings.Replace(strings.ReplaceAll(baseline, "arn:aws:iam::", "arn:aws-us-gov:iam::"), "auth:\n", "auth:\n"+section, 1)
	c, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Auth.AWSIAM.STSEndpoint; got != "https://sts.us-gov-east-1.amazonaws.com" {
		t.Errorf("aws_iam STS endpoint %q, want GovCloud's", got)
	}
	useast := strings.ReplaceAll(strings.Replace(y, "region: us-gov-east-1", "region: us-east-1", 1), "arn:aws-us-gov:", "arn:aws:")
	if c, err := config.Parse([]byte(useast)); err != nil || c.Auth.AWSIAM.STSEndpoint != "https://sts-fips.us-east-1.amazonaws.com" {
		t.Errorf("us-east-1 with FIPS: %v; want callers sent to sts-fips.us-east-1", err)
	}
	_, err = config.Parse([]byte(strings.ReplaceAll(strings.Replace(y, "region: us-gov-east-1", "region: eu-west-1", 1), "arn:aws-us-gov:", "arn:aws:")))
	if err == nil || !strings.Contains(err.Error(), "no FIPS endpoint") {
		t.Errorf("eu-west-1 with FIPS: %v, want a refusal", err)
	}
	_, err = config.Parse([]byte(strings.Replace(y, "server_id: tokenvendor.example.com", "server_id: tokenvendor.example.com\n    sts_endpoint: https://sts.example.com", 1)))
	if err == nil || !strings.Contains(err.Error(), "auth.aws_iam.sts_endpoint: with sts.fips") {
		t.Errorf("an explicit sts_endpoint beside sts.fips: %v, want a refusal", err)
	}
	_, err = config.Parse([]byte(strings.Replace(y, "arn:aws-us-gov:iam::123456789012:role/orders-api", "arn:aws:iam::123456789012:role/orders-api", 1)))
	if err == nil || !strings.Contains(err.Error(), "auth.aws_iam.principals[0].role_arn: not in partition aws-us-gov") {
		t.Errorf("a principal of another partition: %v", err)
	}
}
