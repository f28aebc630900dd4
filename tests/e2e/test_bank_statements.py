"""Bank statements through `payments serve`: a SEPA payout is PAID by its pain.002 and then confirmed by
the day's camt.053; a return comes as a camt.054 and makes the payout RETURNED with its reason; a
booking we never initiated and a payout the bank "lost" are reported by `payments bank reconcile`; and
`payments bank import` takes the files a bank delivers by EBICS or SFTP.

One server for the module (its worker fetches statements every 0.2 s from a bank sandbox the test
drives); the CLI runs as finance runs it, against the same database."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from adapters.sandboxes.bank_sandbox import TEST_IBAN_RETURNED, BankSandbox
from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api.client import PaymentStub, payment_stub
from server.domain.business_days import add_business_days
from tests.support.chaos import ServeProcess, client_channel
from tests.support.postgres import PostgresForTests
from tests.support.processes import REPO
from tests.support.requests import sepa_payout

SAMPLES = Path(__file__).parents[1] / "unit" / "bank_samples"


@dataclass
class Served:
    stub: PaymentStub
    bank: BankSandbox
    database_url: str
    server: ServeProcess

    def get(self, payout_id: str) -> res.Payout:
        payout: res.Payout = self.stub.GetPayout(svc.GetPayoutRequest(id=payout_id), timeout=5).payout
        return payout

    def wait_for(self, payout_id: str, done: Callable[[res.Payout], bool], timeout: float = 20.0) -> res.Payout:
        deadline = time.monotonic() + timeout
        payout = self.get(payout_id)
        while not done(payout) and time.monotonic() < deadline:
            time.sleep(0.05)
            payout = self.get(payout_id)
        return payout

    def query(self, sql: str, *args: Any) -> list[Any]:
        async def run() -> list[Any]:
            conn = await asyncpg.connect(self.database_url)
            try:
                return list(await conn.fetch(sql, *args))
            finally:
                await conn.close()

        return asyncio.run(run())

    def until_rows(self, sql: str, *args: Any, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        rows = self.query(sql, *args)
        while not rows and time.monotonic() < deadline:
            time.sleep(0.1)
            rows = self.query(sql, *args)
        return rows

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PAYMENTS_DATABASE_URL": self.database_url}
        return subprocess.run(
            [sys.executable, "-m", "server.cli", "bank", *args], cwd=REPO, env=env, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip


@pytest.fixture(scope="module")
def served(postgres: PostgresForTests, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    database_url = postgres.new_database()
    with BankSandbox(step_delay=0.1) as bank:
        server = ServeProcess(
            database_url, tmp_path_factory.mktemp("statements") / "serve.log",
            env={"PAYMENTS_BANK_API_BASE": bank.url, "PAYMENTS_BANK_API_TOKEN": "statement-test",
                 "PAYMENTS_BANK_STATEMENT_FETCH_SECONDS": "0.2"},
        )  # fmt: skip
        server.start()
        try:
            with client_channel(server.target) as channel:
                yield Served(payment_stub(channel), bank, database_url, server)
        finally:
            server.close()
        assert server.error_lines() == []


def paid(payout: res.Payout) -> bool:
    return payout.status == res.PAYOUT_STATUS_PAID


def test_a_paid_payout_is_confirmed_by_the_days_camt053(served: Served) -> None:
    payout = served.stub.Payout(sepa_payout("stmt-paid", amount=4_321), timeout=10).payout
    assert served.wait_for(payout.id, paid).status == res.PAYOUT_STATUS_PAID
    served.bank.close_day()
    booked_on = datetime.now(UTC).date()
    (entry,) = served.until_rows(
        "SELECT e.kind, e.outcome, e.booking_date, r.kind AS report FROM bank_entries e JOIN bank_reports r"
        " ON r.id = e.report WHERE e.end_to_end_id = $1", payout.psp_reference,
    )  # fmt: skip
    assert (entry["kind"], entry["outcome"], entry["booking_date"], entry["report"]) == (
        "booking", "PAID", booked_on, "camt.053",
    )  # fmt: skip
    (facts,) = served.query("SELECT psp_data->>'booked_on' AS booked_on FROM payouts WHERE psp_reference = $1",
                            payout.psp_reference)  # fmt: skip
    assert facts["booked_on"] == booked_on.isoformat()
    assert served.get(payout.id).status == res.PAYOUT_STATUS_PAID


def test_a_returned_iban_comes_back_returned_through_camt054(served: Served) -> None:
    served.bank.set_step_delay(5.0)  # the sandbox clock, moved by hand: PAID first, then the return
    try:
        payout = served.stub.Payout(sepa_payout("stmt-return", iban=TEST_IBAN_RETURNED), timeout=10).payout
        served.bank.advance_clock(10.5)  # ACTC → ACCP → ACSC
        assert served.wait_for(payout.id, paid).status == res.PAYOUT_STATUS_PAID
        served.bank.advance_clock(5.0)  # one step later the creditor's bank sends it back
        final = served.wait_for(payout.id, lambda p: p.status == res.PAYOUT_STATUS_RETURNED)
    finally:
        served.bank.set_step_delay(0.1)
    assert final.status == res.PAYOUT_STATUS_RETURNED
    assert (final.failure.code, final.failure.decline_code) == ("AC04", "AC04")
    assert final.failure.message == "Closed account number"
    (event,) = served.query(
        "SELECT from_status, actor FROM resource_events WHERE to_status = 'RETURNED' AND resource_id ="
        " (SELECT id FROM payouts WHERE psp_reference = $1)", payout.psp_reference,
    )  # fmt: skip
    assert (event["from_status"], event["actor"]) == ("PAID", "bank:statement")
    assert served.bank.status_of(payout.psp_reference) == "ACSC"  # no status ever said "returned"
    (notice,) = served.query(
        "SELECT r.kind, e.return_reason FROM bank_entries e JOIN bank_reports r ON r.id = e.report"
        " WHERE e.end_to_end_id = $1 AND e.kind = 'return'", payout.psp_reference,
    )  # fmt: skip
    assert (notice["kind"], notice["return_reason"]) == ("camt.054", "AC04")


def test_a_foreign_booking_and_a_lost_payout_are_reported(served: Served) -> None:
    served.bank.set_step_delay(60.0)  # hold the next payout before settlement, so it can be lost first
    lost = served.stub.Payout(sepa_payout("stmt-lost", amount=777), timeout=10).payout
    served.bank.lose(lost.psp_reference)
    served.bank.set_step_delay(0.1)
    assert served.wait_for(lost.id, paid).status == res.PAYOUT_STATUS_PAID  # the pain.002 says ACSC
    served.bank.book_foreign("NOT-OURS-E2E-1", 4_200)
    served.bank.close_day()
    served.until_rows("SELECT 1 FROM bank_discrepancies WHERE kind = 'unknown_entry'")

    later = add_business_days(datetime.now(UTC).date(), 3)  # past the 2-day grace
    answer = served.cli("reconcile", "--date", later.isoformat(), "--json")
    assert answer.returncode == 0, answer.stderr
    report = json.loads(answer.stdout)
    found = {(d["kind"], d["end_to_end_id"], d["payout_id"]) for d in report["discrepancies"]}
    assert ("unknown_entry", "NOT-OURS-E2E-1", None) in found
    assert ("unbooked_payout", lost.psp_reference, lost.id) in found
    assert len(found) == 2  # the confirmed and the returned payout are in order
    assert report["bookings"] == 0  # nothing was booked on that later day

    table = served.cli("reconcile", "--date", later.isoformat())
    assert table.returncode == 0, table.stderr
    assert "open discrepancies: 2" in table.stdout
    assert lost.id in table.stdout
    assert "unknown_entry" in table.stdout


def test_bank_import_takes_delivered_files_once_and_refuses_bad_ones(served: Served, tmp_path: Path) -> None:
    first = served.cli("import", str(SAMPLES / "camt.053.001.02.xml"), str(SAMPLES / "camt.054.001.08.xml"))
    assert first.returncode == 0, first.stderr
    summaries = [json.loads(line) for line in first.stdout.splitlines()]
    assert [(s["message"], s["reports_imported"]) for s in summaries] == [
        ("camt.053.001.02", 1),
        ("camt.054.001.08", 1),
    ]
    assert summaries[0]["entries"] == {"unknown_entry": 3, "ignored": 2}  # none of those payouts is ours

    again = served.cli("import", str(SAMPLES / "camt.053.001.02.xml"))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["reports_already_imported"] == 1

    broken = tmp_path / "broken.xml"
    broken.write_bytes((SAMPLES / "camt.053.001.08.xml").read_bytes().replace(b"<Cd>BOOK</Cd>", b"<Cd></Cd>", 1))
    reports_before = served.query("SELECT count(*) AS n FROM bank_reports")[0]["n"]
    refused = served.cli("import", str(broken))
    assert refused.returncode == 1
    assert "refused, nothing of it applied" in refused.stderr
    assert "schema validation failed" in refused.stderr
    assert served.query("SELECT count(*) AS n FROM bank_reports")[0]["n"] == reports_before
