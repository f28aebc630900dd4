"""Bank statements in PostgreSQL: import (one transaction per document), discrepancies, the report.

Why one transaction per document: a statement is evidence as a whole — half of it applied would move
some payouts and leave others, and a retry could not tell which. So the report rows, every entry, every
status change (through the same conditional UPDATE and guard trigger as any transition, so the event
log and the outbox see them) and every discrepancy commit together, or none does. Idempotency lives in
the unique keys: (account, kind, report id) for reports, (report, entry key) for entries, dedupe_key for
discrepancies — a second import, or the same booking in a camt.054 and then the camt.053, changes nothing.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from server.app.bank_statements import (
    STATEMENT_ACTOR,
    Discrepancy,
    ImportResult,
    NewDiscrepancy,
    StatementConflict,
)
from server.app.store import Transition
from server.domain.bank_statements import (
    AccountReport,
    BankDocument,
    EntryKind,
    EntryMatch,
    PayoutFacts,
    ReportKind,
    StatementEntry,
    is_overdue,
    match_entry,
    return_reason_text,
)
from server.domain.ids import IdKind, format_id, parse_id, uuid7
from server.domain.model import Failure
from server.domain.states import PayoutStatus, ResourceType
from storage.database import Database
from storage.operations_store import apply_transition

# Two workers fetching the same document (every `payments serve` runs one) take turns per report: the
# second then finds it imported, instead of failing on the unique key.
_LOCK_REPORT = "SELECT pg_advisory_xact_lock(hashtextextended($1 || '|' || $2 || '|' || $3, 0))"
_FIND_REPORT = "SELECT fingerprint FROM bank_reports WHERE account_iban = $1 AND kind = $2 AND report_id = $3"
_INSERT_REPORT = """
    INSERT INTO bank_reports (account_iban, kind, report_id, message, msg_id, fingerprint, source)
    VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id
"""
# The payout an entry names, by primary key (its EndToEndId encodes the id) and only if it really holds
# that EndToEndId; locked: a poll or a client retry moving it meanwhile waits for this import.
_FIND_PAYOUT = """
    SELECT id, client_id, status, amount_minor, currency FROM payouts
    WHERE id = $1 AND psp_data->>'end_to_end_id' = $2
    FOR UPDATE
"""
_INSERT_ENTRY = """
    INSERT INTO bank_entries (report, entry_key, kind, direction, booked, booking_date, amount_minor, currency,
                              end_to_end_id, return_reason, bank_reference, payout_id, outcome)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
"""
_INSERT_DISCREPANCY = """
    INSERT INTO bank_discrepancies (kind, dedupe_key, payout_id, end_to_end_id, account_iban, bank_reference,
                                    amount_minor, currency, booking_date, detail, detected_on)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id
"""
_RESOLVE_UNBOOKED = """
    UPDATE bank_discrepancies SET resolved_at = now()
    WHERE dedupe_key = 'unbooked_payout:' || $1::text AND resolved_at IS NULL
"""
# PAID SEPA payouts no booking has confirmed, among those created since $1: a range of the primary key
# (UUIDv7, time-ordered), so the check reads the last weeks however long the history. No index on
# status or psp_data: that would end HOT updates of every transition (0012_bank_statements.sql).
_UNBOOKED = """
    SELECT p.id, p.psp_data->>'end_to_end_id' AS e2e, p.amount_minor, p.currency,
           (SELECT max(e.occurred_at) FROM resource_events e
            WHERE e.resource_id = p.id AND e.to_status = 'PAID') AS paid_at
    FROM payouts p
    WHERE p.id >= $1 AND p.status = 'PAID' AND p.psp_data ? 'end_to_end_id' AND NOT p.psp_data ? 'booked_on'
"""
UNBOOKED_LOOKBACK = timedelta(days=35)
"""How far back the unbooked check looks: a payout unbooked for longer was reported weeks ago, and its
discrepancy stays open until a booking or finance closes it."""
_DAY_COUNTS = """
    SELECT kind, count(*) AS n FROM bank_entries
    WHERE booking_date = $1 AND booked AND outcome NOT IN ('unknown_entry', 'amount_mismatch',
                                                           'currency_mismatch', 'status_conflict')
    GROUP BY kind
"""
_OPEN_DISCREPANCIES = """
    SELECT kind, detail, detected_on, payout_id, end_to_end_id, amount_minor, currency, booking_date, bank_reference
    FROM bank_discrepancies
    WHERE resolved_at IS NULL AND detected_on <= $1
    ORDER BY detected_on, id
"""
_CURSOR = "SELECT last_seq FROM bank_feed_cursors WHERE source = $1 AND kind = $2"
_ADVANCE = """
    INSERT INTO bank_feed_cursors (source, kind, last_seq) VALUES ($1, $2, $3)
    ON CONFLICT (source, kind) DO UPDATE SET last_seq = GREATEST(bank_feed_cursors.last_seq, EXCLUDED.last_seq)
"""


def _public_payout_id(payout_id: uuid.UUID) -> str:
    return format_id(IdKind.PAYOUT, payout_id)


class PostgresStatementStore:
    """Implements server.app.bank_statements.StatementStore."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def import_document(
        self, document: BankDocument, *, source: str, at: datetime, cursor: tuple[str, ReportKind, int] | None = None
    ) -> ImportResult:
        outcomes: Counter[str] = Counter()
        new: list[NewDiscrepancy] = []
        imported = known = 0
        async with self._db.connection() as conn, conn.transaction():
            for report in document.reports:
                await conn.execute(_LOCK_REPORT, report.account_iban, str(report.kind), report.report_id)
                existing = await conn.fetchval(_FIND_REPORT, report.account_iban, str(report.kind), report.report_id)
                if existing is not None:
                    if existing != report.fingerprint():
                        raise StatementConflict(
                            f"{report.kind} {report.report_id} was imported before with other content; "
                            "nothing of this document was applied"
                        )
                    known += 1
                    continue
                report_uuid = await conn.fetchval(
                    _INSERT_REPORT, report.account_iban, str(report.kind), report.report_id, document.message,
                    document.msg_id, report.fingerprint(), source,
                )  # fmt: skip
                for entry in report.entries:
                    outcome, found = await self._apply_entry(conn, report, report_uuid, entry, at)
                    outcomes[outcome] += 1
                    new.extend(found)
                imported += 1
            if cursor is not None:
                await conn.execute(_ADVANCE, cursor[0], str(cursor[1]), cursor[2])
        return ImportResult(imported, known, dict(outcomes), tuple(new))

    async def _apply_entry(
        self, conn: Any, report: AccountReport, report_uuid: uuid.UUID, entry: StatementEntry, at: datetime
    ) -> tuple[str, list[NewDiscrepancy]]:
        row = None
        facts = None
        match = match_entry(entry, None)
        if match.kind is not EntryKind.OTHER and entry.end_to_end_id and entry.payout_id:
            row = await conn.fetchrow(_FIND_PAYOUT, parse_id(IdKind.PAYOUT, entry.payout_id), entry.end_to_end_id)
            if row is not None:
                facts = PayoutFacts(row["status"], row["amount_minor"], row["currency"])
                match = match_entry(entry, facts)
        payout_id: uuid.UUID | None = row["id"] if row is not None else None
        found: list[NewDiscrepancy] = []
        if match.to_status is not None and row is not None:
            await self._move(conn, row, entry, match, at)
            outcome = str(match.to_status)
        elif match.discrepancy is not None:
            outcome = str(match.discrepancy)
            reference = entry.bank_reference or f"{report.kind}:{report.report_id}:{entry.key}"
            dedupe = f"{match.discrepancy}:{report.account_iban}:{reference}:{entry.end_to_end_id or ''}"
            detail = match.detail + (f" (payout {_public_payout_id(payout_id)})" if payout_id else "")
            created = await conn.fetchval(
                _INSERT_DISCREPANCY, str(match.discrepancy), dedupe, payout_id, entry.end_to_end_id,
                report.account_iban, entry.bank_reference, entry.amount_minor, entry.currency, entry.booking_date,
                detail, entry.booking_date or at.date(),
            )  # fmt: skip
            if created is not None:
                found.append(NewDiscrepancy(str(match.discrepancy), detail))
            payout_id = None  # a discrepancy matches nothing
        else:
            outcome = "ignored"
        await conn.execute(
            _INSERT_ENTRY, report_uuid, entry.key, str(match.kind), str(entry.direction), entry.booked,
            entry.booking_date, entry.amount_minor, entry.currency, entry.end_to_end_id, entry.return_reason,
            entry.bank_reference, payout_id, outcome,
        )  # fmt: skip
        return outcome, found

    async def _move(self, conn: Any, row: Any, entry: StatementEntry, match: EntryMatch, at: datetime) -> None:
        """The payout's transition for a matched entry, through the guard trigger and the event log."""
        current, target = row["status"], str(match.to_status)
        if match.kind is EntryKind.BOOKING:
            if current == PayoutStatus.RETURNED:
                return  # booked before it came back: the return already said everything
            booked_on = entry.booking_date.isoformat() if entry.booking_date else at.date().isoformat()
            facts = {"booked_on": booked_on}
            if entry.bank_reference:
                facts["bank_booking_reference"] = entry.bank_reference
            transition = Transition(
                ResourceType.PAYOUT, row["id"], row["client_id"], current, target, STATEMENT_ACTOR,
                match.detail, at, psp_data=facts,
            )  # fmt: skip
            await apply_transition(conn, transition)
            await conn.execute(_RESOLVE_UNBOOKED, _public_payout_id(row["id"]))
            return
        if current == target:
            return  # already RETURNED (the camt.054 came first, this is the camt.053)
        code = entry.return_reason or "returned"
        failure = Failure(
            code=code, message=return_reason_text(entry.return_reason), decline_code=entry.return_reason or ""
        )
        transition = Transition(
            ResourceType.PAYOUT, row["id"], row["client_id"], current, target, STATEMENT_ACTOR, match.detail, at,
            failure=failure, psp_data={"return_reason": code},
        )  # fmt: skip
        await apply_transition(conn, transition)

    async def feed_cursor(self, source: str, kind: ReportKind) -> int:
        async with self._db.connection() as conn:
            value = await conn.fetchval(_CURSOR, source, str(kind))
        return int(value) if value is not None else 0

    async def record_unbooked(self, as_of: date, grace_business_days: int) -> tuple[int, list[NewDiscrepancy]]:
        new: list[NewDiscrepancy] = []
        async with self._db.connection() as conn, conn.transaction():
            since = datetime.combine(as_of, time(), UTC) - UNBOOKED_LOOKBACK
            rows = await conn.fetch(_UNBOOKED, uuid7(int(since.timestamp() * 1000), 0))
            for row in rows:
                paid_at: datetime | None = row["paid_at"]
                if paid_at is None or not is_overdue(paid_at.date(), as_of, grace_business_days):
                    continue
                public = _public_payout_id(row["id"])
                detail = (f"payout {public} PAID on {paid_at.date().isoformat()}, not booked after "
                          f"{grace_business_days} business days")  # fmt: skip
                created = await conn.fetchval(
                    _INSERT_DISCREPANCY, "unbooked_payout", f"unbooked_payout:{public}", row["id"], row["e2e"], None,
                    None, row["amount_minor"], row["currency"], None, detail, as_of,
                )  # fmt: skip
                if created is not None:
                    new.append(NewDiscrepancy("unbooked_payout", detail))
        return len(rows), new

    async def report(self, day: date) -> tuple[int, int, int, list[Discrepancy]]:
        async with self._db.connection() as conn:
            counts = {row["kind"]: row["n"] for row in await conn.fetch(_DAY_COUNTS, day)}
            rows = await conn.fetch(_OPEN_DISCREPANCIES, day)
        discrepancies = [
            Discrepancy(
                kind=row["kind"],
                detail=row["detail"],
                detected_on=row["detected_on"],
                payout_id=_public_payout_id(row["payout_id"]) if row["payout_id"] else None,
                end_to_end_id=row["end_to_end_id"],
                amount_minor=row["amount_minor"],
                currency=row["currency"],
                booking_date=row["booking_date"],
                bank_reference=row["bank_reference"],
            )
            for row in rows
        ]
        return (counts.get("booking", 0), counts.get("return", 0), counts.get("other", 0), discrepancies)
