-- Core schema: idempotency keys, payments, refunds, payouts, the transition table and the event log.
-- Every row carries the calling client's id; every guarantee is a constraint, a conditional update or
-- a trigger here, so it holds across any number of server processes.

CREATE TABLE idempotency_keys (
    client_id        text        NOT NULL,
    idempotency_key  text        NOT NULL,
    operation        text        NOT NULL CHECK (operation IN ('charge', 'refund', 'payout')),
    fingerprint      bytea       NOT NULL,
    resource_id      uuid,       -- NULL when a business error was stored before a resource existed
    recovery_point   text        NOT NULL CHECK (recovery_point IN ('started', 'finished')),
    locked_until     timestamptz,          -- lease of the execution in flight
    lock_token       uuid,
    reply_code       integer,              -- gRPC code of the stored reply, 0 = OK
    reply_body       bytea,                -- the reply bytes as sent; pruned after the retention period
    reply_stored_at  timestamptz,
    trace_context    text,                 -- W3C traceparent of the request that claimed the key
    executions       integer     NOT NULL DEFAULT 1,  -- how many times the key was (re)started
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, idempotency_key),
    CHECK ((recovery_point = 'finished') = (reply_code IS NOT NULL))
);
-- The recovery worker looks for keys stopped at a recovery point.
CREATE INDEX idempotency_keys_unfinished ON idempotency_keys (locked_until)
    WHERE recovery_point <> 'finished';
-- Retention pruning of stored replies.
CREATE INDEX idempotency_keys_replies ON idempotency_keys (reply_stored_at)
    WHERE reply_body IS NOT NULL;

CREATE TABLE payments (
    id                    uuid        PRIMARY KEY,
    client_id             text        NOT NULL,
    idempotency_key       text        NOT NULL,
    status                text        NOT NULL,
    currency              text        NOT NULL,
    amount_minor          bigint      NOT NULL CHECK (amount_minor > 0),
    amount_captured       bigint      NOT NULL DEFAULT 0,
    amount_refunded       bigint      NOT NULL DEFAULT 0,
    amount_reserved       bigint      NOT NULL DEFAULT 0,
    payment_method        text        NOT NULL,
    customer_id           text        NOT NULL,
    description           text        NOT NULL,
    metadata              jsonb       NOT NULL,
    psp                   text        NOT NULL,
    psp_reference         text,
    failure_code          text,
    failure_message       text,
    failure_decline_code  text,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    last_actor            text        NOT NULL,
    last_reason           text        NOT NULL,
    UNIQUE (client_id, idempotency_key),
    -- The refund guarantee: reserved (in-flight) plus refunded never exceeds what was captured.
    CHECK (amount_captured >= 0 AND amount_captured <= amount_minor),
    CHECK (amount_refunded >= 0 AND amount_reserved >= 0),
    CHECK (amount_refunded + amount_reserved <= amount_captured)
);
CREATE INDEX payments_listing ON payments (client_id, created_at DESC, id DESC);
CREATE INDEX payments_by_customer ON payments (client_id, customer_id, created_at DESC, id DESC);
CREATE INDEX payments_in_progress ON payments (updated_at) WHERE status IN ('PENDING', 'PROCESSING');

CREATE TABLE refunds (
    id                    uuid        PRIMARY KEY,
    client_id             text        NOT NULL,
    idempotency_key       text        NOT NULL,
    payment_id            uuid        NOT NULL REFERENCES payments (id),
    status                text        NOT NULL,
    currency              text        NOT NULL,
    amount_minor          bigint      NOT NULL CHECK (amount_minor > 0),
    reason                text        NOT NULL,
    psp                   text        NOT NULL,
    psp_reference         text,
    failure_code          text,
    failure_message       text,
    failure_decline_code  text,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    last_actor            text        NOT NULL,
    last_reason           text        NOT NULL,
    UNIQUE (client_id, idempotency_key)
);
CREATE INDEX refunds_by_payment ON refunds (payment_id);
CREATE INDEX refunds_in_progress ON refunds (updated_at) WHERE status = 'PENDING';

CREATE TABLE payouts (
    id                    uuid        PRIMARY KEY,
    client_id             text        NOT NULL,
    idempotency_key       text        NOT NULL,
    status                text        NOT NULL,
    currency              text        NOT NULL,
    amount_minor          bigint      NOT NULL CHECK (amount_minor > 0),
    destination           jsonb       NOT NULL,  -- SEPA account (full IBAN: needed to pay) or Stripe account
    instant               boolean     NOT NULL,
    reference             text        NOT NULL,
    psp                   text        NOT NULL,
    psp_reference         text,
    psp_data              jsonb       NOT NULL,  -- e.g. SEPA MsgId/PmtInfId/EndToEndId, stored before submission
    failure_code          text,
    failure_message       text,
    failure_decline_code  text,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    last_actor            text        NOT NULL,
    last_reason           text        NOT NULL,
    UNIQUE (client_id, idempotency_key)
);
CREATE INDEX payouts_in_progress ON payouts (updated_at) WHERE status IN ('PENDING', 'PROCESSING');

-- Allowed status transitions, loaded from server/domain/states.py by the migrator (one definition).
CREATE TABLE status_transitions (
    resource_type  text NOT NULL,
    from_status    text NOT NULL,  -- '' for the creation of a resource
    to_status      text NOT NULL,
    PRIMARY KEY (resource_type, from_status, to_status)
);

-- Append-only audit trail of every transition (who, when, from, to, why), and the outbox's source.
CREATE TABLE resource_events (
    id             bigserial   PRIMARY KEY,
    client_id      text        NOT NULL,
    resource_type  text        NOT NULL,
    resource_id    uuid        NOT NULL,
    from_status    text,
    to_status      text        NOT NULL,
    actor          text        NOT NULL,
    reason         text        NOT NULL,
    occurred_at    timestamptz NOT NULL
);
CREATE INDEX resource_events_by_resource ON resource_events (resource_id, id);

CREATE FUNCTION guard_status_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    previous text := CASE WHEN TG_OP = 'INSERT' THEN '' ELSE OLD.status END;
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
    RETURN NEW;
END
$$;

CREATE TRIGGER payments_status BEFORE INSERT OR UPDATE OF status ON payments
    FOR EACH ROW EXECUTE FUNCTION guard_status_transition('payment');
CREATE TRIGGER refunds_status BEFORE INSERT OR UPDATE OF status ON refunds
    FOR EACH ROW EXECUTE FUNCTION guard_status_transition('refund');
CREATE TRIGGER payouts_status BEFORE INSERT OR UPDATE OF status ON payouts
    FOR EACH ROW EXECUTE FUNCTION guard_status_transition('payout');

-- Events are append-only.
CREATE FUNCTION refuse_event_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'resource_events is append-only' USING ERRCODE = 'PA403';
END
$$;
CREATE TRIGGER resource_events_append_only BEFORE UPDATE OR DELETE ON resource_events
    FOR EACH ROW EXECUTE FUNCTION refuse_event_change();
