"""SQL spans only inside recorded traces: the asyncpg instrumentation, skipped where nothing would be kept.

The stock instrumentation builds a span (attributes, context attach and detach) for every statement,
also when the trace is not sampled or when no trace is active at all. Under head sampling that was most
of what an unsampled charge paid for tracing (docs/performance.md). A statement outside any trace
(the worker's polling) would start a root trace of one span, which nobody can follow; it gets none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

Wrapped = Callable[..., Awaitable[Any]]


def _recording() -> bool:
    return trace.get_current_span().is_recording()


class SampledAsyncPGInstrumentor(AsyncPGInstrumentor):
    """asyncpg spans without parameters, for statements run inside a recorded span only."""

    async def _do_execute(self, func: Wrapped, instance: Any, args: Any, kwargs: Any) -> Any:
        if not _recording():
            return await func(*args, **kwargs)
        return await super()._do_execute(func, instance, args, kwargs)  # type: ignore[no-untyped-call]

    async def _do_cursor_execute(self, func: Wrapped, instance: Any, args: Any, kwargs: Any) -> Any:
        if not _recording():
            return await func(*args, **kwargs)
        return await super()._do_cursor_execute(func, instance, args, kwargs)  # type: ignore[no-untyped-call]

    async def _do_prepared_execute(self, func: Wrapped, instance: Any, args: Any, kwargs: Any) -> Any:
        if not _recording():
            return await func(*args, **kwargs)
        return await super()._do_prepared_execute(func, instance, args, kwargs)  # type: ignore[no-untyped-call]
