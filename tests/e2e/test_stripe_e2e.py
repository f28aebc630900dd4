"""Charges and refunds through the real gRPC server, PostgreSQL and the Stripe sandbox over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
import stripe

from adapters.directory import ProviderSet
from adapters.retry import RetryingProvider, RetryPolicy
from adapters.sandboxes.stripe_objects import CREATE_PAYMENT_INTENT, CREATE_REFUND
from adapters.sandboxes.stripe_sandbox import StripeSandbox
from adapters.stripe_psp import StripeAdapter, close_http_client, stripe_client
from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from tests.support.harness import ServerHarness
from tests.support.requests import charge, error_reason, refund

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


class StripeServer:
    def __init__(self, database_url: str) -> None:
        self.sandbox = StripeSandbox().start()
        self.http_client = stripe.HTTPXClient(timeout=10)
        client = stripe_client("sk_test_sandbox", self.sandbox.url, self.http_client)
        policy = RetryPolicy(max_attempts=5, initial_backoff=0.01, max_backoff=0.05, attempt_timeout=5.0)
        cards = RetryingProvider(StripeAdapter(client), policy)
        self.harness = ServerHarness(database_url, providers=ProviderSet(cards=cards))

    def close(self) -> None:
        self.harness.run(close_http_client(self.http_client))
        self.harness.close()
        self.sandbox.stop()


@pytest.fixture
def stripe_server(database_url: str) -> Iterator[StripeServer]:
    server = StripeServer(database_url)
    yield server
    server.close()


def test_charge_through_stripe_with_500s_makes_one_intent(stripe_server: StripeServer) -> None:
    stripe_server.sandbox.inject("http_500", count=3, method="POST")
    payment = stripe_server.harness.stub.Charge(charge("s1"), timeout=10).payment
    assert payment.status == res.PAYMENT_STATUS_SUCCEEDED
    assert payment.psp == "stripe"
    assert payment.psp_reference.startswith("pi_")
    assert stripe_server.sandbox.executions(CREATE_PAYMENT_INTENT) == 1


def test_retry_after_is_honoured(stripe_server: StripeServer) -> None:
    stripe_server.sandbox.inject("http_429", count=1, method="POST", retry_after=1)
    started = time.monotonic()
    payment = stripe_server.harness.stub.Charge(charge("s429"), timeout=10).payment
    assert time.monotonic() - started >= 1.0
    assert payment.status == res.PAYMENT_STATUS_SUCCEEDED
    assert stripe_server.sandbox.executions(CREATE_PAYMENT_INTENT) == 1


def test_dropped_response_then_retry_is_one_intent_with_one_key(stripe_server: StripeServer) -> None:
    stripe_server.sandbox.inject("drop_after_work", count=1, method="POST")
    payment = stripe_server.harness.stub.Charge(charge("sdrop"), timeout=10).payment
    assert payment.status == res.PAYMENT_STATUS_SUCCEEDED
    assert stripe_server.sandbox.executions(CREATE_PAYMENT_INTENT) == 1
    keys = {r.idempotency_key for r in stripe_server.sandbox.requests() if r.method == "POST"}
    assert len(keys) == 1


def test_caller_deadline_against_a_stalling_psp(stripe_server: StripeServer) -> None:
    stripe_server.sandbox.inject("stall", count=20, method="POST", stall_seconds=5)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        stripe_server.harness.stub.Charge(charge("sstall"), timeout=0.3)
    elapsed = time.monotonic() - started
    assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert elapsed < 3.0, f"the RPC took {elapsed:.3f}s, not its 0.3 s deadline"  # the stall is 5 s
    stripe_server.sandbox.clear_faults()
    deadline = time.monotonic() + 10
    while True:  # the key stays resumable: retry it until the earlier attempt's lease is given back
        try:
            payment = stripe_server.harness.stub.Charge(charge("sstall"), timeout=5).payment
            break
        except grpc.RpcError as error:
            assert error.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE)
            assert time.monotonic() < deadline
    assert payment.status == res.PAYMENT_STATUS_SUCCEEDED
    assert stripe_server.sandbox.executions(CREATE_PAYMENT_INTENT) == 1


@pytest.mark.parametrize(
    ("method", "status", "decline"),
    [
        ("pm_card_visa_chargeDeclined", res.PAYMENT_STATUS_FAILED, "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", res.PAYMENT_STATUS_FAILED, "insufficient_funds"),
        ("pm_card_authenticationRequired", res.PAYMENT_STATUS_REQUIRES_ACTION, ""),
    ],
)
def test_declines_map(stripe_server: StripeServer, method: str, status: int, decline: str) -> None:
    payment = stripe_server.harness.stub.Charge(charge(f"d-{method}", method=method), timeout=10).payment
    assert payment.status == status
    assert payment.failure.decline_code == decline
    assert payment.psp_reference.startswith("pi_")


def test_refunds_up_to_the_remainder_then_refused_without_calling_stripe(stripe_server: StripeServer) -> None:
    stub = stripe_server.harness.stub
    payment = stub.Charge(charge("sref", amount=5000), timeout=10).payment
    first = stub.Refund(refund("sr1", payment.id, amount=2000), timeout=10).refund
    assert first.status == res.REFUND_STATUS_SUCCEEDED
    assert first.psp_reference.startswith("re_")
    rest = stub.Refund(refund("sr2", payment.id), timeout=10).refund
    assert rest.amount.amount_minor == 3000
    assert rest.status == res.REFUND_STATUS_SUCCEEDED
    requests_before = len(stripe_server.sandbox.requests())
    with pytest.raises(grpc.RpcError) as caught:
        stub.Refund(refund("sr3", payment.id, amount=1), timeout=10)
    assert error_reason(caught.value) == "REFUND_EXCEEDS_REMAINING"
    assert len(stripe_server.sandbox.requests()) == requests_before
    assert stripe_server.sandbox.executions(CREATE_REFUND) == 2
    after = stub.GetPayment(svc.GetPaymentRequest(id=payment.id), timeout=10).payment
    assert after.amount_refunded.amount_minor == 5000
