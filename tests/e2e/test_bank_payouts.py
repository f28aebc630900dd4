"""SEPA payouts through the real gRPC server, PostgreSQL, the bank adapter and the bank sandbox over
HTTP, with the background worker polling pain.002 status reports."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import grpc
import httpx
import pytest

from adapters.bank.adapter import BankTransferAdapter
from adapters.bank.pain001 import DebtorAccount
from adapters.directory import ProviderSet
from adapters.retry import RetryingProvider, RetryPolicy
from adapters.sandboxes.bank_payees import TEST_IBAN_ANY_HOLDER
from adapters.sandboxes.bank_sandbox import (
    TEST_IBAN_AC01,
    TEST_IBAN_AC04,
    TEST_IBAN_AM04,
    TEST_IBAN_RETURNED,
    BankSandbox,
)
from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.app.worker import WorkerPolicy
from tests.support.harness import FAST_WORKER, ServerHarness
from tests.support.requests import field_violations, sepa_payout

DEBTOR = DebtorAccount("Payments Service GmbH", "DE89370400440532013000", "COBADEFFXXX")


class BankServer:
    def __init__(self, database_url: str, worker: WorkerPolicy = FAST_WORKER, attempt_timeout: float = 5.0) -> None:
        self.sandbox = BankSandbox(step_delay=0.1).start()
        self.http = httpx.AsyncClient()
        adapter = BankTransferAdapter(self.sandbox.url, "test-token", DEBTOR, http=self.http)
        policy = RetryPolicy(max_attempts=5, initial_backoff=0.01, max_backoff=0.05, attempt_timeout=attempt_timeout)
        bank = RetryingProvider(adapter, policy)
        self.harness = ServerHarness(database_url, providers=ProviderSet(cards=bank, bank=bank), worker=worker)

    def payout(self, request: svc.PayoutRequest) -> res.Payout:
        payout: res.Payout = self.harness.stub.Payout(request, timeout=10).payout
        return payout

    def wait_for(self, payout_id: str, done: Callable[[res.Payout], bool], timeout: float = 10.0) -> res.Payout:
        deadline = time.monotonic() + timeout
        while True:
            payout: res.Payout = self.harness.stub.GetPayout(svc.GetPayoutRequest(id=payout_id), timeout=5).payout
            if done(payout) or time.monotonic() > deadline:
                return payout
            time.sleep(0.05)

    def close(self) -> None:
        self.harness.run(self.http.aclose())
        self.harness.close()
        self.sandbox.stop()


@pytest.fixture
def bank(database_url: str) -> Iterator[BankServer]:
    server = BankServer(database_url)
    yield server
    server.close()


def test_payout_goes_processing_then_paid(bank: BankServer) -> None:
    payout = bank.payout(sepa_payout("bp1", amount=5000))
    assert payout.status == res.PAYOUT_STATUS_PROCESSING
    assert payout.psp == "bank"
    assert payout.sepa_account.iban.endswith("3000")
    end_to_end = payout.psp_reference
    seen: set[str] = set()

    def paid(p: res.Payout) -> bool:
        seen.add(bank.sandbox.status_of(end_to_end) or "")
        return p.status == res.PAYOUT_STATUS_PAID

    final = bank.wait_for(payout.id, paid)
    assert final.status == res.PAYOUT_STATUS_PAID
    assert "ACCP" in seen or "ACSC" in seen
    assert bank.sandbox.executions_for(end_to_end) == 1


def test_a_stalled_status_lookup_holds_up_no_other_payout(database_url: str) -> None:
    """Each status poll runs on its own: a bank that holds one lookup for 20 s delays that payout only.

    (The worker used to run its polls in batches and claim the next batch when the slowest had
    finished, so one stalled lookup held up every other payout's status for up to the PSP budget.)
    """
    stall = 20.0
    patient = replace(FAST_WORKER, psp_budget_seconds=30.0, lease_seconds=40.0)
    bank = BankServer(database_url, worker=patient, attempt_timeout=30.0)
    try:
        bank.sandbox.set_stall_seconds(stall)
        slow = bank.payout(sepa_payout("stalled-lookup"))
        bank.sandbox.inject("stall", method="GET", path_prefix=f"/v1/payment-status/{slow.psp_reference}")
        deadline = time.monotonic() + 15  # the first poll is due 1 s after PROCESSING
        while not any(r.fault == "stall" for r in bank.sandbox.requests()) and time.monotonic() < deadline:
            time.sleep(0.02)
        stalled_at = time.monotonic()
        assert any(r.fault == "stall" for r in bank.sandbox.requests()), "the worker never looked up the payout"

        quick = bank.payout(sepa_payout("answered-lookup"))
        final = bank.wait_for(quick.id, lambda p: p.status == res.PAYOUT_STATUS_PAID, timeout=15.0)
        assert final.status == res.PAYOUT_STATUS_PAID
        assert time.monotonic() - stalled_at < stall  # while the other lookup was still held
        held = bank.harness.stub.GetPayout(svc.GetPayoutRequest(id=slow.id), timeout=5).payout
        assert held.status == res.PAYOUT_STATUS_PROCESSING
    finally:
        bank.close()


@pytest.mark.parametrize(
    ("iban", "code"), [(TEST_IBAN_AC01, "AC01"), (TEST_IBAN_AC04, "AC04"), (TEST_IBAN_AM04, "AM04")]
)
def test_scripted_rejections_fail_with_the_iso_code(bank: BankServer, iban: str, code: str) -> None:
    payout = bank.payout(sepa_payout(f"rej-{code}", iban=iban))
    final = bank.wait_for(payout.id, lambda p: p.status == res.PAYOUT_STATUS_FAILED)
    assert final.status == res.PAYOUT_STATUS_FAILED
    assert final.failure.code == code
    assert final.failure.decline_code == code


def test_status_reports_alone_never_make_a_payout_returned(bank: BankServer) -> None:
    """A return is a booking (camt.054), not a status: with no statement feed wired, a transfer the bank
    sends back stays PAID and its pain.002 keeps saying ACSC. The return through statements is proven
    through `payments serve` in tests/e2e/test_bank_statements.py."""
    payout = bank.payout(sepa_payout("ret-1", iban=TEST_IBAN_RETURNED))
    final = bank.wait_for(payout.id, lambda p: p.status == res.PAYOUT_STATUS_PAID)
    assert final.status == res.PAYOUT_STATUS_PAID
    time.sleep(0.5)  # five status steps of this sandbox: the return is long due
    assert bank.sandbox.status_of(payout.psp_reference) == "ACSC"
    assert bank.wait_for(payout.id, lambda p: False, timeout=0.3).status == res.PAYOUT_STATUS_PAID


def test_dropped_submission_then_retry_is_one_transfer(bank: BankServer) -> None:
    # The payment file's answer is lost (the payee check before it is a request of its own, unfaulted).
    bank.sandbox.inject("drop_after_work", count=1, method="POST", path_prefix="/v1/payment-files")
    payout = bank.payout(sepa_payout("drop-1"))
    assert payout.status == res.PAYOUT_STATUS_PROCESSING
    assert bank.sandbox.executions_for(payout.psp_reference) == 1
    submissions = [r for r in bank.sandbox.requests() if r.method == "POST" and r.path == "/v1/payment-files"]
    assert submissions[0].fault == "drop_after_work"
    assert len(submissions) >= 2, "the file was sent again after its answer was lost"
    assert len({r.idempotency_key for r in submissions}) == 1


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (sepa_payout("v1", iban="DE89370400440532013001"), "sepa_account.iban"),
        (sepa_payout("v2", currency="USD"), "amount.currency"),
        (sepa_payout("v3", amount=10_000_001, instant=True), "amount.amount_minor"),
        (sepa_payout("v4", name="Ελληνική Εταιρεία"), "sepa_account.name"),
    ],
)
def test_invalid_payouts_name_the_field(bank: BankServer, request_: svc.PayoutRequest, field: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        bank.payout(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(caught.value)
    assert bank.sandbox.requests() == []


def test_invalid_bic_names_the_field(bank: BankServer) -> None:
    request = sepa_payout("vbic")
    request.sepa_account.bic = "ABCDZZ12"  # no such country
    with pytest.raises(grpc.RpcError) as caught:
        bank.payout(request)
    assert "sepa_account.bic" in field_violations(caught.value)


def test_umlauts_are_transliterated_not_refused(bank: BankServer) -> None:
    # An account the sandbox bank has no holder for: Verification of Payee confirms any name there.
    payout = bank.payout(sepa_payout("uml", name="Müller & Söhne GmbH", iban=TEST_IBAN_ANY_HOLDER))
    assert payout.status == res.PAYOUT_STATUS_PROCESSING
    assert payout.sepa_account.name == "Müller & Söhne GmbH", "the caller's text is kept as sent"
