"""The mutating use cases: Charge, Refund and Payout, each through the shared idempotent phases."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from server.app.commands import ChargeCommand, PayoutCommand, RefundCommand
from server.app.context import CallContext
from server.app.execution import ExecutionPolicy, begin_with_wait, drive, finish_begun, key_claim
from server.app.flows import PaymentFlow, PayoutFlow, RefundFlow
from server.app.psp import ChargeOrder, PayoutOrder, ProviderDirectory, RefundOrder
from server.app.replies import Reply, ReplyEncoder
from server.app.store import OperationStore, ResourceReader, Started
from server.domain.errors import NotFound
from server.domain.idempotency import Operation, psp_idempotency_key
from server.domain.ids import IdKind, format_id, new_id, parse_id
from server.domain.model import Payment, Payout, Refund
from server.domain.money import Money
from server.domain.states import PaymentStatus, PayoutStatus, RefundStatus


class Operations:
    """Charge, refund and payout; each returns the reply bytes to send (fresh or replayed)."""

    def __init__(
        self,
        store: OperationStore,
        reader: ResourceReader,
        providers: ProviderDirectory,
        encoder: ReplyEncoder,
        policy: ExecutionPolicy,
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._reader = reader
        self._providers = providers
        self._encoder = encoder
        self._policy = policy
        self._now = now

    async def charge(self, cmd: ChargeCommand, ctx: CallContext) -> Reply:
        at = self._now()
        draft = Payment(
            id=new_id(), client_id=ctx.client_id, status=PaymentStatus.PENDING, amount=cmd.amount,
            amount_captured=0, amount_refunded=0, amount_reserved=0, payment_method=cmd.payment_method,
            customer_id=cmd.customer_id, description=cmd.description, metadata=dict(cmd.metadata),
            psp=self._providers.for_charge().name, psp_reference=None, failure=None,
            created_at=at, updated_at=at,
        )  # fmt: skip
        claim = key_claim(ctx, cmd.idempotency_key, Operation.CHARGE, cmd.fingerprint, self._policy)
        psp_key = psp_idempotency_key(ctx.client_id, cmd.idempotency_key, Operation.CHARGE)

        async def execute(started: Started[Payment]) -> Reply:
            payment = started.resource
            order = ChargeOrder(
                payment_id=format_id(IdKind.PAYMENT, payment.id), client_id=ctx.client_id,
                idempotency_key=cmd.idempotency_key, psp_key=psp_key, amount=payment.amount,
                payment_method=payment.payment_method, customer_id=payment.customer_id,
                description=payment.description, metadata=payment.metadata,
            )  # fmt: skip
            provider = self._providers.by_name(payment.psp)
            return await drive(
                flow=PaymentFlow(), started=started, call_psp=lambda d: provider.charge(order, d),
                store=self._store, encode=self._encoder.charge, ctx=ctx, policy=self._policy,
                now=self._now,
            )  # fmt: skip

        async def rebuild(resource_id: uuid.UUID) -> Reply:
            payment = await self._reader.get_payment(ctx.client_id, resource_id)
            if payment is None:
                raise NotFound("payment not found")
            return Reply(0, self._encoder.charge(payment), replayed=True)

        begun = await begin_with_wait(lambda: self._store.begin_charge(claim, draft), ctx.deadline, self._policy)
        return await finish_begun(begun, execute, rebuild)

    async def refund(self, cmd: RefundCommand, ctx: CallContext) -> Reply:
        at = self._now()
        payment_id = parse_id(IdKind.PAYMENT, cmd.payment_id_text)
        placeholder = cmd.amount or Money(0, "EUR")  # the store fills in amount and currency
        draft = Refund(
            id=new_id(), client_id=ctx.client_id, payment_id=payment_id, status=RefundStatus.PENDING,
            amount=placeholder, reason=cmd.reason, psp="", psp_reference=None, failure=None,
            created_at=at, updated_at=at,
        )  # fmt: skip
        claim = key_claim(ctx, cmd.idempotency_key, Operation.REFUND, cmd.fingerprint, self._policy)
        psp_key = psp_idempotency_key(ctx.client_id, cmd.idempotency_key, Operation.REFUND)

        async def execute(started: Started[Refund]) -> Reply:
            refund = started.resource
            payment = await self._reader.get_payment(ctx.client_id, refund.payment_id)
            if payment is None:  # impossible: the refund row references it
                raise NotFound("payment not found")
            order = RefundOrder(
                refund_id=format_id(IdKind.REFUND, refund.id),
                payment_id=format_id(IdKind.PAYMENT, payment.id), client_id=ctx.client_id,
                idempotency_key=cmd.idempotency_key, psp_key=psp_key, amount=refund.amount,
                payment_psp_reference=payment.psp_reference or "", reason=refund.reason,
            )  # fmt: skip
            provider = self._providers.by_name(refund.psp)
            return await drive(
                flow=RefundFlow(), started=started, call_psp=lambda d: provider.refund(order, d),
                store=self._store, encode=self._encoder.refund, ctx=ctx, policy=self._policy,
                now=self._now,
            )  # fmt: skip

        async def rebuild(resource_id: uuid.UUID) -> Reply:
            refund = await self._reader.get_refund(ctx.client_id, resource_id)
            if refund is None:
                raise NotFound("refund not found")
            return Reply(0, self._encoder.refund(refund), replayed=True)

        begun = await begin_with_wait(
            lambda: self._store.begin_refund(claim, draft, cmd.amount, self._encoder.error),
            ctx.deadline, self._policy,
        )  # fmt: skip
        return await finish_begun(begun, execute, rebuild)

    async def payout(self, cmd: PayoutCommand, ctx: CallContext) -> Reply:
        at = self._now()
        provider = self._providers.for_payout(cmd.destination)
        payout_id = new_id()
        psp_key = psp_idempotency_key(ctx.client_id, cmd.idempotency_key, Operation.PAYOUT)
        order = PayoutOrder(
            payout_id=format_id(IdKind.PAYOUT, payout_id), client_id=ctx.client_id,
            idempotency_key=cmd.idempotency_key, psp_key=psp_key, amount=cmd.amount,
            destination=cmd.destination, instant=cmd.instant, reference=cmd.reference,
        )  # fmt: skip
        draft = Payout(
            id=payout_id, client_id=ctx.client_id, status=PayoutStatus.PENDING, amount=cmd.amount,
            destination=cmd.destination, instant=cmd.instant, reference=cmd.reference,
            psp=provider.name, psp_reference=None, failure=None, created_at=at, updated_at=at,
            psp_data=provider.prepare_payout(order),
        )  # fmt: skip
        claim = key_claim(ctx, cmd.idempotency_key, Operation.PAYOUT, cmd.fingerprint, self._policy)

        async def execute(started: Started[Payout]) -> Reply:
            payout = started.resource
            stored_order = PayoutOrder(
                payout_id=format_id(IdKind.PAYOUT, payout.id), client_id=ctx.client_id,
                idempotency_key=cmd.idempotency_key, psp_key=psp_key, amount=payout.amount,
                destination=payout.destination, instant=payout.instant, reference=payout.reference,
                psp_data=payout.psp_data,
            )  # fmt: skip
            chosen = self._providers.by_name(payout.psp)
            return await drive(
                flow=PayoutFlow(), started=started, call_psp=lambda d: chosen.payout(stored_order, d),
                store=self._store, encode=self._encoder.payout, ctx=ctx, policy=self._policy,
                now=self._now,
            )  # fmt: skip

        async def rebuild(resource_id: uuid.UUID) -> Reply:
            payout = await self._reader.get_payout(ctx.client_id, resource_id)
            if payout is None:
                raise NotFound("payout not found")
            return Reply(0, self._encoder.payout(payout), replayed=True)

        begun = await begin_with_wait(lambda: self._store.begin_payout(claim, draft), ctx.deadline, self._policy)
        return await finish_begun(begun, execute, rebuild)
