"""The reconciliation rules on values: which entry moves which payout, what is a discrepancy, and the
TARGET2 business days the unbooked-payout check counts."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from server.domain.bank_statements import (
    Direction,
    DiscrepancyKind,
    EntryKind,
    PayoutFacts,
    StatementEntry,
    is_overdue,
    match_entry,
    return_reason_text,
)
from server.domain.business_days import add_business_days, business_days_between, easter_sunday, is_business_day
from server.domain.states import PayoutStatus, ResourceType, can_transition

BOOKING = StatementEntry(
    entry_seq=1, tx_seq=1, amount_minor=5_000, currency="EUR", direction=Direction.DEBIT, booked=True,
    booking_date=date(2026, 11, 30), end_to_end_id="E2E-1",
)  # fmt: skip
RETURN = replace(BOOKING, direction=Direction.CREDIT, return_reason="AC04")
PAID = PayoutFacts(PayoutStatus.PAID, 5_000, "EUR")


def facts(status: PayoutStatus) -> PayoutFacts:
    return replace(PAID, status=status)


@pytest.mark.parametrize(
    ("status", "target"),
    [
        (PayoutStatus.PROCESSING, PayoutStatus.PAID),  # the booking is the evidence a lost answer lacked
        (PayoutStatus.REQUIRES_RECONCILIATION, PayoutStatus.PAID),
        (PayoutStatus.PAID, PayoutStatus.PAID),  # confirmed, with its booking date
        (PayoutStatus.RETURNED, PayoutStatus.RETURNED),
    ],
)
def test_a_booked_debit_confirms_or_makes_paid(status: PayoutStatus, target: PayoutStatus) -> None:
    match = match_entry(BOOKING, facts(status))
    assert (match.kind, match.to_status, match.discrepancy) == (EntryKind.BOOKING, target, None)
    assert match.detail == "booked on 2026-11-30"
    assert status == target or can_transition(ResourceType.PAYOUT, status, target)


@pytest.mark.parametrize("status", [PayoutStatus.PAID, PayoutStatus.PROCESSING, PayoutStatus.REQUIRES_RECONCILIATION])
def test_a_return_moves_to_returned(status: PayoutStatus) -> None:
    match = match_entry(RETURN, facts(status))
    assert (match.kind, match.to_status) == (EntryKind.RETURN, PayoutStatus.RETURNED)
    assert "AC04" in match.detail
    assert can_transition(ResourceType.PAYOUT, status, PayoutStatus.RETURNED)


@pytest.mark.parametrize(
    ("entry", "payout", "kind"),
    [
        (BOOKING, None, DiscrepancyKind.UNKNOWN_ENTRY),
        (RETURN, None, DiscrepancyKind.UNKNOWN_ENTRY),
        (replace(BOOKING, amount_minor=5_001), PAID, DiscrepancyKind.AMOUNT_MISMATCH),
        (replace(RETURN, amount_minor=4_900), PAID, DiscrepancyKind.AMOUNT_MISMATCH),
        (replace(BOOKING, currency="CHF"), PAID, DiscrepancyKind.CURRENCY_MISMATCH),
        (BOOKING, facts(PayoutStatus.FAILED), DiscrepancyKind.STATUS_CONFLICT),  # money left after all
        (BOOKING, facts(PayoutStatus.PENDING), DiscrepancyKind.STATUS_CONFLICT),  # never submitted
        (RETURN, facts(PayoutStatus.FAILED), DiscrepancyKind.STATUS_CONFLICT),
    ],
)
def test_what_does_not_fit_is_a_discrepancy_and_moves_nothing(
    entry: StatementEntry, payout: PayoutFacts | None, kind: DiscrepancyKind
) -> None:
    match = match_entry(entry, payout)
    assert (match.discrepancy, match.to_status, match.matched) == (kind, None, False)
    assert match.detail


@pytest.mark.parametrize(
    "entry",
    [
        replace(BOOKING, booked=False),  # PDNG / INFO
        replace(BOOKING, direction=Direction.CREDIT),  # a customer paying us
        replace(BOOKING, reversal=True),  # DBIT + RvslInd reverses a credit
        replace(BOOKING, return_reason="AC04"),  # we returned someone's credit
    ],
)
def test_entries_that_are_not_about_our_payouts_are_ignored(entry: StatementEntry) -> None:
    assert match_entry(entry, PAID) == match_entry(entry, None)
    assert match_entry(entry, PAID).kind is EntryKind.OTHER
    assert match_entry(entry, None).discrepancy is None


def test_a_reversal_of_our_debit_is_a_return_without_a_reason_code() -> None:
    reversal = replace(BOOKING, direction=Direction.CREDIT, reversal=True)
    assert match_entry(reversal, PAID).to_status == PayoutStatus.RETURNED
    assert return_reason_text(None).startswith("returned by the bank")
    assert return_reason_text("MD07") == "End customer deceased"
    assert return_reason_text("ZZ99") == "returned by the bank (ZZ99)"


def test_easter_and_target2_holidays() -> None:
    assert [easter_sunday(y) for y in (2024, 2025, 2026, 2027)] == [
        date(2024, 3, 31), date(2025, 4, 20), date(2026, 4, 5), date(2027, 3, 28),
    ]  # fmt: skip
    closed = [date(2026, 1, 1), date(2026, 4, 3), date(2026, 4, 6), date(2026, 5, 1), date(2026, 12, 25),
              date(2026, 12, 26), date(2026, 11, 28), date(2026, 11, 29)]  # fmt: skip
    assert not any(is_business_day(day) for day in closed)
    assert is_business_day(date(2026, 11, 30))  # a Monday
    assert is_business_day(date(2025, 10, 3))  # German Unity Day is a national holiday, not a TARGET2 one
    assert add_business_days(date(2026, 4, 2), 1) == date(2026, 4, 7)  # Thursday before Easter → Tuesday
    assert add_business_days(date(2026, 12, 24), 1) == date(2026, 12, 28)
    assert business_days_between(date(2026, 11, 27), date(2026, 11, 30)) == 1  # Friday → Monday
    assert business_days_between(date(2026, 11, 30), date(2026, 11, 30)) == 0


def test_a_payout_is_overdue_after_the_grace_business_days() -> None:
    paid_on = date(2026, 11, 26)  # Thursday
    assert not is_overdue(paid_on, date(2026, 11, 30), 2)  # Fri, Mon: two business days
    assert is_overdue(paid_on, date(2026, 12, 1), 2)
    assert not is_overdue(date(2026, 4, 2), date(2026, 4, 7), 1)  # Easter in between
    assert is_overdue(date(2026, 4, 2), date(2026, 4, 8), 1)
