-- Verification of Payee (EU 2024/886) before a SEPA payout is sent (docs/contract.md, Verification of Payee).
--
-- Expand-only: nullable columns or a constant default (no table rewrite, no long lock), a check added NOT
-- VALID and validated apart (0014: validation takes no exclusive lock), and a replaced event renderer.
-- payee_verification is NULL where the check does not apply (a Stripe account) and on payouts created
-- before this release, whose execution never checks; a SEPA payout is created 'PENDING' and gets the
-- bank's answer before its transfer is sent. Servers of the previous release ignore the columns.
-- Queued behind a long transaction, ALTER TABLE's lock would hold every payout call waiting with it: give
-- up after 5 s instead (`payments migrate` fails and can simply run again).
SET LOCAL lock_timeout = '5s';
ALTER TABLE payouts
    ADD COLUMN payee_verification   text,
    ADD COLUMN payee_suggested_name text,                            -- CLOSE_MATCH: the holder's name
    ADD COLUMN payee_risk_accepted  boolean NOT NULL DEFAULT false;  -- the request's accept_payee_verification_risk

ALTER TABLE payouts ADD CONSTRAINT payouts_payee_verification_check
    CHECK (payee_verification IN ('PENDING', 'MATCH', 'CLOSE_MATCH', 'NO_MATCH', 'NOT_POSSIBLE')) NOT VALID;
-- Validated by 0014, in a transaction of its own: here it would scan under ALTER TABLE's exclusive lock.

-- payout_pb (server/api/convert.py) with Payout.payee_verification: the message is set whenever the
-- column is, even while 'PENDING' (then it renders as {}); defaults are omitted as protobuf's JSON does.
CREATE OR REPLACE FUNCTION outbox_payout_payload(o payouts) RETURNS jsonb
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
        'update_time', outbox_time(o.updated_at),
        'payee_verification', CASE WHEN o.payee_verification IS NOT NULL THEN jsonb_build_object(
            'result', CASE WHEN o.payee_verification <> 'PENDING'
                           THEN 'PAYEE_VERIFICATION_RESULT_' || o.payee_verification END,
            'suggested_name', NULLIF(o.payee_suggested_name, ''),
            'risk_accepted', CASE WHEN o.payee_risk_accepted THEN true END
        ) END
    ))
$$;
