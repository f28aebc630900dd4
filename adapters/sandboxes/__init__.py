"""Offline PSP sandboxes that speak each PSP's wire protocol, so integration tests need no network."""

from __future__ import annotations

import signal
import threading
from typing import Protocol


class Stoppable(Protocol):
    def stop(self) -> None: ...


def run_until_signalled(*sandboxes: Stoppable) -> None:
    """Keeps started sandboxes serving in the foreground until SIGINT/SIGTERM, then stops them."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        for sandbox in sandboxes:
            sandbox.stop()
