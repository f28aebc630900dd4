-- Cheaper writes on every operation's path (figures in docs/performance.md).
--
-- The *_in_progress indexes are read by no query: the worker finds its work through *_poll_due and
-- idempotency_keys_stalled. Yet every insert paid for them, and because they index status and
-- updated_at, no status change could be a HOT update: each completion wrote a new entry into every
-- index of the table.
DROP INDEX payments_in_progress;
DROP INDEX refunds_in_progress;
DROP INDEX payouts_in_progress;

-- A status change now touches no indexed column, so PostgreSQL can keep it on the row's own page
-- without index entries (a HOT update), provided the page has room: leave a fifth of each page free.
ALTER TABLE payments SET (fillfactor = 80);
ALTER TABLE refunds SET (fillfactor = 80);
ALTER TABLE payouts SET (fillfactor = 80);
