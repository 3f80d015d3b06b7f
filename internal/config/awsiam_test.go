package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/config"
)

// withoutIdP replaces the identity provider settings with an aws_iam section.
func withoutIdP(section string) func(*string) {
	return func(y *string) {
		start, end := strings.Index(*y, "  issuer:"), strings.Index(*y, "  tenant_pattern:")
		*y = (*y)[:start] + section + (*y)[end:]
	}
}

const awsIAMSection = `  aws_iam:
    server_id: tokenvendor.test
    principals:
      - {role_arn: "arn:aws:iam::123456789012:role/orders-api", tenant: acme}
      - {role_arn: "arn:aws:iam::123456789012:role/jobs/billing-worker", any_tenant: true}
`

func TestAWSIAMSection(t *testing.T) {
	c, err := config.Parse([]byte(mutated(withoutIdP(awsIAMSection))))
	if err != nil {
		t.Fatalf("aws_iam without an identity provider: %v", err)
	}
	w := c.Auth.AWSIAM
	if c.Auth.UsesJWT() || w.Region != "us-east-1" || w.STSEndpoint != "https://sts.us-east-1.amazonaws.com" || w.CacheTTL != time.Minute {
		t.Errorf("defaults: uses JWT %v, %+v", c.Auth.UsesJWT(), *w)
	}
	if got := w.VerifierConfig(); len(got.Principals) != 2 || !got.Principals[1].AnyTenant || got.Principals[0].TenantID != "acme" {
		t.Errorf("VerifierConfig = %+v", got)
	}

	tests := map[string]struct {
		section, want string
	}{
		"no server id":                             {strings.Replace(awsIAMSection, "server_id: tokenvendor.test", "region: us-east-1", 1), "auth.aws_iam.server_id: required"},
		"server id with a space":                   {strings.Replace(awsIAMSection, "tokenvendor.test", `"token vendor"`, 1), "auth.aws_iam.server_id"},
		"no principals":                            {"  aws_iam: {server_id: x}\n", "auth.aws_iam.principals: at least one"},
		"a user":                                   {strings.Replace(awsIAMSection, "role/orders-api", "user/orders-api", 1), "auth.aws_iam.principals[0].role_arn: not an IAM role ARN"},
		"tenant and any tenant":                    {strings.Replace(awsIAMSection, "tenant: acme}", "tenant: acme, any_tenant: true}", 1), "auth.aws_iam.principals[0]: one of tenant, any_tenant or tenant_from"},
		"tenant and tenant_from":                   {strings.Replace(awsIAMSection, "tenant: acme}", "tenant: acme, tenant_from: token}", 1), "auth.aws_iam.principals[0]: one of tenant, any_tenant or tenant_from"},
		"tenant_from other than token":             {strings.Replace(awsIAMSection, "tenant: acme}", "tenant_from: header}", 1), "auth.aws_iam.principals[0].tenant_from: only token"},
		"tenant_from without an IdP":               {strings.Replace(awsIAMSection, "tenant: acme}", "tenant_from: token}", 1), "auth.aws_iam.principals[0].tenant_from: token needs an identity provider"},
		"a wildcard tenant":                        {strings.Replace(awsIAMSection, "tenant: acme}", `tenant: "*"}`, 1), "auth.aws_iam.principals[0].tenant"},
		"one role twice, by path":                  {awsIAMSection + `      - {role_arn: "arn:aws:iam::123456789012:role/other/orders-api", tenant: globex}` + "\n", "auth.aws_iam.principals[2].role_arn: the same role"},
		"http STS beyond loopback":                 {strings.Replace(awsIAMSection, "server_id: tokenvendor.test", "server_id: tokenvendor.test\n    sts_endpoint: http://sts.example.com", 1), "auth.aws_iam.sts_endpoint"},
		"a profile's access role, by another path": {awsIAMSection + `      - {role_arn: "arn:aws:iam::123456789012:role/tenants/TenantData", any_tenant: true}` + "\n", "auth.aws_iam.principals[2].role_arn: is a role profile objects vends"},
		"a profile's own access role":              {awsIAMSection + `      - {role_arn: "arn:aws:iam::123456789012:role/TENANTDATA", any_tenant: true}` + "\n", "auth.aws_iam.principals[2].role_arn: is a role profile objects vends"},
		"cache past a signature's life":            {strings.Replace(awsIAMSection, "server_id: tokenvendor.test", "server_id: tokenvendor.test\n    cache_ttl: 6m", 1), "auth.aws_iam.cache_ttl: at most 5m"},
	}
	for name, tt := range tests {
		_, err := config.Parse([]byte(mutated(withoutIdP(tt.section))))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tt.want)
		}
	}
	if _, err := config.Parse([]byte(mutated(withoutIdP("")))); err == nil || !strings.Contains(err.Error(), "auth.issuer: required (or") {
		t.Errorf("neither an identity provider nor aws_iam: err = %v", err)
	}
	// Half an identity provider beside aws_iam is still an error.
	if _, err := config.Parse([]byte(mutated(withoutIdP("  issuer: https://idp.example.com\n" + awsIAMSection)))); err == nil || !strings.Contains(err.Error(), "auth.jwks_url") {
		t.Errorf("issuer without jwks_url beside aws_iam: err = %v", err)
	}
}

func TestAuthHardeningSettings(t *testing.T) {
	c, err := config.Parse([]byte(baseline))
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth.JWKSRefresh != 5*time.Minute {
		t.Errorf("jwks_refresh default = %s, want 5m", c.Auth.JWKSRefresh)
	}
	for setting, want := range map[string]string{
		"  jwks_refresh: 100ms\n":        "auth.jwks_refresh: between 1s and 24h",
		"  token_type: at jwt\n":         "auth.token_type",
		"  require_bound_tokens: true\n": "auth.require_bound_tokens: needs tls.client_ca_file",
	} {
		_, err := config.Parse([]byte(mutated(replace("  audiences:", setting+"  audiences:"))))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", setting, err, want)
		}
	}
	if _, err := config.Parse([]byte(mutated(replace("  audiences:", "  jwks_refresh: 2s\n  token_type: at+jwt\n  audiences:")))); err != nil {
		t.Errorf("jwks_refresh 2s, token_type at+jwt: %v", err)
	}
}

// mutated is the baseline changed by mutate.
func mutated(mutate func(*string)) string {
	y := baseline
	mutate(&y)
	return y
}

func TestAPrincipalWhoseTenantComesFromAToken(t *testing.T) {
	section := awsIAMSection + `      - {role_arn: "arn:aws:iam::123456789012:role/orders-fn", tenant_from: token}` + "\n"
	c, err := config.Parse([]byte(mutated(func(y *string) {
		*y = strings.Replace(*y, "  tenant_pattern:", section+"  tenant_pattern:", 1)
	})))
	if err != nil {
		t.Fatalf("tenant_from: token beside an identity provider: %v", err)
	}
	if p := c.Auth.AWSIAM.VerifierConfig().Principals[2]; !p.TenantFromToken || p.TenantID != "" || p.AnyTenant {
		t.Fatalf("VerifierConfig principal = %+v, want the tenant from a token", p)
	}
}

func TestEveryProblemOfThePrincipalsIsNamed(t *testing.T) {
	section := awsIAMSection + `      - {role_arn: "arn:aws:iam::123456789012:user/x", tenant: acme}` + "\n" +
		`      - {role_arn: "arn:aws:iam::123456789012:role/y", tenant: acme, any_tenant: true}` + "\n"
	_, err := config.Parse([]byte(strings.Replace(baseline, "auth:\n", "auth:\n"+section, 1)))
	for _, want := range []string{"auth.aws_iam.principals[2].role_arn: not an IAM role ARN", "auth.aws_iam.principals[3]: one of tenant, any_tenant or tenant_from"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse() = %v, want %q among the problems", err, want)
		}
	}
}

func TestAPrincipalARoleTemplateMayRenderIsRefused(t *testing.T) {
	bridge := replace("    role_arn: arn:aws:iam::123456789012:role/TenantData\n", "    role_arn: 'arn:aws:iam::123456789012:role/tenants/tenant-{{ .TenantID }}'\n")
	bare := replace("    role_arn: arn:aws:iam::123456789012:role/TenantData\n", "    role_arn: 'arn:aws:iam::123456789012:role/{{ .TenantID }}'\n")
	silo := replace("    role_arn: arn:aws:iam::123456789012:role/TenantData\n", "    role_arn: 'arn:aws:iam::{{ .Attr \"account_id\" }}:role/TenantAccess'\n")
	lower := replace("  tenant_pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$'", "  tenant_pattern: '^[a-z0-9][a-z0-9_-]{0,31}$'")
	for name, tc := range map[string]struct {
		profile   func(*string)
		principal string
		refused   bool
	}{
		"a bridge tenant's role":                    {bridge, "arn:aws:iam::123456789012:role/tenants/tenant-acme", true},
		"a bridge tenant's role by another path":    {bridge, "arn:aws:iam::123456789012:role/TENANT-acme", true},
		"any role, when a bridge role is a bare id": {bare, "arn:aws:iam::123456789012:role/orders-fn", true},
		"a silo role in any account":                {silo, "arn:aws:iam::222233334444:role/tenantaccess", true},
		"another role in the bridge's account":      {bridge, "arn:aws:iam::123456789012:role/orders-fn", false},
		"the silo role name in another partition":   {silo, "arn:aws-cn:iam::222233334444:role/TenantAccess", false},
		"a role whose name only starts like a silo": {silo, "arn:aws:iam::222233334444:role/TenantAccessX", false},
	} {
		y := baseline
		tc.profile(&y)
		lower(&y)
		y = strings.Replace(y, "auth:\n", "auth:\n"+awsIAMSection+`      - {role_arn: "`+tc.principal+`", any_tenant: true}`+"\n", 1)
		_, err := config.Parse([]byte(y))
		if refused := err != nil && strings.Contains(err.Error(), "is a role profile objects vends"); refused != tc.refused {
			t.Errorf("%s: Parse() = %v, want refused %v", name, err, tc.refused)
		}
	}
}

func TestTokenSettingsAreCheckedWithAWSIAMCallersAlone(t *testing.T) {
	for setting, want := range map[string]string{
		"  algorithms: [HS256]\n": "auth.algorithms[0]",
		"  leeway: 10m\n":         "auth.leeway",
		"  jwks_refresh: 1ms\n":   "auth.jwks_refresh",
	} {
		y := mutated(withoutIdP(awsIAMSection))
		y = strings.Replace(y, "auth:\n", "auth:\n"+setting, 1)
		if _, err := config.Parse([]byte(y)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Parse() = %v, want %s refused", strings.TrimSpace(setting), err, want)
		}
	}
}
