-- ListRefunds and ListPayouts: keyset pagination newest first, like payments_listing (0001), so a page
-- costs the same however deep it is and however many rows the table holds.
--
-- Expand-only: two new indexes, nothing the previous release reads or writes changes.
--
-- Only what the listings need, because every index costs every insert on the write path:
-- - No index for the status filters, nor for the payout destination type: they are checked on the rows
--   this index leads to (as ListPayments does with its status). An index with status in it would also
--   end HOT updates of status changes (0003_hot_updates.sql).
-- - ListRefunds by payment uses refunds_by_payment (0001): a payment has a handful of refunds, sorted
--   in memory; client_id is checked on those rows.
-- The indexed columns never change after the insert, so status changes stay HOT updates.
CREATE INDEX refunds_listing ON refunds (client_id, created_at DESC, id DESC);
CREATE INDEX payouts_listing ON payouts (client_id, created_at DESC, id DESC);
