"""The webhook settings (server/config.py) and the listener's rule (server/security/webhook_listen.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ConfigError, Settings
from server.security.tls import InsecureListen
from server.security.webhook_listen import check_webhook_listen, webhook_listen_problem


def test_defaults_leave_webhooks_to_the_composition_root() -> None:
    settings = Settings.from_env({})
    assert (settings.webhook_listen, settings.stripe_webhook_secrets, settings.webhook_poll_seconds) == (None, (), 60)
    assert settings.describe()["stripe_webhook_secrets"] == "unset"


def test_secrets_are_a_comma_separated_list_never_shown() -> None:
    settings = Settings.from_env({"PAYMENTS_STRIPE_WEBHOOK_SECRETS": " whsec_a , whsec_b,, "})
    assert settings.stripe_webhook_secrets == ("whsec_a", "whsec_b")
    assert "whsec_" not in repr(settings)
    assert settings.describe()["stripe_webhook_secrets"] == "2"
    with pytest.raises(ConfigError, match="start with whsec_") as refused:
        Settings.from_env({"PAYMENTS_STRIPE_WEBHOOK_SECRETS": "whsec_a,sk_live_oops123456"})
    assert "oops" not in str(refused.value)


def test_addresses_and_the_poll_interval_are_checked() -> None:
    assert Settings.from_env({"PAYMENTS_WEBHOOK_LISTEN": "off"}).webhook_listen == "off"
    assert Settings.from_env({"PAYMENTS_WEBHOOK_LISTEN": "[::1]:8443"}).webhook_listen == "[::1]:8443"
    with pytest.raises(ConfigError, match="PAYMENTS_WEBHOOK_LISTEN must be host:port"):
        Settings.from_env({"PAYMENTS_WEBHOOK_LISTEN": "50052"})
    with pytest.raises(ConfigError, match="PAYMENTS_LISTEN must be host:port"):
        Settings.from_env({"PAYMENTS_LISTEN": "off"})
    with pytest.raises(ConfigError, match="PAYMENTS_WEBHOOK_POLL_SECONDS"):
        Settings.from_env({"PAYMENTS_WEBHOOK_POLL_SECONDS": "0"})
    assert Settings.from_env({"PAYMENTS_WEBHOOK_POLL_SECONDS": "600"}).webhook_poll_seconds == 600


def test_a_webhook_listener_for_stripe_needs_its_secrets() -> None:
    env = {"PAYMENTS_STRIPE_API_KEY": "sk_test_x", "PAYMENTS_WEBHOOK_LISTEN": "127.0.0.1:50052"}
    with pytest.raises(ConfigError, match="needs PAYMENTS_STRIPE_WEBHOOK_SECRETS"):
        Settings.from_env(env)
    Settings.from_env({**env, "PAYMENTS_STRIPE_WEBHOOK_SECRETS": "whsec_a"})
    Settings.from_env({"PAYMENTS_WEBHOOK_LISTEN": "127.0.0.1:50052"})  # the built-in sandbox gets a generated one


def test_plaintext_webhooks_follow_the_grpc_listeners_rule(tmp_path: Path) -> None:
    assert webhook_listen_problem("127.0.0.1:1", Settings()) is None
    assert webhook_listen_problem("localhost:1", Settings()) is None
    problem = webhook_listen_problem("0.0.0.0:1", Settings())
    assert problem is not None
    assert problem.startswith("refusing to listen for Stripe webhooks on 0.0.0.0:1 without TLS")
    assert webhook_listen_problem("0.0.0.0:1", Settings(allow_insecure_listen=True)) is None
    tls = Settings(tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem")
    assert webhook_listen_problem("0.0.0.0:1", tls) is None, "the signature authenticates: no client auth needed"
    with pytest.raises(InsecureListen):
        check_webhook_listen(Settings(webhook_listen="192.0.2.10:8443"))
    check_webhook_listen(Settings(webhook_listen="off"))
    check_webhook_listen(Settings())
