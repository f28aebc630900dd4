"""Storage guarantees enforced by PostgreSQL itself (real database, no fakes)."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from server.app.store import Done, InFlight, KeyClaim, Pruned, Started, StoredReply
from server.domain.errors import IdempotencyKeyReused, ServiceError
from server.domain.idempotency import Operation
from server.domain.model import Payment, Payout, Refund, StripeAccountDestination
from server.domain.money import Money
from server.domain.states import PaymentStatus, PayoutStatus, RefundStatus, ResourceType
from storage import operations_store
from storage.database import Database, create_pool
from storage.migrator import migrate_dsn
from storage.operations_store import PostgresOperationStore
from storage.worker_store import PostgresWorkerStore

AT = datetime(2026, 1, 1, tzinfo=UTC)


def draft() -> Payment:
    return Payment(uuid.uuid4(), "c", PaymentStatus.PENDING, Money(1000, "EUR"), 0, 0, 0, "pm_card_visa", "", "",
                   {"k": "v"}, "sandbox", None, None, AT, AT)  # fmt: skip


def claim(key: str = "k", fp: bytes = b"fp", lease: float = 5.0) -> KeyClaim:
    return KeyClaim("c", key, Operation.CHARGE, fp, lease, "00-abc-def-01")


async def test_migrations_are_idempotent_and_safe_concurrently(database_url: str) -> None:
    results = await asyncio.gather(*(migrate_dsn(database_url) for _ in range(4)))
    assert all(r == [] for r in results), "the template was already migrated"


async def test_illegal_transition_is_refused_by_the_database(database_url: str) -> None:
    db = Database(await create_pool(database_url))
    try:
        store = PostgresOperationStore(db)
        payment = draft()
        await store.begin_charge(claim(), payment)
        async with db.connection() as conn:
            await conn.execute("UPDATE payments SET status = 'SUCCEEDED', last_reason = 'psp' WHERE id = $1",
                               payment.id)  # fmt: skip
            with pytest.raises(asyncpg.PostgresError, match="illegal payment transition"):
                await conn.execute("UPDATE payments SET status = 'PENDING' WHERE id = $1", payment.id)
            events = await conn.fetch(
                "SELECT from_status, to_status, actor, reason FROM resource_events WHERE resource_id = $1 ORDER BY id",
                payment.id,
            )
            assert [(e["from_status"], e["to_status"]) for e in events] == [
                (None, "PENDING"),
                ("PENDING", "SUCCEEDED"),
            ]
            assert events[0]["actor"] == "client:c"
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await conn.execute("DELETE FROM resource_events")
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await conn.execute("TRUNCATE resource_events")
            assert await conn.fetchval("SELECT count(*) FROM resource_events") == 2
    finally:
        await db.close()


async def test_refund_limit_is_a_database_constraint(database_url: str) -> None:
    db = Database(await create_pool(database_url))
    try:
        payment = draft()
        await PostgresOperationStore(db).begin_charge(claim(), payment)
        async with db.connection() as conn:
            await conn.execute("UPDATE payments SET status='SUCCEEDED', amount_captured=1000 WHERE id=$1", payment.id)
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute("UPDATE payments SET amount_refunded = 600, amount_reserved = 401 WHERE id=$1",
                                   payment.id)  # fmt: skip
    finally:
        await db.close()


async def test_claim_states(database_url: str) -> None:
    db = Database(await create_pool(database_url))
    try:
        store = PostgresOperationStore(db)
        first = await store.begin_charge(claim(lease=0.3), draft())
        assert isinstance(first, Started)
        assert not first.resumed
        assert isinstance(await store.begin_charge(claim(), draft()), InFlight)
        with pytest.raises(IdempotencyKeyReused):
            await store.begin_charge(claim(fp=b"other"), draft())
        await asyncio.sleep(0.35)  # the lease runs out: the execution stopped at its recovery point
        contenders = await asyncio.gather(*(store.begin_charge(claim(), draft()) for _ in range(5)))
        resumed = [c for c in contenders if isinstance(c, Started)]
        assert len(resumed) == 1, "exactly one retry takes the key over"
        assert resumed[0].resumed
        assert resumed[0].resource.id == first.resource.id
        reply = StoredReply(0, b"reply-bytes")
        assert await store.record_outcome(resumed[0].lease, None, reply) == reply
        replay = await store.begin_charge(claim(), draft())
        assert replay == Done(reply, replayed=True)
        async with db.connection() as conn:
            row = await conn.fetchrow(
                "SELECT executions, trace_context FROM idempotency_keys WHERE idempotency_key='k'"
            )
            assert row["executions"] == 2
            assert row["trace_context"] == "00-abc-def-01"
            await conn.execute("UPDATE idempotency_keys SET reply_body = NULL")  # retention pruning
        assert await store.begin_charge(claim(), draft()) == Pruned(first.resource.id)
    finally:
        await db.close()


async def test_pruning_drops_old_reply_bodies_only(database_url: str) -> None:
    db = Database(await create_pool(database_url))
    try:
        store = PostgresOperationStore(db)
        for key in ("old", "new"):
            started = await store.begin_charge(claim(key), draft())
            assert isinstance(started, Started)
            await store.record_outcome(started.lease, None, StoredReply(0, b"reply"))
        async with db.connection() as conn:
            await conn.execute(
                "UPDATE idempotency_keys SET reply_stored_at = now() - interval '31 days' WHERE idempotency_key = 'old'"
            )
        pruned = await PostgresWorkerStore(db).prune_replies(older_than_seconds=30 * 86400, limit=100)
        assert pruned == 1
        assert isinstance(await store.begin_charge(claim("old"), draft()), Pruned)
        assert await store.begin_charge(claim("new"), draft()) == Done(StoredReply(0, b"reply"), replayed=True)
    finally:
        await db.close()


# What a status transition writes (storage/operations_store.py, _transition_sql), besides next_poll_at,
# which only changes when a resource starts or stops awaiting the PSP.
TRANSITION_COLUMNS = {
    "status", "psp_reference", "failure_code", "failure_message", "failure_decline_code", "updated_at",
    "last_actor", "last_reason", "polls", "amount_captured", "amount_refunded", "amount_reserved", "psp_data",
}  # fmt: skip


@pytest.mark.parametrize("table", ["payments", "refunds", "payouts"])
async def test_a_status_change_can_be_a_hot_update(database_url: str, table: str) -> None:
    """No index covers (as a key, an expression or a predicate) a column a completion writes, and pages
    keep free room: so a completion adds no index entries (docs/performance.md)."""
    conn = await asyncpg.connect(database_url)
    try:
        indexes = await conn.fetch(
            "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition"
            " FROM pg_index i WHERE i.indrelid = $1::regclass",
            table,
        )  # fmt: skip
        options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE oid = $1::regclass", table)
    finally:
        await conn.close()
    assert indexes, "the table has its indexes"
    for index in indexes:
        words = set(index["definition"].replace("(", " ").replace(")", " ").replace(",", " ").split())
        assert not words & TRANSITION_COLUMNS, f"{index['name']} covers a column a status change writes"
    assert "fillfactor=80" in (options or [])


@pytest.mark.parametrize("statement", ["_FINISH_KEY", "_TAKE_OVER", "_FINISH_WITH_TRANSITION"])
async def test_key_updates_find_the_key_by_primary_key(database_url: str, statement: str) -> None:
    """Not through the partial index of stalled keys, which a plan made on near-empty tables would pick
    and which gathers dead entries between vacuums: a completion's cost would grow with the table."""
    from storage import operations_store

    sql = getattr(operations_store, statement)
    if isinstance(sql, dict):
        sql = sql[ResourceType.PAYMENT]
    db = Database(await create_pool(database_url))
    try:
        await PostgresOperationStore(db).begin_charge(claim(f"plan-{statement}"), draft())
        async with db.connection() as conn, conn.transaction():
            count = max(int(n) for n in re.findall(r"\$(\d+)", sql))
            await conn.execute(f"PREPARE key_update AS {sql}")
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")  # the plan a pool caches
            rows = await conn.fetch(f"EXPLAIN EXECUTE key_update({', '.join(['NULL'] * count)})")
            await conn.execute("DEALLOCATE key_update")
            plan = "\n".join(r[0] for r in rows)
    finally:
        await db.close()
    assert "idempotency_keys_pkey" in plan, plan
    assert "idempotency_keys_stalled" not in plan, plan


async def test_a_small_pool_serves_every_caller_and_replaces_a_dead_connection(database_url: str) -> None:
    """A one-connection pool serves concurrent callers in turn (released without a reset round trip),
    and a connection that died in use is replaced rather than handed out again."""
    db = Database(await create_pool(database_url, min_size=1, max_size=1))
    try:
        results = await asyncio.gather(*(_select(db, n) for n in range(50)))
        assert results == list(range(50))
        async with db.connection() as conn:
            conn.terminate()
        assert await _select(db, 7) == 7
    finally:
        await db.close()
    assert db.pool._closed  # asyncpg has no public "is closed"


async def _select(db: Database, n: int) -> int:
    async with db.connection() as conn:
        value: int = await conn.fetchval("SELECT $1::int", n)
        return value


async def test_a_backlog_of_payment_polls_does_not_starve_payout_polls(database_url: str) -> None:
    """The poll claim is shared by three tables and bounded by the free job slots; it starts at another
    table each time, so one table's backlog cannot keep the others waiting."""
    db = Database(await create_pool(database_url))
    try:
        store = PostgresOperationStore(db)
        for n in range(5):
            started = await store.begin_charge(claim(f"polled-charge-{n}"), draft())
            assert isinstance(started, Started)
            await store.record_outcome(started.lease, None, StoredReply(0, b"reply"))
        payout = Payout(uuid.uuid4(), "c", PayoutStatus.PENDING, Money(700, "EUR"), StripeAccountDestination("acct_1"),
                        False, "ref", "sandbox", None, None, AT, AT)  # fmt: skip
        started_payout = await store.begin_payout(
            KeyClaim("c", "polled-payout", Operation.PAYOUT, b"fp", 5.0, ""), payout
        )
        assert isinstance(started_payout, Started)
        await store.record_outcome(started_payout.lease, None, StoredReply(0, b"reply"))
        async with db.connection() as conn:
            for table in ("payments", "payouts"):
                await conn.execute(
                    f"UPDATE {table} SET next_poll_at = now() - interval '1 second' WHERE client_id = 'c'"
                )
        worker_store = PostgresWorkerStore(db)
        claimed = [await worker_store.claim_due_polls(limit=2, lease_seconds=60) for _ in range(2)]
        assert [len(c) for c in claimed] == [2, 2]
        assert payout.id in {t.resource.id for t in claimed[1]}, "the payout waited behind the payments' backlog"
    finally:
        await db.close()


def refund_draft(payment: Payment) -> Refund:
    return Refund(uuid.uuid4(), "c", payment.id, RefundStatus.PENDING, Money(0, "EUR"), "", "", None, None, AT, AT)


def refund_claim(key: str) -> KeyClaim:
    return KeyClaim("c", key, Operation.REFUND, b"fp-" + key.encode(), 5.0, None)


async def succeeded_payment(store: PostgresOperationStore, db: Database, *, reserved: int = 0) -> Payment:
    """A charge of 1,000 that succeeded, with `reserved` already held by refunds in flight."""
    payment = draft()
    await store.begin_charge(claim(key=f"pay-{payment.id}"), payment)
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE payments SET status='SUCCEEDED', amount_captured=1000, amount_reserved=$2 WHERE id=$1",
            payment.id, reserved,
        )  # fmt: skip
    return payment


def unexpected_refusal(error: ServiceError) -> StoredReply:
    raise AssertionError(f"the refund should have been accepted: {error}")


async def test_a_refund_claimed_on_a_stale_read_writes_nothing_then_is_decided_under_the_lock(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-statement claim reserves only on the payment row as it was read; if it changed, the
    statement aborts whole (no key, no refund, no reservation) and the locked path decides afresh."""
    db = Database(await create_pool(database_url))
    try:
        store = PostgresOperationStore(db)
        payment = await succeeded_payment(store, db, reserved=300)
        # What another refund's reservation looks like to a reader who read just before it.
        stale = operations_store._REFUND_SNAPSHOT.replace(
            "amount_reserved,", "amount_reserved - 300 AS amount_reserved,"
        )
        monkeypatch.setattr(operations_store, "_REFUND_SNAPSHOT", stale)
        refund = refund_draft(payment)
        async with db.connection() as conn:
            as_read = await store._claim_refund_as_read(conn, refund_claim("stale"), refund, None, uuid.uuid4())
            assert as_read is None, "the stale read must not claim"
            assert await conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE idempotency_key='stale'") == 0
            assert await conn.fetchval("SELECT count(*) FROM refunds WHERE payment_id=$1", payment.id) == 0
            assert await conn.fetchval("SELECT amount_reserved FROM payments WHERE id=$1", payment.id) == 300

        begun = await store.begin_refund(refund_claim("stale"), refund, None, unexpected_refusal)
        assert isinstance(begun, Started)
        assert begun.resource.amount == Money(700, "EUR"), "what is left, decided under the lock"
        async with db.connection() as conn:
            assert await conn.fetchval("SELECT amount_reserved FROM payments WHERE id=$1", payment.id) == 1000
    finally:
        await db.close()


async def test_a_refund_claim_is_one_statement_when_the_read_holds(database_url: str) -> None:
    db = Database(await create_pool(database_url))
    try:
        store = PostgresOperationStore(db)
        payment = await succeeded_payment(store, db)
        refund = refund_draft(payment)
        async with db.connection() as conn:
            begun = await store._claim_refund_as_read(conn, refund_claim("fresh"), refund, Money(250, "EUR"),
                                                      uuid.uuid4())  # fmt: skip
            assert isinstance(begun, Started)
            assert begun.resource.amount == Money(250, "EUR")
            row = await conn.fetchrow(
                "SELECT r.amount_minor, p.amount_reserved, k.resource_id FROM refunds r"
                " JOIN payments p ON p.id = r.payment_id"
                " JOIN idempotency_keys k ON k.idempotency_key = 'fresh' AND k.client_id = 'c' WHERE r.id = $1",
                refund.id,
            )  # fmt: skip
            assert (row["amount_minor"], row["amount_reserved"], row["resource_id"]) == (250, 250, refund.id)
            # The same key again is not claimed twice: it is inspected (here: in flight under its lease).
            again = await store._claim_refund_as_read(conn, refund_claim("fresh"), refund_draft(payment),
                                                      Money(250, "EUR"), uuid.uuid4())  # fmt: skip
            assert isinstance(again, InFlight)
            assert await conn.fetchval("SELECT amount_reserved FROM payments WHERE id=$1", payment.id) == 250
    finally:
        await db.close()
