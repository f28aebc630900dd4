"""The bank adapter's Verification of Payee over real HTTP against the bank sandbox: the EPC VOP wire
format both ways, no answer is no answer (asked again, never guessed), and no name or full IBAN in an
error or a log line."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from adapters.bank.adapter import BankTransferAdapter
from adapters.bank.pain001 import DebtorAccount
from adapters.retry import AttemptReport, RetryingProvider, RetryPolicy
from adapters.sandboxes.bank_payees import TEST_IBAN_VOP_NOAP, TEST_IBAN_VOP_PERSON
from adapters.sandboxes.bank_sandbox import TEST_IBAN_ACCEPT, BankSandbox
from server.app.deadline import Deadline
from server.app.psp import PayeeAnswer, PayeeCheckOrder, PspRejectedError, PspUnavailableError
from server.domain.finality import Rejection
from server.domain.model import PayeeMatch

DEBTOR = DebtorAccount(name="Payments GmbH", iban="DE32370400449900000001", bic="COBADEFFXXX")
PERSONAL = (TEST_IBAN_ACCEPT, TEST_IBAN_VOP_PERSON, TEST_IBAN_VOP_NOAP, "Mueller", "Müller", "Schäfer", "Schmidt")


def check(name: str, iban: str = TEST_IBAN_ACCEPT, bic: str = "") -> PayeeCheckOrder:
    return PayeeCheckOrder("po_0123456789abcdef0123456789abcdef", "c", iban=iban, name=name, bic=bic)


@pytest.fixture(autouse=True)
def logs_without_personal_data(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    for text in PERSONAL:
        assert text not in caplog.text


@pytest.fixture
def sandbox() -> Iterator[BankSandbox]:
    with BankSandbox() as running:
        yield running


@pytest.fixture
async def adapter(sandbox: BankSandbox) -> AsyncIterator[BankTransferAdapter]:
    async with httpx.AsyncClient() as http:
        yield BankTransferAdapter(sandbox.url, "vop-token", DEBTOR, http=http)


@pytest.mark.parametrize(
    ("order", "answer"),
    [
        (check("Müller GmbH", bic="COBADEFFXXX"), PayeeAnswer(PayeeMatch.MATCH)),
        (check("Mueller GmbH"), PayeeAnswer(PayeeMatch.CLOSE_MATCH, "Müller GmbH")),
        (check("Schmidt AG"), PayeeAnswer(PayeeMatch.NO_MATCH)),
        (check("Schaefer Anna-Lena", TEST_IBAN_VOP_PERSON), PayeeAnswer(PayeeMatch.CLOSE_MATCH, "Anna-Lena Schäfer")),
        (check("Anyone", TEST_IBAN_VOP_NOAP), PayeeAnswer(PayeeMatch.NOT_POSSIBLE)),
    ],
    ids=["match", "close-match", "no-match", "close-match-person", "not-possible"],
)
async def test_the_banks_answers(adapter: BankTransferAdapter, order: PayeeCheckOrder, answer: PayeeAnswer) -> None:
    got = await adapter.verify_payee(order, Deadline.after(5))
    assert (got.result, got.suggested_name) == (answer.result, answer.suggested_name)


async def test_a_failing_check_is_retried_and_then_unanswered_never_guessed(
    sandbox: BankSandbox, adapter: BankTransferAdapter
) -> None:
    reports: list[AttemptReport] = []
    provider = RetryingProvider(adapter, RetryPolicy(max_attempts=3, initial_backoff=0.01), observers=[reports.append])
    sandbox.inject("http_500", count=2, path_prefix="/v1/payee-verifications")
    answer = await provider.verify_payee(check("Mueller GmbH"), Deadline.after(5))
    assert answer.result is PayeeMatch.CLOSE_MATCH
    assert [r.outcome for r in reports] == ["unavailable", "unavailable", "payee_close_match"]

    sandbox.inject("reset", count=3, path_prefix="/v1/payee-verifications")
    with pytest.raises(PspUnavailableError) as caught:
        await provider.verify_payee(check("Mueller GmbH"), Deadline.after(5))
    assert not caught.value.possibly_executed, "a question cannot have executed anything"


async def test_a_refused_question_is_a_rejection_naming_no_one(adapter: BankTransferAdapter) -> None:
    with pytest.raises(PspRejectedError) as caught:
        await adapter.verify_payee(check(" "), Deadline.after(5))  # the gateway refuses an empty name
    assert caught.value.rejection is Rejection.REQUEST
    assert caught.value.code == "format_error"
    assert TEST_IBAN_ACCEPT not in str(caught.value)


async def test_an_answer_the_scheme_does_not_define_is_no_answer() -> None:
    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"partyNameMatch": "MAYBE"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(gateway)) as http:
        adapter = BankTransferAdapter("https://bank.example/api", "vop-token", DEBTOR, http=http)
        with pytest.raises(PspUnavailableError):
            await adapter.verify_payee(check("Müller GmbH"), Deadline.after(5))


@pytest.mark.parametrize(("status", "rejection"), [(422, Rejection.REQUEST), (401, Rejection.CREDENTIALS)])
async def test_a_refusal_of_the_question_is_never_read_as_a_used_key(status: int, rejection: Rejection) -> None:
    """The check sends no idempotency key, so a 422 refuses the request (the payout then fails, nothing
    having been sent) rather than saying a key was used before (which would leave it waiting for ever)."""

    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(gateway)) as http:
        adapter = BankTransferAdapter("https://bank.example/api", "vop-token", DEBTOR, http=http)
        with pytest.raises(PspRejectedError) as caught:
            await adapter.verify_payee(check("Müller GmbH"), Deadline.after(5))
    assert caught.value.rejection is rejection
