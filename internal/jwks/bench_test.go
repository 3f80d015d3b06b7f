package jwks_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/clock"
	"github.com/tokenvendor/tokenvendor/internal/jwks"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// BenchmarkVerify checks one token over and over: "remembered" answers
// from the verified-token cache, "signature" checks the signature each time.
func BenchmarkVerify(b *testing.B) {
	for _, bench := range []struct {
		name, kid string
		cacheSize int
	}{{"remembered/rsa", "rsa-1", 0}, {"signature/rsa", "rsa-1", -1}, {"signature/ec", "ec-1", -1}} {
		b.Run(bench.name, func(b *testing.B) {
			idp := testsupport.NewIdP(b)
			clk := clock.NewFake(time.Now())
			v, _ := newVerifier(b, idp, clk, func(c *jwks.Config) { c.VerifiedCacheSize = bench.cacheSize })
			kid := bench.kid
			tok := idp.Mint(idp.Key(kid), testsupport.Claims(clk.Now(), "svc", "acme"))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(context.Background(), tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
