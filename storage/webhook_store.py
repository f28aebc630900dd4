"""Stripe webhooks in: the event is recorded and its resource made due for a look-up, in one statement.

The statement inserts the event (ON CONFLICT DO NOTHING: a duplicate delivery changes nothing else) and,
only if it was new, brings the resource's next status poll forward to now; if the resource's key is still
unfinished (the worker's recovery owns it, not the poller), its `recover_after` too, unless an execution
holds the lease. One statement, so a crash cannot record an event whose nudge was lost: Stripe re-sends
an event that was not answered 2xx, and the re-sent one would be a duplicate.

The resource is found by PSP reference among the rows the poller watches (`next_poll_at IS NOT NULL`):
that predicate lets PostgreSQL use the small partial index `*_poll_due` instead of scanning the table
(there is no index on psp_reference, on purpose: migration 0003). A final resource is not watched, so
an event about one finds nothing, as required. Measured (EXPLAIN ANALYZE, 200,000 payments of which 2,000
watched): an index scan of payments_poll_due, 2.7 ms warm; the cost grows with the watched rows only.
"""

from __future__ import annotations

from server.app.webhook_events import DueLookup, StripeEvent
from server.app.webhook_intake import Receipt
from server.domain.states import ResourceType
from storage.database import Database
from storage.operations_store import UNFINISHED

_TABLES = {ResourceType.PAYMENT: "payments", ResourceType.REFUND: "refunds", ResourceType.PAYOUT: "payouts"}


def _record_sql(table: str) -> str:
    return f"""
        WITH event AS (
            INSERT INTO stripe_webhook_events (event_id, type, object_id) VALUES ($1, $2, $3)
            ON CONFLICT (event_id) DO NOTHING
            RETURNING 1
        ), due AS (
            UPDATE {table} SET next_poll_at = LEAST(next_poll_at, now())
            WHERE psp_reference = $3 AND psp = $4 AND next_poll_at IS NOT NULL AND EXISTS (SELECT 1 FROM event)
            RETURNING client_id, idempotency_key
        ), recovering AS (
            UPDATE idempotency_keys k SET recover_after = now()
            FROM due
            WHERE k.client_id = due.client_id AND k.idempotency_key = due.idempotency_key AND k.{UNFINISHED}
              AND (k.locked_until IS NULL OR k.locked_until <= now())
            RETURNING 1
        )
        SELECT EXISTS (SELECT 1 FROM event) AS recorded, (SELECT count(*) FROM due) AS due
    """


_RECORD = {rtype: _record_sql(table) for rtype, table in _TABLES.items()}


class PostgresWebhookStore:
    """Implements server.app.webhook_intake.WebhookStore for the PSP named `psp` (its resources only)."""

    def __init__(self, db: Database, psp: str) -> None:
        self._db = db
        self._psp = psp

    async def record(self, event: StripeEvent, lookup: DueLookup) -> Receipt:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(_RECORD[lookup.resource], event.id, event.type, lookup.psp_reference, self._psp)
        return Receipt(recorded=bool(row["recorded"]), due=int(row["due"]))
