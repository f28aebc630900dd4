"""Offline PSP sandboxes that speak each PSP's wire protocol, so integration tests need no network."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Protocol


class Stoppable(Protocol):
    def stop(self) -> None: ...


def listen_arguments(description: str, default_port: int) -> argparse.ArgumentParser:
    """A sandbox's command line, starting with where it listens; the caller adds its own options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    return parser


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
