"""PostgreSQL for the operator's admin service (server/app/admin_port.py): reads across every client.

Every write goes through the same conditional transition as the rest of the service
(`apply_transition`), so the trigger checks it against the lifecycle and appends it to resource_events.
The listing has no index of its own on purpose: an index on status would cost every status change its
HOT update (migration 0003); an operator's occasional scan of the three tables is the cheaper side.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from server.app.admin_port import (
    IN_PROGRESS,
    EventRecord,
    KeyState,
    OperationRecord,
    Resource,
    ResourceRef,
    StuckPage,
    StuckQuery,
)
from server.app.store import Transition
from server.domain.states import ResourceType
from storage.database import Database
from storage.operations_store import UNFINISHED, apply_transition
from storage.rows import PAYMENT_COLUMNS, PAYOUT_COLUMNS, REFUND_COLUMNS, payment_of, payout_of, refund_of

RECENT_EVENTS = 10  # event-log rows shown with each operation

_TABLES: dict[ResourceType, tuple[str, str, Callable[[Any], Resource]]] = {
    ResourceType.PAYMENT: ("payments", PAYMENT_COLUMNS, payment_of),
    ResourceType.REFUND: ("refunds", REFUND_COLUMNS, refund_of),
    ResourceType.PAYOUT: ("payouts", PAYOUT_COLUMNS, payout_of),
}


def _select_sql(rtype: ResourceType, where: str) -> str:
    """The resource with its last actor and reason and the state of its idempotency key."""
    table, columns, _ = _TABLES[rtype]
    qualified = ", ".join(f"r.{c.strip()}" for c in columns.split(","))
    return f"""
        SELECT {qualified}, r.idempotency_key, r.last_actor, r.last_reason,
               k.client_id IS NOT NULL AS key_found, k.executions AS key_executions,
               k.recovery_point AS key_recovery_point, k.recover_after AS key_recover_after,
               k.locked_until AS key_locked_until
        FROM {table} r
        LEFT JOIN idempotency_keys k ON k.client_id = r.client_id AND k.idempotency_key = r.idempotency_key
        WHERE {where}
    """


_GET = {rtype: _select_sql(rtype, "r.id = $1") for rtype in ResourceType}
_GET_MANY = {rtype: _select_sql(rtype, "r.id = ANY($1::uuid[])") for rtype in ResourceType}
_LOCK = {
    rtype: f"SELECT {columns}, idempotency_key FROM {table} WHERE id = $1 FOR UPDATE"
    for rtype, (table, columns, _) in _TABLES.items()
}


def _stuck_branch(rtype: ResourceType, statuses_param: str) -> str:
    table = _TABLES[rtype][0]
    return f"""
        SELECT '{rtype}' AS resource_type, id, updated_at FROM {table}
        WHERE (status = 'REQUIRES_RECONCILIATION'
               OR (status = ANY({statuses_param}::text[]) AND updated_at < now() - make_interval(secs => $1)))
          AND ($2::text IS NULL OR client_id = $2)
          AND ($3::timestamptz IS NULL OR (updated_at, id) > ($3::timestamptz, $4::uuid))
    """


_LIST_STUCK = f"""
    SELECT resource_type, id, updated_at FROM (
        {_stuck_branch(ResourceType.PAYMENT, "$6")}
        UNION ALL
        {_stuck_branch(ResourceType.REFUND, "$7")}
        UNION ALL
        {_stuck_branch(ResourceType.PAYOUT, "$8")}
    ) stuck
    ORDER BY updated_at, id
    LIMIT $5
"""

_EVENTS = """
    SELECT r.id AS resource_id, e.from_status, e.to_status, e.actor, e.reason, e.occurred_at
    FROM unnest($1::uuid[]) AS r(id)
    CROSS JOIN LATERAL (
        SELECT id, from_status, to_status, actor, reason, occurred_at FROM resource_events
        WHERE resource_id = r.id ORDER BY id DESC LIMIT $2
    ) e
    ORDER BY r.id, e.id DESC
"""

_SCHEDULE_RECOVERY = f"""
    UPDATE idempotency_keys SET recover_after = now()
    WHERE client_id = $1 AND idempotency_key = $2 AND {UNFINISHED}
      AND (locked_until IS NULL OR locked_until <= now())
    RETURNING 1
"""

# A key still unfinished when its resource is resolved: finished without a reply body, so a replay
# rebuilds the reply from the resource (see Pruned); its lease is cleared, so an execution still
# holding it can neither finish nor release it.
_FINISH_UNFINISHED_KEY = f"""
    UPDATE idempotency_keys
    SET recovery_point = 'finished', reply_code = 0, reply_body = NULL, reply_final = false,
        reply_stored_at = now(), locked_until = NULL, lock_token = NULL, recover_after = NULL, updated_at = now()
    WHERE client_id = $1 AND idempotency_key = $2 AND {UNFINISHED}
"""


def _record(rtype: ResourceType, row: Any, events: tuple[EventRecord, ...]) -> OperationRecord:
    key = None
    if row["key_found"]:
        key = KeyState(
            executions=row["key_executions"], finished=row["key_recovery_point"] == "finished",
            recover_after=row["key_recover_after"], locked_until=row["key_locked_until"],
        )  # fmt: skip
    return OperationRecord(
        resource_type=rtype, resource=_TABLES[rtype][2](row), idempotency_key=row["idempotency_key"],
        last_actor=row["last_actor"], last_reason=row["last_reason"], key=key, events=events,
    )  # fmt: skip


async def _events(conn: Any, ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[EventRecord, ...]]:
    found: dict[uuid.UUID, list[EventRecord]] = {}
    for row in await conn.fetch(_EVENTS, ids, RECENT_EVENTS):
        found.setdefault(row["resource_id"], []).append(
            EventRecord(row["from_status"], row["to_status"], row["actor"], row["reason"], row["occurred_at"])
        )
    return {resource_id: tuple(events) for resource_id, events in found.items()}


async def _load(conn: Any, ref: ResourceRef) -> OperationRecord | None:
    row = await conn.fetchrow(_GET[ref.resource_type], ref.id)
    if row is None:
        return None
    events = await _events(conn, [ref.id])
    return _record(ref.resource_type, row, events.get(ref.id, ()))


class PostgresAdminStore:
    """Implements server.app.admin_port.AdminStore."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def list_stuck(self, query: StuckQuery) -> StuckPage:
        after_time, after_id = query.after if query.after else (None, None)
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                _LIST_STUCK, query.older_than_seconds, query.client_id, after_time, after_id, query.limit + 1,
                list(IN_PROGRESS[ResourceType.PAYMENT]), list(IN_PROGRESS[ResourceType.REFUND]),
                list(IN_PROGRESS[ResourceType.PAYOUT]),
            )  # fmt: skip
            page = rows[: query.limit]
            by_type: dict[ResourceType, list[uuid.UUID]] = {}
            for row in page:
                by_type.setdefault(ResourceType(row["resource_type"]), []).append(row["id"])
            events = await _events(conn, [row["id"] for row in page])
            loaded: dict[uuid.UUID, OperationRecord] = {}
            for rtype, ids in by_type.items():
                for row in await conn.fetch(_GET_MANY[rtype], ids):
                    loaded[row["id"]] = _record(rtype, row, events.get(row["id"], ()))
        # A row that left the tables between the two reads cannot happen (rows are never deleted).
        records = [loaded[row["id"]] for row in page if row["id"] in loaded]
        more = len(rows) > query.limit
        cursor = (page[-1]["updated_at"], page[-1]["id"]) if more and page else None
        return StuckPage(records, cursor)

    async def get(self, ref: ResourceRef) -> OperationRecord | None:
        async with self._db.connection() as conn:
            return await _load(conn, ref)

    async def schedule_recovery(self, client_id: str, key: str) -> bool:
        async with self._db.connection() as conn:
            return await conn.fetchval(_SCHEDULE_RECOVERY, client_id, key) is not None

    async def apply(self, transition: Transition) -> bool:
        async with self._db.connection() as conn, conn.transaction():
            return await apply_transition(conn, transition)

    async def resolve(self, ref: ResourceRef, decide: Callable[[Resource], Transition]) -> OperationRecord | None:
        row_of = _TABLES[ref.resource_type][2]
        async with self._db.connection() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(_LOCK[ref.resource_type], ref.id)
                if row is None:
                    return None
                resource = row_of(row)
                transition = decide(resource)  # may refuse (raises): the transaction rolls back
                if not await apply_transition(conn, transition):  # cannot happen under the row lock
                    raise RuntimeError(f"the transition of {ref.public_id} lost its row lock")
                await conn.execute(_FINISH_UNFINISHED_KEY, resource.client_id, row["idempotency_key"])
            return await _load(conn, ref)
