-- The background worker: status polling of operations the PSP finishes later, claimed with
-- SKIP LOCKED so any number of workers (one per server process) never poll the same row at once.

ALTER TABLE payments ADD COLUMN next_poll_at timestamptz, ADD COLUMN polls integer NOT NULL DEFAULT 0;
ALTER TABLE refunds  ADD COLUMN next_poll_at timestamptz, ADD COLUMN polls integer NOT NULL DEFAULT 0;
ALTER TABLE payouts  ADD COLUMN next_poll_at timestamptz, ADD COLUMN polls integer NOT NULL DEFAULT 0;

CREATE INDEX payments_poll_due ON payments (next_poll_at) WHERE next_poll_at IS NOT NULL;
CREATE INDEX refunds_poll_due  ON refunds (next_poll_at)  WHERE next_poll_at IS NOT NULL;
CREATE INDEX payouts_poll_due  ON payouts (next_poll_at)  WHERE next_poll_at IS NOT NULL;

-- Keys stopped at a recovery point, oldest first.
CREATE INDEX idempotency_keys_stalled ON idempotency_keys (updated_at) WHERE recovery_point = 'started';
DROP INDEX idempotency_keys_unfinished;
