-- The event log is append-only against TRUNCATE too: a row trigger never sees a TRUNCATE, so before
-- this one, `TRUNCATE resource_events` emptied the audit trail silently.
CREATE TRIGGER resource_events_no_truncate BEFORE TRUNCATE ON resource_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change();
