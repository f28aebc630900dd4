"""TLS credentials from PEM files, and where plaintext listening is allowed.

The server side reads PAYMENTS_TLS_CERT / PAYMENTS_TLS_KEY (the certificate chain and its private key)
and, for mutual TLS, PAYMENTS_TLS_CLIENT_CA: then every connection must present a client certificate
issued by that CA, or the handshake fails before any RPC is read.

Plaintext is for loopback (127.0.0.0/8, ::1, localhost): a non-loopback listener needs TLS and caller
authentication, unless PAYMENTS_ALLOW_INSECURE_LISTEN=1 / `payments serve --insecure-listen` says the
network is trusted. Error messages name files and variables, never their contents.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import grpc

from payments_client.credentials import CERTIFICATE, PRIVATE_KEY, CredentialsError, read_pem
from server.config import ConfigError, Settings

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})


class InsecureListen(ConfigError):
    """A non-loopback listener without TLS or without caller authentication, and no override."""


def _read(path: Path, what: str, marker: bytes) -> bytes:
    """A PEM file, read by the client library's rule (one for both sides); its error as a ConfigError."""
    try:
        return read_pem(path, what, marker)
    except CredentialsError as exc:
        raise ConfigError(str(exc)) from None


def read_certificate(path: Path, what: str = "certificate") -> bytes:
    return _read(path, what, CERTIFICATE)


def read_private_key(path: Path, what: str = "private key") -> bytes:
    return _read(path, what, PRIVATE_KEY)


def load_server_credentials(cert: Path, key: Path, client_ca: Path | None = None) -> grpc.ServerCredentials:
    """TLS server credentials; with `client_ca`, mutual TLS (a client certificate from that CA required)."""
    chain = read_certificate(cert, "PAYMENTS_TLS_CERT")
    private_key = read_private_key(key, "PAYMENTS_TLS_KEY")
    roots = read_certificate(client_ca, "PAYMENTS_TLS_CLIENT_CA") if client_ca is not None else None
    return grpc.ssl_server_credentials(
        [(private_key, chain)], root_certificates=roots, require_client_auth=roots is not None
    )


def listen_host(address: str) -> str:
    """The host part of host:port ([v6]:port included)."""
    host, _, _ = address.rpartition(":")
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # any other name may resolve to anything
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def plaintext_listen_allowed(listen: str, allow_insecure: bool) -> bool:
    """Plaintext only on loopback, unless the operator declared the network trusted."""
    return allow_insecure or is_loopback(listen_host(listen))


def listen_problem(settings: Settings) -> str | None:
    """Why this listener must not start as configured, or None."""
    if settings.allow_insecure_listen or is_loopback(listen_host(settings.listen)):
        return None
    override = "set PAYMENTS_ALLOW_INSECURE_LISTEN=1 (or `payments serve --insecure-listen`) on a trusted network"
    if settings.tls_cert is None:
        return (
            f"refusing to listen on {settings.listen} without TLS: plaintext is allowed on loopback only. "
            f"Set PAYMENTS_TLS_CERT and PAYMENTS_TLS_KEY (see docs/security.md), listen on 127.0.0.1, or {override}"
        )
    if settings.tls_client_ca is None and settings.auth_tokens_file is None:
        return (
            f"refusing to listen on {settings.listen} without caller authentication: set PAYMENTS_TLS_CLIENT_CA "
            f"(mutual TLS) or PAYMENTS_AUTH_TOKENS_FILE (bearer tokens), or {override}"
        )
    return None


def check_listen(settings: Settings) -> None:
    problem = listen_problem(settings)
    if problem is not None:
        raise InsecureListen(problem)
