package api_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenvendor/tokenvendor/internal/api"
	"github.com/tokenvendor/tokenvendor/internal/audit"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

// BenchmarkCredentialsHit is POST /credentials answered from the cache: the
// JWT verified, the policy rendered, the cache hit, the response written.
// The audit log is on, writing to io.Discard as a file would be written to.
func BenchmarkCredentialsHit(b *testing.B) {
	benchmarkHit(b, nil)
}

// BenchmarkCredentialsHitTraced is BenchmarkCredentialsHit with every
// request traced and its spans batched to an exporter that drops them.
func BenchmarkCredentialsHitTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	benchmarkHit(b, tp)
}

type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

func benchmarkHit(b *testing.B, tp trace.TracerProvider) {
	e := newEnvWith(b, func(_ *vend.Config, a *api.Config) {
		a.Auditor = audit.New(io.Discard)
		a.TracerProvider = tp
	})
	tok := e.token("acme")
	warm := httptest.NewRecorder()
	e.handler.ServeHTTP(warm, post(tok, ""))
	if warm.Code != http.StatusOK {
		b.Fatalf("warm-up: %d %s", warm.Code, warm.Body)
	}
	size := warm.Body.Len()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		e.handler.ServeHTTP(rec, post(tok, ""))
		if rec.Code != http.StatusOK || rec.Body.Len() != size {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkBareHandler is the physical limit of the stack: a chi route
// writing a fixed JSON body of the same size as a credentials response.
func BenchmarkBareHandler(b *testing.B) {
	e := newEnv(b)
	warm := httptest.NewRecorder()
	e.handler.ServeHTTP(warm, post(e.token("acme"), ""))
	h := testsupport.BareHandler(warm.Body.Len())
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, post("x", ""))
		if rec.Code != http.StatusOK || rec.Body.Len() != warm.Body.Len() {
			b.Fatal(rec.Code)
		}
	}
}
