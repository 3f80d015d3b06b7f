package tracing

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestStartWithoutTracerLeavesCallersSpanAlone: a package with tracing off
// ends and marks the span Start gave it; the request's span in ctx, started
// by another package, stays open and unmarked.
func TestStartWithoutTracerLeavesCallersSpanAlone(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")

	got, span := Start(ctx, nil, "vend")
	if got != ctx {
		t.Error("Start with a nil tracer changed the context")
	}
	if span.IsRecording() {
		t.Error("Start with a nil tracer returned a recording span")
	}
	span.SetStatus(codes.Error, "not vended")
	span.End()

	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("%d span(s) ended by the callee, want 0: the caller's span was ended", n)
	}
	if !parent.IsRecording() {
		t.Fatal("the caller's span stopped recording")
	}
	parent.End()
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("ended spans = %d, want 1", len(ended))
	}
	if s := ended[0].Status(); s.Code != codes.Unset {
		t.Errorf("caller's span status = %v %q, want Unset", s.Code, s.Description)
	}
}

// TestStartWithTracerStartsChild: with a tracer, the span is a new child
// of the caller's, and ending it leaves the caller's open.
func TestStartWithTracerStartsChild(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")

	_, span := Start(ctx, Tracer(tp, "vend"), "vend")
	span.End()
	ended := rec.Ended()
	if len(ended) != 1 || ended[0].Name() != "vend" {
		t.Fatalf("ended spans = %v, want the child alone", ended)
	}
	if ended[0].Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Error("child's parent is not the caller's span")
	}
	if !parent.IsRecording() {
		t.Error("the caller's span stopped recording")
	}
}

// TestStartWithoutTracerAllocatesNothing keeps tracing free when it is off.
func TestStartWithoutTracerAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		_, span := Start(ctx, nil, "vend")
		span.End()
	})
	if allocs != 0 {
		t.Errorf("allocations = %v, want 0", allocs)
	}
}

func TestTracerNilProvider(t *testing.T) {
	if Tracer(nil, "x") != nil {
		t.Error("Tracer(nil) is not nil")
	}
}
