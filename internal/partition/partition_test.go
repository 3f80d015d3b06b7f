package partition

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestSTSEndpoint(t *testing.T) {
	tests := []struct {
		region string
		fips   bool
		want   string
		err    string
	}{
		{region: "us-east-1", want: "https://sts.us-east-1.amazonaws.com"},
		{region: "eu-west-1", want: "https://sts.eu-west-1.amazonaws.com"},
		{region: "cn-north-1", want: "https://sts.cn-north-1.amazonaws.com.cn"},
		{region: "cn-northwest-1", want: "https://sts.cn-northwest-1.amazonaws.com.cn"},
		{region: "us-gov-west-1", want: "https://sts.us-gov-west-1.amazonaws.com"},
		{region: "us-east-1", fips: true, want: "https://sts-fips.us-east-1.amazonaws.com"},
		{region: "us-west-2", fips: true, want: "https://sts-fips.us-west-2.amazonaws.com"},
		{region: "us-gov-east-1", fips: true, want: "https://sts.us-gov-east-1.amazonaws.com"},
		{region: "eu-west-1", fips: true, err: "no FIPS endpoint"},
		{region: "ca-central-1", fips: true, err: "no FIPS endpoint"},
		{region: "cn-north-1", fips: true, err: "no FIPS endpoint"},
		{region: "us-iso-east-1", err: "does not serve"},
		{region: "eusc-de-east-1", err: "does not serve"},
		{region: "US-EAST-1", err: "not an AWS region"},
		{region: "us-east-1.evil.com", err: "not an AWS region"},
		{region: "", err: "not an AWS region"},
	}
	for _, tt := range tests {
		got, err := STSEndpoint(tt.region, tt.fips)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("STSEndpoint(%q, fips %v) = %q, %v; want an error with %q", tt.region, tt.fips, got, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("STSEndpoint(%q, fips %v) = %q, %v; want %q", tt.region, tt.fips, got, err, tt.want)
		}
	}
	if _, err := STSEndpoint("eu-west-1", true); !errors.Is(err, ErrNoFIPS) {
		t.Errorf("a region without FIPS: %v, want ErrNoFIPS", err)
	}
}

func TestForRegion(t *testing.T) {
	for region, want := range map[string]Partition{
		"us-east-1": AWS, "ap-southeast-7": AWS, "mx-central-1": AWS,
		"cn-north-1": China, "us-gov-west-1": GovCloud,
	} {
		if got, err := ForRegion(region); err != nil || got != want {
			t.Errorf("ForRegion(%q) = %v, %v; want %v", region, got, err, want)
		}
	}
}

func TestParseRoleARN(t *testing.T) {
	tests := []struct {
		p    Partition
		arn  string
		want RoleARN
		err  string
	}{
		{p: AWS, arn: "arn:aws:iam::123456789012:role/TenantData", want: RoleARN{"aws", "123456789012", "/", "TenantData"}},
		{p: AWS, arn: "arn:aws:iam::123456789012:role/tenants/acme/TenantData", want: RoleARN{"aws", "123456789012", "/tenants/acme/", "TenantData"}},
		{p: China, arn: "arn:aws-cn:iam::123456789012:role/T", want: RoleARN{"aws-cn", "123456789012", "/", "T"}},
		{p: GovCloud, arn: "arn:aws-us-gov:iam::123456789012:role/T", want: RoleARN{"aws-us-gov", "123456789012", "/", "T"}},
		{p: AWS, arn: "arn:aws-cn:iam::123456789012:role/T", err: "not aws"},
		{p: China, arn: "arn:aws:iam::123456789012:role/T", err: "not aws-cn"},
		{p: AWS, arn: "arn:aws:iam::12345678901:role/T", err: "12 digits"},
		{p: AWS, arn: "arn:aws:iam:::role/T", err: "12 digits"},
		{p: AWS, arn: "arn:aws:iam::123456789012:user/T", err: "not a role"},
		{p: AWS, arn: "arn:aws:iam::123456789012:role/", err: "role name"},
		{p: AWS, arn: "arn:aws:iam::123456789012:role/a:b", err: "role name"},
		{p: AWS, arn: "arn:aws:iam::123456789012:role/a*", err: "role name"},
		{p: AWS, arn: "arn:aws:iam::123456789012:role/" + strings.Repeat("n", 65), err: "role name"},
		{p: AWS, arn: "arn:aws:iam::123456789012:role//x", err: "path"},
		{p: AWS, arn: "arn:aws:iam::123456789012:role/a b/x", err: "path"},
		{p: AWS, arn: "arn:aws:sts::123456789012:role/T", err: "not an IAM ARN"},
		{p: AWS, arn: "arn:aws:iam:us-east-1:123456789012:role/T", err: "not an IAM ARN"},
		{p: AWS, arn: "TenantData", err: "not an IAM ARN"},
	}
	for _, tt := range tests {
		got, err := tt.p.ParseRoleARN(tt.arn)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseRoleARN(%q) = %v, %v; want an error with %q", tt.arn, got, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseRoleARN(%q) = %v, %v; want %v", tt.arn, got, err, tt.want)
		case tt.err == "" && got.String() != tt.arn:
			t.Errorf("ParseRoleARN(%q).String() = %q", tt.arn, got.String())
		}
	}
}

// TestThePythonClientKnowsTheSameFIPSEndpoints holds the Python client's
// copy of the FIPS table to this one.
func TestThePythonClientKnowsTheSameFIPSEndpoints(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "clients", "python", "tokenvendor", "_awsiam.py"))
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(src), "_FIPS_STS = {")
	end := strings.Index(string(src)[start:], "}")
	if start < 0 || end < 0 {
		t.Fatal("no _FIPS_STS table in the Python client")
	}
	got := map[string]string{}
	for _, m := range regexp.MustCompile(`"([a-z0-9-]+)": "([a-z0-9.-]+)"`).FindAllStringSubmatch(string(src)[start:start+end], -1) {
		got[m[1]] = m[2]
	}
	if !maps.Equal(got, fipsSTS) {
		t.Errorf("the Python client's FIPS endpoints %v, want %v", got, fipsSTS)
	}
}
