"""payments-client: call payments.v1.PaymentService without writing a double charge.

    from payments_client import Money, PaymentsClient

    with PaymentsClient("127.0.0.1:50051") as client:
        charged = client.charge(Money(amount_minor=1250, currency="EUR"), "pm_card_visa")
        store(charged.idempotency_key, charged.resource.id)

Each mutation is keyed (a fresh idempotency key unless you pass one, returned in the Result), retried with
that same key on UNAVAILABLE, ABORTED and CANCELLED within one deadline, and raises a typed PaymentsError subclass
when it fails. `payments_client.aio.PaymentsClient` is the asyncio twin.
"""

from __future__ import annotations

from payments.v1.resources_pb2 import Event, Money, Payment, Payout, PostalAddress, Refund, SepaAccount
from payments_client._shared import Result, new_idempotency_key
from payments_client.aio import PaymentsClient as AsyncPaymentsClient
from payments_client.balancing import balanced
from payments_client.client import PaymentsClient
from payments_client.credentials import Credentials, CredentialsError
from payments_client.errors import (
    Aborted,
    DatabaseUnavailable,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    Internal,
    InvalidArgument,
    NotFound,
    PayeeNameCloseMatch,
    PayeeNameMismatch,
    PayeeVerificationUnavailable,
    PaymentNotCancelable,
    PaymentNotCapturable,
    PaymentNotRefundable,
    PaymentsError,
    PermissionDenied,
    PspUnavailable,
    RefundExceedsRemaining,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from payments_client.retry import NO_RETRIES, RetryPolicy

__all__ = [
    "NO_RETRIES",
    "Aborted",
    "AsyncPaymentsClient",
    "Credentials",
    "CredentialsError",
    "DatabaseUnavailable",
    "DeadlineExceeded",
    "Event",
    "FailedPrecondition",
    "FieldViolation",
    "IdempotencyKeyInUse",
    "IdempotencyKeyReused",
    "Internal",
    "InvalidArgument",
    "Money",
    "NotFound",
    "PayeeNameCloseMatch",
    "PayeeNameMismatch",
    "PayeeVerificationUnavailable",
    "Payment",
    "PaymentNotCancelable",
    "PaymentNotCapturable",
    "PaymentNotRefundable",
    "PaymentsClient",
    "PaymentsError",
    "Payout",
    "PermissionDenied",
    "PostalAddress",
    "PspUnavailable",
    "Refund",
    "RefundExceedsRemaining",
    "ResourceExhausted",
    "Result",
    "RetryPolicy",
    "SepaAccount",
    "Unauthenticated",
    "Unavailable",
    "balanced",
    "new_idempotency_key",
]
