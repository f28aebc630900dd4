"""The Stripe webhook listener's transport security: the gRPC listener's rule and certificate, reused.

Plaintext is allowed where the gRPC listener allows it (`plaintext_listen_allowed`: loopback, or
PAYMENTS_ALLOW_INSECURE_LISTEN=1), and TLS uses the same PAYMENTS_TLS_CERT / PAYMENTS_TLS_KEY. The events
are authenticated by their Stripe signature, so no client certificate is asked for even when
PAYMENTS_TLS_CLIENT_CA makes the gRPC listener mutual TLS: Stripe presents none.
"""

from __future__ import annotations

import ssl

from server.config import WEBHOOK_LISTEN_OFF, WEBHOOK_LISTEN_VARIABLE, ConfigError, Settings
from server.security.tls import InsecureListen, plaintext_listen_allowed


def webhook_listen_problem(address: str, settings: Settings) -> str | None:
    """Why the webhook listener must not listen on `address` as configured, or None."""
    if settings.tls_cert is not None or plaintext_listen_allowed(address, settings.allow_insecure_listen):
        return None
    return (
        f"refusing to listen for Stripe webhooks on {address} without TLS: plaintext is allowed on loopback only. "
        f"Set PAYMENTS_TLS_CERT and PAYMENTS_TLS_KEY (see docs/security.md), {WEBHOOK_LISTEN_VARIABLE} on "
        "127.0.0.1, or PAYMENTS_ALLOW_INSECURE_LISTEN=1 (or `payments serve --insecure-listen`) on a trusted network"
    )


def check_webhook_listen(settings: Settings) -> None:
    """Refuses (InsecureListen) a configured webhook address the rule does not allow; the defaults are loopback."""
    address = settings.webhook_listen
    problem = webhook_listen_problem(address, settings) if address not in (None, WEBHOOK_LISTEN_OFF) else None
    if problem is not None:
        raise InsecureListen(problem)


def webhook_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS for the webhook listener from the gRPC listener's certificate and key; None without them."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:  # the reason names the problem, never the key's content
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(
            f"PAYMENTS_TLS_CERT and PAYMENTS_TLS_KEY cannot be used for the webhook listener: {reason}"
        ) from None
    return context
