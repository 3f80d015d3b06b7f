package jwks_test

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/clock"
	"github.com/tokenvendor/tokenvendor/internal/jwks"
	"github.com/tokenvendor/tokenvendor/internal/metrictest"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/internal/tlsconfig/tlstest"
)

func TestTokenTypeIsCheckedWhenConfigured(t *testing.T) {
	idp := testsupport.NewIdP(t)
	clk := clock.NewFake(time.Now())
	strict, reg := newVerifier(t, idp, clk, func(c *jwks.Config) { c.TokenType = "at+jwt" })
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
	claims["cnf"] = map[string]any{"x5t#S256": jwks.Thumbprint(certA)}
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
	requiring, reg2 := newVerifier(t, idp, clk, func(c *jwks.Config) { c.RequireBoundTokens = true })
	if _, err := requiring.VerifyFrom(context.Background(), unbound, certA); !errors.Is(err, auth.ErrUnauthenticated) || failures(t, reg2, "unbound") != 1 {
		t.Errorf("unbound token with require_bound_tokens: err = %v", err)
	}
	if _, err := requiring.VerifyFrom(context.Background(), bound, certA); err != nil {
		t.Errorf("bound token with require_bound_tokens: %v", err)
	}

	// A binding the service cannot honour is not ignored.
	for name, cnf := range map[string]any{
		"a string":            "x",
		"a key binding (jkt)": map[string]any{"jkt": jwks.Thumbprint(certA)},
		"a short thumbprint":  map[string]any{"x5t#S256": "abc"},
		"thumbprint and more": map[string]any{"x5t#S256": jwks.Thumbprint(certA), "jkt": "x"},
		"a thumbprint number": map[string]any{"x5t#S256": 42},
	} {
		c := testsupport.Claims(clk.Now(), "svc-a", "acme")
		c["cnf"] = cnf
		if _, err := v.VerifyFrom(context.Background(), idp.Mint(idp.Key("rsa-1"), c), certA); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("cnf %s: err = %v", name, err)
		}
	}
}

func TestARemovedKeyIsRefusedFromTheNextRefresh(t *testing.T) {
	idp := testsupport.NewIdP(t) // its TLS server stays outside the bubble; the verifier reaches it in process
	synctest.Test(t, func(t *testing.T) {
		const refresh = time.Minute
		clk := clock.NewFake(time.Now())
		v, reg := newVerifier(t, idp, clk, func(c *jwks.Config) {
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
