"""Business errors to gRPC statuses with the rich error model (docs/contract.md, Interface).

Every error carries one google.rpc.ErrorInfo (reason UPPER_SNAKE_CASE, our domain), plus BadRequest
field violations for bad input and RetryInfo where retrying can help.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from server.domain.errors import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    PayeeRefused,
    PaymentNotCancelable,
    PaymentNotCapturable,
    PaymentNotRefundable,
    PermissionDenied,
    PspUnavailable,
    RefundExceedsRemaining,
    RetryLater,
    ServiceError,
    StorageUnavailable,
    Unauthenticated,
)

ERROR_DOMAIN = "payments.v1.PaymentService"

_CODES: list[tuple[type[ServiceError], int]] = [
    (InvalidRequest, code_pb2.INVALID_ARGUMENT),
    (NotFound, code_pb2.NOT_FOUND),
    (IdempotencyKeyReused, code_pb2.FAILED_PRECONDITION),
    (IdempotencyKeyInUse, code_pb2.ABORTED),
    (RefundExceedsRemaining, code_pb2.FAILED_PRECONDITION),
    (PaymentNotRefundable, code_pb2.FAILED_PRECONDITION),
    (PaymentNotCapturable, code_pb2.FAILED_PRECONDITION),
    (PaymentNotCancelable, code_pb2.FAILED_PRECONDITION),
    (PayeeRefused, code_pb2.FAILED_PRECONDITION),
    (PspUnavailable, code_pb2.UNAVAILABLE),
    (StorageUnavailable, code_pb2.UNAVAILABLE),
    (Unauthenticated, code_pb2.UNAUTHENTICATED),
    (PermissionDenied, code_pb2.PERMISSION_DENIED),
]


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _retry_after(error: ServiceError) -> float | None:
    return error.retry_after_seconds if isinstance(error, RetryLater) else None


def error_status(error: ServiceError, domain: str = ERROR_DOMAIN) -> status_pb2.Status:
    """`domain` is the ErrorInfo domain: the service that answers (payments.v1 unless told)."""
    code = next((c for cls, c in _CODES if isinstance(error, cls)), code_pb2.FAILED_PRECONDITION)
    status = status_pb2.Status(code=code, message=error.message)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=domain, metadata=error.metadata)
    status.details.append(_pack(info))
    if isinstance(error, InvalidRequest):
        bad = error_details_pb2.BadRequest()
        for v in error.violations:
            bad.field_violations.add(field=v.field, description=v.description, reason=v.reason)
        status.details.append(_pack(bad))
    retry_after = _retry_after(error)
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after * 1e9))
        status.details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status


def internal_status(message: str, domain: str = ERROR_DOMAIN) -> status_pb2.Status:
    status = status_pb2.Status(code=code_pb2.INTERNAL, message=message)
    status.details.append(_pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=domain)))
    return status


def grpc_code(code: int) -> grpc.StatusCode:
    return next(c for c in grpc.StatusCode if c.value[0] == code)
