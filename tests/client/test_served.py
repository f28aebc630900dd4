"""payments-client against a real server (real gRPC, real PostgreSQL, the composition root's start_service):
keys generated and reused, replays seen, typed errors with their field violations, retries across a
dropped connection and a missed deadline without a second PSP execution, sync and async."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from payments.v1 import resources_pb2 as res
from payments_client import (
    AsyncPaymentsClient,
    DeadlineExceeded,
    IdempotencyKeyReused,
    InvalidArgument,
    Money,
    NotFound,
    PaymentNotCapturable,
    PaymentsClient,
    PspUnavailable,
    RefundExceedsRemaining,
    Result,
    RetryPolicy,
    SepaAccount,
)
from payments_client._shared import DEFAULT_TARGET
from tests.support.chaos import FAST_RECONNECT, wait_for
from tests.support.harness import ServerHarness
from tests.support.processes import run_cli
from tests.support.proxy import CuttingProxy
from tests.support.telemetry import collector, spans_of, wait_for_spans

EUR_12_50 = Money(amount_minor=1250, currency="EUR")
QUICK = RetryPolicy(max_attempts=8, initial_backoff=0.02, max_backoff=0.2)


@pytest.fixture
def client(server: ServerHarness) -> Iterator[PaymentsClient]:
    with PaymentsClient(server.target, timeout=10, retry=QUICK) as opened:
        yield opened


def test_charge_replay_refund_and_reads(client: PaymentsClient, server: ServerHarness) -> None:
    charged = client.charge(EUR_12_50, "pm_card_visa", customer_id="cus_1", metadata={"order": "o-1"})
    assert isinstance(charged, Result)
    assert uuid.UUID(charged.idempotency_key), "a key was generated for the call"
    assert (charged.replayed, charged.attempts) == (False, 1)
    assert charged.resource.status == res.PAYMENT_STATUS_SUCCEEDED

    replay = client.charge(EUR_12_50, "pm_card_visa", customer_id="cus_1", metadata={"order": "o-1"},
                           idempotency_key=charged.idempotency_key)  # fmt: skip
    assert replay.replayed
    assert replay.resource == charged.resource
    assert client.charge(EUR_12_50, "pm_card_visa").resource.id != charged.resource.id, "a new key, a new charge"
    assert server.sandbox.executions() == 2

    refund = client.refund(charged.resource.id, Money(amount_minor=250, currency="EUR"), reason="duplicate")
    assert refund.resource.status == res.REFUND_STATUS_SUCCEEDED
    assert refund.idempotency_key != charged.idempotency_key
    assert client.get_refund(refund.resource.id) == refund.resource
    assert client.get_payment(charged.resource.id).amount_refunded.amount_minor == 250
    page = client.list_payments(customer_id="cus_1")
    assert [p.id for p in page.payments] == [charged.resource.id]

    account = SepaAccount(iban="DE89370400440532013000", name="Müller GmbH",
                          address=res.PostalAddress(country="DE", town="Berlin"))  # fmt: skip
    payout = client.payout(Money(amount_minor=5000, currency="EUR"), sepa_account=account)
    assert client.get_payout(payout.resource.id).id == payout.resource.id


def test_errors_are_typed_and_carry_the_key_and_the_violations(client: PaymentsClient) -> None:
    charged = client.charge(EUR_12_50, "pm_card_visa")
    with pytest.raises(IdempotencyKeyReused) as reused:
        client.charge(Money(amount_minor=999, currency="EUR"), "pm_card_visa", idempotency_key=charged.idempotency_key)
    assert reused.value.idempotency_key == charged.idempotency_key
    assert reused.value.attempts == 1, "never retried: a retry cannot fix it"

    with pytest.raises(RefundExceedsRemaining) as exceeded:
        client.refund(charged.resource.id, Money(amount_minor=5000, currency="EUR"))
    assert exceeded.value.reason == "REFUND_EXCEEDS_REMAINING"

    with pytest.raises(InvalidArgument) as invalid:
        client.charge(Money(amount_minor=0, currency="EUR"), "pm_card_visa", idempotency_key="bad-1")
    assert [(v.field, v.description) for v in invalid.value.field_violations] == [
        ("amount.amount_minor", "must be positive")
    ]
    corrected = client.charge(EUR_12_50, "pm_card_visa", idempotency_key="bad-1")
    assert not corrected.replayed, "bad input never claims the key"

    with pytest.raises(NotFound):
        client.get_payment("pay_" + "0" * 32)


def test_a_dropped_connection_is_retried_with_the_same_key(server: ServerHarness) -> None:
    """The call is cut while the PSP executes it: UNAVAILABLE for the client. The server keeps the key leased
    for the cut attempt's timeout plus a margin (ABORTED / IDEMPOTENCY_KEY_IN_USE meanwhile, retried as
    RetryInfo says), then the retry with the same key resumes the execution at the PSP with the same PSP key."""
    proxy = CuttingProxy(server.service.port)
    server.sandbox.set_latency(0.5)
    outcome: list[Result[res.Payment]] = []
    try:
        retry = RetryPolicy(max_attempts=10, initial_backoff=0.02, max_backoff=0.2, attempt_timeout=1.5)
        with PaymentsClient(proxy.target, timeout=15, retry=retry, options=FAST_RECONNECT) as client:
            caller = threading.Thread(target=lambda: outcome.append(client.charge(EUR_12_50, "pm_card_visa")))
            caller.start()
            assert wait_for(lambda: server.sandbox.total_calls() > 0, timeout=10), "the charge reached the PSP"
            proxy.cut()
            caller.join(timeout=30)
    finally:
        proxy.close()
    [charged] = outcome
    assert charged.attempts >= 2
    assert proxy.connections >= 2
    assert charged.resource.status == res.PAYMENT_STATUS_SUCCEEDED
    assert server.sandbox.executions() == 1, "one key, one PSP execution"
    [call_key] = {counter.split(":", 1)[1] for counter in server.sandbox.calls}
    assert server.sandbox.calls_for(call_key) >= 1


def test_the_deadline_bounds_the_call_and_the_key_finishes_it_later(
    client: PaymentsClient, server: ServerHarness
) -> None:
    """The PSP is slower than the caller's deadline: the call ends by the deadline, unfinished (the server
    answers PSP_UNAVAILABLE within it, or gRPC's deadline fires), and its key, carried by the error,
    finishes it later without a second execution."""
    server.sandbox.set_latency(1.5)
    started = time.monotonic()
    with pytest.raises((PspUnavailable, DeadlineExceeded)) as late:
        client.charge(EUR_12_50, "pm_card_visa", timeout=0.3)
    assert time.monotonic() - started < 1.0
    assert late.value.retryable
    assert late.value.idempotency_key is not None
    server.sandbox.set_latency(0)
    finished = client.charge(EUR_12_50, "pm_card_visa", idempotency_key=late.value.idempotency_key, timeout=10)
    assert finished.resource.status == res.PAYMENT_STATUS_SUCCEEDED
    assert server.sandbox.executions() == 1


def test_async_client(server: ServerHarness) -> None:
    async def scenario() -> None:
        async with AsyncPaymentsClient(server.target, timeout=10, retry=QUICK) as client:
            authorized = await client.charge(EUR_12_50, "pm_card_visa", capture_method=res.CAPTURE_METHOD_MANUAL)
            assert authorized.resource.status == res.PAYMENT_STATUS_REQUIRES_CAPTURE
            again = await client.charge(EUR_12_50, "pm_card_visa", capture_method=res.CAPTURE_METHOD_MANUAL,
                                        idempotency_key=authorized.idempotency_key)  # fmt: skip
            assert again.replayed
            captured = await client.capture_payment(authorized.resource.id, Money(amount_minor=1000, currency="EUR"))
            assert captured.resource.amount_captured.amount_minor == 1000
            with pytest.raises(PaymentNotCapturable):
                await client.capture_payment(authorized.resource.id)
            other = await client.charge(EUR_12_50, "pm_card_visa", capture_method=res.CAPTURE_METHOD_MANUAL)
            canceled = await client.cancel_payment(other.resource.id, reason="duplicate")
            assert canceled.resource.status == res.PAYMENT_STATUS_CANCELED
            assert (await client.get_payment(other.resource.id)).status == res.PAYMENT_STATUS_CANCELED
            events = await client.list_events(resource_id=authorized.resource.id)
            assert events.events, "the transitions of the payment are in its feed"
            watched = client.watch_events(after_event_id="0")
            first = await anext(watched)
            assert first.id == (await client.list_events(page_size=1)).events[0].id
            await watched.aclose()

    asyncio.run(scenario())


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    """Tracing on (process-wide) before the server starts, which instruments itself only when it is."""
    return collector()[0]


def test_the_callers_trace_continues_on_the_server(exporter: InMemorySpanExporter, database_url: str) -> None:
    server = ServerHarness(database_url)
    try:
        with (
            PaymentsClient(server.target, timeout=10) as client,
            trace.get_tracer("test-caller").start_as_current_span("caller.checkout") as caller,
        ):
            charged = client.charge(EUR_12_50, "pm_card_visa")
    finally:
        server.close()
    trace_id = caller.get_span_context().trace_id
    server_span = "/payments.v1.PaymentService/Charge"
    wait_for_spans(exporter, lambda spans: any(s.name == server_span for s in spans_of(exporter, trace_id)))
    spans = {s.name: s for s in spans_of(exporter, trace_id)}
    client_span = spans["payments.v1.PaymentService/Charge"]
    assert client_span.parent is not None
    assert client_span.parent.span_id == caller.get_span_context().span_id
    assert (client_span.attributes or {})["payments.client.attempts"] == 1
    served = spans[server_span]
    assert served.parent is not None
    assert client_span.context is not None
    assert served.parent.span_id == client_span.context.span_id
    assert (served.attributes or {})["payment.id"] == charged.resource.id


def test_default_target_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENTS_TARGET", "127.0.0.1:1")
    with PaymentsClient() as client:
        assert client.target == "127.0.0.1:1"
    monkeypatch.delenv("PAYMENTS_TARGET")
    with PaymentsClient() as client:
        assert client.target == DEFAULT_TARGET


def test_the_cli_calls_through_the_library(server: ServerHarness) -> None:
    """`payments charge|events` (server/cli.py) go through payments-client: same JSON, same error lines."""
    port = server.service.port
    args = ["charge", "--amount", "1250", "--currency", "EUR", "--payment-method", "pm_card_visa",
            "--idempotency-key", "cli-lib-1"]  # fmt: skip
    first = run_cli(*args, port=port)
    assert first.returncode == 0, first.stderr
    payment = json.loads(first.stdout)
    assert json.loads(run_cli(*args, port=port).stdout) == payment
    reused = run_cli(*[a if a != "1250" else "999" for a in args], port=port)
    assert reused.returncode == 1
    assert reused.stderr.startswith("error: FAILED_PRECONDITION IDEMPOTENCY_KEY_REUSED: ")
    events = run_cli("events", "--after", "0", port=port)
    assert events.returncode == 0, events.stderr
    assert payment["id"] in events.stdout


def test_a_dropped_watch_resumes_after_the_last_event(server: ServerHarness) -> None:
    """WatchEvents through a connection that is cut mid-stream: the library reopens it after the last
    event it yielded, so the consumer sees every event once, in order. The events committed after the
    cut can only reach it through a reopened stream (the first one may have had every earlier event in
    its buffer already)."""
    proxy = CuttingProxy(server.service.port)
    try:
        with PaymentsClient(proxy.target, timeout=10, retry=QUICK, options=FAST_RECONNECT) as client:
            for _ in range(3):
                client.charge(EUR_12_50, "pm_card_visa")
            watched = client.watch_events(after_event_id="0")
            seen = [next(watched).id]
            proxy.cut()
            for _ in range(2):
                client.charge(EUR_12_50, "pm_card_visa")
            expected = [e.id for e in client.list_events(page_size=100).events]
            assert len(expected) >= 10  # two events per charge
            seen += [next(watched).id for _ in range(len(expected) - 1)]
            watched.close()
    finally:
        proxy.close()
    assert seen == expected
