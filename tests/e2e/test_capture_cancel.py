"""Authorize, then capture or cancel (docs/contract.md, Capture and cancel): through real gRPC on real
PostgreSQL, with the in-process PSP. The Stripe path is in test_capture_stripe.py."""

from __future__ import annotations

import grpc
import pytest

from adapters.sandboxes.inprocess import FaultKind
from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.domain.idempotency import Operation, psp_idempotency_key
from tests.support.harness import ServerHarness
from tests.support.requests import (
    cancel,
    capture,
    capture_or_cancel_race,
    charge,
    error_reason,
    field_violations,
    refund,
)


def authorized(server: ServerHarness, key: str, amount: int = 1000) -> res.Payment:
    payment = server.stub.Charge(charge(key, amount=amount, manual=True), timeout=10).payment
    assert payment.status == res.PAYMENT_STATUS_REQUIRES_CAPTURE
    assert payment.capture_method == res.CAPTURE_METHOD_MANUAL
    assert (payment.amount_capturable.amount_minor, payment.amount_captured.amount_minor) == (amount, 0)
    return payment


def refusal(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code(), error_reason(caught.value)


def test_manual_charge_partial_capture_then_refund_of_the_captured_amount(server: ServerHarness) -> None:
    payment = authorized(server, "cap-1")
    captured = server.stub.CapturePayment(capture("cap-1-c", payment.id, 600), timeout=10).payment
    assert captured.status == res.PAYMENT_STATUS_SUCCEEDED
    assert (captured.amount_captured.amount_minor, captured.amount_capturable.amount_minor) == (600, 0)
    stored = server.stub.GetPayment(svc.GetPaymentRequest(id=payment.id), timeout=10).payment
    assert stored.amount_captured.amount_minor == 600
    # The replay is the same answer; the PSP captured once.
    again = server.stub.CapturePayment(capture("cap-1-c", payment.id, 600), timeout=10).payment
    assert again == captured
    assert server.sandbox.calls_for(psp_idempotency_key("default", "cap-1-c", Operation.CAPTURE)) == 1
    # Refunds apply to what was captured: all that remains is 600, not 1000.
    refunded = server.stub.Refund(refund("cap-1-r", payment.id), timeout=10).refund
    assert refunded.amount.amount_minor == 600
    # A second capture after the final one is refused, and the refusal replays.
    assert refusal(lambda: server.stub.CapturePayment(capture("cap-1-c2", payment.id), timeout=10)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_NOT_CAPTURABLE")  # fmt: skip
    assert refusal(lambda: server.stub.CapturePayment(capture("cap-1-c2", payment.id), timeout=10)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_NOT_CAPTURABLE")  # fmt: skip


def test_non_final_captures_keep_the_rest_capturable(server: ServerHarness) -> None:
    payment = authorized(server, "cap-2")
    first = server.stub.CapturePayment(capture("cap-2-a", payment.id, 300, final=False), timeout=10).payment
    assert first.status == res.PAYMENT_STATUS_REQUIRES_CAPTURE
    assert (first.amount_captured.amount_minor, first.amount_capturable.amount_minor) == (300, 700)
    assert refusal(lambda: server.stub.CapturePayment(capture("cap-2-x", payment.id, 701), timeout=10)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_NOT_CAPTURABLE")  # fmt: skip
    rest = server.stub.CapturePayment(capture("cap-2-b", payment.id), timeout=10).payment
    assert rest.status == res.PAYMENT_STATUS_SUCCEEDED
    assert (rest.amount_captured.amount_minor, rest.amount_capturable.amount_minor) == (1000, 0)


def test_manual_charge_then_cancel(server: ServerHarness) -> None:
    payment = authorized(server, "can-1")
    canceled = server.stub.CancelPayment(cancel("can-1-x", payment.id, "requested_by_customer"), timeout=10).payment
    assert canceled.status == res.PAYMENT_STATUS_CANCELED
    assert canceled.cancellation_reason == "requested_by_customer"
    assert canceled.amount_capturable.amount_minor == 0
    assert refusal(lambda: server.stub.CapturePayment(capture("can-1-c", payment.id), timeout=10)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_NOT_CAPTURABLE")  # fmt: skip
    assert refusal(lambda: server.stub.CancelPayment(cancel("can-1-y", payment.id), timeout=10)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_NOT_CANCELABLE")  # fmt: skip
    assert refusal(lambda: server.stub.Refund(refund("can-1-r", payment.id), timeout=10)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_NOT_REFUNDABLE")  # fmt: skip


def test_an_automatic_charge_is_neither_capturable_nor_cancelable(server: ServerHarness) -> None:
    payment = server.stub.Charge(charge("auto-1"), timeout=10).payment
    assert payment.status == res.PAYMENT_STATUS_SUCCEEDED
    assert payment.amount_captured.amount_minor == payment.amount.amount_minor
    assert refusal(lambda: server.stub.CapturePayment(capture("auto-1-c", payment.id), timeout=10))[1] == (
        "PAYMENT_NOT_CAPTURABLE")  # fmt: skip
    assert refusal(lambda: server.stub.CancelPayment(cancel("auto-1-x", payment.id), timeout=10))[1] == (
        "PAYMENT_NOT_CANCELABLE")  # fmt: skip


def test_capture_and_cancel_race_one_winner_one_psp_call(server: ServerHarness) -> None:
    payment = authorized(server, "race-1")
    server.sandbox.set_latency(0.05)  # the winner is still at the PSP while the others arrive

    answers = capture_or_cancel_race(server.stub, payment.id, "race-1")
    assert answers.count("OK") == 1, answers
    assert set(answers) - {"OK"} <= {"PAYMENT_NOT_CAPTURABLE", "PAYMENT_NOT_CANCELABLE"}, answers
    winner = answers.index("OK")
    operation = Operation.CAPTURE if winner % 2 else Operation.CANCEL
    psp_calls = sum(
        server.sandbox.calls_for(psp_idempotency_key("default", f"race-1-{n}", op))
        for n in range(50) for op in (Operation.CAPTURE, Operation.CANCEL)
    )  # fmt: skip
    assert psp_calls == 1
    assert server.sandbox.calls_for(psp_idempotency_key("default", f"race-1-{winner}", operation)) == 1
    final = server.stub.GetPayment(svc.GetPaymentRequest(id=payment.id), timeout=10).payment
    expected = res.PAYMENT_STATUS_SUCCEEDED if operation is Operation.CAPTURE else res.PAYMENT_STATUS_CANCELED
    assert final.status == expected


def test_a_capture_whose_answer_was_lost_completes_on_retry_with_one_execution(server: ServerHarness) -> None:
    payment = authorized(server, "lost-1")
    server.sandbox.fail_next(50, FaultKind.LOSE_ANSWER)  # every attempt of the call loses its answer
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.CapturePayment(capture("lost-1-c", payment.id, 400), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    server.sandbox.clear_faults()
    # Meanwhile the capture is under way: another action is refused, not sent.
    assert refusal(lambda: server.stub.CancelPayment(cancel("lost-1-x", payment.id), timeout=10))[1] == (
        "PAYMENT_NOT_CANCELABLE")  # fmt: skip
    captured = server.stub.CapturePayment(capture("lost-1-c", payment.id, 400), timeout=10).payment
    assert captured.status == res.PAYMENT_STATUS_SUCCEEDED
    assert captured.amount_captured.amount_minor == 400
    assert server.sandbox.executions() == 2  # the charge and one capture


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (cancel("bad-1", "pay_" + "0" * 32, reason="because"), "reason"),
        (capture("bad-2", "not-an-id"), "payment_id"),
        (capture("", "pay_" + "0" * 32), "idempotency_key"),
        (
            svc.RefundRequest(idempotency_key="bad-3", payment_id="pay_" + "0" * 32, reason="the customer asked"),
            "reason",
        ),  # refund reasons are Stripe's three
        (charge("bad-4", return_url="http://shop.example/back"), "return_url"),
        (charge("bad-5", return_url="https://user:pw@shop.example/back"), "return_url"),
    ],
)
def test_bad_lifecycle_requests_are_refused_before_the_key(server: ServerHarness, request_: object, field: str) -> None:
    def send() -> None:
        if isinstance(request_, svc.CancelPaymentRequest):
            server.stub.CancelPayment(request_, timeout=10)
        elif isinstance(request_, svc.RefundRequest):
            server.stub.Refund(request_, timeout=10)
        elif isinstance(request_, svc.ChargeRequest):
            server.stub.Charge(request_, timeout=10)
        else:
            assert isinstance(request_, svc.CapturePaymentRequest)
            server.stub.CapturePayment(request_, timeout=10)

    with pytest.raises(grpc.RpcError) as caught:
        send()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in " ".join(field_violations(caught.value))


def test_capture_of_an_unknown_payment_is_not_found(server: ServerHarness) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.CapturePayment(capture("nf-1", "pay_" + "0" * 32), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
