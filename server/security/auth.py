"""Who is calling: the client id from a verified client certificate or from a bearer token.

The client id scopes every row and every query (docs/contract.md, Idempotency and Security), so it must
come from a credential the transport or this module verified:

- **Client certificate** (mutual TLS, PAYMENTS_TLS_CLIENT_CA): the TLS handshake already verified the
  chain; the id is the certificate's first URI SAN (e.g. a SPIFFE id), else its first DNS SAN, else its
  subject CN.
- **Bearer token** (PAYMENTS_AUTH_TOKENS_FILE): `authorization: Bearer <token>` metadata, checked against
  a JSON file `{"client-a": "sha256:<hex>", "client-b": ["sha256:<old>", "sha256:<new>"]}` (several
  hashes per client for rotation). Tokens are high-entropy random strings (`payments hash-token
  --generate`, 256 bits), so a SHA-256 digest is a safe way to store them; the digest of the presented
  token is compared with every stored digest in constant time. The file is re-read when it changes.
- Both configured: either credential identifies the caller; if a call carries both, they must name the
  same client.
- Neither configured: every caller is the client `default` (local development).

A call without a valid credential is refused with UNAUTHENTICATED (ErrorInfo reason CREDENTIALS_MISSING
or CREDENTIALS_INVALID) before anything is read or stored. Tokens are never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from server.config import ConfigError
from server.domain.errors import Unauthenticated

log = logging.getLogger(__name__)

AUTHORIZATION = "authorization"
HASH_SCHEME = "sha256"
TOKEN_PREFIX = "pst_"  # noqa: S105 - not a secret: "payments service token", recognisable by secret scanners
MIN_TOKEN_LENGTH = 32  # tokens given to `hash-token` must be at least this long (random, not passwords)
MAX_TOKEN_LENGTH = 512  # longer credentials are refused without being hashed
# What a client id may look like, wherever it comes from: it is stored with every row.
CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+=-]{0,254}$")
_HASH = re.compile(r"^sha256:([0-9a-f]{64})$")
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without spaces: valid in gRPC metadata


class CredentialsMissing(Unauthenticated):
    default_reason = "CREDENTIALS_MISSING"


class CredentialsInvalid(Unauthenticated):
    default_reason = "CREDENTIALS_INVALID"


# ---------------------------------------------------------------------------------------------- tokens


def generate_token() -> str:
    """A new bearer token: 256 random bits, URL-safe, with a recognisable prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_problem(token: str) -> str | None:
    """Why `token` cannot be used as a bearer token (the message never contains the token)."""
    if len(token) < MIN_TOKEN_LENGTH:
        return f"a token must be at least {MIN_TOKEN_LENGTH} characters of random data (use --generate)"
    if len(token) > MAX_TOKEN_LENGTH:
        return f"a token must be at most {MAX_TOKEN_LENGTH} characters"
    if not _TOKEN_CHARS.match(token):
        return "a token must be printable ASCII without spaces"
    return None


def hash_token(token: str) -> str:
    """The stored form of a token: `sha256:<hex>`."""
    return f"{HASH_SCHEME}:{hashlib.sha256(token.encode()).hexdigest()}"


@dataclass(frozen=True)
class TokenTable:
    """Client ids and the SHA-256 digests of their tokens."""

    entries: tuple[tuple[str, bytes], ...]

    @classmethod
    def parse(cls, text: str | bytes, source: str = "the tokens file") -> TokenTable:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:  # the message carries a position, not the content
            raise ConfigError(f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{source} is not UTF-8 text") from None
        if not isinstance(document, dict):
            raise ConfigError(f'{source} must be a JSON object {{"client-id": "sha256:<hex>", …}}')
        entries: list[tuple[str, bytes]] = []
        owners: dict[bytes, str] = {}
        for client_id, value in document.items():
            if not isinstance(client_id, str) or not CLIENT_ID.match(client_id):
                raise ConfigError(f"{source}: client ids must match {CLIENT_ID.pattern}")
            hashes = value if isinstance(value, list) else [value]
            if not hashes:
                raise ConfigError(f"{source}: client {client_id!r} has no token hash")
            for stored in hashes:
                match = _HASH.match(stored) if isinstance(stored, str) else None
                if match is None:
                    raise ConfigError(
                        f"{source}: client {client_id!r} has an entry that is not sha256:<64 lower-case hex digits> "
                        "(make one with `payments hash-token`)"
                    )
                digest = bytes.fromhex(match.group(1))
                if owners.get(digest, client_id) != client_id:
                    raise ConfigError(f"{source}: clients {owners[digest]!r} and {client_id!r} share a token")
                owners[digest] = client_id
                entries.append((client_id, digest))
        return cls(tuple(entries))

    def lookup(self, token: str) -> str | None:
        """The client whose token this is. Compares against every entry, without an early exit."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        presented = hashlib.sha256(token.encode()).digest()
        found: str | None = None
        for client_id, digest in self.entries:
            if hmac.compare_digest(presented, digest):
                found = client_id
        return found

    def __len__(self) -> int:
        return len(self.entries)


class TokenFile:
    """The tokens file, re-read (at most every `check_seconds`) when it changes on disk, so tokens can be
    added, rotated and revoked without a restart. A change that does not parse is logged and ignored:
    the previous table stays in force."""

    def __init__(self, path: Path, *, check_seconds: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._check_seconds = check_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._signature = self._stat()
        self._table = self._load()  # errors at start-up are fatal (ConfigError)
        self._checked_at = clock()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self) -> TokenTable:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"PAYMENTS_AUTH_TOKENS_FILE {str(self.path)!r} cannot be read: {exc.strerror or type(exc).__name__}"
            ) from None
        return TokenTable.parse(data, f"PAYMENTS_AUTH_TOKENS_FILE {str(self.path)!r}")

    def table(self) -> TokenTable:
        now = self._clock()
        if now - self._checked_at < self._check_seconds:
            return self._table
        with self._lock:
            if now - self._checked_at >= self._check_seconds:
                self._checked_at = now
                signature = self._stat()
                if signature != self._signature:
                    self._signature = signature
                    try:
                        self._table = self._load()
                        log.info("tokens file reloaded", extra={"path": str(self.path), "entries": len(self._table)})
                    except ConfigError as exc:
                        log.error("tokens file change ignored: %s", exc, extra={"path": str(self.path)})
        return self._table


# ------------------------------------------------------------------------------------------ certificates


def _first(auth_context: Mapping[str, Iterable[bytes]], key: str) -> str | None:
    for value in auth_context.get(key, ()):
        try:
            return value.decode("utf-8") if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError:
            return None
    return None


def certificate_identity(auth_context: Mapping[str, Iterable[bytes]]) -> str | None:
    """The client id a verified client certificate names: URI SAN, else DNS SAN, else subject CN."""
    if list(auth_context.get("transport_security_type", ())) != [b"ssl"]:
        return None
    if not list(auth_context.get("x509_pem_cert", ())):
        return None
    for key in ("peer_uri", "peer_dns", "x509_common_name"):
        candidate = _first(auth_context, key)
        if candidate:
            return candidate if CLIENT_ID.match(candidate) else None
    return None


# ------------------------------------------------------------------------------------------- identifier


def bearer_token(values: Iterable[str | bytes]) -> str | None:
    """The token of the `authorization` metadata values; None when there are none.

    Raises CredentialsInvalid when the metadata is present but is not exactly one `Bearer <token>`."""
    found = list(values)
    if not found:
        return None
    if len(found) > 1:
        raise CredentialsInvalid("send exactly one authorization metadata entry")
    value = found[0]
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    scheme, _, credential = text.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise CredentialsInvalid("the authorization metadata must be 'Bearer <token>'")
    return credential


class Authenticator:
    """A ClientIdentifier (server.api.servicer) that authenticates every call of the payment service.

    Health and reflection are served by their own handlers and stay open."""

    def __init__(self, *, tokens: TokenFile | TokenTable | None = None, client_certificates: bool = False) -> None:
        if tokens is None and not client_certificates:
            raise ValueError("an Authenticator needs client certificates or tokens; use SingleClient otherwise")
        self._tokens = tokens
        self._client_certificates = client_certificates

    def _table(self) -> TokenTable | None:
        if isinstance(self._tokens, TokenFile):
            return self._tokens.table()
        return self._tokens

    def identify(self, metadata: Iterable[tuple[str, str | bytes]], auth_context: Mapping[str, Iterable[bytes]]) -> str:
        """The caller's client id from its call metadata and the transport's auth context."""
        cert_id = None
        if self._client_certificates:
            cert_id = certificate_identity(auth_context)
            if cert_id is None and list(auth_context.get("x509_pem_cert", ())):
                raise CredentialsInvalid("the client certificate names no usable client id (URI or DNS SAN, or CN)")
        table = self._table()
        if table is not None:
            token = bearer_token(value for key, value in metadata if key == AUTHORIZATION)
            if token is not None:
                token_id = table.lookup(token)
                if token_id is None:
                    raise CredentialsInvalid("the bearer token is not valid")
                if cert_id is not None and cert_id != token_id:
                    raise CredentialsInvalid("the client certificate and the bearer token name different clients")
                return token_id
        if cert_id is not None:
            return cert_id
        wanted = [w for w, on in (("a bearer token in the authorization metadata", table is not None),
                                  ("a client certificate", self._client_certificates)) if on]  # fmt: skip
        raise CredentialsMissing(f"this service requires {' or '.join(wanted)}")

    def client_id(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        metadata = (context.invocation_metadata() or ()) if self._tokens is not None else ()
        auth_context = context.auth_context() if self._client_certificates else {}
        try:
            return self.identify(((m[0], m[1]) for m in metadata), auth_context)
        except Unauthenticated as exc:
            log.info("call refused: %s", exc.reason, extra={"reason": exc.reason, "peer": context.peer()})
            raise
