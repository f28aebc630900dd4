"""Servers and clients with transport security for the security tests: certificates made in the test,
tokens files, and a payments server wired like the composition root wires it (check_startup,
server_credentials, build_identifier), on its own event loop like ServerHarness."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.directory import ProviderSet
from adapters.retry import RetryingProvider
from adapters.sandboxes.inprocess import InProcessSandbox
from server.api.client import PaymentStub, payment_stub
from server.api.servicer import PaymentServicer
from server.app.queries import Queries
from server.bootstrap import event_feed, wire
from server.config import Settings
from server.runtime import GrpcServer
from server.security.auth import generate_token, hash_token
from server.security.devcerts import CertPair, DevCertificates, generate_dev_certs
from server.security.setup import build_identifier, check_startup, server_credentials
from storage.database import Database, create_pool
from tests.support.harness import FAST_RETRIES

T = TypeVar("T")


def require_openssl() -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the security tests make their certificates with the `openssl` command, not found on PATH")


@dataclass(frozen=True)
class Pki:
    """A trusted CA (server certificate, client certificates for client-a and client-b), a rogue CA with its
    own client-a certificate, and a tokens file for client-a and client-b."""

    trusted: DevCertificates
    rogue: DevCertificates
    tokens_file: Path
    tokens: dict[str, str] = field(repr=False)

    def secrets(self) -> list[str]:
        """Every secret of this PKI as text that must never appear in a log: the tokens, and of each private
        key its PEM body lines, its whole base64 body and its DER bytes in hex."""
        found = list(self.tokens.values())
        for certs in (self.trusted, self.rogue):
            for pair in (certs.ca, certs.server, *certs.clients.values()):
                body = [line for line in pair.key.read_text().splitlines() if line and not line.startswith("-----")]
                found += [*body, "".join(body), base64.b64decode("".join(body)).hex()]
        return found


def make_pki(directory: Path) -> Pki:
    require_openssl()
    trusted = generate_dev_certs(directory / "trusted", client_ids=["client-a", "client-b"], days=2)
    rogue = generate_dev_certs(directory / "rogue", client_ids=["client-a"], days=2, ca_name="rogue CA")
    tokens = {"client-a": generate_token(), "client-b": generate_token()}
    tokens_file = directory / "tokens.json"
    tokens_file.write_text(json.dumps({client: hash_token(token) for client, token in tokens.items()}))
    return Pki(trusted, rogue, tokens_file, tokens)


def client_credentials(certs: DevCertificates, client: CertPair | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=certs.ca.cert.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class SecureServer:
    """A payments server on 127.0.0.1 configured by `settings` (TLS, mutual TLS, tokens)."""

    def __init__(self, dsn: str, settings: Settings) -> None:
        self.settings = settings
        self.sandbox = InProcessSandbox("sandbox")
        retrying = RetryingProvider(self.sandbox, FAST_RETRIES)
        self.providers = ProviderSet(cards=retrying, bank=retrying)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._db: Database | None = None
        self._server: GrpcServer | None = None
        self.port = self.run(self._start(dsn))
        self.target = f"127.0.0.1:{self.port}"
        self._channels: list[grpc.Channel] = []

    async def _start(self, dsn: str) -> int:
        check_startup(self.settings)
        self._db = Database(await create_pool(dsn, max_size=5))
        core = wire(self.settings, self._db, self.providers)
        servicer = PaymentServicer(core.operations, Queries(core.reader), build_identifier(self.settings),
                                   event_feed(core.db))  # fmt: skip
        self._server = GrpcServer(servicer)
        port = self._server.bind(self.settings.listen, server_credentials(self.settings))
        await self._server.start()
        return port

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def channel(self, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
        """A channel to the server (closed with it); plaintext without credentials."""
        if credentials is None:
            channel = grpc.insecure_channel(self.target)
        else:
            channel = grpc.secure_channel(self.target, credentials)
        self._channels.append(channel)
        return channel

    def stub(self, credentials: grpc.ChannelCredentials | None = None) -> PaymentStub:
        return payment_stub(self.channel(credentials))

    def health(self, credentials: grpc.ChannelCredentials | None = None) -> int:
        with (
            grpc.secure_channel(self.target, credentials) if credentials else grpc.insecure_channel(self.target)
        ) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            status: int = answer.status
            return status

    async def _stop(self) -> None:
        if self._server is not None:
            await self._server.stop(1.0)
        if self._db is not None:
            await self._db.close()

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        self.run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
