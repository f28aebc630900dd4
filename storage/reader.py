"""Reads of resources, always filtered by the calling client (another client's id is NOT_FOUND)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from server.app.store import PaymentPage
from server.domain.model import Payment, Payout, Refund
from server.domain.states import PaymentStatus
from storage.database import Database
from storage.rows import PAYMENT_COLUMNS, PAYOUT_COLUMNS, REFUND_COLUMNS, payment_of, payout_of, refund_of


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
        self,
        client_id: str,
        *,
        limit: int,
        status: PaymentStatus | None,
        customer_id: str | None,
        after: tuple[datetime, uuid.UUID] | None,
    ) -> PaymentPage:
        """Keyset pagination, newest first: cost stays flat however deep the page."""
        conditions = ["client_id = $1"]
        args: list[object] = [client_id]
        if status is not None:
            args.append(str(status))
            conditions.append(f"status = ${len(args)}")
        if customer_id:
            args.append(customer_id)
            conditions.append(f"customer_id = ${len(args)}")
        if after is not None:
            args.extend(after)
            conditions.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit + 1)
        sql = (
            f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE {' AND '.join(conditions)}"
            f" ORDER BY created_at DESC, id DESC LIMIT ${len(args)}"
        )
        async with self._db.connection() as conn:
            rows = await conn.fetch(sql, *args)
        payments = [payment_of(r) for r in rows[:limit]]
        more = len(rows) > limit
        cursor = (payments[-1].created_at, payments[-1].id) if more and payments else None
        return PaymentPage(payments, cursor)
