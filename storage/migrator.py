"""Versioned SQL migrations, applied by `payments migrate` and at start-up.

Several processes may start at once: an advisory lock makes one of them migrate while the others
wait. Each migration commits on its own, so a failed one leaves the ones before it applied. After the
migrations, the allowed status transitions of server.domain.states, the single definition the database
trigger enforces, are added to the table (never removed here: see `migrate`).
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

import asyncpg

from server.domain.states import all_transitions

_LOCK_ID = 7_202_611  # arbitrary, constant: identifies the migration lock


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migrations/NNNN_name.sql, in order."""
    found = []
    for entry in resources.files("storage").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


# A migration whose first line is this runs outside a transaction, one statement at a time: what
# PostgreSQL refuses inside one, such as CREATE INDEX CONCURRENTLY, which builds an index on a busy table
# without stopping its writes (storage/migration_safety.py). Such a file holds plain statements, each
# ending with ";" at the end of a line, and must be safe to run again from the start if it is cut off:
# DROP INDEX CONCURRENTLY IF EXISTS before each CREATE INDEX CONCURRENTLY (a cut build leaves an invalid
# index behind).
OUTSIDE_TRANSACTION = "-- migrate: outside a transaction"


def _statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    parts = (part.strip().rstrip(";").strip() for part in "\n".join(lines).split(";\n"))
    return [part for part in parts if part]


async def migrate(conn: Any) -> list[str]:
    """Applies pending migrations, each in its own transaction unless it says otherwise; returns the
    names applied.

    The lock that makes one process migrate while the others wait is a session lock taken by polling,
    not by a blocking call: a process blocked in pg_advisory_lock would hold a snapshot, and CREATE
    INDEX CONCURRENTLY waits for every older snapshot to go, which would be a deadlock.
    """
    while True:
        if await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_ID):
            break
        await asyncio.sleep(0.1)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied: list[str] = []
        for version, name, sql in migration_files():
            if version in done:
                continue
            if sql.startswith(OUTSIDE_TRANSACTION):
                for statement in _statements(sql):
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            else:
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            applied.append(name)
        # Added, never replaced: during a rolling deploy a replica of the previous release that restarts
        # migrates too, and must not take away a transition the new release allows. Forbidding one that
        # was allowed is a contract step: a migration of a later release deletes it.
        await conn.executemany(
            "INSERT INTO status_transitions (resource_type, from_status, to_status) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            all_transitions(),
        )
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)


async def migrate_dsn(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn)
    finally:
        await conn.close()
