"""Verification of Payee as the first step of a SEPA payout's execution (docs/contract.md).

Why inside the execution, not at the edge: the check is a call to the bank, so it needs everything a
PSP call gets — the key claimed first (a duplicate waits or replays instead of asking again), retries
with backoff, a span per attempt, and the finality rule: no answer is not a refusal. Without the bank's
answer the key is given back unfinished (PSP_UNAVAILABLE) and a client retry or the recovery worker
asks again; nothing has been sent, so the payout stays PENDING.

The bank's answer is stored on the payout before anything else happens, so every later step — the
transfer, a resume on another server after a crash — acts on that one answer and never asks twice.
What the answer allows is the domain's policy (server/domain/payee_verification.py). A refusal fails
the payout (nothing was or will be sent: our own refusal is the evidence) and stores the
FAILED_PRECONDITION error with its key, so the key replays the same error; the payout, its answer and
the holder's name the bank suggested stay readable with GetPayout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from server.app import telemetry
from server.app.alerts import credentials_refused
from server.app.context import CallContext
from server.app.deadline import Deadline
from server.app.execution import ExecutionPolicy, stop_unfinished
from server.app.flows import PayoutFlow
from server.app.psp import PayeeAnswer, PayeeCheckOrder, ProviderDirectory, PspRejectedError, PspUnavailableError
from server.app.replies import Reply, ReplyEncoder
from server.app.store import Lease, OperationStore, Started, StoredReply, Transition
from server.domain.errors import PspUnavailable
from server.domain.finality import Rejection
from server.domain.ids import IdKind, format_id
from server.domain.model import Failure, PayeeVerification, Payout, SepaDestination
from server.domain.payee_verification import refusal
from server.domain.states import PayoutStatus, ResourceType

__all__ = ["PayeeCheck", "PayeeVerificationStore"]

log = logging.getLogger(__name__)

_REJECTED_MESSAGE = "the bank refused the payee verification request"


class PayeeVerificationStore(Protocol):
    async def record_payee_verification(
        self, lease: Lease, payout: Payout, verification: PayeeVerification, at: datetime
    ) -> Payout:
        """Stores the bank's answer on the unanswered payout while `lease` still owns its key; returns
        the payout as stored. Raises IdempotencyKeyInUse if another execution took the key over."""
        ...


class PayeeCheck:
    """Runs the payee check of a started payout execution and applies the policy to its answer."""

    def __init__(
        self,
        payees: PayeeVerificationStore,
        operations: OperationStore,
        providers: ProviderDirectory,
        encoder: ReplyEncoder,
        policy: ExecutionPolicy,
        now: Callable[[], datetime],
    ) -> None:
        self._payees = payees
        self._operations = operations
        self._providers = providers
        self._encoder = encoder
        self._policy = policy
        self._now = now
        self._flow = PayoutFlow()

    async def before_sending(
        self, started: Started[Payout], ctx: CallContext, deadline: Deadline
    ) -> Started[Payout] | Reply:
        """The execution to go on with (its payout carrying the bank's answer), or the reply that ends it.

        Only a PENDING payout with a check is checked: one that went further was sent after its check,
        and one without (a Stripe account, or created before VoP) never had one to pass. `deadline`
        bounds the question (the caller shares it with the transfer that follows).
        """
        payout = started.resource
        verification = payout.payee_verification
        if verification is None or payout.status is not PayoutStatus.PENDING:
            return started
        public_id = format_id(IdKind.PAYOUT, payout.id)
        if verification.result is None:
            answer = await self._ask(started, ctx, public_id, deadline)
            if isinstance(answer, Reply):
                return answer
            verification = dataclasses.replace(verification, result=answer.result, suggested_name=answer.suggested_name)
            payout = await self._payees.record_payee_verification(started.lease, payout, verification, self._now())
            started = dataclasses.replace(started, resource=payout)
        telemetry.annotate(**{"payout.payee_verification": str(verification.result)})
        refused = refusal(verification, public_id)
        if refused is None:
            return started
        log.info(
            "payout %s refused by Verification of Payee (%s)", public_id, verification.result,
            extra={"resource_id": public_id, "payee_verification": str(verification.result)},
        )  # fmt: skip
        failure = Failure(refused.reason.lower(), refused.message)
        reason = f"payee_verification:{str(verification.result).lower()}"
        return await self._record(started, self._failed(started, ctx, failure, reason), self._encoder.error(refused))

    async def _ask(
        self, started: Started[Payout], ctx: CallContext, public_id: str, deadline: Deadline
    ) -> PayeeAnswer | Reply:
        """The bank's answer; without one the key goes back unfinished (PspUnavailable is raised)."""
        payout = started.resource
        destination = payout.destination
        if not isinstance(destination, SepaDestination):  # the claim sets a check on SEPA payouts only
            raise RuntimeError(f"payout {public_id} has a payee check but no SEPA account")
        order = PayeeCheckOrder(
            payout_id=public_id, client_id=payout.client_id, iban=destination.iban, name=destination.name,
            bic=destination.bic,
        )  # fmt: skip
        provider = self._providers.by_name(payout.psp)
        try:
            return await provider.verify_payee(order, deadline)
        except PspUnavailableError as exc:
            await self._give_back(started, ctx)
            raise PspUnavailable(
                "the payee's bank did not answer the payee check; retry with the same idempotency key",
                exc.retry_after or self._policy.default_retry_after_seconds,
            ) from exc
        except PspRejectedError as exc:
            if exc.rejection is not Rejection.REQUEST:
                # Our credentials (or a key the check does not use): no evidence about the payout.
                if exc.rejection is Rejection.CREDENTIALS:
                    credentials_refused(payout.psp, exc.code, public_id)
                await self._give_back(started, ctx)
                raise PspUnavailable(
                    "the payment provider is unavailable; retry with the same idempotency key",
                    self._policy.default_retry_after_seconds,
                ) from exc
            # The bank refused the question itself (a bug or bad configuration). Nothing was sent and
            # nothing will be: the payout fails like a transfer the bank refused before executing it.
            log.error("bank refused the payee check of payout %s (code %s)", public_id, exc.code)
            failure = Failure(exc.code, _REJECTED_MESSAGE)
            failed = self._failed(started, ctx, failure, "psp:payee_check_rejected")
            reply = StoredReply(0, self._encoder.payout(self._flow.apply(payout, failed)))
            return await self._record(started, failed, reply)

    def _failed(self, started: Started[Payout], ctx: CallContext, failure: Failure, reason: str) -> Transition:
        payout = started.resource
        return Transition(
            resource=ResourceType.PAYOUT, resource_id=payout.id, client_id=payout.client_id,
            from_status=str(payout.status), to_status=str(PayoutStatus.FAILED), actor=ctx.actor, reason=reason,
            at=self._now(), failure=failure,
        )  # fmt: skip

    async def _record(self, started: Started[Payout], transition: Transition, reply: StoredReply) -> Reply:
        # Shielded like every outcome: once decided, it is recorded even if the caller goes away.
        stored = await asyncio.shield(self._operations.record_outcome(started.lease, transition, reply))
        return Reply.of(stored, replayed=False)

    async def _give_back(self, started: Started[Payout], ctx: CallContext) -> None:
        """No answer: the key goes back unfinished and the payout stays PENDING (nothing was sent)."""
        await stop_unfinished(
            self._flow, started, self._operations, ctx, self._policy, self._now, possibly_executed=False
        )
