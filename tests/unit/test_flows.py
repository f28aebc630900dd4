"""Outcome → transition decisions: an ambiguous outcome is never a failure."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from server.app.flows import PaymentFlow, PayoutFlow, RefundFlow
from server.app.psp import OutcomeKind, PspOutcome
from server.app.store import RefundSettlement
from server.domain.model import Failure, Payment, PaymentAction, Payout, Refund, StripeAccountDestination, UseStripeSdk
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


def test_what_the_customer_must_do_reaches_the_answer_but_never_the_stored_reply() -> None:
    flow = PaymentFlow()
    secret = UseStripeSdk("pi_1_secret_abc")
    outcome = PspOutcome(OutcomeKind.REQUIRES_ACTION, "pi_1", next_action=secret)
    transition = flow.decide(payment(), outcome, "client:c", AT)
    assert transition is not None
    assert transition.next_action == secret
    assert "pi_1_secret_abc" not in str(transition.payment_facts())  # nothing of it is written
    answered = flow.apply(payment(), transition)
    assert answered.next_action == secret
    assert flow.storable(answered).next_action is None
    assert "secret" not in repr(answered)
    # Asked again while still REQUIRES_ACTION: no status change, but the answer carries it again.
    again = flow.decide(answered, outcome, "worker", AT)
    assert again is not None
    assert (again.from_status, again.to_status, again.next_action) == ("REQUIRES_ACTION", "REQUIRES_ACTION", secret)


@pytest.mark.parametrize(
    ("before", "outcome", "status", "captured", "capturable"),
    [
        # a manual charge authorized: all of it capturable
        (payment(), PspOutcome(OutcomeKind.AUTHORIZED, "pi_1"), PaymentStatus.REQUIRES_CAPTURE, None, 1000),
        # a capture whose PSP reports the amounts: the PSP's figures
        (dataclasses.replace(payment(PaymentStatus.REQUIRES_CAPTURE), amount_capturable=1000),
         PspOutcome(OutcomeKind.SUCCEEDED, "pi_1", amount_received=600), PaymentStatus.SUCCEEDED, 600, 0),
        # a partial, non-final capture the PSP does not detail: the action's amount
        (dataclasses.replace(payment(PaymentStatus.REQUIRES_CAPTURE), amount_capturable=1000,
                             action=PaymentAction("capture", "k", amount_minor=300, final=False)),
         PspOutcome(OutcomeKind.AUTHORIZED, "pi_1"), PaymentStatus.REQUIRES_CAPTURE, 300, 700),
        # released at the PSP: nothing capturable any more
        (dataclasses.replace(payment(PaymentStatus.REQUIRES_CAPTURE), amount_capturable=1000),
         PspOutcome(OutcomeKind.CANCELED, "pi_1"), PaymentStatus.CANCELED, None, 0),
    ],
)  # fmt: skip
def test_authorized_money_follows_the_psp(
    before: Payment, outcome: PspOutcome, status: PaymentStatus, captured: int | None, capturable: int
) -> None:
    transition = PaymentFlow().decide(before, outcome, "worker", AT)
    assert transition is not None
    after = PaymentFlow().apply(before, transition)
    assert after.status is status
    assert after.amount_capturable == capturable
    if captured is not None:
        assert after.amount_captured == captured
