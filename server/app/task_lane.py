"""A bounded set of concurrent background jobs that start as soon as a slot is free.

The worker claims PSP work (status polls, recoveries) whose calls take anything from milliseconds to
the whole PSP budget. Run as batches, every job in a batch would wait for the slowest before the next
claim, so one stalled PSP call would hold up every other resource for the budget. In a lane each job
runs on its own and the worker claims only as many new jobs as there are free slots.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from server.domain.errors import RetryLater

log = logging.getLogger(__name__)


class TaskLane:
    def __init__(self, what: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a lane needs at least one slot")
        self._what = what
        self._capacity = capacity
        self._running: set[asyncio.Task[None]] = set()

    @property
    def free(self) -> int:
        return self._capacity - len(self._running)

    @property
    def running(self) -> int:
        return len(self._running)

    def start(self, job: Coroutine[Any, Any, None]) -> None:
        if self.free <= 0:
            job.close()
            raise RuntimeError(f"{self._what}: no free slot (claim at most `free` jobs)")
        task = asyncio.create_task(job, name=self._what)
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if task.cancelled():
            return
        failure = task.exception()
        # RetryLater means the database went away mid-job: the claim's lease runs out and a later
        # round retries, as it does after a crash. Anything else is a bug worth a stack trace.
        if failure is not None and not isinstance(failure, RetryLater):
            log.error("%s failed", self._what, exc_info=failure)

    async def stop(self, grace_seconds: float) -> int:
        """Waits up to `grace_seconds` for the running jobs, then cancels the rest; returns how many
        were cancelled. A cancelled job is like one cut by a crash: its lease runs out and another
        worker takes it over, so stopping never loses work."""
        running = set(self._running)
        if not running:
            return 0
        _, pending = await asyncio.wait(running, timeout=max(0.0, grace_seconds))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        return len(pending)
