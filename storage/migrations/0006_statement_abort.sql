-- Aborts the statement that calls it, with SQLSTATE PA001 and the reason given.
--
-- A claim that writes several rows in one statement (the idempotency key, a reservation on the payment,
-- the new resource) must write all of them or none. When a data-modifying CTE finds the row it guards
-- changed since the service read it, the statement calls this, and PostgreSQL rolls back every row the
-- statement wrote. The service then decides again under a row lock (storage/operations_store.py).
CREATE FUNCTION payments_abort(reason text) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION '%', reason USING ERRCODE = 'PA001';
END
$$;
