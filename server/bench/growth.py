"""Seeds millions of finished payments and keys, to show that a charge's cost does not grow with them.

Rows are generated in PostgreSQL in batches (set-based SQL, triggers skipped; the matching audit events
are inserted in bulk), then the tables are analyzed, as they would be in a long-running database.
"""

from __future__ import annotations

import asyncpg

BATCH = 500_000

_KEYS = """
    INSERT INTO idempotency_keys (client_id, idempotency_key, operation, fingerprint, resource_id, recovery_point,
                                  reply_code, reply_body, reply_stored_at, created_at, updated_at)
    SELECT 'default', 'seed-' || g, 'charge', '\\x00'::bytea, md5('p' || g)::uuid, 'finished', 0, '\\x00'::bytea,
           now(), now() - make_interval(secs => g), now()
    FROM generate_series($1::bigint, $2::bigint) g
"""
_PAYMENTS = """
    INSERT INTO payments (id, client_id, idempotency_key, status, currency, amount_minor, amount_captured,
                          payment_method, customer_id, description, metadata, psp, psp_reference,
                          created_at, updated_at, last_actor, last_reason)
    SELECT md5('p' || g)::uuid, 'default', 'seed-' || g, 'SUCCEEDED', 'EUR', 1000 + g % 5000, 1000 + g % 5000,
           'pm_card_visa', 'cus_' || (g % 100000), '', '{}'::jsonb, 'inprocess', 'seed_' || g,
           now() - make_interval(secs => g), now() - make_interval(secs => g), 'seed', 'seed'
    FROM generate_series($1::bigint, $2::bigint) g
"""
_EVENTS = """
    INSERT INTO resource_events (client_id, resource_type, resource_id, from_status, to_status, actor, reason,
                                 occurred_at)
    SELECT 'default', 'payment', md5('p' || g)::uuid, NULL, 'PENDING', 'seed', 'created',
           now() - make_interval(secs => g)
    FROM generate_series($1::bigint, $2::bigint) g
    UNION ALL
    SELECT 'default', 'payment', md5('p' || g)::uuid, 'PENDING', 'SUCCEEDED', 'seed', 'psp:succeeded',
           now() - make_interval(secs => g)
    FROM generate_series($1::bigint, $2::bigint) g
"""


async def seed(dsn: str, rows: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")  # the bulk load skips row triggers
        for start in range(1, rows + 1, BATCH):
            end = min(rows, start + BATCH - 1)
            async with conn.transaction():
                await conn.execute(_KEYS, start, end)
                await conn.execute(_PAYMENTS, start, end)
                await conn.execute(_EVENTS, start, end)
            print(f"    seeded {end:,} / {rows:,}", flush=True)
        await conn.execute("SET session_replication_role = origin")
        await conn.execute("ANALYZE idempotency_keys; ANALYZE payments; ANALYZE resource_events")
    finally:
        await conn.close()
