package jwks_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/clock"
	"github.com/tokenvendor/tokenvendor/internal/jwks"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// FuzzVerify feeds the verifier arbitrary tokens. It must never panic, every
// refusal must be an authentication error, and anything it accepts must carry
// exactly the claims the test's key signed.
func FuzzVerify(f *testing.F) {
	idp := testsupport.NewIdP(f)
	clk := clock.NewFake(time.Now())
	v, _ := newVerifier(f, idp, clk, func(c *jwks.Config) { c.VerifiedCacheSize = -1 })
	signed := idp.Mint(idp.Key("rsa-1"), testsupport.Claims(clk.Now(), "svc-fuzz", "acme"))
	f.Add(signed)
	f.Add(idp.Mint(idp.Key("ec-1"), testsupport.Claims(clk.Now(), "svc-fuzz", "acme")))
	f.Add(idp.Unsigned("rsa-1", testsupport.Claims(clk.Now(), "svc-fuzz", "acme")))
	f.Add(idp.HMACWithPublicKey(idp.Key("rsa-1"), testsupport.Claims(clk.Now(), "svc-fuzz", "acme")))
	f.Add(idp.MintAs(idp.Key("rsa-1"), "rsa-1", jwa.PS256, testsupport.Claims(clk.Now(), "svc-fuzz", "acme")))
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, token string) {
		caller, err := v.Verify(context.Background(), token)
		if err != nil {
			if !errors.Is(err, auth.ErrUnauthenticated) && !errors.Is(err, auth.ErrJWKSUnavailable) {
				t.Fatalf("refusal is not an authentication error: %v", err)
			}
			return
		}
		if caller.Subject != "svc-fuzz" || caller.TenantID != "acme" {
			t.Fatalf("accepted a token the test never signed: %+v", caller)
		}
	})
}
