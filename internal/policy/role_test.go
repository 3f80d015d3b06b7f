package policy_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/tokenvendor/tokenvendor/internal/partition"
	"github.com/tokenvendor/tokenvendor/internal/policy"
)

var roleKey = []byte("0123456789abcdef0123456789abcdef")

func compileRole(t *testing.T, spec policy.RoleSpec) *policy.Role {
	t.Helper()
	if spec.Partition == (partition.Partition{}) {
		spec.Partition, spec.Region = partition.AWS, "us-east-1"
	}
	r, err := policy.CompileRole(spec, lowerCaseRule(t))
	if err != nil {
		t.Fatalf("CompileRole: %v", err)
	}
	return r
}

func defaultRule(t testing.TB) *policy.TenantRule { return mustTenantRule(t, "") }

// lowerCaseRule admits lower-case tenant ids alone, as a bridge profile
// needs: IAM role names ignore case.
func lowerCaseRule(t testing.TB) *policy.TenantRule {
	return mustTenantRule(t, `^[a-z0-9][a-z0-9_-]{0,62}$`)
}

func TestRoleRendersEachModel(t *testing.T) {
	tests := []struct {
		name  string
		spec  policy.RoleSpec
		attrs map[string]string
		want  policy.Target
	}{
		{
			name: "pool: one role for every tenant",
			spec: policy.RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/TenantData", ExternalID: "shared-id"},
			want: policy.Target{RoleARN: "arn:aws:iam::123456789012:role/TenantData", ExternalID: "shared-id"},
		},
		{
			name: "bridge: a role of the tenant's own in the shared account",
			spec: policy.RoleSpec{RoleARN: "arn:{{ .Partition }}:iam::123456789012:role/tenants/{{ .TenantID }}"},
			want: policy.Target{RoleARN: "arn:aws:iam::123456789012:role/tenants/acme"},
		},
		{
			name:  "silo: the tenant's own account",
			spec:  policy.RoleSpec{RoleARN: `arn:{{ .Partition }}:iam::{{ .Attr "account_id" }}:role/TenantAccess`, ExternalID: `{{ .TenantID }}-{{ .Region }}`},
			attrs: map[string]string{"account_id": "222233334444"},
			want:  policy.Target{RoleARN: "arn:aws:iam::222233334444:role/TenantAccess", ExternalID: "acme-us-east-1"},
		},
		{
			name:  "silo in China",
			spec:  policy.RoleSpec{RoleARN: `arn:{{ .Partition }}:iam::{{ .Attr "account_id" }}:role/TenantAccess`, Partition: partition.China, Region: "cn-north-1"},
			attrs: map[string]string{"account_id": "222233334444"},
			want:  policy.Target{RoleARN: "arn:aws-cn:iam::222233334444:role/TenantAccess"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := compileRole(t, tt.spec).Render("acme", tt.attrs)
			if err != nil || got != tt.want {
				t.Errorf("Render = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestDerivedExternalIDIsEachTenantsOwn(t *testing.T) {
	r := compileRole(t, policy.RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/T", ExternalID: policy.DerivedExternalID, ExternalIDKey: roleKey})
	acme, err := r.Render("acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, roleKey)
	mac.Write([]byte("acme"))
	if want := hex.EncodeToString(mac.Sum(nil)); acme.ExternalID != want {
		t.Errorf("acme's ExternalId %q, want HMAC-SHA256(key, acme) %q", acme.ExternalID, want)
	}
	globex, _ := r.Render("globex", nil)
	if globex.ExternalID == acme.ExternalID {
		t.Error("two tenants share an ExternalId")
	}
	other := compileRole(t, policy.RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/T", ExternalID: policy.DerivedExternalID, ExternalIDKey: []byte(strings.Repeat("k", 32))})
	if o, _ := other.Render("acme", nil); o.ExternalID == acme.ExternalID {
		t.Error("another key derives the same ExternalId")
	}
}

func TestRoleRefusesWhatWouldBeAMalformedCall(t *testing.T) {
	silo := compileRole(t, policy.RoleSpec{RoleARN: `arn:aws:iam::{{ .Attr "account_id" }}:role/TenantAccess`})
	if got := silo.Attributes(); len(got) != 1 || got[0] != "account_id" {
		t.Errorf("Attributes() = %v, want [account_id]", got)
	}
	for name, attrs := range map[string]map[string]string{
		"no item":             nil,
		"no account_id":       {"tier": "premium"},
		"an empty account_id": {"account_id": ""},
		"a path in it":        {"account_id": "222233334444:role/Admin"},
		"a wildcard in it":    {"account_id": "*"},
	} {
		_, err := silo.Render("acme", attrs)
		if !errors.Is(err, policy.ErrTenantNotSetUp) || !strings.Contains(err.Error(), `"account_id"`) {
			t.Errorf("%s: %v, want policy.ErrTenantNotSetUp naming account_id", name, err)
		}
	}
	if _, err := silo.Render("acme", map[string]string{"account_id": "2222"}); !errors.Is(err, policy.ErrTenantNotSetUp) || !strings.Contains(err.Error(), "12 digits") {
		t.Errorf("a short account: %v, want policy.ErrTenantNotSetUp with the ARN check's error", err)
	}
	if _, err := silo.Render("*", map[string]string{"account_id": "222233334444"}); !errors.Is(err, policy.ErrInvalidTenant) {
		t.Errorf("tenant *: %v, want policy.ErrInvalidTenant", err)
	}
}

func TestCompileRoleRefuses(t *testing.T) {
	rule := defaultRule(t)
	tests := []struct {
		name string
		spec policy.RoleSpec
		want string
	}{
		{"not an ARN", policy.RoleSpec{RoleARN: "TenantData"}, "not an IAM ARN"},
		{"another partition", policy.RoleSpec{RoleARN: "arn:aws-cn:iam::123456789012:role/T"}, "not aws"},
		{"a bad template", policy.RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/{{ .TenantID"}, "bad template"},
		{"an unknown field", policy.RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/{{ .Tenant }}"}, "Tenant"},
		{"a name too long for a long tenant", policy.RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/tenant-data-{{ .TenantID }}"}, "63-character tenant id"},
		{"derived without a key", policy.RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/T", ExternalID: policy.DerivedExternalID}, "at least 32 bytes"},
		{"derived with a short key", policy.RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/T", ExternalID: policy.DerivedExternalID, ExternalIDKey: []byte("short")}, "at least 32 bytes"},
		{"a key without derived", policy.RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/T", ExternalID: "x1", ExternalIDKey: roleKey}, "only with external_id: derived"},
		{"an ExternalId of one character", policy.RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/T", ExternalID: "x"}, "external_id"},
		{"an ExternalId with a space", policy.RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/T", ExternalID: "{{ .TenantID }} x"}, "external_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Partition, tt.spec.Region = partition.AWS, "us-east-1"
			_, err := policy.CompileRole(tt.spec, rule)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CompileRole = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestARoleNamedAfterTheTenantNeedsTenantIDsOfOneCase(t *testing.T) {
	bridge := policy.RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/tenants/{{ .TenantID }}", Partition: partition.AWS, Region: "us-east-1"}
	if _, err := policy.CompileRole(bridge, defaultRule(t)); err == nil || !strings.Contains(err.Error(), "differ only in case") {
		t.Errorf("a bridge role under a pattern admitting ACME and acme: %v, want a refusal", err)
	}
	if _, err := policy.CompileRole(bridge, lowerCaseRule(t)); err != nil {
		t.Errorf("under a lower-case pattern: %v", err)
	}
	derived := bridge
	derived.ExternalID, derived.ExternalIDKey = policy.DerivedExternalID, roleKey
	if _, err := policy.CompileRole(derived, defaultRule(t)); err != nil {
		t.Errorf("with a derived ExternalId: %v", err)
	}
	silo := policy.RoleSpec{RoleARN: `arn:aws:iam::{{ .Attr "account_id" }}:role/TenantAccess`, Partition: partition.AWS, Region: "us-east-1"}
	if _, err := policy.CompileRole(silo, defaultRule(t)); err != nil {
		t.Errorf("a silo role naming no tenant: %v", err)
	}
}

func TestPolicyTemplatesSeeThePartition(t *testing.T) {
	tmpl, err := policy.Compile(policy.Spec{Profile: "p", Partition: "aws-us-gov", Region: "us-gov-west-1",
		Policy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:{{ .Partition }}:s3:::b/{{ .TenantID }}/*"}]}`,
	}, defaultRule(t))
	if err != nil {
		t.Fatal(err)
	}
	r, err := tmpl.Render("acme")
	if err != nil || !strings.Contains(r.Policy, `"arn:aws-us-gov:s3:::b/acme/*"`) {
		t.Errorf("Render = %s, %v; want the GovCloud ARN", r.Policy, err)
	}
}

func TestPerTenantTellsThePoolFromTheBridgeAndTheSilo(t *testing.T) {
	for arn, want := range map[string]bool{
		"arn:aws:iam::123456789012:role/TenantData":               false,
		"arn:{{ .Partition }}:iam::123456789012:role/TenantData":  false,
		"arn:aws:iam::123456789012:role/tenants/{{ .TenantID }}":  true,
		`arn:aws:iam::{{ .Attr "account_id" }}:role/TenantAccess`: true,
	} {
		if got := compileRole(t, policy.RoleSpec{RoleARN: arn}).PerTenant(); got != want {
			t.Errorf("%s: PerTenant() = %v, want %v", arn, got, want)
		}
	}
}

// A pool's role is rendered once, not on every request: the hot path of a
// cache hit builds the AssumeRole input, role included.
func TestAPoolRoleRendersWithoutWork(t *testing.T) {
	pool := compileRole(t, policy.RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/TenantData", ExternalID: "shared-id"})
	if n := testing.AllocsPerRun(100, func() { _, _ = pool.Render("acme", nil) }); n != 0 {
		t.Errorf("Render of a pool role allocates %v times, want 0", n)
	}
	bridge := compileRole(t, policy.RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/tenants/{{ .TenantID }}"})
	if got, _ := bridge.Render("acme", nil); got.RoleARN != "arn:aws:iam::123456789012:role/tenants/acme" {
		t.Errorf("a bridge role rendered %q: the per-tenant path must not be the fixed one", got.RoleARN)
	}
}
