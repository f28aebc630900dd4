"""httpx's client interface on aiohttp's connection pool, for the bank gateway.

Why: httpcore's connection pool (what httpx uses by default) looks at every connection for every request
that starts or ends. With a few hundred payouts in flight that bookkeeping was most of the server's CPU,
and the bank sandbox, which answers 627 requests a second at 200 in flight to an aiohttp client,
answered 49 to an httpx one (docs/performance.md). aiohttp's pool does not have that cost; the Stripe
adapter already uses it.

Why a transport rather than rewriting the adapter on aiohttp: the bank adapter's error mapping is where
its finality rules live (a request that cannot have reached the bank is "nothing executed", one that may
have is "possibly executed", adapters/bank/adapter.py `_send`). This module keeps httpx's requests,
responses and exceptions, and its one job is to raise the httpx exception that says the same thing
about whether the request can have reached the server:

- aiohttp could not open a connection, or gave up while opening one (or waiting for a free one from its
  pool): `httpx.ConnectError` / `httpx.ConnectTimeout` (nothing was sent);
- no answer within the read timeout: `httpx.ReadTimeout`;
- anything else once connected (the server closed the connection, a reset while writing or reading, a
  malformed answer, a timeout that cannot be placed): `httpx.ReadError` (the request may have been sent).
"""

from __future__ import annotations

import aiohttp
import httpx

# Headers aiohttp writes itself from the URL and the body (httpx's copies would be duplicates), and the
# answer's framing and encoding, which no longer describe the body once aiohttp has read and decoded it.
_SET_BY_AIOHTTP = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"content-encoding"})


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends every request with one aiohttp session (created on first use, in
    the event loop that uses it)."""

    def __init__(self, max_connections: int) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=self._max_connections)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        read = timeout.get("read")
        connect = timeout.get("connect")
        # aiohttp's `connect` covers waiting for a pooled connection and opening one; `sock_read` each
        # read. Nothing bounds the write on its own, so `total` bounds the whole exchange.
        limits = aiohttp.ClientTimeout(
            total=None if read is None or connect is None else read + connect,
            connect=timeout.get("pool") if timeout.get("pool") is not None else connect,
            sock_connect=connect,
            sock_read=read,
        )
        body = await request.aread()
        sent = [(name, value) for name, value in request.headers.multi_items() if name.lower() not in _SET_BY_AIOHTTP]
        try:
            async with self._client().request(
                request.method,
                str(request.url),
                data=body or None,
                headers=sent,
                allow_redirects=False,
                timeout=limits,
            ) as response:
                content = await response.read()
                status = response.status
                headers = [(name, value) for name, value in response.raw_headers if name.lower() not in _FRAMING]
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(f"connect timeout: {exc}", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(f"cannot connect: {exc}", request=request) from exc
        except aiohttp.SocketTimeoutError as exc:
            raise httpx.ReadTimeout(f"read timeout: {exc}", request=request) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc
        return httpx.Response(status, headers=headers, content=content, request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
