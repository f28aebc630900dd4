"""Business errors: the root exception of the domain and use-case layers.

Each carries the `reason` that reaches callers in google.rpc.ErrorInfo; the gRPC edge maps classes to
status codes (docs/contract.md, Interface). Messages are safe to show: no card data, IBANs or secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str
    reason: str = "INVALID_FIELD"


class DomainError(Exception):
    """Root of every error this service reports to a caller on purpose."""

    default_reason: ClassVar[str] = "ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = self.default_reason


class InvalidRequest(DomainError):
    default_reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation]) -> None:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"invalid request: {summary}")
        self.violations = violations
        self.reason = violations[0].reason if len(violations) == 1 else "INVALID_REQUEST"


class NotFound(DomainError):
    default_reason = "NOT_FOUND"


class IdempotencyKeyReused(DomainError):
    default_reason = "IDEMPOTENCY_KEY_REUSED"

    def __init__(self) -> None:
        super().__init__(
            "this idempotency key was already used with a different request; use a new key for a new operation"
        )


class IdempotencyKeyInUse(DomainError):
    default_reason = "IDEMPOTENCY_KEY_IN_USE"

    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__("a request with this idempotency key is still in flight; retry shortly")
        self.retry_after_seconds = retry_after_seconds


class RefundExceedsRemaining(DomainError):
    default_reason = "REFUND_EXCEEDS_REMAINING"


class PaymentNotRefundable(DomainError):
    default_reason = "PAYMENT_NOT_REFUNDABLE"


class PspUnavailable(DomainError):
    """The PSP could not be reached or gave no final answer; the same key resumes the operation."""

    default_reason = "PSP_UNAVAILABLE"

    def __init__(self, message: str, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class StorageUnavailable(DomainError):
    """The database is unreachable; nothing was decided, retrying with the same key is safe."""

    default_reason = "DATABASE_UNAVAILABLE"

    def __init__(
        self,
        message: str = "the payment database is unavailable; retry shortly",
        retry_after_seconds: float = 1.0,
    ) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class Unauthenticated(DomainError):
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    """An authenticated caller asked for something its client id may not do (the admin service)."""

    default_reason = "PERMISSION_DENIED"
