-- A refund records which PSP charge it refunds (the payment's psp_reference when it was claimed), so its
-- execution and recovery need not read the payment again. Nullable and without a default: adding it
-- takes no table rewrite, and rows from before it fall back to reading the payment.
ALTER TABLE refunds ADD COLUMN payment_psp_reference text;
