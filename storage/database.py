"""The asyncpg pool, and the one place where a lost database becomes a retryable error.

Any connection-level failure (refused, reset, server shutting down, too many connections) surfaces as
StorageUnavailable, which the edge answers with UNAVAILABLE and RetryInfo: nothing was decided, so
the caller retries with the same idempotency key. The pool reconnects by itself once PostgreSQL is back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from server.domain.errors import StorageUnavailable

# SQLSTATE classes that mean "the database is not there right now", not "your query is wrong".
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53", "57P")

Connection = asyncpg.Connection  # re-exported for type hints in this package


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, asyncpg.InterfaceError, asyncpg.exceptions.ConnectionDoesNotExistError)):
        return True
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        # asyncpg lost track of the connection's protocol state: a query raced the server terminating
        # the session (shutdown, pg_terminate_backend; MagicStack/asyncpg#1069). Retrying with the same
        # idempotency key is safe whether or not the statement ran.
        return True
    if isinstance(exc, TimeoutError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = getattr(exc, "sqlstate", "") or ""
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES)
    return False


class _StatelessConnection(asyncpg.Connection):  # type: ignore[misc]
    """A connection released to the pool without a reset round trip.

    asyncpg resets session state (RESET ALL, UNLISTEN, advisory unlock) on every release, one extra round
    trip each time. This service keeps no session state: its advisory locks are transaction-scoped and it
    never LISTENs or SETs, so there is nothing to reset. An open transaction is still rolled back.
    """

    def get_reset_query(self) -> str:
        return ""


async def _init_connection(conn: Any) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=30,
            connection_class=_StatelessConnection,
        )  # fmt: skip
    except Exception as exc:
        if is_unavailable(exc):
            raise StorageUnavailable() from exc
        raise
    assert pool is not None
    return pool


class Database:
    """Hands out pooled connections, translating connection failures into StorageUnavailable."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        try:
            async with self.pool.acquire() as conn:
                try:
                    yield conn
                except asyncpg.exceptions.InternalClientError:
                    conn.terminate()  # its protocol state is unknown: never hand it out again
                    raise
        except StorageUnavailable:
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise StorageUnavailable() from exc
            raise

    async def close(self) -> None:
        await self.pool.close()
