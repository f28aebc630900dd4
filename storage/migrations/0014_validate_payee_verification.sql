-- The check 0013 added NOT VALID, validated in a transaction of its own: VALIDATE CONSTRAINT scans the
-- table under a lock that lets reads and writes through (SHARE UPDATE EXCLUSIVE), where 0013's ALTER
-- TABLE holds an exclusive one until its transaction ends.
ALTER TABLE payouts VALIDATE CONSTRAINT payouts_payee_verification_check;
