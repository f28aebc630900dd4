"""The worker's poll schedule with and without webhooks (WorkerPolicy.poll_interval), and its wake-up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

from server.app.store import Backlog
from server.app.worker import BackgroundWorker, WorkerPolicy

POLICY = WorkerPolicy(first_poll_seconds=1.0, max_poll_interval_seconds=300.0, max_return_poll_interval_seconds=3600.0)
WEBHOOKS = WorkerPolicy(webhook_psps=frozenset({"stripe"}), webhook_poll_seconds=60.0)


def test_without_webhooks_polls_back_off_from_the_first_interval_to_the_cap() -> None:
    assert [POLICY.poll_interval("stripe", n, paid=False) for n in (0, 1, 2, 8, 9, 40)] == [1, 2, 4, 256, 300, 300]
    assert POLICY.poll_interval("bank", 20, paid=True) == 3600


def test_with_webhooks_their_psp_is_polled_at_most_every_webhook_poll_seconds() -> None:
    assert [WEBHOOKS.poll_interval("stripe", n, paid=False) for n in (0, 1, 5, 6, 7, 9)] == [60, 60, 60, 64, 128, 300]
    assert WEBHOOKS.poll_interval("bank", 1, paid=False) == 2, "a PSP without webhooks keeps its schedule"
    hourly = WorkerPolicy(webhook_psps=frozenset({"stripe"}), webhook_poll_seconds=3600.0)
    assert hourly.poll_interval("stripe", 9, paid=False) == 3600, "longer than the cap if so configured"


class CountingStore:
    """A WorkerStore with no work that counts the worker's rounds."""

    def __init__(self) -> None:
        self.rounds = 0

    async def claim_stalled(self, *, idle_seconds: float, limit: int, lease_seconds: float) -> list[Any]:
        self.rounds += 1
        return []

    async def claim_due_polls(self, *, limit: int, lease_seconds: float) -> list[Any]:
        return []

    async def prune_replies(self, *, older_than_seconds: float, limit: int) -> int:
        return 0

    async def prune_webhook_events(self, *, older_than_seconds: float, limit: int) -> int:
        return 0

    async def prune_events(self, *, older_than_seconds: float, limit: int) -> int:
        return 0

    async def warn_capture_once(self, payment_id: Any) -> bool:
        raise AssertionError("there is no payment to warn about")

    async def record_poll(self, target: Any, transition: Any, next_poll_in: float | None) -> bool:
        raise AssertionError("there is nothing to poll")

    async def measure_backlog(self) -> Backlog:
        return Backlog(0.0, {})


async def test_a_wake_up_starts_a_round_at_once_instead_of_after_the_interval() -> None:
    store = CountingStore()
    none = cast(Any, None)
    worker = BackgroundWorker(none, store, none, none, WorkerPolicy(interval_seconds=3600.0), lambda: datetime.now(UTC))
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(_until(lambda: store.rounds == 1), 5)
        await asyncio.sleep(0.05)
        assert store.rounds == 1, "the next round is an hour away"
        worker.wake()
        await asyncio.wait_for(_until(lambda: store.rounds == 2), 1)
        worker.wake()
        worker.wake()  # wake-ups while a round is due merge into one
        await asyncio.wait_for(_until(lambda: store.rounds == 3), 1)
        await asyncio.sleep(0.05)
        assert store.rounds == 3
    finally:
        stop.set()
        await asyncio.wait_for(running, 5)


async def _until(check: Any) -> None:
    while not check():
        await asyncio.sleep(0.001)
