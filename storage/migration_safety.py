"""What a migration may do while the previous release still serves (expand, then contract).

In a rolling deploy, old and new replicas serve against one schema: the new migrations run while the
previous release is still answering calls, and it keeps answering until the last old replica stops. So a
migration must leave the old code everything it reads and writes, and must not hold a lock on a busy
table for long. Dropping or renaming something, or tightening it, belongs to a later release, once no
server of the release that used it runs (the contract step).

`problems` reads one migration's SQL and names what breaks that. It is a reviewer's checklist made
executable, not a SQL parser: it reads the statements PostgreSQL DDL spells in a few ways, after
removing comments and function bodies. tests/unit/test_migration_safety.py runs it on every migration
newer than the previous release (previous_release.toml).
"""

from __future__ import annotations

import re

# Tables every call writes or reads: a lock held on one of them for the length of a scan or a rewrite
# stops the service. (A table created by the migration itself is empty and read by no old code.)
HOT_TABLES = frozenset({
    "idempotency_keys", "payments", "refunds", "payouts", "resource_events", "outbox_events",
    "stripe_webhook_events", "status_transitions",
})  # fmt: skip

# Function calls that make a column default volatile: ADD COLUMN with one rewrites the whole table.
_VOLATILE = re.compile(r"\b(now|clock_timestamp|random|gen_random_uuid|uuid_generate_v4|nextval|timeofday)\s*\(")

_COMMENT = re.compile(r"--[^\n]*")
_DOLLAR_QUOTED = re.compile(r"\$(\w*)\$.*?\$\1\$", re.DOTALL)
_STRING = re.compile(r"'(?:[^']|'')*'")
_WORDS = re.compile(r"\s+")


def statements(sql: str) -> list[str]:
    """The statements of a migration, lower-cased on one line each, without comments, string literals
    (kept as '') or function bodies (kept as $$$$)."""
    text = _COMMENT.sub(" ", sql)
    text = _DOLLAR_QUOTED.sub("$$$$", text)
    text = _STRING.sub("''", text)
    return [_WORDS.sub(" ", part).strip().lower() for part in text.split(";") if part.strip()]


def problems(sql: str) -> list[str]:
    """What in this migration the previous release cannot live with, one line each; empty if nothing."""
    found: list[str] = []
    created = set(re.findall(r"create table (?:if not exists )?(\w+)", " ".join(statements(sql))))
    hot = HOT_TABLES - created
    sets_lock_timeout = False
    for statement in statements(sql):
        if re.match(r"set (local )?lock_timeout\b", statement):
            sets_lock_timeout = True
        found.extend(_problems_of(statement, hot, sets_lock_timeout))
    return found


def _problems_of(statement: str, hot: frozenset[str], sets_lock_timeout: bool) -> list[str]:
    found: list[str] = []
    short = statement[:100]
    if re.match(r"drop (table|view|materialized view|function|type|sequence|trigger)\b", statement):
        found.append(f"drops what the previous release may use: {short}")
    if re.match(r"alter table\b", statement):
        table = _altered_table(statement)
        if re.search(r"\bdrop (column )?(if exists )?(?!constraint\b|default\b|not null\b|expression\b|identity\b)\w+",
                     statement):  # fmt: skip
            found.append(f"drops a column the previous release may read or write: {short}")
        if re.search(r"\bdrop default\b", statement):
            found.append(f"drops a default the previous release's inserts may rely on: {short}")
        if re.search(r"\brename\b", statement):
            found.append(f"renames what the previous release uses by name: {short}")
        if re.search(r"\balter (column )?\w+ (set data )?type\b", statement):
            found.append(f"changes a column's type (a rewrite under lock; the old code's values may not fit): {short}")
        if re.search(r"\bset not null\b", statement):
            found.append(f"makes a column NOT NULL that the previous release may leave empty: {short}")
        for column in re.findall(r"\badd (?:column )?(?:if not exists )?(?!constraint\b)(\w+ [^,]*)", statement):
            if re.search(r"\bnot null\b", column) and not re.search(r"\bdefault\b", column):
                found.append(f"adds a NOT NULL column without a default: the previous release's inserts fail: {short}")
            if re.search(r"\bdefault\b", column) and _VOLATILE.search(column):
                found.append(f"adds a column with a volatile default: the table is rewritten under lock: {short}")
        if table in hot:
            constraint = re.search(r"\badd constraint \w+ (check|foreign key|unique|primary key|exclude)\b", statement)
            if constraint is not None and "not valid" not in statement:
                found.append(
                    f"adds a constraint on {table} that is checked under lock (use NOT VALID, then VALIDATE): {short}"
                )
            validating = re.fullmatch(r"alter table (?:only )?\w+ validate constraint \w+", statement)
            if not sets_lock_timeout and validating is None:  # VALIDATE takes a lock that lets writes through
                found.append(f"alters {table} without SET LOCAL lock_timeout first: queued behind a long transaction, "
                             f"its lock would stop every call: {short}")  # fmt: skip
    index = re.match(r"create (unique )?index (concurrently )?(?:if not exists )?\w* ?on (?:only )?(\w+)", statement)
    if index is not None and index.group(2) is None and index.group(3) in hot:
        found.append(f"builds an index on {index.group(3)} under a write lock (use CREATE INDEX CONCURRENTLY): {short}")
    return found


def _altered_table(statement: str) -> str:
    match = re.match(r"alter table (?:if exists )?(?:only )?(\w+)", statement)
    return match.group(1) if match else ""
