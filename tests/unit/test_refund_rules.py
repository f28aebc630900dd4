from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain.errors import PaymentNotRefundable, RefundExceedsRemaining
from server.domain.money import Money
from server.domain.refunds import decide_refund_amount
from server.domain.states import PaymentStatus


def decide(refunded: int, reserved: int, requested: Money | None) -> int:
    return decide_refund_amount(
        status=PaymentStatus.SUCCEEDED,
        currency="EUR",
        captured=1000,
        refunded=refunded,
        reserved=reserved,
        requested=requested,
    )


def test_unset_amount_takes_all_that_remains() -> None:
    assert decide(refunded=300, reserved=200, requested=None) == 500


def test_partial_refund_within_remaining() -> None:
    assert decide(refunded=0, reserved=0, requested=Money(400, "EUR")) == 400


def test_over_remaining_is_refused() -> None:
    with pytest.raises(RefundExceedsRemaining):
        decide(refunded=600, reserved=0, requested=Money(401, "EUR"))


def test_nothing_left_is_refused() -> None:
    with pytest.raises(RefundExceedsRemaining):
        decide(refunded=1000, reserved=0, requested=None)


def test_other_currency_is_refused() -> None:
    with pytest.raises(RefundExceedsRemaining, match="currency"):
        decide(refunded=0, reserved=0, requested=Money(1, "USD"))


@pytest.mark.parametrize("status", [s for s in PaymentStatus if s is not PaymentStatus.SUCCEEDED])
def test_unpaid_payment_is_not_refundable(status: PaymentStatus) -> None:
    with pytest.raises(PaymentNotRefundable):
        decide_refund_amount(status=status, currency="EUR", captured=1000, refunded=0, reserved=0, requested=None)


@given(captured=st.integers(1, 10**8), refunded=st.integers(0, 10**8), reserved=st.integers(0, 10**8),
       requested=st.none() | st.integers(1, 10**8))  # fmt: skip
def test_a_granted_refund_never_exceeds_captured(
    captured: int, refunded: int, reserved: int, requested: int | None
) -> None:
    try:
        amount = decide_refund_amount(
            status=PaymentStatus.SUCCEEDED, currency="EUR", captured=captured, refunded=refunded,
            reserved=reserved, requested=None if requested is None else Money(requested, "EUR"),
        )  # fmt: skip
    except RefundExceedsRemaining:
        return
    assert amount > 0
    assert refunded + reserved + amount <= captured
