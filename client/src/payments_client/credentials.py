"""How a client proves who it is and whom it talks to: TLS trust, a client certificate (mutual TLS) and a
bearer token, configured the way the `payments` CLI takes them (docs/security.md).

TLS is on when a CA, a client certificate or `tls=True` is given; without a CA the public roots are
trusted. The token goes into the `authorization` metadata of every call. Errors name files and
variables, never their contents; `repr` never shows a key or a token.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
PRIVATE_KEY = b"PRIVATE KEY-----"


class CredentialsError(ValueError):
    """A certificate, key or token cannot be used as configured."""


def read_pem(path: Path, what: str, marker: bytes) -> bytes:
    """Reads a PEM file that holds a `marker` block (CERTIFICATE or PRIVATE_KEY); the error names the
    file and what was expected, never its content. The server reads its own with it too."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CredentialsError(f"{what} {str(path)!r} cannot be read: {exc.strerror or type(exc).__name__}") from None
    if marker not in data:
        raise CredentialsError(f"{what} {str(path)!r} is not a PEM file with a {marker.decode().strip('-')} block")
    return data


def _read_token(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError as exc:
        raise CredentialsError(f"token file {str(path)!r} cannot be read: {exc.strerror}") from None


@dataclass(frozen=True)
class Credentials:
    """What the client presents. `Credentials()` is plaintext without a token: loopback only, for local use."""

    tls: bool = False
    root_certificates: bytes | None = field(default=None, repr=False)
    certificate_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    server_name: str | None = None  # expected name in the server certificate when it differs from the target

    def __post_init__(self) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise CredentialsError("a client certificate and its private key must be given together")

    @classmethod
    def from_files(
        cls,
        *,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        token: str | None = None,
        token_file: str | Path | None = None,
        tls: bool = False,
        server_name: str | None = None,
    ) -> Credentials:
        """PEM files for the CA to trust and the client certificate/key (mutual TLS); a token or a file
        holding one (the file wins)."""
        if (cert is None) != (key is None):
            raise CredentialsError("a client certificate and its private key must be given together")
        return cls(
            tls=tls or ca is not None or cert is not None,
            root_certificates=read_pem(Path(ca), "CA certificate", CERTIFICATE) if ca else None,
            certificate_chain=read_pem(Path(cert), "client certificate", CERTIFICATE) if cert else None,
            private_key=read_pem(Path(key), "client private key", PRIVATE_KEY) if key else None,
            token=_read_token(Path(token_file)) if token_file else (token or None),
            server_name=server_name or None,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """The CLI's variables: PAYMENTS_TLS_CA, PAYMENTS_CLIENT_CERT, PAYMENTS_CLIENT_KEY, PAYMENTS_TOKEN."""
        env = os.environ if environ is None else environ
        return cls.from_files(
            ca=env.get("PAYMENTS_TLS_CA") or None,
            cert=env.get("PAYMENTS_CLIENT_CERT") or None,
            key=env.get("PAYMENTS_CLIENT_KEY") or None,
            token=env.get("PAYMENTS_TOKEN") or None,
        )

    @property
    def secure(self) -> bool:
        return self.tls or self.root_certificates is not None or self.certificate_chain is not None

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """gRPC TLS credentials, or None for plaintext."""
        if not self.secure:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )

    def channel_options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

    def call_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


def sync_channel(target: str, credentials: Credentials, options: list[tuple[str, str | int]]) -> grpc.Channel:
    every = [*credentials.channel_options(), *options]
    secure = credentials.channel_credentials()
    if secure is None:
        return grpc.insecure_channel(target, options=every)
    return grpc.secure_channel(target, secure, options=every)


def aio_channel(target: str, credentials: Credentials, options: list[tuple[str, str | int]]) -> grpc.aio.Channel:
    every = [*credentials.channel_options(), *options]
    secure = credentials.channel_credentials()
    if secure is None:
        return grpc.aio.insecure_channel(target, options=every)
    return grpc.aio.secure_channel(target, secure, options=every)
