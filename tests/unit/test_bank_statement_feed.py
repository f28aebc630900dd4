"""The statement round with fakes: what the worker imports from a gateway, and that a document it
cannot trust holds its feed instead of being skipped (evidence is never dropped)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest

from server.app.bank_statements import (
    BankStatements,
    Discrepancy,
    ImportResult,
    NewDiscrepancy,
    StatementConflict,
    StatementPolicy,
)
from server.domain.bank_statements import AccountReport, BankDocument, ReportKind

AT = datetime(2026, 11, 30, 18, tzinfo=UTC)


def document(report_id: str) -> BankDocument:
    report = AccountReport(ReportKind.STATEMENT, report_id, "DE89370400440532013000", AT, ())
    return BankDocument("camt.053.001.08", f"M-{report_id}", AT, (report,))


class FakeStore:
    def __init__(self) -> None:
        self.cursors: dict[tuple[str, ReportKind], int] = {}
        self.imported: list[str] = []
        self.conflicting: set[str] = set()
        self.unbooked_asked: list[date] = []

    async def import_document(
        self, document: BankDocument, *, source: str, at: datetime, cursor: tuple[str, ReportKind, int] | None = None
    ) -> ImportResult:
        report_id = document.reports[0].report_id
        if report_id in self.conflicting:
            raise StatementConflict(f"{report_id} conflicts")
        self.imported.append(report_id)
        if cursor is not None:
            self.cursors[(cursor[0], cursor[1])] = cursor[2]
        return ImportResult(1, 0, {"PAID": 1}, (NewDiscrepancy("unknown_entry", "x"),))

    async def feed_cursor(self, source: str, kind: ReportKind) -> int:
        return self.cursors.get((source, kind), 0)

    async def record_unbooked(self, as_of: date, grace_business_days: int) -> tuple[int, list[NewDiscrepancy]]:
        self.unbooked_asked.append(as_of)
        return 0, []

    async def report(self, day: date) -> tuple[int, int, int, list[Discrepancy]]:
        return 0, 0, 0, []


class FakeFeed:
    name = "bank"

    def __init__(self, statements: dict[int, bytes]) -> None:
        self.statements = statements

    def read(self, data: bytes) -> BankDocument:
        if data.startswith(b"broken"):
            raise ValueError("camt.053.001.08 schema validation failed")
        return document(data.decode())

    async def documents_after(self, kind: ReportKind, after: int) -> list[tuple[int, bytes]]:
        if kind is not ReportKind.STATEMENT:
            return []
        return [(seq, data) for seq, data in sorted(self.statements.items()) if seq > after]


def use_case(store: FakeStore, feed: FakeFeed) -> BankStatements:
    return BankStatements(store, [feed], StatementPolicy(fetch_every_seconds=60.0), lambda: AT)


def test_new_documents_are_imported_in_order_and_the_cursor_follows() -> None:
    store, feed = FakeStore(), FakeFeed({1: b"S-1", 2: b"S-2"})
    statements = use_case(store, feed)
    assert asyncio.run(statements.fetch()) == 2
    assert store.imported == ["S-1", "S-2"]
    assert store.cursors == {("bank", ReportKind.STATEMENT): 2}
    feed.statements[3] = b"S-3"
    assert asyncio.run(statements.fetch()) == 1
    assert store.imported == ["S-1", "S-2", "S-3"]


@pytest.mark.parametrize("trouble", ["unreadable", "conflicting"])
def test_a_document_that_cannot_be_applied_holds_its_feed(trouble: str, caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore()
    feed = FakeFeed({1: b"S-1", 2: b"broken" if trouble == "unreadable" else b"S-2", 3: b"S-3"})
    if trouble == "conflicting":
        store.conflicting.add("S-2")
    statements = use_case(store, feed)
    assert asyncio.run(statements.fetch()) == 1
    assert asyncio.run(statements.fetch()) == 0  # the next round stops at the same document
    assert store.imported == ["S-1"]  # S-3 waits behind S-2 rather than S-2 being lost
    assert store.cursors == {("bank", ReportKind.STATEMENT): 1}
    assert sum("document 2 refused, feed held there" in r.message for r in caplog.records) == 2


def test_the_worker_round_fetches_when_due_then_checks_unbooked_payouts() -> None:
    store, feed = FakeStore(), FakeFeed({1: b"S-1"})
    statements = use_case(store, feed)
    asyncio.run(statements.periodic(100.0))
    asyncio.run(statements.periodic(130.0))  # not due again before 60 s
    assert (store.imported, store.unbooked_asked) == (["S-1"], [AT.date()])
    asyncio.run(statements.periodic(160.0))
    assert store.unbooked_asked == [AT.date(), AT.date()]
