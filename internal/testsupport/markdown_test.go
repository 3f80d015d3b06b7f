package testsupport

import (
	"reflect"
	"testing"
)

func TestHeadingAnchorsFollowGitHub(t *testing.T) {
	for text, want := range map[string]string{
		"Pool, bridge and silo: a role or an account per tenant": "pool-bridge-and-silo-a-role-or-an-account-per-tenant",
		"Callers without an identity provider (AWS IAM)":         "callers-without-an-identity-provider-aws-iam",
		"`credential_process`":                                   "credential_process",
		"Storms: sharing that holds when it matters most":        "storms-sharing-that-holds-when-it-matters-most",
	} {
		if got := HeadingAnchor(text); got != want {
			t.Errorf("HeadingAnchor(%q) = %q, want %q", text, got, want)
		}
	}
	got := HeadingAnchors("# A\n\n```\n# not a heading\n```\n\n## A\n\n#hashtag\n")
	want := map[string]bool{"a": true, "a-1": true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("HeadingAnchors = %v, want %v", got, want)
	}
}
