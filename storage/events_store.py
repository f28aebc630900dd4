"""The outbox read back as a client's event feed (docs/outbox.md).

PostgreSQL writes the rows (storage/migrations/0010_outbox.sql); this module only reads them. A row's
position is (txid, seq): the transaction that wrote it and its insertion order. Rows are read only below
the oldest transaction still running (pg_snapshot_xmin), so every row an open transaction may still
commit sorts after every row read: a reader that resumes after the last position it saw never skips one.
"""

from __future__ import annotations

from typing import Any

from server.app.events import EventCursor, StoredEvent
from server.domain.states import PaymentStatus, PayoutStatus, RefundStatus, ResourceType
from storage.database import Database

__all__ = ["EVENT_TYPES", "EventCursor", "PostgresEventStore", "StoredEvent"]

_STATUSES = {ResourceType.PAYMENT: PaymentStatus, ResourceType.REFUND: RefundStatus, ResourceType.PAYOUT: PayoutStatus}
# Every type the outbox trigger writes: "<aggregatetype>.<lower(status)>".
EVENT_TYPES = frozenset(
    f"{resource}.{status.lower()}" for resource, statuses in _STATUSES.items() for status in statuses
)

# txid is xid8, which asyncpg has no codec for: it crosses as text, named `xid` (an output column named
# txid would be what ORDER BY txid sorts by: text, "10" before "9"). The position and the visibility bound
# are index conditions on outbox_events_feed (client_id, txid, seq), which also gives the order.
_VISIBLE = "txid < pg_snapshot_xmin(pg_current_snapshot())"
_COLUMNS = "id, txid::text AS xid, seq, type, aggregatetype, aggregateid, payload, traceparent, created_at"
_HEAD = f"""
    SELECT txid::text AS xid, seq FROM outbox_events
    WHERE client_id = $1 AND {_VISIBLE}
    ORDER BY txid DESC, seq DESC LIMIT 1
"""


def _read_sql(*, types: bool, resource: bool) -> str:
    """$1 client, $2 and $3 the position, $4 the limit, then the filters given."""
    conditions = ["client_id = $1", "(txid, seq) > ($2::text::xid8, $3::bigint)", _VISIBLE]
    if types:
        conditions.append("type = ANY($5::text[])")
    if resource:
        conditions.append(f"aggregateid = ${6 if types else 5}")
    return f"SELECT {_COLUMNS} FROM outbox_events WHERE {' AND '.join(conditions)} ORDER BY txid, seq LIMIT $4"


_READ = {(t, r): _read_sql(types=t, resource=r) for t in (False, True) for r in (False, True)}


def _event_of(row: Any) -> StoredEvent:
    return StoredEvent(
        cursor=EventCursor(int(row["xid"]), row["seq"]), event_id=row["id"], type=row["type"],
        aggregatetype=row["aggregatetype"], aggregateid=row["aggregateid"], payload=row["payload"],
        traceparent=row["traceparent"], created_at=row["created_at"],
    )  # fmt: skip


class PostgresEventStore:
    """A client's outbox rows, in (txid, seq) order, once no open transaction can precede them."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def read(
        self, client_id: str, after: EventCursor, *, types: frozenset[str] = frozenset(),
        resource_id: str | None = None, limit: int = 100,
    ) -> list[StoredEvent]:  # fmt: skip
        """Visible events of the client after `after`, filtered by type (any of `types`; empty: all) and
        by the resource's public id."""
        args: list[object] = [client_id, str(after.txid), after.seq, limit]
        if types:
            args.append(sorted(types))
        if resource_id is not None:
            args.append(resource_id)
        sql = _READ[bool(types), resource_id is not None]
        async with self._db.connection() as conn:
            rows = await conn.fetch(sql, *args)
        return [_event_of(row) for row in rows]

    async def head(self, client_id: str) -> EventCursor:
        """The position after every event visible now; EventCursor(0, 0) when there is none."""
        async with self._db.connection() as conn:
            row = await conn.fetchrow(_HEAD, client_id)
        return EventCursor(int(row["xid"]), row["seq"]) if row is not None else EventCursor(0, 0)
