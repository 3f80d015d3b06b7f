package policy_test

import (
	"errors"
	"testing"

	"github.com/tokenvendor/tokenvendor/internal/policy"
)

func TestCompileKey(t *testing.T) {
	for _, tc := range []struct {
		text, tenant, want string
		err                error
	}{
		{text: "{{ .TenantID }}/canary", tenant: "acme", want: "acme/canary"},
		{text: "TENANT#{{ .TenantID }}", tenant: "acme", want: "TENANT#acme"},
		{text: "CANARY", tenant: "acme", want: "CANARY", err: policy.ErrKeyWithoutTenant},
	} {
		k, err := policy.CompileKey(tc.text)
		if !errors.Is(err, tc.err) {
			t.Fatalf("CompileKey(%q) = %v, want %v", tc.text, err, tc.err)
		}
		if got, err := k.Render(tc.tenant); err != nil || got != tc.want {
			t.Fatalf("Render(%q) of %q = %q, %v; want %q", tc.tenant, tc.text, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "{{ .Nope }}", "{{ .TenantID"} {
		if _, err := policy.CompileKey(bad); err == nil || errors.Is(err, policy.ErrKeyWithoutTenant) {
			t.Errorf("CompileKey(%q) = %v, want an error", bad, err)
		}
	}
}
