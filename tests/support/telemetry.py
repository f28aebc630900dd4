"""In-memory collection of the spans and metrics the service emits (the SDK is process-wide)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from opentelemetry import propagate, trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from server.telemetry_setup import configure_telemetry

_exporter = InMemorySpanExporter()
_metrics = InMemoryMetricReader()


def collector() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    configure_telemetry({}, span_exporter=_exporter, metric_reader=_metrics)
    return _exporter, _metrics


def traceparent_metadata() -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying the current span's context, as an instrumented caller would send."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple(carrier.items())


def spans_of(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.context is not None and s.context.trace_id == trace_id]


def wait_for_spans(
    exporter: InMemorySpanExporter, found: Callable[[Sequence[ReadableSpan]], bool], timeout: float = 5.0
) -> Sequence[ReadableSpan]:
    deadline = time.monotonic() + timeout
    while True:
        spans = exporter.get_finished_spans()
        if found(spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.05)


def current_trace_id() -> int:
    return trace.get_current_span().get_span_context().trace_id
