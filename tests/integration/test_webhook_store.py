"""Stripe webhooks in, at the database: one statement records the event and makes its resource due
(storage/webhook_store.py), and a poll under way when an event arrives leaves it due (worker_store)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from server.app.store import KeyClaim
from server.app.webhook_events import DueLookup, StripeEvent
from server.app.webhook_intake import Receipt
from server.domain.idempotency import Operation
from server.domain.model import Payment
from server.domain.money import Money
from server.domain.states import PaymentStatus, ResourceType
from storage.database import Database
from storage.operations_store import PostgresOperationStore
from storage.webhook_store import PostgresWebhookStore
from storage.worker_store import PostgresWorkerStore

AT = datetime(2026, 1, 1, tzinfo=UTC)


async def payment(db: Database, key: str, reference: str, *, status: str = "PROCESSING", psp: str = "stripe",
                  finished: bool = True, leased: bool = False) -> uuid.UUID:  # fmt: skip
    """A payment in `status` with `reference`, polled an hour from now; its key finished, or stopped."""
    draft = Payment(uuid.uuid4(), "c", PaymentStatus.PENDING, Money(1000, "EUR"), 0, 0, 0, "pm_card_visa", "", "",
                    {}, psp, None, None, AT, AT)  # fmt: skip
    await PostgresOperationStore(db).begin_charge(KeyClaim("c", key, Operation.CHARGE, b"fp", 30.0), draft)
    final = status in ("SUCCEEDED", "FAILED")
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE payments SET status = $2, psp_reference = $3, last_reason = 'test',"
            " next_poll_at = CASE WHEN $4 THEN NULL ELSE now() + interval '1 hour' END WHERE id = $1",
            draft.id, status, reference, final,
        )  # fmt: skip
        if finished:
            await conn.execute(
                "UPDATE idempotency_keys SET recovery_point = 'finished', reply_code = 0, locked_until = NULL,"
                " lock_token = NULL WHERE idempotency_key = $1",
                key,
            )
        else:
            lease = "now() + interval '1 minute'" if leased else "NULL"
            await conn.execute(
                f"UPDATE idempotency_keys SET locked_until = {lease}, recover_after = now() + interval '1 hour'"
                " WHERE idempotency_key = $1",
                key,
            )
    return draft.id


async def due_now(db: Database, payment_id: uuid.UUID) -> bool:
    async with db.connection() as conn:
        return bool(await conn.fetchval("SELECT next_poll_at <= now() FROM payments WHERE id = $1", payment_id))


async def recovering_now(db: Database, key: str) -> bool:
    async with db.connection() as conn:
        sql = "SELECT recover_after <= now() FROM idempotency_keys WHERE idempotency_key = $1"
        return bool(await conn.fetchval(sql, key))


def succeeded(event_id: str, reference: str) -> tuple[StripeEvent, DueLookup]:
    return (StripeEvent(event_id, "payment_intent.succeeded", reference), DueLookup(ResourceType.PAYMENT, reference))


async def test_a_new_event_is_recorded_and_its_watched_resource_made_due(db: Database) -> None:
    store = PostgresWebhookStore(db, "stripe")
    watched = await payment(db, "watched", "pi_watched")
    other = await payment(db, "other", "pi_other")
    assert await store.record(*succeeded("evt_1", "pi_watched")) == Receipt(recorded=True, due=1)
    assert await due_now(db, watched)
    assert not await due_now(db, other)
    assert not await recovering_now(db, "watched"), "a finished key is the poller's, not recovery's"
    assert await store.record(*succeeded("evt_1", "pi_watched")) == Receipt(recorded=False, due=0)


async def test_a_duplicate_makes_nothing_due(db: Database) -> None:
    store = PostgresWebhookStore(db, "stripe")
    await store.record(*succeeded("evt_seen", "pi_none_yet"))
    late = await payment(db, "late", "pi_none_yet")
    assert await store.record(*succeeded("evt_seen", "pi_none_yet")) == Receipt(recorded=False, due=0)
    assert not await due_now(db, late)


async def test_final_unknown_or_other_psp_resources_are_not_found(db: Database) -> None:
    store = PostgresWebhookStore(db, "stripe")
    await payment(db, "final", "pi_final", status="SUCCEEDED")
    other_psp = await payment(db, "bank", "pi_same", psp="sandbox")
    assert await store.record(*succeeded("evt_final", "pi_final")) == Receipt(recorded=True, due=0)
    assert await store.record(*succeeded("evt_unknown", "pi_unknown")) == Receipt(recorded=True, due=0)
    assert await store.record(*succeeded("evt_other_psp", "pi_same")) == Receipt(recorded=True, due=0)
    assert not await due_now(db, other_psp)
    refund = StripeEvent("evt_refund", "refund.updated", "pi_final")
    assert await store.record(refund, DueLookup(ResourceType.REFUND, "pi_final")) == Receipt(recorded=True, due=0)
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT event_id, type, object_id FROM stripe_webhook_events ORDER BY event_id")
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'stripe_webhook_events'"
        )
    assert [tuple(r) for r in rows] == [
        ("evt_final", "payment_intent.succeeded", "pi_final"), ("evt_other_psp", "payment_intent.succeeded", "pi_same"),
        ("evt_refund", "refund.updated", "pi_final"), ("evt_unknown", "payment_intent.succeeded", "pi_unknown"),
    ]  # fmt: skip
    assert {c["column_name"] for c in columns} == {"event_id", "type", "object_id", "received_at"}, "no payload"


async def test_a_stopped_key_is_handed_to_recovery_now_unless_an_execution_holds_it(db: Database) -> None:
    store = PostgresWebhookStore(db, "stripe")
    await payment(db, "stopped", "pi_stopped", finished=False)
    await payment(db, "running", "pi_running", finished=False, leased=True)
    assert (await store.record(*succeeded("evt_stopped", "pi_stopped"))).due == 1
    assert await recovering_now(db, "stopped")
    assert (await store.record(*succeeded("evt_running", "pi_running"))).due == 1
    assert not await recovering_now(db, "running"), "the execution in flight gets the answer itself"


async def test_an_event_during_a_poll_leaves_the_resource_due_for_another_look_up(db: Database) -> None:
    store = PostgresWebhookStore(db, "stripe")
    workers = PostgresWorkerStore(db)
    raced = await payment(db, "raced", "pi_raced")
    quiet = await payment(db, "quiet", "pi_quiet")
    async with db.connection() as conn:
        await conn.execute("UPDATE payments SET next_poll_at = now() - interval '1 second'")
    targets = {t.resource.id: t for t in await workers.claim_due_polls(limit=10, lease_seconds=30)}
    assert set(targets) == {raced, quiet}
    await store.record(*succeeded("evt_raced", "pi_raced"))  # while both polls are under way
    await workers.record_poll(targets[raced], None, 3600)
    await workers.record_poll(targets[quiet], None, 3600)
    assert await due_now(db, raced), "its look-up may have read Stripe before the event's change"
    assert not await due_now(db, quiet)
    await workers.record_poll(targets[quiet], None, None)
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT next_poll_at FROM payments WHERE id = $1", quiet) is None
