-- Bank statements (camt.053) and debit/credit notifications (camt.054), their entries, the discrepancies
-- reconciliation finds, and how far each gateway's documents have been fetched (docs/architecture.md,
-- "Bank statements and reconciliation").
--
-- Expand-only: new tables and indexes. Servers of the previous release never read or write them.

-- One Stmt or Ntfctn. A report id is the bank's, unique per account and kind: importing it again is a
-- no-op when it says the same (fingerprint), and refused when it does not (a correction is a new report).
CREATE TABLE bank_reports (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    account_iban  text        NOT NULL,  -- our own account the report is of
    kind          text        NOT NULL,  -- 'camt.053' | 'camt.054'
    report_id     text        NOT NULL,  -- Stmt/Id or Ntfctn/Id
    message       text        NOT NULL,  -- the version it came in, e.g. camt.053.001.08
    msg_id        text        NOT NULL,  -- GrpHdr/MsgId of the document it came in
    fingerprint   text        NOT NULL,  -- sha256 of what it says (server/domain/bank_statements.py)
    source        text        NOT NULL,  -- the gateway's name, or 'file:<name>' for an imported file
    imported_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_iban, kind, report_id)
);

-- One transaction of one entry (Ntry/TxDtls), and what reconciliation made of it.
CREATE TABLE bank_entries (
    report          uuid    NOT NULL REFERENCES bank_reports (id),
    entry_key       text    NOT NULL,  -- '<Ntry position>/<TxDtls position>', stable across re-imports
    kind            text    NOT NULL,  -- 'booking' | 'return' | 'other'
    direction       text    NOT NULL,  -- 'DBIT' | 'CRDT'
    booked          boolean NOT NULL,
    booking_date    date,
    amount_minor    bigint  NOT NULL,
    currency        text    NOT NULL,
    end_to_end_id   text,
    return_reason   text,
    bank_reference  text,
    payout_id       uuid,              -- the payout it matched (NULL: none, or a discrepancy)
    outcome         text    NOT NULL,  -- the status it confirmed or moved to, the discrepancy kind, or 'ignored'
    PRIMARY KEY (report, entry_key)
);
CREATE INDEX bank_entries_by_payout ON bank_entries (payout_id) WHERE payout_id IS NOT NULL;
CREATE INDEX bank_entries_by_booking_date ON bank_entries (booking_date);

-- What finance must look at. dedupe_key makes detection idempotent (a second import, a second run of the
-- report, the same booking in a camt.054 and then in the camt.053 record one row).
CREATE TABLE bank_discrepancies (
    id                bigserial   PRIMARY KEY,
    kind              text        NOT NULL,  -- server/domain/bank_statements.py DiscrepancyKind
    dedupe_key        text        NOT NULL UNIQUE,
    payout_id         uuid,
    end_to_end_id     text,
    account_iban      text,
    bank_reference    text,
    amount_minor      bigint,
    currency          text,
    booking_date      date,
    detail            text        NOT NULL,
    detected_on       date        NOT NULL,
    detected_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at       timestamptz
);
CREATE INDEX bank_discrepancies_open ON bank_discrepancies (detected_on) WHERE resolved_at IS NULL;

-- The last document number fetched from a gateway, per kind: advanced in the import's own transaction.
CREATE TABLE bank_feed_cursors (
    source    text   NOT NULL,
    kind      text   NOT NULL,
    last_seq  bigint NOT NULL,
    PRIMARY KEY (source, kind)
);

-- No index on payouts: a status change must stay a HOT update (docs/performance.md), so no index may
-- cover status or psp_data. An entry finds its payout by primary key instead (our EndToEndId E-<hex>
-- encodes the payout id po_<hex>, adapters/bank/pain001.py), and the unbooked check reads a range of the
-- time-ordered (UUIDv7) primary key: the last weeks of payouts, however long the history.
