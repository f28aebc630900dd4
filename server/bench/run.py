"""Runs every benchmark scenario in one go and reports each next to its floor.

Servers run in their own processes (like in production); this process is the load generator. Ratios
compare figures measured in this same run, so they mean something on any machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.sandboxes.bank_sandbox import TEST_IBAN_ACCEPT
from adapters.sandboxes.stripe_sandbox import StripeSandbox
from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api.client import PaymentAsyncStub, payment_stub
from server.bench import cpu
from server.bench.floors import ECHO, TABLE_SQL, TWO_TRANSACTIONS, two_transactions
from server.bench.growth import seed
from server.bench.load import Result, merged, run_load, run_steady
from server.domain.idempotency import Operation, psp_idempotency_key
from server.security.auth import hash_token
from storage.database import create_pool
from storage.embedded import EmbeddedPostgres
from storage.migrator import migrate_dsn

FLOOR = "floor.grpc+2tx"
# Head sampling as production would run it: the caller's decision is followed, new traces kept at 10 %.
SAMPLED = "charge.inprocess+sampled-10%"
SAMPLED_10 = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
# Charge on a server that also streams every event of the client to a WatchEvents consumer (docs/outbox.md).
# Its calls come from a client of their own (a bearer token), so the consumer reads this row's events
# only, and the other rows, measured in the same rounds, do not pay for it.
WATCHED = "charge.inprocess+watch"
WATCHER_TOKEN = secrets.token_urlsafe(24)  # a new one every run
WATCHER_AUTH = (("authorization", f"Bearer {WATCHER_TOKEN}"),)
Call = Callable[[int], Awaitable[None]]
SERVER_PIDS: dict[str, int] = {}  # target -> pid of the process (tree) serving it, for CPU accounting
CHARGE_BODY = svc.ChargeRequest(
    idempotency_key="k" * 24, amount=res.Money(amount_minor=1250, currency="EUR"), payment_method="pm_card_visa",
    customer_id="cus_bench", description="benchmark", metadata={"order": "42"},
).SerializeToString()  # fmt: skip


@dataclass(frozen=True)
class Plan:
    c1: int = 500
    c64: int = 3000
    rounds: int = 5  # the floor and Charge take turns (Bench.interleaved)
    storm: int = 500
    growth_rows: int = 0
    out: Path = Path("bench-results")
    # Production-shaped: PSPs that answer after L, many calls in flight (Bench.psp_latency).
    psp_latency_s: float = 0.3
    charge_in_flight: tuple[int, ...] = (50, 200, 500)
    payout_in_flight: tuple[int, ...] = (50, 200)
    calls_per_caller: int = 4  # measured calls per caller (after a warm-up of one each): seconds per row
    memory_in_flight: int = 1000
    memory_latency_s: float = 1.0
    memory_goal_mib: float = 300.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(target: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(grpc.RpcError, grpc.FutureTimeoutError), grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=1)
            return
        time.sleep(0.1)
    raise TimeoutError(target)


def wait_serving(target: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(grpc.RpcError), grpc.insecure_channel(target) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
        time.sleep(0.1)
    raise TimeoutError(target)


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
        [sys.executable, *args], env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()


@contextlib.contextmanager
def service(dsn: str, **env: str) -> Iterator[str]:
    """A `payments serve` process; yields its target (its pid is in SERVER_PIDS)."""
    port = free_port()
    target = f"127.0.0.1:{port}"
    base = {"PAYMENTS_DATABASE_URL": dsn, "PAYMENTS_LISTEN": target, "PAYMENTS_WORKER": "off", **env}
    workers = base.pop("WORKERS", "")
    args = ["-m", "server.cli", "serve", *(["--workers", workers] if workers else [])]
    with process(args, base) as child:
        wait_serving(target)
        SERVER_PIDS[target] = child.pid
        yield target


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(url)


@contextlib.contextmanager
def sandbox_process(module: str, latency_s: float) -> Iterator[tuple[str, int]]:
    """A PSP sandbox (`adapters.sandboxes.<module>`) in its own process, answering after `latency_s`;
    yields its URL and pid. In its own process so its threads do not share the load generator's GIL."""
    port = free_port()
    args = ["-m", f"adapters.sandboxes.{module}", "--port", str(port), "--latency-seconds", str(latency_s)]
    with process(args) as child:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/_sandbox/counters")
        yield url, child.pid


@contextlib.contextmanager
def otlp_sink() -> Iterator[str]:
    """A collector that accepts OTLP exports and drops them: tracing on, with a real exporter and network hop."""
    with process(["-m", "server.bench.floors", "otlp-sink", "--port", str(port := free_port())]):
        wait_ready(f"127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"


class Bench:
    def __init__(self, plan: Plan, dsn: str) -> None:
        self.plan = plan
        self.dsn = dsn
        self.results: list[Result] = []
        self.notes: dict[str, Any] = {}
        self.pids: dict[str, int] = {}  # scenario -> server pid

    def _print(self, result: Result) -> None:
        extra = ""
        if result.littles_law_bound:
            extra = f"  {result.throughput / result.littles_law_bound:.2f} x c/L"
        if result.peak_rss_mib is not None:
            extra += f"  peak RSS {result.peak_rss_mib:.0f} MiB"
        print(f"  {result.name:<28} c={result.concurrency:<3} {result.throughput:8.0f} rps  "
              f"p50 {result.percentile(50):7.2f} ms{extra}", flush=True)  # fmt: skip

    async def both(self, name: str, call: Call) -> None:
        for concurrency, requests in ((1, self.plan.c1), (64, self.plan.c64)):
            result = await run_load(
                name, call, concurrency=concurrency, requests=requests, server_pid=self.pids.get(name)
            )
            self.results.append(result)
            self._print(result)

    async def interleaved(self, scenarios: dict[str, Call]) -> None:
        """Measures the scenarios in alternating rounds and merges each one's rounds.

        Load from outside the machine comes and goes; scenarios measured one after the other in a
        single block each can land in different weather. Taking turns spreads it over all of them
        alike, so their ratios hold; the order rotates every round, so none always follows another
        (and inherits, say, the autovacuum work its writes caused).
        """
        for name, call in scenarios.items():  # a round not counted: the tables leave their empty start
            await run_load(name, call, concurrency=64, requests=self.plan.c64 // self.plan.rounds)
        await self.analyze()
        rounds: dict[tuple[str, int], list[Result]] = {}
        order = list(scenarios.items())
        for number in range(self.plan.rounds):
            for concurrency, requests in ((1, self.plan.c1), (64, self.plan.c64)):
                for name, call in order[number % len(order) :] + order[: number % len(order)]:
                    result = await run_load(
                        name, call, concurrency=concurrency, requests=max(1, requests // self.plan.rounds),
                        server_pid=self.pids.get(name),
                    )  # fmt: skip
                    rounds.setdefault((name, concurrency), []).append(result)
        for name in scenarios:
            for concurrency in (1, 64):
                result = merged(rounds[(name, concurrency)])
                self.results.append(result)
                self._print(result)

    def note_watching(self, received: int) -> None:
        """Charge with a WatchEvents consumer attached against Charge without one, from the same rounds.
        Every scenario pays for the outbox rows (the trigger writes them whether or not anyone reads);
        this ratio is what streaming them costs on top."""
        by_name = {(r.name, r.concurrency): r for r in self.results}
        self.notes["watched_vs_unwatched"] = {
            f"c={c}": round(by_name[(WATCHED, c)].throughput / by_name[("charge.inprocess", c)].throughput, 3)
            for c in (1, 64)
        }
        self.notes["watch_events_received"] = received

    def note_sampling(self) -> None:
        """Charge with 10 % of traces sampled (and every metric exported) against the untraced service,
        measured in the same interleaved rounds."""
        by_name = {(r.name, r.concurrency): r for r in self.results}
        self.notes["sampled_10pct_vs_untraced"] = {
            f"c={c}": round(by_name[(SAMPLED, c)].throughput / by_name[("charge.inprocess", c)].throughput, 3)
            for c in (1, 64)
        }

    async def analyze(self) -> None:
        """Gives the planner statistics, as autovacuum does within a minute of a database's first writes.

        Until then, plans cached while the tables were nearly empty can pick any index led by client_id
        for a lookup by id, and cost more with every row (docs/performance.md): not the steady state
        this benchmark is about.
        """
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute("ANALYZE")
        finally:
            await conn.close()

    async def bare_floors(self) -> None:
        body = CHARGE_BODY
        with process(["-m", "server.bench.floors", "echo", "--port", str(port := free_port())]) as child:
            wait_ready(f"127.0.0.1:{port}")
            self.pids["floor.grpc-echo"] = child.pid
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                echo = channel.unary_unary(ECHO, None, None)
                await self.both("floor.grpc-echo", lambda _: _done(echo(body)))
        pool = await create_pool(self.dsn, max_size=20)
        await self.both("floor.2tx-asyncpg", lambda _: two_transactions(pool, body))
        await pool.close()

    async def interleaved_charges(self, targets: dict[str, str], *, floor: bool) -> list[str]:
        """Charge on each target (and the gRPC+2-transaction floor), interleaved; returns the payment ids."""
        ids: list[str] = []
        async with contextlib.AsyncExitStack() as stack:
            scenarios: dict[str, Call] = {}
            if floor:
                port = free_port()
                child = stack.enter_context(
                    process(["-m", "server.bench.floors", "db", "--port", str(port), "--dsn", self.dsn])
                )
                wait_ready(f"127.0.0.1:{port}")
                self.pids[FLOOR] = child.pid
                work = (await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))).unary_unary(
                    TWO_TRANSACTIONS, None, None
                )
                scenarios[FLOOR] = lambda _: _done(work(CHARGE_BODY))
            for name, target in targets.items():
                channel = await stack.enter_async_context(grpc.aio.insecure_channel(target))
                if name == WATCHED:  # another client's payments: not for the refunds that follow
                    scenarios[name] = charge_call(payment_stub(channel), name, [], WATCHER_AUTH)
                else:
                    scenarios[name] = charge_call(payment_stub(channel), name, ids)
                self.pids[name] = SERVER_PIDS[target]
            await self.interleaved(scenarios)
        return ids

    async def charges(self, name: str, target: str) -> list[str]:
        ids: list[str] = []
        self.pids[name] = SERVER_PIDS[target]
        async with grpc.aio.insecure_channel(target) as channel:
            await self.both(name, charge_call(payment_stub(channel), name, ids))
        return ids

    async def refunds_and_reads(self, target: str, payment_ids: list[str]) -> None:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = payment_stub(channel)
            pool = iter(payment_ids)

            async def refund(n: int) -> None:
                payment_id = next(pool)
                await stub.Refund(svc.RefundRequest(idempotency_key=f"refund-{payment_id}", payment_id=payment_id),
                                  timeout=30)  # fmt: skip

            async def get(n: int) -> None:
                await stub.GetPayment(svc.GetPaymentRequest(id=payment_ids[n % len(payment_ids)]), timeout=30)

            self.pids["refund.inprocess"] = self.pids["get_payment"] = SERVER_PIDS[target]
            await self.both("refund.inprocess", refund)
            await self.both("get_payment", get)

    async def psp_latency(self) -> None:
        """Charge and SEPA payouts against PSPs that answer after L, many calls in flight: production's shape.

        With L = 300 ms a closed loop of c callers can get at most c / L requests per second through
        (Little's law); each row reports how near the service comes, what a call costs the server's CPU
        and the server's peak resident memory. Last, Charge with 1,000 calls in flight against L = 1 s:
        the server's memory under the load a slow PSP puts on it. Each server is fresh, so its memory
        is that of its own rows. The sandboxes run in their own processes (one thread per connection).
        """
        plan = self.plan
        with (
            sandbox_process("stripe_sandbox", plan.psp_latency_s) as (stripe_url, stripe_pid),
            sandbox_process("bank_sandbox", plan.psp_latency_s) as (bank_url, bank_pid),
        ):
            env = {
                "PAYMENTS_STRIPE_API_KEY": "sk_test_bench", "PAYMENTS_STRIPE_API_BASE": stripe_url,
                "PAYMENTS_BANK_API_BASE": bank_url, "PAYMENTS_BANK_API_TOKEN": "bench-token",
            }  # fmt: skip
            with service(self.dsn, **env) as target:
                async with grpc.aio.insecure_channel(target) as channel:
                    call = charge_call(payment_stub(channel), "charge.stripe-latency", [])
                    for in_flight in plan.charge_in_flight:
                        await self.at_latency("charge.stripe-latency", call, in_flight, target, stripe_pid)
            with service(self.dsn, **env) as target:
                async with grpc.aio.insecure_channel(target) as channel:
                    call = payout_call(payment_stub(channel), "payout.bank-latency")
                    for in_flight in plan.payout_in_flight:
                        await self.at_latency("payout.bank-latency", call, in_flight, target, bank_pid)
            async with httpx.AsyncClient(base_url=stripe_url) as control:
                (await control.post("/_sandbox/latency", json={"seconds": plan.memory_latency_s})).raise_for_status()
            with service(self.dsn, **env) as target:
                idle_mib = cpu.rss_mib(cpu.tree(SERVER_PIDS[target]))
                async with grpc.aio.insecure_channel(target) as channel:
                    call = charge_call(payment_stub(channel), "charge.stripe-latency", [])
                    held = await self.at_latency(
                        "charge.stripe-latency", call, plan.memory_in_flight, target, stripe_pid,
                        plan.memory_latency_s, calls_per_caller=1,
                    )  # fmt: skip
        peak = held.peak_rss_mib or float("nan")
        self.notes["memory_in_flight"] = {
            "in_flight": plan.memory_in_flight, "psp_latency_s": plan.memory_latency_s,
            "mean_in_flight": round(held.mean_in_flight or 0),
            "idle_rss_mib": round(idle_mib, 1), "peak_rss_mib": round(peak, 1), "goal_mib": plan.memory_goal_mib,
            "met": peak < plan.memory_goal_mib,
        }  # fmt: skip

    async def at_latency(
        self, name: str, call: Call, in_flight: int, target: str, sandbox_pid: int, latency_s: float | None = None,
        calls_per_caller: int | None = None,
    ) -> Result:  # fmt: skip
        """One PSP-latency row in its steady state (load.run_steady): `calls_per_caller` calls per caller
        measured, with the CPU of the server, PostgreSQL, us and the sandbox, and the server's peak RSS."""
        latency_s = self.plan.psp_latency_s if latency_s is None else latency_s
        calls = in_flight * (calls_per_caller or self.plan.calls_per_caller)
        result = await run_steady(
            name, call, concurrency=in_flight, requests=calls, ramp_s=latency_s,
            server_pid=SERVER_PIDS[target], others={"sandbox": sandbox_pid}, sample_rss=True,
        )  # fmt: skip
        result.psp_latency_s = latency_s
        self.results.append(result)
        self._print(result)
        return result

    async def storm(self, target: str, sandbox: StripeSandbox) -> None:
        key = f"storm-{uuid.uuid4().hex[:8]}"
        request = svc.ChargeRequest(
            idempotency_key=key, amount=res.Money(amount_minor=999, currency="EUR"), payment_method="pm_card_visa"
        )
        async with grpc.aio.insecure_channel(target) as channel:
            stub = payment_stub(channel)
            started = time.perf_counter()
            outcomes = await asyncio.gather(*(stub.Charge(request, timeout=10) for _ in range(self.plan.storm)),
                                            return_exceptions=True)  # fmt: skip
            elapsed = time.perf_counter() - started
        codes: dict[str, int] = {}
        for outcome in outcomes:
            label = "OK"
            if isinstance(outcome, grpc.aio.AioRpcError):
                label = outcome.code().name
            elif isinstance(outcome, BaseException):
                label = type(outcome).__name__
            codes[label] = codes.get(label, 0) + 1
        calls = sandbox.executions_for_key(psp_idempotency_key("default", key, Operation.CHARGE))
        self.notes["duplicate_storm"] = {"requests": self.plan.storm, "all_answered_s": round(elapsed, 3),
                                         "psp_executions": calls, "answers": codes}  # fmt: skip
        print(f"  duplicate storm: {self.plan.storm} requests answered in {elapsed:.2f} s, "
              f"{calls} PSP execution(s), answers {codes}", flush=True)  # fmt: skip


@contextlib.contextmanager
def watcher_tokens() -> Iterator[str]:
    """A tokens file (PAYMENTS_AUTH_TOKENS_FILE) with the watched row's client."""
    with tempfile.TemporaryDirectory(prefix="bench-tokens") as folder:
        path = Path(folder) / "tokens.json"
        path.write_text(json.dumps({"bench-watched": hash_token(WATCHER_TOKEN)}))
        yield str(path)


@contextlib.asynccontextmanager
async def watching(target: str) -> AsyncIterator[Callable[[], int]]:
    """A WatchEvents consumer on `target` for the block, as a service reading the feed runs it: it
    follows every event of the client from now on. Yields a function returning how many it received."""
    received = 0

    async def consume(channel: grpc.aio.Channel) -> None:
        nonlocal received
        async for reply in payment_stub(channel).WatchEvents(svc.WatchEventsRequest(), metadata=WATCHER_AUTH):
            if reply.HasField("event"):
                received += 1

    async with grpc.aio.insecure_channel(target) as channel:
        task = asyncio.create_task(consume(channel))
        try:
            yield lambda: received
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await task


async def _done(call: Any) -> None:
    await call


def charge_call(stub: PaymentAsyncStub, name: str, ids: list[str], metadata: tuple[tuple[str, str], ...] = ()) -> Call:
    """A charge with a key never used before (never a replay, across warm-ups and rounds); collects the
    payment ids (each refund needs its own)."""
    run = uuid.uuid4().hex[:8]
    numbers = itertools.count()

    async def charge(_: int) -> None:
        request = svc.ChargeRequest(
            idempotency_key=f"{name}-{run}-{next(numbers)}", amount=res.Money(amount_minor=1250, currency="EUR"),
            payment_method="pm_card_visa", customer_id="cus_bench", description="benchmark", metadata={"order": "42"},
        )  # fmt: skip
        response = await stub.Charge(request, timeout=30, metadata=metadata)
        ids.append(response.payment.id)

    return charge


def payout_call(stub: PaymentAsyncStub, name: str) -> Call:
    """A SEPA payout with a key never used before, to an account the bank sandbox accepts, named as its
    holder so Verification of Payee answers MATCH (adapters/sandboxes/bank_payees.py)."""
    run = uuid.uuid4().hex[:8]
    numbers = itertools.count()
    account = res.SepaAccount(
        iban=TEST_IBAN_ACCEPT, name="Müller GmbH", address=res.PostalAddress(country="DE", town="Berlin")
    )

    async def payout(_: int) -> None:
        request = svc.PayoutRequest(
            idempotency_key=f"{name}-{run}-{next(numbers)}", amount=res.Money(amount_minor=2500, currency="EUR"),
            sepa_account=account, reference="Bench payout",
        )  # fmt: skip
        await stub.Payout(request, timeout=30)

    return payout


async def run(plan: Plan, dsn: str, base: str) -> Bench:
    bench = Bench(plan, dsn)
    print("floors", flush=True)
    await bench.bare_floors()
    print(f"floor and service (untraced, and with 10 % of traces sampled), {plan.rounds} interleaved rounds",
          flush=True)  # fmt: skip
    with (
        otlp_sink() as collector,
        service(dsn, PAYMENTS_PSP="inprocess") as target,
        service(dsn, PAYMENTS_PSP="inprocess", OTEL_EXPORTER_OTLP_ENDPOINT=collector, **SAMPLED_10) as sampled,
        watcher_tokens() as tokens,
        service(dsn, PAYMENTS_PSP="inprocess", PAYMENTS_AUTH_TOKENS_FILE=tokens) as watched,
    ):
        async with watching(watched) as received:
            ids = await bench.interleaved_charges(
                {"charge.inprocess": target, SAMPLED: sampled, WATCHED: watched}, floor=True
            )
        bench.note_sampling()
        bench.note_watching(received())
        await bench.refunds_and_reads(target, ids)
    # On its own: the span exporter keeps working after the load stops and would weigh on the next round.
    with (
        otlp_sink() as collector,
        service(dsn, PAYMENTS_PSP="inprocess", OTEL_EXPORTER_OTLP_ENDPOINT=collector) as traced,
    ):
        await bench.charges("charge.inprocess+tracing", traced)
    print("service, Stripe sandbox over HTTP", flush=True)
    sandbox = StripeSandbox().start()
    try:
        stripe_env = {"PAYMENTS_STRIPE_API_KEY": "sk_test_bench", "PAYMENTS_STRIPE_API_BASE": sandbox.url}
        with service(dsn, **stripe_env) as target:
            await bench.charges("charge.stripe-sandbox", target)
            await bench.storm(target, sandbox)
    finally:
        sandbox.stop()
    print("multi-process serving", flush=True)
    with (
        service(dsn, PAYMENTS_PSP="inprocess", WORKERS="1") as one,
        service(dsn, PAYMENTS_PSP="inprocess", WORKERS="2") as two,
    ):
        await bench.interleaved_charges({"charge.workers=1": one, "charge.workers=2": two}, floor=False)
    print(f"PSP latency: Stripe and bank sandboxes answering after {plan.psp_latency_s * 1000:.0f} ms", flush=True)
    await bench.psp_latency()
    if plan.growth_rows:
        await growth(bench, base, plan.growth_rows)
    return bench


async def growth(bench: Bench, base: str, rows: int) -> None:
    """Charge on a database holding `rows` payments and keys, interleaved with Charge on the benchmark's
    nearly empty one: the two are compared under the same outside load."""
    print(f"data growth: seeding {rows:,} payments and keys into a second database", flush=True)
    started = time.perf_counter()
    grown = await new_database(base)
    await seed(grown, rows)
    bench.notes["growth_seed_s"] = round(time.perf_counter() - started, 1)
    label = f"charge.inprocess@{rows / 1_000_000:g}M"
    with service(bench.dsn, PAYMENTS_PSP="inprocess") as empty, service(grown, PAYMENTS_PSP="inprocess") as big:
        await bench.interleaved_charges({"charge.inprocess@empty": empty, label: big}, floor=False)
    by_name = {(r.name, r.concurrency): r for r in bench.results}
    bench.notes["growth_p50_vs_empty"] = {
        f"c={c}": round(by_name[(label, c)].percentile(50) / by_name[("charge.inprocess@empty", c)].percentile(50), 3)
        for c in (1, 64)
    }


def _bench_server() -> tuple[str, Callable[[], None]]:
    """The PostgreSQL server to benchmark on (configured, or an embedded one) and how to clean up."""
    base = os.environ.get("PAYMENTS_DATABASE_URL") or os.environ.get("PAYMENTS_TEST_DATABASE_URL")
    if base:
        return base, lambda: None
    folder = Path(tempfile.mkdtemp(prefix="pgb", dir="/tmp"))
    embedded = EmbeddedPostgres(folder / "pg")
    started = embedded.start()

    def cleanup() -> None:
        embedded.close()
        shutil.rmtree(folder, ignore_errors=True)

    return started, cleanup


async def new_database(base: str) -> str:
    """A fresh database on the benchmark's server, migrated; returns its URL."""
    from urllib.parse import urlsplit, urlunsplit

    name = f"bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    parts = urlsplit(base)
    dsn = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    await _prepare(dsn)
    return dsn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="payments bench", description=__doc__)
    parser.add_argument(
        "--requests", type=int, default=Plan.c64,
        help="requests per scenario at concurrency 64 (the PSP-latency rows' calls per caller scale with it)",
    )  # fmt: skip
    parser.add_argument("--growth-rows", type=int, default=0, help="also measure with this many existing rows")
    parser.add_argument(
        "--in-flight-scale", type=float, default=1.0,
        help="scales the calls in flight of the PSP-latency rows (the smoke test runs them at 0.2)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Plan.out)
    args = parser.parse_args(argv)
    scale = args.in_flight_scale
    plan = Plan(
        c1=max(50, args.requests // 6), c64=args.requests, growth_rows=args.growth_rows, out=args.out,
        calls_per_caller=max(1, round(Plan.calls_per_caller * args.requests / Plan.c64)),
        charge_in_flight=tuple(max(1, round(c * scale)) for c in Plan.charge_in_flight),
        payout_in_flight=tuple(max(1, round(c * scale)) for c in Plan.payout_in_flight),
        memory_in_flight=max(1, round(Plan.memory_in_flight * scale)),
    )  # fmt: skip
    started = time.perf_counter()
    base, cleanup = _bench_server()
    try:
        dsn = asyncio.run(new_database(base))
        bench = asyncio.run(run(plan, dsn, base))
    finally:
        cleanup()
    from server.bench.report import write_report

    write_report(bench.results, bench.notes, plan.out, floor=FLOOR, total_s=time.perf_counter() - started)
    return 0


async def _prepare(dsn: str) -> None:
    await migrate_dsn(dsn)
    conn = await asyncpg.connect(dsn)
    await conn.execute(TABLE_SQL)
    await conn.close()


if __name__ == "__main__":
    sys.exit(main())
