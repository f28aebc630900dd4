"""The migrator on an empty database: every migration from scratch, several processes at once, and a
migration that must run outside a transaction (CREATE INDEX CONCURRENTLY)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from server.domain.states import all_transitions
from storage import migrator
from tests.support.postgres import PostgresForTests

CONCURRENT_INDEX = f"""{migrator.OUTSIDE_TRANSACTION}
-- A comment line; then two statements PostgreSQL refuses inside a transaction.
DROP INDEX CONCURRENTLY IF EXISTS payments_by_reference;
CREATE INDEX CONCURRENTLY payments_by_reference ON payments (psp_reference);
"""


def test_a_migration_outside_a_transaction_builds_its_index_once_while_others_wait(
    postgres: PostgresForTests, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.empty_database()
    asyncio.run(_migrate_three_at_once(url, monkeypatch))


async def _migrate_three_at_once(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    files = migrator.migration_files()
    newest = files[-1][0]
    monkeypatch.setattr(migrator, "migration_files", lambda: [*files, (newest + 1, "9999_index.sql", CONCURRENT_INDEX)])
    # Three processes start at once (each `payments serve` migrates at start-up): the two that wait
    # must not hold a snapshot CREATE INDEX CONCURRENTLY would wait for (storage/migrator.py).
    results = await asyncio.gather(*(migrator.migrate_dsn(url) for _ in range(3)))
    applied = [names for names in results if names]
    assert len(applied) == 1, "one process migrates, the others find it done"
    assert applied[0][-1] == "9999_index.sql"
    assert len(applied[0]) == len(files) + 1
    conn = await asyncpg.connect(url)
    try:
        valid = await conn.fetchval(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'payments_by_reference'::regclass"
        )
        assert valid is True
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == newest + 1
        assert await conn.fetchval("SELECT count(*) FROM status_transitions") == len(all_transitions())
    finally:
        await conn.close()


def test_statements_of_a_migration_outside_a_transaction() -> None:
    assert migrator._statements(CONCURRENT_INDEX) == [
        "DROP INDEX CONCURRENTLY IF EXISTS payments_by_reference",
        "CREATE INDEX CONCURRENTLY payments_by_reference ON payments (psp_reference)",
    ]


async def test_a_restarting_older_replica_does_not_take_away_a_newer_transition(database_url: str) -> None:
    """The transitions are added at every start, never replaced: a newer release's stay allowed when a
    replica of the previous one (which does not know them) migrates again."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("INSERT INTO status_transitions VALUES ('payout', 'PAID', 'REVERSED_BY_A_NEWER_RELEASE')")
        await migrator.migrate(conn)
        assert await conn.fetchval("SELECT count(*) FROM status_transitions") == len(all_transitions()) + 1
    finally:
        await conn.close()
