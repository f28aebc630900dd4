"""A closed-loop load generator: `concurrency` callers each issue requests back to back (`run_load`; and
`run_steady`, for many calls in flight behind a slow PSP)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from server.bench import cpu


@dataclass
class Result:
    name: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    errors: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds by process group (server.bench.cpu)
    psp_latency_s: float | None = None  # the PSP sandbox's latency L, for the PSP-latency scenarios
    peak_rss_mib: float | None = None  # the server's highest resident memory during the load, when sampled
    mean_in_flight: float | None = None  # calls outstanding, sampled with the memory (run_steady)

    def cpu_us_per_request(self) -> dict[str, float]:
        done = len(self.latencies_ms)
        return {group: round(seconds / done * 1e6) for group, seconds in self.cpu_s.items()} if done else {}

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def littles_law_bound(self) -> float | None:
        """The most a closed loop of `concurrency` callers can get through a PSP answering after L: c / L."""
        return self.concurrency / self.psp_latency_s if self.psp_latency_s else None

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
        return ordered[index]

    def summary(self) -> dict[str, float | int | str]:
        summary: dict[str, float | int | str] = {
            "name": self.name,
            "concurrency": self.concurrency,
            "requests": len(self.latencies_ms),
            "errors": self.errors,
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 3),
            "p99_ms": round(self.percentile(99), 3),
        }
        bound = self.littles_law_bound
        if self.psp_latency_s is not None and bound is not None:
            summary["psp_latency_ms"] = round(self.psp_latency_s * 1000)
            summary["littles_law_rps"] = round(bound, 1)
            summary["throughput_vs_littles_law"] = round(self.throughput / bound, 3)
        if self.peak_rss_mib is not None:
            summary["peak_rss_mib"] = round(self.peak_rss_mib, 1)
        if self.mean_in_flight is not None:
            summary["mean_in_flight"] = round(self.mean_in_flight)
        return summary


def merged(rounds: list[Result]) -> Result:
    """One result from several rounds of the same scenario: all latencies, throughput over the time spent."""
    first = rounds[0]
    return Result(
        first.name,
        first.concurrency,
        [ms for r in rounds for ms in r.latencies_ms],
        sum(r.elapsed_s for r in rounds),
        sum(r.errors for r in rounds),
        {group: sum(r.cpu_s.get(group, 0.0) for r in rounds) for group in first.cpu_s},
        first.psp_latency_s,
        max((r.peak_rss_mib for r in rounds if r.peak_rss_mib is not None), default=None),
    )


async def run_load(
    name: str,
    call: Callable[[int], Awaitable[None]],
    *,
    concurrency: int,
    requests: int,
    warmup: int = 20,
    server_pid: int | None = None,
    others: Mapping[str, int] | None = None,
    sample_rss: bool = False,
) -> Result:
    """Runs `requests` calls (numbered, so each can use its own idempotency key) after a warm-up, and
    records the CPU time each process group used meanwhile (the server's: the tree under `server_pid`;
    `others`: more groups, name -> pid). `sample_rss`: also the server tree's peak resident memory."""
    for i in range(warmup):
        await call(-1 - i)
    result = Result(name, concurrency)
    counter = iter(range(requests))

    async def caller() -> None:
        for number in counter:
            started = time.perf_counter()
            try:
                await call(number)
            except Exception:
                result.errors += 1
                continue
            result.latencies_ms.append((time.perf_counter() - started) * 1000)

    sampler = None
    if sample_rss and server_pid is not None:
        sampler = asyncio.create_task(_peak_rss(cpu.tree(server_pid), result))
    before = cpu.snapshot(server_pid, others)
    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - started
    after = cpu.snapshot(server_pid, others)
    if sampler is not None:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    if before is not None and after is not None:
        result.cpu_s = cpu.used_between(before, after)
    return result


async def _peak_rss(
    pids: set[int], result: Result, in_flight: Callable[[], int] | None = None, interval_s: float = 0.02
) -> None:
    """Samples the resident memory of `pids` until cancelled, keeping the highest in `result`, and the
    mean of `in_flight()` (the calls outstanding) if given."""
    samples: list[int] = []
    while True:
        rss = cpu.rss_mib(pids)
        if rss and (result.peak_rss_mib is None or rss > result.peak_rss_mib):
            result.peak_rss_mib = rss
        if in_flight is not None:
            samples.append(in_flight())
            result.mean_in_flight = sum(samples) / len(samples)
        await asyncio.sleep(interval_s)


async def run_steady(
    name: str,
    call: Callable[[int], Awaitable[None]],
    *,
    concurrency: int,
    requests: int,
    ramp_s: float,
    server_pid: int | None = None,
    others: Mapping[str, int] | None = None,
    sample_rss: bool = False,
) -> Result:
    """Many calls in flight, measured in their steady state: `concurrency` callers call back to back.

    The callers start evenly spread over `ramp_s`. Behind a PSP that answers after a fixed latency,
    callers started together would stay in lockstep and reach the server in bursts of `concurrency`,
    which production's independent clients do not. After a warm-up of `concurrency` calls (the server
    opens its PSP connections), the next `requests` completions are measured: latencies, throughput,
    CPU used (as `run_load`) and, with `sample_rss`, the server's peak resident memory and the mean
    number of calls in flight. The calls then still in flight finish uncounted. Errors are counted,
    the warm-up's too.
    """
    result = Result(name, concurrency)
    numbers = itertools.count()
    finished = asyncio.Event()
    completions = 0
    outstanding = 0
    started_at = 0.0
    before: dict[str, dict[int, float]] | None = None
    sampler: asyncio.Task[None] | None = None

    def completed(latency_ms: float | None) -> None:
        nonlocal completions, started_at, before, sampler
        if finished.is_set():
            return
        completions += 1
        if completions <= concurrency:  # the warm-up
            if latency_ms is None:
                result.errors += 1
            if completions == concurrency:
                if sample_rss and server_pid is not None:
                    sampler = asyncio.create_task(_peak_rss(cpu.tree(server_pid), result, lambda: outstanding))
                before = cpu.snapshot(server_pid, others)
                started_at = time.perf_counter()
            return
        if latency_ms is None:
            result.errors += 1
        else:
            result.latencies_ms.append(latency_ms)
        if completions == concurrency + requests:
            result.elapsed_s = time.perf_counter() - started_at
            after = cpu.snapshot(server_pid, others)
            if before is not None and after is not None:
                result.cpu_s = cpu.used_between(before, after)
            if sampler is not None:
                sampler.cancel()  # memory and calls in flight of the measured window only, not of the drain
            finished.set()

    async def caller(index: int) -> None:
        nonlocal outstanding
        await asyncio.sleep(index * ramp_s / concurrency)
        while not finished.is_set():
            started = time.perf_counter()
            outstanding += 1
            try:
                await call(next(numbers))
            except Exception:
                completed(None)
                continue
            finally:
                outstanding -= 1
            completed((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(caller(index) for index in range(concurrency)))
    if sampler is not None:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    return result
