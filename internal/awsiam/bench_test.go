package awsiam_test

import (
	"context"
	"testing"
)

// BenchmarkVerifyRemembered is the cost of a signed request presented again
// within cache_ttl: parsed and checked, answered from the cache, no STS call.
func BenchmarkVerifyRemembered(b *testing.B) {
	sts, clk, v, _ := setup(b, nil)
	signed := sign(b, sts.URL, ordersKey, serverID, clk.Now())
	if _, err := v.Verify(context.Background(), signed); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := v.Verify(context.Background(), signed); err != nil {
			b.Fatal(err)
		}
	}
	if len(sts.Received()) != 1 {
		b.Fatalf("%d STS calls, want 1", len(sts.Received()))
	}
}
