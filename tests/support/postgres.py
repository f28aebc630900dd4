"""PostgreSQL for tests: pgserver in a temporary folder, unless PAYMENTS_TEST_DATABASE_URL is set.

Each test gets its own freshly migrated database, so tests never see each other's rows. The embedded
cluster runs with wal_level=logical (storage/embedded.py), so tests can stream through replication slots;
an external one may not, and those tests skip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from storage.embedded import EmbeddedPostgres
from storage.migrator import migrate_dsn


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


class PostgresForTests:
    """One cluster per test session; `new_database()` hands out migrated, empty databases."""

    def __init__(self) -> None:
        self._embedded: EmbeddedPostgres | None = None
        self._dir: Path | None = None
        external = os.environ.get("PAYMENTS_TEST_DATABASE_URL")
        if external:
            self.admin_url = external
        else:
            # A short path: the unix socket lives in it and socket paths are limited to ~100 bytes.
            self._dir = Path(tempfile.mkdtemp(prefix="pgt", dir="/tmp"))
            self._embedded = EmbeddedPostgres(self._dir / "pg")
            self.admin_url = self._embedded.start()
        self._template = self._make_template()

    def _make_template(self) -> str:
        name = f"tmpl_{uuid.uuid4().hex[:12]}"

        async def create() -> None:
            conn = await asyncpg.connect(self.admin_url)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()
            await migrate_dsn(with_database(self.admin_url, name))

        asyncio.run(create())
        return name

    def new_database(self) -> str:
        """A database migrated to this release's schema."""
        return self._create(f'TEMPLATE "{self._template}"')

    def empty_database(self) -> str:
        """A database with no schema at all: for tests of the migrations themselves."""
        return self._create("TEMPLATE template0")

    def _create(self, template: str) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"

        async def create() -> None:
            conn = await asyncpg.connect(self.admin_url)
            try:
                await conn.execute(f'CREATE DATABASE "{name}" {template}')
            finally:
                await conn.close()

        asyncio.run(create())
        return with_database(self.admin_url, name)

    def close(self) -> None:
        if self._embedded is not None:
            self._embedded.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
