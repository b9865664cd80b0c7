"""OpenTelemetry tracing: one trace follows a case from import to approval, across processes.

The W3C trace context (``traceparent``, ``tracestate``) travels in gRPC metadata (the client
interceptor of ``traced_channel`` puts it there, the server interceptor reads it), in Kafka
headers (``EventProducer.publish`` adds the current context; consumers continue it), in the run
request to the Serve ensemble, and in the outbox rows of tracking. A case's trace begins at its
import; tracking keeps the context with the case, so a revision submitted days later, from another
client, joins the case's trace (its RPC's own trace is linked).

Exporting is off by default (``none``): spans are then not recorded and cost next to nothing, but
the context is still carried, so turning tracing on in one service never breaks a trace. ``file``
writes one JSON line per span (workstations, tests); ``otlp`` sends to a collector (production).
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
from opentelemetry.trace import Link, Span, SpanKind

__all__ = ["SpanKind"]  # re-exported for callers that name a span's kind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from atlasloop.common.settings import TracingSettings

TRACER = "atlasloop"
_PROPAGATOR = TraceContextTextMapPropagator()
_configured: TracerProvider | None = None
_lock = threading.Lock()


class JsonLinesExporter(SpanExporter):
    """One JSON object per finished span, appended to a file (one file per process)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(span_record(span)) + "\n" for span in spans]
        with self._lock:
            self._file.writelines(lines)
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()


def span_record(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    parent = span.parent
    return {
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_id": f"{parent.span_id:016x}" if parent is not None else "",
        "name": span.name,
        "service": str(span.resource.attributes.get("service.name", "")),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": {k: v if isinstance(v, str | int | float | bool) else str(v) for k, v in span.attributes.items()}
        if span.attributes
        else {},
        "links": [f"{link.context.trace_id:032x}/{link.context.span_id:016x}" for link in span.links],
    }


def configure(service: str, settings: TracingSettings) -> None:
    """Install this process's tracer provider once (the first call wins)."""
    global _configured
    with _lock:
        if _configured is not None or settings.exporter == "none":
            return
        provider = TracerProvider(
            resource=Resource.create({"service.name": f"atlasloop-{service}"}),
            sampler=ParentBasedTraceIdRatio(settings.sample_ratio),
        )
        if settings.exporter == "file":
            if settings.file is None:
                raise ValueError("tracing exporter 'file' needs tracing.file")
            provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(settings.file)))
        else:
            if not settings.otlp_endpoint:
                raise ValueError("tracing exporter 'otlp' needs tracing.otlp_endpoint")
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, insecure=settings.otlp_insecure)
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _configured = provider


def shutdown() -> None:
    """Flush and close the exporter (at process exit)."""
    if _configured is not None:
        _configured.shutdown()


def tracer() -> trace.Tracer:
    return _configured.get_tracer(TRACER) if _configured is not None else trace.get_tracer(TRACER)


# ---- carrying the context ----


def current_headers() -> dict[str, str]:
    """The current context as W3C headers (empty when there is none)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


def in_trace() -> bool:
    """Whether there is a current span context (recorded or carried through)."""
    return trace.get_current_span().get_span_context().is_valid


def context_from(carrier: Mapping[str, str] | None) -> otel_context.Context:
    return _PROPAGATOR.extract(dict(carrier or {}))


def headers_from_kafka(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    wanted = set(_PROPAGATOR.fields)
    return {k: v.decode(errors="replace") for k, v in headers or () if k in wanted and isinstance(v, bytes)}


@contextmanager
def span(
    name: str,
    parent: Mapping[str, str] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    link_current: bool = False,
) -> Iterator[Span]:
    """A span, current inside the block; child of ``parent`` (W3C headers) when given, else of the
    current span. ``link_current`` links the span that was current (a revision's RPC, when the span
    joins its case's trace)."""
    if _configured is None:  # not recording: pass the context on unchanged
        token = otel_context.attach(context_from(parent)) if parent else None
        try:
            yield trace.get_current_span()
        finally:
            if token is not None:
                otel_context.detach(token)
        return
    links = []
    if link_current:
        here = trace.get_current_span().get_span_context()
        if here.is_valid:
            links.append(Link(here))
    ctx = context_from(parent) if parent else None
    with tracer().start_as_current_span(
        name, context=ctx, kind=kind, attributes=dict(attributes or {}), links=links
    ) as current:
        yield current


def inject_into(metadata: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """gRPC metadata plus the current context."""
    return [*metadata, *current_headers().items()]


# ---- gRPC clients ----


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass


class _ContextInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the current trace context to every call's metadata."""

    @staticmethod
    def _details(details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        headers = current_headers()
        if not headers:
            return details
        return _CallDetails(
            details.method,
            details.timeout,
            [*(details.metadata or ()), *headers.items()],
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: grpc.ClientCallDetails, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: grpc.ClientCallDetails, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def traced_channel(channel: grpc.Channel) -> grpc.Channel:
    """``channel`` with the current trace context sent along on every call."""
    return grpc.intercept_channel(channel, _ContextInterceptor())
