"""The running servers: gRPC (the payment service, the operator's admin service, health and reflection)
and the HTTP listener for PSP webhooks, with graceful shutdown.

Shutdown (SIGTERM/SIGINT): health turns NOT_SERVING so load balancers stop sending, the server stops
accepting new RPCs, and in-flight RPCs get the grace period to finish; so do webhook requests.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, TypeAlias

import grpc
from aiohttp import web
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.api.admin_servicer import ADMIN_SERVICE_NAME, AdminServicer, admin_handler
from server.api.servicer import SERVICE_NAME, PaymentServicer, generic_handler

log = logging.getLogger(__name__)

Interceptor: TypeAlias = "grpc.aio.ServerInterceptor[Any, Any]"

MAX_MESSAGE_BYTES = 1 << 20  # requests are small; a megabyte is generous and bounds memory
# All metadata of one call (headers, authorization, traceparent …): larger is RESOURCE_EXHAUSTED.
MAX_METADATA_BYTES = 16 * 1024
# A connection must finish its (TLS) handshake within this, so idle half-open connections cannot pile up.
HANDSHAKE_TIMEOUT_MS = 20_000


class GrpcServer:
    def __init__(
        self,
        servicer: PaymentServicer,
        *,
        admin: AdminServicer | None = None,
        interceptors: list[grpc.aio.ServerInterceptor[Any, Any]] | None = None,
        share_port: bool = False,
    ) -> None:
        """`share_port` lets several processes listen on one port (SO_REUSEPORT): only the processes of
        `payments serve --workers N` ask for it. Otherwise a port already in use refuses the start, so
        a second server cannot silently split the traffic with the first."""
        self._server = grpc.aio.server(
            interceptors=interceptors or [],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", 4 * MAX_MESSAGE_BYTES),
                ("grpc.max_metadata_size", MAX_METADATA_BYTES),
                ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
                ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
                ("grpc.so_reuseport", 1 if share_port else 0),
            ],
        )
        self._server.add_generic_rpc_handlers((generic_handler(servicer),))
        self._services = [SERVICE_NAME]
        if admin is not None:
            self._server.add_generic_rpc_handlers((admin_handler(admin),))
            self._services.append(ADMIN_SERVICE_NAME)
        self.health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        names = (*self._services, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, self._server)
        self.port = 0
        self._share_port = share_port
        self._health_server: grpc.aio.Server | None = None

    def bind(self, address: str, credentials: grpc.ServerCredentials | None = None) -> int:
        """Listens on `address`: TLS with `credentials` (see server.security.setup), else plaintext."""
        try:
            if credentials is None:
                self.port = self._server.add_insecure_port(address)
            else:
                self.port = self._server.add_secure_port(address, credentials)
        except RuntimeError:  # grpc raises this when the address cannot be bound
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot listen on {address}: the address is in use or not available")
        return self.port

    def bind_health(self, address: str) -> int:
        """Also answers grpc.health.v1, and nothing else, in plaintext on `address`: the kubelet's gRPC
        probes cannot speak TLS, and a status is all this listener can tell anyone. It reports what the
        main listener reports (one HealthServicer), so readiness drops the moment shutdown begins."""
        server = grpc.aio.server(options=[("grpc.so_reuseport", 1 if self._share_port else 0)])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        try:
            port = server.add_insecure_port(address)
        except RuntimeError:
            port = 0
        if port == 0:
            raise OSError(f"cannot listen on {address}: the address is in use or not available")
        self._health_server = server
        return port

    async def start(self) -> None:
        await self._server.start()
        if self._health_server is not None:
            await self._health_server.start()
        await self._set_serving(health_pb2.HealthCheckResponse.SERVING)

    async def _set_serving(self, status: int) -> None:
        for service in ("", *self._services):
            await self.health.set(service, status)

    async def stop(self, grace_seconds: float, drain_seconds: float = 0.0) -> None:
        """Health turns NOT_SERVING at once; the server keeps serving for `drain_seconds`, while clients
        that watch health move to other replicas (a call that reaches a stopping gRPC server before any
        handler took it fails with CANCELLED: grpc/grpc#41785), then accepts nothing new and gives the
        calls in flight `grace_seconds`."""
        await self._set_serving(health_pb2.HealthCheckResponse.NOT_SERVING)
        if drain_seconds > 0:
            await asyncio.sleep(drain_seconds)
        await self._server.stop(grace_seconds)
        if self._health_server is not None:
            await self._health_server.stop(0)

    async def wait(self) -> None:
        await self._server.wait_for_termination()


class HttpListener:
    """An aiohttp application served in this process's event loop (the Stripe webhook endpoint)."""

    def __init__(self, app: web.Application, *, grace_seconds: float = 10.0) -> None:
        """No SO_REUSEPORT: of the processes of `payments serve --workers N`, only the one running the
        background worker listens for webhooks, so its in-process wake-up reaches the worker. On stop,
        requests in flight get `grace_seconds` to finish."""
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=grace_seconds)
        self.port = 0

    async def start(self, address: str, ssl_context: ssl.SSLContext | None = None) -> int:
        """Listens on host:port (port 0: any free one) and returns the port; OSError if it cannot."""
        host, _, port = address.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, int(port), ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(f"cannot listen on {address}: {exc.strerror or 'the address is not available'}") from None
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        """Stops accepting; requests in flight get the grace period."""
        await self._runner.cleanup()
