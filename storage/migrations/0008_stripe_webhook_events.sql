-- Stripe webhooks in (docs/contract.md, Webhooks): one row per event received, so a duplicate delivery is
-- recognised by its id and does nothing. Only what identifies the event is kept, never its payload (a
-- PaymentIntent carries its client secret). Expand-only: a new table, nothing else changes.
CREATE TABLE stripe_webhook_events (
    event_id     text        PRIMARY KEY,  -- evt_…
    type         text        NOT NULL,     -- e.g. payment_intent.succeeded
    object_id    text        NOT NULL,     -- the Stripe object it is about: pi_…, re_…, tr_…
    received_at  timestamptz NOT NULL DEFAULT now()
);
-- Ids are kept as long as Stripe may deliver an event again (it retries for up to three days); the
-- worker deletes older ones in small batches along this index.
CREATE INDEX stripe_webhook_events_received ON stripe_webhook_events (received_at);
