"""Guarantees across server processes, and the `payments` command as users run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import grpc
import pytest

from server.api.client import payment_stub
from tests.support.processes import REPO, SharedSandboxServers, free_port, run_cli, start_cli_server, wait_serving
from tests.support.requests import charge, error_reason


def test_storm_split_across_two_processes_makes_one_psp_call(database_url: str) -> None:
    servers = SharedSandboxServers(database_url, count=2)
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for port in servers.ports]
    try:
        stubs = [payment_stub(c) for c in channels]
        request = charge("cross-process-storm", amount=777)
        futures = [stubs[i % 2].Charge.future(request, timeout=30) for i in range(200)]
        succeeded = 0
        for future in futures:
            try:
                future.result()
                succeeded += 1
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.ABORTED
                assert error_reason(error) == "IDEMPOTENCY_KEY_IN_USE"
        assert succeeded >= 1
        assert servers.total_calls() == 1
    finally:
        for channel in channels:
            channel.close()
        servers.close()


def test_cli_charge_replay_and_reuse_then_sigterm(database_url: str) -> None:
    port = free_port()
    process = start_cli_server(database_url, port)
    try:
        wait_serving(f"127.0.0.1:{port}")
        args = ["charge", "--amount", "1250", "--currency", "EUR", "--payment-method", "pm_card_visa",
                "--idempotency-key", "k1"]  # fmt: skip
        first = run_cli(*args, port=port)
        assert first.returncode == 0, first.stderr
        payment = json.loads(first.stdout)
        assert payment["status"] == "PAYMENT_STATUS_SUCCEEDED"
        assert payment["amount"] == {"amount_minor": "1250", "currency": "EUR"}
        again = run_cli(*args, port=port)
        assert again.returncode == 0
        assert json.loads(again.stdout) == payment
        reused = run_cli(*[a if a != "1250" else "999" for a in args], port=port)
        assert reused.returncode == 1
        assert "FAILED_PRECONDITION" in reused.stderr
        assert "IDEMPOTENCY_KEY_REUSED" in reused.stderr
        got = run_cli("get", payment["id"], port=port)
        assert json.loads(got.stdout) == payment
        declined = run_cli("charge", "--amount", "500", "--currency", "EUR", "--payment-method",
                           "pm_card_visa_chargeDeclined", "--idempotency-key", "k2", port=port)  # fmt: skip
        declined_payment = json.loads(declined.stdout)
        assert declined_payment["status"] == "PAYMENT_STATUS_FAILED"
        assert declined_payment["failure"]["decline_code"] == "generic_decline"
        assert declined_payment["psp"] == "stripe", "with no configuration, charges go to the Stripe sandbox"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except Exception:
            process.kill()
            raise
    assert code == 0, process.stderr.read().decode() if process.stderr else ""


def test_cli_rejects_bad_input_readably(database_url: str) -> None:
    port = free_port()
    process = start_cli_server(database_url, port)
    try:
        wait_serving(f"127.0.0.1:{port}")
        bad = run_cli("charge", "--amount", "0", "--currency", "EUR", "--payment-method", "pm_card_visa",
                      "--idempotency-key", "x", port=port)  # fmt: skip
        assert bad.returncode == 1
        assert "INVALID_ARGUMENT" in bad.stderr
        assert "amount.amount_minor: must be positive" in bad.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1:notaport"])
def test_serve_refuses_bad_listen_address(database_url: str, listen: str) -> None:
    process = start_cli_server(database_url, 0, PAYMENTS_LISTEN=listen)
    assert process.wait(timeout=30) == 2
    assert process.stderr is not None
    assert b"PAYMENTS_LISTEN" in process.stderr.read()


def test_cli_sepa_payout_is_paid_within_ten_seconds(database_url: str) -> None:
    port = free_port()
    process = start_cli_server(database_url, port)
    try:
        wait_serving(f"127.0.0.1:{port}")
        created = run_cli(
            "payout", "--amount", "5000", "--currency", "EUR", "--iban", "DE89370400440532013000",
            "--name", "Müller GmbH", "--country", "DE", "--town", "Berlin", "--idempotency-key", "p1", port=port,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        payout = json.loads(created.stdout)
        assert payout["status"] == "PAYOUT_STATUS_PROCESSING"
        assert payout["psp"] == "bank"
        assert payout["sepa_account"]["iban"].endswith("3000")
        deadline = time.monotonic() + 10
        status = payout["status"]
        while status != "PAYOUT_STATUS_PAID" and time.monotonic() < deadline:
            time.sleep(0.25)
            status = json.loads(run_cli("get", payout["id"], port=port).stdout)["status"]
        assert status == "PAYOUT_STATUS_PAID"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_two_server_processes_share_one_port(database_url: str) -> None:
    port = free_port()
    environment = {**os.environ, "PAYMENTS_DATABASE_URL": database_url, "PAYMENTS_LISTEN": f"127.0.0.1:{port}"}
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--workers", "2"], cwd=REPO, env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_serving(f"127.0.0.1:{port}")
        for i in range(20):  # new connections are spread over both processes by the kernel
            assert run_cli("charge", "--amount", "1000", "--currency", "EUR", "--payment-method", "pm_card_visa",
                           "--idempotency-key", f"w{i}", port=port).returncode == 0  # fmt: skip
        children = _children_of(supervisor.pid)
        assert len(children) == 2, children
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0


def _children_of(pid: int) -> list[int]:
    import psutil

    return [child.pid for child in psutil.Process(pid).children() if "server.cli" in " ".join(child.cmdline())]


def test_serve_with_an_unreachable_database_says_so_in_one_line() -> None:
    port = free_port()
    url = f"postgresql://payments:not-a-real-secret@127.0.0.1:{free_port()}/payments"
    process = start_cli_server(url, port)
    assert process.wait(timeout=60) == 2
    assert process.stderr is not None
    lines = [line for line in process.stderr.read().decode().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: cannot reach the database at 127.0.0.1:"), lines
    assert "not-a-real-secret" not in lines[0]


def test_a_second_server_on_a_port_in_use_refuses_to_start(database_url: str) -> None:
    port = free_port()
    first = start_cli_server(database_url, port)
    try:
        wait_serving(f"127.0.0.1:{port}")
        second = start_cli_server(database_url, port)
        assert second.wait(timeout=60) == 2
        assert second.stderr is not None
        error = second.stderr.read().decode()
        assert f"cannot listen on 127.0.0.1:{port}" in error
        assert "Traceback" not in error
        created = run_cli("charge", "--amount", "1000", "--currency", "EUR", "--payment-method", "pm_card_visa",
                          "--idempotency-key", "still-one", port=port)  # fmt: skip
        assert created.returncode == 0, created.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0


def test_serve_refuses_a_publishable_stripe_key(database_url: str) -> None:
    """The Stripe adapter's own rule (adapters/stripe_psp.py), checked before anything starts."""
    process = start_cli_server(database_url, free_port(), PAYMENTS_STRIPE_API_KEY="pk_test_not_a_secret_key")
    assert process.wait(timeout=60) == 2
    assert process.stderr is not None
    assert b"secret or restricted key" in process.stderr.read()


def test_cli_list_refuses_an_unknown_status_readably() -> None:
    listed = run_cli("list", "--status", "bogus", port=free_port())
    assert listed.returncode == 2
    assert "invalid choice: 'bogus'" in listed.stderr
    assert "Traceback" not in listed.stderr


def test_cli_authorizes_captures_part_and_cancels(database_url: str) -> None:
    """`make serve`'s configuration (built-in Stripe sandbox): the commands users run."""
    port = free_port()
    process = start_cli_server(database_url, port)
    try:
        wait_serving(f"127.0.0.1:{port}")

        def authorized(key: str) -> dict[str, object]:
            created = run_cli("charge", "--amount", "2000", "--currency", "EUR", "--payment-method", "pm_card_visa",
                              "--capture-method", "manual", "--idempotency-key", key, port=port)  # fmt: skip
            assert created.returncode == 0, created.stderr
            payment: dict[str, object] = json.loads(created.stdout)
            assert payment["status"] == "PAYMENT_STATUS_REQUIRES_CAPTURE"
            return payment

        first = authorized("cli-auth-1")
        captured = run_cli("capture", "--payment-id", str(first["id"]), "--amount", "1500", "--idempotency-key",
                           "cli-cap-1", port=port)  # fmt: skip
        assert captured.returncode == 0, captured.stderr
        assert json.loads(captured.stdout)["amount_captured"] == {"amount_minor": "1500", "currency": "EUR"}
        second = authorized("cli-auth-2")
        canceled = run_cli("cancel", "--payment-id", str(second["id"]), "--reason", "duplicate", "--idempotency-key",
                           "cli-can-1", port=port)  # fmt: skip
        assert canceled.returncode == 0, canceled.stderr
        assert json.loads(canceled.stdout)["status"] == "PAYMENT_STATUS_CANCELED"
        refused = run_cli("capture", "--payment-id", str(second["id"]), "--idempotency-key", "cli-cap-2", port=port)
        assert refused.returncode == 1
        assert "PAYMENT_NOT_CAPTURABLE" in refused.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
