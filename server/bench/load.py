"""A closed-loop load generator: `concurrency` callers each issue requests back to back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
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

    def cpu_us_per_request(self) -> dict[str, float]:
        done = len(self.latencies_ms)
        return {group: round(seconds / done * 1e6) for group, seconds in self.cpu_s.items()} if done else {}

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
        return ordered[index]

    def summary(self) -> dict[str, float | int | str]:
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "requests": len(self.latencies_ms),
            "errors": self.errors,
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 3),
            "p99_ms": round(self.percentile(99), 3),
        }


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
    )


async def run_load(
    name: str,
    call: Callable[[int], Awaitable[None]],
    *,
    concurrency: int,
    requests: int,
    warmup: int = 20,
    server_pid: int | None = None,
) -> Result:
    """Runs `requests` calls (numbered, so each can use its own idempotency key) after a warm-up, and
    records the CPU time each process group used meanwhile (the server's: the tree under `server_pid`)."""
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

    before = cpu.snapshot(server_pid)
    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - started
    after = cpu.snapshot(server_pid)
    if before is not None and after is not None:
        result.cpu_s = cpu.used_between(before, after)
    return result
