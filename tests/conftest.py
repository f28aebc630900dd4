from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.harness import ServerHarness
from tests.support.postgres import PostgresForTests


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresForTests]:
    cluster = PostgresForTests()
    yield cluster
    cluster.close()


@pytest.fixture
def database_url(postgres: PostgresForTests) -> str:
    return postgres.new_database()


@pytest.fixture
def server(database_url: str) -> Iterator[ServerHarness]:
    harness = ServerHarness(database_url)
    yield harness
    harness.close()
