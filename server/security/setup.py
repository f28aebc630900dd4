"""What the composition root calls to secure a server process (docs/contract.md, Security):

    check_startup(settings)                  # refuses insecure listeners, loads every file once
    credentials = server_credentials(settings)   # None: plaintext (loopback or overridden)
    identifier = build_identifier(settings)      # the servicer's ClientIdentifier
    server.bind(settings.listen, credentials)

Every failure is a ConfigError whose message names the variable or file, never a secret.
"""

from __future__ import annotations

import logging

import grpc

from server.api.servicer import ClientIdentifier, SingleClient
from server.config import ConfigError, Settings
from server.security.auth import Authenticator, TokenFile
from server.security.tls import check_listen, is_loopback, listen_host, load_server_credentials

log = logging.getLogger(__name__)

DEFAULT_CLIENT_ID = "default"


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS (mutual TLS with PAYMENTS_TLS_CLIENT_CA) for the listener; None when TLS is not configured."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    return load_server_credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca)


def build_identifier(settings: Settings) -> ClientIdentifier:
    """Client certificates and/or bearer tokens when configured; otherwise every caller is `default`."""
    client_certificates = settings.tls_client_ca is not None
    tokens = TokenFile(settings.auth_tokens_file) if settings.auth_tokens_file is not None else None
    if tokens is None and not client_certificates:
        return SingleClient(DEFAULT_CLIENT_ID)
    return Authenticator(tokens=tokens, client_certificates=client_certificates)


def check_startup(settings: Settings) -> None:
    """Refuses what must not start (ConfigError): a non-loopback listener without TLS or authentication
    and no override, unreadable or malformed certificate, key or tokens files. Logs what is allowed but
    risky."""
    check_listen(settings)
    server_credentials(settings)
    build_identifier(settings)
    if not is_loopback(listen_host(settings.listen)):
        if settings.tls_cert is None:
            log.warning(
                "listening in plaintext on a non-loopback address (PAYMENTS_ALLOW_INSECURE_LISTEN): "
                "only on a trusted network",
                extra={"listen": settings.listen},
            )
        if settings.tls_client_ca is None and settings.auth_tokens_file is None:
            log.warning(
                "no caller authentication on a non-loopback address (PAYMENTS_ALLOW_INSECURE_LISTEN): "
                "every caller is client 'default'",
                extra={"listen": settings.listen},
            )


__all__ = ["ConfigError", "build_identifier", "check_startup", "server_credentials"]
