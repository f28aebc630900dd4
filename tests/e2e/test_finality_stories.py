"""Finality needs evidence, told as the three stories an operator met, through `payments serve`.

Each test runs the real server process (the composition root `payments serve` builds) against the
Stripe sandbox, which lives in the test process so it outlives restarts and counts what Stripe really
executed. Each story ends with one PSP execution per key and the true outcome:

1. a rotated API key: answers lost, then a restart with an expired key (401), then the fixed key;
2. a PSP that forgot the key (Stripe keeps keys 24 h): a client retry past the key's lifetime;
3. a 20-second outage of HTTP 500s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest

from adapters.sandboxes.stripe_sandbox import FaultKind, StripeSandbox
from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api.client import PaymentStub, payment_stub
from server.domain.idempotency import Operation, psp_idempotency_key
from tests.support.chaos import ServeProcess, client_channel, wait_for
from tests.support.requests import charge, error_reason

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")]

ORIGINAL_KEY = "sk_test_original_key"
EXPIRED_KEY = "sk_test_expired_key"
ROTATED_KEY = "sk_test_rotated_key"
INTENTS = "/v1/payment_intents"
TRANSFERS = "/v1/transfers"
ATTEMPTS_PER_CALL = 5  # the server's retry policy: every attempt of one RPC


@pytest.fixture
def sandbox() -> Iterator[StripeSandbox]:
    with StripeSandbox() as running:
        yield running


def serve(database_url: str, tmp_path: Path, sandbox: StripeSandbox, api_key: str, **env: str) -> ServeProcess:
    settings = {"PAYMENTS_STRIPE_API_KEY": api_key, "PAYMENTS_STRIPE_API_BASE": sandbox.url, **env}
    server = ServeProcess(database_url, tmp_path / "serve.log", env=settings)
    server.start()
    return server


def stub_for(server: ServeProcess) -> tuple[grpc.Channel, PaymentStub]:
    channel = client_channel(server.target)
    return channel, payment_stub(channel)


def events_to(database_url: str, status: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM resource_events WHERE to_status = $1", status))
        finally:
            await conn.close()

    return asyncio.run(count())


def unavailable(call: grpc.RpcError) -> bool:
    return isinstance(call, grpc.Call) and call.code() == grpc.StatusCode.UNAVAILABLE


def test_a_rotated_key_never_fails_what_stripe_executed(
    database_url: str, tmp_path: Path, sandbox: StripeSandbox
) -> None:
    """Answers lost five times, a restart with an expired key (401 on every attempt), then the fixed key:
    the charge and the payout are SUCCEEDED/PAID, never FAILED in between, executed once each."""
    server = serve(database_url, tmp_path, sandbox, ORIGINAL_KEY, PAYMENTS_RECOVERY_IDLE_SECONDS="1")
    payout = svc.PayoutRequest(
        idempotency_key="seller-7", amount=res.Money(amount_minor=4200, currency="EUR"),
        stripe_account_id="acct_seller7", reference="Payout 7",
    )  # fmt: skip
    try:
        channel, stub = stub_for(server)
        with channel:
            sandbox.inject(FaultKind.DROP_AFTER_WORK, ATTEMPTS_PER_CALL, method="POST", path_prefix=INTENTS)
            sandbox.inject(FaultKind.DROP_AFTER_WORK, ATTEMPTS_PER_CALL, method="POST", path_prefix=TRANSFERS)
            for method, request in (("Charge", charge("order-7")), ("Payout", payout)):
                with pytest.raises(grpc.RpcError) as lost:
                    getattr(stub, method)(request, timeout=30)
                assert unavailable(lost.value), lost.value
        assert sandbox.executions("payment_intents.create") == 1
        assert sandbox.executions("transfers.create") == 1
        server.terminate()

        # A deploy with an expired key: Stripe answers 401 to everything.
        sandbox.revoke_api_key(EXPIRED_KEY)
        server = serve(database_url, tmp_path, sandbox, EXPIRED_KEY, PAYMENTS_RECOVERY_IDLE_SECONDS="1")
        channel, stub = stub_for(server)
        with channel:
            for method, request in (("Charge", charge("order-7")), ("Payout", payout)):
                with pytest.raises(grpc.RpcError) as refused:
                    getattr(stub, method)(request, timeout=30)
                assert unavailable(refused.value), refused.value
                assert error_reason(refused.value) == "PSP_UNAVAILABLE"
            # The worker tries too, on its schedule, and is refused as well: an alert, never a failure.
            assert wait_for(lambda: "PSP_CREDENTIALS" in server.log_path.read_text(), timeout=20)
            assert "sk_test_expired_key" not in server.log_path.read_text()
            payments = stub.ListPayments(svc.ListPaymentsRequest(), timeout=5).payments
            assert [p.status for p in payments] == [res.PAYMENT_STATUS_PROCESSING]
        server.terminate()
        assert events_to(database_url, "FAILED") == 0

        # The key is fixed (rotated to a new valid key of the same account): the same keys finish.
        server = serve(database_url, tmp_path, sandbox, ROTATED_KEY)
        channel, stub = stub_for(server)
        with channel:
            paid = stub.Charge(charge("order-7"), timeout=30).payment
            assert paid.status == res.PAYMENT_STATUS_SUCCEEDED
            sent = stub.Payout(payout, timeout=30).payout
            assert sent.status == res.PAYOUT_STATUS_PAID
        assert sandbox.executions("payment_intents.create") == 1
        assert sandbox.executions("transfers.create") == 1
        assert events_to(database_url, "FAILED") == 0
    finally:
        server.close()


def test_a_retry_after_stripe_forgot_the_key_never_charges_twice(
    database_url: str, tmp_path: Path, sandbox: StripeSandbox
) -> None:
    """Stripe keeps idempotency keys 24 h (here: the service is told 2 s). Client retries after that
    must look the charges up, not send them again under keys Stripe no longer knows."""
    keys = [f"forgotten-{n}" for n in range(30)]
    # The worker is kept out of the way: this story is about the client's retry path.
    server = serve(database_url, tmp_path, sandbox, ORIGINAL_KEY,
                   PAYMENTS_STRIPE_KEY_TTL_SECONDS="2", PAYMENTS_RECOVERY_IDLE_SECONDS="600")  # fmt: skip
    try:
        channel, stub = stub_for(server)
        with channel:
            sandbox.inject(FaultKind.DROP_AFTER_WORK, len(keys) * ATTEMPTS_PER_CALL, method="POST", path_prefix=INTENTS)
            for key in keys:
                with pytest.raises(grpc.RpcError) as lost:
                    stub.Charge(charge(key), timeout=30)
                assert unavailable(lost.value)
            assert sandbox.executions("payment_intents.create") == len(keys)
            time.sleep(2.5)  # past the key lifetime the service was given
            sandbox.forget_idempotency_keys()
            creates_before = sum(1 for r in sandbox.requests() if r.method == "POST" and r.path == INTENTS)
            for key in keys:
                payment = stub.Charge(charge(key), timeout=30).payment
                assert payment.status == res.PAYMENT_STATUS_SUCCEEDED
        assert sandbox.executions("payment_intents.create") == len(keys)
        for key in keys:
            assert sandbox.executions_for_key(psp_idempotency_key("default", key, Operation.CHARGE)) == 1
        creates_after = sum(1 for r in sandbox.requests() if r.method == "POST" and r.path == INTENTS)
        assert creates_after == creates_before, "a create was re-sent past the key's lifetime"
    finally:
        server.close()


def test_after_a_twenty_second_outage_everything_is_final_within_a_minute(
    database_url: str, tmp_path: Path, sandbox: StripeSandbox
) -> None:
    """30 charges during 20 s of HTTP 500 (clients retry a little, then give up): once Stripe answers
    again, the recovery worker finishes every one of them within 60 s; none needs reconciliation."""
    keys = [f"outage-{n}" for n in range(30)]
    server = serve(database_url, tmp_path, sandbox, ORIGINAL_KEY, PAYMENTS_PSP_BUDGET_SECONDS="3")
    try:
        channel, stub = stub_for(server)
        with channel:
            sandbox.set_fault_rate(1.0, [FaultKind.HTTP_500])
            outage_started = time.monotonic()
            for key in keys:
                for _ in range(2):  # the caller retries once, then leaves it to the service
                    with pytest.raises(grpc.RpcError) as failed:
                        stub.Charge(charge(key), timeout=30)
                    assert unavailable(failed.value)
                    assert error_reason(failed.value) == "PSP_UNAVAILABLE"
            time.sleep(max(0.0, 20.0 - (time.monotonic() - outage_started)))
            sandbox.clear_faults()
            recovered_at = time.monotonic()

            def statuses() -> list[int]:
                request = svc.ListPaymentsRequest(page_size=100)
                return [p.status for p in stub.ListPayments(request, timeout=5).payments]

            assert wait_for(lambda: statuses() == [res.PAYMENT_STATUS_SUCCEEDED] * len(keys), timeout=60, interval=0.5)
            took = time.monotonic() - recovered_at
            print(f"all {len(keys)} charges SUCCEEDED {took:.1f} s after the outage ended")
            assert took < 60.0
            for key in keys:  # and each replay answers the final state
                assert stub.Charge(charge(key), timeout=30).payment.status == res.PAYMENT_STATUS_SUCCEEDED
        assert events_to(database_url, "REQUIRES_RECONCILIATION") == 0
        for key in keys:
            assert sandbox.executions_for_key(psp_idempotency_key("default", key, Operation.CHARGE)) == 1
    finally:
        server.close()


def test_a_refund_stripe_answers_pending_is_followed_to_its_end(
    database_url: str, tmp_path: Path, sandbox: StripeSandbox
) -> None:
    """Found by the model-based test: a refund answered "pending" stayed PENDING, its amount reserved,
    because a PENDING -> PENDING transition kept a poll schedule it never had."""
    sandbox.stop()
    with StripeSandbox(settle_after_seconds=0.5) as settling:
        server = serve(database_url, tmp_path, settling, ORIGINAL_KEY)
        try:
            channel, stub = stub_for(server)
            with channel:
                payment = stub.Charge(charge("pending-refund", method="pm_card_pendingRefund"), timeout=30).payment
                request = svc.RefundRequest(idempotency_key="pending-refund-r", payment_id=payment.id)
                pending = stub.Refund(request, timeout=30).refund
                assert pending.status == res.REFUND_STATUS_PENDING

                def refunded() -> bool:
                    now = stub.GetRefund(svc.GetRefundRequest(id=pending.id), timeout=5).refund
                    return bool(now.status == res.REFUND_STATUS_SUCCEEDED)

                assert wait_for(refunded, timeout=20, interval=0.2)
                after = stub.GetPayment(svc.GetPaymentRequest(id=payment.id), timeout=5).payment
                assert after.amount_refunded.amount_minor == payment.amount.amount_minor
                assert stub.Refund(request, timeout=30).refund.status == res.REFUND_STATUS_SUCCEEDED  # replay
        finally:
            server.close()
