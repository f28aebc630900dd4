"""Outcome → transition decisions: an ambiguous outcome is never a failure."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from server.app.flows import PaymentFlow, PayoutFlow, RefundFlow
from server.app.psp import OutcomeKind, PspOutcome
from server.app.store import RefundSettlement
from server.domain.model import Failure, Payment, Payout, Refund, StripeAccountDestination
from server.domain.money import Money
from server.domain.states import PaymentStatus, PayoutStatus, RefundStatus

AT = datetime(2026, 1, 1, tzinfo=UTC)


def payment(status: PaymentStatus = PaymentStatus.PENDING) -> Payment:
    return Payment(uuid.uuid4(), "c", status, Money(1000, "EUR"), 0, 0, 0, "pm_card_visa", "", "", {}, "sandbox",
                   None, None, AT, AT)  # fmt: skip


def refund() -> Refund:
    return Refund(uuid.uuid4(), "c", uuid.uuid4(), RefundStatus.PENDING, Money(100, "EUR"), "", "sandbox", None,
                  None, AT, AT)  # fmt: skip


def payout() -> Payout:
    return Payout(uuid.uuid4(), "c", PayoutStatus.PENDING, Money(100, "EUR"), StripeAccountDestination("acct_1"),
                  False, "", "sandbox", None, None, AT, AT)  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "status"),
    [(OutcomeKind.SUCCEEDED, PaymentStatus.SUCCEEDED), (OutcomeKind.FAILED, PaymentStatus.FAILED),
     (OutcomeKind.PENDING, PaymentStatus.PROCESSING), (OutcomeKind.UNKNOWN, PaymentStatus.PROCESSING),
     (OutcomeKind.REQUIRES_ACTION, PaymentStatus.REQUIRES_ACTION)],
)  # fmt: skip
def test_payment_outcomes(kind: OutcomeKind, status: PaymentStatus) -> None:
    t = PaymentFlow().decide(payment(), PspOutcome(kind, "ref"), "a", AT)
    assert t is not None
    assert t.to_status == status
    assert (t.captured_minor == 1000) is (status is PaymentStatus.SUCCEEDED)
    applied = PaymentFlow().apply(payment(), t)
    assert applied.status == status


def test_decline_keeps_the_failure() -> None:
    failure = Failure("card_declined", "no", "generic_decline")
    t = PaymentFlow().decide(payment(), PspOutcome(OutcomeKind.FAILED, "ref", failure), "a", AT)
    assert t is not None
    assert t.failure == failure


def test_in_progress_is_processing_and_idempotent() -> None:
    t = PaymentFlow().in_progress(payment(), "a", AT)
    assert t is not None
    assert t.to_status == PaymentStatus.PROCESSING
    assert PaymentFlow().in_progress(payment(PaymentStatus.PROCESSING), "a", AT) is None


@pytest.mark.parametrize(
    ("kind", "status", "settlement"),
    [(OutcomeKind.SUCCEEDED, RefundStatus.SUCCEEDED, RefundSettlement.APPLY),
     (OutcomeKind.FAILED, RefundStatus.FAILED, RefundSettlement.RELEASE),
     (OutcomeKind.PENDING, RefundStatus.PENDING, None)],
)  # fmt: skip
def test_refund_outcomes_settle_the_reservation(kind: OutcomeKind, status: RefundStatus, settlement: str) -> None:
    t = RefundFlow().decide(refund(), PspOutcome(kind, "re_1"), "a", AT)
    assert t is not None
    assert t.to_status == status
    assert t.refund_settlement == settlement


def test_unknown_refund_outcome_keeps_the_reservation() -> None:
    assert RefundFlow().in_progress(refund(), "a", AT) is None


@pytest.mark.parametrize(
    ("kind", "status"),
    [(OutcomeKind.SUCCEEDED, PayoutStatus.PAID), (OutcomeKind.PENDING, PayoutStatus.PROCESSING),
     (OutcomeKind.FAILED, PayoutStatus.FAILED), (OutcomeKind.UNKNOWN, PayoutStatus.PROCESSING)],
)  # fmt: skip
def test_payout_outcomes(kind: OutcomeKind, status: PayoutStatus) -> None:
    t = PayoutFlow().decide(payout(), PspOutcome(kind, "po_1", data={"end_to_end_id": "E2E"}), "a", AT)
    assert t is not None
    assert t.to_status == status
    assert PayoutFlow().apply(payout(), t).psp_data == {"end_to_end_id": "E2E"}
