"""Transport security and caller authentication over real gRPC (docs/contract.md, Security): mutual TLS, bearer
tokens, tenant isolation, the loopback-only plaintext rule, the CLI's TLS options, and secrets that never
reach a log. Certificates are made in the test (`server.security.devcerts`)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api.client import PaymentStub
from server.config import Settings
from server.logs import JsonFormatter
from tests.support.postgres import PostgresForTests
from tests.support.processes import REPO, free_port
from tests.support.requests import charge, error_reason, rpc_error, sepa_payout
from tests.support.secure import Pki, SecureServer, bearer, client_credentials, make_pki

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_settings(pki: Pki, *, mutual: bool = False, tokens: bool = False) -> Settings:
    return Settings(
        listen="127.0.0.1:0",
        tls_cert=pki.trusted.server.cert,
        tls_key=pki.trusted.server.key,
        tls_client_ca=pki.trusted.ca.cert if mutual else None,
        auth_tokens_file=pki.tokens_file if tokens else None,
        worker=False,
    )


@pytest.fixture(scope="module")
def mtls_server(postgres: PostgresForTests, pki: Pki) -> Iterator[SecureServer]:
    server = SecureServer(postgres.new_database(), tls_settings(pki, mutual=True))
    yield server
    server.close()


@pytest.fixture(scope="module")
def token_server(postgres: PostgresForTests, pki: Pki) -> Iterator[SecureServer]:
    server = SecureServer(postgres.new_database(), tls_settings(pki, tokens=True))
    yield server
    server.close()


def as_client(pki: Pki, client_id: str) -> grpc.ChannelCredentials:
    return client_credentials(pki.trusted, pki.trusted.clients[client_id])


def key() -> str:
    return f"k-{uuid.uuid4().hex}"


def call_error(stub: PaymentStub, rpc: str, request: object, **kwargs: object) -> grpc.RpcError:
    return rpc_error(lambda: getattr(stub, rpc)(request, timeout=10, **kwargs))


# ------------------------------------------------------------------------------------------ mutual TLS


def test_mtls_client_with_a_valid_certificate_is_served(mtls_server: SecureServer, pki: Pki) -> None:
    stub = mtls_server.stub(as_client(pki, "client-a"))
    payment = stub.Charge(charge(key()), timeout=10).payment
    assert payment.status == res.PAYMENT_STATUS_SUCCEEDED
    assert stub.GetPayment(svc.GetPaymentRequest(id=payment.id), timeout=10).payment == payment


@pytest.mark.parametrize("case", ["no client certificate", "certificate from another CA", "plaintext"])
def test_mtls_handshake_fails_without_a_trusted_client_certificate(
    mtls_server: SecureServer, pki: Pki, case: str
) -> None:
    credentials = {
        "no client certificate": client_credentials(pki.trusted),
        "certificate from another CA": grpc.ssl_channel_credentials(
            root_certificates=pki.trusted.ca.cert.read_bytes(),
            private_key=pki.rogue.clients["client-a"].key.read_bytes(),
            certificate_chain=pki.rogue.clients["client-a"].cert.read_bytes(),
        ),
        "plaintext": None,
    }[case]
    stub = mtls_server.stub(credentials)
    error = rpc_error(lambda: stub.Charge(charge(key()), timeout=10))
    assert error.code() == grpc.StatusCode.UNAVAILABLE, case
    assert mtls_server.health(as_client(pki, "client-a")) == SERVING, "the server keeps serving"


def test_client_refuses_a_server_it_does_not_trust(mtls_server: SecureServer, pki: Pki) -> None:
    rogue_view = client_credentials(pki.rogue, pki.rogue.clients["client-a"])  # trusts only the rogue CA
    error = rpc_error(lambda: mtls_server.stub(rogue_view).ListPayments(svc.ListPaymentsRequest(), timeout=10))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


# ------------------------------------------------------------------------------------------------ tokens


def test_token_client_is_served(token_server: SecureServer, pki: Pki) -> None:
    stub = token_server.stub(client_credentials(pki.trusted))
    payment = stub.Charge(charge(key()), metadata=bearer(pki.tokens["client-a"]), timeout=10).payment
    assert payment.status == res.PAYMENT_STATUS_SUCCEEDED
    lowercase = (("authorization", f"bearer {pki.tokens['client-a']}"),)
    assert stub.GetPayment(svc.GetPaymentRequest(id=payment.id), metadata=lowercase, timeout=10).payment == payment


@pytest.mark.parametrize(
    ("case", "metadata", "reason"),
    [
        ("missing", (), "CREDENTIALS_MISSING"),
        ("wrong token", bearer("pst_" + "x" * 43), "CREDENTIALS_INVALID"),
        ("not bearer", (("authorization", "Basic Y2xpZW50LWE6c2VjcmV0"),), "CREDENTIALS_INVALID"),
        ("empty bearer", (("authorization", "Bearer "),), "CREDENTIALS_INVALID"),
        ("hash instead of token", None, "CREDENTIALS_INVALID"),
        ("two headers", None, "CREDENTIALS_INVALID"),
    ],
)
def test_missing_or_bad_token_is_unauthenticated(
    token_server: SecureServer, pki: Pki, case: str, metadata: tuple[tuple[str, str], ...] | None, reason: str
) -> None:
    if case == "hash instead of token":
        metadata = bearer(json.loads(pki.tokens_file.read_text())["client-a"])
    elif case == "two headers":
        metadata = (*bearer(pki.tokens["client-a"]), *bearer(pki.tokens["client-b"]))
    stub = token_server.stub(client_credentials(pki.trusted))
    calls = token_server.sandbox.total_calls()
    for rpc, request in [("Charge", charge(key())), ("ListPayments", svc.ListPaymentsRequest())]:
        error = call_error(stub, rpc, request, metadata=metadata)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, case
        assert error_reason(error) == reason
        for token in pki.tokens.values():
            assert token not in (error.details() or "")
    assert token_server.sandbox.total_calls() == calls, "nothing reached the PSP"


def test_health_and_reflection_stay_open(token_server: SecureServer, pki: Pki) -> None:
    channel = token_server.channel(client_credentials(pki.trusted))
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == SERVING
    answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    names = {s.name for answer in answers for s in answer.list_services_response.service}
    assert "payments.v1.PaymentService" in names


def test_certificate_and_token_must_name_the_same_client(postgres: PostgresForTests, pki: Pki) -> None:
    server = SecureServer(postgres.new_database(), tls_settings(pki, mutual=True, tokens=True))
    try:
        stub = server.stub(as_client(pki, "client-a"))
        assert stub.Charge(charge(key()), metadata=bearer(pki.tokens["client-a"]), timeout=10).payment.id
        assert stub.Charge(charge(key()), timeout=10).payment.id, "the certificate alone identifies the caller"
        error = rpc_error(lambda: stub.Charge(charge(key()), metadata=bearer(pki.tokens["client-b"]), timeout=10))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_reason(error) == "CREDENTIALS_INVALID"
    finally:
        server.close()


# ------------------------------------------------------------------------------------------- tenancy


def _assert_isolated(a: PaymentStub, b: PaymentStub, meta_a: tuple[tuple[str, str], ...] = (),
                     meta_b: tuple[tuple[str, str], ...] = ()) -> None:  # fmt: skip
    payment = a.Charge(charge(key(), amount=900), metadata=meta_a, timeout=10).payment
    refund = a.Refund(svc.RefundRequest(idempotency_key=key(), payment_id=payment.id, amount=res.Money(
        amount_minor=100, currency="EUR")), metadata=meta_a, timeout=10).refund  # fmt: skip
    payout = a.Payout(sepa_payout(key()), metadata=meta_a, timeout=10).payout
    for rpc, request in [
        ("GetPayment", svc.GetPaymentRequest(id=payment.id)),
        ("GetRefund", svc.GetRefundRequest(id=refund.id)),
        ("GetPayout", svc.GetPayoutRequest(id=payout.id)),
        ("Refund", svc.RefundRequest(idempotency_key=key(), payment_id=payment.id)),
    ]:
        error = call_error(b, rpc, request, metadata=meta_b)
        assert error.code() == grpc.StatusCode.NOT_FOUND, rpc
    listed = b.ListPayments(svc.ListPaymentsRequest(page_size=100), metadata=meta_b, timeout=10).payments
    assert payment.id not in {p.id for p in listed}
    mine = a.ListPayments(svc.ListPaymentsRequest(page_size=100), metadata=meta_a, timeout=10).payments
    assert payment.id in {p.id for p in mine}
    after = a.GetPayment(svc.GetPaymentRequest(id=payment.id), metadata=meta_a, timeout=10).payment
    assert after.amount_refunded.amount_minor == 100, "B's refund attempt touched nothing"


def test_certificate_clients_cannot_see_each_others_resources(mtls_server: SecureServer, pki: Pki) -> None:
    _assert_isolated(mtls_server.stub(as_client(pki, "client-a")), mtls_server.stub(as_client(pki, "client-b")))


def test_token_clients_cannot_see_each_others_resources(token_server: SecureServer, pki: Pki) -> None:
    stub = token_server.stub(client_credentials(pki.trusted))
    _assert_isolated(stub, stub, bearer(pki.tokens["client-a"]), bearer(pki.tokens["client-b"]))


def test_same_idempotency_key_from_two_clients_makes_two_payments(mtls_server: SecureServer, pki: Pki) -> None:
    a = mtls_server.stub(as_client(pki, "client-a"))
    b = mtls_server.stub(as_client(pki, "client-b"))
    shared = key()
    calls = mtls_server.sandbox.total_calls()
    mine = a.Charge(charge(shared, amount=1000), timeout=10).payment
    theirs = b.Charge(charge(shared, amount=2000), timeout=10).payment  # another request: no KEY_REUSED
    assert mine.id != theirs.id
    assert (mine.amount.amount_minor, theirs.amount.amount_minor) == (1000, 2000)
    assert mtls_server.sandbox.total_calls() == calls + 2, "each client's charge executed once at the PSP"
    assert a.Charge(charge(shared, amount=1000), timeout=10).payment == mine, "each replays its own"
    assert b.Charge(charge(shared, amount=2000), timeout=10).payment == theirs
    assert mtls_server.sandbox.total_calls() == calls + 2


# ---------------------------------------------------------------------------------- listeners (processes)


def _env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYMENTS_")}
    return {**env, **overrides}


def _serve(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("listen", ["0.0.0.0", "[::]", "192.0.2.10", "payments.internal"])
def test_plaintext_on_a_non_loopback_address_refuses_to_start(listen: str) -> None:
    result = _serve("--listen", f"{listen}:{free_port()}", env=_env())
    assert result.returncode == 2, result.stderr
    assert "refusing to listen" in result.stderr
    assert "without TLS" in result.stderr
    assert "PAYMENTS_TLS_CERT" in result.stderr
    assert "--insecure-listen" in result.stderr


def test_tls_without_authentication_on_a_non_loopback_address_refuses_to_start(pki: Pki) -> None:
    env = _env(PAYMENTS_TLS_CERT=str(pki.trusted.server.cert), PAYMENTS_TLS_KEY=str(pki.trusted.server.key))
    result = _serve("--listen", f"0.0.0.0:{free_port()}", env=env)
    assert result.returncode == 2
    assert "without caller authentication" in result.stderr


def test_unreadable_or_malformed_key_refuses_to_start_without_echoing_it(pki: Pki, tmp_path: Path) -> None:
    not_a_key = tmp_path / "server.key"
    not_a_key.write_text("SECRET-MATERIAL-4f1c9e not a PEM key\n")
    env = _env(PAYMENTS_TLS_CERT=str(pki.trusted.server.cert), PAYMENTS_TLS_KEY=str(not_a_key))
    result = _serve(env=env)
    assert result.returncode == 2
    assert "PAYMENTS_TLS_KEY" in result.stderr
    assert "SECRET-MATERIAL" not in result.stderr + result.stdout
    missing = _serve(env=_env(PAYMENTS_AUTH_TOKENS_FILE=str(tmp_path / "nope.json")))
    assert missing.returncode == 2
    assert "PAYMENTS_AUTH_TOKENS_FILE" in missing.stderr


def test_insecure_listen_override_starts_on_all_interfaces(database_url: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--listen", f"0.0.0.0:{port}", "--insecure-listen"],
        cwd=REPO, env=_env(PAYMENTS_DATABASE_URL=database_url, PAYMENTS_WORKER="off"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert _wait_for(lambda: _health(f"127.0.0.1:{port}", None)), "the overridden listener serves"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert "plaintext on a non-loopback address" in stderr


def _health(target: str, credentials: grpc.ChannelCredentials | None) -> bool:
    try:
        channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
        with channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            return bool(answer.status == SERVING)
    except grpc.RpcError:
        return False


def _wait_for(check: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


# ------------------------------------------------------------------------------------------------- CLI


def cli(
    *args: str, port: int, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args, *(["--target", f"127.0.0.1:{port}"] if port else [])],
        cwd=REPO, env=env or _env(), capture_output=True, text=True, timeout=60, check=False, input=stdin,
    )  # fmt: skip


def test_cli_speaks_mutual_tls(mtls_server: SecureServer, pki: Pki) -> None:
    client = pki.trusted.clients["client-a"]
    tls = ["--ca", str(pki.trusted.ca.cert), "--cert", str(client.cert), "--key", str(client.key)]
    charged = cli("charge", "--amount", "700", "--currency", "EUR", "--payment-method", "pm_card_visa",
                  "--idempotency-key", key(), *tls, port=mtls_server.port)  # fmt: skip
    assert charged.returncode == 0, charged.stderr
    payment = json.loads(charged.stdout)
    got = cli("get", payment["id"], port=mtls_server.port, env=_env(
        PAYMENTS_TLS_CA=str(pki.trusted.ca.cert), PAYMENTS_CLIENT_CERT=str(client.cert),
        PAYMENTS_CLIENT_KEY=str(client.key)))  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == payment
    refused = cli("list", "--ca", str(pki.trusted.ca.cert), port=mtls_server.port)
    assert refused.returncode == 1
    assert "UNAVAILABLE" in refused.stderr


def test_cli_sends_tokens(token_server: SecureServer, pki: Pki, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(pki.tokens["client-b"] + "\n")
    ca = ["--ca", str(pki.trusted.ca.cert)]
    by_env = cli("list", *ca, port=token_server.port, env=_env(PAYMENTS_TOKEN=pki.tokens["client-a"]))
    assert by_env.returncode == 0, by_env.stderr
    by_file = cli("list", *ca, "--token-file", str(token_file), port=token_server.port)
    assert by_file.returncode == 0, by_file.stderr
    wrong = "pst_" + "w" * 43
    refused = cli("list", *ca, "--token", wrong, port=token_server.port)
    assert refused.returncode == 1
    assert "UNAUTHENTICATED CREDENTIALS_INVALID" in refused.stderr
    assert wrong not in refused.stderr + refused.stdout
    missing = cli("list", *ca, port=token_server.port)
    assert "UNAUTHENTICATED CREDENTIALS_MISSING" in missing.stderr


def test_hash_token_and_dev_certs_commands(tmp_path: Path) -> None:
    generated = cli("hash-token", "--generate", "--client-id", "client-z", port=0)
    assert generated.returncode == 0, generated.stderr
    token, entry = generated.stdout.splitlines()
    from server.security.auth import TokenTable

    assert TokenTable.parse(entry).lookup(token) == "client-z"
    hashed = cli("hash-token", port=0, stdin=token + "\n")
    assert hashed.stdout.strip() == json.loads(entry)["client-z"]
    assert token not in hashed.stdout + hashed.stderr, "the helper never prints a token it was given"
    short = cli("hash-token", port=0, stdin="hunter2\n")
    assert short.returncode == 2
    assert "hunter2" not in short.stderr + short.stdout

    made = cli("dev-certs", str(tmp_path / "certs"), "--client-id", "svc-orders", port=0)
    assert made.returncode == 0, made.stderr
    for name in ("ca.key", "server.key", "clients/svc-orders.key"):
        assert (tmp_path / "certs" / name).stat().st_mode & 0o077 == 0, f"{name} is readable by others"
    assert "PRIVATE KEY" not in made.stdout + made.stderr
    again = cli("dev-certs", str(tmp_path / "certs"), port=0)
    assert again.returncode == 2
    assert "--force" in again.stderr


# ------------------------------------------------------------------------------------------------ logs


def _leaks(text: str, pki: Pki) -> list[str]:
    found = [secret[:12] + "…" for secret in pki.secrets() if secret in text]
    if "PRIVATE KEY" in text:
        found.append("a PEM private key marker")
    return found


def _exercise(server: SecureServer, pki: Pki) -> None:
    """Good calls, bad tokens, failed handshakes, oversized metadata and garbage, all with secrets around."""
    good = server.stub(as_client(pki, "client-a"))
    good.Charge(charge(key()), metadata=bearer(pki.tokens["client-a"]), timeout=10)
    for metadata in [bearer(pki.tokens["client-b"]), bearer(pki.tokens["client-a"][:-1]), (("authorization", "x"),)]:
        call_error(good, "ListPayments", svc.ListPaymentsRequest(), metadata=metadata)
    huge = ((("authorization", "Bearer " + pki.tokens["client-a"] * 400)),)
    rpc_error(lambda: good.ListPayments(svc.ListPaymentsRequest(), metadata=huge, timeout=10))
    raw = server.channel(as_client(pki, "client-a")).unary_unary(
        "/payments.v1.PaymentService/Charge", request_serializer=None, response_deserializer=None
    )
    rpc_error(lambda: raw(b"\xff\xfe garbage", metadata=bearer(pki.tokens["client-a"]), timeout=10))
    rpc_error(lambda: server.stub(client_credentials(pki.trusted)).ListPayments(svc.ListPaymentsRequest(), timeout=5))
    rogue = client_credentials(pki.rogue, pki.rogue.clients["client-a"])
    rpc_error(lambda: server.stub(rogue).ListPayments(svc.ListPaymentsRequest(), timeout=5))


def test_secrets_never_reach_the_logs(postgres: PostgresForTests, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = SecureServer(postgres.new_database(), tls_settings(pki, mutual=True, tokens=True))
    try:
        _exercise(server, pki)
    finally:
        server.close()
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(record) + repr(record.__dict__) for record in caplog.records)
    assert "call refused" in text, "the capture saw the server's logs"
    assert _leaks(text, pki) == []


def _wait_tls_or_plaintext(target: str, credentials: grpc.ChannelCredentials) -> str | None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _health(target, credentials):
            return "tls"
        if _health(target, None):
            return "plaintext"
        time.sleep(0.2)
    return None


def test_secrets_never_reach_a_server_process_stderr(database_url: str, pki: Pki) -> None:
    port = free_port()
    client = pki.trusted.clients["client-a"]
    env = _env(
        PAYMENTS_DATABASE_URL=database_url, PAYMENTS_LISTEN=f"127.0.0.1:{port}", PAYMENTS_WORKER="off",
        PAYMENTS_TLS_CERT=str(pki.trusted.server.cert), PAYMENTS_TLS_KEY=str(pki.trusted.server.key),
        PAYMENTS_TLS_CLIENT_CA=str(pki.trusted.ca.cert), PAYMENTS_AUTH_TOKENS_FILE=str(pki.tokens_file),
    )  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    outputs: list[str] = []
    try:
        mode = _wait_tls_or_plaintext(f"127.0.0.1:{port}", as_client(pki, "client-a"))
        assert mode == "tls", "the server did not come up"
        tls = ["--ca", str(pki.trusted.ca.cert), "--cert", str(client.cert), "--key", str(client.key)]
        with_token = _env(PAYMENTS_TOKEN=pki.tokens["client-a"])
        ok = cli("charge", "--amount", "100", "--currency", "EUR", "--payment-method", "pm_card_visa",
                 "--idempotency-key", key(), *tls, port=port, env=with_token)  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        for token in (pki.tokens["client-b"], pki.tokens["client-a"][::-1]):
            refused = cli("list", *tls, "--token", token, port=port)
            assert refused.returncode == 1
            outputs += [refused.stdout, refused.stderr]
        no_cert = cli("list", "--ca", str(pki.trusted.ca.cert), "--token", pki.tokens["client-a"], port=port)
        assert no_cert.returncode == 1
        outputs += [ok.stderr, no_cert.stdout, no_cert.stderr]
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    outputs += [stdout, stderr]
    assert '"auth": "client-certificate+token"' in stderr or "client-certificate+token" in stderr + stdout
    assert _leaks("\n".join(outputs), pki) == []
