package profiles_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestBedrockSessionsCarryTheTenantForCostReports holds bedrock-cost.yaml
// to what docs/bedrock-cost-attribution.md says Bedrock's cost reports
// receive: the caller's ARN, whose last part is the role session name
// <tenant>@bedrock-cost, and the session tag TenantID=<tenant>. A tenant id
// longer than the 64 characters of a session name allow (with
// "@bedrock-cost") is cut and ends in a hash: the name still differs per
// tenant, but only the tag names the tenant in full.
func TestBedrockSessionsCarryTheTenantForCostReports(t *testing.T) {
	config := filepath.Join(env.root, "examples", "profiles", "bedrock-cost.yaml")
	const suffix = "@bedrock-cost"
	longest := 64 - len(suffix)
	names := map[string]string{}
	for _, tenant := range []string{
		"acme",
		"acme2",
		strings.Repeat("t", longest),
		strings.Repeat("t", longest+1),
		strings.Repeat("t", 62) + "a",
		strings.Repeat("t", 62) + "b",
	} {
		r, err := render(config, "bedrock-cost", tenant)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Tags) != 1 || r.Tags[0].Key != "TenantID" || r.Tags[0].Value != tenant {
			t.Errorf("tenant %s: tags %v, want TenantID=%s alone", tenant, r.Tags, tenant)
		}
		name := r.RoleSessionName
		switch {
		case len(name) < 2 || len(name) > 64:
			t.Errorf("tenant %s: session name %q is not 2 to 64 characters", tenant, name)
		case len(tenant) <= longest && name != tenant+suffix:
			t.Errorf("tenant %s: session name %q, want %q", tenant, name, tenant+suffix)
		case len(tenant) > longest && name == tenant+suffix:
			t.Errorf("tenant %s: session name %q is longer than STS allows", tenant, name)
		}
		if other, ok := names[name]; ok {
			t.Errorf("tenants %s and %s share the session name %q: their costs would merge", other, tenant, name)
		}
		names[name] = tenant
		if tenant == "acme" {
			caller := "arn:aws:sts::" + account + ":assumed-role/TenantData/" + name
			if want := "arn:aws:sts::123456789012:assumed-role/TenantData/acme@bedrock-cost"; caller != want {
				t.Errorf("acme's sessions call Bedrock as %s, want %s (docs/bedrock-cost-attribution.md)", caller, want)
			}
		}
	}
}
