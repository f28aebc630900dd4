"""A closed-loop load generator: `concurrency` callers each issue requests back to back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Result:
    name: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    errors: int = 0

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
    )


async def run_load(
    name: str,
    call: Callable[[int], Awaitable[None]],
    *,
    concurrency: int,
    requests: int,
    warmup: int = 20,
) -> Result:
    """Runs `requests` calls (numbered, so each can use its own idempotency key) after a warm-up."""
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

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - started
    return result
