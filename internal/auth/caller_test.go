package auth_test

import (
	"testing"

	"github.com/tokenvendor/tokenvendor/internal/auth"
)

func TestLimitKeyKeepsIssuersAndClientsApart(t *testing.T) {
	keys := map[string]auth.Caller{
		"issuer a":          {Issuer: "https://a/", Subject: "svc"},
		"issuer b":          {Issuer: "https://b/", Subject: "svc"},
		"issuer b, client":  {Issuer: "https://b/", Subject: "svc", ClientID: "c"},
		"aws":               {Issuer: auth.IssuerAWSIAM, Subject: "svc"},
		"quoted issuer":     {Issuer: `a" "b`, Subject: "c"},
		"quoted subject":    {Issuer: "a", Subject: `b" "c`},
		"subject of spaces": {Issuer: "a b", Subject: "c"},
		"issuer of spaces":  {Issuer: "a", Subject: "b c"},
		"colon in subject":  {Issuer: "a", Subject: "1:b", ClientID: "c"},
		"colon in client":   {Issuer: "a", Subject: "1", ClientID: "b:c"},
		"empty subject":     {Issuer: "a", Subject: "", ClientID: "1:b"},
		"aws role a":        {Issuer: auth.IssuerAWSIAM, Subject: "arn:aws:sts::1:assumed-role/a/s", ClientID: "arn:aws:iam::1:role/a"},
		"aws role b":        {Issuer: auth.IssuerAWSIAM, Subject: "arn:aws:sts::1:assumed-role/b/s", ClientID: "arn:aws:iam::1:role/b"},
	}
	seen := map[string]string{}
	for name, c := range keys {
		k := c.LimitKey()
		if other, dup := seen[k]; dup {
			t.Errorf("%s and %s share the limit key %q", name, other, k)
		}
		seen[k] = name
	}
	// Every session of one role shares the role's budget: a caller that
	// may assume the role cannot mint budgets by naming sessions.
	s1 := auth.Caller{Issuer: auth.IssuerAWSIAM, Subject: "arn:aws:sts::1:assumed-role/a/task-1", ClientID: "arn:aws:iam::1:role/a"}
	s2 := auth.Caller{Issuer: auth.IssuerAWSIAM, Subject: "arn:aws:sts::1:assumed-role/a/task-2", ClientID: "arn:aws:iam::1:role/a"}
	if s1.LimitKey() != s2.LimitKey() {
		t.Error("two sessions of one role have two budgets")
	}
	if (auth.Caller{Issuer: "i", Subject: "s", TenantID: "acme"}).LimitKey() != (auth.Caller{Issuer: "i", Subject: "s", TenantID: "globex"}).LimitKey() {
		t.Error("the tenant changes the caller's limit key: one caller would get a budget per tenant")
	}
}

// TestARemovedKeyIsRefusedFromTheNextRefresh: a key the identity provider
// stops publishing is accepted until the next scheduled refresh of the key
// set, which no token has to trigger, and refused from then on, even for a
// token verified before. Time is synctest's: the refresh comes exactly
// when it is due, however loaded the machine.
