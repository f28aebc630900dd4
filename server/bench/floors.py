"""The floors the service is measured against, each as its own server process.

`echo`: a bare grpc.aio unary RPC. `db`: a grpc.aio RPC doing two asyncpg transactions (an insert,
then an update: the shape of a charge's claim and completion). The same two transactions without gRPC
run in the bench process itself (`two_transactions`). `otlp-sink` is not a floor but the collector the
traced service exports to: it accepts OTLP/gRPC exports and drops them, in its own process like a real
collector, so decoding exports never steals the load generator's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from typing import Any

import grpc

from storage.database import create_pool

ECHO = "/bench.Floor/Echo"
TWO_TRANSACTIONS = "/bench.Floor/TwoTransactions"
OTLP_SERVICES = (
    "opentelemetry.proto.collector.trace.v1.TraceService",
    "opentelemetry.proto.collector.metrics.v1.MetricsService",
)
TABLE_SQL = """
    CREATE TABLE IF NOT EXISTS bench_floor (
        id uuid PRIMARY KEY, client_id text NOT NULL, key text NOT NULL, body bytea NOT NULL,
        status text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), UNIQUE (client_id, key)
    )
"""


async def two_transactions(pool: Any, body: bytes) -> None:
    """The database work a minimal idempotent operation cannot avoid: claim, then complete."""
    row_id = uuid.uuid4()
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO bench_floor (id, client_id, key, body, status) VALUES ($1, 'bench', $2, $3, 'started')",
                row_id, row_id.hex, body,
            )  # fmt: skip
        async with conn.transaction():
            await conn.execute("UPDATE bench_floor SET status = 'done', updated_at = now() WHERE id = $1", row_id)


def _passthrough(data: bytes) -> bytes:
    return data


async def _accept(request: bytes, context: object) -> bytes:
    return b""  # an empty Export*ServiceResponse: everything accepted


def _handlers(kind: str, pool: Any) -> list[grpc.GenericRpcHandler[Any, Any]]:
    def rpc(handler: Any) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(
            handler, request_deserializer=_passthrough, response_serializer=_passthrough
        )

    if kind == "otlp-sink":
        return [grpc.method_handlers_generic_handler(name, {"Export": rpc(_accept)}) for name in OTLP_SERVICES]
    if kind == "echo":

        async def echo(request: bytes, context: object) -> bytes:
            return request

        return [grpc.method_handlers_generic_handler("bench.Floor", {"Echo": rpc(echo)})]

    async def work(request: bytes, context: object) -> bytes:
        await two_transactions(pool, request)
        return request

    return [grpc.method_handlers_generic_handler("bench.Floor", {"TwoTransactions": rpc(work)})]


async def serve(kind: str, port: int, dsn: str | None) -> None:
    server = grpc.aio.server()
    pool = None
    if kind == "db":
        assert dsn is not None
        pool = await create_pool(dsn, max_size=20)  # the service's own pool set-up: a fair floor
    server.add_generic_rpc_handlers(_handlers(kind, pool))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["echo", "db", "otlp-sink"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    asyncio.run(serve(args.kind, args.port, args.dsn))


if __name__ == "__main__":
    main()
