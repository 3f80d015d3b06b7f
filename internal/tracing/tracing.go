// Package tracing starts spans at no cost when tracing is off: with no
// tracer provider, a span is a no-op one, and nothing is allocated on the
// hit path.
package tracing

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracer is tp's tracer for the instrumentation scope name, or nil when tp
// is nil (tracing off).
func Tracer(tp trace.TracerProvider, name string) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(name)
}

// Start starts a span with tracer. With a nil tracer it returns ctx as it
// is and a no-op span: the caller ends and marks what Start returns, and
// that must never be the span ctx already carries, which belongs to
// whoever started it (the request's span, when another package traces).
func Start(ctx context.Context, tracer trace.Tracer, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if tracer == nil {
		return ctx, noop.Span{}
	}
	return tracer.Start(ctx, name, opts...)
}
