"""Typed exceptions from the rich error model (payments_client.errors), decoded from real status details the
way the server's edge encodes them (server/api/errors.py), without a network."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import status_pb2

from payments_client import errors
from payments_client.errors import (
    BY_REASON,
    FailedPrecondition,
    FieldViolation,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InvalidArgument,
    PaymentsError,
    PspUnavailable,
    RefundExceedsRemaining,
    Unavailable,
    error_class,
    error_from_rpc,
)
from server.api.errors import error_status, grpc_code
from server.domain import errors as domain


class FinishedCall(grpc.RpcError, grpc.Call):
    """A failed sync call as grpc raises it: code, details and the status in the trailing metadata."""

    def __init__(self, status: status_pb2.Status | None, code: grpc.StatusCode, details: str) -> None:
        self._status, self._code, self._details = status, code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:  # type: ignore[override]  # plain pairs
        if self._status is None:
            return ()
        return (("grpc-status-details-bin", self._status.SerializeToString()),)

    def initial_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: object) -> bool:
        return False


def served(error: domain.ServiceError) -> grpc.RpcError:
    status = error_status(error)
    return FinishedCall(status, grpc_code(status.code), status.message)


def test_every_reason_the_server_raises_has_its_class_under_the_right_code() -> None:
    raised = [
        domain.IdempotencyKeyReused(), domain.IdempotencyKeyInUse(0.25), domain.RefundExceedsRemaining("x"),
        domain.PaymentNotRefundable("x"), domain.PaymentNotCapturable("x"), domain.PaymentNotCancelable("x"),
        domain.PspUnavailable("x", 1.0), domain.StorageUnavailable(),
    ]  # fmt: skip
    for error in raised:
        decoded = error_from_rpc(served(error))
        assert type(decoded) is BY_REASON[error.reason], error.reason
        assert decoded.code == decoded.CODE


def test_reused_key_is_typed_and_not_retryable() -> None:
    decoded = error_from_rpc(served(domain.IdempotencyKeyReused()), idempotency_key="k-1", attempts=1)
    assert isinstance(decoded, IdempotencyKeyReused)
    assert isinstance(decoded, FailedPrecondition)
    assert decoded.reason == "IDEMPOTENCY_KEY_REUSED"
    assert decoded.domain == "payments.v1.PaymentService"
    assert decoded.idempotency_key == "k-1"
    assert not decoded.retryable
    assert str(decoded).startswith("FAILED_PRECONDITION IDEMPOTENCY_KEY_REUSED: this idempotency key")


def test_retry_info_is_read() -> None:
    in_use = error_from_rpc(served(domain.IdempotencyKeyInUse(0.25)))
    assert isinstance(in_use, IdempotencyKeyInUse)
    assert in_use.retry_delay == pytest.approx(0.25)
    assert in_use.retryable
    psp = error_from_rpc(served(domain.PspUnavailable("the PSP is away", 2.0)))
    assert isinstance(psp, PspUnavailable)
    assert isinstance(psp, Unavailable)
    assert psp.retry_delay == pytest.approx(2.0)


def test_field_violations_are_carried() -> None:
    violations = domain.Violations()
    violations.add("amount.amount_minor", "must be positive")
    violations.add("payment_method", "is required", "MISSING_FIELD")
    try:
        violations.raise_if_any()
    except domain.InvalidRequest as error:
        decoded = error_from_rpc(served(error))
    assert isinstance(decoded, InvalidArgument)
    assert decoded.reason == "INVALID_REQUEST"
    assert decoded.field_violations == (
        FieldViolation("amount.amount_minor", "must be positive", "INVALID_FIELD"),
        FieldViolation("payment_method", "is required", "MISSING_FIELD"),
    )
    assert "  - payment_method: is required" in str(decoded)


def test_unknown_reason_falls_back_to_its_code_and_a_bare_status_too() -> None:
    newer = error_from_rpc(served(type("Newer", (domain.RequestRejected,), {"default_reason": "SOMETHING_NEW"})("x")))
    assert type(newer) is FailedPrecondition
    assert newer.reason == "SOMETHING_NEW"
    transport = error_from_rpc(FinishedCall(None, grpc.StatusCode.UNAVAILABLE, "connection refused"))
    assert type(transport) is Unavailable
    assert transport.reason == ""
    assert transport.retryable
    odd = error_from_rpc(FinishedCall(None, grpc.StatusCode.CANCELLED, "cancelled"))
    assert type(odd) is PaymentsError


def test_a_reason_under_another_code_is_not_trusted() -> None:
    """REFUND_EXCEEDS_REMAINING belongs to FAILED_PRECONDITION; under UNAVAILABLE it must stay retryable."""
    assert error_class(grpc.StatusCode.FAILED_PRECONDITION, "REFUND_EXCEEDS_REMAINING") is RefundExceedsRemaining
    assert error_class(grpc.StatusCode.UNAVAILABLE, "REFUND_EXCEEDS_REMAINING") is Unavailable


def test_the_table_covers_every_reason_class() -> None:
    declared = [cls for cls in vars(errors).values() if isinstance(cls, type) and "REASON" in vars(cls)]
    assert sorted(BY_REASON) == sorted(vars(cls)["REASON"] for cls in declared)
    assert len(declared) >= 11
