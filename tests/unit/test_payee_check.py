"""The payee check step of a payout's execution (server/app/payee_check.py), with fake stores and a
scripted bank: what is asked, stored, refused and given back, proven without I/O."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from google.rpc import error_details_pb2, status_pb2

from server.api.convert import ProtoReplyEncoder
from server.app.context import CallContext
from server.app.deadline import Deadline
from server.app.execution import ExecutionPolicy
from server.app.payee_check import PayeeCheck
from server.app.psp import PayeeAnswer, PayeeCheckOrder, PspRejectedError, PspUnavailableError
from server.app.replies import Reply
from server.app.store import Lease, Started, StoredReply, Transition
from server.domain.errors import PspUnavailable
from server.domain.finality import Rejection
from server.domain.ids import IdKind, format_id
from server.domain.model import PayeeMatch, PayeeVerification, Payout, SepaDestination
from server.domain.money import Money
from server.domain.states import PayoutStatus

AT = datetime(2026, 11, 30, tzinfo=UTC)
SEPA = SepaDestination(iban="DE89370400440532013000", bic="", name="Mueller GmbH", country="DE", town="Berlin")
Answer = PayeeAnswer | PspUnavailableError | PspRejectedError


class Bank:
    """A PSP with nothing but a payee check, answering from a script."""

    name = "bank"

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.asked: list[PayeeCheckOrder] = []

    async def verify_payee(self, order: PayeeCheckOrder, deadline: Deadline) -> PayeeAnswer:
        self.asked.append(order)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Directory:
    def __init__(self, bank: Bank) -> None:
        self.bank = bank

    def by_name(self, name: str) -> Any:
        assert name == "bank"
        return self.bank


class Store:
    """Fake payee store and operation store: records what the step writes."""

    def __init__(self) -> None:
        self.answers: list[PayeeVerification] = []
        self.outcomes: list[tuple[Transition | None, StoredReply]] = []
        self.released: list[Transition | None] = []

    async def record_payee_verification(
        self, lease: Lease, payout: Payout, verification: PayeeVerification, at: datetime
    ) -> Payout:
        self.answers.append(verification)
        return dataclasses.replace(payout, payee_verification=verification)

    async def record_outcome(self, lease: Lease, transition: Transition | None, reply: StoredReply) -> StoredReply:
        self.outcomes.append((transition, reply))
        return reply

    async def release(self, lease: Lease, transition: Transition | None, recover_in_seconds: float) -> None:
        self.released.append(transition)


def started(verification: PayeeVerification | None, status: PayoutStatus = PayoutStatus.PENDING) -> Started[Payout]:
    payout = Payout(
        id=uuid.uuid4(), client_id="c", status=status, amount=Money(5000, "EUR"), destination=SEPA, instant=False,
        reference="", psp="bank", psp_reference=None, failure=None, created_at=AT, updated_at=AT,
        payee_verification=verification,
    )  # fmt: skip
    return Started(payout, Lease("c", "k", uuid.uuid4()), resumed=False)


async def check(execution: Started[Payout], bank: Bank, store: Store) -> Started[Payout] | Reply:
    step = PayeeCheck(store, store, Directory(bank), ProtoReplyEncoder(), ExecutionPolicy(), lambda: AT)  # type: ignore[arg-type]
    return await step.before_sending(execution, CallContext("c", Deadline.after(5)), Deadline.after(5))


async def test_a_match_is_stored_and_the_execution_goes_on() -> None:
    bank, store = Bank(PayeeAnswer(PayeeMatch.MATCH)), Store()
    result = await check(started(PayeeVerification()), bank, store)
    assert isinstance(result, Started)
    assert result.resource.payee_verification == PayeeVerification(PayeeMatch.MATCH)
    assert store.answers == [PayeeVerification(PayeeMatch.MATCH)]
    assert store.outcomes == []
    assert bank.asked[0].iban == SEPA.iban
    assert bank.asked[0].name == SEPA.name


async def test_a_close_match_fails_the_payout_and_stores_the_error_with_the_key() -> None:
    bank, store = Bank(PayeeAnswer(PayeeMatch.CLOSE_MATCH, "Müller GmbH")), Store()
    execution = started(PayeeVerification())
    result = await check(execution, bank, store)
    assert isinstance(result, Reply)
    ((transition, reply),) = store.outcomes
    assert transition is not None
    assert (transition.from_status, transition.to_status) == ("PENDING", "FAILED")
    assert transition.failure is not None
    assert transition.failure.code == "payee_name_close_match"
    assert transition.reason == "payee_verification:close_match"
    status = status_pb2.Status.FromString(reply.body)
    assert reply.code == status.code == 9  # FAILED_PRECONDITION
    assert reply.final
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "PAYEE_NAME_CLOSE_MATCH"
    assert dict(info.metadata) == {"payout_id": format_id(IdKind.PAYOUT, execution.resource.id)}
    assert "Müller" not in str(status)
    assert store.answers == [PayeeVerification(PayeeMatch.CLOSE_MATCH, "Müller GmbH")]


async def test_an_accepted_risk_lets_a_close_match_go_on() -> None:
    bank, store = Bank(PayeeAnswer(PayeeMatch.CLOSE_MATCH, "Müller GmbH")), Store()
    result = await check(started(PayeeVerification(risk_accepted=True)), bank, store)
    assert isinstance(result, Started)
    assert result.resource.payee_verification == PayeeVerification(PayeeMatch.CLOSE_MATCH, "Müller GmbH", True)


@pytest.mark.parametrize("answer", [PayeeMatch.MATCH, PayeeMatch.NO_MATCH])
async def test_a_stored_answer_is_acted_on_without_asking_again(answer: PayeeMatch) -> None:
    """A resume after a crash (or a transfer that got no answer) uses the first answer: one question per payout."""
    bank, store = Bank(), Store()
    result = await check(started(PayeeVerification(answer)), bank, store)
    assert bank.asked == []
    assert store.answers == []
    assert isinstance(result, Started) is (answer is PayeeMatch.MATCH)


@pytest.mark.parametrize(
    "execution",
    [started(None), started(PayeeVerification(), PayoutStatus.PROCESSING)],
    ids=["no-check", "already-sent"],
)
async def test_payouts_without_a_pending_check_are_not_asked(execution: Started[Payout]) -> None:
    bank, store = Bank(), Store()
    assert await check(execution, bank, store) is execution
    assert bank.asked == []


@pytest.mark.parametrize(
    "no_answer",
    [
        PspUnavailableError("503", possibly_executed=False, retry_after=2.0),
        PspRejectedError("401", code="unauthorized", rejection=Rejection.CREDENTIALS),
    ],
    ids=["unavailable", "our-credentials"],
)
async def test_no_answer_gives_the_key_back_with_the_payout_pending(no_answer: Exception) -> None:
    bank, store = Bank(no_answer), Store()  # type: ignore[arg-type]
    with pytest.raises(PspUnavailable):
        await check(started(PayeeVerification()), bank, store)
    assert store.released == [None], "released unfinished, no transition: nothing was sent"
    assert store.outcomes == []
    assert store.answers == []


async def test_a_refused_question_fails_the_payout_as_a_resource() -> None:
    """The bank refusing the check request itself (a bug or bad configuration): nothing was or will be sent,
    so the payout fails like a transfer refused before it executed, a successful RPC showing FAILED."""
    bank, store = Bank(PspRejectedError("400", code="format_error")), Store()
    result = await check(started(PayeeVerification()), bank, store)
    assert isinstance(result, Reply)
    assert result.code == 0
    ((transition, _),) = store.outcomes
    assert transition is not None
    assert transition.to_status == "FAILED"
    assert transition.failure is not None
    assert transition.failure.code == "format_error"
