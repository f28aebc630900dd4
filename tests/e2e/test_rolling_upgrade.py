"""A rolling upgrade under load: the previous release serves, this release's migrations run beneath it,
this release starts beside it, the previous one stops. No call fails: the callers use the client library
(payments_client, balanced over both addresses), and its retries on the same key absorb the old server
going away. Every operation executes once at the PSP.

The previous release is the commit in previous_release.toml, taken from this repository's history
(`git archive`) and run from its own source tree with this one's virtualenv: the same way its replicas
would still be running while the new ones start. The database starts empty, so the previous release
creates its own schema, as it did in production.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import subprocess
import sys
import tarfile
import threading
import tomllib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from adapters.sandboxes.stripe_objects import CREATE_PAYMENT_INTENT, CREATE_REFUND, CREATE_TRANSFER
from adapters.sandboxes.stripe_sandbox import StripeSandbox
from payments.v1 import resources_pb2 as res
from payments_client import Money, PaymentsClient, Result, balanced
from server.domain.idempotency import Operation, psp_idempotency_key
from storage.migrator import migration_files
from tests.support.chaos import FAST_RECONNECT, ServeProcess, in_progress, rows_by_key, wait_for
from tests.support.postgres import PostgresForTests
from tests.support.processes import REPO

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")]

PREVIOUS = tomllib.loads((REPO / "previous_release.toml").read_text())
CALLERS = 12
PER_PHASE = 120  # operations answered in each phase: old alone, migrated, both serving, new alone
KINDS: dict[str, tuple[str, str, Operation, str, set[int]]] = {
    "charge": ("payments", "payment", Operation.CHARGE, CREATE_PAYMENT_INTENT, {res.PAYMENT_STATUS_SUCCEEDED}),
    "refund": ("refunds", "refund", Operation.REFUND, CREATE_REFUND, {res.REFUND_STATUS_SUCCEEDED}),
    "payout": ("payouts", "payout", Operation.PAYOUT, CREATE_TRANSFER, {res.PAYOUT_STATUS_PAID}),
}


def previous_release(into: Path) -> Path:
    """The previous release's source tree, from git history."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", PREVIOUS["commit"]], capture_output=True, check=False
    )
    if archive.returncode != 0:
        pytest.fail(f"previous release {PREVIOUS['commit']} not in this clone's history: {archive.stderr.decode()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


async def _schema_version(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT max(version) FROM schema_migrations"))
    finally:
        await conn.close()


def test_the_previous_release_hands_over_to_this_one_under_load(postgres: PostgresForTests, tmp_path: Path) -> None:
    old_code = previous_release(tmp_path / "previous")
    url = postgres.empty_database()
    sandbox = StripeSandbox().start()
    settings = {
        "PAYMENTS_STRIPE_API_BASE": sandbox.url, "PAYMENTS_STRIPE_API_KEY": "sk_test_upgrade",
        "PAYMENTS_SHUTDOWN_GRACE_SECONDS": "10",
    }  # fmt: skip
    old = ServeProcess(url, tmp_path / "previous.log", env=settings, code=old_code)
    new = ServeProcess(url, tmp_path / "this.log", env=settings)
    addresses = ",".join(server.target for server in (old, new))
    client = PaymentsClient(f"ipv4:{addresses}", options=[*FAST_RECONNECT, *balanced()], timeout=60)
    numbers = itertools.count()
    paid: list[str] = []
    answers: dict[str, tuple[str, str]] = {}  # key -> (kind, resource id)
    retried: Counter[str] = Counter()  # attempts beyond the first, per kind: what the library absorbed
    failures: list[BaseException] = []
    stop = threading.Event()
    lock = threading.Lock()

    def plan(n: int) -> tuple[str, str, Callable[[], Result[Any]]]:
        with lock:
            payment = paid[n % len(paid)] if paid else None
        if n % 5 == 3 and payment is not None:
            key = f"up-refund-{n}"
            ten = Money(amount_minor=10, currency="EUR")
            return "refund", key, lambda: client.refund(payment, ten, idempotency_key=key)
        if n % 5 == 4:
            key = f"up-payout-{n}"
            amount = Money(amount_minor=3000 + n, currency="EUR")
            return (
                "payout",
                key,
                lambda: client.payout(
                    amount, stripe_account_id=f"acct_upgrade{n % 7}", reference="Upgrade payout", idempotency_key=key
                ),
            )
        key = f"up-charge-{n}"
        amount = Money(amount_minor=1000 + n, currency="EUR")
        return "charge", key, lambda: client.charge(amount, "pm_card_visa", idempotency_key=key)

    def send(kind: str, key: str, call: Callable[[], Result[Any]]) -> None:
        result = call()
        assert result.resource.status in KINDS[kind][4], f"{key}: {result.resource}"
        with lock:
            retried[kind] += result.attempts - 1
            answers[key] = (kind, result.resource.id)
            if kind == "charge":
                paid.append(result.resource.id)

    def caller() -> None:
        while not stop.is_set() and not failures:
            try:
                send(*plan(next(numbers)))
            except BaseException as exc:  # recorded; the test fails after cleaning up
                with lock:
                    failures.append(exc)
                return

    def answered_more(than: int) -> Callable[[], bool]:
        return lambda: len(answers) >= than + PER_PHASE or bool(failures)

    pool = ThreadPoolExecutor(CALLERS, thread_name_prefix="upgrade-caller")
    try:
        old.start()
        previous_schema = asyncio.run(_schema_version(url))
        futures = [pool.submit(caller) for _ in range(CALLERS)]
        assert wait_for(answered_more(0), timeout=120)
        # This release's migrations, while the previous release serves.
        migrated = subprocess.run(
            [sys.executable, "-m", "server.cli", "migrate"], cwd=REPO, env={**os.environ, "PAYMENTS_DATABASE_URL": url},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        assert wait_for(answered_more(len(answers)), timeout=120)
        new.start()
        assert wait_for(answered_more(len(answers)), timeout=120)
        old_exit = old.terminate()
        assert wait_for(answered_more(len(answers)), timeout=120)
        stop.set()
        for future in futures:
            future.result()
        assert not failures, failures[0]
        assert wait_for(lambda: sum(in_progress(url).values()) == 0, timeout=30, interval=0.2), in_progress(url)
        new_exit = new.terminate()
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        client.close()
        old.close()
        new.close()
        sandbox.stop()

    executed = Counter((r.operation, r.idempotency_key) for r in sandbox.requests() if r.executed and r.operation)
    kinds = Counter(kind for kind, _ in answers.values())
    print(f"\nrolling upgrade {PREVIOUS['commit'][:7]} (schema {previous_schema}) -> this tree: {len(answers)}"
          f" operations {dict(kinds)}; attempts the client library retried: {dict(retried)}")  # fmt: skip
    assert previous_schema == PREVIOUS["last_migration"]
    assert asyncio.run(_schema_version(url)) == migration_files()[-1][0]
    assert old_exit == 0, old.log_tail()
    assert new_exit == 0, new.log_tail()
    assert len(answers) >= 4 * PER_PHASE
    assert min(kinds.values()) > 20
    for kind, (table, _, operation, psp_call, _) in KINDS.items():
        held = rows_by_key(url, table)
        given = {key: rid for key, (k, rid) in answers.items() if k == kind}
        assert {key: held[key].id for key in given} == given, f"{table}: every answer is what PostgreSQL holds"
        for key in given:
            assert executed[(psp_call, psp_idempotency_key("default", key, operation))] == 1, f"{key}: PSP executions"
    assert old.error_lines() == [], old.log_tail()
    assert new.error_lines() == [], new.log_tail()
