"""payments-client with transport security, against servers wired like the composition root wires them
(tests/support/secure.py): mutual TLS from PEM files, bearer tokens from a file or the environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from payments_client import (
    Credentials,
    CredentialsError,
    Money,
    PaymentsClient,
    RetryPolicy,
    Unauthenticated,
    Unavailable,
)
from server.config import Settings
from tests.support.postgres import PostgresForTests
from tests.support.secure import Pki, SecureServer, make_pki

EUR = Money(amount_minor=700, currency="EUR")
QUICK = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _server(postgres: PostgresForTests, pki: Pki, *, mutual: bool) -> SecureServer:
    return SecureServer(postgres.new_database(), Settings(
        listen="127.0.0.1:0", tls_cert=pki.trusted.server.cert, tls_key=pki.trusted.server.key,
        tls_client_ca=pki.trusted.ca.cert if mutual else None, auth_tokens_file=None if mutual else pki.tokens_file,
        worker=False,
    ))  # fmt: skip


@pytest.fixture(scope="module")
def mtls_server(postgres: PostgresForTests, pki: Pki) -> Iterator[SecureServer]:
    server = _server(postgres, pki, mutual=True)
    yield server
    server.close()


@pytest.fixture(scope="module")
def token_server(postgres: PostgresForTests, pki: Pki) -> Iterator[SecureServer]:
    server = _server(postgres, pki, mutual=False)
    yield server
    server.close()


def test_mutual_tls_from_files(mtls_server: SecureServer, pki: Pki) -> None:
    client_a = pki.trusted.clients["client-a"]
    credentials = Credentials.from_files(ca=pki.trusted.ca.cert, cert=client_a.cert, key=client_a.key)
    assert "PRIVATE" not in repr(credentials)
    with PaymentsClient(mtls_server.target, credentials=credentials, timeout=10, retry=QUICK) as client:
        charged = client.charge(EUR, "pm_card_visa")
        assert client.get_payment(charged.resource.id) == charged.resource
    without_certificate = Credentials.from_files(ca=pki.trusted.ca.cert)
    with (
        PaymentsClient(mtls_server.target, credentials=without_certificate, timeout=10, retry=QUICK) as client,
        pytest.raises(Unavailable) as refused,
    ):
        client.list_payments()
    assert refused.value.attempts == QUICK.max_attempts, "a failed handshake looks like an outage: retried, bounded"


def test_tokens_from_a_file_and_the_environment(token_server: SecureServer, pki: Pki, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(pki.tokens["client-b"] + "\n")
    by_file = Credentials.from_files(ca=pki.trusted.ca.cert, token_file=token_file)
    assert pki.tokens["client-b"] not in repr(by_file)
    by_env = Credentials.from_env(
        {"PAYMENTS_TLS_CA": str(pki.trusted.ca.cert), "PAYMENTS_TOKEN": pki.tokens["client-a"]}
    )
    with (
        PaymentsClient(token_server.target, credentials=by_file, timeout=10) as b,
        PaymentsClient(token_server.target, credentials=by_env, timeout=10) as a,
    ):
        charged = b.charge(EUR, "pm_card_visa")
        assert [p.id for p in b.list_payments().payments] == [charged.resource.id]
        assert a.list_payments().payments == [], "each client sees only its own resources"
    wrong = Credentials.from_files(ca=pki.trusted.ca.cert, token="pst_" + "w" * 43)
    with (
        PaymentsClient(token_server.target, credentials=wrong, timeout=10) as client,
        pytest.raises(Unauthenticated) as refused,
    ):
        client.list_payments()
    assert refused.value.reason == "CREDENTIALS_INVALID"
    assert refused.value.attempts == 1, "never retried"


def test_unusable_files_are_refused_without_their_content(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(CredentialsError, match=r"CA certificate .* cannot be read"):
        Credentials.from_files(ca=tmp_path / "missing.pem")
    with pytest.raises(CredentialsError, match="together"):
        Credentials.from_files(cert=pki.trusted.clients["client-a"].cert)
    key_as_cert = pki.trusted.clients["client-a"].key
    with pytest.raises(CredentialsError, match="not a PEM file with a BEGIN CERTIFICATE block") as refused:
        Credentials.from_files(ca=key_as_cert)
    assert "PRIVATE KEY-----\n" not in str(refused.value)
