"""Embedded PostgreSQL (pgserver) for the zero-configuration default and for tests.

When PAYMENTS_DATABASE_URL is unset, `payments serve` keeps a real PostgreSQL cluster in
PAYMENTS_DATA_DIR, started on a unix socket that only this machine can reach.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# Server settings the service needs, which PostgreSQL reads only when it starts: logical decoding, so a
# Debezium connector (or a test) can stream the outbox through a replication slot (docs/outbox.md).
# Minimums: a larger value set by hand is kept.
LOGICAL_REPLICATION = {"max_replication_slots": 10, "max_wal_senders": 10}
WAL_LEVEL = "logical"

_CHECK_SETTINGS = f"""
    SELECT 'pending=' || count(*) FROM pg_settings
    WHERE (name = 'wal_level' AND setting <> '{WAL_LEVEL}')
       OR {" OR ".join(f"(name = '{name}' AND setting::int < {least})" for name, least in LOGICAL_REPLICATION.items())};
"""
_APPLY_SETTINGS = f"ALTER SYSTEM SET wal_level = '{WAL_LEVEL}';\n" + "".join(
    f"ALTER SYSTEM SET {name} = {least};\n" for name, least in LOGICAL_REPLICATION.items()
)


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
        _ensure_settings(self._server)
        return str(self._server.get_uri())

    def uri(self, database: str | None = None) -> str:
        assert self._server is not None, "start() first"
        return str(self._server.get_uri(database))

    def close(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def _ensure_settings(server: Any) -> None:
    """Writes the settings with ALTER SYSTEM (postgresql.auto.conf, in the data directory) and restarts
    the cluster once if they are not in effect: on its first start, and on a cluster from a release before
    them. pgserver starts PostgreSQL with fixed options, so this is the only way in; every later start
    reads them from the data directory with no restart."""
    import pgserver

    found = re.search(r"pending=(\d+)", server.psql(_CHECK_SETTINGS))
    if found is None or found.group(1) == "0":
        return
    server.psql(_APPLY_SETTINGS)
    # pg_ctl restart reuses the options pgserver started it with (postmaster.opts: the socket directory).
    pgserver.pg_ctl(["-w", "-m", "fast", "-l", str(server.log), "restart"], pgdata=server.pgdata,
                    user=server.system_user, timeout=60)  # fmt: skip
    server.ensure_postgres_running()  # records the new postmaster, so cleanup() stops the right one
