// Package tracing starts spans at no cost when tracing is off: with no
// tracer provider, a span is the one already in the context (none, so a
// non-recording one), and nothing is allocated on the hit path.
package tracing

import (
	"context"

	"go.opentelemetry.io/otel/trace"
)

// Tracer is tp's tracer for the instrumentation scope name, or nil when tp
// is nil (tracing off).
func Tracer(tp trace.TracerProvider, name string) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(name)
}

// Start starts a span with tracer; with a nil tracer it returns ctx and the
// span ctx carries, which is non-recording when tracing is off.
func Start(ctx context.Context, tracer trace.Tracer, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if tracer == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	return tracer.Start(ctx, name, opts...)
}
