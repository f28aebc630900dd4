"""Reads of resources, always filtered by the calling client (another client's id is NOT_FOUND)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from server.app.store import Cursor, KeysetPage
from server.domain.model import DestinationType, Payment, Payout, Refund
from server.domain.states import PaymentStatus, PayoutStatus, RefundStatus
from storage.database import Database
from storage.rows import PAYMENT_COLUMNS, PAYOUT_COLUMNS, REFUND_COLUMNS, payment_of, payout_of, refund_of

R = TypeVar("R")


async def fetch_payment(conn: Any, client_id: str, payment_id: uuid.UUID) -> Payment | None:
    row = await conn.fetchrow(
        f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1 AND client_id = $2", payment_id, client_id
    )
    return payment_of(row) if row else None


async def fetch_refund(conn: Any, client_id: str, refund_id: uuid.UUID) -> Refund | None:
    row = await conn.fetchrow(
        f"SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1 AND client_id = $2", refund_id, client_id
    )
    return refund_of(row) if row else None


async def fetch_payout(conn: Any, client_id: str, payout_id: uuid.UUID) -> Payout | None:
    row = await conn.fetchrow(
        f"SELECT {PAYOUT_COLUMNS} FROM payouts WHERE id = $1 AND client_id = $2", payout_id, client_id
    )
    return payout_of(row) if row else None


class PostgresReader:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_payment(self, client_id: str, payment_id: uuid.UUID) -> Payment | None:
        async with self._db.connection() as conn:
            return await fetch_payment(conn, client_id, payment_id)

    async def get_refund(self, client_id: str, refund_id: uuid.UUID) -> Refund | None:
        async with self._db.connection() as conn:
            return await fetch_refund(conn, client_id, refund_id)

    async def get_payout(self, client_id: str, payout_id: uuid.UUID) -> Payout | None:
        async with self._db.connection() as conn:
            return await fetch_payout(conn, client_id, payout_id)

    async def list_payments(
        self, client_id: str, *, limit: int, status: PaymentStatus | None, customer_id: str | None,
        after: Cursor | None,
    ) -> KeysetPage[Payment]:  # fmt: skip
        filters = {"status": status, "customer_id": customer_id or None}
        return await self._page("payments", PAYMENT_COLUMNS, payment_of, client_id, filters, limit, after)

    async def list_refunds(
        self, client_id: str, *, limit: int, status: RefundStatus | None, payment_id: uuid.UUID | None,
        after: Cursor | None,
    ) -> KeysetPage[Refund]:  # fmt: skip
        filters = {"status": status, "payment_id": payment_id}
        return await self._page("refunds", REFUND_COLUMNS, refund_of, client_id, filters, limit, after)

    async def list_payouts(
        self, client_id: str, *, limit: int, status: PayoutStatus | None, destination: DestinationType | None,
        after: Cursor | None,
    ) -> KeysetPage[Payout]:  # fmt: skip
        filters = {"status": status, "destination->>'type'": destination}
        return await self._page("payouts", PAYOUT_COLUMNS, payout_of, client_id, filters, limit, after)

    async def _page(
        self, table: str, columns: str, of_row: Callable[[Any], R], client_id: str,
        filters: Mapping[str, object], limit: int, after: Cursor | None,
    ) -> KeysetPage[R]:  # fmt: skip
        """Keyset pagination, newest first, along the table's (client_id, created_at, id) index: a page
        costs the same however deep it is (migrations/0011_listings.sql). `filters` maps a column
        expression of this module to its value; None leaves it out."""
        sql, args = _keyset_query(table, columns, client_id, filters, limit, after)
        async with self._db.connection() as conn:
            rows = await conn.fetch(sql, *args)
        last = rows[limit - 1] if len(rows) > limit else None
        cursor = (last["created_at"], last["id"]) if last is not None else None
        return KeysetPage([of_row(r) for r in rows[:limit]], cursor)


def _keyset_query(
    table: str, columns: str, client_id: str, filters: Mapping[str, object], limit: int, after: Cursor | None
) -> tuple[str, list[object]]:
    """The page's statement: one row past `limit` tells whether another page follows."""
    conditions = ["client_id = $1"]
    args: list[object] = [client_id]
    for expression, value in filters.items():
        if value is not None:
            args.append(value)
            conditions.append(f"{expression} = ${len(args)}")
    if after is not None:
        args.extend(after)
        conditions.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    sql = (
        f"SELECT {columns} FROM {table} WHERE {' AND '.join(conditions)}"
        f" ORDER BY created_at DESC, id DESC LIMIT ${len(args)}"
    )
    return sql, args
