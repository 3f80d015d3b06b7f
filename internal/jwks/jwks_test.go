package jwks_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/clock"
	"github.com/tokenvendor/tokenvendor/internal/jwks"
	"github.com/tokenvendor/tokenvendor/internal/metrictest"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

func newVerifier(t testing.TB, idp *testsupport.IdP, clk *clock.Fake, mutate func(*jwks.Config)) (*jwks.Verifier, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := jwks.Config{
		Issuer:     testsupport.Issuer,
		JWKSURL:    idp.JWKSURL(),
		Audiences:  []string{testsupport.Audience},
		Algorithms: []string{"RS256", "ES256"},
		HTTPClient: idp.Client(),
		Now:        clk.Now,
		Registerer: reg,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := jwks.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return v, reg
}

func TestVerifyAcceptsValidTokens(t *testing.T) {
	idp := testsupport.NewIdP(t)
	clk := clock.NewFake(time.Now())
	v, _ := newVerifier(t, idp, clk, nil)

	for _, kid := range []string{"rsa-1", "ec-1"} {
		claims := testsupport.Claims(clk.Now(), "svc-orders", "acme")
		claims["scope"] = "read tokenvendor:any-tenant"
		caller, err := v.Verify(context.Background(), idp.Mint(idp.Key(kid), claims))
		if err != nil {
			t.Fatalf("%s: %v", kid, err)
		}
		if caller.Subject != "svc-orders" || caller.TenantID != "acme" || !caller.HasScope("tokenvendor:any-tenant") {
			t.Errorf("%s: caller = %+v", kid, caller)
		}
	}
}

func TestVerifyRefusesForgedAndConfusedTokens(t *testing.T) {
	idp := testsupport.NewIdP(t)
	clk := clock.NewFake(time.Now())
	v, reg := newVerifier(t, idp, clk, func(c *jwks.Config) { c.Algorithms = []string{"RS256", "ES256"} })
	rsaKey := idp.Key("rsa-1")
	other := idp.NewKey("rsa-1", jwa.RS256) // same kid, unpublished key
	valid := func() map[string]any { return testsupport.Claims(clk.Now(), "svc", "acme") }
	with := func(mutate func(map[string]any)) map[string]any {
		c := valid()
		mutate(c)
		return c
	}

	tests := []struct {
		name   string
		token  string
		reason string
	}{
		{name: "no token", token: "", reason: "missing"},
		{name: "garbage", token: "not-a-jwt", reason: "malformed"},
		{name: "three garbage parts", token: "a.b.c", reason: "malformed"},
		{name: "alg none", token: idp.Unsigned("rsa-1", valid()), reason: "algorithm"},
		{name: "HS256 signed with the RSA public key", token: idp.HMACWithPublicKey(rsaKey, valid()), reason: "algorithm"},
		{name: "expired", token: idp.Mint(rsaKey, with(func(c map[string]any) { c["exp"] = clk.Now().Add(-2 * time.Minute).Unix() })), reason: "expired"},
		{name: "no exp", token: idp.Mint(rsaKey, with(func(c map[string]any) { delete(c, "exp") })), reason: "claims"},
		{name: "not yet valid", token: idp.Mint(rsaKey, with(func(c map[string]any) { c["nbf"] = clk.Now().Add(5 * time.Minute).Unix() })), reason: "not_yet_valid"},
		{name: "wrong iss", token: idp.Mint(rsaKey, with(func(c map[string]any) { c["iss"] = "https://evil.test/" })), reason: "issuer"},
		{name: "no iss", token: idp.Mint(rsaKey, with(func(c map[string]any) { delete(c, "iss") })), reason: "issuer"},
		{name: "wrong aud", token: idp.Mint(rsaKey, with(func(c map[string]any) { c["aud"] = "someone-else" })), reason: "audience"},
		{name: "no aud", token: idp.Mint(rsaKey, with(func(c map[string]any) { delete(c, "aud") })), reason: "audience"},
		{name: "unknown kid", token: idp.Mint(idp.NewKey("nobody", jwa.RS256), valid()), reason: "unknown_kid"},
		{name: "no kid", token: idp.MintAs(rsaKey, "", jwa.RS256, valid()), reason: "unknown_kid"},
		{name: "known kid signed by another key", token: idp.Mint(other, valid()), reason: "signature"},
		{name: "tampered signature", token: testsupport.Tamper(idp.Mint(rsaKey, valid())), reason: "signature"},
		{name: "tampered payload", token: swapPayload(idp.Mint(rsaKey, valid()), idp.Mint(rsaKey, with(func(c map[string]any) { c["tenant_id"] = "globex" }))), reason: "signature"},
		{name: "algorithm outside the allow-list", token: idp.MintAs(rsaKey, "rsa-1", jwa.PS256, valid()), reason: "algorithm"},
		{name: "RS256 header on the EC key", token: idp.MintAs(rsaKey, "ec-1", jwa.RS256, valid()), reason: "algorithm"},
		{name: "over 16 KiB", token: idp.Mint(rsaKey, with(func(c map[string]any) { c["pad"] = strings.Repeat("x", 17<<10) })), reason: "too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := failures(t, reg, tt.reason)
			_, err := v.Verify(context.Background(), tt.token)
			if !errors.Is(err, auth.ErrUnauthenticated) {
				t.Fatalf("err = %v, want ErrUnauthenticated", err)
			}
			if tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Error("error text contains the token")
			}
			if got := failures(t, reg, tt.reason) - before; got != 1 {
				t.Errorf("failures{reason=%q} grew by %v, want 1 (err %v)", tt.reason, got, err)
			}
		})
	}
}

func TestVerifyRefusesAnAlgorithmTheKeyDoesNotDeclare(t *testing.T) {
	idp := testsupport.NewIdP(t)
	clk := clock.NewFake(time.Now())
	v, _ := newVerifier(t, idp, clk, func(c *jwks.Config) { c.Algorithms = []string{"RS256", "RS512"} })
	// rsa-1 is published with alg RS256; an RS512 signature by the same key
	// is refused although RS512 is on the allow-list.
	tok := idp.MintAs(idp.Key("rsa-1"), "rsa-1", jwa.RS512, testsupport.Claims(clk.Now(), "svc", "acme"))
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("err = %v", err)
	}
}

func TestVerifyAllowsLeewayOnExpiry(t *testing.T) {
	idp := testsupport.NewIdP(t)
	clk := clock.NewFake(time.Now())
	v, _ := newVerifier(t, idp, clk, func(c *jwks.Config) { c.Leeway = 30 * time.Second })
	claims := testsupport.Claims(clk.Now(), "svc", "acme")
	claims["exp"] = clk.Now().Add(-20 * time.Second).Unix()
	tok := idp.Mint(idp.Key("rsa-1"), claims)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("20 s past exp with 30 s leeway: %v", err)
	}
	clk.Add(15 * time.Second)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("35 s past exp: err = %v", err)
	}
}

func TestTenantClaim(t *testing.T) {
	tests := []struct {
		name  string
		path  string
		claim func(map[string]any)
		want  string
	}{
		{name: "top level string", path: "tenant_id", claim: func(c map[string]any) { c["tenant_id"] = "acme" }, want: "acme"},
		{name: "nested path", path: "org.tenant", claim: func(c map[string]any) { c["org"] = map[string]any{"tenant": "acme"} }, want: "acme"},
		{name: "number is not a tenant", path: "tenant_id", claim: func(c map[string]any) { c["tenant_id"] = 42 }, want: ""},
		{name: "array is not a tenant", path: "tenant_id", claim: func(c map[string]any) { c["tenant_id"] = []string{"acme"} }, want: ""},
		{name: "missing", path: "tenant_id", claim: func(map[string]any) {}, want: ""},
		{name: "path through a string", path: "tenant_id.x", claim: func(c map[string]any) { c["tenant_id"] = "acme" }, want: ""},
		{name: "Kubernetes namespace, a claim name with a dot", path: "kubernetes.io.namespace", claim: func(c map[string]any) {
			c["kubernetes.io"] = map[string]any{"namespace": "acme", "serviceaccount": map[string]any{"name": "app"}}
		}, want: "acme"},
		{name: "dotted name at the top", path: "tenant.id", claim: func(c map[string]any) { c["tenant.id"] = "acme" }, want: "acme"},
	}
	idp := testsupport.NewIdP(t)
	clk := clock.NewFake(time.Now())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := newVerifier(t, idp, clk, func(c *jwks.Config) { c.TenantClaim = tt.path })
			claims := testsupport.Claims(clk.Now(), "svc", "")
			tt.claim(claims)
			caller, err := v.Verify(context.Background(), idp.Mint(idp.Key("rsa-1"), claims))
			if err != nil {
				t.Fatal(err)
			}
			if caller.TenantID != tt.want {
				t.Errorf("TenantID = %q, want %q", caller.TenantID, tt.want)
			}
		})
	}
}

func TestScopesFromScopeAndScp(t *testing.T) {
	idp := testsupport.NewIdP(t)
	clk := clock.NewFake(time.Now())
	v, _ := newVerifier(t, idp, clk, nil)
	claims := testsupport.Claims(clk.Now(), "svc", "acme")
	claims["scope"] = "a b"
	claims["scp"] = []string{"c"}
	caller, err := v.Verify(context.Background(), idp.Mint(idp.Key("rsa-1"), claims))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a", "b", "c"} {
		if !caller.HasScope(s) {
			t.Errorf("scope %q missing from %v", s, caller.Scopes)
		}
	}
}

func TestUnknownKIDRefetchIsRateLimitedAndPicksUpNewKeys(t *testing.T) {
	idp := testsupport.NewIdP(t)
	clk := clock.NewFake(time.Now())
	v, reg := newVerifier(t, idp, clk, func(c *jwks.Config) { c.UnknownKIDInterval = 10 * time.Second })
	start := idp.Fetches()

	// A flood of bogus kids, concurrently: at most one re-fetch.
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bogus := idp.NewKey(fmt.Sprintf("bogus-%d", i%4), jwa.ES256)
			_, _ = v.Verify(context.Background(), idp.Mint(bogus, testsupport.Claims(clk.Now(), "svc", "acme")))
		}()
	}
	wg.Wait()
	if got := idp.Fetches() - start; got > 1 {
		t.Fatalf("200 unknown-kid tokens made %d key set fetches, want at most 1", got)
	}

	// A key published now is found once the interval has passed.
	fresh := idp.NewKey("rsa-2", jwa.RS256)
	idp.Publish(fresh)
	tok := idp.Mint(fresh, testsupport.Claims(clk.Now(), "svc", "acme"))
	clk.Add(11 * time.Second)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("new key after interval: %v", err)
	}
	if got := metrictest.Counter(t, reg, "tokenvendor_jwks_refreshes_total", "outcome", "success"); got < 2 {
		t.Errorf("jwks refreshes{success} = %v, want >= 2", got)
	}
}

func TestNewRefusesUnsafeConfig(t *testing.T) {
	base := jwks.Config{Issuer: "https://idp/", JWKSURL: "https://idp/jwks", Audiences: []string{"a"}, Algorithms: []string{"RS256"}}
	tests := []struct {
		name   string
		mutate func(*jwks.Config)
	}{
		{name: "alg none", mutate: func(c *jwks.Config) { c.Algorithms = []string{"none"} }},
		{name: "HS256", mutate: func(c *jwks.Config) { c.Algorithms = []string{"HS256"} }},
		{name: "no algorithms", mutate: func(c *jwks.Config) { c.Algorithms = nil }},
		{name: "no issuer", mutate: func(c *jwks.Config) { c.Issuer = "" }},
		{name: "no audience", mutate: func(c *jwks.Config) { c.Audiences = nil }},
		{name: "leeway over 60s", mutate: func(c *jwks.Config) { c.Leeway = 61 * time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.mutate(&cfg)
			if _, err := jwks.New(cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func failures(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	return metrictest.Counter(t, reg, "tokenvendor_auth_failures_total", "reason", reason)
}

// swapPayload puts b's payload under a's header and signature.
func swapPayload(a, b string) string {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	return pa[0] + "." + pb[1] + "." + pa[2]
}

func TestRememberedTokenIsRefusedOnceItsKeyIsRetired(t *testing.T) {
	idp := testsupport.NewIdP(t)
	clk := clock.NewFake(time.Now())
	v, _ := newVerifier(t, idp, clk, func(c *jwks.Config) { c.UnknownKIDInterval = time.Second })
	tok := idp.Mint(idp.Key("rsa-1"), testsupport.Claims(clk.Now(), "svc", "acme"))
	for range 2 { // verified, then remembered
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	idp.Retire("rsa-1")
	// A token with an unknown kid makes the verifier fetch the key set anew.
	clk.Add(2 * time.Second)
	_, _ = v.Verify(context.Background(), idp.Mint(idp.NewKey("other", jwa.RS256), testsupport.Claims(clk.Now(), "svc", "acme")))
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("token of a retired key: err = %v", err)
	}
}

func TestRememberedTokenIsRefusedAfterItExpires(t *testing.T) {
	idp := testsupport.NewIdP(t)
	clk := clock.NewFake(time.Now())
	v, _ := newVerifier(t, idp, clk, nil)
	claims := testsupport.Claims(clk.Now(), "svc", "acme")
	claims["exp"] = clk.Now().Add(time.Minute).Unix()
	tok := idp.Mint(idp.Key("rsa-1"), claims)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute + jwks.DefaultLeeway + time.Second)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("expired remembered token: err = %v", err)
	}
}

func TestKnownKeysAreNotStalledByASlowKeySetFetch(t *testing.T) {
	idp := testsupport.NewIdP(t)
	clk := clock.NewFake(time.Now())
	v, _ := newVerifier(t, idp, clk, func(c *jwks.Config) { c.VerifiedCacheSize = -1 })
	release := idp.Hold()
	defer release()
	// A token with an unknown kid starts a fetch that hangs.
	go func() {
		_, _ = v.Verify(context.Background(), idp.Mint(idp.NewKey("ghost", jwa.RS256), testsupport.Claims(clk.Now(), "svc", "acme")))
	}()
	testsupport.Eventually(t, 5*time.Second, func() error {
		if n := idp.Fetches(); n < 2 { // the initial fetch, then the hanging one
			return fmt.Errorf("%d key set fetches, want the initial one and the hanging one", n)
		}
		return nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), idp.Mint(idp.Key("rsa-1"), testsupport.Claims(clk.Now(), "svc", "acme")))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a token of a known key waited on the key set fetch")
	}
}

func TestIdentityProviderDownAtStartRecoversWithoutRestart(t *testing.T) {
	idp := testsupport.NewIdP(t)
	idp.SetDown(true)
	clk := clock.NewFake(time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := jwks.New(jwks.Config{
		Issuer: testsupport.Issuer, JWKSURL: idp.JWKSURL(), Audiences: []string{testsupport.Audience},
		Algorithms: []string{"RS256"}, HTTPClient: idp.Client(), Now: clk.Now, UnknownKIDInterval: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Start(ctx); err == nil || v.Ready() {
		t.Fatalf("Start = %v, Ready = %v with the provider down", err, v.Ready())
	}
	tok := idp.Mint(idp.Key("rsa-1"), testsupport.Claims(clk.Now(), "svc", "acme"))
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, auth.ErrJWKSUnavailable) {
		t.Fatalf("err = %v, want ErrJWKSUnavailable", err)
	}
	idp.SetDown(false)
	clk.Add(2 * time.Second)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after the provider came back: %v", err)
	}
	if !v.Ready() {
		t.Fatal("not ready after a successful fetch")
	}
}

func TestANestedTokenInsideTheSignedPayloadIsRefused(t *testing.T) {
	idp := testsupport.NewIdP(t)
	clk := clock.NewFake(time.Now())
	v, _ := newVerifier(t, idp, clk, nil)
	inner := idp.Unsigned("rsa-1", testsupport.Claims(clk.Now(), "svc", "globex"))
	outer := idp.MintPayload(idp.Key("rsa-1"), []byte(inner))
	if _, err := v.Verify(context.Background(), outer); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("err = %v: an unverified inner token was accepted", err)
	}
}
