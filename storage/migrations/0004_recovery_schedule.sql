-- Recovery budgeted by time (docs/contract.md, "Recovery"), and replays that answer the true outcome.
--
-- recover_after: when the recovery worker may resume a key released without a final answer; each
-- release pushes it out by the schedule's backoff. NULL (a key whose server died mid-execution) falls
-- back to "idle since updated_at".
-- reply_final: false when the stored reply shows a resource the PSP had not finished; a replay then
-- answers the resource's current state.
ALTER TABLE idempotency_keys
    ADD COLUMN recover_after timestamptz,
    ADD COLUMN reply_final boolean NOT NULL DEFAULT true;

-- Only successful replies are pruned: they can be rebuilt from the resource. A stored business error
-- (REFUND_EXCEEDS_REMAINING, ...) has no resource to rebuild it from, so it is kept (a few dozen bytes).
DROP INDEX idempotency_keys_replies;
CREATE INDEX idempotency_keys_replies ON idempotency_keys (reply_stored_at)
    WHERE reply_body IS NOT NULL AND reply_code = 0;
