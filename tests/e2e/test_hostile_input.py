"""Bad input gets INVALID_ARGUMENT (with field violations) or NOT_FOUND, never INTERNAL/UNKNOWN."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings

from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from tests.support.harness import ServerHarness
from tests.support.protofuzz import any_request
from tests.support.requests import charge, error_reason, field_violations, refund, sepa_payout

BAD_CHARGES = [
    ("missing key", charge(""), "idempotency_key"),
    ("256-character key", charge("k" * 256), "idempotency_key"),
    ("non-printable key", charge("k\x00y"), "idempotency_key"),
    ("amount 0", charge("a0", amount=0), "amount.amount_minor"),
    ("negative amount", charge("an", amount=-5), "amount.amount_minor"),
    ("over the limit", charge("al", amount=10**12), "amount.amount_minor"),
    ("unknown currency", charge("cu", currency="XYZ"), "amount.currency"),
    ("lower-case currency", charge("cl", currency="eur"), "amount.currency"),
    ("missing amount", svc.ChargeRequest(idempotency_key="m", payment_method="pm_card_visa"), "amount"),
    ("missing payment method", charge("pm", method=""), "payment_method"),
    ("raw card number", charge("pan", method="4242 4242 4242 4242"), "payment_method"),
]


@pytest.mark.parametrize(("case", "request_", "field"), BAD_CHARGES, ids=[c[0] for c in BAD_CHARGES])
def test_bad_charge_is_invalid_argument_naming_the_field(
    server: ServerHarness, case: str, request_: svc.ChargeRequest, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.Charge(request_, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
    assert field in field_violations(caught.value)
    assert error_reason(caught.value)
    assert server.sandbox.total_calls() == 0


def test_invalid_request_is_not_stored_under_its_key(server: ServerHarness) -> None:
    with pytest.raises(grpc.RpcError):
        server.stub.Charge(charge("fix-me", amount=0), timeout=10)
    fixed = server.stub.Charge(charge("fix-me", amount=100), timeout=10)
    assert fixed.payment.status == res.PAYMENT_STATUS_SUCCEEDED


@pytest.mark.parametrize(
    ("rpc", "request_", "code"),
    [
        ("GetPayment", svc.GetPaymentRequest(id="nonsense"), grpc.StatusCode.INVALID_ARGUMENT),
        ("GetPayment", svc.GetPaymentRequest(id="re_" + "a" * 32), grpc.StatusCode.INVALID_ARGUMENT),
        ("GetPayment", svc.GetPaymentRequest(id="pay_" + "a" * 32), grpc.StatusCode.NOT_FOUND),
        ("GetRefund", svc.GetRefundRequest(id="re_" + "b" * 32), grpc.StatusCode.NOT_FOUND),
        ("GetPayout", svc.GetPayoutRequest(id="po_" + "c" * 32), grpc.StatusCode.NOT_FOUND),
        ("GetPayout", svc.GetPayoutRequest(id=""), grpc.StatusCode.INVALID_ARGUMENT),
        ("Refund", refund("r", "pay_" + "d" * 32), grpc.StatusCode.NOT_FOUND),
        ("Refund", refund("r", "garbage"), grpc.StatusCode.INVALID_ARGUMENT),
        ("Payout", sepa_payout("p", iban="DE00370400440532013000"), grpc.StatusCode.INVALID_ARGUMENT),
        ("Payout", sepa_payout("p", currency="USD"), grpc.StatusCode.INVALID_ARGUMENT),
        ("Payout", sepa_payout("p", amount=10_000_001, instant=True), grpc.StatusCode.INVALID_ARGUMENT),
        ("ListPayments", svc.ListPaymentsRequest(page_token="not-a-token"), grpc.StatusCode.INVALID_ARGUMENT),
        ("ListPayments", svc.ListPaymentsRequest(page_size=-1), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_bad_ids_and_payouts(server: ServerHarness, rpc: str, request_: object, code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        getattr(server.stub, rpc)(request_, timeout=10)
    assert caught.value.code() == code
    assert error_reason(caught.value)


def test_invalid_iban_error_does_not_echo_the_iban(server: ServerHarness) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.Payout(sepa_payout("p", iban="DE00370400440532013000"), timeout=10)
    assert "370400440532013000" not in (caught.value.details() or "")
    assert "sepa_account.iban" in field_violations(caught.value)


def test_garbage_bytes_are_invalid_argument(server: ServerHarness) -> None:
    raw = server.channel.unary_unary(
        "/payments.v1.PaymentService/Charge", request_serializer=None, response_deserializer=None
    )
    with pytest.raises(grpc.RpcError) as caught:
        raw(b"\xff\xff\xff\xff\x0f garbage", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


ANY_REQUEST = any_request()
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=ANY_REQUEST)
def test_arbitrary_requests_never_yield_internal_or_unknown(server: ServerHarness, call: tuple[str, object]) -> None:
    rpc, request = call
    try:
        getattr(server.stub, rpc)(request, timeout=10)
        code = grpc.StatusCode.OK
    except grpc.RpcError as error:
        code = error.code()
        if code != grpc.StatusCode.OK:
            assert error_reason(error), "every error carries ErrorInfo"
    assert code in ALLOWED, f"{rpc} answered {code}"
