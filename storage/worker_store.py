"""Claims for the background worker, exclusive across any number of processes.

Each claim is one statement: rows are picked with FOR UPDATE SKIP LOCKED and leased in the same
statement (a new lock token for stalled keys; next_poll_at pushed past the lease for polls), so two
workers never process the same operation at the same time, and a worker that dies simply lets its
lease run out.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from server.app.store import Backlog, Lease, PollTarget, StalledExecution, Started, Transition
from server.domain.idempotency import Operation
from server.domain.model import Payment, Payout, Refund
from storage.database import Database
from storage.operations_store import FINISHED, STARTED, apply_transition
from storage.reader import fetch_payment, fetch_payout, fetch_refund
from storage.rows import PAYMENT_COLUMNS, PAYOUT_COLUMNS, REFUND_COLUMNS, payment_of, payout_of, refund_of

_CLAIM_STALLED = f"""
    WITH stalled AS (
        SELECT client_id, idempotency_key FROM idempotency_keys
        WHERE recovery_point = '{STARTED}' AND (locked_until IS NULL OR locked_until <= now())
          AND COALESCE(recover_after, updated_at + make_interval(secs => $1)) <= now()
        ORDER BY updated_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
    UPDATE idempotency_keys k
    SET locked_until = now() + make_interval(secs => $3), lock_token = gen_random_uuid(),
        executions = k.executions + 1, updated_at = now()
    FROM stalled s
    WHERE k.client_id = s.client_id AND k.idempotency_key = s.idempotency_key
    RETURNING k.client_id, k.idempotency_key, k.operation, k.resource_id, k.lock_token, k.executions,
              k.trace_context, EXTRACT(EPOCH FROM now() - k.created_at)::float8 AS key_age
"""

# A replay past the retention period is answered from the resource's current state (see Pruned). Stored
# errors are kept: there is no resource to rebuild them from.
_PRUNE_REPLIES = """
    UPDATE idempotency_keys SET reply_body = NULL
    WHERE ctid IN (
        SELECT ctid FROM idempotency_keys
        WHERE reply_body IS NOT NULL AND reply_code = 0 AND reply_stored_at < now() - make_interval(secs => $1)
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
"""


def _delete_older_than(table: str, key: str, time_column: str) -> str:
    """One batch of a table's rows older than $1 seconds, at most $2, oldest first. Every replica's worker
    prunes: SKIP LOCKED lets none wait for another's batch."""
    return f"""
        DELETE FROM {table}
        WHERE {key} IN (
            SELECT {key} FROM {table}
            WHERE {time_column} < now() - make_interval(secs => $1)
            ORDER BY {time_column}
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        )
    """


_PRUNE_WEBHOOK_EVENTS = _delete_older_than("stripe_webhook_events", "event_id", "received_at")
# Outbox events, found through the BRIN index on created_at (docs/outbox.md, Retention).
_PRUNE_EVENTS = _delete_older_than("outbox_events", "id", "created_at")

# The backlog gauges (payments.recovery.backlog.age, payments.reconciliation.open). Both read only rows the
# worker's partial indexes hold: unfinished keys (idempotency_keys_stalled) and resources with a next poll
# (*_poll_due; REQUIRES_RECONCILIATION is always polled, daily), never the whole history. Measured with
# 500,000 payments and keys (525 with a next poll, 10 keys unfinished): 0.3 ms in PostgreSQL, 514 buffers,
# both partial indexes used; 1.5 ms per call from the worker.
_MEASURE_BACKLOG = f"""
    SELECT COALESCE((SELECT EXTRACT(EPOCH FROM now() - min(created_at)) FROM idempotency_keys
                     WHERE recovery_point = '{STARTED}'), 0)::float8 AS oldest_unfinished,
           (SELECT count(*) FROM payments WHERE next_poll_at IS NOT NULL
                                            AND status = 'REQUIRES_RECONCILIATION') AS payment,
           (SELECT count(*) FROM refunds WHERE next_poll_at IS NOT NULL
                                           AND status = 'REQUIRES_RECONCILIATION') AS refund,
           (SELECT count(*) FROM payouts WHERE next_poll_at IS NOT NULL
                                           AND status = 'REQUIRES_RECONCILIATION') AS payout
"""

_TABLES = (("payments", PAYMENT_COLUMNS, payment_of), ("refunds", REFUND_COLUMNS, refund_of),
           ("payouts", PAYOUT_COLUMNS, payout_of))  # fmt: skip


def _claim_polls_sql(table: str, columns: str) -> str:
    qualified = ", ".join(f"r.{c.strip()}" for c in columns.split(","))
    return f"""
        WITH due AS (
            SELECT r.id, k.trace_context FROM {table} r
            JOIN idempotency_keys k ON k.client_id = r.client_id AND k.idempotency_key = r.idempotency_key
            WHERE r.next_poll_at <= now() AND k.recovery_point = '{FINISHED}'
            ORDER BY r.next_poll_at
            LIMIT $1
            FOR UPDATE OF r SKIP LOCKED
        )
        UPDATE {table} r SET next_poll_at = now() + make_interval(secs => $2), polls = r.polls + 1
        FROM due WHERE r.id = due.id
        RETURNING {qualified}, r.idempotency_key, r.polls, due.trace_context,
                  EXTRACT(EPOCH FROM now() - r.created_at)::float8 AS age
    """


_CLAIM_POLLS = {table: _claim_polls_sql(table, columns) for table, columns, _ in _TABLES}

# The next poll after one: now() + NULL is NULL, no further polls. The claim pushed next_poll_at a lease
# ahead; if it is due again already, a webhook made it due while this poll was under way (its look-up may
# have read the PSP before the event's change), so it stays due and is looked up again at once.
_RECORD_POLL = {
    table: f"""
        UPDATE {table}
        SET next_poll_at = CASE WHEN $2::interval IS NOT NULL AND next_poll_at <= now() THEN next_poll_at
                                ELSE now() + $2::interval END
        WHERE id = $1
    """
    for table, _, _ in _TABLES
}
_TABLE_OF = {Payment: "payments", Refund: "refunds", Payout: "payouts"}


class PostgresWorkerStore:
    """Implements server.app.store.WorkerStore."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._first_table = 0  # rotates, so a backlog in one table cannot starve the polls of the others

    async def claim_stalled(self, *, idle_seconds: float, limit: int, lease_seconds: float) -> list[StalledExecution]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(_CLAIM_STALLED, idle_seconds, limit, lease_seconds)
            claimed = []
            for row in rows:
                operation = Operation(row["operation"])
                loader = {Operation.CHARGE: fetch_payment, Operation.REFUND: fetch_refund,
                          Operation.PAYOUT: fetch_payout, Operation.CAPTURE: fetch_payment,
                          Operation.CANCEL: fetch_payment}[operation]  # fmt: skip
                resource: Any = await loader(conn, row["client_id"], row["resource_id"])
                if resource is None:  # cannot happen: the key and its resource are created together
                    continue
                lease = Lease(row["client_id"], row["idempotency_key"], row["lock_token"])
                started = Started(
                    resource, lease, resumed=True, executions=row["executions"], key_age_seconds=row["key_age"],
                    operation=operation,
                )  # fmt: skip
                claimed.append(StalledExecution(started, row["idempotency_key"], operation, row["trace_context"]))
        return claimed

    async def claim_due_polls(self, *, limit: int, lease_seconds: float) -> list[PollTarget]:
        targets: list[PollTarget] = []
        start, self._first_table = self._first_table, (self._first_table + 1) % len(_TABLES)
        async with self._db.connection() as conn:
            for table, _, row_of in _TABLES[start:] + _TABLES[:start]:
                if len(targets) >= limit:
                    break
                for row in await conn.fetch(_CLAIM_POLLS[table], limit - len(targets), lease_seconds):
                    targets.append(PollTarget(row_of(row), row["idempotency_key"], row["polls"], row["age"],
                                              row["trace_context"]))  # fmt: skip
        return targets

    async def prune_replies(self, *, older_than_seconds: float, limit: int) -> int:
        async with self._db.connection() as conn:
            status = await conn.execute(_PRUNE_REPLIES, older_than_seconds, limit)
        return int(status.split()[-1])

    async def warn_capture_once(self, payment_id: uuid.UUID) -> bool:
        async with self._db.connection() as conn:
            warned = await conn.fetchval(
                "UPDATE payments SET capture_warned = true WHERE id = $1 AND NOT capture_warned RETURNING 1", payment_id
            )
        return warned is not None

    async def prune_webhook_events(self, *, older_than_seconds: float, limit: int) -> int:
        async with self._db.connection() as conn:
            status = await conn.execute(_PRUNE_WEBHOOK_EVENTS, older_than_seconds, limit)
        return int(status.split()[-1])

    async def prune_events(self, *, older_than_seconds: float, limit: int) -> int:
        async with self._db.connection() as conn:
            status = await conn.execute(_PRUNE_EVENTS, older_than_seconds, limit)
        return int(status.split()[-1])

    async def record_poll(self, target: PollTarget, transition: Transition | None, next_poll_in: float | None) -> bool:
        table = _TABLE_OF[type(target.resource)]
        async with self._db.connection() as conn, conn.transaction():
            moved = await apply_transition(conn, transition) if transition is not None else False
            next_at = None if next_poll_in is None else timedelta(seconds=next_poll_in)
            await conn.execute(_RECORD_POLL[table], target.resource.id, next_at)
        return moved

    async def measure_backlog(self) -> Backlog:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(_MEASURE_BACKLOG)
        counts = {resource: int(row[resource]) for resource in ("payment", "refund", "payout")}
        return Backlog(float(row["oldest_unfinished"]), counts)
