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
		// ForAllValues holds for a request without the key: GetObject carries
		// no aws:TagKeys, so this grants every object.
		{name: "only a ForAllValues condition without a Null guard", policy: stmt(`"Resource":"*","Condition":{"ForAllValues:StringEquals":{"aws:TagKeys":["{{ .TenantID }}"]}}`), want: "positive condition operator"},
		// Every element must be confined, not one of them.
		{name: "the whole bucket beside the tenant's prefix", policy: stmt(`"Resource":["arn:aws:s3:::b/{{ .TenantID }}/*","arn:aws:s3:::b/*"]`), want: "in every Resource"},
		{name: "a wildcard key beside the tenant's", policy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"dynamodb:GetItem","Resource":"arn:aws:dynamodb:us-east-1:123456789012:table/Orders",` +
			`"Condition":{"ForAllValues:StringLike":{"dynamodb:LeadingKeys":["TENANT#{{ .TenantID }}","TENANT#*"]},"Null":{"dynamodb:LeadingKeys":"false"}}}]}`, want: "every value of a condition"},
		// tokenvendor tags the session with the tenant it renders for: a
		// condition on that tag always holds.
		{name: "only a condition on the session's own tag", policy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":"*",` +
			`"Condition":{"StringEquals":{"aws:PrincipalTag/TenantID":"{{ .TenantID }}"}}}]}`, want: "not on aws:PrincipalTag"},
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

// A dynamodb:LeadingKeys condition holds a statement to the tenant only for
// requests that carry leading keys, all of them the tenant's. The rows
// follow the Service Authorization Reference (Scan carries none) and what
// @cloud-copilot/iam-simulate decides (examples/profiles): ForAllValues
// allows a request without keys, ForAnyValue a batch with one own key.
func TestLintRefusesActionsALeadingKeysConditionCannotHold(t *testing.T) {
	tenants, err := policy.NewTenantRule("")
	if err != nil {
		t.Fatal(err)
	}
	const (
		table   = `"Resource":"arn:aws:dynamodb:us-east-1:123456789012:table/Orders"`
		forAll  = `"ForAllValues:StringLike":{"dynamodb:LeadingKeys":["TENANT#{{ .TenantID }}","TENANT#{{ .TenantID }}#*"]}`
		guard   = `"Null":{"dynamodb:LeadingKeys":"false"}`
		carrier = `"dynamodb:GetItem","dynamodb:PutItem","dynamodb:UpdateItem","dynamodb:DeleteItem","dynamodb:Query","dynamodb:BatchGetItem","dynamodb:BatchWriteItem"`
	)
	stmt := func(actions, resource, cond string) string {
		return `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":[` + actions + `],` + resource + `,"Condition":{` + cond + `}}]}`
	}
	tests := []struct {
		name, policy string
		want         []string // nil: accepted
	}{
		{name: "the seeds' shape", policy: stmt(carrier, table, forAll+","+guard)},
		{name: "ForAllValues:StringEquals without a guard, actions that always carry the key", policy: stmt(carrier, table, `"ForAllValues:StringEquals":{"dynamodb:LeadingKeys":["TENANT#{{ .TenantID }}"]}`)},
		{name: "action names in any case", policy: stmt(`"DynamoDB:getitem","dynamodb:QUERY"`, table, forAll)},
		{name: "PartiQLSelect with a Null guard", policy: stmt(`"dynamodb:PartiQLSelect"`, table, forAll+","+guard)},
		{name: "ForAllValues on another key with a Null guard", policy: stmt(`"s3:GetObject"`, `"Resource":"*"`, `"ForAllValues:StringEquals":{"aws:TagKeys":["{{ .TenantID }}"]},"Null":{"aws:TagKeys":"false"}`)},
		{
			name:   "Scan beside the condition",
			policy: stmt(carrier+`,"dynamodb:Scan"`, table, forAll),
			want:   []string{"policy.Statement[0].Action: dynamodb:Scan carries no dynamodb:LeadingKeys", "it reads every tenant's data"},
		},
		{
			name:   "Scan beside a guarded condition",
			policy: stmt(`"dynamodb:Query","dynamodb:Scan"`, table, forAll+","+guard),
			want:   []string{"policy.Statement[0].Action: dynamodb:Scan carries no dynamodb:LeadingKeys"},
		},
		{
			name:   "a table-wide action",
			policy: stmt(`"dynamodb:Query","dynamodb:DescribeTable"`, table, forAll),
			want:   []string{"dynamodb:DescribeTable carries no dynamodb:LeadingKeys"},
		},
		{
			name:   "a service wildcard",
			policy: stmt(`"dynamodb:*"`, table, forAll),
			want:   []string{"dynamodb:* carries no dynamodb:LeadingKeys"},
		},
		{
			name:   "a wildcard that matches only keyed actions is still refused",
			policy: stmt(`"dynamodb:*Item"`, table, forAll),
			want:   []string{"dynamodb:*Item carries no dynamodb:LeadingKeys"},
		},
		{
			name:   "every action",
			policy: stmt(`"*"`, table, forAll),
			want:   []string{"policy.Statement[0].Action: * carries no dynamodb:LeadingKeys"},
		},
		{
			name:   "another service's action on every resource",
			policy: stmt(`"dynamodb:Query","s3:GetObject"`, `"Resource":"*"`, forAll),
			want:   []string{"s3:GetObject carries no dynamodb:LeadingKeys"},
		},
		{
			name:   "ForAnyValue lets a batch with one own key through",
			policy: stmt(carrier, table, `"ForAnyValue:StringEquals":{"dynamodb:LeadingKeys":["TENANT#{{ .TenantID }}"]}`),
			want:   []string{"policy.Statement[0].Condition: ForAnyValue on dynamodb:LeadingKeys", "use ForAllValues"},
		},
		{
			name:   "PartiQLSelect without a guard scans",
			policy: stmt(`"dynamodb:PartiQLSelect"`, table, forAll),
			want:   []string{`policy.Statement[0].Condition: dynamodb:PartiQLSelect without the partition key scans the table`, `"Null": {"dynamodb:LeadingKeys": "false"}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := policy.Compile(policy.Spec{Profile: "p", Policy: tt.policy}, tenants)
			if err != nil {
				t.Fatal(err)
			}
			err = tmpl.Lint()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Lint() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Lint() = nil, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Lint() error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLintLeavesTenantScopingToTheRoleWhenTheProfileSaysSo(t *testing.T) {
	tenants, err := policy.NewTenantRule("")
	if err != nil {
		t.Fatal(err)
	}
	broad := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}`
	for _, roleIsolates := range []bool{false, true} {
		tmpl, err := policy.Compile(policy.Spec{Profile: "p", Policy: broad, RoleIsolates: roleIsolates}, tenants)
		if err != nil {
			t.Fatal(err)
		}
		if err := tmpl.Lint(); (err == nil) != roleIsolates {
			t.Errorf("RoleIsolates %v: Lint = %v", roleIsolates, err)
		}
	}
	// The other checks still apply.
	tmpl, _ := policy.Compile(policy.Spec{Profile: "p", RoleIsolates: true,
		Policy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","NotResource":"arn:aws:s3:::b/x"}]}`}, tenants)
	if err := tmpl.Lint(); err == nil || !strings.Contains(err.Error(), "NotResource") {
		t.Errorf("RoleIsolates with NotResource: Lint = %v", err)
	}
}
