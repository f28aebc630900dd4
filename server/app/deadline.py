"""The caller's deadline, carried from the gRPC edge to every retry loop and PSP call."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute point on the monotonic clock, or none (the caller set no deadline)."""

    at: float | None

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        return cls(None if seconds is None else time.monotonic() + seconds)

    @classmethod
    def none(cls) -> Deadline:
        return cls(None)

    def remaining(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def clamp(self, seconds: float) -> float:
        """`seconds`, or less if the deadline comes first."""
        left = self.remaining()
        return seconds if left is None else min(seconds, left)

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0.0
