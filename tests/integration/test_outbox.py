"""The transactional outbox (storage/migrations/0010_outbox.sql, docs/outbox.md) on a real PostgreSQL:
one row per transition in the transition's transaction, payloads equal to what convert.py renders, a
feed that never skips a row committed late, and the rows on a logical replication stream."""

from __future__ import annotations

import dataclasses
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from google.protobuf import json_format

from server.api.convert import payment_pb, payout_pb, refund_pb
from server.app.store import KeyClaim, RefundSettlement, Started, StoredReply, Transition
from server.domain.errors import IdempotencyKeyInUse, ServiceError
from server.domain.idempotency import Operation
from server.domain.ids import IdKind, format_id
from server.domain.model import (
    CaptureMethod,
    Failure,
    PayeeMatch,
    PayeeVerification,
    Payment,
    Payout,
    PayoutDestination,
    Refund,
    SepaDestination,
    StripeAccountDestination,
)
from server.domain.money import Money
from server.domain.states import PaymentStatus, PayoutStatus, RefundStatus, ResourceType
from storage.database import Database
from storage.events_store import EVENT_TYPES, EventCursor, PostgresEventStore
from storage.operations_store import PostgresOperationStore
from storage.payee_store import PostgresPayeeStore
from storage.reader import fetch_payment, fetch_payout, fetch_refund
from storage.worker_store import PostgresWorkerStore

AT = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OK = StoredReply(0, b"reply")


def payment_draft(client: str = "c", **changes: Any) -> Payment:
    drafted = Payment(
        id=uuid.uuid4(), client_id=client, status=PaymentStatus.PENDING, amount=Money(1250, "EUR"),
        amount_captured=0, amount_refunded=0, amount_reserved=0, payment_method="pm_card_visa",
        customer_id="cus_1", description="order 7", metadata={"order": "7", "ünï": "cödé"}, psp="sandbox",
        psp_reference=None, failure=None, created_at=AT, updated_at=AT,
    )  # fmt: skip
    return dataclasses.replace(drafted, **changes)


def key_claim(
    key: str, operation: Operation = Operation.CHARGE, client: str = "c", trace: str | None = TRACE
) -> KeyClaim:
    return KeyClaim(client, key, operation, b"fp-" + key.encode(), 30.0, trace)


def moved(resource: Payment | Refund | Payout, to: str, at: datetime, **facts: Any) -> Transition:
    rtype = {Payment: ResourceType.PAYMENT, Refund: ResourceType.REFUND, Payout: ResourceType.PAYOUT}[type(resource)]
    return Transition(rtype, resource.id, resource.client_id, str(resource.status), to, "psp", "test", at, **facts)


async def charge(db: Database, payment: Payment, key: str | None = None, trace: str | None = TRACE) -> Started[Payment]:
    started = await PostgresOperationStore(db).begin_charge(key_claim(key or f"k-{payment.id}", trace=trace), payment)
    assert isinstance(started, Started)
    return started


async def outbox(db: Database, aggregateid: str | None = None) -> list[Any]:
    async with db.connection() as conn:
        return list(await conn.fetch(
            "SELECT *, txid::text AS txid_text FROM outbox_events"
            " WHERE $1::text IS NULL OR aggregateid = $1 ORDER BY seq", aggregateid,
        ))  # fmt: skip


def never_refused(error: ServiceError) -> StoredReply:
    raise AssertionError(f"unexpected refusal: {error}")


# -- one row per transition, in its transaction -------------------------------------------------------


async def test_every_transition_writes_exactly_one_row_in_its_own_transaction(db: Database) -> None:
    store = PostgresOperationStore(db)
    payment = payment_draft()
    started = await charge(db, payment)
    public = format_id(IdKind.PAYMENT, payment.id)
    [created] = await outbox(db, public)
    assert (created["type"], created["aggregatetype"], created["aggregateid"]) == ("payment.pending", "payment", public)
    assert created["client_id"] == "c"
    assert created["traceparent"] == TRACE
    assert created["id"].version == 7

    other = payment_draft()
    await charge(db, other)
    done = moved(payment, "SUCCEEDED", AT, psp_reference="pi_1", captured_minor=1250)
    await store.record_outcome(started.lease, done, OK)
    assert [r["type"] for r in await outbox(db, public)] == ["payment.pending", "payment.succeeded"]

    async with db.connection() as conn:
        # A write that keeps the status is no transition: no row.
        await conn.execute("UPDATE payments SET next_poll_at = now(), polls = 3 WHERE id = $1", payment.id)
        assert len(await outbox(db, public)) == 2
        # The row is written by the transition's own transaction, and rolled back with it.
        tx = conn.transaction()
        await tx.start()
        await conn.execute("UPDATE payments SET status = 'REQUIRES_RECONCILIATION' WHERE id = $1", other.id)
        txid = await conn.fetchval("SELECT pg_current_xact_id()::text")
        mine = await conn.fetch("SELECT txid::text FROM outbox_events WHERE type = 'payment.requires_reconciliation'")
        assert [r["txid"] for r in mine] == [txid]
        await tx.rollback()
    assert [r["type"] for r in await outbox(db, format_id(IdKind.PAYMENT, other.id))] == ["payment.pending"]


async def test_refund_and_payout_transitions_and_their_types(db: Database) -> None:
    store = PostgresOperationStore(db)
    payment = payment_draft()
    started = await charge(db, payment)
    await store.record_outcome(started.lease, moved(payment, "SUCCEEDED", AT, captured_minor=1250), OK)
    refund = Refund(uuid.uuid4(), "c", payment.id, RefundStatus.PENDING, Money(0, "EUR"), "duplicate", "", None,
                    None, AT, AT)  # fmt: skip
    begun = await store.begin_refund(key_claim("r1", Operation.REFUND), refund, Money(500, "EUR"), never_refused)
    assert isinstance(begun, Started)
    await store.record_outcome(begun.lease, moved(begun.resource, "REQUIRES_RECONCILIATION", AT), OK)
    payout = payout_draft(StripeAccountDestination("acct_1"))
    paid = await store.begin_payout(key_claim("p1", Operation.PAYOUT), payout)
    assert isinstance(paid, Started)
    await store.record_outcome(paid.lease, moved(payout, "PAID", AT), OK)
    async with db.connection() as conn:
        await conn.execute("UPDATE payouts SET status = 'RETURNED' WHERE id = $1", payout.id)
    types = [r["type"] for r in await outbox(db)]
    assert types == ["payment.pending", "payment.succeeded", "refund.pending", "refund.requires_reconciliation",
                     "payout.pending", "payout.paid", "payout.returned"]  # fmt: skip
    assert set(types) <= EVENT_TYPES
    assert len(EVENT_TYPES) == 8 + 4 + 6


async def test_a_capture_carries_the_trace_of_the_capture_request(db: Database) -> None:
    store = PostgresOperationStore(db)
    payment = payment_draft(capture_method=CaptureMethod.MANUAL)
    started = await charge(db, payment)
    until = AT + timedelta(days=7)
    await store.record_outcome(
        started.lease, moved(payment, "REQUIRES_CAPTURE", AT, capturable_minor=1250, capturable_until=until), OK
    )
    capture_trace = "00-11111111111111111111111111111111-2222222222222222-01"
    begun = await store.begin_capture(
        key_claim("cap", Operation.CAPTURE, trace=capture_trace), payment.id, Money(1000, "EUR"), True, never_refused
    )
    assert isinstance(begun, Started)
    done = moved(begun.resource, "SUCCEEDED", AT, captured_minor=1000, capturable_minor=0, action_done="cap")
    await store.record_outcome(begun.lease, done, OK)
    rows = await outbox(db)
    assert [(r["type"], r["traceparent"]) for r in rows] == [
        ("payment.pending", TRACE), ("payment.requires_capture", TRACE), ("payment.succeeded", capture_trace),
    ]  # fmt: skip


# -- the payload is what convert.py renders -----------------------------------------------------------


def payout_draft(destination: PayoutDestination, **changes: Any) -> Payout:
    drafted = Payout(
        id=uuid.uuid4(), client_id="c", status=PayoutStatus.PENDING, amount=Money(5000, "EUR"),
        destination=destination, instant=False, reference="invoice 42", psp="bank", psp_reference=None,
        failure=None, created_at=AT, updated_at=AT,
    )  # fmt: skip
    return dataclasses.replace(drafted, **changes)


def assert_renders_as(payload: dict[str, Any], message: Any) -> None:
    """Both ways: the payload parses into the message convert.py builds, and is exactly its JSON form."""
    parsed = json_format.ParseDict(payload, type(message)())
    assert parsed == message
    assert payload == json_format.MessageToDict(message, preserving_proto_field_name=True)


async def assert_payment_events_render(db: Database, payment_id: uuid.UUID, expected: int) -> None:
    """The newest event against the payment as read back now (the last write was its transition)."""
    rows = await outbox(db, format_id(IdKind.PAYMENT, payment_id))
    assert len(rows) == expected
    async with db.connection() as conn:
        payment = await fetch_payment(conn, "c", payment_id)
    assert payment is not None
    assert_renders_as(rows[-1]["payload"], payment_pb(payment))


SECOND = AT.replace(microsecond=0)  # no fraction
MILLI = AT.replace(microsecond=120000)  # protobuf writes 3 digits
MICRO = AT.replace(microsecond=5)  # 6 digits


@pytest.mark.parametrize("created", [SECOND, MILLI, MICRO], ids=["second", "milli", "micro"])
async def test_payment_payloads_equal_convert(db: Database, created: datetime) -> None:
    store = PostgresOperationStore(db)
    # automatic capture, with metadata, customer and description, then SUCCEEDED
    auto = payment_draft(created_at=created, updated_at=created)
    started = await charge(db, auto)
    await assert_payment_events_render(db, auto.id, 1)
    await store.record_outcome(
        started.lease, moved(auto, "SUCCEEDED", MICRO, psp_reference="pi_3Abc", captured_minor=1250), OK
    )
    await assert_payment_events_render(db, auto.id, 2)

    # nothing optional: no metadata, customer or description; declined with a failure
    bare = payment_draft(created_at=created, updated_at=created, metadata={}, customer_id="", description="",
                         amount=Money(500, "JPY"))  # fmt: skip
    started = await charge(db, bare)
    await assert_payment_events_render(db, bare.id, 1)
    failure = Failure("card_declined", "Your card was declined.", "insufficient_funds")
    await store.record_outcome(started.lease, moved(bare, "FAILED", SECOND, failure=failure), OK)
    await assert_payment_events_render(db, bare.id, 2)

    # a failure with only a code
    coded = payment_draft(created_at=created, updated_at=created)
    started = await charge(db, coded)
    await store.record_outcome(started.lease, moved(coded, "FAILED", MILLI, failure=Failure("psp_rejected")), OK)
    await assert_payment_events_render(db, coded.id, 2)

    # manual capture: authorized (capturable until), partly captured, and another cancelled
    manual = payment_draft(created_at=created, updated_at=created, capture_method=CaptureMethod.MANUAL)
    started = await charge(db, manual)
    await assert_payment_events_render(db, manual.id, 1)
    authorized = moved(manual, "REQUIRES_CAPTURE", MILLI, psp_reference="pi_m", capturable_minor=1250,
                       capturable_until=created + timedelta(days=7))  # fmt: skip
    await store.record_outcome(started.lease, authorized, OK)
    await assert_payment_events_render(db, manual.id, 2)
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE payments SET status = 'SUCCEEDED', amount_captured = 800, amount_capturable = 0,"
            " amount_refunded = 0, updated_at = $2 WHERE id = $1", manual.id, MICRO,
        )  # fmt: skip
    await assert_payment_events_render(db, manual.id, 3)

    cancelled = payment_draft(created_at=created, updated_at=created, capture_method=CaptureMethod.MANUAL)
    started = await charge(db, cancelled)
    await store.record_outcome(
        started.lease, moved(cancelled, "REQUIRES_CAPTURE", MILLI, capturable_minor=1250, capturable_until=None), OK
    )
    await assert_payment_events_render(db, cancelled.id, 2)  # capturable without a deadline: none shown
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE payments SET status = 'CANCELED', amount_capturable = 0, cancellation_reason = 'abandoned',"
            " capturable_until = $2 WHERE id = $1", cancelled.id, MICRO,
        )  # fmt: skip
    await assert_payment_events_render(db, cancelled.id, 3)  # a deadline with nothing capturable: none shown

    # refunded (amount_refunded shown), then the refund's own event
    refund = Refund(uuid.uuid4(), "c", auto.id, RefundStatus.PENDING, Money(0, "EUR"), "", "", None, None,
                    created, created)  # fmt: skip
    begun = await store.begin_refund(key_claim(f"r-{created}", Operation.REFUND), refund, Money(250, "EUR"),
                                     never_refused)  # fmt: skip
    assert isinstance(begun, Started)
    await assert_refund_events_render(db, refund.id, 1)
    done = moved(begun.resource, "SUCCEEDED", MICRO, psp_reference="re_3x", refund_settlement=RefundSettlement.APPLY)
    await store.record_outcome(begun.lease, done, OK)
    await assert_refund_events_render(db, refund.id, 2)
    failed = Refund(uuid.uuid4(), "c", auto.id, RefundStatus.PENDING, Money(0, "EUR"), "fraudulent", "", None, None,
                    created, created)  # fmt: skip
    begun = await store.begin_refund(key_claim(f"r2-{created}", Operation.REFUND), failed, None, never_refused)
    assert isinstance(begun, Started)
    lost = moved(begun.resource, "FAILED", SECOND, failure=Failure("charge_disputed", "", "expired_or_canceled_card"),
                 refund_settlement=RefundSettlement.RELEASE)  # fmt: skip
    await store.record_outcome(begun.lease, lost, OK)
    await assert_refund_events_render(db, failed.id, 2)


async def assert_refund_events_render(db: Database, refund_id: uuid.UUID, expected: int) -> None:
    rows = await outbox(db, format_id(IdKind.REFUND, refund_id))
    assert len(rows) == expected
    async with db.connection() as conn:
        refund = await fetch_refund(conn, "c", refund_id)
    assert refund is not None
    assert_renders_as(rows[-1]["payload"], refund_pb(refund))


async def assert_payout_events_render(db: Database, payout_id: uuid.UUID, expected: int) -> None:
    rows = await outbox(db, format_id(IdKind.PAYOUT, payout_id))
    assert len(rows) == expected
    async with db.connection() as conn:
        payout = await fetch_payout(conn, "c", payout_id)
    assert payout is not None
    assert_renders_as(rows[-1]["payload"], payout_pb(payout))


SEPA = SepaDestination(iban="DE89370400440532013000", bic="COBADEFFXXX", name="Müller GmbH", country="DE",
                       town="Berlin", street="Hauptstraße 1", postcode="10115")  # fmt: skip


@pytest.mark.parametrize(
    "destination",
    [
        SEPA,
        SepaDestination(iban="de89 3704 0044 0532 0130 00", bic="", name="A", country="DE", town="Köln"),
        SepaDestination(iban="DE8937", bic="", name="Short", country="DE", town="Bonn"),
        StripeAccountDestination("acct_1Nv0FGQ9RKHgCVdK"),
    ],
    ids=["sepa", "sepa-spaced-no-bic-street", "sepa-short-iban", "stripe"],
)
async def test_payout_payloads_equal_convert(db: Database, destination: PayoutDestination) -> None:
    store = PostgresOperationStore(db)
    payout = payout_draft(destination, created_at=MILLI, updated_at=MILLI)
    started = await store.begin_payout(key_claim(f"p-{payout.id}", Operation.PAYOUT), payout)
    assert isinstance(started, Started)
    await assert_payout_events_render(db, payout.id, 1)
    await store.record_outcome(started.lease, moved(payout, "PROCESSING", MICRO, psp_reference="MSG-1"), OK)
    await assert_payout_events_render(db, payout.id, 2)
    if isinstance(destination, SepaDestination):
        payload = (await outbox(db, format_id(IdKind.PAYOUT, payout.id)))[-1]["payload"]
        assert "0532013000" not in str(payload), "the full IBAN never leaves the database in an event"
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE payouts SET status = 'FAILED', failure_code = 'AC04', failure_message = 'Closed account',"
            " failure_decline_code = 'AC04', instant = true, reference = '', updated_at = $2 WHERE id = $1",
            payout.id, SECOND,
        )  # fmt: skip
    await assert_payout_events_render(db, payout.id, 3)


@pytest.mark.parametrize(
    ("answer", "risk_accepted", "to"),
    [
        (PayeeVerification(PayeeMatch.MATCH), False, "PROCESSING"),
        (PayeeVerification(PayeeMatch.CLOSE_MATCH, "Müller GmbH"), True, "PROCESSING"),
        (PayeeVerification(PayeeMatch.NO_MATCH), False, "FAILED"),
    ],
    ids=["match", "close-match-risk-accepted", "no-match"],
)
async def test_payee_verification_payloads_equal_convert(
    db: Database, answer: PayeeVerification, risk_accepted: bool, to: str
) -> None:
    """Verification of Payee in the event: unanswered at creation (an empty message), then the bank's answer,
    stored apart from any transition, travels with the next one."""
    store = PostgresOperationStore(db)
    pending = PayeeVerification(risk_accepted=risk_accepted)
    payout = payout_draft(SEPA, created_at=MILLI, updated_at=MILLI, payee_verification=pending)
    started = await store.begin_payout(key_claim(f"p-{payout.id}", Operation.PAYOUT), payout)
    assert isinstance(started, Started)
    await assert_payout_events_render(db, payout.id, 1)
    answered = dataclasses.replace(answer, risk_accepted=risk_accepted)
    checked = await PostgresPayeeStore(db).record_payee_verification(started.lease, payout, answered, MICRO)
    assert checked.payee_verification == answered
    assert len(await outbox(db, format_id(IdKind.PAYOUT, payout.id))) == 1, "an answer alone is no transition"
    await store.record_outcome(started.lease, moved(checked, to, MICRO), OK)
    await assert_payout_events_render(db, payout.id, 2)


async def test_a_payee_answer_is_stored_once_and_only_by_the_keys_holder(db: Database) -> None:
    store, payees = PostgresOperationStore(db), PostgresPayeeStore(db)
    payout = payout_draft(SEPA, payee_verification=PayeeVerification())
    started = await store.begin_payout(key_claim(f"p-{payout.id}", Operation.PAYOUT), payout)
    assert isinstance(started, Started)
    stranger = dataclasses.replace(started.lease, token=uuid.uuid4())
    with pytest.raises(IdempotencyKeyInUse):
        await payees.record_payee_verification(stranger, payout, PayeeVerification(PayeeMatch.MATCH), AT)
    await payees.record_payee_verification(started.lease, payout, PayeeVerification(PayeeMatch.NO_MATCH), AT)
    with pytest.raises(IdempotencyKeyInUse):  # answered already: a second answer never replaces the first
        await payees.record_payee_verification(started.lease, payout, PayeeVerification(PayeeMatch.MATCH), AT)
    async with db.connection() as conn:
        stored = await fetch_payout(conn, "c", payout.id)
    assert stored is not None
    assert stored.payee_verification == PayeeVerification(PayeeMatch.NO_MATCH)


# -- the feed: visibility without gaps ----------------------------------------------------------------


async def test_a_row_committed_late_is_never_skipped(db: Database) -> None:
    """Transaction A writes first and commits last. B's row (a larger seq and txid) stays invisible while
    A is open; once A ends both appear, A's first. A reader resuming after the last cursor it saw gets A.
    (A reader that remembered the last seq would have read B, moved past A's smaller seq, and lost it.)"""
    events = PostgresEventStore(db)
    first, second = payment_draft(), payment_draft()
    await charge(db, first)
    await charge(db, second)
    seen = await events.read("c", EventCursor(0, 0))
    assert [e.type for e in seen] == ["payment.pending", "payment.pending"]
    cursor = seen[-1].cursor
    assert await events.head("c") == cursor

    async with db.connection() as a, db.connection() as b:
        tx_a = a.transaction()
        await tx_a.start()
        await a.execute("UPDATE payments SET status = 'FAILED' WHERE id = $1", first.id)
        await b.execute("UPDATE payments SET status = 'SUCCEEDED' WHERE id = $1", second.id)  # commits
        rows = await outbox(db)
        assert [r["type"] for r in rows] == ["payment.pending", "payment.pending", "payment.succeeded"]
        assert await events.read("c", cursor) == [], "B waits for A, which may still commit"
        assert await events.head("c") == cursor
        await tx_a.commit()
    after = await events.read("c", cursor)
    assert [(e.type, e.aggregateid) for e in after] == [
        ("payment.failed", format_id(IdKind.PAYMENT, first.id)),
        ("payment.succeeded", format_id(IdKind.PAYMENT, second.id)),
    ]
    assert after[0].cursor < after[1].cursor
    assert after[0].cursor.seq < after[1].cursor.seq
    assert await events.head("c") == after[-1].cursor
    assert await events.read("c", after[-1].cursor) == []


async def test_read_filters_pages_and_keeps_clients_apart(db: Database) -> None:
    store = PostgresOperationStore(db)
    events = PostgresEventStore(db)
    payments = [payment_draft() for _ in range(3)]
    for payment in payments:
        started = await charge(db, payment)
        await store.record_outcome(started.lease, moved(payment, "SUCCEEDED", AT, captured_minor=1250), OK)
    theirs = payment_draft(client="other")
    await PostgresOperationStore(db).begin_charge(key_claim("theirs", client="other"), theirs)
    everything = await events.read("c", EventCursor(0, 0))
    assert len(everything) == 6
    assert all(e.aggregateid != format_id(IdKind.PAYMENT, theirs.id) for e in everything)
    assert [e.type for e in await events.read("other", EventCursor(0, 0))] == ["payment.pending"]
    assert await events.head("nobody") == EventCursor(0, 0)

    page = await events.read("c", EventCursor(0, 0), limit=4)
    rest = await events.read("c", page[-1].cursor, limit=4)
    assert page + rest == everything
    succeeded = await events.read("c", EventCursor(0, 0), types=frozenset({"payment.succeeded"}))
    assert [e.aggregateid for e in succeeded] == [format_id(IdKind.PAYMENT, p.id) for p in payments]
    one = format_id(IdKind.PAYMENT, payments[1].id)
    assert [e.type for e in await events.read("c", EventCursor(0, 0), resource_id=one)] == [
        "payment.pending", "payment.succeeded",
    ]  # fmt: skip
    both = await events.read("c", EventCursor(0, 0), types=frozenset({"payment.pending"}), resource_id=one)
    assert [(e.type, e.aggregateid) for e in both] == [("payment.pending", one)]
    event = everything[0]
    assert event.event_id.version == 7
    assert event.traceparent == TRACE
    assert event.created_at.tzinfo is not None
    assert event.payload["id"] == event.aggregateid
    assert event.aggregatetype == "payment"


async def test_the_feed_orders_by_transaction_number_not_its_digits(db: Database) -> None:
    """xid8 crosses to the client as text: ordering must still be numeric (9 before 10, 99 before 100)."""
    async with db.connection() as conn:
        for txid in (100, 10, 99, 9):
            await conn.execute(
                "INSERT INTO outbox_events (id, txid, client_id, aggregatetype, aggregateid, type, payload)"
                " VALUES (gen_random_uuid(), $1::text::xid8, 'old', 'payment', 'pay_x', 'payment.pending', '{}')",
                str(txid),
            )
    events = PostgresEventStore(db)
    read = await events.read("old", EventCursor(0, 0))
    assert [e.cursor.txid for e in read] == [9, 10, 99, 100]
    assert [e.cursor.txid for e in await events.read("old", read[1].cursor)] == [99, 100]
    assert (await events.head("old")).txid == 100


def test_cursor_encoding() -> None:
    cursor = EventCursor(7_000_123, 42)
    assert cursor.encode() == "7000123-42"
    assert EventCursor.decode(cursor.encode()) == cursor
    assert EventCursor.decode("0") == EventCursor(0, 0)
    for bad in ["", "00", "1", "-1-2", "1-", "01-2", "1-02", "1_2", "1-2-3", " 1-2", "9223372036854775808-1", "a-b"]:
        with pytest.raises(ValueError):
            EventCursor.decode(bad)


# -- retention ----------------------------------------------------------------------------------------


async def test_pruning_deletes_old_rows_in_batches(db: Database) -> None:
    for _ in range(5):
        await charge(db, payment_draft())
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE outbox_events SET created_at = now() - interval '31 days'"
            " WHERE seq IN (SELECT seq FROM outbox_events ORDER BY seq LIMIT 3)"
        )
    worker = PostgresWorkerStore(db)
    assert await worker.prune_events(older_than_seconds=30 * 86400, limit=2) == 2
    assert await worker.prune_events(older_than_seconds=30 * 86400, limit=2) == 1
    assert await worker.prune_events(older_than_seconds=30 * 86400, limit=2) == 0
    assert len(await outbox(db)) == 2


# -- logical replication --------------------------------------------------------------------------------


async def _skip_without_logical_decoding(conn: Any) -> None:
    level = await conn.fetchval("SHOW wal_level")
    if level != "logical":
        pytest.skip(f"the server runs with wal_level={level}; logical decoding needs wal_level=logical"
                    " (the embedded cluster sets it: unset PAYMENTS_TEST_DATABASE_URL)")  # fmt: skip


def _pgoutput_changes(messages: list[Any]) -> list[list[tuple[str, str, list[str | None]]]]:
    """pgoutput protocol 1 decoded just enough: per transaction (BEGIN … COMMIT), each change as
    (kind, relation, column texts)."""
    relations: dict[int, str] = {}
    transactions: list[list[tuple[str, str, list[str | None]]]] = []
    current: list[tuple[str, str, list[str | None]]] | None = None
    for message in messages:
        data = bytes(message["data"])
        kind = chr(data[0])
        if kind == "B":
            current = []
        elif kind == "C":
            assert current is not None
            transactions.append(current)
            current = None
        elif kind == "R":
            (relid,) = struct.unpack_from("!I", data, 1)
            namespace_end = data.index(b"\0", 5)
            name_end = data.index(b"\0", namespace_end + 1)
            relations[relid] = data[namespace_end + 1 : name_end].decode()
        elif kind in "IU":
            (relid,) = struct.unpack_from("!I", data, 1)
            offset = 5
            if chr(data[offset]) in "KO":  # an update's old key or row: skip it
                offset = _skip_tuple(data, offset + 1)
            assert chr(data[offset]) == "N"
            assert current is not None
            current.append((kind, relations[relid], _tuple(data, offset + 1)))
    return transactions


def _tuple(data: bytes, offset: int) -> list[str | None]:
    (count,) = struct.unpack_from("!H", data, offset)
    offset += 2
    values: list[str | None] = []
    for _ in range(count):
        kind = chr(data[offset])
        offset += 1
        if kind == "t":
            (length,) = struct.unpack_from("!I", data, offset)
            values.append(data[offset + 4 : offset + 4 + length].decode())
            offset += 4 + length
        else:  # n (null), u (unchanged toasted value)
            values.append(None)
    return values


def _skip_tuple(data: bytes, offset: int) -> int:
    (count,) = struct.unpack_from("!H", data, offset)
    offset += 2
    for _ in range(count):
        kind = chr(data[offset])
        offset += 1
        if kind == "t":
            (length,) = struct.unpack_from("!I", data, offset)
            offset += 4 + length
    return offset


async def test_each_outbox_row_streams_in_the_transaction_of_its_transition(db: Database, database_url: str) -> None:
    """Through a pgoutput slot (what Debezium reads): each transition's resource change and its outbox row
    arrive between the same BEGIN and COMMIT, transactions in commit order."""
    conn = await asyncpg.connect(database_url)
    slot = f"outbox_test_{uuid.uuid4().hex[:12]}"
    try:
        await _skip_without_logical_decoding(conn)
        published = await conn.fetch("SELECT tablename FROM pg_publication_tables WHERE pubname = 'payments_outbox'")
        assert [r["tablename"] for r in published] == ["outbox_events"]
        actions = await conn.fetchrow(
            "SELECT pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = 'payments_outbox'"
        )
        assert tuple(actions) == (True, False, False, False), "inserts only: retention's deletes are not events"
        await conn.execute("CREATE PUBLICATION outbox_test FOR TABLE payments, outbox_events")
        await conn.fetchval("SELECT lsn FROM pg_create_logical_replication_slot($1, 'pgoutput')", slot)

        store = PostgresOperationStore(db)
        first, second = payment_draft(), payment_draft()
        started = await charge(db, first)
        await store.record_outcome(started.lease, moved(first, "SUCCEEDED", AT, captured_minor=1250), OK)
        await charge(db, second)
        async with db.connection() as a, db.connection() as b:  # A writes first, commits last
            tx_a = a.transaction()
            await tx_a.start()
            await a.execute("UPDATE payments SET status = 'FAILED' WHERE id = $1", second.id)
            third = payment_draft()
            await charge(db, third)
            await b.execute("UPDATE payments SET status = 'PROCESSING' WHERE id = $1", third.id)
            await tx_a.commit()

        messages = await conn.fetch(
            "SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL,"
            " 'proto_version', '1', 'publication_names', 'outbox_test')", slot,
        )  # fmt: skip
    finally:
        await conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot
        )
        await conn.close()

    transactions = _pgoutput_changes(messages)
    streamed = []
    for changes in transactions:
        resources = [(kind, values[0]) for kind, relation, values in changes if relation == "payments"]
        rows = [values for kind, relation, values in changes if relation == "outbox_events"]
        assert len(resources) == 1, changes
        assert len(rows) == 1, changes
        (kind, resource_id), row = resources[0], rows[0]
        assert kind == ("I" if row[6] == "payment.pending" else "U")
        assert row[5] == "pay_" + uuid.UUID(resource_id).hex, "the row is about the resource changed with it"
        streamed.append((row[6], row[5]))
    pay = {p.id: format_id(IdKind.PAYMENT, p.id) for p in (first, second, third)}
    assert streamed == [
        ("payment.pending", pay[first.id]), ("payment.succeeded", pay[first.id]),
        ("payment.pending", pay[second.id]), ("payment.pending", pay[third.id]),
        ("payment.processing", pay[third.id]), ("payment.failed", pay[second.id]),  # commit order
    ]  # fmt: skip
