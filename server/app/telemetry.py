"""The service's own spans and metrics, on the OpenTelemetry API (no-ops until the SDK is set up).

Kept in one module so the names SREs alert on are defined once. Attribute values never carry card
data, full IBANs, keys or tokens: only our ids, PSP names, codes and outcomes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

tracer = trace.get_tracer("payments-service")
_meter = metrics.get_meter("payments-service")

rpc_duration = _meter.create_histogram(
    "payments.rpc.duration", unit="ms", description="RPC latency by method and status code"
)
psp_call_duration = _meter.create_histogram(
    "payments.psp.call.duration", unit="ms", description="PSP call latency (all attempts) by PSP and outcome"
)
psp_calls = _meter.create_counter("payments.psp.calls", description="PSP calls by PSP, operation and outcome")
psp_retries = _meter.create_counter("payments.psp.retries", description="PSP attempts beyond the first")
idempotency_replays = _meter.create_counter(
    "payments.idempotency.replays", description="requests answered with a stored reply"
)
idempotency_conflicts = _meter.create_counter(
    "payments.idempotency.conflicts", description="IDEMPOTENCY_KEY_REUSED and IDEMPOTENCY_KEY_IN_USE answers"
)
reconciliation_required = _meter.create_counter(
    "payments.reconciliation.required", description="operations moved to REQUIRES_RECONCILIATION (alert on it)"
)
captures_expiring = _meter.create_counter(
    "payments.captures.expiring", description="authorized payments close to the PSP's release, not captured"
)
psp_credentials_refused = _meter.create_counter(
    "payments.psp.credentials_refused", description="PSP refusals of our credentials (401/403): alert on it"
)
webhooks_refused = _meter.create_counter(
    "payments.webhooks.refused", description="webhook requests refused, by PSP and reason (signature: alert on it)"
)


@dataclass(frozen=True, slots=True)
class _Backlog:
    oldest_unfinished_seconds: float
    requires_reconciliation: Mapping[str, int]


_backlog: _Backlog | None = None


def observe_backlog(oldest_unfinished_seconds: float, requires_reconciliation: Mapping[str, int]) -> None:
    """Keeps the worker's latest measurement (server.app.store.Backlog) for the gauges below, which read
    it when metrics are collected: a scrape never waits on PostgreSQL. Only processes that run the worker
    report them, every one the same database-wide figures (alert on max across instances)."""
    global _backlog
    _backlog = _Backlog(oldest_unfinished_seconds, dict(requires_reconciliation))


def _backlog_age(_options: CallbackOptions) -> Iterable[Observation]:
    return [] if _backlog is None else [Observation(_backlog.oldest_unfinished_seconds)]


def _reconciliation_open(_options: CallbackOptions) -> Iterable[Observation]:
    counts = {} if _backlog is None else _backlog.requires_reconciliation
    return [Observation(count, {"resource": resource}) for resource, count in counts.items()]


# Gauges, not counters: "how old is the oldest" and "how many now" survive restarts and need no rate().
recovery_backlog_age = _meter.create_observable_gauge(
    "payments.recovery.backlog.age", [_backlog_age], unit="s",
    description="age of the oldest operation without a final answer (in flight or waiting for recovery)",
)  # fmt: skip
reconciliation_open = _meter.create_observable_gauge(
    "payments.reconciliation.open", [_reconciliation_open],
    description="operations in REQUIRES_RECONCILIATION now, by resource type (alert while above 0)",
)  # fmt: skip


bank_discrepancies = _meter.create_counter(
    "payments.bank.discrepancies",
    description="reconciliation discrepancies found in bank statements, by kind (unknown_entry, amount_mismatch, "
    "currency_mismatch, status_conflict, unbooked_payout): each needs finance",
)
bank_entries = _meter.create_counter(
    "payments.bank.entries", description="bank statement entries imported, by kind and outcome"
)

_propagator = TraceContextTextMapPropagator()


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, stored with an operation so later work can link to it."""
    if not _tracing:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def links_to(traceparent: str | None) -> list[Link]:
    """A span link to the trace that started an operation (none if it was not traced)."""
    if not traceparent:
        return []
    context = _propagator.extract({"traceparent": traceparent})
    span_context = trace.get_current_span(context).get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


def annotate(**attributes: str | bool | int) -> None:
    """Adds attributes to the current span (the gRPC server span inside an RPC)."""
    if not _tracing:
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(attributes)


_tracing = False
_NO_SPAN: AbstractContextManager[Span] = nullcontext(trace.INVALID_SPAN)


def enable_tracing() -> None:
    """Called once the SDK is installed; until then spans cost nothing on the hot path."""
    global _tracing
    _tracing = True


def span(
    name: str, attributes: dict[str, str | bool | int] | None = None, links: list[Link] | None = None
) -> AbstractContextManager[Span]:
    """A child of the current span; nothing at all inside a trace that head sampling dropped.

    Under the parent-based samplers (`OTEL_TRACES_SAMPLER=parentbased_*`, the SDK's default) a child of
    a span that is not recorded is not recorded either; skipping its creation is what makes a 10 %
    sample cost close to nothing for the other 90 % (docs/performance.md).
    """
    if not _tracing:
        return _NO_SPAN
    current = trace.get_current_span()
    if not current.is_recording() and current.get_span_context().is_valid:
        return nullcontext(current)
    return tracer.start_as_current_span(name, links=links, attributes=attributes)
