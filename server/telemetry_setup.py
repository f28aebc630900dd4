"""OpenTelemetry SDK set-up from the standard OTEL_* variables (part of the composition root).

Nothing is exported by default. OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) turns on the
OTLP/gRPC exporter for traces and metrics; OTEL_TRACES_EXPORTER=console prints spans. Once tracing is
on, asyncpg (without query parameters), httpx and aiohttp (so `traceparent` reaches the PSPs) are instrumented
and the gRPC server continues the caller's trace.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import metadata

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

from server.app import telemetry

SERVICE_NAME = "payments-service"
_instrumented = False


def _service_version() -> str:
    try:
        return metadata.version("payments-service")
    except metadata.PackageNotFoundError:
        return "unknown"


def tracing_active() -> bool:
    return isinstance(trace.get_tracer_provider(), TracerProvider)


def configure_telemetry(
    env: Mapping[str, str] | None = None,
    *,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
) -> bool:
    """Installs the SDK if anything is to be exported; returns whether tracing is on.

    `span_exporter`/`metric_reader` let tests collect in memory. The providers are process-wide: a
    second call keeps the first set-up.
    """
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if tracing_active():
        telemetry.enable_tracing()
        return True
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    wanted = {n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    processors: list[SpanProcessor] = []
    if span_exporter is not None:
        processors.append(SimpleSpanProcessor(span_exporter))
    if endpoint and "otlp" in wanted:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        processors.append(BatchSpanProcessor(OTLPSpanExporter()))
    if "console" in wanted:
        processors.append(SimpleSpanProcessor(ConsoleSpanExporter()))
    if not processors:
        return False
    resource = Resource.create(
        {"service.name": env.get("OTEL_SERVICE_NAME") or SERVICE_NAME, "service.version": _service_version()}
    )
    provider = TracerProvider(resource=resource)
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    telemetry.enable_tracing()
    readers: list[MetricReader] = [metric_reader] if metric_reader is not None else []
    if endpoint and env.get("OTEL_METRICS_EXPORTER", "otlp") == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    if readers:
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    _instrument_clients(provider)
    return True


def _instrument_clients(provider: TracerProvider) -> None:
    global _instrumented
    if _instrumented:
        return
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    from server.sql_spans import SampledAsyncPGInstrumentor

    SampledAsyncPGInstrumentor(capture_parameters=False).instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)  # the bank gateway's client
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)  # Stripe's (adapters/stripe_psp.py)
    _instrumented = True


def shutdown_telemetry() -> None:
    """Flushes what is buffered (spans, metrics) before the process exits."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
    meter_provider = metrics.get_meter_provider()
    if isinstance(meter_provider, MeterProvider):
        meter_provider.shutdown()
