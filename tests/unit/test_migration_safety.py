"""Every migration newer than the previous release is one that release can live with (expand-only)."""

from __future__ import annotations

import tomllib

import pytest

from storage.migration_safety import problems
from storage.migrator import migration_files
from tests.support.processes import REPO

PREVIOUS = tomllib.loads((REPO / "previous_release.toml").read_text())


def test_every_migration_since_the_previous_release_is_expand_only() -> None:
    newer = [(name, sql) for version, name, sql in migration_files() if version > PREVIOUS["last_migration"]]
    assert newer, "previous_release.toml names the last migration of the release before this one"
    assert {name: problems(sql) for name, sql in newer} == {name: [] for name, _ in newer}


def test_the_previous_release_is_a_commit_of_this_repository_with_that_many_migrations() -> None:
    assert len(PREVIOUS["commit"]) == 40
    assert PREVIOUS["last_migration"] < max(version for version, _, _ in migration_files())


SAFE = [
    "CREATE TABLE ledger (id bigint PRIMARY KEY, note text NOT NULL);",
    "CREATE INDEX ledger_note ON ledger (note);",  # a new table: nobody else uses it yet
    "SET LOCAL lock_timeout = '5s'; ALTER TABLE payouts ADD COLUMN payee_name text;",
    "SET LOCAL lock_timeout = '5s'; ALTER TABLE payouts ADD COLUMN accepted boolean NOT NULL DEFAULT false;",
    "SET LOCAL lock_timeout = '5s'; ALTER TABLE payments ADD CONSTRAINT small CHECK (amount_minor < 10) NOT VALID;",
    "ALTER TABLE payments VALIDATE CONSTRAINT small;",
    "CREATE INDEX CONCURRENTLY refunds_listing ON refunds (client_id, created_at DESC, id DESC);",
    "SET LOCAL lock_timeout = '5s'; ALTER TABLE payments ALTER COLUMN description DROP NOT NULL;",
    "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; DROP TABLE payments $$;",
    "-- DROP TABLE payments; only a comment\nSELECT 'ALTER TABLE payments RENAME TO p';",
    "DROP INDEX IF EXISTS payments_unused;",
]
UNSAFE = {
    "DROP TABLE payouts;": "drops what the previous release may use",
    "SET LOCAL lock_timeout = '1s'; ALTER TABLE payments DROP COLUMN description;": "drops a column",
    "SET LOCAL lock_timeout = '1s'; ALTER TABLE refunds DROP reason;": "drops a column",
    "SET LOCAL lock_timeout = '1s'; ALTER TABLE payments RENAME COLUMN description TO memo;": "renames",
    "SET LOCAL lock_timeout = '1s'; ALTER TABLE payments RENAME TO charges;": "renames",
    "SET LOCAL lock_timeout = '1s'; ALTER TABLE payments ALTER COLUMN amount_minor TYPE numeric;": "type",
    "SET LOCAL lock_timeout = '1s'; ALTER TABLE payments ALTER amount_minor SET DATA TYPE numeric;": "type",
    "SET LOCAL lock_timeout = '1s'; ALTER TABLE payouts ADD COLUMN payee text NOT NULL;": "NOT NULL column",
    "SET LOCAL lock_timeout = '1s'; ALTER TABLE payouts ALTER COLUMN reference SET NOT NULL;": "NOT NULL that",
    "SET LOCAL lock_timeout = '1s'; ALTER TABLE payouts ADD COLUMN seen timestamptz DEFAULT now();": "volatile",
    "SET LOCAL lock_timeout = '1s'; ALTER TABLE payouts ALTER COLUMN psp DROP DEFAULT;": "drops a default",
    "SET LOCAL lock_timeout = '1s'; ALTER TABLE refunds ADD CONSTRAINT r CHECK (amount_minor < 9);": "NOT VALID",
    "ALTER TABLE payouts ADD COLUMN note text;": "lock_timeout",
    "CREATE INDEX refunds_by_status ON refunds (status);": "CONCURRENTLY",
    "CREATE UNIQUE INDEX IF NOT EXISTS x ON payments (psp_reference);": "CONCURRENTLY",
}


@pytest.mark.parametrize("sql", SAFE)
def test_what_the_previous_release_lives_with_passes(sql: str) -> None:
    assert problems(sql) == []


@pytest.mark.parametrize(("sql", "named"), UNSAFE.items())
def test_what_breaks_the_previous_release_is_named(sql: str, named: str) -> None:
    found = problems(sql)
    assert len(found) == 1, found
    assert named in found[0]
