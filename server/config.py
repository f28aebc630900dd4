"""Configuration from the environment (docs/contract.md, Interface). Every variable is optional; the defaults give a
working local service on embedded PostgreSQL and the built-in PSP sandboxes. Secrets are never printed:
`describe()` shows whether they are set, not their values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from server.domain.finality import RecoverySchedule

# Internal: set by `payments serve --workers N` in the environment of the processes it starts.
SHARED_PORT_VARIABLE = "PAYMENTS_INTERNAL_SHARED_PORT"

WEBHOOK_LISTEN_VARIABLE = "PAYMENTS_WEBHOOK_LISTEN"
WEBHOOK_SECRETS_VARIABLE = "PAYMENTS_STRIPE_WEBHOOK_SECRETS"
DEFAULT_WEBHOOK_LISTEN = "127.0.0.1:50052"
WEBHOOK_LISTEN_OFF = "off"  # PAYMENTS_WEBHOOK_LISTEN=off: this process runs no webhook endpoint


class ConfigError(ValueError):
    """A configuration value is unusable; the message names the variable."""


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of names (spaces around the commas ignored, empty entries dropped)."""
    names = tuple(part.strip() for part in (env.get(name) or "").split(","))
    if any(not part.isprintable() or " " in part for part in names):
        raise ConfigError(f"{name} must be a comma-separated list of client ids")
    return tuple(part for part in names if part)


def _secrets(env: Mapping[str, str], name: str, prefix: str) -> tuple[str, ...]:
    """A comma-separated list of secrets; the error never shows them (not even the one that is wrong)."""
    secrets = tuple(part.strip() for part in (env.get(name) or "").split(","))
    secrets = tuple(part for part in secrets if part)
    if any(not part.startswith(prefix) or not part.isascii() or not part.isprintable() for part in secrets):
        raise ConfigError(f"{name} must be a comma-separated list of secrets that each start with {prefix}")
    return secrets


def _address_problem(name: str, address: str) -> str | None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        return f"{name} must be host:port, got {address!r}"
    return None


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    listen: str = "127.0.0.1:50051"
    database_url: str | None = None
    data_dir: Path = Path(".payments-data")
    # "stripe": Stripe, or the built-in Stripe sandbox without an API key; "inprocess": the instant
    # in-process sandbox PSP (benchmarks, experiments).
    psp: str = "stripe"
    stripe_api_key: str | None = field(default=None, repr=False)
    stripe_api_base: str | None = None
    bank_api_base: str | None = None
    bank_api_token: str | None = field(default=None, repr=False)
    # Our own account that SEPA payouts are paid from (the debtor of every pain.001).
    bank_debtor_name: str = "Payments Service GmbH"
    bank_debtor_iban: str = "DE89370400440532013000"
    bank_debtor_bic: str = "COBADEFFXXX"
    # The ISO 20022 message versions the bank sends us (PAYMENTS_BANK_MESSAGES, comma-separated, e.g.
    # "pain.002.001.03,camt.053.001.02,camt.054.001.02"); empty: every version the adapter reads.
    bank_messages: tuple[str, ...] = ()
    # How often the worker fetches new camt.053/camt.054 documents from the bank gateway.
    bank_statement_fetch_seconds: float = 60.0
    # TARGET2 business days after which a PAID payout no statement booked is a discrepancy.
    bank_booking_grace_days: int = 2
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # JSON {client id: "sha256:<hex>" or a list of them}: callers authenticate with a bearer token.
    auth_tokens_file: Path | None = None
    # Plaintext (or unauthenticated) listening on a non-loopback address, for a trusted network only.
    allow_insecure_listen: bool = False
    db_pool_size: int = 20
    shutdown_grace_seconds: float = 10.0
    # After SIGTERM, how long health says NOT_SERVING while the server still serves, before it stops
    # accepting: clients with health checking (payments_client.balanced) move to other replicas meanwhile.
    shutdown_drain_seconds: float = 0.0
    psp_budget_seconds: float = 20.0
    reply_retention_days: int = 30
    event_retention_days: int = 30  # outbox events (the event feed, Debezium) are deleted after this long
    worker: bool = True  # the recovery worker and status poller run in this process
    recovery_idle_seconds: float = 5.0  # how long a stopped execution is left to its client
    # Connections (and calls in flight) per PSP per process; at a PSP's 1-2 s, 1,000 carry 500-1,000 rps.
    psp_max_connections: int = 1000
    # Set by `payments serve --workers N` for its own processes only: they share one port.
    share_listen_port: bool = False
    # How long Stripe's idempotency keys are re-sent (Stripe honours them 24 h); tests use seconds.
    stripe_key_ttl_seconds: float = 23 * 3600.0
    # Client ids allowed to call payments.admin.v1.AdminService (operators); nobody by default.
    admin_clients: tuple[str, ...] = ()
    # Stripe webhooks in: where POST /v1/webhooks/stripe listens. None: DEFAULT_WEBHOOK_LISTEN, or a free
    # loopback port when only the built-in Stripe sandbox posts to it; WEBHOOK_LISTEN_OFF: not in this process.
    webhook_listen: str | None = None
    # Signing secrets (whsec_…) an event may be signed with; several while one is rotated out.
    stripe_webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    # With webhooks on, Stripe resources are polled at most this often (polling stays the safety net).
    webhook_poll_seconds: float = 60.0
    # A payment left in REQUIRES_ACTION (3-D Secure nobody finished) is cancelled at the PSP after this long.
    requires_action_timeout_seconds: float = 86400.0
    # This long before the PSP releases an uncaptured authorization: the CAPTURE_EXPIRING alert, and with
    # auto_cancel_uncaptured a cancel (PAYMENTS_AUTO_CANCEL_UNCAPTURED=1).
    capture_warning_seconds: float = 86400.0
    auto_cancel_uncaptured: bool = False
    # Prometheus scraping: GET /metrics on this host:port (plaintext, the metrics only); None: off.
    metrics_listen: str | None = None
    # A plaintext listener with grpc.health.v1 alone (kubelet gRPC probes speak no TLS); None: off.
    health_listen: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def path(name: str) -> Path | None:
            value = env.get(name)
            return Path(value) if value else None

        settings = cls(
            listen=env.get("PAYMENTS_LISTEN") or cls.listen,
            database_url=env.get("PAYMENTS_DATABASE_URL") or None,
            data_dir=Path(env.get("PAYMENTS_DATA_DIR") or cls.data_dir),
            psp=env.get("PAYMENTS_PSP") or cls.psp,
            stripe_api_key=env.get("PAYMENTS_STRIPE_API_KEY") or None,
            stripe_api_base=env.get("PAYMENTS_STRIPE_API_BASE") or None,
            bank_api_base=env.get("PAYMENTS_BANK_API_BASE") or None,
            bank_api_token=env.get("PAYMENTS_BANK_API_TOKEN") or None,
            bank_debtor_name=env.get("PAYMENTS_BANK_DEBTOR_NAME") or cls.bank_debtor_name,
            bank_debtor_iban=env.get("PAYMENTS_BANK_DEBTOR_IBAN") or cls.bank_debtor_iban,
            bank_debtor_bic=env.get("PAYMENTS_BANK_DEBTOR_BIC") or cls.bank_debtor_bic,
            bank_messages=_names(env, "PAYMENTS_BANK_MESSAGES"),
            bank_statement_fetch_seconds=_float(
                env, "PAYMENTS_BANK_STATEMENT_FETCH_SECONDS", cls.bank_statement_fetch_seconds
            ),
            bank_booking_grace_days=_int(env, "PAYMENTS_BANK_BOOKING_GRACE_DAYS", cls.bank_booking_grace_days),
            tls_cert=path("PAYMENTS_TLS_CERT"),
            tls_key=path("PAYMENTS_TLS_KEY"),
            tls_client_ca=path("PAYMENTS_TLS_CLIENT_CA"),
            auth_tokens_file=path("PAYMENTS_AUTH_TOKENS_FILE"),
            allow_insecure_listen=_flag(env, "PAYMENTS_ALLOW_INSECURE_LISTEN"),
            db_pool_size=_int(env, "PAYMENTS_DB_POOL_SIZE", cls.db_pool_size),
            shutdown_grace_seconds=_float(env, "PAYMENTS_SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_seconds),
            shutdown_drain_seconds=_float(env, "PAYMENTS_SHUTDOWN_DRAIN_SECONDS", cls.shutdown_drain_seconds),
            psp_budget_seconds=_float(env, "PAYMENTS_PSP_BUDGET_SECONDS", cls.psp_budget_seconds),
            reply_retention_days=_int(env, "PAYMENTS_REPLY_RETENTION_DAYS", cls.reply_retention_days),
            event_retention_days=_int(env, "PAYMENTS_EVENT_RETENTION_DAYS", cls.event_retention_days),
            worker=(env.get("PAYMENTS_WORKER") or "on").lower() not in ("off", "0", "false", "no"),
            recovery_idle_seconds=_float(env, "PAYMENTS_RECOVERY_IDLE_SECONDS", cls.recovery_idle_seconds),
            stripe_key_ttl_seconds=_float(env, "PAYMENTS_STRIPE_KEY_TTL_SECONDS", cls.stripe_key_ttl_seconds),
            share_listen_port=_flag(env, SHARED_PORT_VARIABLE),
            psp_max_connections=_int(env, "PAYMENTS_PSP_MAX_CONNECTIONS", cls.psp_max_connections),
            admin_clients=_names(env, "PAYMENTS_ADMIN_CLIENTS"),
            webhook_listen=env.get(WEBHOOK_LISTEN_VARIABLE) or None,
            stripe_webhook_secrets=_secrets(env, WEBHOOK_SECRETS_VARIABLE, "whsec_"),
            webhook_poll_seconds=_float(env, "PAYMENTS_WEBHOOK_POLL_SECONDS", cls.webhook_poll_seconds),
            requires_action_timeout_seconds=_float(
                env, "PAYMENTS_REQUIRES_ACTION_TIMEOUT_SECONDS", cls.requires_action_timeout_seconds
            ),
            capture_warning_seconds=_float(env, "PAYMENTS_CAPTURE_WARNING_SECONDS", cls.capture_warning_seconds),
            auto_cancel_uncaptured=_flag(env, "PAYMENTS_AUTO_CANCEL_UNCAPTURED"),
            metrics_listen=env.get("PAYMENTS_METRICS_LISTEN") or None,
            health_listen=env.get("PAYMENTS_HEALTH_LISTEN") or None,
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        addresses = [("PAYMENTS_LISTEN", self.listen)]
        if self.webhook_listen is not None and self.webhook_listen != WEBHOOK_LISTEN_OFF:
            addresses.append((WEBHOOK_LISTEN_VARIABLE, self.webhook_listen))
        if self.metrics_listen is not None:
            addresses.append(("PAYMENTS_METRICS_LISTEN", self.metrics_listen))
        if self.health_listen is not None:
            addresses.append(("PAYMENTS_HEALTH_LISTEN", self.health_listen))
        for name, address in addresses:
            problem = _address_problem(name, address)
            if problem:
                raise ConfigError(problem)
        if self.psp not in ("stripe", "inprocess"):
            raise ConfigError(f"PAYMENTS_PSP must be 'stripe' or 'inprocess', got {self.psp!r}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("PAYMENTS_TLS_CERT and PAYMENTS_TLS_KEY must be set together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError("PAYMENTS_TLS_CLIENT_CA (mutual TLS) needs PAYMENTS_TLS_CERT and PAYMENTS_TLS_KEY")
        if self.bank_api_base and not self.bank_api_token:
            raise ConfigError("PAYMENTS_BANK_API_BASE needs PAYMENTS_BANK_API_TOKEN")
        if not 0 <= self.shutdown_drain_seconds <= 60:
            raise ConfigError("PAYMENTS_SHUTDOWN_DRAIN_SECONDS must be between 0 and 60")
        if self.bank_statement_fetch_seconds <= 0:
            raise ConfigError("PAYMENTS_BANK_STATEMENT_FETCH_SECONDS must be above 0")
        if self.bank_booking_grace_days < 0:
            raise ConfigError("PAYMENTS_BANK_BOOKING_GRACE_DAYS must be 0 or more")
        if self.db_pool_size < 1:
            raise ConfigError("PAYMENTS_DB_POOL_SIZE must be at least 1")
        if self.event_retention_days < 1:
            raise ConfigError("PAYMENTS_EVENT_RETENTION_DAYS must be at least 1")
        if self.psp_max_connections < 1:
            raise ConfigError("PAYMENTS_PSP_MAX_CONNECTIONS must be at least 1")
        if not 0 < self.stripe_key_ttl_seconds <= 24 * 3600:
            raise ConfigError("PAYMENTS_STRIPE_KEY_TTL_SECONDS must be above 0 and at most 86400 (Stripe's 24 h)")
        if self.webhook_poll_seconds <= 0:
            raise ConfigError("PAYMENTS_WEBHOOK_POLL_SECONDS must be above 0")
        if self.requires_action_timeout_seconds <= 0:
            raise ConfigError("PAYMENTS_REQUIRES_ACTION_TIMEOUT_SECONDS must be above 0")
        if self.capture_warning_seconds < 0:
            raise ConfigError("PAYMENTS_CAPTURE_WARNING_SECONDS must be 0 or more")
        if (
            self.webhook_listen not in (None, WEBHOOK_LISTEN_OFF)
            and self.stripe_api_key
            and not self.stripe_webhook_secrets
        ):
            raise ConfigError(f"{WEBHOOK_LISTEN_VARIABLE} needs {WEBHOOK_SECRETS_VARIABLE} to verify the events")

    def recovery_schedule(self) -> RecoverySchedule:
        """When stopped executions are resumed: the domain's schedule, with the configured idle time."""
        return RecoverySchedule(idle_seconds=self.recovery_idle_seconds)

    def describe(self) -> dict[str, str]:
        """What the service runs with, safe to log: secrets only as set/unset."""
        return {
            "listen": self.listen,
            "database": "configured URL" if self.database_url else f"embedded in {self.data_dir}",
            "psp": self.psp,
            "stripe": ("configured" if self.stripe_api_key else "built-in sandbox") if self.psp == "stripe" else "off",
            "bank": ("configured" if self.bank_api_base else "built-in sandbox") if self.psp == "stripe" else "off",
            "tls": ("mutual" if self.tls_client_ca else "on") if self.tls_cert else "off",
            "auth": self.auth_mode(),
            "admin_clients": ",".join(self.admin_clients) or "none",
            "stripe_webhook_secrets": str(len(self.stripe_webhook_secrets)) if self.stripe_webhook_secrets else "unset",
            "metrics_listen": self.metrics_listen or "off",
            "health_listen": self.health_listen or "off",
        }

    def auth_mode(self) -> str:
        """How callers are identified: client certificates, bearer tokens, both, or not at all."""
        modes = [m for m, on in (("client-certificate", self.tls_client_ca), ("token", self.auth_tokens_file)) if on]
        return "+".join(modes) if modes else "off (every caller is client 'default')"
