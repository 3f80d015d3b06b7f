package policy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/tokenvendor/tokenvendor/internal/partition"
)

var roleKey = []byte("0123456789abcdef0123456789abcdef")

func compileRole(t *testing.T, spec RoleSpec) *Role {
	t.Helper()
	if spec.Partition == (partition.Partition{}) {
		spec.Partition, spec.Region = partition.AWS, "us-east-1"
	}
	r, err := CompileRole(spec, defaultRule(t))
	if err != nil {
		t.Fatalf("CompileRole: %v", err)
	}
	return r
}

func defaultRule(t *testing.T) *TenantRule {
	t.Helper()
	rule, err := NewTenantRule("")
	if err != nil {
		t.Fatal(err)
	}
	return rule
}

func TestRoleRendersEachModel(t *testing.T) {
	tests := []struct {
		name  string
		spec  RoleSpec
		attrs map[string]string
		want  Target
	}{
		{
			name: "pool: one role for every tenant",
			spec: RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/TenantData", ExternalID: "shared-id"},
			want: Target{RoleARN: "arn:aws:iam::123456789012:role/TenantData", ExternalID: "shared-id"},
		},
		{
			name: "bridge: a role of the tenant's own in the shared account",
			spec: RoleSpec{RoleARN: "arn:{{ .Partition }}:iam::123456789012:role/tenants/{{ .TenantID }}"},
			want: Target{RoleARN: "arn:aws:iam::123456789012:role/tenants/acme"},
		},
		{
			name:  "silo: the tenant's own account",
			spec:  RoleSpec{RoleARN: `arn:{{ .Partition }}:iam::{{ .Attr "account_id" }}:role/TenantAccess`, ExternalID: `{{ .TenantID }}-{{ .Region }}`},
			attrs: map[string]string{"account_id": "222233334444"},
			want:  Target{RoleARN: "arn:aws:iam::222233334444:role/TenantAccess", ExternalID: "acme-us-east-1"},
		},
		{
			name:  "silo in China",
			spec:  RoleSpec{RoleARN: `arn:{{ .Partition }}:iam::{{ .Attr "account_id" }}:role/TenantAccess`, Partition: partition.China, Region: "cn-north-1"},
			attrs: map[string]string{"account_id": "222233334444"},
			want:  Target{RoleARN: "arn:aws-cn:iam::222233334444:role/TenantAccess"},
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
	r := compileRole(t, RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/T", ExternalID: DerivedExternalID, ExternalIDKey: roleKey})
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
	other := compileRole(t, RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/T", ExternalID: DerivedExternalID, ExternalIDKey: []byte(strings.Repeat("k", 32))})
	if o, _ := other.Render("acme", nil); o.ExternalID == acme.ExternalID {
		t.Error("another key derives the same ExternalId")
	}
}

func TestRoleRefusesWhatWouldBeAMalformedCall(t *testing.T) {
	silo := compileRole(t, RoleSpec{RoleARN: `arn:aws:iam::{{ .Attr "account_id" }}:role/TenantAccess`})
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
		if !errors.Is(err, ErrMissingAttribute) || !strings.Contains(err.Error(), `"account_id"`) {
			t.Errorf("%s: %v, want ErrMissingAttribute naming account_id", name, err)
		}
	}
	if _, err := silo.Render("acme", map[string]string{"account_id": "2222"}); err == nil || !strings.Contains(err.Error(), "12 digits") {
		t.Errorf("a short account: %v, want the ARN check's error", err)
	}
	if _, err := silo.Render("*", map[string]string{"account_id": "222233334444"}); !errors.Is(err, ErrInvalidTenant) {
		t.Errorf("tenant *: %v, want ErrInvalidTenant", err)
	}
}

func TestCompileRoleRefuses(t *testing.T) {
	rule := defaultRule(t)
	tests := []struct {
		name string
		spec RoleSpec
		want string
	}{
		{"not an ARN", RoleSpec{RoleARN: "TenantData"}, "not an IAM ARN"},
		{"another partition", RoleSpec{RoleARN: "arn:aws-cn:iam::123456789012:role/T"}, "not aws"},
		{"a bad template", RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/{{ .TenantID"}, "bad template"},
		{"an unknown field", RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/{{ .Tenant }}"}, "Tenant"},
		{"a name too long for a long tenant", RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/tenant-data-{{ .TenantID }}"}, "63-character tenant id"},
		{"derived without a key", RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/T", ExternalID: DerivedExternalID}, "at least 32 bytes"},
		{"derived with a short key", RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/T", ExternalID: DerivedExternalID, ExternalIDKey: []byte("short")}, "at least 32 bytes"},
		{"a key without derived", RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/T", ExternalID: "x1", ExternalIDKey: roleKey}, "only with external_id: derived"},
		{"an ExternalId of one character", RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/T", ExternalID: "x"}, "external_id"},
		{"an ExternalId with a space", RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/T", ExternalID: "{{ .TenantID }} x"}, "external_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Partition, tt.spec.Region = partition.AWS, "us-east-1"
			_, err := CompileRole(tt.spec, rule)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CompileRole = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestPolicyTemplatesSeeThePartition(t *testing.T) {
	tmpl, err := Compile(Spec{Profile: "p", Partition: "aws-us-gov", Region: "us-gov-west-1",
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
