package vend_test

import (
	"context"
	"errors"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/cache"
	"github.com/tokenvendor/tokenvendor/internal/clock"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

// swappingTier is a broken shared tier: whatever key it is asked for, it
// answers with another tenant's credentials.
type swappingTier struct{ now func() time.Time }

func (s swappingTier) Acquire(context.Context, cache.Key, cache.Query) cache.Acquired[vend.Credentials] {
	c := vend.Credentials{AccessKeyID: "ASIAGLOBEX", SecretAccessKey: "globex-secret", SessionToken: "globex-token",
		Expiration: s.now().Add(time.Hour), TenantID: "globex", Profile: "objects"}
	return cache.Acquired[vend.Credentials]{Stored: cache.Stored[vend.Credentials]{Value: c, Fetched: s.now(), Expires: c.Expiration}}
}

func (swappingTier) Watch(cache.Key) (<-chan struct{}, func()) { return nil, func() {} }

func TestAnotherTenantsCredentialsFromTheSharedTierAreNeverServed(t *testing.T) {
	fake := &testsupport.FakeSTS{}
	s := newService(t, fake, func(c *vend.Config) { c.Shared = swappingTier{now: time.Now} })
	for range 2 {
		g, err := s.Vend(context.Background(), auth.Caller{Subject: "svc-acme", TenantID: "acme"}, vend.Request{})
		if err == nil || g.AccessKeyID != "" {
			t.Fatalf("Vend(acme) = %s, %v; want an error and no credentials", g.AccessKeyID, err)
		}
		for _, sentinel := range []error{vend.ErrForbidden, vend.ErrUpstream, vend.ErrUpstreamUnavailable} {
			if errors.Is(err, sentinel) {
				t.Fatalf("err = %v: a broken tier is an internal error, not %v", err, sentinel)
			}
		}
	}
}

// failedTier says another replica's AssumeRole for every key just failed.
type failedTier struct{ recoverable bool }

func (f failedTier) Acquire(context.Context, cache.Key, cache.Query) cache.Acquired[vend.Credentials] {
	return cache.Acquired[vend.Credentials]{Stored: cache.Stored[vend.Credentials]{Failure: &cache.Failure{Recoverable: f.recoverable}}}
}

func (failedTier) Watch(cache.Key) (<-chan struct{}, func()) { return nil, func() {} }

func TestAnotherReplicasFailureMapsToTheSentinelItsOwnWould(t *testing.T) {
	for _, tc := range []struct {
		recoverable bool
		want        error
	}{
		{recoverable: true, want: vend.ErrUpstreamUnavailable},
		{recoverable: false, want: vend.ErrUpstream},
	} {
		fake := &testsupport.FakeSTS{}
		s := newService(t, fake, func(c *vend.Config) { c.Shared = failedTier{recoverable: tc.recoverable} })
		_, err := s.Vend(context.Background(), auth.Caller{Subject: "svc-acme", TenantID: "acme"}, vend.Request{})
		if !errors.Is(err, tc.want) {
			t.Errorf("recoverable %v: err = %v, want %v", tc.recoverable, err, tc.want)
		}
		if fake.Calls() != 0 {
			t.Errorf("recoverable %v: %d AssumeRole calls, want 0: the failure elsewhere was repeated", tc.recoverable, fake.Calls())
		}
	}
}

func TestARefreshAheadHasATraceOfItsOwnLinkedToTheHit(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	clk := clock.NewFake(time.Now())
	fake := &testsupport.FakeSTS{}
	s := newService(t, fake, func(c *vend.Config) {
		c.TracerProvider = tp
		c.Now = clk.Now
		c.Cache.Now = clk.Now
		c.Cache.Rand = func() float64 { return 0 }
	})
	fake.Now = clk.Now
	caller := auth.Caller{Subject: "svc-acme", TenantID: "acme"}
	if _, err := s.Vend(context.Background(), caller, vend.Request{}); err != nil {
		t.Fatal(err)
	}
	clk.Add(31 * time.Minute) // past half the lifetime: the next hit refreshes ahead
	exp.Reset()
	ctx, hit := tp.Tracer("test").Start(context.Background(), "request")
	if _, err := s.Vend(ctx, caller, vend.Request{}); err != nil {
		t.Fatal(err)
	}
	hit.End()
	s.Wait()
	spans := exp.GetSpans()
	var refresh, sts tracetest.SpanStub
	for _, sp := range spans {
		switch sp.Name {
		case "cache.refresh":
			refresh = sp
		case "sts.AssumeRole":
			sts = sp
		}
	}
	if refresh.Name == "" || sts.Name == "" {
		t.Fatalf("spans %v: want a cache.refresh with the STS call under it", spanNames(spans))
	}
	if refresh.SpanContext.TraceID() == hit.SpanContext().TraceID() || refresh.Parent.IsValid() {
		t.Error("the refresh is in the hit's trace: it outlives the request")
	}
	if len(refresh.Links) != 1 || refresh.Links[0].SpanContext.TraceID() != hit.SpanContext().TraceID() {
		t.Error("the refresh does not link to the hit that started it")
	}
	if sts.Parent.SpanID() != refresh.SpanContext.SpanID() {
		t.Error("the STS call is not under the refresh")
	}
}

func spanNames(spans tracetest.SpanStubs) []string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name)
	}
	return n
}
