"""Request builders and error inspection shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api.client import PaymentStub


def charge(
    key: str,
    amount: int = 1250,
    currency: str = "EUR",
    method: str = "pm_card_visa",
    *,
    customer_id: str = "",
    description: str = "",
    metadata: dict[str, str] | None = None,
    manual: bool = False,
    return_url: str = "",
) -> svc.ChargeRequest:
    return svc.ChargeRequest(
        idempotency_key=key,
        amount=res.Money(amount_minor=amount, currency=currency),
        payment_method=method,
        customer_id=customer_id,
        description=description,
        metadata=metadata or {},
        capture_method=res.CAPTURE_METHOD_MANUAL if manual else res.CAPTURE_METHOD_UNSPECIFIED,
        return_url=return_url,
    )


def capture(
    key: str, payment_id: str, amount: int | None = None, *, final: bool | None = None, currency: str = "EUR"
) -> svc.CapturePaymentRequest:
    request = svc.CapturePaymentRequest(idempotency_key=key, payment_id=payment_id)
    if amount is not None:
        request.amount.CopyFrom(res.Money(amount_minor=amount, currency=currency))
    if final is not None:
        request.final_capture = final
    return request


def cancel(key: str, payment_id: str, reason: str = "") -> svc.CancelPaymentRequest:
    return svc.CancelPaymentRequest(idempotency_key=key, payment_id=payment_id, reason=reason)


def refund(key: str, payment_id: str, amount: int | None = None, currency: str = "EUR") -> svc.RefundRequest:
    request = svc.RefundRequest(idempotency_key=key, payment_id=payment_id)
    if amount is not None:
        request.amount.CopyFrom(res.Money(amount_minor=amount, currency=currency))
    return request


def sepa_payout(key: str, amount: int = 5000, iban: str = "DE89370400440532013000", instant: bool = False,
                currency: str = "EUR", name: str = "Müller GmbH") -> svc.PayoutRequest:  # fmt: skip
    return svc.PayoutRequest(
        idempotency_key=key,
        amount=res.Money(amount_minor=amount, currency=currency),
        sepa_account=res.SepaAccount(iban=iban, name=name, address=res.PostalAddress(country="DE", town="Berlin")),
        instant=instant,
        reference="Invoice 42",
    )


def status_of(error: grpc.RpcError) -> status_pb2.Status:
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    assert status is not None, f"no rich status on {error.code()}: {error.details()}"
    return status


def error_reason(error: grpc.RpcError) -> str:
    for detail in status_of(error).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    raise AssertionError("no ErrorInfo in the status")


def field_violations(error: grpc.RpcError) -> list[str]:
    for detail in status_of(error).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return [v.field for v in bad.field_violations]
    return []


def has_retry_info(error: grpc.RpcError) -> bool:
    return any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status_of(error).details)


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    """The error a call that must fail raised (the test fails if it succeeded)."""
    try:
        call()
    except grpc.RpcError as error:
        return error
    raise AssertionError("the call succeeded")


def capture_or_cancel_race(stub: PaymentStub, payment_id: str, prefix: str, callers: int = 50) -> list[str]:
    """`callers` concurrent callers, odd ones capturing and even ones cancelling the payment, each with its
    own key `<prefix>-<n>`; returns each caller's answer: "OK" or the error's reason."""

    def attempt(n: int) -> str:
        try:
            if n % 2:
                stub.CapturePayment(capture(f"{prefix}-{n}", payment_id), timeout=30)
            else:
                stub.CancelPayment(cancel(f"{prefix}-{n}", payment_id), timeout=30)
        except grpc.RpcError as exc:
            return error_reason(exc)
        return "OK"

    with ThreadPoolExecutor(callers) as pool:
        return list(pool.map(attempt, range(callers)))
