-- The transactional outbox (docs/outbox.md): one row per status transition of a payment, refund or payout,
-- written by PostgreSQL in the transition's own transaction, in the shape Debezium's Outbox Event Router
-- publishes unchanged (id, aggregatetype, aggregateid, type, payload) and the event feed reads back.
--
-- Expand-only: a new table, functions, a replaced trigger function and a publication. Servers of the previous
-- release keep working: they do not know the table, and the trigger adds its rows to the writes they
-- already make.

CREATE TABLE outbox_events (
    id            uuid        PRIMARY KEY,  -- time-ordered (UUIDv7), Debezium's event id
    seq           bigint      GENERATED ALWAYS AS IDENTITY,  -- insertion order (unique by the sequence)
    txid          xid8        NOT NULL DEFAULT pg_current_xact_id(),  -- the writing transaction
    client_id     text        NOT NULL,
    aggregatetype text        NOT NULL,  -- 'payment' | 'refund' | 'payout' (Debezium route.by.field)
    aggregateid   text        NOT NULL,  -- the public id: pay_…, re_…, po_…
    type          text        NOT NULL,  -- '<aggregatetype>.<lower(status)>', e.g. payment.succeeded
    payload       jsonb       NOT NULL,  -- the resource as of the transition, in protobuf's JSON mapping
    traceparent   text,                  -- W3C traceparent of the operation that caused the transition
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- The feed: a client's events in (txid, seq) order, read only below the oldest running transaction.
CREATE INDEX outbox_events_feed ON outbox_events (client_id, txid, seq);
-- Retention: the worker deletes old rows in batches found through this index. A BRIN index: rows arrive in
-- time order, so a summary per block range finds the old ones, and an insert into the newest range
-- (not yet summarized) costs nothing, where a B-tree would take an entry for every event of every charge.
CREATE INDEX outbox_events_created ON outbox_events USING brin (created_at) WITH (autosummarize = on);

-- A UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then the random bits of a version 4 UUID
-- with the version nibble turned from 4 (0100) into 7 (0111). Same layout as server/domain/ids.py uuid7.
CREATE FUNCTION outbox_uuid7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING
        substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6),
        52, 1), 53, 1), 'hex')::uuid
$$;

-- The payload renders exactly what server/api/convert.py renders, through protobuf's JSON mapping
-- (json_format.MessageToDict, preserving_proto_field_name=True): proto field names, enum value names,
-- int64 as a string, RFC 3339 timestamps, and no field that is unset or has its default value.
-- tests/integration/test_outbox.py compares the two for every resource shape, so they cannot part.
-- The builders use NULL for "omitted" and jsonb_strip_nulls removes them (a set message stays, even
-- empty: Money of zero EUR is {"currency": "EUR"}, as protobuf writes it).

-- google.protobuf.Timestamp: "2026-11-30T12:00:00Z", with 3, 6 or no fractional digits as protobuf
-- chooses (PostgreSQL keeps microseconds).
CREATE FUNCTION outbox_time(at timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') || CASE
        WHEN to_char(at AT TIME ZONE 'UTC', 'US') = '000000' THEN ''
        WHEN to_char(at AT TIME ZONE 'UTC', 'US') LIKE '%000' THEN to_char(at AT TIME ZONE 'UTC', '.MS')
        ELSE to_char(at AT TIME ZONE 'UTC', '.US') END || 'Z'
$$;

CREATE FUNCTION outbox_money(amount_minor bigint, currency text) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object('amount_minor', NULLIF(amount_minor, 0)::text, 'currency', NULLIF(currency, ''))
$$;

-- failure_pb: set when failure_code is (server/storage/rows.py failure_of).
CREATE FUNCTION outbox_failure(code text, message text, decline_code text) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN code IS NOT NULL THEN jsonb_build_object(
        'code', NULLIF(code, ''), 'message', NULLIF(message, ''), 'decline_code', NULLIF(decline_code, '')) END
$$;

-- payment_pb. next_action is never stored (it can hold a client secret), so it is never in an event.
CREATE FUNCTION outbox_payment_payload(p payments) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'id', 'pay_' || replace(p.id::text, '-', ''),
        'status', 'PAYMENT_STATUS_' || p.status,
        'amount', outbox_money(p.amount_minor, p.currency),
        'amount_refunded', outbox_money(p.amount_refunded, p.currency),
        'customer_id', NULLIF(p.customer_id, ''),
        'description', NULLIF(p.description, ''),
        'metadata', NULLIF(p.metadata, '{}'::jsonb),
        'psp', NULLIF(p.psp, ''),
        'psp_reference', NULLIF(p.psp_reference, ''),
        'failure', outbox_failure(p.failure_code, p.failure_message, p.failure_decline_code),
        'create_time', outbox_time(p.created_at),
        'update_time', outbox_time(p.updated_at),
        'capture_method', CASE WHEN p.capture_method = 'manual' THEN 'CAPTURE_METHOD_MANUAL' END,
        'amount_capturable', outbox_money(p.amount_capturable, p.currency),
        'capturable_until', CASE WHEN p.amount_capturable <> 0 THEN outbox_time(p.capturable_until) END,
        'amount_captured', outbox_money(p.amount_captured, p.currency),
        'cancellation_reason', NULLIF(p.cancellation_reason, '')
    ))
$$;

CREATE FUNCTION outbox_refund_payload(r refunds) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'id', 're_' || replace(r.id::text, '-', ''),
        'payment_id', 'pay_' || replace(r.payment_id::text, '-', ''),
        'status', 'REFUND_STATUS_' || r.status,
        'amount', outbox_money(r.amount_minor, r.currency),
        'reason', NULLIF(r.reason, ''),
        'psp', NULLIF(r.psp, ''),
        'psp_reference', NULLIF(r.psp_reference, ''),
        'failure', outbox_failure(r.failure_code, r.failure_message, r.failure_decline_code),
        'create_time', outbox_time(r.created_at),
        'update_time', outbox_time(r.updated_at)
    ))
$$;

-- The IBAN masked as server/domain/sepa_scheme.py mask_iban does: country code, ****, last four.
CREATE FUNCTION outbox_masked_iban(iban text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN length(regexp_replace(iban, '\s', '', 'g')) < 8 THEN '****'
                ELSE upper(left(regexp_replace(iban, '\s', '', 'g'), 2)) || '****'
                     || upper(right(regexp_replace(iban, '\s', '', 'g'), 4)) END
$$;

-- payout_pb: destination is the oneof sepa_account (IBAN masked) | stripe_account_id.
CREATE FUNCTION outbox_payout_payload(o payouts) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'id', 'po_' || replace(o.id::text, '-', ''),
        'status', 'PAYOUT_STATUS_' || o.status,
        'amount', outbox_money(o.amount_minor, o.currency),
        'sepa_account', CASE WHEN o.destination->>'type' = 'sepa' THEN jsonb_build_object(
            'iban', NULLIF(outbox_masked_iban(o.destination->>'iban'), ''),
            'bic', NULLIF(o.destination->>'bic', ''),
            'name', NULLIF(o.destination->>'name', ''),
            'address', jsonb_build_object(
                'country', NULLIF(o.destination->>'country', ''), 'town', NULLIF(o.destination->>'town', ''),
                'street', NULLIF(o.destination->>'street', ''), 'postcode', NULLIF(o.destination->>'postcode', ''))
        ) END,
        'stripe_account_id', CASE WHEN o.destination->>'type' = 'stripe_account' THEN o.destination->>'account_id' END,
        'instant', CASE WHEN o.instant THEN true END,
        'reference', NULLIF(o.reference, ''),
        'psp', NULLIF(o.psp, ''),
        'psp_reference', NULLIF(o.psp_reference, ''),
        'failure', outbox_failure(o.failure_code, o.failure_message, o.failure_decline_code),
        'create_time', outbox_time(o.created_at),
        'update_time', outbox_time(o.updated_at)
    ))
$$;

-- One outbox row per transition, in the transition's transaction, written by the trigger that already
-- checks the transition and appends it to resource_events (0001_core.sql): one trigger call per
-- transition, not two (docs/performance.md has what the outbox costs). A BEFORE trigger sees NEW as it
-- will be stored, and the idempotency key a claim inserts in the same statement: the claim's CTE has
-- inserted it before the resource row reaches this trigger, and a volatile function's queries see the
-- calling statement's changes so far. The traceparent is the one stored with the key of the operation
-- that caused the transition: the capture's or cancel's key when the statement finishes that action (it
-- clears action_key), else the resource's own key. Both are primary-key look-ups.
-- Replacing the function is expand-only: the previous release's servers make the same writes, and get
-- the outbox rows with them.
CREATE OR REPLACE FUNCTION guard_status_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    previous text := CASE WHEN TG_OP = 'INSERT' THEN '' ELSE OLD.status END;
    cause text := NEW.idempotency_key;
    public_id text := replace(NEW.id::text, '-', '');
    payload jsonb;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status = OLD.status THEN
        RETURN NEW;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM status_transitions
                   WHERE resource_type = TG_ARGV[0] AND from_status = previous AND to_status = NEW.status) THEN
        RAISE EXCEPTION 'illegal % transition from "%" to "%"', TG_ARGV[0], previous, NEW.status
            USING ERRCODE = 'PA409';
    END IF;
    INSERT INTO resource_events (client_id, resource_type, resource_id, from_status, to_status,
                                 actor, reason, occurred_at)
    VALUES (NEW.client_id, TG_ARGV[0], NEW.id, NULLIF(previous, ''), NEW.status,
            NEW.last_actor, NEW.last_reason, NEW.updated_at);
    -- NEW has the row type of the trigger's table, so each branch names its own renderer; PL/pgSQL
    -- plans a branch only when it runs.
    CASE TG_ARGV[0]
        WHEN 'payment' THEN
            payload := outbox_payment_payload(NEW);
            public_id := 'pay_' || public_id;
            IF TG_OP = 'UPDATE' AND OLD.action_key IS NOT NULL AND NEW.action_key IS NULL THEN
                cause := OLD.action_key;
            END IF;
        WHEN 'refund' THEN
            payload := outbox_refund_payload(NEW);
            public_id := 're_' || public_id;
        ELSE
            payload := outbox_payout_payload(NEW);
            public_id := 'po_' || public_id;
    END CASE;
    INSERT INTO outbox_events (id, client_id, aggregatetype, aggregateid, type, payload, traceparent)
    VALUES (outbox_uuid7(), NEW.client_id, TG_ARGV[0], public_id, TG_ARGV[0] || '.' || lower(NEW.status), payload,
            (SELECT trace_context FROM idempotency_keys WHERE client_id = NEW.client_id AND idempotency_key = cause));
    RETURN NEW;
END
$$;

-- What Debezium's PostgreSQL connector (pgoutput) streams: the inserts. The Outbox Event Router reads
-- nothing else, and retention's deletes would only be decoded to be dropped. Creating a publication needs
-- the CREATE privilege on the database; where the migrating role lacks it, a DBA creates it
-- (docs/outbox.md) and the migration goes on: the outbox itself does not depend on it.
DO $$
BEGIN
    CREATE PUBLICATION payments_outbox FOR TABLE outbox_events WITH (publish = 'insert');
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'payments_outbox publication not created (insufficient privilege): see docs/outbox.md';
END
$$;
