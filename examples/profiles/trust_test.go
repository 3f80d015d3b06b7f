package profiles_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// The accounts of the silo proof: the vendor's, where tokenvendor's
// service role lives, a tenant's own, and another vendor's.
const (
	vendorAccount   = "111122223333"
	acmeAccount     = "222233334444"
	strangerAccount = "999988887777"
)

// siloConfig is a silo profile: each tenant's account, the same role name
// there, a derived ExternalId.
const siloConfig = `auth:
  issuer: https://idp.example.com/
  jwks_url: https://idp.example.com/jwks
  audiences: [tokenvendor]
profiles:
  - name: silo
    role_arn: 'arn:{{ .Partition }}:iam::{{ .Attr "account_id" }}:role/TenantAccess'
    external_id: derived
    external_id_key_file: %s
    policy: '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:{{ .Partition }}:s3:::data/{{ .TenantID }}/*"}]}'
    tags: {TenantID: "{{ .TenantID }}"}
`

// derivedExternalIDs renders the silo profile for each tenant with the
// real command and returns each one's role and ExternalId.
func derivedExternalIDs(t *testing.T, tenants ...string) map[string]rendered {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "external-id.key")
	if err := os.WriteFile(key, []byte("a key of the vendor's, 32 bytes or more\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "silo.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(siloConfig, key)), 0o600); err != nil {
		t.Fatal(err)
	}
	out := map[string]rendered{}
	for _, tenant := range tenants {
		b, err := tokenvendor("render", "--config", config, "--profile", "silo", "--tenant", tenant, "--attr", "account_id="+acmeAccount)
		if err != nil {
			t.Fatal(err)
		}
		var r rendered
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		out[tenant] = r
	}
	return out
}

// tenantTrust is the trust policy of deploy/cloudformation/tenant-account.yaml
// for a tenant, its parameters substituted.
func tenantTrust(t *testing.T, params map[string]string) any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.root, "deploy", "cloudformation", "tenant-account.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	tpl := testsupport.LongForm(&root).(map[string]any)
	role := tpl["Resources"].(map[string]any)["TenantRole"].(map[string]any)
	return substitute(t, role["Properties"].(map[string]any)["AssumeRolePolicyDocument"], params)
}

// substitute resolves Ref of a parameter and Fn::If (every condition of
// the template true: SourceIdentity on), dropping AWS::NoValue.
func substitute(t *testing.T, v any, params map[string]string) any {
	switch v := v.(type) {
	case map[string]any:
		if name, ok := v["Ref"].(string); ok && len(v) == 1 {
			if name == "AWS::NoValue" {
				return nil
			}
			p, ok := params[name]
			if !ok {
				t.Fatalf("no parameter %s", name)
			}
			return p
		}
		if args, ok := v["Fn::If"].([]any); ok && len(v) == 1 {
			return substitute(t, args[1], params)
		}
		out := map[string]any{}
		for k, e := range v {
			out[k] = substitute(t, e, params)
		}
		return out
	case []any:
		var out []any
		for _, e := range v {
			if s := substitute(t, e, params); s != nil {
				out = append(out, s)
			}
		}
		return out
	}
	return v
}

// TestSiloTrustAdmitsEachTenantsOwnExternalIdAlone has iam-simulate decide
// AssumeRole of a silo tenant's role, trusting tokenvendor's service role
// as tenant-account.yaml does with the derived ExternalId that
// `tokenvendor render` prints for the tenant: the tenant's own id is
// allowed; another tenant's id, none, or another account's principal with
// the right id are denied; the session may be tagged with this tenant only.
func TestSiloTrustAdmitsEachTenantsOwnExternalIdAlone(t *testing.T) {
	ids := derivedExternalIDs(t, "acme", "globex")
	acme, globex := ids["acme"], ids["globex"]
	if acme.ExternalID == globex.ExternalID || len(acme.ExternalID) != 64 {
		t.Fatalf("derived ExternalIds %q and %q: want two different 64-character ids", acme.ExternalID, globex.ExternalID)
	}
	roleARN := "arn:aws:iam::" + acmeAccount + ":role/TenantAccess"
	if acme.RoleArn != roleARN {
		t.Fatalf("render's role %s, want %s", acme.RoleArn, roleARN)
	}
	serviceRole := "arn:aws:iam::" + vendorAccount + ":role/tokenvendor"
	trust := tenantTrust(t, map[string]string{"VendorServiceRoleArn": serviceRole, "ExternalId": acme.ExternalID, "TenantId": "acme"})
	// The service role's own permission, as iam.yaml grants it with
	// SiloRoleName=TenantAccess (deploy/tenantaccount_test.go).
	identity := []namedPolicy{{Name: "assume-tenant-roles", Policy: map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{
		"Effect": "Allow", "Action": []any{"sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"},
		"Resource": "arn:aws:iam::*:role/TenantAccess",
	}}}}}
	rows := []struct {
		why, principal, action string
		context                map[string]any
		want                   string
	}{
		{"acme's own ExternalId", "tokenvendor", "sts:AssumeRole", map[string]any{"sts:ExternalId": acme.ExternalID}, allowed},
		{"globex's ExternalId (a confused deputy)", "tokenvendor", "sts:AssumeRole", map[string]any{"sts:ExternalId": globex.ExternalID}, denied},
		{"no ExternalId", "tokenvendor", "sts:AssumeRole", map[string]any{}, denied},
		{"acme's ExternalId from another account's role", "stranger", "sts:AssumeRole", map[string]any{"sts:ExternalId": acme.ExternalID}, denied},
		{"tagged TenantID=acme", "tokenvendor", "sts:TagSession", map[string]any{"aws:RequestTag/TenantID": "acme", "aws:TagKeys": []any{"TenantID"}}, allowed},
		{"tagged TenantID=globex", "tokenvendor", "sts:TagSession", map[string]any{"aws:RequestTag/TenantID": "globex", "aws:TagKeys": []any{"TenantID"}}, denied},
	}
	var sims []simulation
	for i, r := range rows {
		principal := "arn:aws:sts::" + vendorAccount + ":assumed-role/tokenvendor/i-0123456789abcdef0"
		if r.principal == "stranger" {
			principal = "arn:aws:sts::" + strangerAccount + ":assumed-role/tokenvendor/i-0123456789abcdef0"
		}
		sims = append(sims, simulation{ID: fmt.Sprint(i), Simulation: map[string]any{
			"request": map[string]any{
				"principal": principal, "action": r.action,
				"resource":         map[string]any{"resource": roleARN, "accountId": acmeAccount},
				"contextVariables": r.context,
			},
			"identityPolicies": identity, "resourcePolicy": trust,
			"serviceControlPolicies": []any{}, "resourceControlPolicies": []any{},
		}})
	}
	results := evaluate(t, map[string]any{"simulations": sims}).Results
	if len(results) != len(rows) {
		t.Fatalf("%d decisions for %d rows", len(results), len(rows))
	}
	for i, r := range rows {
		got := results[i]
		switch {
		case got.Decision == "error" || got.Decision == "":
			t.Errorf("%s: the evaluator could not decide: %s", r.why, got.Errors)
		case len(got.IgnoredContextKeys) > 0:
			t.Errorf("%s: the evaluator ignored %v: the row proves nothing", r.why, got.IgnoredContextKeys)
		case (got.Decision == allowed) != (r.want == allowed):
			t.Errorf("%s: %s %s, want %s", r.why, r.action, got.Decision, r.want)
		}
		t.Logf("%-50s %-15s %s", r.why, r.action, got.Decision)
	}
	if strings.Contains(fmt.Sprint(trust), globex.ExternalID) {
		t.Error("the trust names globex's id")
	}
}
