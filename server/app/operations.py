"""The mutating use cases: Charge, Refund and Payout, each through the shared idempotent phases, and
the resumption of a stopped execution (by a client retry or by the recovery worker)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from server.app.commands import CancelCommand, CaptureCommand, ChargeCommand, PayoutCommand, RefundCommand
from server.app.context import CallContext
from server.app.deadline import Deadline
from server.app.execution import ExecutionPolicy, answer_begun, begin_with_wait, drive, key_claim
from server.app.flows import Flow
from server.app.orders import payout_order
from server.app.payee_check import PayeeCheck, PayeeVerificationStore
from server.app.psp import (
    OutcomeKind,
    PaymentProvider,
    ProviderDirectory,
    PspOutcome,
    PspRejectedError,
    PspUnavailableError,
)
from server.app.replies import Reply, ReplyEncoder
from server.app.resources import PspCall, executed_by, spec_for_kind, spec_of
from server.app.store import Begun, Done, KeyClaim, OperationStore, Pruned, ResourceReader, Started, StoredReply
from server.domain.errors import FieldViolation, InvalidRequest, NotFound
from server.domain.finality import may_resend
from server.domain.idempotency import Operation
from server.domain.ids import IdKind, new_id, parse_id
from server.domain.model import PayeeVerification, Payment, Payout, Refund, StripeAccountDestination
from server.domain.money import Money
from server.domain.payee_verification import needs_payee_verification
from server.domain.states import PaymentStatus, PayoutStatus, RefundStatus, is_final

R = TypeVar("R", Payment, Refund, Payout)


def _refuse_amount_the_psp_refuses(provider: PaymentProvider, amount: Money, operation: Operation) -> None:
    """The PSP's own amount rules (minimum, maximum, units), checked before the key is claimed: a refused
    amount is the caller's to correct, and the key stays free for the corrected request."""
    problem = provider.amount_problem(amount, operation)
    if problem:
        raise InvalidRequest([FieldViolation("amount.amount_minor", problem, "AMOUNT_NOT_ACCEPTED")])


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
        payees: PayeeVerificationStore,
    ) -> None:
        self._store = store
        self._reader = reader
        self._providers = providers
        self._encoder = encoder
        self._policy = policy
        self._now = now
        self._payee_check = PayeeCheck(payees, store, providers, encoder, policy, now)

    # -- the RPCs ------------------------------------------------------------------------------

    async def charge(self, cmd: ChargeCommand, ctx: CallContext) -> Reply:
        provider = self._providers.for_charge()
        _refuse_amount_the_psp_refuses(provider, cmd.amount, Operation.CHARGE)
        at = self._now()
        draft = Payment(
            id=new_id(), client_id=ctx.client_id, status=PaymentStatus.PENDING, amount=cmd.amount,
            amount_captured=0, amount_refunded=0, amount_reserved=0, payment_method=cmd.payment_method,
            customer_id=cmd.customer_id, description=cmd.description, metadata=dict(cmd.metadata),
            psp=provider.name, psp_reference=None, failure=None,
            created_at=at, updated_at=at, capture_method=cmd.capture_method, return_url=cmd.return_url,
        )  # fmt: skip
        claim = key_claim(ctx, cmd.idempotency_key, Operation.CHARGE, cmd.fingerprint, self._policy)
        begun = await begin_with_wait(
            lambda: self._store.begin_charge(claim, draft), ctx.deadline, self._policy, Operation.CHARGE
        )
        return await self._answer(begun, cmd.idempotency_key, ctx, IdKind.PAYMENT)

    async def refund(self, cmd: RefundCommand, ctx: CallContext) -> Reply:
        at = self._now()
        draft = Refund(
            id=new_id(), client_id=ctx.client_id, payment_id=parse_id(IdKind.PAYMENT, cmd.payment_id_text),
            status=RefundStatus.PENDING, amount=cmd.amount or Money(0, "EUR"),  # the store sets both
            reason=cmd.reason, psp="", psp_reference=None, failure=None, created_at=at, updated_at=at,
        )  # fmt: skip
        claim = key_claim(ctx, cmd.idempotency_key, Operation.REFUND, cmd.fingerprint, self._policy)
        begun = await begin_with_wait(
            lambda: self._store.begin_refund(claim, draft, cmd.amount, self._encoder.error),
            ctx.deadline, self._policy, Operation.REFUND,
        )  # fmt: skip
        return await self._answer(begun, cmd.idempotency_key, ctx, IdKind.REFUND)

    async def capture(self, cmd: CaptureCommand, ctx: CallContext) -> Reply:
        def begin(claim: KeyClaim, payment_id: uuid.UUID) -> Awaitable[Begun[Payment]]:
            return self._store.begin_capture(claim, payment_id, cmd.amount, cmd.final, self._encoder.error)

        return await self._act_on_payment(Operation.CAPTURE, cmd, ctx, begin)

    async def cancel(self, cmd: CancelCommand, ctx: CallContext) -> Reply:
        def begin(claim: KeyClaim, payment_id: uuid.UUID) -> Awaitable[Begun[Payment]]:
            return self._store.begin_cancel(claim, payment_id, cmd.reason, self._encoder.error)

        return await self._act_on_payment(Operation.CANCEL, cmd, ctx, begin)

    async def _act_on_payment(
        self, operation: Operation, cmd: CaptureCommand | CancelCommand, ctx: CallContext,
        begin: Callable[[KeyClaim, uuid.UUID], Awaitable[Begun[Payment]]],
    ) -> Reply:  # fmt: skip
        """A capture or cancel: the key claimed and the action admitted on the payment, then executed."""
        payment_id = parse_id(IdKind.PAYMENT, cmd.payment_id_text)
        claim = key_claim(ctx, cmd.idempotency_key, operation, cmd.fingerprint, self._policy)
        begun = await begin_with_wait(lambda: begin(claim, payment_id), ctx.deadline, self._policy, operation)
        return await self._answer(begun, cmd.idempotency_key, ctx, IdKind.PAYMENT)

    async def payout(self, cmd: PayoutCommand, ctx: CallContext) -> Reply:
        provider = self._providers.for_payout(cmd.destination)
        problem = provider.destination_problem(cmd.destination)
        if problem:
            field = "stripe_account_id" if isinstance(cmd.destination, StripeAccountDestination) else "sepa_account"
            raise InvalidRequest([FieldViolation(field, problem, "INVALID_ACCOUNT")])
        _refuse_amount_the_psp_refuses(provider, cmd.amount, Operation.PAYOUT)
        at = self._now()
        draft = Payout(
            id=new_id(), client_id=ctx.client_id, status=PayoutStatus.PENDING, amount=cmd.amount,
            destination=cmd.destination, instant=cmd.instant, reference=cmd.reference,
            psp=provider.name, psp_reference=None, failure=None, created_at=at, updated_at=at,
            payee_verification=PayeeVerification(risk_accepted=cmd.accept_payee_verification_risk)
            if needs_payee_verification(cmd.destination) else None,
        )  # fmt: skip
        # Facts the PSP needs identical on every attempt (e.g. SEPA message ids) are stored at creation.
        draft = dataclasses.replace(draft, psp_data=provider.prepare_payout(payout_order(draft, cmd.idempotency_key)))
        claim = key_claim(ctx, cmd.idempotency_key, Operation.PAYOUT, cmd.fingerprint, self._policy)
        begun = await begin_with_wait(
            lambda: self._store.begin_payout(claim, draft), ctx.deadline, self._policy, Operation.PAYOUT
        )
        return await self._answer(begun, cmd.idempotency_key, ctx, IdKind.PAYOUT)

    async def _answer(self, begun: Started[Any] | Done | Pruned, key: str, ctx: CallContext, kind: IdKind) -> Reply:
        """Phase 1's result answered: executed (or resumed) now, replayed, or rebuilt from current state."""
        return await answer_begun(begun, lambda started: self.resume(started, key, ctx), self._rebuild(ctx, kind, key))

    # -- execution from stored data -------------------------------------------------------------

    async def resume(
        self, started: Started[Payment] | Started[Refund] | Started[Payout], key: str, ctx: CallContext
    ) -> Reply:
        """Drives the PSP for an execution this caller now owns, with the same PSP key as every earlier
        attempt. Past the PSP's key lifetime a resend would execute again, so from then on, on every path
        (client retry, recovery worker), the PSP is only asked what became of it.

        A SEPA payout that may still be sent passes its payee check first (payee_check.py): a refusal
        ends the execution there, with nothing sent."""
        ttl = self._providers.by_name(started.resource.psp).key_ttl_seconds
        resend = may_resend(started.key_age_seconds, ttl)
        if resend and isinstance(started.resource, Payout):
            # One PSP budget for the check and the transfer after it: the key's lease covers one.
            budget = self._policy.psp_deadline(ctx.deadline)
            checked = await self._payee_check.before_sending(started, ctx, budget)
            if isinstance(checked, Reply):
                return checked
            started = checked
        else:
            budget = None
        send, ask = await self._psp_calls(started.resource, key, started.operation)
        return await self._complete(started, send if resend else ask, ask, ctx, settle=False, budget=budget)

    async def settle(
        self, started: Started[Payment] | Started[Refund] | Started[Payout], key: str, ctx: CallContext
    ) -> Reply:
        """Past the PSP's look-up window: ask the PSP once more and record its evidence, or, without
        evidence either way, move the resource to REQUIRES_RECONCILIATION (never FAILED)."""
        _, ask = await self._psp_calls(started.resource, key, started.operation)
        return await self._complete(started, ask, ask, ctx, settle=True)

    async def look_up(self, resource: Payment | Refund | Payout, key: str, deadline: Deadline) -> PspOutcome:
        """The PSP's current view of a stored operation (status polls, operator re-checks)."""
        _, ask = await self._psp_calls(resource, key, None)
        return await ask(deadline)

    async def _psp_calls(
        self, resource: Payment | Refund | Payout, key: str, operation: Operation | None
    ) -> tuple[PspCall, PspCall]:
        """The call that (re)sends this execution and the lookup of what became of it, both built from
        stored data alone (orders.py), so every attempt, wherever it runs, sends the same request."""
        provider = self._providers.by_name(resource.psp)
        entry: Any = executed_by(resource, operation)  # an entry fits the resources it executes
        calls: tuple[PspCall, PspCall] = await entry.psp_calls(resource, key, provider, self._reader)
        return calls

    async def _complete(
        self, started: Started[Payment] | Started[Refund] | Started[Payout], call: PspCall, ask: PspCall,
        ctx: CallContext, *, settle: bool, budget: Deadline | None = None,
    ) -> Reply:  # fmt: skip
        """Phases 2 and 3 with the resource type's flow and reply encoder: the PSP's answer recorded, or
        (`settle`) the PSP's last word before reconciliation."""
        spec = spec_of(started.resource)
        flow = executed_by(started.resource, started.operation).flow

        def encode(resource: Payment | Refund | Payout) -> bytes:
            return spec.encode(self._encoder, resource)

        if settle:
            return await self._settle(flow, started, ask, encode, ctx)
        return await drive(
            flow=flow, started=started, send=call, look_up=ask, store=self._store, encode=encode, ctx=ctx,
            policy=self._policy, now=self._now, psp_deadline=budget,
        )  # fmt: skip

    async def _settle(
        self, flow: Flow[R], started: Started[R], ask: PspCall, encode: Callable[[R], bytes], ctx: CallContext
    ) -> Reply:
        resource = started.resource
        try:
            outcome = await ask(self._policy.psp_deadline(ctx.deadline))
        except (PspUnavailableError, PspRejectedError):
            outcome = PspOutcome(OutcomeKind.UNKNOWN)
        if outcome.kind is OutcomeKind.UNKNOWN:
            transition = flow.reconcile(resource, ctx.actor, self._now())
        else:
            transition = flow.decide(resource, outcome, ctx.actor, self._now())
        final = flow.apply(resource, transition) if transition else resource
        reply = StoredReply(0, encode(final), final=is_final(flow.resource_type, str(final.status)))
        stored = await self._store.record_outcome(started.lease, transition, reply)
        return Reply.of(stored, replayed=False)

    def _rebuild(self, ctx: CallContext, kind: IdKind, key: str) -> Callable[[uuid.UUID | None], Awaitable[Reply]]:
        """A reply rebuilt from the resource's current state: the stored one was pruned, or showed a state
        the PSP had not finished."""
        spec = spec_for_kind(kind)

        async def rebuild(resource_id: uuid.UUID | None) -> Reply:
            resource = await spec.load(self._reader, ctx.client_id, resource_id) if resource_id else None
            if resource is None:
                raise NotFound(f"{spec.resource_type} not found")
            if isinstance(resource, Payment) and resource.status is PaymentStatus.REQUIRES_ACTION:
                resource = await self._with_next_action(resource, key, ctx)
            return Reply(0, spec.encode(self._encoder, resource), replayed=True)

        return rebuild

    async def _with_next_action(self, payment: Payment, key: str, ctx: CallContext) -> Payment:
        """What the customer must do is never stored (it can hold a client secret): the PSP is asked
        again. Without an answer the reply shows the payment as stored, and a retry asks once more."""
        try:
            outcome = await self.look_up(payment, key, self._policy.psp_deadline(ctx.deadline))
        except (PspUnavailableError, PspRejectedError):
            return payment
        if outcome.kind is not OutcomeKind.REQUIRES_ACTION:
            return payment
        return dataclasses.replace(payment, next_action=outcome.next_action)
