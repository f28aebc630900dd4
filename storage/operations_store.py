"""The idempotency store and the writes of the three operations (docs/contract.md, Idempotency and Money rules).

Phase 1 claims the key and creates the resource in ONE statement (charge, payout) or one short
transaction (refund, which also reserves the amount). Phase 3 records the transition and the reply in
one statement. Conflicts are resolved by PostgreSQL: the primary key on (client, key) makes one claim
win; a lease (locked_until, lock_token) says whether the winner is still working; a compare-and-set on
the lease lets exactly one retry take over a key whose execution stopped at a recovery point.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import asyncpg

from server.app.store import (
    Begun,
    Done,
    ErrorEncoder,
    InFlight,
    KeyClaim,
    Lease,
    Pruned,
    RefundSettlement,
    Started,
    StoredReply,
    Transition,
)
from server.domain.captures import decide_cancel, decide_capture
from server.domain.errors import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    NotFound,
    PaymentNotCancelable,
    PaymentNotCapturable,
    PaymentNotRefundable,
    RefundExceedsRemaining,
)
from server.domain.idempotency import Busy, KeyRecord, Operation, Rebuild, RecoveryPoint, Replay, Reused, classify
from server.domain.model import Payment, PaymentAction, Payout, Refund
from server.domain.money import Money
from server.domain.refunds import decide_refund_amount
from server.domain.states import PaymentStatus, ResourceType, awaits_psp
from storage.database import Database
from storage.reader import fetch_payment, fetch_payout, fetch_refund
from storage.rows import (
    PAYMENT_COLUMNS,
    destination_json,
    failure_columns,
    payee_verification_columns,
    payment_of,
)

R = TypeVar("R", Payment, Refund, Payout)

# The recovery points as the SQL spells them: the domain's enum (server/domain/idempotency.py).
STARTED = RecoveryPoint.STARTED.value
FINISHED = RecoveryPoint.FINISHED.value

_KEY_INSERT = f"""
    INSERT INTO idempotency_keys (client_id, idempotency_key, operation, fingerprint, resource_id,
                                  recovery_point, locked_until, lock_token, trace_context)
    VALUES ($1, $2, $3, $4, $5, '{STARTED}', now() + make_interval(secs => $6), $7, $8)
    ON CONFLICT DO NOTHING
    RETURNING resource_id
"""

_CLAIM_CHARGE = f"""
    WITH claimed AS ({_KEY_INSERT})
    INSERT INTO payments (id, client_id, idempotency_key, status, currency, amount_minor, payment_method,
                          customer_id, description, metadata, psp, created_at, updated_at,
                          last_actor, last_reason, capture_method, return_url)
    SELECT resource_id, $1, $2, 'PENDING', $9, $10, $11, $12, $13, $14, $15, $16, $16, $17, 'created', $18, $19
    FROM claimed
    RETURNING id
"""

_CLAIM_PAYOUT = f"""
    WITH claimed AS ({_KEY_INSERT})
    INSERT INTO payouts (id, client_id, idempotency_key, status, currency, amount_minor, destination,
                         instant, reference, psp, psp_data, created_at, updated_at, last_actor, last_reason,
                         payee_verification, payee_suggested_name, payee_risk_accepted)
    SELECT resource_id, $1, $2, 'PENDING', $9, $10, $11, $12, $13, $14, $15, $16, $16, $17, 'created',
           $18, $19, $20
    FROM claimed
    RETURNING id
"""

# Statements that change one key find it by primary key. They test `recovery_point <> 'finished'`, not
# `= 'started'` (the same thing under the CHECK constraint): that way the planner cannot prove the
# predicate of idempotency_keys_stalled and pick that partial index instead. A plan cached while the
# tables were tiny did exactly that, and then scanned every dead entry the index gathers between
# vacuums on each completion: a cost growing with the table (docs/performance.md).
UNFINISHED = f"recovery_point <> '{FINISHED}'"

_INSPECT = """
    SELECT operation, fingerprint, resource_id, recovery_point, reply_code, reply_body, reply_final, lock_token,
           COALESCE(EXTRACT(EPOCH FROM locked_until - now()), 0)::float8 AS lease_left
    FROM idempotency_keys WHERE client_id = $1 AND idempotency_key = $2
"""

# Takes over a key whose execution stopped at a recovery point: only one contender can win the CAS.
_TAKE_OVER = f"""
    UPDATE idempotency_keys
    SET locked_until = now() + make_interval(secs => $3), lock_token = $4, executions = executions + 1,
        updated_at = now()
    WHERE client_id = $1 AND idempotency_key = $2 AND {UNFINISHED}
      AND lock_token IS NOT DISTINCT FROM $5 AND (locked_until IS NULL OR locked_until <= now())
    RETURNING executions, EXTRACT(EPOCH FROM now() - created_at)::float8 AS key_age
"""

# A refund's claim in one statement: the key, the reservation on the payment and the refund, all or none.
# The amount was decided (server.domain.refunds) on the payment as read by _REFUND_SNAPSHOT; the
# reservation holds only if that row is unchanged, else payments_abort rolls the whole statement back
# (SQLSTATE PA001) and begin_refund decides again under the row lock. A key that exists is not touched.
_REFUND_SNAPSHOT = """
    SELECT status, currency, amount_captured, amount_refunded, amount_reserved, psp, psp_reference
    FROM payments WHERE id = $1 AND client_id = $2
"""
_CLAIM_REFUND = f"""
    WITH claimed AS ({_KEY_INSERT}),
    reserved AS (
        UPDATE payments SET amount_reserved = amount_reserved + $13
        WHERE id = $9 AND client_id = $1 AND EXISTS (SELECT 1 FROM claimed) AND status = 'SUCCEEDED'
          AND amount_captured = $10 AND amount_refunded = $11 AND amount_reserved = $12
        RETURNING currency, psp, psp_reference
    ),
    created AS (
        INSERT INTO refunds (id, client_id, idempotency_key, payment_id, status, currency, amount_minor,
                             reason, psp, created_at, updated_at, last_actor, last_reason, payment_psp_reference)
        SELECT $5, $1, $2, $9, 'PENDING', currency, $13, $14, psp, $15, $15, $16, 'created', psp_reference
        FROM reserved
        RETURNING 1
    )
    SELECT CASE WHEN (SELECT count(*) FROM claimed) = (SELECT count(*) FROM created)
                THEN (SELECT count(*) FROM claimed)::int
                ELSE payments_abort('the payment changed since the refund was decided') END
"""
_STALE_SNAPSHOT = "PA001"

_LOCK_PAYMENT = f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1 AND client_id = $2 FOR UPDATE"
_SET_ACTION = """
    UPDATE payments SET action_operation = $3, action_key = $4, action_amount = $5, action_final = $6,
                        action_reason = $7
    WHERE id = $1 AND client_id = $2
"""  # payments_abort (migrations/0006_statement_abort.sql)

_STORE_ERROR = f"""
    UPDATE idempotency_keys
    SET resource_id = NULL, recovery_point = '{FINISHED}', reply_code = $3, reply_body = $4,
        reply_stored_at = now(), locked_until = NULL, lock_token = NULL, updated_at = now()
    WHERE client_id = $1 AND idempotency_key = $2
"""

_FINISH_KEY = f"""
    UPDATE idempotency_keys
    SET recovery_point = '{FINISHED}', reply_code = $3, reply_body = $4, reply_final = $5, reply_stored_at = now(),
        locked_until = NULL, lock_token = NULL, recover_after = NULL, updated_at = now()
    WHERE client_id = $1 AND idempotency_key = $2 AND {UNFINISHED}
"""

_RELEASE_KEY = """
    UPDATE idempotency_keys
    SET locked_until = NULL, lock_token = NULL, recover_after = now() + make_interval(secs => $4),
        updated_at = now()
    WHERE client_id = $1 AND idempotency_key = $2 AND lock_token = $3
"""

_TABLES = {ResourceType.PAYMENT: "payments", ResourceType.REFUND: "refunds", ResourceType.PAYOUT: "payouts"}

# Per-type extra assignment, fed by parameter $13 of the transition statement (refunds have none).
_EXTRA_SET = {
    # $13: the payment's facts from the PSP as JSON (Transition.payment_facts); a finished capture or cancel
    # clears the action whose key it names.
    ResourceType.PAYMENT: """,
        amount_captured = COALESCE(($13::jsonb->>'captured')::bigint, amount_captured),
        amount_capturable = COALESCE(($13::jsonb->>'capturable')::bigint, amount_capturable),
        capturable_until = CASE WHEN $13::jsonb ? 'capturable_until'
                                THEN ($13::jsonb->>'capturable_until')::timestamptz ELSE capturable_until END,
        cancellation_reason = COALESCE($13::jsonb->>'cancellation_reason', cancellation_reason),
        action_operation = CASE WHEN action_key = $13::jsonb->>'action_done' THEN NULL ELSE action_operation END,
        action_amount = CASE WHEN action_key = $13::jsonb->>'action_done' THEN NULL ELSE action_amount END,
        action_final = CASE WHEN action_key = $13::jsonb->>'action_done' THEN NULL ELSE action_final END,
        action_reason = CASE WHEN action_key = $13::jsonb->>'action_done' THEN NULL ELSE action_reason END,
        action_key = CASE WHEN action_key = $13::jsonb->>'action_done' THEN NULL ELSE action_key END""",
    ResourceType.REFUND: "",
    ResourceType.PAYOUT: ", psp_data = psp_data || COALESCE($13::jsonb, '{}'::jsonb)",
}
# After a transition into a status that awaits the PSP, the worker first polls after this long.
FIRST_POLL_DELAY = timedelta(seconds=1)


def _transition_sql(rtype: ResourceType) -> str:
    """UPDATE of one resource, conditional on its expected current status (a lost race updates 0 rows).

    A transition that keeps the status (new facts from the PSP, such as a request id) continues the
    poll schedule instead of restarting it: otherwise every lookup would reset the backoff. It starts one
    if there is none: a refund is created PENDING, and the PSP's "pending" keeps it PENDING, which must
    still be polled (the model-based test found it never was).
    """
    returning = "id, payment_id, amount_minor" if rtype is ResourceType.REFUND else "id"
    return f"""
        UPDATE {_TABLES[rtype]}
        SET status = $3, psp_reference = COALESCE($4, psp_reference), failure_code = $5,
            failure_message = $6, failure_decline_code = $7, updated_at = $8, last_actor = $9,
            last_reason = $10, next_poll_at = CASE WHEN status = $3 THEN COALESCE(next_poll_at, $12) ELSE $12 END,
            polls = CASE WHEN status = $3 THEN polls ELSE 0 END{_EXTRA_SET[rtype]}
        WHERE id = $1 AND client_id = $2 AND status = $11
        RETURNING {returning}
    """


_TRANSITION_SQL = {rtype: _transition_sql(rtype) for rtype in ResourceType}


# What a refund's end does to its payment: the reserved amount becomes refunded ('apply') or is given
# back ('release'). One text for the statement of its own and for the one-statement completion.
_SETTLEMENT_SET = """
    amount_refunded = amount_refunded + CASE WHEN {settlement} = 'apply' THEN {amount} ELSE 0 END,
    amount_reserved = amount_reserved - {amount}, updated_at = GREATEST(updated_at, {at})
"""

_SETTLE_REFUND = f"""
    UPDATE payments SET {_SETTLEMENT_SET.format(settlement="$3", amount="$2::bigint", at="$4")}
    WHERE id = $1
"""


def _finish_with_transition_sql(rtype: ResourceType) -> str:
    """The transition, a refund's settlement, and the key's completion in one statement (one round trip);
    the key completes only if the transition happened (a lost race changes nothing)."""
    first_free = 13 if rtype is ResourceType.REFUND else 14  # after the transition's own parameters
    key, code, body, final, settlement = (f"${first_free + i}" for i in range(5))
    settled = ""
    if rtype is ResourceType.REFUND:
        settle_set = _SETTLEMENT_SET.format(settlement=settlement, amount="moved.amount_minor", at="$8")
        settled = f""", settled AS (
            UPDATE payments SET {settle_set}
            FROM moved WHERE payments.id = moved.payment_id AND {settlement}::text IN ('apply', 'release')
        )"""
    return f"""
        WITH moved AS ({_TRANSITION_SQL[rtype]}){settled}
        UPDATE idempotency_keys
        SET recovery_point = '{FINISHED}', reply_code = {code}, reply_body = {body}, reply_final = {final},
            reply_stored_at = now(), locked_until = NULL, lock_token = NULL, recover_after = NULL,
            updated_at = now()
        WHERE client_id = $2 AND idempotency_key = {key} AND {UNFINISHED}
          AND EXISTS (SELECT 1 FROM moved)
        RETURNING 1
    """


_FINISH_WITH_TRANSITION = {rtype: _finish_with_transition_sql(rtype) for rtype in ResourceType}


async def apply_transition(conn: Any, t: Transition) -> bool:
    """Applies a transition inside the caller's transaction; False when the status had moved on."""
    row = await conn.fetchrow(_TRANSITION_SQL[t.resource], *_transition_args(t))
    if row is None:
        return False
    if t.resource is ResourceType.REFUND and t.refund_settlement in (RefundSettlement.APPLY, RefundSettlement.RELEASE):
        await conn.execute(_SETTLE_REFUND, row["payment_id"], row["amount_minor"], t.refund_settlement, t.at)
    return True


def _transition_args(t: Transition) -> list[object]:
    args: list[object] = [
        t.resource_id, t.client_id, t.to_status, t.psp_reference, *failure_columns(t.failure),
        t.at, t.actor, t.reason, t.from_status,
        t.at + FIRST_POLL_DELAY if awaits_psp(t.resource, t.to_status) else None,
    ]  # fmt: skip
    if t.resource is ResourceType.PAYMENT:
        args.append(t.payment_facts())
    elif t.resource is ResourceType.PAYOUT:
        args.append(t.psp_data or None)
    return args


def _key_record(row: Any) -> KeyRecord:
    return KeyRecord(
        operation=row["operation"], fingerprint=bytes(row["fingerprint"]),
        recovery_point=RecoveryPoint(row["recovery_point"]), resource_id=row["resource_id"],
        has_reply=row["reply_body"] is not None, reply_final=row["reply_final"], lease_left_seconds=row["lease_left"],
    )  # fmt: skip


class PostgresOperationStore:
    """Implements server.app.store.OperationStore on PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- phase 1 -------------------------------------------------------------------------------

    def _key_args(self, claim: KeyClaim, resource_id: uuid.UUID, token: uuid.UUID) -> list[object]:
        return [claim.client_id, claim.key, str(claim.operation), claim.fingerprint, resource_id,
                claim.lease_seconds, token, claim.trace_context]  # fmt: skip

    async def begin_charge(self, claim: KeyClaim, payment: Payment) -> Begun[Payment]:
        token = uuid.uuid4()
        async with self._db.connection() as conn:
            created = await conn.fetchval(
                _CLAIM_CHARGE, *self._key_args(claim, payment.id, token),
                payment.amount.currency, payment.amount.amount_minor, payment.payment_method,
                payment.customer_id, payment.description, payment.metadata, payment.psp,
                payment.created_at, f"client:{claim.client_id}", str(payment.capture_method), payment.return_url,
            )  # fmt: skip
            if created is not None:
                return Started(payment, Lease(claim.client_id, claim.key, token), resumed=False)
            return await self._inspect(conn, claim, fetch_payment)

    async def begin_payout(self, claim: KeyClaim, payout: Payout) -> Begun[Payout]:
        token = uuid.uuid4()
        async with self._db.connection() as conn:
            created = await conn.fetchval(
                _CLAIM_PAYOUT, *self._key_args(claim, payout.id, token),
                payout.amount.currency, payout.amount.amount_minor, destination_json(payout.destination),
                payout.instant, payout.reference, payout.psp, payout.psp_data, payout.created_at,
                f"client:{claim.client_id}", *payee_verification_columns(payout.payee_verification),
            )  # fmt: skip
            if created is not None:
                return Started(payout, Lease(claim.client_id, claim.key, token), resumed=False)
            return await self._inspect(conn, claim, fetch_payout)

    async def begin_refund(
        self, claim: KeyClaim, refund: Refund, requested: Money | None, encode_error: ErrorEncoder
    ) -> Begun[Refund]:
        """Claims the key, reserves the amount on the payment and inserts the refund, atomically.

        A refund the rules refuse (nothing left, payment not succeeded) consumes the key with the
        stored error: the same key always answers the same way.
        """
        token = uuid.uuid4()
        async with self._db.connection() as conn:
            claimed = await self._claim_refund_as_read(conn, claim, refund, requested, token)
            if claimed is not None:
                return claimed
            async with conn.transaction():
                claimed_key = await conn.fetchval(_KEY_INSERT, *self._key_args(claim, refund.id, token))
                if claimed_key is not None:
                    return await self._reserve_and_insert(conn, claim, refund, requested, encode_error, token)
            return await self._inspect(conn, claim, fetch_refund)

    async def _claim_refund_as_read(
        self, conn: Any, claim: KeyClaim, refund: Refund, requested: Money | None, token: uuid.UUID
    ) -> Begun[Refund] | None:
        """The common case in two statements: read the payment, decide, claim all at once if it is unchanged.

        None when the rules refuse on what was read, or the payment changed meanwhile: the caller then
        decides under the row lock, where a refusal is stored on the key.
        """
        seen = await conn.fetchrow(_REFUND_SNAPSHOT, refund.payment_id, claim.client_id)
        if seen is None:
            raise NotFound("payment not found")
        try:
            amount = decide_refund_amount(
                status=PaymentStatus(seen["status"]), currency=seen["currency"], captured=seen["amount_captured"],
                refunded=seen["amount_refunded"], reserved=seen["amount_reserved"], requested=requested,
            )  # fmt: skip
        except (RefundExceedsRemaining, PaymentNotRefundable):
            return None
        try:
            claimed = await conn.fetchval(
                _CLAIM_REFUND, *self._key_args(claim, refund.id, token), refund.payment_id,
                seen["amount_captured"], seen["amount_refunded"], seen["amount_reserved"], amount, refund.reason,
                refund.created_at, f"client:{claim.client_id}",
            )  # fmt: skip
        except asyncpg.PostgresError as exc:
            if exc.sqlstate != _STALE_SNAPSHOT:
                raise
            return None
        if not claimed:
            return await self._inspect(conn, claim, fetch_refund)
        created = _reserved(refund, Money(amount, seen["currency"]), seen["psp"], seen["psp_reference"])
        return Started(created, Lease(claim.client_id, claim.key, token), resumed=False)

    async def begin_capture(
        self, claim: KeyClaim, payment_id: uuid.UUID, requested: Money | None, final: bool,
        encode_error: ErrorEncoder,
    ) -> Begun[Payment]:  # fmt: skip
        def admit(payment: Payment) -> PaymentAction:
            amount = decide_capture(
                status=payment.status, currency=payment.amount.currency, capturable=payment.amount_capturable,
                action_under_way=payment.action is not None, requested=requested,
            )  # fmt: skip
            return PaymentAction(str(Operation.CAPTURE), claim.key, amount_minor=amount, final=final)

        return await self._begin_action(claim, payment_id, encode_error, admit)

    async def begin_cancel(
        self, claim: KeyClaim, payment_id: uuid.UUID, reason: str, encode_error: ErrorEncoder
    ) -> Begun[Payment]:
        def admit(payment: Payment) -> PaymentAction:
            decide_cancel(status=payment.status, action_under_way=payment.action is not None)
            return PaymentAction(str(Operation.CANCEL), claim.key, reason=reason)

        return await self._begin_action(claim, payment_id, encode_error, admit)

    async def _begin_action(
        self, claim: KeyClaim, payment_id: uuid.UUID, encode_error: ErrorEncoder,
        admit: Callable[[Payment], PaymentAction],
    ) -> Begun[Payment]:  # fmt: skip
        """Claims the key and records the action on the payment under its row lock, atomically.

        Two actions on one payment serialize on the lock; the second finds the first's action (or the
        state it left) and is refused, with the refusal stored on its key so it replays.
        """
        token = uuid.uuid4()
        async with self._db.connection() as conn:
            async with conn.transaction():
                claimed = await conn.fetchval(_KEY_INSERT, *self._key_args(claim, payment_id, token))
                if claimed is not None:
                    row = await conn.fetchrow(_LOCK_PAYMENT, payment_id, claim.client_id)
                    if row is None:
                        raise NotFound("payment not found")  # rolls the claim back: nothing is stored
                    payment = payment_of(row)
                    try:
                        action = admit(payment)
                    except (PaymentNotCapturable, PaymentNotCancelable) as exc:
                        reply = encode_error(exc)
                        await conn.execute(_STORE_ERROR, claim.client_id, claim.key, reply.code, reply.body)
                        return Done(reply, replayed=False)
                    await conn.execute(
                        _SET_ACTION, payment_id, claim.client_id, action.operation, action.key, action.amount_minor,
                        action.final, action.reason,
                    )  # fmt: skip
                    lease = Lease(claim.client_id, claim.key, token)
                    started = dataclasses.replace(payment, action=action)
                    return Started(started, lease, resumed=False, operation=claim.operation)
            return await self._inspect(conn, claim, fetch_payment)

    async def _reserve_and_insert(
        self, conn: Any, claim: KeyClaim, refund: Refund, requested: Money | None,
        encode_error: ErrorEncoder, token: uuid.UUID,
    ) -> Begun[Refund]:  # fmt: skip
        payment = await conn.fetchrow(
            "SELECT status, currency, amount_captured, amount_refunded, amount_reserved, psp, psp_reference"
            " FROM payments WHERE id = $1 AND client_id = $2 FOR UPDATE",
            refund.payment_id, claim.client_id,
        )  # fmt: skip
        if payment is None:
            raise NotFound("payment not found")  # rolls the claim back: nothing is stored
        try:
            amount = decide_refund_amount(
                status=PaymentStatus(payment["status"]), currency=payment["currency"],
                captured=payment["amount_captured"], refunded=payment["amount_refunded"],
                reserved=payment["amount_reserved"], requested=requested,
            )  # fmt: skip
        except (RefundExceedsRemaining, PaymentNotRefundable) as exc:
            reply = encode_error(exc)
            await conn.execute(_STORE_ERROR, claim.client_id, claim.key, reply.code, reply.body)
            return Done(reply, replayed=False)
        reserved = await conn.fetchval(
            "UPDATE payments SET amount_reserved = amount_reserved + $3"
            " WHERE id = $1 AND client_id = $2 AND status = 'SUCCEEDED'"
            "   AND amount_refunded + amount_reserved + $3 <= amount_captured RETURNING 1",
            refund.payment_id, claim.client_id, amount,
        )  # fmt: skip
        if reserved is None:  # cannot happen under the row lock; the CHECK constraint backs it up
            raise RuntimeError("refund reservation lost its row lock")
        created = _reserved(refund, Money(amount, payment["currency"]), payment["psp"], payment["psp_reference"])
        await conn.execute(
            "INSERT INTO refunds (id, client_id, idempotency_key, payment_id, status, currency, amount_minor,"
            " reason, psp, created_at, updated_at, last_actor, last_reason, payment_psp_reference)"
            " VALUES ($1, $2, $3, $4, 'PENDING', $5, $6, $7, $8, $9, $9, $10, 'created', $11)",
            created.id, claim.client_id, claim.key, created.payment_id, created.amount.currency,
            amount, created.reason, created.psp, created.created_at, f"client:{claim.client_id}",
            created.payment_psp_reference,
        )  # fmt: skip
        return Started(created, Lease(claim.client_id, claim.key, token), resumed=False)

    async def _inspect(
        self,
        conn: Any,
        claim: KeyClaim,
        load: Callable[[Any, str, uuid.UUID], Awaitable[R | None]],
    ) -> Begun[R]:
        """The key exists: replay, refuse a different request, report in flight, or take it over."""
        row = await conn.fetchrow(_INSPECT, claim.client_id, claim.key)
        if row is None:  # keys are never deleted; only a concurrent rollback (refund NOT_FOUND) gets here
            return InFlight(0.05)
        decision = classify(_key_record(row), claim.operation, claim.fingerprint)
        if isinstance(decision, Reused):
            raise IdempotencyKeyReused()
        if isinstance(decision, Replay):
            return Done(StoredReply(row["reply_code"], bytes(row["reply_body"])), replayed=True)
        if isinstance(decision, Rebuild):
            return Pruned(decision.resource_id)
        if isinstance(decision, Busy):
            return InFlight(decision.retry_after_seconds)
        token = uuid.uuid4()
        won = await conn.fetchrow(_TAKE_OVER, claim.client_id, claim.key, claim.lease_seconds, token, row["lock_token"])
        if won is None:
            return InFlight(0.05)
        resource = await load(conn, claim.client_id, row["resource_id"])
        if resource is None:
            raise RuntimeError("idempotency key points at a missing resource")
        lease = Lease(claim.client_id, claim.key, token)
        return Started(resource, lease, resumed=True, executions=won["executions"], key_age_seconds=won["key_age"],
                       operation=claim.operation)  # fmt: skip

    # -- phase 3 -------------------------------------------------------------------------------

    async def record_outcome(self, lease: Lease, transition: Transition | None, reply: StoredReply) -> StoredReply:
        async with self._db.connection() as conn:
            if transition is not None:
                # One statement (one round trip): the conditional transition, a refund's settlement, and the
                # key's completion, which only happens if the transition did.
                args = [*_transition_args(transition), lease.key, reply.code, reply.body, reply.final]
                if transition.resource is ResourceType.REFUND:
                    args.append(transition.refund_settlement)
                if await conn.fetchval(_FINISH_WITH_TRANSITION[transition.resource], *args) is not None:
                    return reply
            else:  # nothing changes on the resource: only the key's completion
                finished = await conn.execute(
                    _FINISH_KEY, lease.client_id, lease.key, reply.code, reply.body, reply.final
                )
                if finished == "UPDATE 1":
                    return reply
            # Someone else finished this execution first (a retry that took over, the recovery worker).
            row = await conn.fetchrow(_INSPECT, lease.client_id, lease.key)
        if row is not None and row["recovery_point"] == FINISHED and row["reply_body"] is not None:
            return StoredReply(row["reply_code"], bytes(row["reply_body"]), row["reply_final"])
        raise IdempotencyKeyInUse(0.1)

    async def release(self, lease: Lease, transition: Transition | None, recover_in_seconds: float) -> None:
        async with self._db.connection() as conn, conn.transaction():
            if transition is not None:
                await apply_transition(conn, transition)
            await conn.execute(_RELEASE_KEY, lease.client_id, lease.key, lease.token, recover_in_seconds)


def _reserved(refund: Refund, amount: Money, psp: str, charge: str | None) -> Refund:
    """The refund as claimed: the amount reserved on the payment, at the payment's PSP, on its charge."""
    return Refund(
        id=refund.id, client_id=refund.client_id, payment_id=refund.payment_id, status=refund.status,
        amount=amount, reason=refund.reason, psp=psp, psp_reference=None, failure=None,
        created_at=refund.created_at, updated_at=refund.updated_at, payment_psp_reference=charge,
    )  # fmt: skip
