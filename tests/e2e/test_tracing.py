"""OpenTelemetry: one trace from the caller through the server, PostgreSQL and the PSP (docs/contract.md,
Tracing and telemetry)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import httpx
import pytest
import stripe
from opentelemetry import trace
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from adapters.bank.adapter import BankTransferAdapter
from adapters.bank.pain001 import DebtorAccount
from adapters.directory import ProviderSet
from adapters.retry import RetryingProvider, RetryPolicy
from adapters.sandboxes.bank_sandbox import BankSandbox
from adapters.sandboxes.inprocess import FaultKind
from adapters.sandboxes.stripe_sandbox import StripeSandbox
from adapters.stripe_psp import StripeAdapter, close_http_client, stripe_client
from payments.v1 import payment_service_pb2 as svc
from server.logs import JsonFormatter
from tests.support.harness import FAST_WORKER, ServerHarness
from tests.support.processes import free_port, run_cli, start_cli_server, wait_serving
from tests.support.requests import charge, sepa_payout
from tests.support.telemetry import collector, spans_of, traceparent_metadata, wait_for_spans

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

STRIPE_KEY = "sk_test_51SecretKeyThatMustNeverLeak"
IBANS = ["DE89370400440532013000", "DE48370400449900000101"]
SERVER_SPAN = "/payments.v1.PaymentService/Charge"
# A card number stands alone (not inside an id or a hex string) and passes the Luhn check.
CARD_LIKE = re.compile(r"(?<![0-9A-Za-z_-])(?:\d[ -]?){12,18}\d(?![0-9A-Za-z_])")


def luhn_valid(text: str) -> bool:
    digits = [int(c) for c in text if c.isdigit()]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(reversed(digits)))
    return total % 10 == 0


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    return collector()[0]


class TracedServer:
    """The real server with the Stripe adapter + sandbox and the bank adapter + sandbox."""

    def __init__(self, database_url: str) -> None:
        self.stripe_sandbox = StripeSandbox().start()
        self.bank_sandbox = BankSandbox(step_delay=0.05).start()
        self.stripe_http = stripe.HTTPXClient(timeout=10)
        self.bank_http = httpx.AsyncClient()
        policy = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05, attempt_timeout=5.0)
        cards = RetryingProvider(StripeAdapter(stripe_client(STRIPE_KEY, self.stripe_sandbox.url, self.stripe_http)),
                                 policy)  # fmt: skip
        debtor = DebtorAccount("Payments Service GmbH", "DE89370400440532013000", "COBADEFFXXX")
        bank = RetryingProvider(BankTransferAdapter(self.bank_sandbox.url, "tok", debtor, http=self.bank_http), policy)
        self.harness = ServerHarness(database_url, providers=ProviderSet(cards=cards, bank=bank))

    def close(self) -> None:
        self.harness.run(close_http_client(self.stripe_http))
        self.harness.run(self.bank_http.aclose())
        self.harness.close()
        self.stripe_sandbox.stop()
        self.bank_sandbox.stop()


@pytest.fixture
def traced(exporter: InMemorySpanExporter, database_url: str) -> Iterator[TracedServer]:
    server = TracedServer(database_url)
    exporter.clear()
    yield server
    server.close()


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    named = [s for s in spans if s.name == name]
    assert len(named) == 1, f"expected one {name!r}, got {[s.name for s in spans]}"
    return named[0]


def test_one_trace_from_caller_to_psp(traced: TracedServer, exporter: InMemorySpanExporter) -> None:
    traced.stripe_sandbox.inject("http_500", count=1, method="POST")
    tracer = trace.get_tracer("test-caller")
    with tracer.start_as_current_span("caller.checkout", kind=SpanKind.CLIENT) as caller:
        payment = traced.harness.stub.Charge(charge("traced-1"), metadata=traceparent_metadata(), timeout=10).payment
    trace_id = caller.get_span_context().trace_id
    wait_for_spans(exporter, lambda ss: any(s.name == SERVER_SPAN for s in ss))
    spans = spans_of(exporter, trace_id)

    server = _one(spans, SERVER_SPAN)
    assert server.kind is SpanKind.SERVER
    assert server.parent is not None
    assert server.parent.span_id == caller.get_span_context().span_id
    assert server.attributes is not None
    assert server.attributes["payment.id"] == payment.id
    assert server.attributes["psp"] == "stripe"
    assert server.attributes["idempotency.replayed"] is False
    assert server.attributes["idempotency.outcome"] == "claimed"
    assert server.attributes["idempotency.operation"] == "charge"
    assert not [s for s in spans if s.name.startswith("idempotency.")], "the claim is its SQL span, no wait"
    db_spans = [s for s in spans if (s.attributes or {}).get("db.system") == "postgresql"]
    assert db_spans, "asyncpg spans"
    assert all("db.statement.parameters" not in (s.attributes or {}) for s in db_spans)
    psp = _one(spans, "psp.charge")
    attempts = sorted(_children(spans, psp), key=lambda s: s.start_time or 0)
    assert [a.name for a in attempts] == ["psp.attempt", "psp.attempt"]
    assert [(a.attributes or {})["psp.attempt"] for a in attempts] == [1, 2]
    assert [(a.attributes or {})["psp.outcome"] for a in attempts] == ["possibly_executed", "succeeded"]
    assert str((attempts[1].attributes or {})["psp.request_id"]).startswith("req_")
    http_spans = [s for a in attempts for s in _children(spans, a) if s.kind is SpanKind.CLIENT]
    assert len(http_spans) == 2, "one HTTP client span per attempt"
    traceparents = [r.headers.get("traceparent", "") for r in traced.stripe_sandbox.requests() if r.method == "POST"]
    assert len(traceparents) == 2
    assert all(tp.split("-")[1] == format(trace_id, "032x") for tp in traceparents)


def test_the_payee_check_is_traced_before_the_transfer(traced: TracedServer, exporter: InMemorySpanExporter) -> None:
    """Verification of Payee is a PSP call like the transfer: its own span with one child per attempt, in the
    payout's trace, before psp.payout; labelled by the scheme's result, never by the name."""
    traced.bank_sandbox.inject("http_500", count=1, method="POST", path_prefix="/v1/payee-verifications")
    tracer = trace.get_tracer("test-caller")
    with tracer.start_as_current_span("caller.payout") as caller:
        request = sepa_payout("traced-vop", name="Mueller GmbH")
        request.accept_payee_verification_risk = True
        payout = traced.harness.stub.Payout(request, metadata=traceparent_metadata(), timeout=10).payout
    trace_id = caller.get_span_context().trace_id
    payout_span = "/payments.v1.PaymentService/Payout"
    wait_for_spans(exporter, lambda ss: any(s.name == payout_span and s.context.trace_id == trace_id for s in ss))
    spans = spans_of(exporter, trace_id)
    server = _one(spans, payout_span)
    assert (server.attributes or {})["payout.id"] == payout.id
    assert (server.attributes or {})["payout.payee_verification"] == "CLOSE_MATCH"
    check, transfer = _one(spans, "psp.verify_payee"), _one(spans, "psp.payout")
    assert (check.end_time or 0) <= (transfer.start_time or 0)
    assert (check.attributes or {})["psp.outcome"] == "payee_close_match"
    attempts = sorted(_children(spans, check), key=lambda s: s.start_time or 0)
    assert [(a.attributes or {})["psp.outcome"] for a in attempts] == ["unavailable", "payee_close_match"]
    attributes = json.dumps([dict(s.attributes or {}) for s in spans], default=str)
    assert "Mueller" not in attributes
    assert "Müller" not in attributes


def test_replay_is_traced_without_a_psp_call(traced: TracedServer, exporter: InMemorySpanExporter) -> None:
    traced.harness.stub.Charge(charge("traced-replay"), timeout=10)
    tracer = trace.get_tracer("test-caller")
    with tracer.start_as_current_span("caller.retry") as caller:
        traced.harness.stub.Charge(charge("traced-replay"), metadata=traceparent_metadata(), timeout=10)
    trace_id = caller.get_span_context().trace_id
    wait_for_spans(exporter, lambda ss: any(s.name == SERVER_SPAN and s.context.trace_id == trace_id for s in ss))
    spans = spans_of(exporter, trace_id)
    server = _one(spans, SERVER_SPAN)
    assert (server.attributes or {})["idempotency.replayed"] is True
    assert (server.attributes or {})["idempotency.outcome"] == "replayed"
    assert not [s for s in spans if s.name.startswith("psp.")]


def test_no_secret_reaches_spans_logs_or_errors(
    traced: TracedServer, exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    formatter = JsonFormatter()
    stub = traced.harness.stub
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for i in range(3):
            stub.Charge(charge(f"scan-c{i}", method="pm_card_visa"), timeout=10)
            stub.Charge(charge(f"scan-d{i}", method="pm_card_visa_chargeDeclined"), timeout=10)
            stub.Payout(sepa_payout(f"scan-p{i}", iban=IBANS[i % 2]), timeout=10)
        traced.stripe_sandbox.inject("http_429", count=1, method="POST", retry_after=0)
        stub.Charge(charge("scan-429"), timeout=10)
        for bad in (
            charge("scan-bad", method="4242 4242 4242 4242"),
            sepa_payout("scan-bad-iban", iban="DE00370400440532013000"),
        ):
            try:
                stub.Charge(bad, timeout=10) if isinstance(bad, svc.ChargeRequest) else stub.Payout(bad, timeout=10)
            except grpc.RpcError as error:
                texts.append(error.details() or "")
                texts.append(repr(error.trailing_metadata()))
        time.sleep(0.3)  # let the bank poller run its lookups too
    texts += [formatter.format(record) for record in caplog.records]
    for span in exporter.get_finished_spans():
        texts.append(json.dumps(dict(span.attributes or {}), default=str))
        texts += [json.dumps({"name": e.name, **dict(e.attributes or {})}, default=str) for e in span.events]
        texts.append(span.name)
    corpus = "\n".join(texts)
    assert len(exporter.get_finished_spans()) > 20, "the run was traced"
    assert STRIPE_KEY not in corpus
    for iban in [*IBANS, "DE00370400440532013000"]:
        assert iban not in corpus
        assert iban[4:] not in corpus, "not even the BBAN"
    assert "4242 4242 4242 4242" not in corpus
    cards = [m for m in CARD_LIKE.finditer(corpus) if luhn_valid(m.group())]
    assert not cards, [corpus[max(0, m.start() - 80) : m.end() + 20] for m in cards]


def test_worker_span_links_to_the_original_trace(exporter: InMemorySpanExporter, database_url: str) -> None:
    server = ServerHarness(database_url, worker=FAST_WORKER)
    try:
        exporter.clear()
        server.sandbox.fail_next(3, FaultKind.LOSE_ANSWER)
        tracer = trace.get_tracer("test-caller")
        with tracer.start_as_current_span("caller.abandoned") as caller, pytest.raises(grpc.RpcError):
            server.stub.Charge(charge("traced-abandoned"), metadata=traceparent_metadata(), timeout=10)
        trace_id = caller.get_span_context().trace_id

        def linked(spans: object) -> bool:
            return any(
                s.name == "worker.recover" and any(link.context.trace_id == trace_id for link in s.links)
                for s in exporter.get_finished_spans()
            )

        wait_for_spans(exporter, linked, timeout=10)
        assert linked(None)
        recover = next(s for s in exporter.get_finished_spans() if s.name == "worker.recover")
        assert recover.context is not None
        assert recover.context.trace_id != trace_id, "the worker's work is its own trace, linked to the original"
    finally:
        server.close()


class Receiver(trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer):
    """A minimal OTLP/gRPC collector."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str]] = []  # (service.name, span name)
        self.metrics: set[str] = set()

    def Export(self, request: object, context: object) -> object:  # noqa: N802
        if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
            for resource_spans in request.resource_spans:
                service = next((a.value.string_value for a in resource_spans.resource.attributes
                                if a.key == "service.name"), "")  # fmt: skip
                for scope in resource_spans.scope_spans:
                    self.spans += [(service, span.name) for span in scope.spans]
            return trace_service_pb2.ExportTraceServiceResponse()
        assert isinstance(request, metrics_service_pb2.ExportMetricsServiceRequest)
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                self.metrics |= {m.name for m in scope_metrics.metrics}
        return metrics_service_pb2.ExportMetricsServiceResponse()


def test_serve_exports_to_an_otlp_receiver(database_url: str) -> None:
    receiver = Receiver()
    collector_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    # The generated registration functions are untyped.
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, collector_server)  # type: ignore[no-untyped-call]
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(receiver, collector_server)  # type: ignore[no-untyped-call]
    otlp_port = collector_server.add_insecure_port("127.0.0.1:0")
    collector_server.start()
    port = free_port()
    process = start_cli_server(
        database_url, port, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{otlp_port}",
        OTEL_BSP_SCHEDULE_DELAY="100", OTEL_METRIC_EXPORT_INTERVAL="300",
    )  # fmt: skip
    try:
        wait_serving(f"127.0.0.1:{port}")
        result = run_cli("charge", "--amount", "1250", "--currency", "EUR", "--payment-method", "pm_card_visa",
                         "--idempotency-key", "otlp-1", port=port)  # fmt: skip
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (
            ("payments-service", SERVER_SPAN) in receiver.spans and "payments.rpc.duration" in receiver.metrics
        ):
            time.sleep(0.1)
        assert ("payments-service", SERVER_SPAN) in receiver.spans
        assert ("payments-service", "psp.charge") in receiver.spans
        assert "payments.rpc.duration" in receiver.metrics
    finally:
        process.terminate()
        process.wait(timeout=30)
        collector_server.stop(0)
