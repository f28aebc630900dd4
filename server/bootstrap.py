"""The composition root: the only module that imports every layer and wires them together."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from secrets import token_urlsafe
from urllib.parse import parse_qsl, urlsplit

import asyncpg
import httpx
import stripe
from opentelemetry.instrumentation.grpc import aio_server_interceptor

from adapters.bank.adapter import BankTransferAdapter, bank_http_client
from adapters.bank.camt import SUPPORTED_MESSAGES as CAMT_MESSAGES
from adapters.bank.pain001 import DebtorAccount
from adapters.bank.pain002 import PAIN002_VERSIONS
from adapters.bank.statements import BankStatementFeed
from adapters.directory import ProviderSet
from adapters.retry import RetryingProvider
from adapters.sandboxes.bank_sandbox import BankSandbox
from adapters.sandboxes.inprocess import InProcessSandbox
from adapters.sandboxes.stripe_sandbox import StripeSandbox
from adapters.stripe_psp import StripeAdapter, close_http_client, pooled_http_client, stripe_client
from adapters.stripe_psp import api_key_problem as stripe_api_key_problem
from server.api.admin_servicer import AdminServicer
from server.api.convert import ProtoReplyEncoder
from server.api.servicer import ClientIdentifier, PaymentServicer
from server.api.webhooks import STRIPE_WEBHOOK_PATH, StripeWebhookEndpoint, webhook_application
from server.app.admin import Admin
from server.app.bank_statements import BankStatements, StatementFeed, StatementPolicy
from server.app.events import EventFeed, FeedPolicy
from server.app.execution import ExecutionPolicy
from server.app.operations import Operations
from server.app.queries import Queries
from server.app.webhook_intake import WebhookIntake
from server.app.worker import BackgroundWorker, WorkerPolicy
from server.config import (
    DEFAULT_WEBHOOK_LISTEN,
    SHARED_PORT_VARIABLE,
    WEBHOOK_LISTEN_OFF,
    WEBHOOK_LISTEN_VARIABLE,
    WEBHOOK_SECRETS_VARIABLE,
    ConfigError,
    Settings,
)
from server.domain.errors import StorageUnavailable
from server.domain.finality import RecoverySchedule
from server.runtime import GrpcServer, HttpListener
from server.security.setup import build_identifier, check_startup, server_credentials
from server.security.tls import listen_host
from server.security.webhook_listen import check_webhook_listen, webhook_ssl_context
from server.telemetry_setup import configure_telemetry, shutdown_telemetry, tracing_active
from storage.admin_store import PostgresAdminStore
from storage.database import Database, create_pool
from storage.embedded import EmbeddedPostgres
from storage.events_store import PostgresEventStore
from storage.migrator import migrate_dsn
from storage.operations_store import PostgresOperationStore
from storage.payee_store import PostgresPayeeStore
from storage.reader import PostgresReader
from storage.statement_store import PostgresStatementStore
from storage.webhook_store import PostgresWebhookStore
from storage.worker_store import PostgresWorkerStore

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


SANDBOX_STRIPE_KEY = "sk_test_sandbox"  # the built-in sandbox accepts any sk_test_ key
SANDBOX_BANK_TOKEN = "sandbox-token"  # noqa: S105 - not a secret: the built-in bank sandbox accepts any token
STRIPE_HTTP_TIMEOUT_SECONDS = 30.0  # per request; each attempt is also cut at the caller's deadline
STRIPE_PSP = "stripe"  # the Stripe adapter's name: the PSP of the resources Stripe's webhooks are about


@dataclass
class Providers:
    """The PSPs of one process, and the sandboxes started for them (stopped on close)."""

    directory: ProviderSet
    sandboxes: list[StripeSandbox | BankSandbox] = field(default_factory=list)
    http_clients: list[stripe.HTTPXClient | stripe.AIOHTTPClient] = field(default_factory=list)
    bank_http: httpx.AsyncClient | None = None
    stripe_sandbox: StripeSandbox | None = None  # the built-in one, told where to post webhooks
    statement_feeds: list[StatementFeed] = field(default_factory=list)  # camt.053/054 from the bank gateway

    async def close(self) -> None:
        for http_client in self.http_clients:
            await close_http_client(http_client)
        if self.bank_http is not None:
            await self.bank_http.aclose()
        for sandbox in self.sandboxes:
            sandbox.stop()


def psp_settings_problem(settings: Settings) -> str | None:
    """What is wrong with the PSP configuration, in the PSP adapter's own terms, before anything starts."""
    unknown = [name for name in settings.bank_messages if name not in PAIN002_VERSIONS + CAMT_MESSAGES]
    if unknown:
        readable = ", ".join(PAIN002_VERSIONS + CAMT_MESSAGES)
        return f"PAYMENTS_BANK_MESSAGES names versions the bank adapter cannot read: {unknown} (it reads {readable})"
    if settings.stripe_api_key:
        return stripe_api_key_problem(settings.stripe_api_key)
    return None


def bank_message_versions(settings: Settings) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(pain.002 versions, camt versions) the bank is configured to send; all the adapter reads by default."""
    chosen = settings.bank_messages
    status = tuple(name for name in chosen if name in PAIN002_VERSIONS) or PAIN002_VERSIONS
    camt = tuple(name for name in chosen if name in CAMT_MESSAGES) or CAMT_MESSAGES
    return status, camt


def build_providers(settings: Settings) -> Providers:
    """Stripe for cards and Stripe-account payouts, the bank for SEPA payouts; the built-in sandboxes
    stand in for any that is not configured."""
    inprocess = RetryingProvider(InProcessSandbox("inprocess"))
    if settings.psp == "inprocess":
        return Providers(ProviderSet(cards=inprocess, bank=inprocess))
    sandboxes: list[StripeSandbox | BankSandbox] = []
    api_key, api_base = settings.stripe_api_key, settings.stripe_api_base
    stripe_sandbox = None
    if not api_key:
        stripe_sandbox = StripeSandbox().start()
        sandboxes.append(stripe_sandbox)
        api_key, api_base = SANDBOX_STRIPE_KEY, stripe_sandbox.url
        log.info("using the built-in Stripe sandbox", extra={"stripe_api_base": stripe_sandbox.url})
    http_client = pooled_http_client(STRIPE_HTTP_TIMEOUT_SECONDS, settings.psp_max_connections)
    stripe_adapter = StripeAdapter(
        stripe_client(api_key, api_base, http_client), name=STRIPE_PSP, key_ttl_seconds=settings.stripe_key_ttl_seconds
    )
    cards = RetryingProvider(stripe_adapter)
    bank_base, bank_token = settings.bank_api_base, settings.bank_api_token
    if not bank_base:
        bank_sandbox = BankSandbox().start()
        sandboxes.append(bank_sandbox)
        bank_base, bank_token = bank_sandbox.url, SANDBOX_BANK_TOKEN
        log.info("using the built-in bank sandbox", extra={"bank_api_base": bank_sandbox.url})
    assert bank_token is not None
    debtor = DebtorAccount(settings.bank_debtor_name, settings.bank_debtor_iban, settings.bank_debtor_bic)
    bank_http = bank_http_client(settings.psp_max_connections)
    status_versions, camt_versions = bank_message_versions(settings)
    adapter = BankTransferAdapter(bank_base, bank_token, debtor, http=bank_http, status_versions=status_versions)
    bank = RetryingProvider(adapter)
    feed = BankStatementFeed(bank_base, bank_token, name=adapter.name, accepted=camt_versions, http=bank_http)
    directory = ProviderSet(cards=cards, bank=bank, others=[inprocess])
    return Providers(directory, sandboxes, [http_client], bank_http, stripe_sandbox, [feed])


@dataclass(frozen=True)
class WebhookPlan:
    """Stripe webhooks in for one process: where they are received, the secrets that may sign them, and
    the built-in Stripe sandbox to tell where to post (None: Stripe, or a sandbox of another process)."""

    address: str
    secrets: tuple[str, ...] = field(repr=False)
    sandbox: StripeSandbox | None = None


def plan_webhooks(settings: Settings, sandbox: StripeSandbox | None, free_address: str) -> WebhookPlan | None:
    """Webhooks are received when someone sends them: Stripe, with PAYMENTS_STRIPE_WEBHOOK_SECRETS, or the
    built-in sandbox, which gets a secret generated here; it is told the address, so `free_address` (a free
    loopback port) serves unless PAYMENTS_WEBHOOK_LISTEN says otherwise."""
    if settings.psp != "stripe" or settings.webhook_listen == WEBHOOK_LISTEN_OFF:
        return None
    if settings.stripe_webhook_secrets:
        return WebhookPlan(settings.webhook_listen or DEFAULT_WEBHOOK_LISTEN, settings.stripe_webhook_secrets, sandbox)
    if sandbox is not None:
        return WebhookPlan(settings.webhook_listen or free_address, ("whsec_" + token_urlsafe(32),), sandbox)
    return None


def webhook_url(address: str, port: int, *, tls: bool) -> str:
    """The URL a local sender reaches the listener on `address` by (a wildcard host: loopback)."""
    host = listen_host(address)
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 - not a bind
    return f"{'https' if tls else 'http'}://{f'[{host}]' if ':' in host else host}:{port}{STRIPE_WEBHOOK_PATH}"


async def start_webhooks(plan: WebhookPlan, settings: Settings, db: Database, wake: Callable[[], None]) -> HttpListener:
    """Starts the webhook listener (OSError or ConfigError if it cannot) and tells the built-in sandbox."""
    intake = WebhookIntake(PostgresWebhookStore(db, STRIPE_PSP), wake)
    endpoint = StripeWebhookEndpoint(plan.secrets, intake)
    listener = HttpListener(webhook_application(endpoint), grace_seconds=settings.shutdown_grace_seconds)
    ssl_context = webhook_ssl_context(settings)
    try:
        port = await listener.start(plan.address, ssl_context)
    except OSError as exc:
        raise OSError(f"Stripe webhooks ({WEBHOOK_LISTEN_VARIABLE}): {exc}") from None
    url = webhook_url(plan.address, port, tls=ssl_context is not None)
    if plan.sandbox is not None:
        plan.sandbox.set_webhook(url, plan.secrets[0])
    log.info("receiving Stripe webhooks", extra={"webhook_url": url, "signing_secrets": len(plan.secrets)})
    return listener


def webhook_psps(plan: WebhookPlan | None) -> frozenset[str]:
    """The PSPs whose webhooks reach this deployment: the worker polls their resources as a safety net only."""
    return frozenset({STRIPE_PSP}) if plan is not None else frozenset()


def open_database_url(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """The configured database URL, or an embedded PostgreSQL started in the data directory."""
    if settings.database_url:
        return settings.database_url, None
    embedded = EmbeddedPostgres(settings.data_dir.resolve() / "postgres", stop_on_close=False)
    return embedded.start(), embedded


@dataclass(frozen=True)
class Core:
    """The use cases wired to PostgreSQL and the PSPs: what a server or a lone worker runs on."""

    db: Database
    reader: PostgresReader
    operations: Operations
    providers: ProviderSet

    def admin(self, settings: Settings, policy: ExecutionPolicy | None = None) -> Admin:
        """The operator's admin use case, for the clients in PAYMENTS_ADMIN_CLIENTS only."""
        policy = policy or ExecutionPolicy(psp_budget_seconds=settings.psp_budget_seconds)
        return Admin(PostgresAdminStore(self.db), self.operations, frozenset(settings.admin_clients), policy, utc_now)

    def bank_statements(self, settings: Settings, feeds: list[StatementFeed]) -> BankStatements:
        return bank_statements(settings, self.db, feeds)

    def worker(
        self, settings: Settings, policy: WorkerPolicy | None, webhook_psps: frozenset[str] = frozenset(),
        statement_feeds: list[StatementFeed] | None = None,
    ) -> BackgroundWorker:  # fmt: skip
        """`webhook_psps`: the PSPs whose webhooks reach this deployment (their polls are only a safety net)."""
        policy = policy or WorkerPolicy(
            recovery=settings.recovery_schedule(),
            reply_retention_seconds=settings.reply_retention_days * 86400.0,
            event_retention_seconds=settings.event_retention_days * 86400.0,
            psp_budget_seconds=settings.psp_budget_seconds,
            # A key the worker held when its process died is resumable once the PSP budget has passed.
            lease_seconds=settings.psp_budget_seconds + ExecutionPolicy().lease_margin_seconds,
            webhook_psps=webhook_psps,
            webhook_poll_seconds=settings.webhook_poll_seconds,
            requires_action_timeout_seconds=settings.requires_action_timeout_seconds,
            capture_warning_seconds=settings.capture_warning_seconds,
            auto_cancel_uncaptured=settings.auto_cancel_uncaptured,
        )
        periodic = [self.bank_statements(settings, statement_feeds).periodic] if statement_feeds else []
        return BackgroundWorker(
            self.operations, PostgresWorkerStore(self.db), self.reader, self.providers, policy, utc_now,
            periodic=periodic,
        )  # fmt: skip


def bank_statements(settings: Settings, db: Database, feeds: list[StatementFeed]) -> BankStatements:
    """Statements in and reconciliation: the worker's statement round (with the gateway's feeds) and
    `payments bank import|reconcile` (without: files and the database only)."""
    policy = StatementPolicy(
        fetch_every_seconds=settings.bank_statement_fetch_seconds,
        booking_grace_business_days=settings.bank_booking_grace_days,
    )
    return BankStatements(PostgresStatementStore(db), feeds, policy, utc_now)


def event_feed(db: Database) -> EventFeed:
    """ListEvents and WatchEvents over the outbox PostgreSQL writes with every transition."""
    return EventFeed(PostgresEventStore(db), FeedPolicy(), utc_now)


def wire(
    settings: Settings, db: Database, providers: ProviderSet, policy: ExecutionPolicy | None = None,
    recovery: RecoverySchedule | None = None,
) -> Core:  # fmt: skip
    """`recovery` is the schedule the worker resumes released keys on (the settings' by default)."""
    reader = PostgresReader(db)
    policy = policy or ExecutionPolicy(
        psp_budget_seconds=settings.psp_budget_seconds, recovery=recovery or settings.recovery_schedule()
    )
    operations = Operations(
        store=PostgresOperationStore(db), reader=reader, providers=providers, encoder=ProtoReplyEncoder(),
        policy=policy, now=utc_now, payees=PostgresPayeeStore(db),
    )  # fmt: skip
    return Core(db, reader, operations, providers)


@dataclass
class Service:
    settings: Settings
    db: Database
    server: GrpcServer
    providers: ProviderSet
    port: int
    embedded: EmbeddedPostgres | None = None
    owned_providers: Providers | None = None
    worker: BackgroundWorker | None = None
    webhooks: HttpListener | None = None
    _worker_task: asyncio.Task[None] | None = field(default=None, repr=False)
    _worker_stop: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _closed: bool = field(default=False, repr=False)

    def start_worker(self) -> None:
        if self.worker is not None and self._worker_task is None:
            run = self.worker.run(self._worker_stop, self.settings.shutdown_grace_seconds)
            self._worker_task = asyncio.create_task(run, name="background-worker")

    async def close(self, grace_seconds: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._worker_stop.set()
        grace = self.settings.shutdown_grace_seconds if grace_seconds is None else grace_seconds
        drain = self.settings.shutdown_drain_seconds if grace_seconds is None else 0.0
        # Health NOT_SERVING at once; new RPCs are taken for the drain period (PAYMENTS_SHUTDOWN_DRAIN_SECONDS),
        # then refused; the calls in flight and the worker's running jobs get the configured shutdown grace
        # (PAYMENTS_SHUTDOWN_GRACE_SECONDS) to finish.
        stopping: list[Awaitable[None]] = [self.server.stop(grace, drain)]
        if self.webhooks is not None:
            stopping.append(self.webhooks.stop())
        if self._worker_task is not None:
            stopping.append(self._worker_task)
        await asyncio.gather(*stopping)
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
    worker_policy: WorkerPolicy | None = None,
    migrate: bool = True,
    tracing: bool | None = None,
) -> Service:
    """Builds and starts one server process; `dsn` and `providers` let tests inject their own."""
    check_startup(settings)
    try:
        check_webhook_listen(settings)
    except ConfigError as exc:
        raise StartupError(str(exc)) from None
    embedded = None
    if dsn is None:
        url, embedded = await asyncio.to_thread(open_database_url, settings)
    else:
        url = dsn
    db = await _open_database(url, settings.db_pool_size, migrate=migrate)
    owned = None
    if providers is None:
        owned = build_providers(settings)
        providers = owned.directory
    core = wire(settings, db, providers, policy, worker_policy.recovery if worker_policy else None)
    identifier = identifier or build_identifier(settings)
    servicer = PaymentServicer(core.operations, Queries(core.reader), identifier, event_feed(core.db))
    admin = AdminServicer(core.admin(settings, policy), identifier)
    traced = tracing_active() if tracing is None else tracing
    interceptors = [aio_server_interceptor()] if traced else None
    server = GrpcServer(servicer, admin=admin, interceptors=interceptors, share_port=settings.share_listen_port)
    webhooks_plan = plan_webhooks(settings, owned.stripe_sandbox if owned else None, "127.0.0.1:0")
    feeds = owned.statement_feeds if owned else []
    worker = core.worker(settings, worker_policy, webhook_psps(webhooks_plan), feeds) if settings.worker else None
    webhooks = None
    try:
        if webhooks_plan is not None:
            wake = worker.wake if worker is not None else _no_worker_here
            webhooks = await start_webhooks(webhooks_plan, settings, db, wake)
        port = server.bind(settings.listen, server_credentials(settings))
        if settings.health_listen is not None:
            server.bind_health(settings.health_listen)
    except (OSError, ConfigError) as exc:
        if webhooks is not None:
            await webhooks.stop()
        await db.close()
        if owned is not None:
            await owned.close()
        raise StartupError(str(exc)) from None
    await server.start()
    service = Service(settings, db, server, providers, port, embedded, owned, worker, webhooks)
    service.start_worker()
    return service


def _no_worker_here() -> None:
    """With PAYMENTS_WORKER=off, the worker of another process finds a due resource in its next round."""


class StartupError(Exception):
    """The process cannot start (database unreachable, listen address taken): one line, exit code 2."""


async def _open_database(url: str, pool_size: int, *, migrate: bool) -> Database:
    """Migrates (when asked) and opens the pool; an unreachable database is a StartupError naming only
    the host, port and database, never the URL (it may carry a password)."""
    try:
        if migrate:
            await migrate_dsn(url)
        return Database(await create_pool(url, max_size=pool_size))
    except (StorageUnavailable, OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        cause = exc.__cause__ if isinstance(exc, StorageUnavailable) and exc.__cause__ else exc
        raise StartupError(f"cannot reach the database at {_where(url)}: {type(cause).__name__}: {cause}") from None


def _where(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or dict(parse_qsl(parts.query)).get("host", "local socket")
    return f"{host}:{parts.port or 5432}/{parts.path.lstrip('/') or '?'}"


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def run_worker(settings: Settings) -> int:
    """`payments worker`: the recovery worker and status poller alone, until SIGTERM/SIGINT."""
    try:
        configure_telemetry(metrics_listen=settings.metrics_listen)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    url, _ = await asyncio.to_thread(open_database_url, settings)
    try:
        db = await _open_database(url, min(settings.db_pool_size, 5), migrate=True)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    owned = build_providers(settings)
    core = wire(settings, db, owned.directory)
    # The servers receive the webhooks (configured secrets; this process's own sandbox is not told to send
    # any): this worker only polls less often when they do.
    worker = core.worker(
        settings, None, webhook_psps(plan_webhooks(settings, None, "127.0.0.1:0")), owned.statement_feeds
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop, settings.shutdown_grace_seconds))
    print("payments worker running", flush=True)
    await _until_signalled()
    stop.set()
    await task
    await db.close()
    await owned.close()
    return 0


async def serve(settings: Settings) -> int:
    """`payments serve`: runs until SIGTERM/SIGINT, then shuts down gracefully. Returns the exit code."""
    try:
        configure_telemetry(metrics_listen=settings.metrics_listen)
        service = await start_service(settings)
    except (StartupError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    log.info("payments service listening", extra={"listen": settings.listen, **settings.describe()})
    print(f"payments service listening on {settings.listen} ({settings.describe()['database']})", flush=True)
    await _until_signalled()
    print("shutting down: draining in-flight RPCs", flush=True)
    await service.close()
    shutdown_telemetry()
    return 0


def serve_processes(settings: Settings, workers: int) -> int:
    """`payments serve --workers N`: N server processes on one port (SO_REUSEPORT), one background worker.

    What must be shared is started once here: the embedded PostgreSQL, the migrations and, without PSP
    credentials, the sandboxes (every process must see the same PSP, or idempotency at the PSP would be
    per process). The children are ordinary `payments serve` processes; SIGTERM/SIGINT are passed on.
    """
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    if settings.listen.endswith(":0"):
        raise ValueError("--workers needs a fixed port: the processes share it")
    if settings.metrics_listen is not None:
        # One scrape would see one process at random; in Kubernetes run one process per pod instead.
        raise ValueError("PAYMENTS_METRICS_LISTEN needs one process per address: run replicas, not --workers")
    check_webhook_listen(settings)  # a ConfigError, so a ValueError: one line, exit 2
    url, embedded = open_database_url(settings)
    asyncio.run(migrate_dsn(url))
    env = {**os.environ, "PAYMENTS_DATABASE_URL": url, "PAYMENTS_LISTEN": settings.listen, SHARED_PORT_VARIABLE: "1"}
    sandboxes: list[StripeSandbox | BankSandbox] = []
    stripe_sandbox = None
    if settings.psp == "stripe" and not settings.stripe_api_key:
        stripe_sandbox = StripeSandbox().start()
        sandboxes.append(stripe_sandbox)
        env |= {"PAYMENTS_STRIPE_API_KEY": SANDBOX_STRIPE_KEY, "PAYMENTS_STRIPE_API_BASE": stripe_sandbox.url}
    # Webhooks go to the first process alone, the one that runs the background worker: its wake-up is
    # in-process. The others run no webhook listener.
    plan = plan_webhooks(settings, stripe_sandbox, f"127.0.0.1:{_free_loopback_port()}")
    if plan is not None:
        if plan.sandbox is not None:
            port = int(plan.address.rpartition(":")[2])
            if port == 0:
                raise ValueError(f"--workers with the built-in Stripe sandbox needs a fixed {WEBHOOK_LISTEN_VARIABLE}")
            url_of_first = webhook_url(plan.address, port, tls=settings.tls_cert is not None)
            plan.sandbox.set_webhook(url_of_first, plan.secrets[0])
        env |= {WEBHOOK_SECRETS_VARIABLE: ",".join(plan.secrets), WEBHOOK_LISTEN_VARIABLE: plan.address}
    if settings.psp == "stripe" and not settings.bank_api_base:
        bank_sandbox = BankSandbox().start()
        sandboxes.append(bank_sandbox)
        env |= {"PAYMENTS_BANK_API_BASE": bank_sandbox.url, "PAYMENTS_BANK_API_TOKEN": SANDBOX_BANK_TOKEN}
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve"],
            env={
                **env,
                "PAYMENTS_WORKER": "on" if index == 0 and settings.worker else "off",
                **({} if index == 0 else {WEBHOOK_LISTEN_VARIABLE: WEBHOOK_LISTEN_OFF}),
            },
        )
        for index in range(workers)
    ]
    print(f"payments service: {workers} processes on {settings.listen}", flush=True)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    codes = [child.wait() for child in children]
    for sandbox in sandboxes:
        sandbox.stop()
    if embedded is not None:
        embedded.close()
    return max(codes)


def _free_loopback_port() -> int:
    """A port free on 127.0.0.1 now (for the first process of --workers to listen on for the sandbox)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
