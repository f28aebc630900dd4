"""What the backlog gauges read from PostgreSQL (PostgresWorkerStore.measure_backlog), on a real database.

The served test (tests/e2e/test_metrics_served.py) shows the gauges in /metrics, but at zero; this puts
an operation in REQUIRES_RECONCILIATION and leaves an execution unfinished, through the store's own
statements (the transition that also schedules the daily re-check), and reads them back.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from server.app.store import KeyClaim, Started, StoredReply, Transition
from server.domain.idempotency import Operation
from server.domain.model import Payment
from server.domain.money import Money
from server.domain.states import PaymentStatus, ResourceType
from storage.database import Database, create_pool
from storage.operations_store import PostgresOperationStore
from storage.worker_store import PostgresWorkerStore


def _payment(at: datetime) -> Payment:
    return Payment(uuid.uuid4(), "c", PaymentStatus.PENDING, Money(1000, "EUR"), 0, 0, 0, "pm_card_visa", "", "",
                   {}, "sandbox", None, None, at, at)  # fmt: skip


async def _begin(store: PostgresOperationStore, key: str) -> tuple[Payment, Started[Payment]]:
    payment = _payment(datetime.now(UTC))
    started = await store.begin_charge(KeyClaim("c", key, Operation.CHARGE, key.encode(), 30.0, None), payment)
    assert isinstance(started, Started)
    return payment, started


async def test_the_gauges_count_what_waits_and_forget_it_once_it_is_final(database_url: str) -> None:
    db = Database(await create_pool(database_url))
    try:
        store, worker = PostgresOperationStore(db), PostgresWorkerStore(db)
        empty = await worker.measure_backlog()
        assert empty.oldest_unfinished_seconds == 0
        assert empty.requires_reconciliation == {"payment": 0, "refund": 0, "payout": 0}

        stuck, started = await _begin(store, "no-evidence")
        at = datetime.now(UTC)
        to_reconciliation = Transition(ResourceType.PAYMENT, stuck.id, "c", PaymentStatus.PENDING,
                                       PaymentStatus.REQUIRES_RECONCILIATION, "worker:recovery", "recovery:no_evidence",
                                       at)  # fmt: skip
        await store.record_outcome(started.lease, to_reconciliation, StoredReply(0, b"reply", final=False))
        _, unfinished = await _begin(store, "in-flight")
        async with db.connection() as conn:  # as if its execution had begun ten minutes ago
            await conn.execute(
                "UPDATE idempotency_keys SET created_at = $1 WHERE idempotency_key = 'in-flight'",
                at - timedelta(minutes=10),
            )

        waiting = await worker.measure_backlog()
        assert waiting.requires_reconciliation == {"payment": 1, "refund": 0, "payout": 0}
        assert 600 <= waiting.oldest_unfinished_seconds < 660

        await store.record_outcome(unfinished.lease, None, StoredReply(0, b"reply"))
        async with db.connection() as conn:  # an operator resolved it (the same trigger-checked transition)
            await conn.execute("UPDATE payments SET status = 'SUCCEEDED' WHERE id = $1", stuck.id)
        settled = await worker.measure_backlog()
        assert settled.oldest_unfinished_seconds == 0
        assert settled.requires_reconciliation["payment"] == 0
    finally:
        await db.close()
