"""adapters/aiohttp_transport.py raises the httpx exception that says whether a request can have reached
the server: the bank adapter's finality rules read exactly that (adapters/bank/adapter.py `_send`).
Each case is a real socket on loopback behaving as a server can."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from adapters.aiohttp_transport import AiohttpTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def server(handle: Handler) -> AsyncIterator[str]:
    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        listening.close()
        await listening.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    return head + await reader.readexactly(length)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=AiohttpTransport(10), timeout=1.0) as http:
        yield http


async def test_an_answer_comes_through_with_its_status_headers_and_body(client: httpx.AsyncClient) -> None:
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        body = b'{"partyNameMatch": "MTCH"}'
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nX-Request-Id: req_1\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
        await writer.drain()
        writer.close()

    async with server(answer) as base:
        response = await client.post(f"{base}/v1/x", content=b"<Document/>", headers={"Idempotency-Key": "k1"})
    assert response.status_code == 202
    assert response.json() == {"partyNameMatch": "MTCH"}
    assert response.headers["x-request-id"] == "req_1"
    request = seen[0]
    assert request.startswith(b"POST /v1/x HTTP/1.1")
    assert b"idempotency-key: k1" in request.lower()
    assert request.endswith(b"\r\n\r\n<Document/>")


async def test_no_server_listening_is_a_connect_error_nothing_was_sent(client: httpx.AsyncClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: the connection is refused
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/v1/x")


async def test_a_connection_closed_after_the_request_may_have_executed(client: httpx.AsyncClient) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # the request arrived; the answer never leaves
        writer.close()

    async with server(drop) as base:
        with pytest.raises(httpx.TransportError) as caught:
            await client.post(f"{base}/v1/x", content=b"<Document/>")
    assert not isinstance(caught.value, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


async def test_no_answer_in_time_is_a_read_timeout(client: httpx.AsyncClient) -> None:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(3)
        writer.close()

    async with server(hold) as base:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{base}/v1/x", content=b"<Document/>", timeout=0.3)


async def test_a_malformed_answer_may_have_executed(client: httpx.AsyncClient) -> None:
    async def garble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    async with server(garble) as base:
        with pytest.raises(httpx.TransportError) as caught:
            await client.post(f"{base}/v1/x", content=b"<Document/>")
    assert not isinstance(caught.value, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


async def test_the_session_is_closed_with_the_client() -> None:
    transport = AiohttpTransport(2)
    async with server(lambda r, w: _answer_ok(r, w)) as base, httpx.AsyncClient(transport=transport) as http:
        assert (await http.get(f"{base}/")).status_code == 200
        session = transport._session
        assert session is not None
    assert session.closed


async def _answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    writer.close()
