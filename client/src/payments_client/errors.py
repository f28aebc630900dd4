"""Typed exceptions for the service's errors, decoded from the rich error model (docs/contract.md, Errors).

The service answers every error with one google.rpc.ErrorInfo (a reason such as IDEMPOTENCY_KEY_REUSED),
BadRequest field violations for bad input and RetryInfo where a retry can help. Callers catch by meaning
(`except RefundExceedsRemaining`), never by parsing message text. `PaymentsError` is the root. Below it
is one class per gRPC code the contract uses (`FailedPrecondition`, `Unavailable`, ...), and below those
one class per ErrorInfo reason. Each reason class names its reason once, in `REASON`; the lookup table
is built from those classes, so adding a reason is adding one class. An unknown reason (from a newer
server) falls back to the class of its gRPC code, so old clients still catch it by meaning.

Every error carries the idempotency key of the logical call that failed: after an UNAVAILABLE or a
DEADLINE_EXCEEDED the outcome may still be unknown, and retrying later with that key is the only safe
way to learn it or finish it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from payments_client.retry import RETRYABLE_CODES

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (google.rpc.BadRequest.FieldViolation), e.g. `amount.amount_minor`."""

    field: str
    description: str
    reason: str = ""


class PaymentsError(Exception):
    """Root of every error the client raises for a call that did not succeed."""

    CODE: ClassVar[grpc.StatusCode | None] = None

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: Iterable[FieldViolation] = (),
        retry_delay: float | None = None,
        idempotency_key: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        self.retry_delay = retry_delay
        self.idempotency_key = idempotency_key
        self.attempts = attempts

    @property
    def retryable(self) -> bool:
        """True when the same call with the same idempotency key may still succeed later: nothing was
        decided (UNAVAILABLE, ABORTED), or the outcome is unknown (DEADLINE_EXCEEDED)."""
        return self.code in RETRYABLE_CODES or self.code == grpc.StatusCode.DEADLINE_EXCEEDED

    def __str__(self) -> str:
        head = f"{self.code.name}" + (f" {self.reason}" if self.reason else "") + f": {self.message}"
        return "\n".join([head, *(f"  - {v.field}: {v.description}" for v in self.field_violations)])


# ------------------------------------------------------------------------------------------- by gRPC code


class InvalidArgument(PaymentsError):
    """The request is malformed; `field_violations` says which fields and why. The key was not used."""

    CODE = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(PaymentsError):
    """No such resource, or it belongs to another client."""

    CODE = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(PaymentsError):
    """The request is valid but the resource's state refuses it; retrying unchanged gets the same answer."""

    CODE = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(PaymentsError):
    """A conflict that resolves by itself; retried with the same key until the deadline."""

    CODE = grpc.StatusCode.ABORTED


class Unavailable(PaymentsError):
    """The service or its PSP could not be reached; nothing final was decided. Retry with the same key."""

    CODE = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(PaymentsError):
    """The call's deadline passed: the outcome is unknown. Retry later with the same idempotency key."""

    CODE = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(PaymentsError):
    """No or bad credentials (client certificate or bearer token)."""

    CODE = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(PaymentsError):
    CODE = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(PaymentsError):
    """A bound of the service was exceeded (message size, metadata): the request must shrink."""

    CODE = grpc.StatusCode.RESOURCE_EXHAUSTED


class Internal(PaymentsError):
    """A fault of the service (INTERNAL, UNKNOWN, DATA_LOSS): never caused by what the caller sent."""

    CODE = grpc.StatusCode.INTERNAL


# ------------------------------------------------------------------------------------ by ErrorInfo reason


class IdempotencyKeyReused(FailedPrecondition):
    """The key was already used for a different request: a new operation needs a new key."""

    REASON: ClassVar[str] = "IDEMPOTENCY_KEY_REUSED"


class IdempotencyKeyInUse(Aborted):
    """The first request with this key is still running (retried automatically, honouring RetryInfo)."""

    REASON: ClassVar[str] = "IDEMPOTENCY_KEY_IN_USE"


class RefundExceedsRemaining(FailedPrecondition):
    REASON: ClassVar[str] = "REFUND_EXCEEDS_REMAINING"


class PaymentNotRefundable(FailedPrecondition):
    REASON: ClassVar[str] = "PAYMENT_NOT_REFUNDABLE"


class PaymentNotCapturable(FailedPrecondition):
    REASON: ClassVar[str] = "PAYMENT_NOT_CAPTURABLE"


class PaymentNotCancelable(FailedPrecondition):
    REASON: ClassVar[str] = "PAYMENT_NOT_CANCELABLE"


class PayeeNameMismatch(FailedPrecondition):
    """Verification of Payee: the name does not match the account's holder."""

    REASON: ClassVar[str] = "PAYEE_NAME_MISMATCH"


class PayeeNameCloseMatch(FailedPrecondition):
    REASON: ClassVar[str] = "PAYEE_NAME_CLOSE_MATCH"


class PayeeVerificationUnavailable(FailedPrecondition):
    REASON: ClassVar[str] = "PAYEE_VERIFICATION_UNAVAILABLE"


class PspUnavailable(Unavailable):
    """The PSP gave no final answer; the same key resumes the operation without a second charge."""

    REASON: ClassVar[str] = "PSP_UNAVAILABLE"


class DatabaseUnavailable(Unavailable):
    REASON: ClassVar[str] = "DATABASE_UNAVAILABLE"


_BY_CODE: dict[grpc.StatusCode, type[PaymentsError]] = {
    cls.CODE: cls
    for cls in (
        InvalidArgument,
        NotFound,
        FailedPrecondition,
        Aborted,
        Unavailable,
        DeadlineExceeded,
        Unauthenticated,
        PermissionDenied,
        ResourceExhausted,
        Internal,
    )
    if cls.CODE is not None
}
_BY_CODE |= {grpc.StatusCode.UNKNOWN: Internal, grpc.StatusCode.DATA_LOSS: Internal}


def _reason_classes(root: type[PaymentsError]) -> list[type[PaymentsError]]:
    found = []
    for sub in root.__subclasses__():
        if "REASON" in vars(sub):
            found.append(sub)
        found += _reason_classes(sub)
    return found


BY_REASON: dict[str, type[PaymentsError]] = {str(vars(cls)["REASON"]): cls for cls in _reason_classes(PaymentsError)}


def error_class(code: grpc.StatusCode, reason: str) -> type[PaymentsError]:
    """The most specific class: the reason's, if the reason arrived with the code it belongs to; else the
    code's; else the root."""
    by_reason = BY_REASON.get(reason)
    if by_reason is not None and code == by_reason.CODE:
        return by_reason
    return _BY_CODE.get(code, PaymentsError)


def _status(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> status_pb2.Status | None:
    for key, value in trailing_metadata or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None


def error_from_rpc(error: grpc.RpcError, *, idempotency_key: str | None = None, attempts: int = 1) -> PaymentsError:
    """Decodes a failed call (sync or grpc.aio) into its typed exception."""
    if isinstance(error, grpc.aio.AioRpcError | grpc.Call):
        code, message, trailing = error.code(), error.details() or "", error.trailing_metadata()
    else:  # an RpcError that is not a finished call (should not happen with unary calls)
        code, message, trailing = grpc.StatusCode.UNKNOWN, str(error), None
    reason, domain, metadata = "", "", {}
    violations: list[FieldViolation] = []
    retry_delay: float | None = None
    status = _status(trailing)  # type: ignore[arg-type]  # Metadata and the sync tuple are both (key, value) pairs
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [FieldViolation(v.field, v.description, v.reason) for v in bad.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
    cls = error_class(code, reason)
    return cls(
        message, code=code, reason=reason, domain=domain, metadata=metadata, field_violations=violations,
        retry_delay=retry_delay, idempotency_key=idempotency_key, attempts=attempts,
    )  # fmt: skip
