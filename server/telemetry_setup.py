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
from wsgiref.simple_server import WSGIServer

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
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
_metrics_server: WSGIServer | None = None  # serves /metrics when PAYMENTS_METRICS_LISTEN is set


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
    metrics_listen: str | None = None,
) -> bool:
    """Installs the SDK if anything is to be exported; returns whether tracing is on.

    Metrics and traces are set up independently: Prometheus scraping (`metrics_listen`, from
    PAYMENTS_METRICS_LISTEN) needs no tracing, so it adds no spans to the hot path.
    `span_exporter`/`metric_reader` let tests collect in memory. The providers are process-wide: a
    second call keeps the first set-up.
    """
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    resource = Resource.create(
        {"service.name": env.get("OTEL_SERVICE_NAME") or SERVICE_NAME, "service.version": _service_version()}
    )
    _configure_metrics(env, resource, metric_reader, metrics_listen)
    return _configure_tracing(env, resource, span_exporter)


def _otlp_endpoint(env: Mapping[str, str]) -> str | None:
    return env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")


def _configure_tracing(env: Mapping[str, str], resource: Resource, span_exporter: SpanExporter | None) -> bool:
    if tracing_active():
        telemetry.enable_tracing()
        return True
    endpoint = _otlp_endpoint(env)
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
    provider = TracerProvider(resource=resource)
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    telemetry.enable_tracing()
    _instrument_clients(provider)
    return True


def _configure_metrics(
    env: Mapping[str, str], resource: Resource, metric_reader: MetricReader | None, metrics_listen: str | None
) -> None:
    global _metrics_server
    if isinstance(metrics.get_meter_provider(), MeterProvider):
        return
    readers: list[MetricReader] = [metric_reader] if metric_reader is not None else []
    prometheus: MetricReader | None = None
    if _otlp_endpoint(env) and env.get("OTEL_METRICS_EXPORTER", "otlp") == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    if metrics_listen is not None:
        # The reader translates on each scrape (payments.rpc.duration in ms becomes
        # payments_rpc_duration_milliseconds_bucket/_sum/_count); nothing is computed between scrapes.
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        host, _, port = metrics_listen.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            _metrics_server, _ = start_http_server(int(port), host)
        except OSError as exc:
            raise OSError(f"cannot listen on {metrics_listen} (PAYMENTS_METRICS_LISTEN): {exc.strerror}") from None
        prometheus = PrometheusMetricReader()
        readers.append(prometheus)
    if not readers:
        return
    if readers == [prometheus] and not env.get("OTEL_METRICS_EXEMPLAR_FILTER"):
        # The text format Prometheus scrapes carries no exemplars; sampling them (the SDK's default, for
        # OTLP) costs a third of every recording (docs/performance.md, Tracing).
        provider = MeterProvider(resource=resource, metric_readers=readers, exemplar_filter=AlwaysOffExemplarFilter())
    else:
        provider = MeterProvider(resource=resource, metric_readers=readers)
    metrics.set_meter_provider(provider)


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
    if _metrics_server is not None:
        _metrics_server.shutdown()
