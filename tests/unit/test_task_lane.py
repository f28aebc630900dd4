"""TaskLane: jobs run side by side within a capacity; stopping waits out a grace, then cancels."""

from __future__ import annotations

import asyncio
import logging

import pytest

from server.app.task_lane import TaskLane
from server.domain.errors import StorageUnavailable


async def test_a_slow_job_does_not_hold_up_the_others() -> None:
    lane = TaskLane("job", capacity=3)
    release = asyncio.Event()
    done: list[str] = []

    async def job(name: str, wait: bool) -> None:
        if wait:
            await release.wait()
        done.append(name)

    lane.start(job("slow", wait=True))
    lane.start(job("quick-1", wait=False))
    lane.start(job("quick-2", wait=False))
    assert lane.free == 0
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert done == ["quick-1", "quick-2"]
    assert (lane.running, lane.free) == (1, 2)
    release.set()
    assert await lane.stop(grace_seconds=1.0) == 0
    assert done == ["quick-1", "quick-2", "slow"]


async def test_no_job_starts_beyond_the_capacity() -> None:
    lane = TaskLane("job", capacity=1)
    lane.start(asyncio.sleep(0.01))
    extra = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="no free slot"):
        lane.start(extra)
    await lane.stop(grace_seconds=1.0)
    with pytest.raises(ValueError, match="at least one slot"):
        TaskLane("job", capacity=0)


async def test_stop_cancels_what_outlives_the_grace() -> None:
    lane = TaskLane("job", capacity=2)
    cancelled = asyncio.Event()

    async def endless() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    lane.start(endless())
    lane.start(asyncio.sleep(0.01))
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await lane.stop(grace_seconds=0.2) == 1
    assert 0.2 <= loop.time() - started < 2.0
    assert cancelled.is_set()
    assert lane.running == 0


async def test_a_failed_job_is_logged_and_frees_its_slot(caplog: pytest.LogCaptureFixture) -> None:
    lane = TaskLane("status poll", capacity=2)

    async def broken() -> None:
        raise KeyError("bug")

    async def database_gone() -> None:
        raise StorageUnavailable()

    with caplog.at_level(logging.INFO, logger="server.app.task_lane"):
        lane.start(broken())
        lane.start(database_gone())
        await lane.stop(grace_seconds=1.0)
    assert lane.free == 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["status poll failed"]  # the lost database is retried, not a bug
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[0] is KeyError
