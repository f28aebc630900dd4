"""Versioned SQL migrations, applied by `payments migrate` and at start-up.

Several processes may start at once: an advisory lock makes one of them migrate while the others
wait. After the migrations, the allowed status transitions are loaded from server.domain.states, the
single definition the database trigger enforces.
"""

from __future__ import annotations

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


async def migrate(conn: Any) -> list[str]:
    """Applies pending migrations; returns the names applied."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migration_files():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            applied.append(name)
        await conn.execute("DELETE FROM status_transitions")
        await conn.executemany(
            "INSERT INTO status_transitions (resource_type, from_status, to_status) VALUES ($1, $2, $3)",
            all_transitions(),
        )
    return applied


async def migrate_dsn(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn)
    finally:
        await conn.close()
