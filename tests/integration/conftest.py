from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from storage.database import Database, create_pool


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """The service's database wrapper on a fresh, migrated database of the test's own."""
    database = Database(await create_pool(database_url, max_size=4))
    yield database
    await database.close()
