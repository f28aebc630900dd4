"""The SEPA bank adapter over real HTTP against the offline bank gateway, behind the one retry policy.

What is proven: the pending → paid progression, scripted rejections and returns, exactly one transfer
through lost answers, 5xx and 429 (with Retry-After honoured), duplicate detection by EndToEndId when a
payout is resubmitted under another key, XSD-valid files only, validation before any request, and no
full IBAN in any exception or log line. A few wire answers the sandbox cannot produce are checked at
the end with httpx.MockTransport (no network at all).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime as http_date

import httpx
import pytest

from adapters.bank.adapter import BankTransferAdapter, SepaTransferInvalidError
from adapters.bank.pain001 import DebtorAccount, parse_pain001, validate_pain001
from adapters.bank.pain002 import PaymentStatusReport, TransactionStatus, build_pain002
from adapters.bank.statements import BankStatementFeed
from adapters.retry import AttemptReport, RetryingProvider, RetryPolicy
from adapters.sandboxes.bank_sandbox import (
    RETURN_REASON_CODE,
    TEST_IBAN_AC01,
    TEST_IBAN_AC04,
    TEST_IBAN_ACCEPT,
    TEST_IBAN_AM04,
    TEST_IBAN_RETURNED,
    BankSandbox,
)
from server.app.deadline import Deadline
from server.app.psp import (
    ChargeOrder,
    OutcomeKind,
    PayoutOrder,
    PspOutcome,
    PspRejectedError,
    PspUnavailableError,
    RefundOrder,
)
from server.domain.bank_statements import ReportKind
from server.domain.model import SepaDestination, StripeAccountDestination
from server.domain.money import Money

DEBTOR = DebtorAccount(name="Payments GmbH", iban="DE32370400449900000001", bic="COBADEFFXXX")
TOKEN = "sandbox-token-not-for-logs"
STEP = 0.05
"""Sandbox status step delay: short, so real-time progressions finish well inside a second."""
POLICY = RetryPolicy(max_attempts=5, initial_backoff=0.01, max_backoff=0.05)
FULL_IBANS = (TEST_IBAN_ACCEPT, TEST_IBAN_AC01, TEST_IBAN_AC04, TEST_IBAN_AM04, TEST_IBAN_RETURNED, DEBTOR.iban)
BAD_CHECKSUM_IBAN = "DE00370400440532013000"


def deadline() -> Deadline:
    return Deadline.after(2.5)


def assert_no_secrets(text: str) -> None:
    """No full IBAN (compact or grouped by fours) and no bearer token in ``text``."""
    for iban in (*FULL_IBANS, BAD_CHECKSUM_IBAN):
        grouped = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
        assert iban not in text
        assert grouped not in text
        assert iban[4:] not in text  # not even the BBAN
    assert TOKEN not in text


class Wire:
    """Records every request body the adapter puts on the wire (for XSD and byte-identity checks)."""

    def __init__(self) -> None:
        self.posted: list[bytes] = []

    async def on_request(self, request: httpx.Request) -> None:
        if request.method == "POST":
            self.posted.append(request.content)


@pytest.fixture(autouse=True)
def logs_without_ibans(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert_no_secrets(caplog.text)


@pytest.fixture
def sandbox() -> Iterator[BankSandbox]:
    with BankSandbox(step_delay=STEP, stall_seconds=1.0) as running:
        yield running
        # The gateway XSD-checks every file: a 400 would mean the adapter sent an invalid one.
        assert [r for r in running.requests() if r.status == 400] == []


@pytest.fixture
async def wire() -> AsyncIterator[tuple[Wire, httpx.AsyncClient]]:
    recorder = Wire()
    async with httpx.AsyncClient(event_hooks={"request": [recorder.on_request]}) as http:
        yield recorder, http
    for body in recorder.posted:
        validate_pain001(body)  # every file sent is valid pain.001.001.09


@pytest.fixture
def adapter(sandbox: BankSandbox, wire: tuple[Wire, httpx.AsyncClient]) -> BankTransferAdapter:
    return BankTransferAdapter(sandbox.url, TOKEN, DEBTOR, http=wire[1])


@pytest.fixture
def reports() -> list[AttemptReport]:
    return []


@pytest.fixture
def provider(adapter: BankTransferAdapter, reports: list[AttemptReport]) -> RetryingProvider:
    return RetryingProvider(adapter, POLICY, observers=[reports.append])


def new_order(
    adapter: BankTransferAdapter,
    iban: str = TEST_IBAN_ACCEPT,
    *,
    amount: Money | None = None,
    instant: bool = False,
    reference: str = "Auszahlung Müller & Söhne",
    name: str = "Händler Öztürk",
) -> PayoutOrder:
    """A payout order as the service builds it: our ids, a derived PSP key, prepare_payout's facts."""
    order = PayoutOrder(
        payout_id="po_" + uuid.uuid4().hex,
        client_id="client-a",
        idempotency_key="key-" + uuid.uuid4().hex,
        psp_key="payout-" + uuid.uuid4().hex,
        amount=amount or Money(2_500, "EUR"),
        destination=SepaDestination(
            iban=iban, bic="", name=name, country="DE", town="Köln", street="Domplatz 1", postcode="50667"
        ),
        instant=instant,
        reference=reference,
    )
    return dataclasses.replace(order, psp_data=adapter.prepare_payout(order))


async def poll(
    provider: RetryingProvider, order: PayoutOrder, until: set[OutcomeKind], limit: float = 2.0
) -> tuple[PspOutcome, list[str]]:
    """Look the payout up until its outcome is one of ``until``; returns it and the statuses seen."""
    seen: list[str] = []
    stop = time.monotonic() + limit
    while time.monotonic() < stop:
        outcome = await provider.lookup(order, order.psp_data["end_to_end_id"], deadline())
        status = outcome.data.get("bank_status", "")
        if not seen or seen[-1] != status:
            seen.append(status)
        if outcome.kind in until:
            return outcome, seen
        await asyncio.sleep(0.005)
    raise AssertionError(f"never reached {until}: {seen}")


def is_ordered_subsequence(seen: list[str], path: list[str]) -> bool:
    it = iter(path)
    return all(status in it for status in seen)


def posts(sandbox: BankSandbox) -> list[tuple[str | None, int | None, bool, str | None]]:
    return [(r.idempotency_key, r.status, r.replayed, r.fault) for r in sandbox.requests() if r.method == "POST"]


# ------------------------------------------------------------------------------------ happy path


async def test_payout_is_pending_then_paid_after_acsc(
    sandbox: BankSandbox, adapter: BankTransferAdapter, provider: RetryingProvider
) -> None:
    sandbox.set_step_delay(1.0)  # real time never moves a status here; the clock is advanced by hand
    order = new_order(adapter)
    e2e = order.psp_data["end_to_end_id"]

    submitted = await provider.payout(order, deadline())
    assert submitted.kind is OutcomeKind.PENDING
    assert submitted.psp_reference == e2e
    assert submitted.data["end_to_end_id"] == e2e
    assert submitted.data["bank_status"] == "ACTC"
    assert submitted.data["bank_file_id"].startswith("bf_")
    assert submitted.data["psp_request_id"] == submitted.data["bank_file_id"]

    sandbox.advance_clock(1.0)
    settling = await provider.lookup(order, submitted.psp_reference, deadline())
    assert (settling.kind, settling.data["bank_status"]) == (OutcomeKind.PENDING, "ACCP")

    sandbox.advance_clock(1.0)
    paid = await provider.lookup(order, submitted.psp_reference, deadline())
    assert (paid.kind, paid.data["bank_status"], paid.failure) == (OutcomeKind.SUCCEEDED, "ACSC", None)
    assert paid.psp_reference == e2e
    assert paid.data["bank_reference"] == submitted.data["bank_file_id"]
    assert paid.data["psp_request_id"].startswith("STS-")
    assert sandbox.executions_for(e2e) == 1


async def test_file_carries_the_order_in_sepa_characters(
    adapter: BankTransferAdapter, provider: RetryingProvider, wire: tuple[Wire, httpx.AsyncClient]
) -> None:
    order = new_order(adapter, amount=Money(123_456, "EUR"))
    assert set(order.psp_data) == {"msg_id", "pmt_inf_id", "end_to_end_id", "created_at"}
    assert order.psp_data["end_to_end_id"] == "E-" + order.payout_id[3:]
    await provider.payout(order, deadline())

    [body] = wire[0].posted
    initiation = parse_pain001(body)
    created = datetime.fromisoformat(order.psp_data["created_at"])
    assert initiation.msg_id == order.psp_data["msg_id"]
    assert initiation.created_at == created
    [transfer] = initiation.transfers
    assert transfer.end_to_end_id == order.psp_data["end_to_end_id"]
    assert transfer.pmt_inf_id == order.psp_data["pmt_inf_id"]
    assert (transfer.amount_minor, transfer.currency, transfer.instant) == (123_456, "EUR", False)
    assert transfer.creditor_name == "Haendler Oeztuerk"
    assert transfer.remittance == "Auszahlung Mueller + Soehne"
    assert transfer.requested_execution_date == created.astimezone(UTC).date()
    assert transfer.creditor_iban == TEST_IBAN_ACCEPT


async def test_empty_reference_sends_the_end_to_end_id_as_remittance(
    adapter: BankTransferAdapter, provider: RetryingProvider, wire: tuple[Wire, httpx.AsyncClient]
) -> None:
    order = new_order(adapter, reference="  ")
    assert (await provider.payout(order, deadline())).kind is OutcomeKind.PENDING
    assert parse_pain001(wire[0].posted[0]).transfers[0].remittance == order.psp_data["end_to_end_id"]


async def test_prepared_facts_rebuild_the_same_bytes(
    sandbox: BankSandbox, adapter: BankTransferAdapter, wire: tuple[Wire, httpx.AsyncClient]
) -> None:
    order = new_order(adapter)
    first = await adapter.payout(order, deadline())
    again = await adapter.payout(order, deadline())  # a second attempt: same key, same bytes → replay
    assert wire[0].posted[0] == wire[0].posted[1]
    assert first == again
    assert posts(sandbox) == [(order.psp_key, 202, False, None), (order.psp_key, 202, True, None)]


async def test_instant_payout_carries_inst_and_settles_in_one_step(
    sandbox: BankSandbox, adapter: BankTransferAdapter, provider: RetryingProvider, wire: tuple[Wire, httpx.AsyncClient]
) -> None:
    order = new_order(adapter, amount=Money(10_000_000, "EUR"), instant=True)  # exactly the EUR 100,000 cap
    assert (await provider.payout(order, deadline())).kind is OutcomeKind.PENDING
    assert b"<LclInstrm><Cd>INST</Cd></LclInstrm>" in wire[0].posted[0]
    assert parse_pain001(wire[0].posted[0]).transfers[0].instant
    paid, seen = await poll(provider, order, {OutcomeKind.SUCCEEDED})
    assert paid.data["bank_status"] == "ACSC"
    assert "ACCP" not in seen


# ---------------------------------------------------------------------------- scripted outcomes


@pytest.mark.parametrize(
    ("iban", "reason", "path"),
    [
        (TEST_IBAN_AC01, "AC01", ["ACTC", "RJCT"]),
        (TEST_IBAN_AC04, "AC04", ["ACTC", "RJCT"]),
        (TEST_IBAN_AM04, "AM04", ["ACTC", "ACCP", "RJCT"]),
    ],
    ids=["AC01", "AC04", "AM04"],
)
async def test_scripted_rejection_fails_with_its_iso_code(
    sandbox: BankSandbox,
    adapter: BankTransferAdapter,
    provider: RetryingProvider,
    iban: str,
    reason: str,
    path: list[str],
) -> None:
    order = new_order(adapter, iban)
    submitted = await provider.payout(order, deadline())
    # The gateway validates on arrival (ACTC); the rejection comes with a later status report.
    assert (submitted.kind, submitted.data["bank_status"]) == (OutcomeKind.PENDING, "ACTC")
    failed, seen = await poll(provider, order, {OutcomeKind.FAILED, OutcomeKind.SUCCEEDED})
    assert failed.kind is OutcomeKind.FAILED
    assert failed.failure is not None
    assert (failed.failure.code, failed.failure.decline_code) == (reason, reason)
    assert failed.failure.message
    assert failed.data["bank_reason_code"] == reason
    assert is_ordered_subsequence(seen, path), seen
    assert_no_secrets(repr(failed))


async def test_returned_transfer_is_paid_by_status_and_returned_by_notification(
    sandbox: BankSandbox, adapter: BankTransferAdapter, provider: RetryingProvider,
    wire: tuple[Wire, httpx.AsyncClient],
) -> None:  # fmt: skip
    """The status report says ACSC for good; the return comes as a camt.054 credit with RtrInf, which the
    statement feed reads (and the reconciliation turns into RETURNED: tests/e2e/test_bank_statements.py)."""
    order = new_order(adapter, TEST_IBAN_RETURNED)
    assert (await provider.payout(order, deadline())).kind is OutcomeKind.PENDING
    paid, seen = await poll(provider, order, {OutcomeKind.SUCCEEDED})
    assert paid.data["bank_status"] == "ACSC"
    assert is_ordered_subsequence(seen, ["ACTC", "ACCP", "ACSC"]), seen
    assert not adapter.payouts_can_return  # nobody polls pain.002 for a return that never shows there
    e2e = order.psp_data["end_to_end_id"]
    feed = BankStatementFeed(sandbox.url, "test-token", http=wire[1])
    deadline_at = time.monotonic() + 5
    documents: list[tuple[int, bytes]] = []
    while not documents and time.monotonic() < deadline_at:
        documents = await feed.documents_after(ReportKind.NOTIFICATION, 0)
        await asyncio.sleep(0.02)
    ((seq, data),) = documents
    entry = feed.read(data).reports[0].entries[0]
    assert (seq, entry.end_to_end_id, entry.return_reason) == (1, e2e, RETURN_REASON_CODE)
    assert sandbox.executions_for(e2e) == 1


async def test_unknown_transfer_looks_up_as_unknown(
    sandbox: BankSandbox, adapter: BankTransferAdapter, provider: RetryingProvider
) -> None:
    order = new_order(adapter)  # prepared, never submitted
    outcome = await provider.lookup(order, None, deadline())
    assert outcome.kind is OutcomeKind.UNKNOWN
    assert outcome.failure is None


# ---------------------------------------------------------------------------- exactly once


async def test_lost_answer_then_retry_executes_once_with_one_key(
    sandbox: BankSandbox,
    adapter: BankTransferAdapter,
    provider: RetryingProvider,
    reports: list[AttemptReport],
    wire: tuple[Wire, httpx.AsyncClient],
) -> None:
    sandbox.inject("drop_after_work", method="POST", path_prefix="/v1/payment-files")
    order = new_order(adapter)
    e2e = order.psp_data["end_to_end_id"]

    outcome = await provider.payout(order, deadline())
    assert (outcome.kind, outcome.psp_reference) == (OutcomeKind.PENDING, e2e)
    assert sandbox.executions_for(e2e) == 1
    assert sandbox.executions() == 1
    assert posts(sandbox) == [(order.psp_key, 202, False, "drop_after_work"), (order.psp_key, 202, True, None)]
    assert wire[0].posted[0] == wire[0].posted[1]
    assert [r.outcome for r in reports] == ["possibly_executed", "pending"]


async def test_server_errors_then_success_execute_once(
    sandbox: BankSandbox, adapter: BankTransferAdapter, provider: RetryingProvider, reports: list[AttemptReport]
) -> None:
    sandbox.inject("http_500", 2, method="POST")
    order = new_order(adapter)
    outcome = await provider.payout(order, deadline())
    assert outcome.kind is OutcomeKind.PENDING
    assert sandbox.executions_for(order.psp_data["end_to_end_id"]) == 1
    assert posts(sandbox) == [
        (order.psp_key, 500, False, "http_500"),
        (order.psp_key, 500, False, "http_500"),
        (order.psp_key, 202, False, None),
    ]
    assert [r.outcome for r in reports] == ["possibly_executed", "possibly_executed", "pending"]


async def test_429_retry_after_is_honoured(sandbox: BankSandbox, adapter: BankTransferAdapter) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(seconds)

    provider = RetryingProvider(adapter, POLICY, sleep=sleep)
    sandbox.inject("http_429", method="POST", retry_after=1)
    order = new_order(adapter)
    outcome = await provider.payout(order, deadline())
    assert outcome.kind is OutcomeKind.PENDING
    assert len(waits) == 1
    assert waits[0] >= 1.0  # Retry-After beats the 10-50 ms backoff
    first, second = [r for r in sandbox.requests() if r.method == "POST"]
    assert (first.status, second.status) == (429, 202)
    assert first.idempotency_key == second.idempotency_key == order.psp_key
    assert second.received_at - first.received_at >= timedelta(seconds=0.95)
    assert sandbox.executions_for(order.psp_data["end_to_end_id"]) == 1


async def test_resubmission_under_a_new_key_returns_the_existing_transfer(
    sandbox: BankSandbox, adapter: BankTransferAdapter, provider: RetryingProvider
) -> None:
    order = new_order(adapter)
    e2e = order.psp_data["end_to_end_id"]
    first = await provider.payout(order, deadline())
    assert first.kind is OutcomeKind.PENDING
    sandbox.advance_clock(10)  # the original settles

    resubmitted = dataclasses.replace(order, psp_key="payout-" + uuid.uuid4().hex)
    outcome = await provider.payout(resubmitted, deadline())
    assert (outcome.kind, outcome.psp_reference) == (OutcomeKind.SUCCEEDED, e2e)
    assert outcome.data["bank_status"] == "ACSC"
    assert outcome.data["bank_reference"] == first.data["bank_file_id"]  # the original file's transfer
    assert sandbox.executions_for(e2e) == 1
    assert sandbox.counters().duplicates_rejected == 1
    log = [(r.method, r.path, r.idempotency_key, r.status) for r in sandbox.requests()]
    assert log == [
        ("POST", "/v1/payment-files", order.psp_key, 202),
        ("POST", "/v1/payment-files", resubmitted.psp_key, 202),  # AM05 for our EndToEndId
        ("GET", f"/v1/payment-status/{e2e}", None, 200),  # read, never resent
    ]


async def test_key_reused_for_a_different_file_is_rejected(
    sandbox: BankSandbox, adapter: BankTransferAdapter, provider: RetryingProvider
) -> None:
    order = new_order(adapter)
    await provider.payout(order, deadline())
    changed = dataclasses.replace(order, reference="another reference")
    with pytest.raises(PspRejectedError) as caught:
        await provider.payout(changed, deadline())
    assert caught.value.code == "idempotency_key_reused"
    assert sandbox.executions() == 1
    assert len(posts(sandbox)) == 2  # a rejection is final: not retried


# -------------------------------------------------------------------- single-attempt error mapping


async def test_throttling_is_retryable_and_not_executed(sandbox: BankSandbox, adapter: BankTransferAdapter) -> None:
    sandbox.inject("http_429", retry_after=7)
    with pytest.raises(PspUnavailableError) as caught:
        await adapter.payout(new_order(adapter), deadline())
    assert (caught.value.possibly_executed, caught.value.retry_after) == (False, 7.0)


async def test_server_error_may_have_executed(sandbox: BankSandbox, adapter: BankTransferAdapter) -> None:
    sandbox.inject("http_500")
    with pytest.raises(PspUnavailableError) as caught:
        await adapter.payout(new_order(adapter), deadline())
    assert caught.value.possibly_executed
    assert "500" in str(caught.value)


@pytest.mark.parametrize("kind", ["reset", "drop_after_work"])
async def test_lost_connection_after_sending_may_have_executed(
    sandbox: BankSandbox, adapter: BankTransferAdapter, kind: str
) -> None:
    sandbox.inject("reset" if kind == "reset" else "drop_after_work")
    order = new_order(adapter)
    with pytest.raises(PspUnavailableError) as caught:
        await adapter.payout(order, deadline())
    assert caught.value.possibly_executed
    executed = sandbox.executions_for(order.psp_data["end_to_end_id"])
    assert executed == (1 if kind == "drop_after_work" else 0)
    assert_no_secrets(str(caught.value))


async def test_read_timeout_may_have_executed(sandbox: BankSandbox, adapter: BankTransferAdapter) -> None:
    sandbox.set_stall_seconds(10.0)
    sandbox.inject("stall")
    started = time.monotonic()
    with pytest.raises(PspUnavailableError) as caught:
        await adapter.payout(new_order(adapter), Deadline.after(1.0))  # time to connect on a slow machine
    # The deadline, not the 10 s stall, ends the request (the margin is for slow, shared CI machines).
    assert time.monotonic() - started < 5.0
    assert caught.value.possibly_executed
    assert "ReadTimeout" in str(caught.value)


async def test_connection_refused_was_not_executed() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with BankTransferAdapter(f"http://127.0.0.1:{port}", TOKEN, DEBTOR) as adapter:
        with pytest.raises(PspUnavailableError) as caught:
            await adapter.payout(new_order(adapter), deadline())
    assert not caught.value.possibly_executed
    assert "ConnectError" in str(caught.value)


async def test_expired_deadline_sends_nothing(sandbox: BankSandbox, adapter: BankTransferAdapter) -> None:
    with pytest.raises(PspUnavailableError) as caught:
        await adapter.payout(new_order(adapter), Deadline.after(0.0))
    assert not caught.value.possibly_executed
    assert sandbox.requests() == []


def test_empty_token_is_a_configuration_error(sandbox: BankSandbox) -> None:
    for token in ("", "  ", "tok\r\nX-Injected: 1"):
        with pytest.raises(ValueError, match="api_token"):
            BankTransferAdapter(sandbox.url, token, DEBTOR)


# ------------------------------------------------------------------- refused before any request


@pytest.mark.parametrize(
    ("amount", "instant", "field"),
    [
        (Money(10_000_001, "EUR"), True, "amount_minor"),  # SEPA Instant is capped at EUR 100,000.00
        (Money(2_500, "USD"), False, "currency"),
        (Money(2_500, "USD"), True, "currency"),
    ],
)
async def test_invalid_transfer_is_refused_before_any_request(
    sandbox: BankSandbox,
    adapter: BankTransferAdapter,
    provider: RetryingProvider,
    wire: tuple[Wire, httpx.AsyncClient],
    amount: Money,
    instant: bool,
    field: str,
) -> None:
    with pytest.raises(SepaTransferInvalidError) as caught:
        await provider.payout(new_order(adapter, amount=amount, instant=instant), deadline())
    assert (caught.value.code, caught.value.field) == ("invalid_sepa_transfer", field)
    assert sandbox.requests() == []
    assert wire[0].posted == []


async def test_text_outside_the_sepa_set_is_refused_before_any_request(
    sandbox: BankSandbox, adapter: BankTransferAdapter
) -> None:
    with pytest.raises(SepaTransferInvalidError) as caught:
        await adapter.payout(new_order(adapter, name="株式会社"), deadline())
    assert caught.value.field == "creditor_name"
    with pytest.raises(SepaTransferInvalidError) as caught:
        await adapter.payout(new_order(adapter, reference="x" * 141), deadline())
    assert caught.value.field == "remittance"
    assert sandbox.requests() == []


async def test_invalid_iban_error_is_masked(sandbox: BankSandbox, adapter: BankTransferAdapter) -> None:
    with pytest.raises(SepaTransferInvalidError) as caught:
        await adapter.payout(new_order(adapter, BAD_CHECKSUM_IBAN), deadline())
    text = str(caught.value)
    assert_no_secrets(text)
    assert "DE****3000" in text
    assert sandbox.requests() == []


async def test_other_destinations_and_operations_are_unsupported(
    sandbox: BankSandbox, adapter: BankTransferAdapter
) -> None:
    order = dataclasses.replace(new_order(adapter), destination=StripeAccountDestination("acct_1"))
    with pytest.raises(PspRejectedError) as caught:
        await adapter.payout(order, deadline())
    assert caught.value.code == "unsupported_destination"
    charge = ChargeOrder("pay_1", "c", "k", "charge-1", Money(100, "EUR"), "pm_card_visa", "", "", {})
    refund = RefundOrder("re_1", "pay_1", "c", "k", "refund-1", Money(100, "EUR"), "pi_1", "")
    with pytest.raises(PspRejectedError) as caught:
        await adapter.charge(charge, deadline())
    assert caught.value.code == "unsupported_operation"
    with pytest.raises(PspRejectedError) as caught:
        await adapter.refund(refund, deadline())
    assert caught.value.code == "unsupported_operation"
    with pytest.raises(PspRejectedError) as caught:
        await adapter.lookup(charge, "pi_1", deadline())
    assert caught.value.code == "unsupported_operation"
    assert sandbox.requests() == []


async def test_payout_without_prepared_facts_is_refused(sandbox: BankSandbox, adapter: BankTransferAdapter) -> None:
    order = dataclasses.replace(new_order(adapter), psp_data={})
    with pytest.raises(PspRejectedError) as caught:
        await adapter.payout(order, deadline())
    assert caught.value.code == "missing_psp_data"
    assert sandbox.requests() == []


# ------------------------------------------------- answers the sandbox cannot produce (MockTransport)


Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
async def mocked() -> AsyncIterator[Callable[[Handler], BankTransferAdapter]]:
    """Adapters whose HTTP client answers from a function (no socket at all); clients closed after."""
    clients: list[httpx.AsyncClient] = []

    def make(handler: Handler) -> BankTransferAdapter:
        clients.append(httpx.AsyncClient(transport=httpx.MockTransport(handler)))
        return BankTransferAdapter("http://bank.invalid/api/", TOKEN, DEBTOR, http=clients[-1])

    yield make
    for client in clients:
        await client.aclose()


def submission_answer(request: httpx.Request, status: str, reason: str | None) -> httpx.Response:
    e2e = parse_pain001(request.content).transfers[0].end_to_end_id
    tx = {"end_to_end_id": e2e, "status": status, "reason_code": reason}
    return httpx.Response(202, json={"file_id": "bf_1", "msg_id": "m", "transactions": [tx]})


def status_report(e2e: str, status: str, reason: str | None) -> httpx.Response:
    entry = TransactionStatus(end_to_end_id=e2e, original_pmt_inf_id="P-1", status=status, reason_code=reason)
    report = PaymentStatusReport(
        msg_id="STS-1", created_at=datetime.now(UTC), original_msg_id="M-1", transactions=(entry,)
    )
    return httpx.Response(200, content=build_pain002(report), headers={"Content-Type": "application/xml"})


async def test_immediate_rejection_in_the_submission_answer_fails(
    mocked: Callable[[Handler], BankTransferAdapter],
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return submission_answer(request, "RJCT", "AC01")

    adapter = mocked(handler)
    order = new_order(adapter)
    outcome = await adapter.payout(order, deadline())
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.failure is not None
    assert (outcome.failure.code, outcome.failure.decline_code) == ("AC01", "AC01")
    assert outcome.failure.message == "Incorrect account number"
    [request] = seen
    assert str(request.url) == "http://bank.invalid/api/v1/payment-files"
    assert request.headers["idempotency-key"] == order.psp_key
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/xml"
    assert "traceparent" not in request.headers  # added later by instrumentation, not by the adapter


async def test_unreadable_submission_answer_is_unknown_not_failed(
    mocked: Callable[[Handler], BankTransferAdapter],
) -> None:
    adapter = mocked(lambda request: httpx.Response(202, text="<html>ok</html>"))
    outcome = await adapter.payout(new_order(adapter), deadline())
    assert outcome.kind is OutcomeKind.UNKNOWN


async def test_lost_status_after_a_duplicate_may_have_executed(
    mocked: Callable[[Handler], BankTransferAdapter],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return submission_answer(request, "RJCT", "DUPL")
        return httpx.Response(503, headers={"Retry-After": "1"})

    adapter = mocked(handler)
    with pytest.raises(PspUnavailableError) as caught:
        await adapter.payout(new_order(adapter), deadline())
    assert caught.value.possibly_executed  # the bank holds the transfer
    assert caught.value.retry_after == 1.0


@pytest.mark.parametrize(
    ("status", "reason", "kind"),
    [
        ("RJCT", "AM05", OutcomeKind.UNKNOWN),  # only a duplicate's rejection: no evidence either way
        ("ACSP", None, OutcomeKind.PENDING),
        ("PDNG", None, OutcomeKind.PENDING),
        ("ZZZZ", None, OutcomeKind.PENDING),  # unrecognised: pending and logged, never failed
        ("CANC", "CUST", OutcomeKind.FAILED),
    ],
)
async def test_lookup_status_mapping(
    mocked: Callable[[Handler], BankTransferAdapter], status: str, reason: str | None, kind: OutcomeKind
) -> None:
    adapter = mocked(lambda request: status_report(request.url.path.rsplit("/", 1)[-1], status, reason))
    outcome = await adapter.lookup(new_order(adapter), None, deadline())
    assert outcome.kind is kind
    assert outcome.data["psp_request_id"] == "STS-1"


async def test_unreadable_status_report_is_unknown(mocked: Callable[[Handler], BankTransferAdapter]) -> None:
    adapter = mocked(lambda request: httpx.Response(200, content=b"<Document/>"))
    outcome = await adapter.lookup(new_order(adapter), None, deadline())
    assert outcome.kind is OutcomeKind.UNKNOWN


@pytest.mark.parametrize(
    ("status", "headers", "possibly_executed", "retry_after"),
    [
        (503, {"Retry-After": "2"}, False, 2.0),
        (502, {}, True, None),
        (504, {}, True, None),
    ],
)
async def test_gateway_status_mapping(
    mocked: Callable[[Handler], BankTransferAdapter],
    status: int,
    headers: dict[str, str],
    possibly_executed: bool,
    retry_after: float | None,
) -> None:
    adapter = mocked(lambda request: httpx.Response(status, headers=headers))
    with pytest.raises(PspUnavailableError) as caught:
        await adapter.payout(new_order(adapter), deadline())
    assert (caught.value.possibly_executed, caught.value.retry_after) == (possibly_executed, retry_after)


async def test_retry_after_as_http_date_and_request_id(mocked: Callable[[Handler], BankTransferAdapter]) -> None:
    later = http_date(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    adapter = mocked(lambda request: httpx.Response(429, headers={"Retry-After": later, "X-Request-Id": "req_42"}))
    with pytest.raises(PspUnavailableError) as caught:
        await adapter.payout(new_order(adapter), deadline())
    assert caught.value.retry_after is not None
    assert 25.0 <= caught.value.retry_after <= 30.0
    assert caught.value.request_id == "req_42"


@pytest.mark.parametrize(("status", "code"), [(401, "unauthorized"), (403, "forbidden"), (404, "not_found")])
async def test_credentials_and_routing_errors_are_rejections(
    mocked: Callable[[Handler], BankTransferAdapter], status: int, code: str
) -> None:
    adapter = mocked(lambda request: httpx.Response(status))
    with pytest.raises(PspRejectedError) as caught:
        await adapter.payout(new_order(adapter), deadline())
    assert caught.value.code == code


async def test_schema_rejection_message_is_masked(mocked: Callable[[Handler], BankTransferAdapter]) -> None:
    quoted = f"line 1: Element 'IBAN': [facet 'pattern'] The value '{TEST_IBAN_ACCEPT}' is not accepted"
    adapter = mocked(lambda request: httpx.Response(400, json={"error": {"code": "schema_invalid", "message": quoted}}))
    with pytest.raises(PspRejectedError) as caught:
        await adapter.payout(new_order(adapter), deadline())
    assert caught.value.code == "schema_invalid"
    assert_no_secrets(str(caught.value))
    assert "DE****3000" in str(caught.value)
