"""The payee check's write: the bank's Verification of Payee answer, stored on the payout it is for."""

from __future__ import annotations

from datetime import datetime

from server.app.store import Lease
from server.domain.errors import IdempotencyKeyInUse
from server.domain.model import PayeeVerification, Payout
from storage.database import Database
from storage.rows import PAYEE_PENDING, PAYOUT_COLUMNS, payee_verification_columns, payout_of

# One statement: only an unanswered check of a payout not yet sent, and only while this execution still
# holds the key (its lock token), so two executions can never store two answers. No status changes, so
# the transition trigger (and the outbox) is not involved: the answer travels with the next transition.
_RECORD = f"""
    UPDATE payouts SET payee_verification = $4, payee_suggested_name = $5, updated_at = GREATEST(updated_at, $6)
    WHERE id = $1 AND client_id = $2 AND payee_verification = '{PAYEE_PENDING}' AND status = 'PENDING'
      AND EXISTS (SELECT 1 FROM idempotency_keys
                  WHERE client_id = $2 AND idempotency_key = $3 AND lock_token = $7)
    RETURNING {PAYOUT_COLUMNS}
"""


class PostgresPayeeStore:
    """Implements server.app.payee_check.PayeeVerificationStore on PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record_payee_verification(
        self, lease: Lease, payout: Payout, verification: PayeeVerification, at: datetime
    ) -> Payout:
        result, suggested_name, _ = payee_verification_columns(verification)
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                _RECORD, payout.id, payout.client_id, lease.key, result, suggested_name, at, lease.token
            )
        if row is None:  # another execution took the key over (our lease ran out): it decides
            raise IdempotencyKeyInUse(0.1)
        return payout_of(row)
