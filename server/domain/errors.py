"""The errors this service reports to a caller on purpose, grouped by what the caller can do.

`ServiceError` is their root; below it `RequestRejected` (the request cannot be served as sent),
`RetryLater` (nothing was decided: the same request with the same key may succeed later) and
`AccessDenied` (who is calling). Each carries the `reason` that reaches callers in
google.rpc.ErrorInfo; the gRPC edge maps classes to status codes (docs/contract.md, Interface).
Messages are safe to show: no card data, IBANs or secrets. Code that means "the database is away"
catches `StorageUnavailable`, never the root.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str
    reason: str = "INVALID_FIELD"


class ServiceError(Exception):
    """Root of every error this service reports to a caller on purpose."""

    default_reason: ClassVar[str] = "ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = self.default_reason
        # ErrorInfo.metadata: facts a caller acts on (e.g. the id of the resource the refusal left).
        self.metadata: dict[str, str] = {}


class RequestRejected(ServiceError):
    """The request cannot be served as sent: retrying it unchanged gets the same answer."""


class RetryLater(ServiceError):
    """Nothing was decided; the same request with the same idempotency key may succeed later."""

    def __init__(self, message: str, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class AccessDenied(ServiceError):
    """The caller is not who it must be for this request."""


class InvalidRequest(RequestRejected):
    default_reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation]) -> None:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"invalid request: {summary}")
        self.violations = violations
        self.reason = violations[0].reason if len(violations) == 1 else "INVALID_REQUEST"


class Violations:
    """Collects every field violation of a request, so a caller learns them all at once."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str, reason: str = "INVALID_FIELD") -> None:
        self.items.append(FieldViolation(field, description, reason))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidRequest(self.items)


class NotFound(RequestRejected):
    default_reason = "NOT_FOUND"


class IdempotencyKeyReused(RequestRejected):
    default_reason = "IDEMPOTENCY_KEY_REUSED"

    def __init__(self) -> None:
        super().__init__(
            "this idempotency key was already used with a different request; use a new key for a new operation"
        )


class IdempotencyKeyInUse(RetryLater):
    default_reason = "IDEMPOTENCY_KEY_IN_USE"

    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__("a request with this idempotency key is still in flight; retry shortly", retry_after_seconds)


class RefundExceedsRemaining(RequestRejected):
    default_reason = "REFUND_EXCEEDS_REMAINING"


class PaymentNotRefundable(RequestRejected):
    default_reason = "PAYMENT_NOT_REFUNDABLE"


class PaymentNotCapturable(RequestRejected):
    """Nothing can be captured: not authorized, already captured or cancelled, too much asked, or
    another capture or cancel of the payment is under way."""

    default_reason = "PAYMENT_NOT_CAPTURABLE"


class PaymentNotCancelable(RequestRejected):
    """Only an authorized (REQUIRES_CAPTURE) or unfinished (REQUIRES_ACTION) payment can be voided."""

    default_reason = "PAYMENT_NOT_CANCELABLE"


class PayeeRefused(RequestRejected):
    """Verification of Payee stopped a SEPA payout before anything was sent (server/domain/payee_verification.py).

    The payout stays, FAILED with the bank's answer in `payee_verification`; its id is in the ErrorInfo
    metadata (`payout_id`) so the caller can show its user what the bank said (GetPayout). The name the
    bank suggested is not in the error: errors end up in callers' logs, names are personal data.
    """

    message_text = "the payee's bank did not confirm the account holder's name"

    def __init__(self, payout_id: str) -> None:
        super().__init__(self.message_text)
        self.metadata = {"payout_id": payout_id}


class PayeeNameMismatch(PayeeRefused):
    default_reason = "PAYEE_NAME_MISMATCH"
    message_text = "the payee's bank says the name is not the account holder's (Verification of Payee: no match)"


class PayeeNameCloseMatch(PayeeRefused):
    default_reason = "PAYEE_NAME_CLOSE_MATCH"
    message_text = (
        "the payee's bank says the name is close to the account holder's but not it (Verification of Payee: close"
        " match); the holder's name is on the payout, send again with accept_payee_verification_risk to pay anyway"
    )


class PayeeVerificationUnavailable(PayeeRefused):
    default_reason = "PAYEE_VERIFICATION_UNAVAILABLE"
    message_text = (
        "the payee's bank could not verify the account holder's name (Verification of Payee: not possible);"
        " send again with accept_payee_verification_risk to pay anyway"
    )


class PspUnavailable(RetryLater):
    """The PSP could not be reached or gave no final answer; the same key resumes the operation."""

    default_reason = "PSP_UNAVAILABLE"


class StorageUnavailable(RetryLater):
    """The database is unreachable; nothing was decided, retrying with the same key is safe."""

    default_reason = "DATABASE_UNAVAILABLE"

    def __init__(
        self,
        message: str = "the payment database is unavailable; retry shortly",
        retry_after_seconds: float = 1.0,
    ) -> None:
        super().__init__(message, retry_after_seconds)


class Unauthenticated(AccessDenied):
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(AccessDenied):
    """An authenticated caller asked for something its client id may not do (the admin service)."""

    default_reason = "PERMISSION_DENIED"
