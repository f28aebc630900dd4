"""The offline bank gateway's rules: payment files in, transfers executed once, statuses and returns.

Why apart from HTTP (``bank_sandbox``): these are the bank's rules, the part worth reading when a
payout test surprises — what is rejected on arrival (duplicate EndToEndId, not EUR, SEPA Instant over
its limit, a bad IBAN), how an accepted transfer's status moves along its script by the sandbox
clock, which test IBANs fail or come back returned, and what the pain.002 reports say. What the bank
books on our account (camt.053/camt.054) is kept by :mod:`.bank_ledger`. The HTTP surface only decodes
requests and applies faults. All state lives behind one lock and is lost on
reset; the same wire formats as production (:mod:`adapters.bank`), standard library otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Self

from adapters.bank.accounts import validate_iban
from adapters.bank.errors import DocumentError, InvalidAccountError
from adapters.bank.pain001 import InitiatedTransfer, PaymentInitiation, parse_pain001
from adapters.bank.pain002 import PaymentStatusReport, TransactionStatus, build_pain002
from adapters.sandboxes.bank_ledger import DueBooking, Ledger
from adapters.sandboxes.idempotency import ClaimOutcome, IdempotencyStore
from adapters.sandboxes.json_types import JsonValue
from adapters.sandboxes.observations import ExecutionCounter, ExecutionCounts
from server.domain.sepa_scheme import INSTANT_MAX_AMOUNT_MINOR, SEPA_CURRENCY

_log = logging.getLogger(__name__)

TEST_IBAN_ACCEPT = "DE89370400440532013000"
TEST_IBAN_AC01 = "DE48370400449900000101"
TEST_IBAN_AC04 = "DE64370400449900000104"
TEST_IBAN_AM04 = "DE15370400449900000404"
TEST_IBAN_RETURNED = "DE47370400449900000604"
RETURN_REASON_CODE = "AC04"
SANDBOX_ACCOUNT_IBAN = "DE89370400440532013000"
"""Our own account at the sandbox bank (the default debtor of PAYMENTS_BANK_DEBTOR_IBAN): statements are of it."""
DUPLICATE_REASON_CODE = "AM05"
"""ISO ExternalStatusReason1Code "Duplication"; the EPC SCT code for a duplicate transfer."""

DEFAULT_STEP_DELAY = 0.5
MAX_IDEMPOTENCY_KEY_LENGTH = 255
_ACCOUNT = "bank-sandbox"  # idempotency keys are global to the gateway, not scoped by token
_SUBMIT = "POST /v1/payment-files"


@dataclass(frozen=True)
class ScriptedOutcome:
    """The statuses a transaction passes through, one per step; the last one sticks.

    ``reason_code``/``additional_info`` are reported once the status is RJCT. A ``return_reason`` makes
    the settled transfer come back one step after its last status: booked as a credit with that ISO
    return reason (camt.054, then the day's camt.053); its pain.002 status stays ACSC, as at a real bank.
    """

    path: tuple[str, ...]
    reason_code: str | None = None
    additional_info: str | None = None
    return_reason: str | None = None


NORMAL_OUTCOME = ScriptedOutcome(("ACTC", "ACCP", "ACSC"))
INSTANT_OUTCOME = ScriptedOutcome(("ACTC", "ACSC"))
SCRIPTED_OUTCOMES: Mapping[str, ScriptedOutcome] = MappingProxyType(
    {
        TEST_IBAN_AC01: ScriptedOutcome(("ACTC", "RJCT"), "AC01", "Incorrect account number"),
        TEST_IBAN_AC04: ScriptedOutcome(("ACTC", "RJCT"), "AC04", "Closed account number"),
        TEST_IBAN_AM04: ScriptedOutcome(("ACTC", "ACCP", "RJCT"), "AM04", "Insufficient funds"),
        TEST_IBAN_RETURNED: ScriptedOutcome(
            ("ACTC", "ACCP", "ACSC"), None, "Returned by creditor bank: account closed", RETURN_REASON_CODE
        ),
    }
)
"""Creditor IBAN → scripted outcome; every other IBAN settles normally."""


@dataclass(frozen=True)
class ExecutionCounters:
    """How often transfers really executed (were accepted for execution) — the exactly-once proof."""

    total: int
    by_end_to_end_id: Mapping[str, int]
    by_idempotency_key: Mapping[str, int]
    files_accepted: int
    duplicates_rejected: int
    replays: int

    @classmethod
    def of(cls, counts: ExecutionCounts, files_accepted: int, duplicates_rejected: int, replays: int) -> Self:
        """The shared execution counts (by EndToEndId and key), with the gateway's own tallies."""
        return cls(
            counts.total, counts.by_subject, counts.by_idempotency_key, files_accepted, duplicates_rejected, replays
        )


@dataclass
class _Transaction:
    """One transfer of a file as it arrived, and what the gateway made of it."""

    file_id: str
    transfer: InitiatedTransfer
    accepted_at: datetime
    clock_at: float
    outcome: ScriptedOutcome | None  # None: rejected on arrival with ``rejection``
    rejection: tuple[str, str] | None = None  # (reason code, additional info)

    @property
    def end_to_end_id(self) -> str:
        return self.transfer.end_to_end_id


@dataclass
class _File:
    file_id: str
    msg_id: str
    number_of_transactions: int
    transactions: list[_Transaction] = field(default_factory=list)


@dataclass(frozen=True)
class Response:
    """An answer of the gateway, ready to send; ``replayed`` when it comes from the idempotency store."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    replayed: bool = False

    def replay(self) -> Response:
        """This answer again, as a replay under its idempotency key."""
        return Response(
            self.status, self.body, self.content_type, (*self.headers, ("Idempotent-Replayed", "true")), replayed=True
        )


def json_response(status: int, payload: JsonValue, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return Response(status, body, "application/json", headers)


def error_response(status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return json_response(status, {"error": {"code": code, "message": message}}, headers)


class BankGateway:
    """Everything the gateway knows, behind one lock; pure logic, no sockets."""

    def __init__(self, step_delay: float, account_iban: str = SANDBOX_ACCOUNT_IBAN) -> None:
        self._lock = threading.Lock()
        self._account_iban = account_iban
        self._initial_step_delay = step_delay
        self._keys: IdempotencyStore[Response] = IdempotencyStore()
        self._executions = ExecutionCounter()
        self._reset_locked()

    def _reset_locked(self) -> None:
        self.step_delay = self._initial_step_delay
        self._clock_offset = 0.0
        self._files: dict[str, _File] = {}
        self._accepted: dict[str, _Transaction] = {}
        self._rejected_on_arrival: dict[str, _Transaction] = {}
        self._keys.clear()
        self._executions.clear()
        self._files_accepted = 0
        self._duplicates = 0
        self._replays = 0
        self._report_seq = 0
        self._ledger = Ledger(self._account_iban)

    def reset(self) -> None:
        with self._lock:
            self._reset_locked()

    # ------------------------------------------------------------------------------------- clock

    def _now(self) -> float:
        return time.monotonic() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._clock_offset += seconds

    def set_step_delay(self, seconds: float) -> None:
        with self._lock:
            self.step_delay = seconds

    # ------------------------------------------------------------------------------ observation

    def counters(self) -> ExecutionCounters:
        with self._lock:
            counts = self._executions.snapshot()
            return ExecutionCounters.of(counts, self._files_accepted, self._duplicates, self._replays)

    # ---------------------------------------------------------------------------- submissions

    def submit(self, idempotency_key: str | None, body: bytes) -> Response:
        """Handle ``POST /v1/payment-files`` atomically (idempotency, validation, execution)."""
        if not idempotency_key:
            return error_response(400, "idempotency_key_missing", "the Idempotency-Key header is required")
        if len(idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            return error_response(400, "idempotency_key_invalid", "Idempotency-Key is longer than 255 characters")
        scope = (_ACCOUNT, idempotency_key)
        with self._lock:
            claim = self._keys.claim(scope, _SUBMIT, hashlib.sha256(body).hexdigest())
            if claim.outcome is ClaimOutcome.REPLAY and claim.stored is not None:
                self._replays += 1
                return claim.stored.replay()
            if claim.outcome is not ClaimOutcome.EXECUTE:
                return error_response(
                    422, "idempotency_key_reused", "this Idempotency-Key was used with a different payment file"
                )
            executed: Response | None = None
            try:
                response, executed = self._accept_locked(idempotency_key, body)
                return response
            finally:
                if executed is not None:
                    self._keys.complete(scope, executed)
                else:
                    self._keys.release(scope)  # refused before execution: a corrected file may reuse the key

    def _accept_locked(self, idempotency_key: str, body: bytes) -> tuple[Response, Response | None]:
        """The answer, and it again if the file executed (so it is kept under the key)."""
        try:
            initiation = parse_pain001(body)
        except DocumentError as exc:
            return error_response(400, "schema_invalid", str(exc)), None
        mismatch = _control_totals_mismatch(initiation)
        if mismatch:
            return error_response(400, "control_totals_mismatch", mismatch), None
        response = self._execute_locked(idempotency_key, initiation)
        return response, response

    def _execute_locked(self, idempotency_key: str, initiation: PaymentInitiation) -> Response:
        file = _File(f"bf_{uuid.uuid4().hex}", initiation.msg_id, initiation.number_of_transactions)
        now_wall = datetime.now(UTC)
        now_clock = self._now()
        for transfer in initiation.transfers:
            e2e = transfer.end_to_end_id
            rejection: tuple[str, str] | None = None
            if e2e in self._accepted:
                first = self._accepted[e2e].file_id
                rejection = (DUPLICATE_REASON_CODE, f"Duplicate EndToEndId, first accepted in file {first}")
                self._duplicates += 1
            elif transfer.currency != SEPA_CURRENCY:
                rejection = ("AM03", "SEPA credit transfers are EUR only")
            elif transfer.instant and transfer.amount_minor > INSTANT_MAX_AMOUNT_MINOR:
                rejection = ("AM02", "SEPA Instant is limited to EUR 100,000.00")
            else:
                try:
                    validate_iban(transfer.creditor_iban, field="CdtrAcct")
                except InvalidAccountError:
                    rejection = ("AC01", "Incorrect account number")
            outcome = None
            if rejection is None:
                outcome = SCRIPTED_OUTCOMES.get(transfer.creditor_iban) or (
                    INSTANT_OUTCOME if transfer.instant else NORMAL_OUTCOME
                )
            tx = _Transaction(file.file_id, transfer, now_wall, now_clock, outcome, rejection)
            file.transactions.append(tx)
            if outcome is not None:
                self._accepted[e2e] = tx
                self._rejected_on_arrival.pop(e2e, None)
                self._executions.record(e2e, idempotency_key)
                _log.debug("bank sandbox executed %s (file %s)", e2e, file.file_id)
            elif e2e not in self._accepted:
                self._rejected_on_arrival[e2e] = tx
        self._files[file.file_id] = file
        self._files_accepted += 1
        return json_response(202, self._file_json_locked(file, at_arrival=True))

    # --------------------------------------------------------------------------------- status

    def _status_locked(self, tx: _Transaction, *, at_arrival: bool = False) -> tuple[str, str | None, str | None]:
        """(status, reason code, additional info) of ``tx`` now (or as it was on arrival)."""
        if tx.outcome is None:
            code, info = tx.rejection or ("NARR", "Rejected")
            return "RJCT", code, info
        path = tx.outcome.path
        if at_arrival:
            step = 0
        elif self.step_delay <= 0:
            step = len(path) - 1
        else:
            step = int(max(0.0, self._now() - tx.clock_at) // self.step_delay)
        status = path[min(step, len(path) - 1)]
        if status == "RJCT":
            return status, tx.outcome.reason_code, tx.outcome.additional_info
        return status, None, None

    def _step_locked(self, tx: _Transaction) -> int:
        """How many status steps ``tx`` has taken by the sandbox clock (unbounded: returns come after)."""
        if self.step_delay <= 0:
            return 1 << 30
        return int(max(0.0, self._now() - tx.clock_at) // self.step_delay)

    def status_of(self, end_to_end_id: str) -> str | None:
        with self._lock:
            tx = self._accepted.get(end_to_end_id) or self._rejected_on_arrival.get(end_to_end_id)
            return None if tx is None else self._status_locked(tx)[0]

    def _file_json_locked(self, file: _File, *, at_arrival: bool = False) -> JsonValue:
        transactions: list[JsonValue] = []
        for tx in file.transactions:
            status, reason, _ = self._status_locked(tx, at_arrival=at_arrival)
            transactions.append({"end_to_end_id": tx.end_to_end_id, "status": status, "reason_code": reason})
        return {"file_id": file.file_id, "msg_id": file.msg_id, "transactions": transactions}

    def _report_locked(self, file: _File, transactions: list[_Transaction]) -> bytes:
        self._report_seq += 1
        entries: list[TransactionStatus] = []
        for tx in transactions:
            status, reason, info = self._status_locked(tx)
            entries.append(
                TransactionStatus(
                    end_to_end_id=tx.end_to_end_id,
                    original_pmt_inf_id=tx.transfer.pmt_inf_id,
                    status=status,
                    reason_code=reason,
                    additional_info=(info,) if info else (),
                    amount_minor=tx.transfer.amount_minor,
                    currency=tx.transfer.currency,
                    requested_execution_date=tx.transfer.requested_execution_date,
                    acceptance_time=tx.accepted_at if tx.outcome is not None else None,
                    account_servicer_reference=tx.file_id,
                )
            )
        report = PaymentStatusReport(
            msg_id=f"STS-{self._report_seq:08d}-{uuid.uuid4().hex[:8]}",
            created_at=datetime.now(UTC),
            original_msg_id=file.msg_id,
            original_number_of_transactions=file.number_of_transactions,
            transactions=tuple(entries),
        )
        return build_pain002(report)

    def transaction_report(self, end_to_end_id: str) -> Response:
        with self._lock:
            tx = self._accepted.get(end_to_end_id) or self._rejected_on_arrival.get(end_to_end_id)
            if tx is None:
                return error_response(404, "not_found", "no transaction with this EndToEndId")
            return Response(200, self._report_locked(self._files[tx.file_id], [tx]), "application/xml")

    def file_report(self, file_id: str, *, as_json: bool) -> Response:
        with self._lock:
            file = self._files.get(file_id)
            if file is None:
                return error_response(404, "not_found", "no payment file with this id")
            if as_json:
                return json_response(200, self._file_json_locked(file))
            return Response(200, self._report_locked(file, file.transactions), "application/xml")

    # ------------------------------------------------------------------------------------ books

    def _book_due_locked(self) -> None:
        due: list[DueBooking] = []
        for tx in self._accepted.values():
            outcome = tx.outcome
            if outcome is None or "ACSC" not in outcome.path:
                continue
            step = self._step_locked(tx)
            transfer = tx.transfer
            due.append(
                DueBooking(
                    tx.file_id,
                    tx.end_to_end_id,
                    transfer.amount_minor,
                    transfer.currency,
                    settled=step >= outcome.path.index("ACSC"),
                    returned=outcome.return_reason is not None and step >= len(outcome.path),
                    return_reason=outcome.return_reason,
                    return_info=outcome.additional_info,
                )
            )
        now = datetime.now(UTC)
        self._ledger.book_due(due, now.date(), now)

    def documents(self, kind: str, after: int) -> Response:
        """``GET /v1/statements`` / ``/v1/notifications``: the documents numbered above ``after``."""
        with self._lock:
            self._book_due_locked()
            listed: list[JsonValue] = [
                {"seq": doc.seq, "message": doc.message, "report_id": doc.report_id}
                for doc in self._ledger.documents(kind, after)
            ]
            return json_response(200, {"documents": listed})

    def document(self, kind: str, seq: int) -> Response:
        with self._lock:
            found = self._ledger.document(kind, seq)
            if found is None:
                return error_response(404, "not_found", f"no {kind} document {seq}")
            return Response(200, found.body, "application/xml")

    def close_day(self) -> int:
        """Cut today's camt.053 from everything booked since the last one; its number."""
        with self._lock:
            self._book_due_locked()
            return self._ledger.close_day(datetime.now(UTC)).seq

    def lose(self, end_to_end_id: str) -> None:
        with self._lock:
            self._ledger.lose(end_to_end_id)

    def book_foreign(self, end_to_end_id: str, amount_minor: int, currency: str) -> None:
        with self._lock:
            self._ledger.book_foreign(end_to_end_id, amount_minor, currency, datetime.now(UTC).date())

    def set_message_versions(self, statement: str | None, notification: str | None) -> None:
        """The camt versions this bank writes (what its customers configured it to send)."""
        with self._lock:
            if statement:
                self._ledger.statement_version = statement
            if notification:
                self._ledger.notification_version = notification


def _control_totals_mismatch(initiation: PaymentInitiation) -> str | None:
    if initiation.number_of_transactions != len(initiation.transfers):
        declared, actual = initiation.number_of_transactions, len(initiation.transfers)
        return f"GrpHdr/NbOfTxs is {declared}, the file has {actual} transactions"
    total = sum(transfer.amount_minor for transfer in initiation.transfers)
    if initiation.control_sum_minor is not None and initiation.control_sum_minor != total:
        return "GrpHdr/CtrlSum does not equal the sum of the transaction amounts"
    return None
