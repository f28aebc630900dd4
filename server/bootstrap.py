"""The composition root: the only module that imports every layer and wires them together."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from datetime import UTC, datetime

from adapters.directory import ProviderSet
from adapters.inprocess_sandbox import InProcessSandbox
from adapters.retry import RetryingProvider
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


def default_providers(settings: Settings) -> ProviderSet:
    sandbox = RetryingProvider(InProcessSandbox("sandbox"))
    return ProviderSet(cards=sandbox, bank=sandbox)


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
    _closed: bool = field(default=False, repr=False)

    async def close(self, grace_seconds: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        await self.server.stop(self.settings.shutdown_grace_seconds if grace_seconds is None else grace_seconds)
        await self.db.close()


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
    providers = providers or default_providers(settings)
    policy = policy or ExecutionPolicy(psp_budget_seconds=settings.psp_budget_seconds)
    operations = Operations(
        store=PostgresOperationStore(db), reader=PostgresReader(db), providers=providers,
        encoder=ProtoReplyEncoder(), policy=policy, now=utc_now,
    )  # fmt: skip
    servicer = PaymentServicer(operations, Queries(PostgresReader(db)), identifier or SingleClient())
    server = GrpcServer(servicer)
    port = server.bind(settings.listen)
    await server.start()
    return Service(settings, db, server, providers, port, embedded)


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
