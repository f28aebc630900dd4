from __future__ import annotations

import pytest

from server.domain.states import (
    INITIAL_STATUS,
    PAYMENT_TRANSITIONS,
    PAYOUT_TRANSITIONS,
    REFUND_TRANSITIONS,
    IllegalTransition,
    PaymentStatus,
    PayoutStatus,
    RefundStatus,
    ResourceType,
    all_transitions,
    can_transition,
    check_transition,
    is_final,
)


def test_every_status_has_an_entry() -> None:
    assert set(PAYMENT_TRANSITIONS) == set(PaymentStatus)
    assert set(REFUND_TRANSITIONS) == set(RefundStatus)
    assert set(PAYOUT_TRANSITIONS) == set(PayoutStatus)


@pytest.mark.parametrize(
    ("resource", "src", "dst"),
    [(ResourceType.PAYMENT, "SUCCEEDED", "FAILED"), (ResourceType.PAYMENT, "FAILED", "SUCCEEDED"),
     (ResourceType.REFUND, "SUCCEEDED", "PENDING"), (ResourceType.PAYOUT, "FAILED", "PAID"),
     (ResourceType.PAYOUT, "RETURNED", "PAID")],
)  # fmt: skip
def test_final_states_cannot_be_left(resource: ResourceType, src: str, dst: str) -> None:
    assert not can_transition(resource, src, dst)
    with pytest.raises(IllegalTransition):
        check_transition(resource, src, dst)


def test_reconciliation_is_left_only_to_a_decided_state() -> None:
    assert can_transition(ResourceType.PAYMENT, "REQUIRES_RECONCILIATION", "SUCCEEDED")
    assert not can_transition(ResourceType.PAYMENT, "REQUIRES_RECONCILIATION", "PENDING")


def test_paid_payout_may_still_be_returned() -> None:
    assert can_transition(ResourceType.PAYOUT, "PAID", "RETURNED")
    assert not is_final(ResourceType.PAYOUT, "PAID")
    assert is_final(ResourceType.PAYOUT, "RETURNED")


def test_table_for_the_database_includes_creation_rows() -> None:
    rows = all_transitions()
    for resource, status in INITIAL_STATUS.items():
        assert (str(resource), "", status) in rows
    assert ("payment", "PENDING", "SUCCEEDED") in rows
    assert len(rows) == len(set(rows))
