package auth_test

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/clock"
	"github.com/tokenvendor/tokenvendor/internal/metrictest"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/internal/tlsconfig/tlstest"
)

func TestTokenTypeIsCheckedWhenConfigured(t *testing.T) {
	idp := testsupport.NewIdP(t)
	clk := clock.NewFake(time.Now())
	strict, reg := newVerifier(t, idp, clk, func(c *auth.Config) { c.TokenType = "at+jwt" })
	lax, _ := newVerifier(t, idp, clk, nil)
	for typ, ok := range map[string]bool{"at+jwt": true, "application/at+jwt": true, "AT+JWT": true, "JWT": false, "": false, "at+jwt2": false} {
		tok := idp.MintTyped(idp.Key("rsa-1"), typ, testsupport.Claims(clk.Now(), "svc", "acme"))
		before := failures(t, reg, "type")
		_, err := strict.Verify(context.Background(), tok)
		if ok != (err == nil) {
			t.Errorf("typ %q with token_type at+jwt: err = %v", typ, err)
		}
		if !ok && failures(t, reg, "type")-before != 1 {
			t.Errorf("typ %q: failures{reason=type} did not grow", typ)
		}
		if _, err := lax.Verify(context.Background(), tok); err != nil {
			t.Errorf("typ %q without token_type: %v", typ, err)
		}
	}
}

func TestCertificateBoundTokens(t *testing.T) {
	idp := testsupport.NewIdP(t)
	clk := clock.NewFake(time.Now())
	v, reg := newVerifier(t, idp, clk, nil)
	ca := tlstest.NewCA(t, "clients")
	_, _, pairA := ca.Issue(1, "svc-a")
	_, _, pairB := ca.Issue(2, "svc-b")
	certA, _ := x509.ParseCertificate(pairA.Certificate[0])
	certB, _ := x509.ParseCertificate(pairB.Certificate[0])
	claims := testsupport.Claims(clk.Now(), "svc-a", "acme")
	claims["cnf"] = map[string]any{"x5t#S256": auth.Thumbprint(certA)}
	bound := idp.Mint(idp.Key("rsa-1"), claims)

	if _, err := v.VerifyFrom(context.Background(), bound, certA); err != nil {
		t.Fatalf("bound token over its certificate: %v", err)
	}
	// Checked on every request: the token is remembered now, and still
	// refused over another connection's certificate.
	for name, cert := range map[string]*x509.Certificate{"another certificate": certB, "no certificate": nil} {
		before := failures(t, reg, "certificate")
		if _, err := v.VerifyFrom(context.Background(), bound, cert); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("bound token over %s: err = %v", name, err)
		}
		if failures(t, reg, "certificate")-before != 1 {
			t.Errorf("%s: failures{reason=certificate} did not grow", name)
		}
	}

	unbound := idp.Mint(idp.Key("rsa-1"), testsupport.Claims(clk.Now(), "svc-a", "acme"))
	if _, err := v.VerifyFrom(context.Background(), unbound, certB); err != nil {
		t.Errorf("unbound token without require_bound_tokens: %v", err)
	}
	requiring, reg2 := newVerifier(t, idp, clk, func(c *auth.Config) { c.RequireBoundTokens = true })
	if _, err := requiring.VerifyFrom(context.Background(), unbound, certA); !errors.Is(err, auth.ErrUnauthenticated) || failures(t, reg2, "unbound") != 1 {
		t.Errorf("unbound token with require_bound_tokens: err = %v", err)
	}
	if _, err := requiring.VerifyFrom(context.Background(), bound, certA); err != nil {
		t.Errorf("bound token with require_bound_tokens: %v", err)
	}

	// A binding the service cannot honour is not ignored.
	for name, cnf := range map[string]any{
		"a string":            "x",
		"a key binding (jkt)": map[string]any{"jkt": auth.Thumbprint(certA)},
		"a short thumbprint":  map[string]any{"x5t#S256": "abc"},
		"thumbprint and more": map[string]any{"x5t#S256": auth.Thumbprint(certA), "jkt": "x"},
		"a thumbprint number": map[string]any{"x5t#S256": 42},
	} {
		c := testsupport.Claims(clk.Now(), "svc-a", "acme")
		c["cnf"] = cnf
		if _, err := v.VerifyFrom(context.Background(), idp.Mint(idp.Key("rsa-1"), c), certA); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("cnf %s: err = %v", name, err)
		}
	}
}

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
func TestARemovedKeyIsRefusedFromTheNextRefresh(t *testing.T) {
	idp := testsupport.NewIdP(t) // its TLS server stays outside the bubble; the verifier reaches it in process
	synctest.Test(t, func(t *testing.T) {
		const refresh = time.Minute
		clk := clock.NewFake(time.Now())
		v, reg := newVerifier(t, idp, clk, func(c *auth.Config) {
			c.RefreshInterval = refresh
			c.HTTPClient = testsupport.HandlerClient(idp.Server.Config.Handler)
		})
		refreshes := func() float64 {
			return metrictest.Counter(t, reg, "tokenvendor_jwks_refreshes_total", "outcome", "success")
		}
		tok := idp.Mint(idp.Key("rsa-1"), testsupport.Claims(clk.Now(), "svc", "acme"))
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		idp.Retire("rsa-1")

		time.Sleep(refresh - time.Nanosecond)
		synctest.Wait()
		if _, err := v.Verify(context.Background(), tok); err != nil || refreshes() != 1 {
			t.Fatalf("before the refresh is due: %v after %v fetches; want the key still known, from the first fetch alone", err, refreshes())
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait() // the refresh is done
		if n := refreshes(); n != 2 {
			t.Fatalf("%v fetches once the refresh was due, want 2", n)
		}
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("after the refresh: %v, want the removed key's token refused", err)
		}
	})
}
