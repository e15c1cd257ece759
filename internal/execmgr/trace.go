package execmgr

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Tracing: a task's span starts when it is submitted (a child of the
// caller's span, taken from the gRPC metadata) and ends with its terminal
// status; admission, planning and every step attempt are child spans.
// Everything here is a no-op when tracing is off.

// startSpan opens the task span as a child of whatever span ctx carries,
// and the admission span inside it.
func (r *run) startSpan(ctx context.Context) {
	if !r.m.tracing {
		return
	}
	_, r.span = r.m.tracer.Start(ctx, "task "+r.def.ID,
		trace.WithAttributes(attribute.String("aura.task_id", r.id), attribute.String("aura.task", r.def.ID)))
	_, r.admitSpan = r.m.tracer.Start(r.spanContext(context.Background()), "admission")
}

// spanContext returns ctx carrying the task span (or ctx as it is).
func (r *run) spanContext(ctx context.Context) context.Context {
	if r.span == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, r.span)
}

// traceID is the task's trace id for log lines ("" when not tracing).
func (r *run) traceID() string {
	if r.span == nil || !r.span.SpanContext().IsValid() {
		return ""
	}
	return r.span.SpanContext().TraceID().String()
}

func (r *run) endAdmitSpan() {
	if r.admitSpan != nil {
		r.admitSpan.End()
		r.admitSpan = nil
	}
}

// endSpan closes the task span with the outcome.
func (r *run) endSpan(status aurav1.TaskStatus, te *aurav1.TaskError) {
	r.endAdmitSpan()
	if r.span == nil {
		return
	}
	r.span.SetAttributes(attribute.String("aura.status", status.String()))
	if te != nil {
		r.span.SetStatus(codes.Error, fmt.Sprintf("%s: %s", te.Kind, te.Message))
	} else {
		r.span.SetStatus(codes.Ok, "")
	}
	r.span.End()
}

// stepSpanStart opens the span of one step attempt.
func (r *run) stepSpanStart(step string, attempt int) {
	if r.span == nil || !r.span.IsRecording() {
		return
	}
	_, sp := r.m.tracer.Start(r.spanContext(context.Background()), "step "+step,
		trace.WithAttributes(attribute.String("aura.step", step), attribute.Int("aura.attempt", attempt)))
	r.mu.Lock()
	if r.stepSpans == nil {
		r.stepSpans = map[string]trace.Span{}
	}
	r.stepSpans[step] = sp
	r.mu.Unlock()
}

func (r *run) stepSpanEnd(step string, err error) {
	r.mu.Lock()
	sp := r.stepSpans[step]
	delete(r.stepSpans, step)
	r.mu.Unlock()
	if sp == nil {
		return
	}
	if err != nil {
		sp.SetStatus(codes.Error, err.Error())
	}
	sp.End()
}
