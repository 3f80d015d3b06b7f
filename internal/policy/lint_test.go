package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tokenvendor/tokenvendor/internal/policy"
)

func TestLint(t *testing.T) {
	tests := []struct {
		name    string
		policy  string
		tags    map[string]string
		pattern string   // "" is the default pattern
		wantErr []string // nil means Lint accepts the template
	}{
		{
			name:   "scoped Allow in Resource",
			policy: s3Policy,
		},
		{
			name:   "scoped Allow in Condition",
			policy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"dynamodb:Query","Resource":"arn:aws:dynamodb:us-east-1:123456789012:table/T","Condition":{"ForAllValues:StringEquals":{"dynamodb:LeadingKeys":["{{ .TenantID }}"]}}}]}`,
		},
		{
			name:   "Deny without tenant reference",
			policy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/{{ .TenantID }}/*"},{"Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}]}`,
		},
		{
			name:   "single Statement object",
			policy: `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/{{ .TenantID }}/*"}}`,
		},
		{
			name:    "old Version",
			policy:  strings.Replace(s3Policy, "2012-10-17", "2008-10-17", 1),
			wantErr: []string{`policy.Version: must be "2012-10-17"`},
		},
		{
			name:    "Version missing",
			policy:  `{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/{{ .TenantID }}/*"}]}`,
			wantErr: []string{"policy.Version"},
		},
		{
			name:    "not an object",
			policy:  `["2012-10-17"]`,
			wantErr: []string{"policy: not a JSON object"},
		},
		{
			name:    "no statements",
			policy:  `{"Version":"2012-10-17","Statement":[]}`,
			wantErr: []string{"policy.Statement: no statements"},
		},
		{
			name:    "Allow without tenant reference",
			policy:  `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/{{ .TenantID }}/*"},{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}`,
			wantErr: []string{"policy.Statement[1]: Allow statement does not reference the tenant"},
		},
		{
			name:    "tenant only in Action does not count",
			policy:  `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:{{ .TenantID }}","Resource":"*"}]}`,
			wantErr: []string{"policy.Statement[0]: Allow statement does not reference the tenant"},
		},
		{
			name:    "Effect missing",
			policy:  `{"Version":"2012-10-17","Statement":[{"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/{{ .TenantID }}/*"}]}`,
			wantErr: []string{"policy.Statement[0].Effect: must be Allow or Deny"},
		},
		{
			name:    "statement not an object",
			policy:  `{"Version":"2012-10-17","Statement":["s3:*"]}`,
			wantErr: []string{"policy.Statement[0]: not an object"},
		},
		{
			name:    "every problem reported",
			policy:  `{"Version":"1","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"},{"Action":"s3:*","Resource":"*"}]}`,
			wantErr: []string{"policy.Version", "policy.Statement[0]: Allow", "policy.Statement[1].Effect"},
		},
		{
			name:    "too long with the longest tenant",
			policy:  longPolicy(25),
			wantErr: []string{"with a 63-character tenant id", "STS allows at most 2048"},
		},
		{
			name:    "same policy fits when tenants are short",
			policy:  longPolicy(25),
			pattern: `^[a-z]{1,8}$`,
		},
		{
			name:    "missing var",
			policy:  `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::{{ .Vars.bucket }}/{{ .TenantID }}/*"}]}`,
			wantErr: []string{`no entry for key "bucket"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := policy.Compile(policy.Spec{Profile: "p", Policy: tt.policy, Tags: tt.tags}, mustTenantRule(t, tt.pattern))
			if err != nil {
				t.Fatalf("Compile() = %v", err)
			}
			err = tmpl.Lint()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Lint() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Lint() = nil, want an error containing %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Lint() error %q does not contain %q", err, want)
				}
			}
		})
	}
}

// TestLongPolicyFitsShortTenant proves the "too long" Lint row fails only
// because of the tenant's length: rendered for a short tenant it is accepted.
func TestLongPolicyFitsShortTenant(t *testing.T) {
	tmpl, err := policy.Compile(policy.Spec{Profile: "p", Policy: longPolicy(25)}, mustTenantRule(t, ""))
	if err != nil {
		t.Fatalf("Compile() = %v", err)
	}
	r, err := tmpl.Render("acme")
	if err != nil {
		t.Fatalf("Render(acme) = %v", err)
	}
	if len(r.Policy) > policy.MaxPolicyLength {
		t.Fatalf("Render(acme) is %d characters, want at most %d", len(r.Policy), policy.MaxPolicyLength)
	}
	if _, err := tmpl.Render(strings.Repeat("a", 63)); err == nil {
		t.Fatal("Render(63-character tenant) = nil, want a length error")
	}
}

// longPolicy is an Allow statement with n tenant-scoped resources.
func longPolicy(n int) string {
	resources := make([]string, n)
	for i := range resources {
		resources[i] = fmt.Sprintf(`"arn:aws:s3:::b%d/{{ .TenantID }}/*"`, i)
	}
	return `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":[` + strings.Join(resources, ",") + `]}]}`
}

func TestLintRefusesTemplatesThatReachAnotherTenant(t *testing.T) {
	tenants, err := policy.NewTenantRule("")
	if err != nil {
		t.Fatal(err)
	}
	stmt := func(body string) string {
		return `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject",` + body + `}]}`
	}
	tests := []struct {
		name, policy, want string
	}{
		{name: "wildcard after the tenant", policy: stmt(`"Resource":"arn:aws:s3:::data/{{ .TenantID }}*"`), want: "next to a wildcard"},
		{name: "wildcard before the tenant", policy: stmt(`"Resource":"arn:aws:s3:::data/*{{ .TenantID }}/x"`), want: "next to a wildcard"},
		{name: "tenant character after the tenant", policy: stmt(`"Resource":"arn:aws:s3:::data/{{ .TenantID }}-*"`), want: "next to a wildcard"},
		{name: "NotResource", policy: stmt(`"NotResource":"arn:aws:s3:::data/{{ .TenantID }}/*"`), want: "NotResource"},
		{name: "only a negated condition", policy: stmt(`"Resource":"*","Condition":{"StringNotEquals":{"aws:ResourceTag/TenantID":"{{ .TenantID }}"}}`), want: "positive condition operator"},
		{name: "only an IfExists condition", policy: stmt(`"Resource":"*","Condition":{"StringEqualsIfExists":{"aws:ResourceTag/TenantID":"{{ .TenantID }}"}}`), want: "positive condition operator"},
		{name: "only a case-insensitive condition", policy: stmt(`"Resource":"*","Condition":{"StringEqualsIgnoreCase":{"aws:ResourceTag/TenantID":"{{ .TenantID }}"}}`), want: "positive condition operator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := policy.Compile(policy.Spec{Profile: "p", Policy: tt.policy}, tenants)
			if err != nil {
				t.Fatal(err)
			}
			if err := tmpl.Lint(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Lint = %v, want an error about %q", err, tt.want)
			}
		})
	}
	for name, ok := range map[string]string{
		"prefix with a delimiter": stmt(`"Resource":"arn:aws:s3:::data/{{ .TenantID }}/*"`),
		"leading keys":            stmt(`"Resource":"arn:aws:dynamodb:us-east-1:123456789012:table/Orders","Condition":{"ForAllValues:StringEquals":{"dynamodb:LeadingKeys":["TENANT#{{ .TenantID }}"]}}`),
		"resource tag":            stmt(`"Resource":"*","Condition":{"StringEquals":{"aws:ResourceTag/TenantID":"{{ .TenantID }}"}}`),
	} {
		tmpl, err := policy.Compile(policy.Spec{Profile: "p", Policy: ok}, tenants)
		if err != nil {
			t.Fatal(err)
		}
		if err := tmpl.Lint(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
