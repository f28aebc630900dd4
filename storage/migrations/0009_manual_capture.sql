-- Authorize now, capture or cancel later (CapturePayment, CancelPayment).
--
-- Expand-only: every column is nullable or has a constant default (no table rewrite, old servers ignore
-- them). The capture or cancel under way is recorded on the payment row (action_*), set under the
-- row's lock when it is claimed and cleared by the statement that finishes its key: of two racing for
-- one payment, exactly one is admitted, and every attempt of it sends the same amount.
ALTER TABLE payments
    ADD COLUMN capture_method      text    NOT NULL DEFAULT 'automatic',
    ADD COLUMN amount_capturable   bigint  NOT NULL DEFAULT 0,
    ADD COLUMN capturable_until    timestamptz,
    ADD COLUMN return_url          text    NOT NULL DEFAULT '',
    ADD COLUMN cancellation_reason text    NOT NULL DEFAULT '',
    ADD COLUMN action_operation    text,
    ADD COLUMN action_key          text,
    ADD COLUMN action_amount       bigint,
    ADD COLUMN action_final        boolean,
    ADD COLUMN action_reason       text,
    ADD COLUMN capture_warned      boolean NOT NULL DEFAULT false;  -- CAPTURE_EXPIRING raised (once)

-- What is captured plus what can still be captured never exceeds what was authorized.
ALTER TABLE payments ADD CONSTRAINT payments_capture_within_authorization
    CHECK (amount_capturable >= 0 AND amount_captured + amount_capturable <= amount_minor) NOT VALID;
ALTER TABLE payments VALIDATE CONSTRAINT payments_capture_within_authorization;
ALTER TABLE payments ADD CONSTRAINT payments_one_action
    CHECK ((action_key IS NULL) = (action_operation IS NULL)) NOT VALID;
ALTER TABLE payments VALIDATE CONSTRAINT payments_one_action;

-- Keys of the two new operations. The new check admits more values than the old one, so it is added
-- NOT VALID and validated separately (no long exclusive lock while existing rows are checked).
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_operation_check;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_operation_check
    CHECK (operation IN ('charge', 'refund', 'payout', 'capture', 'cancel')) NOT VALID;
ALTER TABLE idempotency_keys VALIDATE CONSTRAINT idempotency_keys_operation_check;
