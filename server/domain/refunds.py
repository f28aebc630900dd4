"""The refund limit: a refund may only take what the payment captured and has not yet given back.

PostgreSQL enforces the same rule with a conditional UPDATE and a CHECK constraint, so concurrent
refunds on different servers cannot exceed it; this function decides which error a caller gets.
"""

from __future__ import annotations

from server.domain.errors import PaymentNotRefundable, RefundExceedsRemaining
from server.domain.money import Money, amount_to_take
from server.domain.states import PaymentStatus


def refundable_remaining(captured: int, refunded: int, reserved: int) -> int:
    return captured - refunded - reserved


# Why a refund is made, as Stripe's `reason` takes it (Stripe API reference, Create a refund); a caller's
# own words would be lost at the PSP, so anything else is refused at the edge.
REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})


def decide_refund_amount(
    *,
    status: PaymentStatus,
    currency: str,
    captured: int,
    refunded: int,
    reserved: int,
    requested: Money | None,
) -> int:
    """Returns the amount to reserve in minor units, or raises the business error to store."""
    if status is not PaymentStatus.SUCCEEDED or captured <= 0:
        raise PaymentNotRefundable(f"only a succeeded payment can be refunded; this one is {status}")
    remaining = refundable_remaining(captured, refunded, reserved)
    return amount_to_take(requested, remaining, currency, what="refund", refuse=RefundExceedsRemaining)
