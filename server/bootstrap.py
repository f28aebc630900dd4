"""The composition root: the only module that imports every layer and wires them together."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from datetime import UTC, datetime

import stripe

from adapters.directory import ProviderSet
from adapters.inprocess_sandbox import InProcessSandbox
from adapters.retry import RetryingProvider
from adapters.sandboxes.stripe_sandbox import StripeSandbox
from adapters.stripe_psp import StripeAdapter, close_http_client, stripe_client
from server.api.convert import ProtoReplyEncoder
from server.api.servicer import ClientIdentifier, PaymentServicer, SingleClient
from server.app.execution import ExecutionPolicy
from server.app.operations import Operations
from server.app.queries import Queries
from server.config import Settings
from server.runtime import GrpcServer
from storage.database import Database, create_pool
from storage.embedded import EmbeddedPostgres
from storage.migrator import migrate_dsn
from storage.operations_store import PostgresOperationStore
from storage.reader import PostgresReader

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


SANDBOX_STRIPE_KEY = "sk_test_sandbox"  # the built-in sandbox accepts any sk_test_ key
STRIPE_HTTP_TIMEOUT_SECONDS = 30.0  # per request; each attempt is also cut at the caller's deadline


@dataclass
class Providers:
    """The PSPs of one process, and the sandboxes started for them (stopped on close)."""

    directory: ProviderSet
    sandboxes: list[StripeSandbox] = field(default_factory=list)
    http_clients: list[stripe.HTTPXClient] = field(default_factory=list)

    async def close(self) -> None:
        for http_client in self.http_clients:
            await close_http_client(http_client)
        for sandbox in self.sandboxes:
            sandbox.stop()


def build_providers(settings: Settings) -> Providers:
    """Stripe for cards and Stripe-account payouts (the built-in sandbox without an API key)."""
    inprocess = RetryingProvider(InProcessSandbox("inprocess"))
    if settings.psp == "inprocess":
        return Providers(ProviderSet(cards=inprocess, bank=inprocess))
    sandboxes: list[StripeSandbox] = []
    api_key, api_base = settings.stripe_api_key, settings.stripe_api_base
    if not api_key:
        sandbox = StripeSandbox().start()
        sandboxes.append(sandbox)
        api_key, api_base = SANDBOX_STRIPE_KEY, sandbox.url
        log.info("using the built-in Stripe sandbox", extra={"stripe_api_base": sandbox.url})
    http_client = stripe.HTTPXClient(timeout=STRIPE_HTTP_TIMEOUT_SECONDS)
    cards = RetryingProvider(StripeAdapter(stripe_client(api_key, api_base, http_client)))
    return Providers(ProviderSet(cards=cards, bank=inprocess), sandboxes, [http_client])


def open_database_url(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """The configured database URL, or an embedded PostgreSQL started in the data directory."""
    if settings.database_url:
        return settings.database_url, None
    embedded = EmbeddedPostgres(settings.data_dir.resolve() / "postgres", stop_on_close=False)
    return embedded.start(), embedded


@dataclass
class Service:
    settings: Settings
    db: Database
    server: GrpcServer
    providers: ProviderSet
    port: int
    embedded: EmbeddedPostgres | None = None
    owned_providers: Providers | None = None
    _closed: bool = field(default=False, repr=False)

    async def close(self, grace_seconds: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        await self.server.stop(self.settings.shutdown_grace_seconds if grace_seconds is None else grace_seconds)
        await self.db.close()
        if self.owned_providers is not None:
            await self.owned_providers.close()


async def start_service(
    settings: Settings,
    *,
    dsn: str | None = None,
    providers: ProviderSet | None = None,
    identifier: ClientIdentifier | None = None,
    policy: ExecutionPolicy | None = None,
    migrate: bool = True,
) -> Service:
    """Builds and starts one server process; `dsn` and `providers` let tests inject their own."""
    embedded = None
    if dsn is None:
        url, embedded = await asyncio.to_thread(open_database_url, settings)
    else:
        url = dsn
    if migrate:
        await migrate_dsn(url)
    db = Database(await create_pool(url, max_size=settings.db_pool_size))
    owned = None
    if providers is None:
        owned = build_providers(settings)
        providers = owned.directory
    policy = policy or ExecutionPolicy(psp_budget_seconds=settings.psp_budget_seconds)
    operations = Operations(
        store=PostgresOperationStore(db), reader=PostgresReader(db), providers=providers,
        encoder=ProtoReplyEncoder(), policy=policy, now=utc_now,
    )  # fmt: skip
    servicer = PaymentServicer(operations, Queries(PostgresReader(db)), identifier or SingleClient())
    server = GrpcServer(servicer)
    port = server.bind(settings.listen)
    await server.start()
    return Service(settings, db, server, providers, port, embedded, owned)


async def serve(settings: Settings) -> int:
    """`payments serve`: runs until SIGTERM/SIGINT, then shuts down gracefully. Returns the exit code."""
    service = await start_service(settings)
    log.info("payments service listening", extra={"listen": settings.listen, **settings.describe()})
    print(f"payments service listening on {settings.listen} ({settings.describe()['database']})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("shutting down: draining in-flight RPCs", flush=True)
    await service.close()
    return 0
