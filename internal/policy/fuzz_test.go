package policy_test

import (
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/tokenvendor/tokenvendor/internal/partition"
	"github.com/tokenvendor/tokenvendor/internal/policy"
)

// fuzzPolicy has Allow and Deny statements, tenant references in Resource,
// NotResource and Condition, and a Resource that is a string as well as
// arrays. Its literal text never contains fuzzProbe.
const fuzzPolicy = `{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],
  "Resource":["arn:aws:s3:::bucket/{{ .TenantID }}/*","arn:aws:s3:::bucket/shared/{{ .TenantID }}"]},
 {"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::bucket",
  "Condition":{"StringLike":{"s3:prefix":["{{ .TenantID }}/*"]}}},
 {"Effect":"Deny","Action":"s3:*","NotResource":["arn:aws:s3:::bucket/{{ .TenantID }}/*"]}]}`

// fuzzProbe is a valid tenant id used as the reference rendering.
const fuzzProbe = "x0"

func FuzzRender(f *testing.F) {
	for _, seed := range []string{"acme", "*", `a"b`, "${aws:username}", "../x", "}}{{", "{{ .Vars }}", "\u0430cme", "租户", "a\x00b", "acme\n", "a.b@c=d+e", strings.Repeat("a", 64)} {
		f.Add(seed)
	}
	tmpl, err := policy.Compile(policy.Spec{Profile: "fuzz", Policy: fuzzPolicy, Tags: map[string]string{"TenantID": "{{ .TenantID }}"}}, mustTenantRule(f, `^.*$`))
	if err != nil {
		f.Fatalf("Compile() = %v", err)
	}
	ref, err := tmpl.Render(fuzzProbe)
	if err != nil {
		f.Fatalf("Render(%q) = %v", fuzzProbe, err)
	}
	want := statements(f, ref.Policy)

	f.Fuzz(func(t *testing.T, tenant string) {
		r, err := tmpl.Render(tenant)
		if err != nil {
			if !errors.Is(err, policy.ErrInvalidTenant) {
				t.Fatalf("Render(%q) error = %v, want it to wrap ErrInvalidTenant", tenant, err)
			}
			return
		}
		if !json.Valid([]byte(r.Policy)) {
			t.Fatalf("Render(%q) policy is not valid JSON: %s", tenant, r.Policy)
		}
		got := statements(t, r.Policy)
		if len(got) != len(want) {
			t.Fatalf("Render(%q) has %d statements, want %d", tenant, len(got), len(want))
		}
		for i := range want {
			if got[i]["Effect"] != want[i]["Effect"] {
				t.Errorf("Render(%q) Statement[%d].Effect = %v, want %v", tenant, i, got[i]["Effect"], want[i]["Effect"])
			}
			if g, w := leaves(got[i]["Action"]), leaves(want[i]["Action"]); !slices.Equal(g, w) {
				t.Errorf("Render(%q) Statement[%d].Action = %q, want %q", tenant, i, g, w)
			}
			for _, field := range []string{"Resource", "NotResource", "Condition"} {
				g, w := leaves(got[i][field]), leaves(want[i][field])
				for j := range w {
					w[j] = strings.ReplaceAll(w[j], fuzzProbe, tenant)
				}
				if !slices.Equal(g, w) {
					t.Errorf("Render(%q) Statement[%d].%s = %q, want %q", tenant, i, field, g, w)
				}
			}
			if len(got[i]) != len(want[i]) {
				t.Errorf("Render(%q) Statement[%d] has %d fields, want %d", tenant, i, len(got[i]), len(want[i]))
			}
		}
		if len(r.Tags) != 1 || r.Tags[0].Value != tenant {
			t.Errorf("Render(%q) tags = %v, want TenantID=%s", tenant, r.Tags, tenant)
		}
	})
}

// statements decodes a rendered policy's Statement array.
func statements(t testing.TB, p string) []map[string]any {
	t.Helper()
	var doc struct{ Statement []map[string]any }
	if err := json.Unmarshal([]byte(p), &doc); err != nil {
		t.Fatalf("policy %s: %v", p, err)
	}
	return doc.Statement
}

// leaves flattens a decoded JSON value into "path=value" strings, in a
// stable order, so two values compare by shape and content.
func leaves(v any) []string {
	var out []string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				walk(path+"."+k, v[k])
			}
		case []any:
			for _, c := range v {
				walk(path+"[]", c)
			}
		case string:
			out = append(out, path+"="+v)
		case nil:
		default:
			out = append(out, path+"=?")
		}
	}
	walk("", v)
	return out
}

// FuzzRole renders a silo role for any tenant id and account attribute:
// whatever they hold, the result is an error, or the tenant's own role in
// the aws partition, in an account of 12 digits, named as configured.
func FuzzRole(f *testing.F) {
	for _, seed := range [][2]string{
		{"acme", "222233334444"}, {"*", "222233334444"}, {"acme", "*"}, {"acme", "222233334444:role/Admin"},
		{"acme", "222233334444/x"}, {"acme", ""}, {"a/b", "222233334444"}, {"acme", "２２２２３３３３４４４４"},
	} {
		f.Add(seed[0], seed[1])
	}
	role, err := policy.CompileRole(policy.RoleSpec{
		RoleARN: `arn:{{ .Partition }}:iam::{{ .Attr "account_id" }}:role/tenants/{{ .TenantID }}`, ExternalID: "{{ .TenantID }}-x",
		Partition: partition.AWS, Region: "us-east-1",
	}, mustTenantRule(f, `^[a-z0-9][a-z0-9_.@=+-]{0,63}$`)) // role names ignore case: so must the tenant ids in them
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tenant, account string) {
		if upper := strings.ToUpper(tenant); upper != tenant {
			if other, err := role.Render(upper, map[string]string{"account_id": account}); err == nil {
				t.Fatalf("Render(%q) = %q: a tenant id differing from %q only in case renders a role", upper, other.RoleARN, tenant)
			}
		}
		target, err := role.Render(tenant, map[string]string{"account_id": account})
		if err != nil {
			return
		}
		parsed, err := partition.AWS.ParseRoleARN(target.RoleARN)
		switch {
		case err != nil:
			t.Fatalf("Render(%q, %q) = %q, not a role ARN: %v", tenant, account, target.RoleARN, err)
		case parsed.Account != account || parsed.Path != "/tenants/" || parsed.Name != tenant:
			t.Fatalf("Render(%q, %q) = %q: another account, path or role than the tenant's", tenant, account, target.RoleARN)
		case target.ExternalID != tenant+"-x":
			t.Fatalf("Render(%q, %q) ExternalId %q", tenant, account, target.ExternalID)
		}
	})
}
