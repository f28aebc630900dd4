"""Importing camt documents into PostgreSQL: entries applied to payouts through the transition trigger,
all or nothing per document, idempotent, discrepancies kept; the files are the hand-made bank samples."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.bank.camt import parse_camt
from adapters.bank.pain001 import derive_message_ids
from server.app.bank_statements import BankStatements, StatementConflict, StatementPolicy
from server.app.store import KeyClaim, Started, StoredReply, Transition
from server.domain.bank_statements import BankDocument
from server.domain.idempotency import Operation
from server.domain.ids import IdKind, format_id, new_id
from server.domain.model import Payout, SepaDestination
from server.domain.money import Money
from server.domain.states import PayoutStatus, ResourceType
from storage.database import Database
from storage.operations_store import PostgresOperationStore
from storage.statement_store import PostgresStatementStore

SAMPLES = Path(__file__).parents[1] / "unit" / "bank_samples"
AT = datetime(2026, 12, 1, 12, tzinfo=UTC)
OK = StoredReply(0, b"reply")


def statements(db: Database, grace: int = 2) -> BankStatements:
    return BankStatements(
        PostgresStatementStore(db), [], StatementPolicy(booking_grace_business_days=grace), lambda: AT
    )


def sample(name: str, payouts: dict[str, Payout] | None = None) -> BankDocument:
    """A hand-made bank file, its invented EndToEndIds replaced by those of `payouts` (name → payout)."""
    data = (SAMPLES / name).read_bytes()
    for invented, payout in (payouts or {}).items():
        data = data.replace(f">{invented}<".encode(), f">{payout.psp_data['end_to_end_id']}<".encode())
    return parse_camt(data)


async def payout(db: Database, amount_minor: int, status: str = "PAID", paid_at: datetime = AT) -> Payout:
    """A SEPA payout created and moved like the service does: a time-ordered id, its EndToEndId derived
    from it and stored before submission."""
    payout_id = new_id()
    e2e = derive_message_ids(format_id(IdKind.PAYOUT, payout_id)).end_to_end_id
    drafted = Payout(
        id=payout_id, client_id="c", status=PayoutStatus.PENDING, amount=Money(amount_minor, "EUR"),
        destination=SepaDestination("DE89370400440532013000", "", "Händler", "DE", "Köln"), instant=False,
        reference="payout", psp="bank", psp_reference=None, failure=None, created_at=paid_at, updated_at=paid_at,
        psp_data={"end_to_end_id": e2e},
    )  # fmt: skip
    store = PostgresOperationStore(db)
    begun = await store.begin_payout(KeyClaim("c", f"k-{e2e}", Operation.PAYOUT, b"fp", 30.0), drafted)
    assert isinstance(begun, Started)
    moved = Transition(ResourceType.PAYOUT, drafted.id, "c", "PENDING", status, "psp", "test", paid_at, e2e)
    await store.record_outcome(begun.lease, moved, OK)
    return drafted


async def row(db: Database, payout_id: uuid.UUID) -> Any:
    async with db.connection() as conn:
        return await conn.fetchrow("SELECT status, failure_code, failure_message, psp_data FROM payouts WHERE id = $1",
                                   payout_id)  # fmt: skip


async def count(db: Database, sql: str) -> int:
    async with db.connection() as conn:
        value: int = await conn.fetchval(sql)
    return value


async def test_batched_returns_move_paid_payouts_to_returned_with_their_reason(db: Database) -> None:
    closed = await payout(db, 11_000)
    wrong = await payout(db, 20_000, status="PROCESSING")
    document = sample("camt.054.001.02.xml", {"E2E-RET-AC04": closed, "E2E-RET-AM09": wrong})
    result = await statements(db).import_document(document, "file:camt054.xml")
    assert (result.reports_imported, result.outcomes, result.discrepancies) == (1, {"RETURNED": 2}, ())
    first, second = await row(db, closed.id), await row(db, wrong.id)
    assert (first["status"], first["failure_code"], first["failure_message"]) == (
        "RETURNED",
        "AC04",
        "Closed account number",
    )
    assert (second["status"], second["failure_code"]) == ("RETURNED", "AM09")
    async with db.connection() as conn:
        event = await conn.fetchrow(
            "SELECT from_status, actor, reason FROM resource_events WHERE resource_id = $1 AND to_status = 'RETURNED'",
            closed.id,
        )
    assert (event["from_status"], event["actor"]) == ("PAID", "bank:statement")
    assert "AC04" in event["reason"]


async def test_a_booked_debit_confirms_paid_and_a_lost_answer_becomes_paid(db: Database) -> None:
    batch_a = await payout(db, 100_000)
    batch_b = await payout(db, 50_000, status="PROCESSING")  # its pain.002 answer was lost
    single = await payout(db, 2_450, status="FAILED")  # we thought it failed
    names = {"E2E-BATCH-A": batch_a, "E2E-BATCH-B": batch_b, "E2E-SINGLE": single}
    result = await statements(db).import_document(sample("camt.053.001.02.xml", names), "file:camt053.xml")
    assert result.outcomes == {"PAID": 2, "status_conflict": 1, "ignored": 2}
    confirmed, made_paid = await row(db, batch_a.id), await row(db, batch_b.id)
    assert confirmed["status"] == made_paid["status"] == "PAID"
    assert confirmed["psp_data"]["booked_on"] == "2026-11-30"
    assert (await row(db, single.id))["status"] == "FAILED"  # a statement never overrules FAILED: a human does
    assert [d.kind for d in result.discrepancies] == ["status_conflict"]


async def test_importing_the_same_statement_twice_changes_nothing(db: Database) -> None:
    names = {"E2E-08-ONE": await payout(db, 10_000), "E2E-08-RETURNED": await payout(db, 12_500)}
    use = statements(db)
    first = await use.import_document(sample("camt.053.001.08.xml", names), "file:a.xml")
    assert first.outcomes == {"PAID": 1, "unknown_entry": 3, "RETURNED": 1}
    tables = ("bank_reports", "bank_entries", "bank_discrepancies", "resource_events", "outbox_events")
    before = [await count(db, f"SELECT count(*) FROM {table}") for table in tables]
    again = await use.import_document(sample("camt.053.001.08.xml", names), "file:a-again.xml")
    assert (again.reports_imported, again.reports_already_imported, again.outcomes) == (0, 1, {})
    assert [await count(db, f"SELECT count(*) FROM {table}") for table in tables] == before


async def test_a_conflicting_report_is_refused_and_nothing_of_its_document_applies(db: Database) -> None:
    returned = await payout(db, 6_499)
    pending = await payout(db, 1_200, status="PROCESSING")
    use = statements(db)
    first = sample("camt.054.001.08.xml", {"E2E-RET-AC06": returned})  # E2E-DEBIT-NOTE: not ours yet
    await use.import_document(first, "file:first.xml")
    assert (await row(db, returned.id))["status"] == "RETURNED"
    assert (await row(db, pending.id))["status"] == "PROCESSING"
    original = sample("camt.054.001.08.xml", {"E2E-RET-AC06": returned, "E2E-DEBIT-NOTE": pending})
    # A new report that would make `pending` PAID, then the first report's id saying something else (a
    # bank correction): the document is refused whole.
    (report,) = original.reports
    fresh = dataclasses.replace(report, report_id="NTF-NEW")
    corrected = dataclasses.replace(report, entries=report.entries[:1])
    before = [await count(db, f"SELECT count(*) FROM {t}") for t in ("bank_reports", "bank_entries")]
    with pytest.raises(StatementConflict, match="imported before with other content"):
        await use.import_document(dataclasses.replace(original, reports=(fresh, corrected)), "file:corrected.xml")
    assert [await count(db, f"SELECT count(*) FROM {t}") for t in ("bank_reports", "bank_entries")] == before
    assert (await row(db, pending.id))["status"] == "PROCESSING"


async def test_unknown_entries_and_unbooked_payouts_are_reported_once(db: Database) -> None:
    use = statements(db, grace=2)
    lost = await payout(db, 3_000, paid_at=datetime(2026, 11, 25, 15, tzinfo=UTC))  # Wednesday
    booked = await payout(db, 1_200, paid_at=datetime(2026, 11, 25, 15, tzinfo=UTC))
    notification = sample("camt.054.001.08.xml", {"E2E-DEBIT-NOTE": booked})  # AC06's payout is not ours
    await use.import_document(notification, "file:n.xml")
    early = await use.reconcile(date(2026, 11, 27))  # Thu, Fri: within the grace
    assert [d.kind for d in early.discrepancies] == []
    lost_e2e = lost.psp_data["end_to_end_id"]
    report = await use.reconcile(date(2026, 11, 30))  # Monday: a third business day without a booking
    kinds = sorted((d.kind, d.end_to_end_id) for d in report.discrepancies)
    assert kinds == [("unbooked_payout", lost_e2e)]  # AC06 was booked 2026-12-01: not in a report of 11-30
    report = await use.reconcile(date(2026, 12, 1))
    kinds = sorted((d.kind, d.end_to_end_id) for d in report.discrepancies)
    assert kinds == sorted([("unbooked_payout", lost_e2e), ("unknown_entry", "E2E-RET-AC06")])
    unbooked = next(d for d in report.discrepancies if d.kind == "unbooked_payout")
    assert unbooked.payout_id == f"po_{lost.id.hex}"
    assert (report.bookings, report.returns) == (1, 0)
    again = await use.reconcile(date(2026, 12, 1))
    assert len(again.discrepancies) == len(report.discrepancies)  # recorded once
    assert (await row(db, booked.id))["status"] == "PAID"


async def test_two_workers_importing_the_same_statement_at_once_apply_it_once(db: Database) -> None:
    paid = await payout(db, 10_000)
    document = sample("camt.053.001.08.xml", {"E2E-08-ONE": paid})
    first, second = await asyncio.gather(
        statements(db).import_document(document, "bank"), statements(db).import_document(document, "bank")
    )
    assert sorted((first.reports_imported, second.reports_imported)) == [0, 1]
    assert sorted((first.reports_already_imported, second.reports_already_imported)) == [0, 1]
    assert await count(db, "SELECT count(*) FROM bank_entries") == 5
    assert (await row(db, paid.id))["psp_data"]["booked_on"] == "2026-11-30"
