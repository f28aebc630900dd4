"""The HTTP server under every PSP sandbox: keep-alive threads, connections it can break on purpose.

Why shared: a sandbox must be able to reset a connection (RST, not FIN) to play a lost answer, and
``stop()`` must neither hang on idle keep-alive connections nor leave requests held by a fault
waiting; both need a server that knows its open connections, which ``ThreadingHTTPServer`` does not.
The Stripe and bank sandboxes put their own request handler and state on top.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Generic, Self, TypeAlias, TypeVar

StateT = TypeVar("StateT")
_SocketRequest: TypeAlias = socket.socket | tuple[bytes, socket.socket]  # socketserver's request type


class Latency:
    """How long a sandbox holds every API request before handling it: a PSP's response time.

    The handler thread sleeps (no CPU), so a sandbox with latency L answers as many requests at once
    as it has connections, each after L, like a real PSP. ``stop()`` (``stopping``) cuts the wait short.
    """

    def __init__(self, seconds: float, stopping: threading.Event) -> None:
        self._initial = self._checked(seconds)
        self.seconds = self._initial
        self._stopping = stopping

    @staticmethod
    def _checked(seconds: float) -> float:
        if not 0.0 <= seconds < float("inf"):
            raise ValueError(f"latency must be a finite number of seconds >= 0, got {seconds!r}")
        return float(seconds)

    def set(self, seconds: float) -> None:
        """From now on hold requests ``seconds`` (0: answer at once); ValueError if negative."""
        self.seconds = self._checked(seconds)

    def reset(self) -> None:
        """Back to the latency the sandbox was started with."""
        self.seconds = self._initial

    def hold(self) -> bool:
        """Waits out the latency; False if the sandbox began stopping meanwhile (then answer nothing)."""
        seconds = self.seconds
        return seconds <= 0 or not self._stopping.wait(seconds)


class SandboxServer(ThreadingHTTPServer, Generic[StateT]):
    """A threading HTTP server that can abort connections with RST and close them all on stop.

    ``state`` is the sandbox's shared state, for its handlers. ``wait_for_handlers``: whether
    ``server_close()`` joins the handler threads, so nothing is still executing once it returns.
    """

    daemon_threads = True
    request_queue_size = 1024  # socketserver's default of 5 drops SYNs under a duplicate storm (1 s stalls)

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        state: StateT,
        *,
        wait_for_handlers: bool = False,
    ) -> None:
        self.state = state
        self.block_on_close = wait_for_handlers
        self._connections_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._aborted: set[socket.socket] = set()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup (getfqdn), which can hang offline."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: _SocketRequest, client_address: object) -> None:
        """Track the connection so ``stop()`` can close it."""
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: _SocketRequest) -> None:
        """Close a connection; an aborted one is closed without FIN, so SO_LINGER 0 sends an RST."""
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.discard(request)
                aborted = request in self._aborted
                self._aborted.discard(request)
            if aborted:
                request.close()
                return
        super().shutdown_request(request)

    def abort(self, connection: socket.socket) -> None:
        """Mark a connection to be reset (RST) instead of closed when its handler finishes."""
        with contextlib.suppress(OSError):  # already shut down by stop(): it is going away anyway
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._connections_lock:
            self._aborted.add(connection)

    def close_connections(self) -> None:
        """Unblock every handler thread still reading from a keep-alive connection."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already gone
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: _SocketRequest, client_address: object) -> None:
        """Clients vanishing mid-request is routine here (timeouts, resets); other errors still print."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class SandboxHandler(BaseHTTPRequestHandler, Generic[StateT]):
    """HTTP/1.1 keep-alive, no Nagle delay, every method to ``dispatch()``, and ``abort()`` for faults."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms Nagle/delayed-ACK stalls on small answers

    @property
    def sandbox_server(self) -> SandboxServer[StateT]:
        server = self.server
        if not isinstance(server, SandboxServer):
            raise TypeError("a sandbox handler needs a SandboxServer")
        return server

    @property
    def state(self) -> StateT:
        """The sandbox's shared state."""
        return self.sandbox_server.state

    def do_GET(self) -> None:
        """Serve a GET."""
        self.dispatch()

    def do_POST(self) -> None:
        """Serve a POST."""
        self.dispatch()

    def do_DELETE(self) -> None:
        """Serve a DELETE."""
        self.dispatch()

    def dispatch(self) -> None:
        """Answer (or, for a fault, withhold the answer to) the request just read."""
        raise NotImplementedError

    def abort(self) -> None:
        """Send nothing more: the connection is reset (RST) once this request's handler returns."""
        self.close_connection = True
        self.sandbox_server.abort(self.connection)


class HostedSandbox(Generic[StateT]):
    """A sandbox's server on a daemon thread: start/stop, a context manager, and where it listens.

    ``stop()`` sets ``stopping`` (waking requests a fault is holding), closes every connection (idle
    keep-alive handlers would otherwise hold it up) and is idempotent.
    """

    def __init__(
        self,
        address: tuple[str, int],
        state: StateT,
        handler: type[SandboxHandler[StateT]],
        *,
        label: str,
        stopping: threading.Event,
        wait_for_handlers: bool = False,
    ) -> None:
        self._address = address
        self._state = state
        self._handler = handler
        self._label = label
        self._stopping = stopping
        self._wait_for_handlers = wait_for_handlers
        self._server: SandboxServer[StateT] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind and serve in the background; returns self, so ``Sandbox().start()`` reads well."""
        if self._server is not None:
            raise RuntimeError(f"the {self._label} is already running")
        self._stopping.clear()
        server = SandboxServer(self._address, self._handler, self._state, wait_for_handlers=self._wait_for_handlers)
        name = self._label.lower().replace(" ", "-")
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True)
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving, wake requests held by faults, close every connection. Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        return self._running().server_port

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (only while running)."""
        server = self._running()
        return f"http://{server.server_name}:{server.server_port}"

    def _running(self) -> SandboxServer[StateT]:
        if self._server is None:
            raise RuntimeError(f"the {self._label} is not running")
        return self._server
