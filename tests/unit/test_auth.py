"""Caller authentication and the listener rules, without a network: tokens and their file, identities
from certificates, the Authenticator's decisions, TLS file checks, configuration and the CLI helper."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from server import cli
from server.api.errors import error_status
from server.api.servicer import SingleClient
from server.config import ConfigError, Settings
from server.security.auth import (
    MIN_TOKEN_LENGTH,
    Authenticator,
    CredentialsInvalid,
    CredentialsMissing,
    TokenFile,
    TokenTable,
    bearer_token,
    certificate_identity,
    generate_token,
    hash_token,
    token_problem,
)
from server.security.devcerts import DevCertError, generate_dev_certs
from server.security.setup import build_identifier, check_startup, server_credentials
from server.security.tls import (
    InsecureListen,
    is_loopback,
    listen_problem,
    load_server_credentials,
    plaintext_listen_allowed,
)

TOKEN_A = generate_token()
TOKEN_B = generate_token()
TABLE = TokenTable.parse(json.dumps({"client-a": hash_token(TOKEN_A), "client-b": [hash_token(TOKEN_B)]}))

AuthContext = Mapping[str, Iterable[bytes]]


def cert_context(*, uri: str = "", dns: str = "", cn: str = "client-cn") -> AuthContext:
    context: dict[str, list[bytes]] = {
        "transport_security_type": [b"ssl"],
        "x509_pem_cert": [b"-----BEGIN CERTIFICATE-----..."],
        "x509_common_name": [cn.encode()] if cn else [],
    }
    if uri:
        context["peer_uri"] = [uri.encode()]
    if dns:
        context["peer_dns"] = [dns.encode()]
    return context


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


# ---------------------------------------------------------------------------------------------- tokens


def test_generated_tokens_are_long_random_and_acceptable() -> None:
    tokens = {generate_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert token.startswith("pst_")
        assert len(token) >= 40
        assert token_problem(token) is None


def test_hash_is_sha256_hex_and_never_the_token() -> None:
    hashed = hash_token(TOKEN_A)
    assert hashed.startswith("sha256:")
    assert len(hashed) == len("sha256:") + 64
    assert TOKEN_A not in hashed
    assert hash_token(TOKEN_A) == hashed


@pytest.mark.parametrize("token", ["", "short", "x" * (MIN_TOKEN_LENGTH - 1), "has space " * 8, "é" * 40, "x" * 513])
def test_weak_or_unsendable_tokens_are_refused_without_echo(token: str) -> None:
    problem = token_problem(token)
    assert problem is not None
    assert token.strip() == "" or token not in problem


def test_lookup_finds_the_owner_and_nothing_else() -> None:
    assert TABLE.lookup(TOKEN_A) == "client-a"
    assert TABLE.lookup(TOKEN_B) == "client-b"
    assert TABLE.lookup(TOKEN_A[:-1]) is None
    assert TABLE.lookup(TOKEN_A + "x") is None
    assert TABLE.lookup("") is None
    assert TABLE.lookup("x" * 10_000) is None
    assert TABLE.lookup(hash_token(TOKEN_A)) is None, "the stored hash is not a credential"


def test_several_hashes_per_client_allow_rotation() -> None:
    old, new = generate_token(), generate_token()
    table = TokenTable.parse(json.dumps({"client-a": [hash_token(old), hash_token(new)]}))
    assert table.lookup(old) == table.lookup(new) == "client-a"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ('{"client-a": "sha256:abc"', "not valid JSON"),
        ('["sha256:00"]', "must be a JSON object"),
        ('{"client a": "sha256:' + "0" * 64 + '"}', "client ids must match"),
        ('{"client-a": "plain-secret-token-value"}', "not sha256:<64 lower-case hex digits>"),
        ('{"client-a": "sha256:' + "A" * 64 + '"}', "not sha256"),
        ('{"client-a": []}', "has no token hash"),
        ('{"client-a": "sha256:' + "0" * 64 + '", "client-b": "sha256:' + "0" * 64 + '"}', "share a token"),
    ],
)
def test_bad_tokens_files_are_refused_with_a_clear_message(document: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        TokenTable.parse(document)
    assert "plain-secret-token-value" not in str(caught.value), "file content is never echoed"


def test_tokens_file_is_reloaded_when_it_changes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"client-a": hash_token(TOKEN_A)}))
    now = [0.0]
    tokens = TokenFile(path, check_seconds=5.0, clock=lambda: now[0])
    assert tokens.table().lookup(TOKEN_A) == "client-a"

    path.write_text(json.dumps({"client-b": hash_token(TOKEN_B)}))  # rotate: A revoked, B added
    now[0] = 1.0
    assert tokens.table().lookup(TOKEN_A) == "client-a", "checked at most every 5 s"
    now[0] = 6.0
    assert tokens.table().lookup(TOKEN_A) is None
    assert tokens.table().lookup(TOKEN_B) == "client-b"

    path.write_text('{"client-c": "leaked-secret-in-a-broken-file"')
    now[0] = 12.0
    with caplog.at_level(logging.ERROR):
        assert tokens.table().lookup(TOKEN_B) == "client-b", "a broken change leaves the last good table"
    assert "tokens file change ignored" in caplog.text
    assert "leaked-secret" not in caplog.text


def test_missing_tokens_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PAYMENTS_AUTH_TOKENS_FILE"):
        TokenFile(tmp_path / "absent.json")


# -------------------------------------------------------------------------------------- authorization


@pytest.mark.parametrize(
    ("values", "expected"),
    [([], None), (["Bearer abc"], "abc"), (["bearer  abc "], "abc"), (["BEARER abc"], "abc"), ([b"Bearer abc"], "abc")],
)
def test_bearer_token_parsing(values: list[str | bytes], expected: str | None) -> None:
    assert bearer_token(values) == expected


@pytest.mark.parametrize("values", [["Basic abc"], ["Bearer"], ["Bearer "], ["abc"], ["Bearer a", "Bearer b"]])
def test_malformed_authorization_is_invalid(values: list[str | bytes]) -> None:
    with pytest.raises(CredentialsInvalid):
        bearer_token(values)


def test_token_authenticator_decisions() -> None:
    auth = Authenticator(tokens=TABLE)
    assert auth.identify(bearer(TOKEN_A), {}) == "client-a"
    assert auth.identify([("x-other", "1"), *bearer(TOKEN_B)], {}) == "client-b"
    with pytest.raises(CredentialsMissing) as missing:
        auth.identify([], {})
    assert missing.value.reason == "CREDENTIALS_MISSING"
    with pytest.raises(CredentialsInvalid) as wrong:
        auth.identify(bearer(TOKEN_A[::-1]), {})
    assert wrong.value.reason == "CREDENTIALS_INVALID"
    assert TOKEN_A[::-1] not in wrong.value.message
    with pytest.raises(CredentialsMissing):  # certificates count only when mutual TLS is configured
        auth.identify([], cert_context(dns="client-a"))


def test_unauthenticated_maps_to_grpc_unauthenticated_with_error_info() -> None:
    from google.rpc import code_pb2, error_details_pb2

    status = error_status(CredentialsInvalid("the bearer token is not valid"))
    assert status.code == code_pb2.UNAUTHENTICATED
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "CREDENTIALS_INVALID"
    assert info.domain


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (cert_context(uri="spiffe://payments.local/orders", dns="orders.internal", cn="orders"),
         "spiffe://payments.local/orders"),
        (cert_context(dns="orders.internal", cn="orders"), "orders.internal"),
        (cert_context(cn="orders"), "orders"),
        (cert_context(cn=""), None),
        (cert_context(cn="bad id with spaces"), None),
        (cert_context(cn="x" * 300), None),
        ({"transport_security_type": [b"insecure"], "x509_common_name": [b"orders"]}, None),
        ({"transport_security_type": [b"ssl"], "x509_common_name": [b"orders"]}, None),  # no verified certificate
        ({**cert_context(), "x509_common_name": [b"\xff\xfe"]}, None),
    ],
)  # fmt: skip
def test_certificate_identity(context: AuthContext, expected: str | None) -> None:
    assert certificate_identity(context) == expected


def test_certificate_authenticator_decisions() -> None:
    auth = Authenticator(client_certificates=True)
    assert auth.identify([], cert_context(dns="client-a")) == "client-a"
    assert auth.identify(bearer("ignored without a tokens file"), cert_context(dns="client-a")) == "client-a"
    with pytest.raises(CredentialsInvalid, match="no usable client id"):
        auth.identify([], cert_context(cn="spaces are not allowed"))
    with pytest.raises(CredentialsMissing):
        auth.identify([], {"transport_security_type": [b"insecure"]})


def test_certificate_and_token_together() -> None:
    auth = Authenticator(tokens=TABLE, client_certificates=True)
    assert auth.identify(bearer(TOKEN_A), cert_context(dns="client-a")) == "client-a"
    assert auth.identify([], cert_context(dns="client-a")) == "client-a"
    with pytest.raises(CredentialsInvalid, match="different clients"):
        auth.identify(bearer(TOKEN_B), cert_context(dns="client-a"))
    with pytest.raises(CredentialsInvalid):  # a bad token is never ignored, even with a good certificate
        auth.identify(bearer("pst_" + "0" * 43), cert_context(dns="client-a"))


def test_an_authenticator_needs_a_credential_source() -> None:
    with pytest.raises(ValueError, match="SingleClient"):
        Authenticator()


# -------------------------------------------------------------------------------------------- listeners


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("localhost", True), ("LOCALHOST", True),
        ("::ffff:127.0.0.1", True), ("0.0.0.0", False), ("::", False), ("10.0.0.5", False),
        ("192.168.1.2", False), ("fe80::1", False), ("payments.internal", False), ("localhost.evil.com", False),
        ("", False),
    ],
)  # fmt: skip
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("listen", "override", "allowed"),
    [
        ("127.0.0.1:50051", False, True), ("[::1]:50051", False, True), ("localhost:1", False, True),
        ("0.0.0.0:50051", False, False), ("[::]:50051", False, False), ("0.0.0.0:50051", True, True),
        ("10.1.2.3:50051", True, True),
    ],
)  # fmt: skip
def test_plaintext_listen_allowed(listen: str, override: bool, allowed: bool) -> None:
    assert plaintext_listen_allowed(listen, override) is allowed


def test_listen_problems(tmp_path: Path) -> None:
    cert, key, ca, tokens = (tmp_path / n for n in ("c.pem", "k.pem", "ca.pem", "t.json"))
    assert listen_problem(Settings()) is None
    plaintext = listen_problem(Settings(listen="0.0.0.0:50051"))
    assert plaintext is not None
    assert "without TLS" in plaintext
    assert "PAYMENTS_ALLOW_INSECURE_LISTEN" in plaintext
    unauthenticated = listen_problem(Settings(listen="0.0.0.0:50051", tls_cert=cert, tls_key=key))
    assert unauthenticated is not None
    assert "without caller authentication" in unauthenticated
    assert listen_problem(Settings(listen="0.0.0.0:1", tls_cert=cert, tls_key=key, tls_client_ca=ca)) is None
    assert listen_problem(Settings(listen="0.0.0.0:1", tls_cert=cert, tls_key=key, auth_tokens_file=tokens)) is None
    assert listen_problem(Settings(listen="0.0.0.0:1", allow_insecure_listen=True)) is None
    with pytest.raises(InsecureListen):
        check_startup(Settings(listen="0.0.0.0:50051"))


def test_settings_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"PAYMENTS_AUTH_TOKENS_FILE": str(tmp_path / "t.json"), "PAYMENTS_ALLOW_INSECURE_LISTEN": "1"}
    )
    assert settings.auth_tokens_file == tmp_path / "t.json"
    assert settings.allow_insecure_listen is True
    assert settings.describe()["auth"] == "token"
    assert Settings.from_env({}).allow_insecure_listen is False
    with pytest.raises(ConfigError, match="PAYMENTS_ALLOW_INSECURE_LISTEN"):
        Settings.from_env({"PAYMENTS_ALLOW_INSECURE_LISTEN": "maybe"})
    with pytest.raises(ConfigError, match="PAYMENTS_TLS_CLIENT_CA"):
        Settings.from_env({"PAYMENTS_TLS_CLIENT_CA": str(tmp_path / "ca.pem")})


def test_zero_config_keeps_every_caller_default() -> None:
    identifier = build_identifier(Settings())
    assert isinstance(identifier, SingleClient)
    assert server_credentials(Settings()) is None
    assert Settings().describe()["auth"].startswith("off")


def test_tls_files_are_checked_without_echoing_them(tmp_path: Path) -> None:
    secret = tmp_path / "key.pem"
    secret.write_text("MC4CAQAwBQYDK2VwBCIEIJ-secret-bytes\n")
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match="PAYMENTS_TLS_KEY") as caught:
        load_server_credentials(cert, secret)
    assert "secret-bytes" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"PAYMENTS_TLS_CERT .* cannot be read"):
        load_server_credentials(tmp_path / "absent.pem", secret)


def test_dev_certs_refuse_bad_names_before_running_openssl(tmp_path: Path) -> None:
    with pytest.raises(DevCertError, match="client id"):
        generate_dev_certs(tmp_path, client_ids=["spiffe://x/y"])
    with pytest.raises(DevCertError, match="host"):
        generate_dev_certs(tmp_path, hosts=["bad host"])


# -------------------------------------------------------------------------------------------- CLI helper


def test_hash_token_reads_stdin_and_prints_only_the_hash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN_A + "\n"))
    assert cli.main(["hash-token", "--client-id", "client-a"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"client-a": hash_token(TOKEN_A)}
    assert TOKEN_A not in out + err
    monkeypatch.setattr("sys.stdin", io.StringIO("too-short\n"))
    assert cli.main(["hash-token"]) == 2
    out, err = capsys.readouterr()
    assert "too-short" not in out + err
