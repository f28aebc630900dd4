"""Seeds millions of finished payments and keys, to show that a charge's cost does not grow with them.

Rows are generated in PostgreSQL in batches (set-based SQL, triggers skipped; the matching audit events
and outbox events are inserted in bulk), then the tables are analyzed, as they would be in a long-running
database.
"""

from __future__ import annotations

import asyncpg

BATCH = 500_000

# Ids shaped like the service's own (server.domain.ids.new_id, UUIDv7): the creation millisecond, then
# bits of an md5, so the three statements of a batch agree on each payment's id.
_SEED_ID = """
    CREATE FUNCTION pg_temp.seed_id(g bigint) RETURNS uuid LANGUAGE sql STABLE AS $$
        SELECT (lpad(to_hex((extract(epoch FROM now() - make_interval(secs => g)) * 1000)::bigint), 12, '0')
                || '7' || substr(md5('p' || g), 1, 3) || '8' || substr(md5('p' || g), 4, 15))::uuid
    $$
"""

_KEYS = """
    INSERT INTO idempotency_keys (client_id, idempotency_key, operation, fingerprint, resource_id, recovery_point,
                                  reply_code, reply_body, reply_stored_at, created_at, updated_at)
    SELECT 'default', 'seed-' || g, 'charge', '\\x00'::bytea, pg_temp.seed_id(g), 'finished', 0, '\\x00'::bytea,
           now(), now() - make_interval(secs => g), now()
    FROM generate_series($1::bigint, $2::bigint) g
"""
_PAYMENTS = """
    INSERT INTO payments (id, client_id, idempotency_key, status, currency, amount_minor, amount_captured,
                          payment_method, customer_id, description, metadata, psp, psp_reference,
                          created_at, updated_at, last_actor, last_reason)
    SELECT pg_temp.seed_id(g), 'default', 'seed-' || g, 'SUCCEEDED', 'EUR', 1000 + g % 5000, 1000 + g % 5000,
           'pm_card_visa', 'cus_' || (g % 100000), '', '{}'::jsonb, 'inprocess', 'seed_' || g,
           now() - make_interval(secs => g), now() - make_interval(secs => g), 'seed', 'seed'
    FROM generate_series($1::bigint, $2::bigint) g
"""
_EVENTS = """
    INSERT INTO resource_events (client_id, resource_type, resource_id, from_status, to_status, actor, reason,
                                 occurred_at)
    SELECT 'default', 'payment', pg_temp.seed_id(g), NULL, 'PENDING', 'seed', 'created',
           now() - make_interval(secs => g)
    FROM generate_series($1::bigint, $2::bigint) g
    UNION ALL
    SELECT 'default', 'payment', pg_temp.seed_id(g), 'PENDING', 'SUCCEEDED', 'seed', 'psp:succeeded',
           now() - make_interval(secs => g)
    FROM generate_series($1::bigint, $2::bigint) g
"""

# Two outbox events per payment, as the transition trigger writes them (docs/outbox.md), with a payload of
# the usual size. Their ids are UUIDv7 of the seeding time, which keeps the primary key's right-hand
# inserts as in production; created_at is spread like the payments'.
_OUTBOX = """
    INSERT INTO outbox_events (id, client_id, aggregatetype, aggregateid, type, payload, created_at)
    SELECT outbox_uuid7(), 'default', 'payment', 'pay_' || replace(pg_temp.seed_id(g)::text, '-', ''), t.type,
           jsonb_build_object('id', 'pay_' || replace(pg_temp.seed_id(g)::text, '-', ''), 'status', t.status,
                              'amount', jsonb_build_object('amount_minor', (1000 + g % 5000)::text, 'currency', 'EUR'),
                              'customer_id', 'cus_' || (g % 100000), 'psp', 'inprocess', 'psp_reference', 'seed_' || g,
                              'create_time', outbox_time(now() - make_interval(secs => g)),
                              'update_time', outbox_time(now() - make_interval(secs => g))),
           now() - make_interval(secs => g)
    FROM generate_series($1::bigint, $2::bigint) g
    CROSS JOIN (VALUES ('payment.pending', 'PAYMENT_STATUS_PENDING'),
                       ('payment.succeeded', 'PAYMENT_STATUS_SUCCEEDED')) AS t (type, status)
"""


async def seed(dsn: str, rows: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")  # the bulk load skips row triggers
        await conn.execute(_SEED_ID)
        for start in range(1, rows + 1, BATCH):
            end = min(rows, start + BATCH - 1)
            async with conn.transaction():
                await conn.execute(_KEYS, start, end)
                await conn.execute(_PAYMENTS, start, end)
                await conn.execute(_EVENTS, start, end)
                await conn.execute(_OUTBOX, start, end)
            print(f"    seeded {end:,} / {rows:,}", flush=True)
        await conn.execute("SET session_replication_role = origin")
        # What a database that grew over months has had done to it: vacuumed (visibility map, hint bits),
        # analyzed, and checkpointed, so neither a vacuum of the bulk load nor the checkpoints its WAL
        # forces land in the measurement.
        await conn.execute("VACUUM (ANALYZE) idempotency_keys, payments, resource_events, outbox_events")
        try:
            await conn.execute("CHECKPOINT")
        except asyncpg.InsufficientPrivilegeError:
            print("    (no CHECKPOINT: the database user may not; checkpoints may land in the measurement)")
    finally:
        await conn.close()
