"""Bank statements (camt.053) and debit/credit notifications (camt.054), and how their entries settle payouts.

Why a domain module: finance's question "is every payout booked?" is answered by rules, not by XML. The
bank adapter translates camt documents of any accepted version into these values; the statement store
applies :func:`match_entry` to each entry inside the import's one transaction; the reconciliation
report applies :func:`is_overdue` to PAID payouts nobody booked. None of it does I/O, so every rule is
tested on values.

Evidence (docs/contract.md, "finality needs evidence"): a *booked debit* of our EndToEndId, amount and
currency is the bank's proof the money left — it confirms PAID (and makes a payout whose pain.002 answer
was lost PAID). A *booked credit with return information* (``RtrInf``, or a reversal of our debit) is the
proof it came back — PAID → RETURNED with the ISO return reason (AC04, AC06, MD07, AM09, ...). Anything
that does not fit is never guessed at: it is kept as a :class:`Discrepancy` for finance.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from server.domain.business_days import business_days_between
from server.domain.iso_reasons import REASON_TEXT
from server.domain.states import PayoutStatus

__all__ = [
    "AccountReport",
    "BankDocument",
    "Direction",
    "DiscrepancyKind",
    "EntryKind",
    "EntryMatch",
    "PayoutFacts",
    "ReportKind",
    "StatementEntry",
    "classify_entry",
    "is_overdue",
    "match_entry",
    "return_reason_text",
]


class Direction(StrEnum):
    """ISO ``CreditDebitCode`` seen from our own account: DBIT takes money out, CRDT brings it in."""

    DEBIT = "DBIT"
    CREDIT = "CRDT"


class ReportKind(StrEnum):
    STATEMENT = "camt.053"  # end-of-day statement: every booking of the day, with balances
    NOTIFICATION = "camt.054"  # intraday debit/credit notification (returns come this way first)


@dataclass(frozen=True, slots=True)
class StatementEntry:
    """One transaction of one entry (``Ntry``), flattened.

    Banks batch: one ``Ntry`` (one booking on the account) can carry several ``TxDtls`` — a batch
    booking of a whole pain.001 file, or several returns booked together. Each transaction becomes one
    value; ``entry_seq``/``tx_seq`` are their 1-based positions in the report (``tx_seq`` 0: an entry
    without ``TxDtls``), which is what makes an entry's key stable when the same report is imported
    again. ``amount_minor``/``currency`` are the transaction's own (``TxDtls/Amt``, or
    ``AmtDtls/TxAmt/Amt``), else the entry's when it holds a single transaction.
    """

    entry_seq: int
    tx_seq: int
    amount_minor: int
    currency: str
    direction: Direction
    booked: bool  # Sts BOOK; PDNG and INFO entries are not (yet) evidence
    booking_date: date | None
    value_date: date | None = None
    reversal: bool = False
    end_to_end_id: str | None = None
    return_reason: str | None = None  # RtrInf/Rsn/Cd (or Prtry): the ISO ExternalReturnReason1Code
    entry_reference: str | None = None  # Ntry/NtryRef
    bank_reference: str | None = None  # TxDtls/Refs/AcctSvcrRef, else Ntry/AcctSvcrRef
    payout_id: str | None = None  # po_… our EndToEndId encodes (set by the adapter that derives them)

    @property
    def key(self) -> str:
        """The entry's key within its report (``3/2``: second transaction of the third entry)."""
        return f"{self.entry_seq}/{self.tx_seq}"


@dataclass(frozen=True, slots=True)
class AccountReport:
    """One ``Stmt`` (camt.053) or ``Ntfctn`` (camt.054): one account's entries under the bank's report id."""

    kind: ReportKind
    report_id: str
    account_iban: str
    created_at: datetime | None
    entries: tuple[StatementEntry, ...]

    def fingerprint(self) -> str:
        """A digest of what the report says (not of its bytes: a re-download gets a new MsgId and
        CreDtTm). The same report id with another fingerprint is a bank correction, refused rather than
        merged."""
        text = repr((str(self.kind), self.report_id, self.account_iban, self.entries))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class BankDocument:
    """A whole camt document: its message name and version (``camt.053.001.08``) and its reports."""

    message: str
    msg_id: str
    created_at: datetime
    reports: tuple[AccountReport, ...]


class EntryKind(StrEnum):
    BOOKING = "booking"  # a booked debit: a transfer left the account
    RETURN = "return"  # a booked credit with return information: a transfer came back
    OTHER = "other"  # credits to us, entries not booked, reversals of credits: nothing of ours


class DiscrepancyKind(StrEnum):
    UNKNOWN_ENTRY = "unknown_entry"  # a booking or return of an EndToEndId we never initiated
    AMOUNT_MISMATCH = "amount_mismatch"
    CURRENCY_MISMATCH = "currency_mismatch"
    STATUS_CONFLICT = "status_conflict"  # e.g. the bank booked a payout we hold as FAILED
    UNBOOKED_PAYOUT = "unbooked_payout"  # PAID, yet no booking after the grace period


@dataclass(frozen=True, slots=True)
class PayoutFacts:
    """What matching needs to know of the payout an entry names."""

    status: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class EntryMatch:
    """What one entry means for its payout: a status to move to (or the same status, to record the
    booking), or a discrepancy, with a reason fit for the event log (no account data)."""

    kind: EntryKind
    to_status: str | None = None
    discrepancy: DiscrepancyKind | None = None
    detail: str = ""

    @property
    def matched(self) -> bool:
        return self.to_status is not None


def classify_entry(entry: StatementEntry) -> EntryKind:
    """BOOKING for a booked debit that is not a reversal; RETURN for a booked credit carrying a return
    reason or reversing a debit (ISO: CRDT with RvslInd true reverses a debit); OTHER otherwise."""
    if not entry.booked:
        return EntryKind.OTHER
    if entry.direction is Direction.DEBIT:
        return EntryKind.OTHER if entry.reversal or entry.return_reason else EntryKind.BOOKING
    return EntryKind.RETURN if entry.return_reason or entry.reversal else EntryKind.OTHER


# A booking is evidence the transfer executed; a return that it came back. Which statuses each may leave
# is the lifecycle's (server/domain/states.py); these add what a statement cannot overrule: a FAILED
# payout stays FAILED (money left anyway: a conflict for a human), and a PENDING one was never submitted.
_BOOKING_MOVES = {
    PayoutStatus.PROCESSING: PayoutStatus.PAID,
    PayoutStatus.REQUIRES_RECONCILIATION: PayoutStatus.PAID,
    PayoutStatus.PAID: PayoutStatus.PAID,  # confirmed: the booking date is recorded
    PayoutStatus.RETURNED: PayoutStatus.RETURNED,  # booked before it came back: nothing to change
}
_RETURN_MOVES = {
    PayoutStatus.PROCESSING: PayoutStatus.RETURNED,
    PayoutStatus.REQUIRES_RECONCILIATION: PayoutStatus.RETURNED,
    PayoutStatus.PAID: PayoutStatus.RETURNED,
    PayoutStatus.RETURNED: PayoutStatus.RETURNED,
}


def match_entry(entry: StatementEntry, payout: PayoutFacts | None) -> EntryMatch:
    """Match one entry to the payout its EndToEndId names (``None``: no payout has it).

    Matching needs EndToEndId, amount and currency to agree; a mismatch is a discrepancy and moves
    nothing (an AM09 "wrong amount" is the bank's reason code, never our inference).
    """
    kind = classify_entry(entry)
    if kind is EntryKind.OTHER:
        return EntryMatch(kind)
    what = "booking" if kind is EntryKind.BOOKING else "return"
    if payout is None:
        return EntryMatch(
            kind, discrepancy=DiscrepancyKind.UNKNOWN_ENTRY, detail=f"{what} of a transfer we never initiated"
        )
    if entry.currency != payout.currency:
        return EntryMatch(
            kind, discrepancy=DiscrepancyKind.CURRENCY_MISMATCH,
            detail=f"{what} in {entry.currency}, payout in {payout.currency}",
        )  # fmt: skip
    if entry.amount_minor != payout.amount_minor:
        return EntryMatch(
            kind, discrepancy=DiscrepancyKind.AMOUNT_MISMATCH,
            detail=f"{what} of {entry.amount_minor} minor units, payout of {payout.amount_minor}",
        )  # fmt: skip
    moves = _BOOKING_MOVES if kind is EntryKind.BOOKING else _RETURN_MOVES
    target = moves.get(PayoutStatus(payout.status))
    if target is None:
        return EntryMatch(
            kind, discrepancy=DiscrepancyKind.STATUS_CONFLICT, detail=f"{what} of a {payout.status} payout"
        )
    if kind is EntryKind.BOOKING:
        when = entry.booking_date.isoformat() if entry.booking_date else "an unstated date"
        return EntryMatch(kind, to_status=target, detail=f"booked on {when}")
    return EntryMatch(kind, to_status=target, detail=f"returned by the bank ({entry.return_reason or 'reversal'})")


def is_overdue(paid_on: date, as_of: date, grace_business_days: int) -> bool:
    """A PAID payout with no booking is overdue once more than ``grace_business_days`` TARGET2 business
    days have passed since it was paid (a SEPA credit transfer is booked on D or D+1)."""
    return business_days_between(paid_on, as_of) > grace_business_days


def return_reason_text(code: str | None) -> str:
    """What a return reason means, for the payout's failure message."""
    if code is None:
        return "returned by the bank (reversal)"
    return REASON_TEXT.get(code, f"returned by the bank ({code})")
