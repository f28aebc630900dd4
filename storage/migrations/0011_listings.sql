-- migrate: outside a transaction
-- ListRefunds and ListPayouts: keyset pagination newest first, like payments_listing (0001), so a page
-- costs the same however deep it is and however many rows the table holds.
--
-- Expand-only: two new indexes, nothing the previous release reads or writes changes.
--
-- Only what the listings need, because every index costs every insert on the write path:
-- - No index for the status filters, nor for the payout destination type: they are checked on the rows
--   this index leads to (as ListPayments does with its status). An index with status in it would also
--   end HOT updates of status changes (0003_hot_updates.sql). The price: a status the client has few
--   rows in walks its listing until the page is full. Measured on 200,000 refunds (40,000 of the
--   client): a full page 0.1 ms at any depth, a destination type a third of the payouts have 0.15 ms,
--   a status the client has none of 38 ms.
-- - ListRefunds by payment uses refunds_by_payment (0001): a payment has a handful of refunds, sorted
--   in memory (0.06 ms in the same measurement); client_id is checked on those rows.
-- The indexed columns never change after the insert, so status changes stay HOT updates.
--
-- Built CONCURRENTLY, outside a transaction (storage/migrator.py): refunds and payouts take writes on
-- every call, and a plain CREATE INDEX would hold them for as long as the build takes while the previous
-- release still serves (storage/migration_safety.py). A build cut off leaves an invalid index, so each
-- is dropped first: the file can run again from the start.
DROP INDEX CONCURRENTLY IF EXISTS refunds_listing;
CREATE INDEX CONCURRENTLY refunds_listing ON refunds (client_id, created_at DESC, id DESC);
DROP INDEX CONCURRENTLY IF EXISTS payouts_listing;
CREATE INDEX CONCURRENTLY payouts_listing ON payouts (client_id, created_at DESC, id DESC);
