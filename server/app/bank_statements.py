"""Bank statements in, payouts reconciled: the use case behind the statement job and `payments bank …`.

Why here, between the bank adapter and the store: the adapter reads camt documents of any accepted
version into :mod:`server.domain.bank_statements` values; the store applies each entry to its payout
in one transaction per document; this module decides when that happens (a worker round fetching what
the gateway offers, a file an operator imports, the daily unbooked-payout check) and counts what
finance must look at. Nothing of a document is applied unless all of it is (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

from server.app import telemetry
from server.domain.bank_statements import BankDocument, ReportKind

log = logging.getLogger(__name__)

STATEMENT_ACTOR = "bank:statement"


class StatementConflict(Exception):
    """A report id already imported with other content: refused whole (a bank correction needs a human)."""


@dataclass(frozen=True, slots=True)
class NewDiscrepancy:
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What one document did: reports imported or already known, entries by outcome, new discrepancies."""

    reports_imported: int = 0
    reports_already_imported: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    discrepancies: tuple[NewDiscrepancy, ...] = ()


@dataclass(frozen=True, slots=True)
class Discrepancy:
    kind: str
    detail: str
    detected_on: date
    payout_id: str | None = None
    end_to_end_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    booking_date: date | None = None
    bank_reference: str | None = None


@dataclass(frozen=True, slots=True)
class ReconciliationReport:
    """The day finance asked about: its bookings and returns, and every open discrepancy up to it."""

    day: date
    bookings: int
    returns: int
    other_entries: int
    unbooked_checked: int
    discrepancies: tuple[Discrepancy, ...]


class StatementStore(Protocol):
    async def import_document(
        self, document: BankDocument, *, source: str, at: datetime, cursor: tuple[str, ReportKind, int] | None = None
    ) -> ImportResult:
        """Applies the whole document in one transaction (and advances `cursor`), or raises
        StatementConflict with nothing applied. Reports already imported with the same content are skipped."""
        ...

    async def feed_cursor(self, source: str, kind: ReportKind) -> int: ...

    async def record_unbooked(self, as_of: date, grace_business_days: int) -> tuple[int, list[NewDiscrepancy]]:
        """Records PAID payouts not booked within the grace period as discrepancies; (checked, new ones)."""
        ...

    async def report(self, day: date) -> tuple[int, int, int, list[Discrepancy]]:
        """(bookings, returns, other entries booked on `day`, open discrepancies detected up to `day`)."""
        ...


class StatementFeed(Protocol):
    """A bank gateway's statements and notifications (adapters.bank.statements)."""

    name: str

    def read(self, data: bytes) -> BankDocument:
        """Validates and reads one document; raises ValueError (DocumentError) when it cannot be trusted."""
        ...

    async def documents_after(self, kind: ReportKind, after: int) -> list[tuple[int, bytes]]: ...


@dataclass(frozen=True, slots=True)
class StatementPolicy:
    fetch_every_seconds: float = 60.0
    # A SEPA credit transfer is booked on D or D+1; past this many TARGET2 days a PAID payout without a
    # booking is reported (PAYMENTS_BANK_BOOKING_GRACE_DAYS).
    booking_grace_business_days: int = 2


class BankStatements:
    def __init__(
        self, store: StatementStore, feeds: Sequence[StatementFeed], policy: StatementPolicy,
        now: Callable[[], datetime],
    ) -> None:  # fmt: skip
        self._store = store
        self._feeds = list(feeds)
        self._policy = policy
        self._now = now
        self._next_fetch = 0.0

    async def import_document(self, document: BankDocument, source: str) -> ImportResult:
        """One document (a file an operator imports): all or nothing, a second import changes nothing."""
        result = await self._store.import_document(document, source=source, at=self._now())
        self._count(result)
        return result

    async def fetch(self) -> int:
        """Fetches and imports every document the gateways offer that we have not imported; how many.

        A document that cannot be read or conflicts with one imported before stops its kind's feed at
        that document (logged each round): skipping it would lose evidence, so a human must look.
        """
        imported = 0
        for feed in self._feeds:
            for kind in ReportKind:
                after = await self._store.feed_cursor(feed.name, kind)
                for seq, data in await feed.documents_after(kind, after):
                    try:
                        # Parsing and XSD validation are CPU work: off the event loop that serves calls.
                        document = await asyncio.to_thread(feed.read, data)
                        result = await self._store.import_document(
                            document, source=feed.name, at=self._now(), cursor=(feed.name, kind, seq)
                        )
                    except (ValueError, StatementConflict) as exc:
                        log.error("bank %s: %s document %d refused, feed held there: %s", feed.name, kind, seq, exc)
                        break
                    self._count(result)
                    imported += 1
        return imported

    async def periodic(self, loop_time: float) -> None:
        """The worker's statement round: fetch when due, then the unbooked check for today."""
        if loop_time < self._next_fetch or not self._feeds:
            return
        self._next_fetch = loop_time + self._policy.fetch_every_seconds
        await self.fetch()
        await self.record_unbooked(self._now().date())

    async def record_unbooked(self, as_of: date) -> int:
        checked, new = await self._store.record_unbooked(as_of, self._policy.booking_grace_business_days)
        for discrepancy in new:
            telemetry.bank_discrepancies.add(1, {"kind": discrepancy.kind})
            log.warning("bank reconciliation: %s: %s", discrepancy.kind, discrepancy.detail)
        return checked

    async def reconcile(self, day: date) -> ReconciliationReport:
        """`payments bank reconcile --date D`: records payouts unbooked as of D, then reports D."""
        checked = await self.record_unbooked(day)
        bookings, returns, other, open_ones = await self._store.report(day)
        return ReconciliationReport(day, bookings, returns, other, checked, tuple(open_ones))

    def _count(self, result: ImportResult) -> None:
        for outcome, number in result.outcomes.items():
            telemetry.bank_entries.add(number, {"outcome": outcome})
        for discrepancy in result.discrepancies:
            telemetry.bank_discrepancies.add(1, {"kind": discrepancy.kind})
            log.warning("bank reconciliation: %s: %s", discrepancy.kind, discrepancy.detail)
