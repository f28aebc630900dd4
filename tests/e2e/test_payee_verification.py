"""Verification of Payee through `payments serve` (the composition root), the bank adapter and the bank
sandbox over HTTP: the issue's acceptance and the policy's edges. One server for the module; each test
uses its own keys."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2

from adapters.sandboxes.bank_payees import TEST_IBAN_VOP_NOAP
from adapters.sandboxes.bank_sandbox import TEST_IBAN_ACCEPT, BankSandbox
from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api.client import PaymentStub, payment_stub
from tests.support.chaos import ServeProcess, client_channel
from tests.support.postgres import PostgresForTests
from tests.support.requests import error_reason, has_retry_info, sepa_payout, status_of

PAYMENT_FILES = "/v1/payment-files"
CHECKS = "/v1/payee-verifications"
V = res.PayeeVerificationResult


@dataclass
class Served:
    stub: PaymentStub
    bank: BankSandbox
    server: ServeProcess

    def payout(self, key: str, name: str, *, iban: str = TEST_IBAN_ACCEPT, accept: bool = False) -> res.Payout:
        return self.stub.Payout(self.request(key, name, iban=iban, accept=accept), timeout=15).payout

    @staticmethod
    def request(key: str, name: str, *, iban: str = TEST_IBAN_ACCEPT, accept: bool = False) -> svc.PayoutRequest:
        request = sepa_payout(key, iban=iban, name=name)
        request.accept_payee_verification_risk = accept
        return request

    def refused(self, key: str, name: str, *, iban: str = TEST_IBAN_ACCEPT, accept: bool = False) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as caught:
            self.payout(key, name, iban=iban, accept=accept)
        return caught.value

    def get(self, payout_id: str) -> res.Payout:
        return self.stub.GetPayout(svc.GetPayoutRequest(id=payout_id), timeout=5).payout

    def paid(self, payout_id: str, timeout: float = 15.0) -> res.Payout:
        """The payout once the worker's status poll has seen the bank settle it (or as it stands then)."""
        deadline = time.monotonic() + timeout
        payout = self.get(payout_id)
        while payout.status != res.PAYOUT_STATUS_PAID and time.monotonic() < deadline:
            time.sleep(0.1)
            payout = self.get(payout_id)
        return payout

    def submissions(self) -> int:
        return sum(1 for r in self.bank.requests() if r.method == "POST" and r.path == PAYMENT_FILES)

    def checks(self) -> int:
        return sum(1 for r in self.bank.requests() if r.method == "POST" and r.path == CHECKS)


@pytest.fixture(scope="module")
def served(postgres: PostgresForTests, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # step_delay 0: a status report says the transfer settled, so the worker's first poll makes it PAID.
    with BankSandbox(step_delay=0) as bank:
        log = tmp_path_factory.mktemp("vop") / "serve.log"
        server = ServeProcess(
            postgres.new_database(), log, PAYMENTS_BANK_API_BASE=bank.url, PAYMENTS_BANK_API_TOKEN="vop-token"
        )
        server.start()
        try:
            with client_channel(server.target) as channel:
                yield Served(payment_stub(channel), bank, server)
            assert not server.error_lines(), server.log_tail()
            logged = log.read_text(errors="replace")
            for personal in ("Mueller GmbH", "Schmidt AG", "Anyone GmbH", TEST_IBAN_ACCEPT, TEST_IBAN_VOP_NOAP):
                assert personal not in logged, "names and full IBANs are never logged"
        finally:
            server.close()


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    for detail in status_of(error).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo")


def test_the_holders_name_is_paid(served: Served) -> None:
    payout = served.payout("vop-match", "Müller GmbH")
    assert payout.status == res.PAYOUT_STATUS_PROCESSING
    assert payout.payee_verification == res.PayeeVerification(result=V.PAYEE_VERIFICATION_RESULT_MATCH)
    paid = served.paid(payout.id)
    assert paid.status == res.PAYOUT_STATUS_PAID
    assert paid.payee_verification.result == V.PAYEE_VERIFICATION_RESULT_MATCH
    assert served.bank.executions_for(payout.psp_reference) == 1


def test_a_close_match_is_refused_then_paid_once_the_risk_is_accepted(served: Served) -> None:
    submitted = served.submissions()
    error = served.refused("vop-close", "Mueller GmbH")
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(error) == "PAYEE_NAME_CLOSE_MATCH"
    assert "Müller" not in str(status_of(error)), "the holder's name is on the payout, not in the error"
    refused = served.get(error_info(error).metadata["payout_id"])
    assert refused.status == res.PAYOUT_STATUS_FAILED
    assert refused.failure.code == "payee_name_close_match"
    assert refused.payee_verification == res.PayeeVerification(
        result=V.PAYEE_VERIFICATION_RESULT_CLOSE_MATCH, suggested_name="Müller GmbH"
    )
    assert served.submissions() == submitted, "nothing was sent to the bank"

    # The same key replays the stored refusal, without asking the bank again.
    checks = served.checks()
    with pytest.raises(grpc.RpcError) as again:
        served.payout("vop-close", "Mueller GmbH")
    assert status_of(again.value) == status_of(error)
    assert isinstance(again.value, grpc.Call)
    assert dict(again.value.initial_metadata()).get("idempotent-replayed") == "true"
    assert served.checks() == checks

    accepted = served.payout("vop-close-accepted", "Mueller GmbH", accept=True)
    assert accepted.status == res.PAYOUT_STATUS_PROCESSING
    assert accepted.payee_verification == res.PayeeVerification(
        result=V.PAYEE_VERIFICATION_RESULT_CLOSE_MATCH, suggested_name="Müller GmbH", risk_accepted=True
    )
    assert served.paid(accepted.id).status == res.PAYOUT_STATUS_PAID


def test_no_match_is_refused_whatever_the_request_accepts(served: Served) -> None:
    submitted = served.submissions()
    for key, accept in (("vop-no-match", False), ("vop-no-match-accepted", True)):
        error = served.refused(key, "Schmidt AG", accept=accept)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_reason(error) == "PAYEE_NAME_MISMATCH"
        refused = served.get(error_info(error).metadata["payout_id"])
        assert refused.status == res.PAYOUT_STATUS_FAILED
        assert refused.payee_verification.result == V.PAYEE_VERIFICATION_RESULT_NO_MATCH
        assert refused.payee_verification.suggested_name == "", "a no match tells nothing about the holder"
        assert refused.payee_verification.risk_accepted is accept
    assert served.submissions() == submitted, "the bank never saw a transfer to Schmidt AG"


def test_an_account_the_bank_cannot_verify_needs_the_risk_accepted(served: Served) -> None:
    error = served.refused("vop-noap", "Anyone GmbH", iban=TEST_IBAN_VOP_NOAP)
    assert error_reason(error) == "PAYEE_VERIFICATION_UNAVAILABLE"
    assert served.get(error_info(error).metadata["payout_id"]).status == res.PAYOUT_STATUS_FAILED
    accepted = served.payout("vop-noap-accepted", "Anyone GmbH", iban=TEST_IBAN_VOP_NOAP, accept=True)
    assert accepted.payee_verification.result == V.PAYEE_VERIFICATION_RESULT_NOT_POSSIBLE
    assert accepted.payee_verification.risk_accepted
    assert served.paid(accepted.id).status == res.PAYOUT_STATUS_PAID


def test_no_answer_is_no_refusal_the_same_key_asks_again(served: Served) -> None:
    """A payee check that gets no answer leaves the payout PENDING and the key resumable (PSP_UNAVAILABLE),
    like a transfer whose answer is lost; the retry asks again and the payout goes out exactly once."""
    served.bank.inject("http_500", count=50, method="POST", path_prefix=CHECKS)
    submitted = served.submissions()
    try:
        error = served.refused("vop-unanswered", "Müller GmbH")
    finally:
        served.bank.clear_faults()
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error_reason(error) == "PSP_UNAVAILABLE"
    assert has_retry_info(error)
    assert served.submissions() == submitted, "no transfer without the bank's answer"
    payout = served.payout("vop-unanswered", "Müller GmbH")  # the client's retry (or the worker) resumes it
    assert payout.payee_verification.result == V.PAYEE_VERIFICATION_RESULT_MATCH
    assert served.paid(payout.id).status == res.PAYOUT_STATUS_PAID
    assert served.bank.executions_for(payout.psp_reference) == 1
