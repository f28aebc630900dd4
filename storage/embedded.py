"""Embedded PostgreSQL (pgserver) for the zero-configuration default and for tests.

When PAYMENTS_DATABASE_URL is unset, `payments serve` keeps a real PostgreSQL cluster in
PAYMENTS_DATA_DIR, started on a unix socket that only this machine can reach.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, *, stop_on_close: bool = True) -> None:
        self.data_dir = data_dir
        self._stop_on_close = stop_on_close
        self._server: Any = None

    def start(self) -> str:
        """Starts (or joins) the cluster and returns its connection URI."""
        import pgserver  # imported lazily: it is not needed when a database URL is configured

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop" if self._stop_on_close else None)
        return str(self._server.get_uri())

    def uri(self, database: str | None = None) -> str:
        assert self._server is not None, "start() first"
        return str(self._server.get_uri(database))

    def close(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
