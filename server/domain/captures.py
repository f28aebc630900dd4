"""Capture and cancel of an authorized payment: who may take how much, decided once, without I/O.

PostgreSQL makes the decision stick: the store reads the payment under its row lock, asks these
rules, and records the action on the row in the same transaction, so of a Capture and a Cancel
racing, exactly one is admitted, and the amount taken never exceeds what was authorized.
"""

from __future__ import annotations

from server.domain.errors import PaymentNotCancelable, PaymentNotCapturable
from server.domain.money import Money, amount_to_take
from server.domain.states import PaymentStatus

# Stripe's `cancellation_reason` values a caller may give (Stripe API reference, Cancel a PaymentIntent).
CANCELLATION_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer", "abandoned"})
CANCELABLE = frozenset({PaymentStatus.REQUIRES_CAPTURE, PaymentStatus.REQUIRES_ACTION})


def decide_capture(
    *, status: PaymentStatus, currency: str, capturable: int, action_under_way: bool, requested: Money | None
) -> int:
    """The amount to capture in minor units, or the refusal to store on the key."""
    if status is not PaymentStatus.REQUIRES_CAPTURE:
        raise PaymentNotCapturable(
            f"only an authorized payment (REQUIRES_CAPTURE) can be captured; this one is {status}"
        )
    if action_under_way:
        raise PaymentNotCapturable("another capture or cancel of this payment is under way")
    return amount_to_take(requested, capturable, currency, what="capture", refuse=PaymentNotCapturable)


def decide_cancel(*, status: PaymentStatus, action_under_way: bool) -> None:
    """Admits a cancel, or raises the refusal to store on the key."""
    if status not in CANCELABLE:
        raise PaymentNotCancelable(
            f"only a payment in REQUIRES_CAPTURE or REQUIRES_ACTION can be cancelled; this one is {status}"
        )
    if action_under_way:
        raise PaymentNotCancelable("a capture or cancel of this payment is already under way")
