"""The offline bank gateway over real HTTP (loopback, httpx): statuses, scripts, idempotency, faults."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

import httpx
import pytest
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from adapters.bank.camt import parse_camt
from adapters.bank.errors import DocumentError
from adapters.bank.pain001 import CreditTransfer, DebtorAccount, build_pain001, derive_message_ids
from adapters.bank.pain002 import TransactionStatus, parse_pain002
from adapters.bank.statements import BankStatementFeed
from adapters.sandboxes.bank_sandbox import (
    DUPLICATE_REASON_CODE,
    FAULT_KINDS,
    RETURN_REASON_CODE,
    TEST_IBAN_AC01,
    TEST_IBAN_AC04,
    TEST_IBAN_ACCEPT,
    TEST_IBAN_AM04,
    TEST_IBAN_RETURNED,
    BankSandbox,
)
from server.domain.bank_statements import BankDocument, Direction, ReportKind

DEBTOR = DebtorAccount(name="Payments GmbH", iban="DE32370400449900000001", bic="COBADEFFXXX")
AUTH = {"Authorization": "Bearer sandbox-token"}
STEP = 1.0
"""Fixture step delay: long enough that real time never moves a status; tests use advance_clock."""


@pytest.fixture
def sandbox() -> Iterator[BankSandbox]:
    with BankSandbox(step_delay=STEP, stall_seconds=1.0) as running:
        yield running


@pytest.fixture
def client(sandbox: BankSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, headers=AUTH, timeout=2.0) as http:
        yield http


def payment_file(
    iban: str = TEST_IBAN_ACCEPT, *, amount_minor: int = 2_500, instant: bool = False
) -> tuple[bytes, str]:
    """A fresh pain.001 for a new payout; returns (body, end_to_end_id)."""
    payout_id = "po_" + uuid.uuid4().hex
    ids = derive_message_ids(payout_id)
    transfer = CreditTransfer(
        payout_id=payout_id,
        amount_minor=amount_minor,
        currency="EUR",
        creditor_name="Händler Öztürk",
        creditor_iban=iban,
        creditor_bic=None,
        creditor_country="DE",
        creditor_town="Köln",
        creditor_street="Domplatz 1",
        creditor_postcode="50667",
        remittance="Payout " + payout_id[3:11],
        instant=instant,
        msg_id=ids.msg_id,
        pmt_inf_id=ids.pmt_inf_id,
        end_to_end_id=ids.end_to_end_id,
        requested_execution_date=date(2026, 3, 2),
    )
    return build_pain001(transfer, DEBTOR, created_at=datetime(2026, 3, 1, tzinfo=UTC)), ids.end_to_end_id


def submit(
    client: httpx.Client,
    body: bytes,
    key: str | None = None,
    *,
    timeout: float | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {"Idempotency-Key": key or uuid.uuid4().hex, "Content-Type": "application/xml", **(headers or {})}
    if timeout is None:
        return client.post("/v1/payment-files", content=body, headers=sent)
    return client.post("/v1/payment-files", content=body, headers=sent, timeout=timeout)


def status_of(client: httpx.Client, end_to_end_id: str) -> TransactionStatus:
    response = client.get(f"/v1/payment-status/{end_to_end_id}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/xml"
    entry = parse_pain002(response.content).status_for(end_to_end_id)
    assert entry is not None
    return entry


def observed_statuses(client: httpx.Client, end_to_end_id: str, final: str, limit: float = 1.5) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status = status_of(client, end_to_end_id).status
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == final:
            return seen
        time.sleep(0.01)
    raise AssertionError(f"never reached {final}: {seen}")


# ---------------------------------------------------------------------------------- happy path


def test_accepted_file_progresses_actc_accp_acsc(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, e2e = payment_file()
    response = submit(client, body)
    assert response.status_code == 202
    payload = response.json()
    assert payload["file_id"].startswith("bf_")
    assert payload["transactions"] == [{"end_to_end_id": e2e, "status": "ACTC", "reason_code": None}]
    assert status_of(client, e2e).status == "ACTC"
    sandbox.advance_clock(STEP)
    assert status_of(client, e2e).status == "ACCP"
    sandbox.advance_clock(STEP)
    assert status_of(client, e2e).status == "ACSC"
    sandbox.advance_clock(STEP * 10)
    assert status_of(client, e2e).status == "ACSC"  # final
    assert sandbox.executions_for(e2e) == 1
    assert sandbox.executions() == 1


def test_statuses_progress_in_real_time_with_a_short_step_delay(sandbox: BankSandbox, client: httpx.Client) -> None:
    sandbox.set_step_delay(0.1)
    body, e2e = payment_file()
    submit(client, body)
    seen = observed_statuses(client, e2e, "ACSC")
    # in order and ending settled; a step may be missed only if this machine stalls for 100 ms
    assert seen in (["ACTC", "ACCP", "ACSC"], ["ACTC", "ACSC"], ["ACCP", "ACSC"], ["ACSC"])


def test_status_report_echoes_the_original_transaction(client: httpx.Client) -> None:
    body, e2e = payment_file(amount_minor=1)
    file_id = submit(client, body).json()["file_id"]
    report = parse_pain002(client.get(f"/v1/payment-status/{e2e}").content)
    assert report.original_msg_id == "M-" + e2e[2:]
    entry = report.transactions[0]
    assert entry.amount_minor == 1
    assert entry.currency == "EUR"
    assert entry.original_pmt_inf_id == "P-" + e2e[2:]
    assert entry.account_servicer_reference == file_id
    assert entry.requested_execution_date == date(2026, 3, 2)


def test_instant_settles_in_one_step(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, e2e = payment_file(instant=True)
    assert submit(client, body).status_code == 202
    assert status_of(client, e2e).status == "ACTC"
    sandbox.advance_clock(STEP * 1.01)
    assert status_of(client, e2e).status == "ACSC"


def test_file_status_endpoints(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, e2e = payment_file()
    file_id = submit(client, body).json()["file_id"]
    sandbox.advance_clock(10)
    report = parse_pain002(client.get(f"/v1/payment-files/{file_id}/status").content)
    assert [(t.end_to_end_id, t.status) for t in report.transactions] == [(e2e, "ACSC")]
    summary = client.get(f"/v1/payment-files/{file_id}").json()
    assert summary["transactions"][0]["status"] == "ACSC"
    assert client.get("/v1/payment-files/bf_unknown/status").status_code == 404
    assert client.get("/v1/payment-status/E-unknown").status_code == 404


# ----------------------------------------------------------------------------- scripted outcomes


@pytest.mark.parametrize(
    ("iban", "reason", "steps_to_reject"),
    [(TEST_IBAN_AC01, "AC01", 1), (TEST_IBAN_AC04, "AC04", 1), (TEST_IBAN_AM04, "AM04", 2)],
)
def test_scripted_rejections(
    sandbox: BankSandbox, client: httpx.Client, iban: str, reason: str, steps_to_reject: int
) -> None:
    body, e2e = payment_file(iban)
    assert submit(client, body).json()["transactions"][0]["status"] == "ACTC"
    sandbox.advance_clock(STEP * (steps_to_reject - 1) + STEP / 2)
    assert status_of(client, e2e).status != "RJCT"
    sandbox.advance_clock(STEP)
    entry = status_of(client, e2e)
    assert (entry.status, entry.reason_code) == ("RJCT", reason)
    assert entry.additional_info
    assert entry.outcome == "failed"
    assert sandbox.executions_for(e2e) == 1  # the bank did attempt it


def notifications(client: httpx.Client, after: int = 0) -> list[BankDocument]:
    listing = client.get("/v1/notifications", params={"after": str(after)})
    assert listing.status_code == 200
    return [parse_camt(client.get(f"/v1/notifications/{item['seq']}").content) for item in listing.json()["documents"]]


def test_return_after_settlement_comes_as_a_camt054_not_a_status(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, e2e = payment_file(TEST_IBAN_RETURNED)
    submit(client, body)
    sandbox.advance_clock(STEP * 2.5)
    assert status_of(client, e2e).status == "ACSC"
    assert notifications(client) == []
    sandbox.advance_clock(STEP)
    assert status_of(client, e2e).status == "ACSC"  # a status report never says "returned"
    (document,) = notifications(client)
    assert document.message == "camt.054.001.08"
    (entry,) = document.reports[0].entries
    assert (entry.end_to_end_id, entry.return_reason, entry.direction) == (e2e, RETURN_REASON_CODE, Direction.CREDIT)
    assert entry.booked
    assert entry.amount_minor == 2_500
    assert notifications(client, after=1) == []


@pytest.mark.parametrize("iban", [TEST_IBAN_ACCEPT, TEST_IBAN_AC01, TEST_IBAN_AC04, TEST_IBAN_AM04, TEST_IBAN_RETURNED])
def test_test_ibans_have_valid_checksums(iban: str) -> None:
    from adapters.bank.accounts import validate_iban

    assert validate_iban(iban) == iban


# ------------------------------------------------------------------------- validation and dedupe


def test_schema_invalid_file_is_400_with_the_schema_error(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, _ = payment_file()
    broken = body.replace(b"<ChrgBr>SLEV</ChrgBr>", b"<ChrgBr>WHAT</ChrgBr>")
    response = submit(client, broken, key="k-invalid")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "schema_invalid"
    assert "ChrgBr" in error["message"]
    assert sandbox.executions() == 0
    # a schema failure is not stored under the key: the corrected file may reuse it
    assert submit(client, body, key="k-invalid").status_code == 202


def test_schema_error_never_shows_a_full_iban(client: httpx.Client) -> None:
    body, _ = payment_file()
    broken = body.replace(TEST_IBAN_ACCEPT.encode(), TEST_IBAN_ACCEPT.lower().encode())
    response = submit(client, broken)
    assert response.status_code == 400
    assert TEST_IBAN_ACCEPT.lower() not in response.text
    assert "DE****3000" in response.text


def test_not_xml_is_400(client: httpx.Client) -> None:
    response = submit(client, b"{}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "schema_invalid"


def test_control_totals_must_match(client: httpx.Client) -> None:
    body, _ = payment_file(amount_minor=2_500)
    tampered = body.replace(b"<GrpHdr><MsgId>", b"<GrpHdr><MsgId>", 1).replace(
        b"<CtrlSum>25.00</CtrlSum>", b"<CtrlSum>26.00</CtrlSum>", 1
    )
    response = submit(client, tampered)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "control_totals_mismatch"


def test_duplicate_end_to_end_id_is_rejected_and_executed_once(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, e2e = payment_file()
    first = submit(client, body, key="first")
    second = submit(client, body, key="second")  # a blind resend under a new key
    assert first.json()["transactions"][0]["status"] == "ACTC"
    assert second.status_code == 202
    assert second.json()["transactions"] == [
        {"end_to_end_id": e2e, "status": "RJCT", "reason_code": DUPLICATE_REASON_CODE}
    ]
    second_file = second.json()["file_id"]
    duplicate_report = parse_pain002(client.get(f"/v1/payment-files/{second_file}/status").content)
    assert duplicate_report.transactions[0].is_duplicate_rejection
    sandbox.advance_clock(10)
    assert status_of(client, e2e).status == "ACSC"  # the original is not shadowed by the duplicate
    assert sandbox.executions_for(e2e) == 1
    assert sandbox.counters().duplicates_rejected == 1
    assert sandbox.executions_for_key("first") == 1
    assert sandbox.executions_for_key("second") == 0


def test_concurrent_resends_execute_once(sandbox: BankSandbox) -> None:
    body, e2e = payment_file()

    clients = [httpx.Client(base_url=sandbox.url, headers=AUTH, timeout=2.0) for _ in range(8)]

    def send(index: int) -> int:
        return submit(clients[index % 8], body, key=f"storm-{index % 4}").status_code

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(pool.map(send, range(24)))
    finally:
        for http in clients:
            http.close()
    assert codes == [202] * 24
    assert sandbox.executions() == 1
    assert sandbox.executions_for(e2e) == 1


def test_sepa_business_rules_reject_on_arrival(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, e2e = payment_file()
    non_eur = body.replace(b'Ccy="EUR"', b'Ccy="USD"')
    response = submit(client, non_eur)
    rejected = {"end_to_end_id": e2e, "status": "RJCT", "reason_code": "AM03"}
    assert response.json()["transactions"][0] == rejected
    entry = status_of(client, e2e)
    assert (entry.status, entry.reason_code) == ("RJCT", "AM03")
    assert sandbox.executions() == 0
    # the id was never accepted, so the corrected file goes through
    assert submit(client, body).json()["transactions"][0]["status"] == "ACTC"
    assert sandbox.executions_for(e2e) == 1


def test_bad_iban_checksum_is_ac01_on_arrival(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, _ = payment_file()
    response = submit(client, body.replace(TEST_IBAN_ACCEPT.encode(), b"DE00370400440532013000"))
    assert response.json()["transactions"][0]["reason_code"] == "AC01"
    assert sandbox.executions() == 0


# ---------------------------------------------------------------------------------- idempotency


def test_idempotent_replay_returns_the_same_bytes(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, e2e = payment_file()
    first = submit(client, body, key="replay-me")
    sandbox.advance_clock(10)
    again = submit(client, body, key="replay-me")
    assert again.status_code == first.status_code == 202
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert sandbox.executions_for(e2e) == 1
    assert sandbox.counters().replays == 1


def test_same_key_different_body_is_refused(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, _ = payment_file()
    other, other_e2e = payment_file()
    submit(client, body, key="reused")
    response = submit(client, other, key="reused")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert sandbox.executions_for(other_e2e) == 0


def test_auth_and_idempotency_key_are_required(sandbox: BankSandbox) -> None:
    body, _ = payment_file()
    with httpx.Client(base_url=sandbox.url, timeout=2.0) as anonymous:
        response = anonymous.post("/v1/payment-files", content=body, headers={"Idempotency-Key": "k"})
        assert response.status_code == 401
        basic = {"Authorization": "Basic eDp5"}
        assert anonymous.get("/v1/payment-status/E-1", headers=basic).status_code == 401
    with httpx.Client(base_url=sandbox.url, headers=AUTH, timeout=2.0) as http:
        response = http.post("/v1/payment-files", content=body)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "idempotency_key_missing"
    assert sandbox.executions() == 0


# ------------------------------------------------------------------------------------------ faults


def test_drop_after_work_then_retry_with_same_key_executes_once(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, e2e = payment_file()
    sandbox.inject("drop_after_work")
    with pytest.raises(httpx.TransportError):
        submit(client, body, key="dropped")
    assert sandbox.executions_for(e2e) == 1  # the work happened, the answer was lost
    retry = submit(client, body, key="dropped")
    assert retry.status_code == 202
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert sandbox.executions_for(e2e) == 1
    assert sandbox.executions() == 1
    faults = [(record.fault, record.status, record.replayed) for record in sandbox.requests()]
    assert faults == [("drop_after_work", 202, False), (None, 202, True)]


def test_http_500_does_no_work(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, e2e = payment_file()
    sandbox.inject("http_500")
    response = submit(client, body, key="k500")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert sandbox.executions() == 0
    assert submit(client, body, key="k500").status_code == 202  # the key was not consumed
    assert sandbox.executions_for(e2e) == 1


def test_http_429_carries_retry_after(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, _ = payment_file()
    sandbox.inject("http_429", retry_after=3)
    response = submit(client, body)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert sandbox.executions() == 0


def test_stall_outlives_the_client_timeout_and_does_no_work(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, e2e = payment_file()
    sandbox.set_stall_seconds(10.0)
    sandbox.inject("stall")
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        submit(client, body, key="slow", timeout=1.0)
    assert time.monotonic() - started < 5.0  # the client's timeout, not the 10 s stall
    assert sandbox.executions() == 0
    assert submit(client, body, key="slow").status_code == 202
    assert sandbox.executions_for(e2e) == 1


def test_reset_aborts_without_work(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, _ = payment_file()
    sandbox.inject("reset")
    with pytest.raises(httpx.TransportError):
        submit(client, body)
    assert sandbox.executions() == 0
    assert sandbox.requests()[0].fault == "reset"
    assert sandbox.requests()[0].status is None


def test_faults_can_target_method_and_path(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, e2e = payment_file()
    sandbox.inject("http_500", count=2, method="GET", path_prefix="/v1/payment-status/")
    assert submit(client, body).status_code == 202  # POST is not targeted
    assert client.get(f"/v1/payment-status/{e2e}").status_code == 500
    assert client.get(f"/v1/payment-status/{e2e}").status_code == 500
    assert client.get(f"/v1/payment-status/{e2e}").status_code == 200


def test_every_fault_kind_is_known() -> None:
    assert set(FAULT_KINDS) == {"http_500", "http_429", "stall", "reset", "drop_after_work"}
    with BankSandbox() as box, pytest.raises(ValueError, match="unknown fault kind"):
        box.inject("explode")  # type: ignore[arg-type]


def _fault_sequence(seed: int) -> list[int]:
    with BankSandbox() as box, httpx.Client(base_url=box.url, headers=AUTH, timeout=2.0) as http:
        box.set_fault_rate(0.5, {"http_500": 1, "http_429": 1}, seed=seed)
        return [http.get("/v1/payment-status/E-none").status_code for _ in range(20)]


def test_probabilistic_faults_are_reproducible_with_a_seed() -> None:
    first = _fault_sequence(7)
    assert first == _fault_sequence(7)
    assert set(first) == {404, 500, 429}


def test_fault_rate_one_faults_everything_and_zero_turns_it_off(sandbox: BankSandbox, client: httpx.Client) -> None:
    sandbox.set_fault_rate(1.0, {"http_500": 1})
    assert client.get("/v1/payment-status/E-x").status_code == 500
    sandbox.set_fault_rate(0.0)
    assert client.get("/v1/payment-status/E-x").status_code == 404


# ------------------------------------------------------------------------ observation and control


def test_request_log_keeps_headers_but_not_the_token(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, _ = payment_file()
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with suppress_http_instrumentation():  # when tracing is on, httpx would replace our traceparent
        submit(client, body, key="logged", headers={"traceparent": traceparent})
    (record,) = sandbox.requests()
    assert record.method == "POST"
    assert record.path == "/v1/payment-files"
    assert record.idempotency_key == "logged"
    assert record.headers["traceparent"] == traceparent
    assert record.headers["authorization"] == "Bearer ***"
    assert record.status == 202
    assert not record.replayed
    assert record.fault is None


def test_control_api_over_http(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, e2e = payment_file()
    assert client.post("/_sandbox/faults", json={"kind": "http_429", "retry_after": 2}).status_code == 200
    assert submit(client, body).status_code == 429
    assert client.post("/_sandbox/step-delay", json={"seconds": 60}).status_code == 200
    assert submit(client, body, key="ctl").status_code == 202
    assert status_of(client, e2e).status == "ACTC"
    assert client.post("/_sandbox/clock/advance", json={"seconds": 120}).status_code == 200
    assert status_of(client, e2e).status == "ACSC"
    counters = client.get("/_sandbox/counters").json()
    assert counters["total"] == 1
    assert counters["by_end_to_end_id"] == {e2e: 1}
    assert counters["by_idempotency_key"] == {"ctl": 1}
    log = client.get("/_sandbox/requests").json()
    assert [entry["status"] for entry in log] == [429, 202, 200, 200]
    assert log[0]["fault"] == "http_429"
    assert client.post("/_sandbox/fault-rate", json={"rate": 1, "mix": {"http_500": 1}}).status_code == 200
    assert client.get("/v1/payment-status/E-x").status_code == 500
    assert client.request("DELETE", "/_sandbox/faults").status_code == 200
    assert client.get("/v1/payment-status/E-x").status_code == 404
    assert client.post("/_sandbox/faults", json={"kind": "nope"}).status_code == 400
    assert client.post("/_sandbox/reset").status_code == 200
    assert client.get("/_sandbox/counters").json()["total"] == 0
    assert client.get("/_sandbox/requests").json() == []
    assert sandbox.executions() == 0


def test_python_reset_forgets_everything(sandbox: BankSandbox, client: httpx.Client) -> None:
    body, e2e = payment_file()
    submit(client, body, key="before-reset")
    sandbox.inject("http_500", count=5)
    sandbox.reset()
    assert sandbox.executions() == 0
    assert sandbox.requests() == []
    assert submit(client, body, key="before-reset").status_code == 202  # faults and keys are gone
    assert sandbox.executions_for(e2e) == 1


def test_zero_step_delay_is_final_immediately(sandbox: BankSandbox, client: httpx.Client) -> None:
    sandbox.set_step_delay(0)
    body, e2e = payment_file(TEST_IBAN_RETURNED)
    submit(client, body)
    assert sandbox.status_of(e2e) == "ACSC"
    assert [doc.reports[0].entries[0].return_reason for doc in notifications(client)] == [RETURN_REASON_CODE]


def test_stop_is_prompt_with_idle_keep_alive_connections() -> None:
    box = BankSandbox().start()
    with httpx.Client(base_url=box.url, headers=AUTH, timeout=2.0) as http:
        assert http.get("/v1/payment-status/E-x").status_code == 404
        started = time.monotonic()
        box.stop()
        assert time.monotonic() - started < 10.0  # not the 30 s keep-alive timeout of the idle connection
    box.stop()  # idempotent


def test_latency_holds_submissions_and_status_reports() -> None:
    latency = 0.3
    with (
        BankSandbox(step_delay=STEP, latency_seconds=latency) as slow,
        httpx.Client(base_url=slow.url, headers=AUTH, timeout=5.0) as http,
    ):
        body, e2e = payment_file()
        started = time.monotonic()
        assert submit(http, body).status_code == 202
        assert time.monotonic() - started >= latency
        started = time.monotonic()
        assert status_of(http, e2e).status == "ACTC"  # (real time moves it on after a step: 1 s)
        assert time.monotonic() - started >= latency
        with ThreadPoolExecutor(max_workers=8) as pool:
            started = time.monotonic()
            reports = list(pool.map(lambda _: httpx.get(f"{slow.url}/v1/payment-status/{e2e}", headers=AUTH), range(8)))
            elapsed = time.monotonic() - started
        assert [report.status_code for report in reports] == [200] * 8
        assert elapsed < 4 * latency  # held at once, not one after the other
        slow.set_latency(0)
        started = time.monotonic()
        status_of(http, e2e)
        assert time.monotonic() - started < latency
        assert http.post("/_sandbox/latency", json={"seconds": latency}).status_code == 200
        started = time.monotonic()
        status_of(http, e2e)
        assert time.monotonic() - started >= latency


async def test_the_bank_writes_the_versions_it_is_configured_for_and_a_feed_reads_only_its_own(
    sandbox: BankSandbox,
) -> None:
    sandbox.set_step_delay(0)
    sandbox.set_message_versions(statement="camt.053.001.02", notification="camt.054.001.02")
    with httpx.Client(base_url=sandbox.url, headers=AUTH, timeout=2.0) as client:
        body, e2e = payment_file(TEST_IBAN_RETURNED)
        submit(client, body)
    sandbox.book_foreign("NOT-OURS-1", 990)
    assert sandbox.close_day() == 1
    async with httpx.AsyncClient() as http:
        legacy = BankStatementFeed(sandbox.url, "t", accepted=("camt.053.001.02", "camt.054.001.02"), http=http)
        modern = BankStatementFeed(sandbox.url, "t", accepted=("camt.053.001.08", "camt.054.001.08"), http=http)
        ((seq, data),) = await legacy.documents_after(ReportKind.STATEMENT, 0)
        statement = legacy.read(data)
        assert (seq, statement.message) == (1, "camt.053.001.02")
        entries = {(e.end_to_end_id, e.direction, e.return_reason) for e in statement.reports[0].entries}
        assert entries == {
            (e2e, Direction.DEBIT, None),
            (e2e, Direction.CREDIT, RETURN_REASON_CODE),
            ("NOT-OURS-1", Direction.DEBIT, None),
        }
        ((_, notice),) = await legacy.documents_after(ReportKind.NOTIFICATION, 0)
        assert legacy.read(notice).message == "camt.054.001.02"
        with pytest.raises(DocumentError, match="not accepted"):
            modern.read(data)
        assert await legacy.documents_after(ReportKind.STATEMENT, 1) == []
