package awsiam_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/clock"
)

// BenchmarkVerifyRemembered is the cost of a signed request presented again
// within cache_ttl: parsed and checked, answered from the cache, no STS call.
func BenchmarkVerifyRemembered(b *testing.B) {
	sts := newFakeSTS(b)
	clk := clock.NewFake(time.Now())
	v, _ := newVerifier(b, sts, clk, nil)
	sts.arns["ASIAORDERS0000001"] = "arn:aws:sts::" + account + ":assumed-role/orders-api/task-1"
	signed := sign(b, sts.URL, "ASIAORDERS0000001", serverID, clk.Now())
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
	if sts.calls() != 1 {
		b.Fatalf("%d STS calls, want 1", sts.calls())
	}
}
