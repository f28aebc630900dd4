"""Offline bank gateway sandbox: pain.001 in, pain.002 out, over real HTTP on loopback.

Why: the bank adapter must be proven against the failure modes of a real payment gateway —
duplicates, lost responses, throttling, rejections and returns — without a network or a bank. This
server speaks the same wire formats as production (:mod:`adapters.bank`) and counts how often each
transfer really executed, so tests can assert exactly-once. Standard library only
(``http.server.ThreadingHTTPServer``, HTTP/1.1 keep-alive, daemon threads); all state lives behind one
lock and is lost on stop.

Gateway API (all ``/v1`` calls need ``Authorization: Bearer <any non-empty token>``, else 401)
---------------------------------------------------------------------------------------------------
``POST /v1/payment-files``
    Body: a pain.001.001.09 document. Header ``Idempotency-Key`` (1-255 chars) is required (400).
    * Malformed XML or XSD violation → ``400 {"error": {"code": "schema_invalid", "message": ...}}``
      (the lxml schema error text, IBANs masked); ``NbOfTxs``/``CtrlSum`` not matching the
      transactions → ``400 control_totals_mismatch``. Neither is stored under the key, so a corrected
      file may reuse it.
    * Otherwise ``202 {"file_id", "msg_id", "transactions": [{"end_to_end_id", "status",
      "reason_code"}]}`` and the response is stored under the key. Per transaction: an
      ``EndToEndId`` already accepted (in any file, or earlier in the same file) → ``RJCT``/``AM05``
      (duplication; never executed twice); currency other than EUR → ``RJCT``/``AM03``; SEPA Instant
      over EUR 100,000.00 → ``RJCT``/``AM02``; IBAN with a bad checksum → ``RJCT``/``AC01``; anything
      else is accepted (``ACTC``) and counted as one execution.
    * Same key + same body → the stored response, byte for byte, with ``Idempotent-Replayed: true``.
      Same key + different body → ``422 idempotency_key_reused`` (nothing executes). Keys are global
      to the sandbox (not scoped by token) and never expire.

``GET /v1/payment-status/{end_to_end_id}``
    A pain.002.001.10 report (``application/xml``) with the current status of the transaction that
    was accepted under that id (a later duplicate's AM05 rejection does not shadow it); if the id was
    only ever rejected on arrival, that rejection. Unknown id → 404.

``GET /v1/payment-files/{file_id}/status``
    A pain.002.001.10 report for every transaction of the file, duplicates included.
``GET /v1/payment-files/{file_id}``
    The same as JSON (the 202 shape with current statuses).

Status progression (lazy, by the sandbox clock; one step = ``step_delay`` seconds, default 0.5;
``step_delay <= 0`` jumps straight to the final state; ``RTND`` is our pain.002 convention for a
return, see :mod:`adapters.bank.pain002`)::

    any other IBAN          ACTC → ACCP → ACSC
    any other IBAN, INST    ACTC → ACSC
    TEST_IBAN_AC01          ACTC → RJCT AC01 (incorrect account number)
    TEST_IBAN_AC04          ACTC → RJCT AC04 (closed account number)
    TEST_IBAN_AM04          ACTC → ACCP → RJCT AM04 (insufficient funds)
    TEST_IBAN_RETURNED      ACTC → ACCP → ACSC → RTND AC04 (returned: account closed)

Test IBANs (valid checksums, bank code 37040044)::

    TEST_IBAN_ACCEPT    DE89370400440532013000   settles normally
    TEST_IBAN_AC01      DE48370400449900000101
    TEST_IBAN_AC04      DE64370400449900000104
    TEST_IBAN_AM04      DE15370400449900000404
    TEST_IBAN_RETURNED  DE47370400449900000604

Faults (``/v1`` only; a queued injection whose method/path-prefix filter matches wins, else the
probabilistic rate applies)::

    http_500         500 {"error": {"code": "internal_error"}}; nothing executes
    http_429         429 with Retry-After (seconds); nothing executes
    stall            the body is read, then the server waits ``stall_seconds`` (default 5, cut short
                     by stop) and resets the connection; nothing executes
    reset            the body is read, then the connection is aborted with RST (SO_LINGER 0);
                     nothing executes
    drop_after_work  the request is processed completely (executed, stored under its key), then the
                     connection is reset instead of answering

Control API (no auth; ``/_sandbox`` requests are never faulted nor logged)::

    GET    /_sandbox/counters       {"total", "by_end_to_end_id", "by_idempotency_key",
                                     "files_accepted", "duplicates_rejected", "replays"}
    GET    /_sandbox/requests       [{"method", "path", "idempotency_key", "headers", "status",
                                      "replayed", "fault", "received_at"}]  (Authorization redacted)
    POST   /_sandbox/reset          forget everything (state, counters, faults, log, clock, delay)
    POST   /_sandbox/faults         {"kind", "count"=1, "method"?, "path_prefix"?, "retry_after"=1}
    POST   /_sandbox/fault-rate     {"rate", "mix"?: {kind: weight}, "seed"?, "method"?, "path_prefix"?}
    DELETE /_sandbox/faults         clear queued faults and the rate
    POST   /_sandbox/clock/advance  {"seconds"}  move the sandbox clock forward
    POST   /_sandbox/step-delay     {"seconds"}  set the status step delay

Python API: :class:`BankSandbox` (start/stop/context manager, ``url``, ``inject``,
``set_fault_rate``, ``clear_faults``, ``set_step_delay``, ``set_stall_seconds``, ``advance_clock``,
``executions``, ``executions_for``, ``executions_for_key``, ``counters``, ``status_of``,
``requests``, ``reset``) and :func:`serve_forever` for the CLI (``python -m
adapters.sandboxes.bank_sandbox --port 8766``). Nothing here ever logs a full IBAN: the request log
holds no bodies, and schema errors quoting an IBAN are masked to country code + last 4.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import random
import socket
import struct
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType, TracebackType
from typing import Literal, TypeAlias, cast, get_args
from urllib.parse import unquote, urlsplit

from adapters.bank.accounts import validate_iban
from adapters.bank.errors import DocumentError, InvalidAccountError
from adapters.bank.pain001 import PaymentInitiation, parse_pain001
from adapters.bank.pain002 import PaymentStatusReport, TransactionStatus, build_pain002
from adapters.sandboxes import run_until_signalled
from server.domain.sepa_scheme import INSTANT_MAX_AMOUNT_MINOR, SEPA_CURRENCY

_log = logging.getLogger(__name__)

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None

TEST_IBAN_ACCEPT = "DE89370400440532013000"
TEST_IBAN_AC01 = "DE48370400449900000101"
TEST_IBAN_AC04 = "DE64370400449900000104"
TEST_IBAN_AM04 = "DE15370400449900000404"
TEST_IBAN_RETURNED = "DE47370400449900000604"
RETURN_REASON_CODE = "AC04"
DUPLICATE_REASON_CODE = "AM05"
"""ISO ExternalStatusReason1Code "Duplication"; the EPC SCT code for a duplicate transfer."""

DEFAULT_STEP_DELAY = 0.5
DEFAULT_STALL_SECONDS = 5.0
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_IDEMPOTENCY_KEY_LENGTH = 255

FaultKind = Literal["http_500", "http_429", "stall", "reset", "drop_after_work"]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)


@dataclass(frozen=True)
class ScriptedOutcome:
    """The statuses a transaction passes through, one per step; the last one sticks.

    ``reason_code``/``additional_info`` are reported once the status is RJCT or RTND.
    """

    path: tuple[str, ...]
    reason_code: str | None = None
    additional_info: str | None = None


NORMAL_OUTCOME = ScriptedOutcome(("ACTC", "ACCP", "ACSC"))
INSTANT_OUTCOME = ScriptedOutcome(("ACTC", "ACSC"))
SCRIPTED_OUTCOMES: Mapping[str, ScriptedOutcome] = MappingProxyType(
    {
        TEST_IBAN_AC01: ScriptedOutcome(("ACTC", "RJCT"), "AC01", "Incorrect account number"),
        TEST_IBAN_AC04: ScriptedOutcome(("ACTC", "RJCT"), "AC04", "Closed account number"),
        TEST_IBAN_AM04: ScriptedOutcome(("ACTC", "ACCP", "RJCT"), "AM04", "Insufficient funds"),
        TEST_IBAN_RETURNED: ScriptedOutcome(
            ("ACTC", "ACCP", "ACSC", "RTND"), RETURN_REASON_CODE, "Returned by creditor bank: account closed"
        ),
    }
)
"""Creditor IBAN → scripted outcome; every other IBAN settles normally."""


@dataclass(frozen=True)
class RequestRecord:
    """One ``/v1`` request as the sandbox saw it (``Authorization`` redacted; no bodies, so no IBANs).

    ``status`` is what was (or, for ``drop_after_work``, would have been) answered; ``None`` when the
    connection was stalled or reset before any work.
    """

    method: str
    path: str
    idempotency_key: str | None
    headers: Mapping[str, str]
    status: int | None
    replayed: bool
    fault: str | None
    received_at: datetime


@dataclass(frozen=True)
class ExecutionCounters:
    """How often transfers really executed (were accepted for execution) — the exactly-once proof."""

    total: int
    by_end_to_end_id: Mapping[str, int]
    by_idempotency_key: Mapping[str, int]
    files_accepted: int
    duplicates_rejected: int
    replays: int


@dataclass
class _Transaction:
    file_id: str
    msg_id: str
    pmt_inf_id: str
    end_to_end_id: str
    amount_minor: int
    currency: str
    requested_execution_date: date | None
    accepted_at: datetime
    clock_at: float
    outcome: ScriptedOutcome | None  # None: rejected on arrival with ``rejection``
    rejection: tuple[str, str] | None = None  # (reason code, additional info)


@dataclass
class _File:
    file_id: str
    msg_id: str
    number_of_transactions: int
    transactions: list[_Transaction] = field(default_factory=list)


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    replayed: bool = False


@dataclass(frozen=True)
class _Stored:
    fingerprint: str
    response: _Response


@dataclass
class _FaultRule:
    kind: FaultKind
    remaining: int
    method: str | None
    path_prefix: str | None
    retry_after: int

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_prefix is None or path.startswith(self.path_prefix)
        )


@dataclass
class _FaultRate:
    rate: float
    kinds: tuple[FaultKind, ...]
    weights: tuple[float, ...]
    rng: random.Random
    method: str | None
    path_prefix: str | None


def _json_response(status: int, payload: JsonValue, headers: tuple[tuple[str, str], ...] = ()) -> _Response:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return _Response(status, body, "application/json", headers)


def _error(status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()) -> _Response:
    return _json_response(status, {"error": {"code": code, "message": message}}, headers)


class _BankState:
    """Everything the gateway knows, behind one lock; pure logic, no sockets."""

    def __init__(self, step_delay: float, stall_seconds: float) -> None:
        self._lock = threading.Lock()
        self._initial_step_delay = step_delay
        self.stall_seconds = stall_seconds
        self.stopping = threading.Event()
        self._reset_locked()

    def _reset_locked(self) -> None:
        self.step_delay = self._initial_step_delay
        self._clock_offset = 0.0
        self._files: dict[str, _File] = {}
        self._accepted: dict[str, _Transaction] = {}
        self._rejected_on_arrival: dict[str, _Transaction] = {}
        self._keys: dict[str, _Stored] = {}
        self._by_e2e: dict[str, int] = {}
        self._by_key: dict[str, int] = {}
        self._files_accepted = 0
        self._duplicates = 0
        self._replays = 0
        self._faults: list[_FaultRule] = []
        self._fault_rate: _FaultRate | None = None
        self._requests: list[RequestRecord] = []
        self._report_seq = 0

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

    # ------------------------------------------------------------------------------------ faults

    def inject(
        self,
        kind: FaultKind,
        count: int,
        method: str | None,
        path_prefix: str | None,
        retry_after: int,
    ) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(_FaultRule(kind, count, method.upper() if method else None, path_prefix, retry_after))

    def set_fault_rate(
        self,
        rate: float,
        mix: Mapping[str, float] | None,
        seed: int | None,
        method: str | None,
        path_prefix: str | None,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        weights = dict(mix) if mix else {"http_500": 1.0, "http_429": 1.0, "reset": 1.0}
        unknown = [kind for kind in weights if kind not in FAULT_KINDS]
        if unknown or any(weight < 0 for weight in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"mix must map fault kinds {FAULT_KINDS} to non-negative weights")
        with self._lock:
            self._fault_rate = (
                None
                if rate == 0.0
                else _FaultRate(
                    rate,
                    tuple(cast(FaultKind, kind) for kind in weights),
                    tuple(weights.values()),
                    random.Random(seed),  # noqa: S311 - reproducible fault mix, not security
                    method.upper() if method else None,
                    path_prefix,
                )
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._fault_rate = None

    def take_fault(self, method: str, path: str) -> _FaultRule | None:
        """The fault this request suffers, if any (queued injections first, then the rate)."""
        with self._lock:
            for rule in self._faults:
                if rule.matches(method, path):
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._faults.remove(rule)
                    return rule
            rate = self._fault_rate
            if rate is None:
                return None
            if rate.method is not None and rate.method != method:
                return None
            if rate.path_prefix is not None and not path.startswith(rate.path_prefix):
                return None
            if rate.rng.random() >= rate.rate:
                return None
            kind = rate.rng.choices(rate.kinds, weights=rate.weights)[0]
            return _FaultRule(kind, 1, None, None, 1)

    # ------------------------------------------------------------------------------ observation

    def record(self, entry: RequestRecord) -> None:
        with self._lock:
            self._requests.append(entry)

    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def counters(self) -> ExecutionCounters:
        with self._lock:
            return ExecutionCounters(
                total=sum(self._by_e2e.values()),
                by_end_to_end_id=dict(self._by_e2e),
                by_idempotency_key=dict(self._by_key),
                files_accepted=self._files_accepted,
                duplicates_rejected=self._duplicates,
                replays=self._replays,
            )

    # ---------------------------------------------------------------------------- submissions

    def submit(self, idempotency_key: str | None, body: bytes) -> _Response:
        """Handle ``POST /v1/payment-files`` atomically (idempotency, validation, execution)."""
        if not idempotency_key:
            return _error(400, "idempotency_key_missing", "the Idempotency-Key header is required")
        if len(idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            return _error(400, "idempotency_key_invalid", "Idempotency-Key is longer than 255 characters")
        fingerprint = hashlib.sha256(body).hexdigest()
        with self._lock:
            stored = self._keys.get(idempotency_key)
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    return _error(
                        422,
                        "idempotency_key_reused",
                        "this Idempotency-Key was used with a different payment file",
                    )
                self._replays += 1
                original = stored.response
                return _Response(
                    original.status,
                    original.body,
                    original.content_type,
                    (*original.headers, ("Idempotent-Replayed", "true")),
                    replayed=True,
                )
            try:
                initiation = parse_pain001(body)
            except DocumentError as exc:
                return _error(400, "schema_invalid", str(exc))
            mismatch = _control_totals_mismatch(initiation)
            if mismatch:
                return _error(400, "control_totals_mismatch", mismatch)
            response = self._execute_locked(idempotency_key, initiation)
            self._keys[idempotency_key] = _Stored(fingerprint, response)
            return response

    def _execute_locked(self, idempotency_key: str, initiation: PaymentInitiation) -> _Response:
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
            tx = _Transaction(
                file_id=file.file_id,
                msg_id=initiation.msg_id,
                pmt_inf_id=transfer.pmt_inf_id,
                end_to_end_id=e2e,
                amount_minor=transfer.amount_minor,
                currency=transfer.currency,
                requested_execution_date=transfer.requested_execution_date,
                accepted_at=now_wall,
                clock_at=now_clock,
                outcome=outcome,
                rejection=rejection,
            )
            file.transactions.append(tx)
            if outcome is not None:
                self._accepted[e2e] = tx
                self._rejected_on_arrival.pop(e2e, None)
                self._by_e2e[e2e] = self._by_e2e.get(e2e, 0) + 1
                self._by_key[idempotency_key] = self._by_key.get(idempotency_key, 0) + 1
                _log.debug("bank sandbox executed %s (file %s)", e2e, file.file_id)
            elif e2e not in self._accepted:
                self._rejected_on_arrival[e2e] = tx
        self._files[file.file_id] = file
        self._files_accepted += 1
        return _json_response(202, self._file_json_locked(file, at_arrival=True))

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
        if status in ("RJCT", "RTND"):
            return status, tx.outcome.reason_code, tx.outcome.additional_info
        return status, None, None

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
                    original_pmt_inf_id=tx.pmt_inf_id,
                    status=status,
                    reason_code=reason,
                    additional_info=(info,) if info else (),
                    amount_minor=tx.amount_minor,
                    currency=tx.currency,
                    requested_execution_date=tx.requested_execution_date,
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

    def transaction_report(self, end_to_end_id: str) -> _Response:
        with self._lock:
            tx = self._accepted.get(end_to_end_id) or self._rejected_on_arrival.get(end_to_end_id)
            if tx is None:
                return _error(404, "not_found", "no transaction with this EndToEndId")
            return _Response(200, self._report_locked(self._files[tx.file_id], [tx]), "application/xml")

    def file_report(self, file_id: str, *, as_json: bool) -> _Response:
        with self._lock:
            file = self._files.get(file_id)
            if file is None:
                return _error(404, "not_found", "no payment file with this id")
            if as_json:
                return _json_response(200, self._file_json_locked(file))
            return _Response(200, self._report_locked(file, file.transactions), "application/xml")


def _control_totals_mismatch(initiation: PaymentInitiation) -> str | None:
    if initiation.number_of_transactions != len(initiation.transfers):
        declared, actual = initiation.number_of_transactions, len(initiation.transfers)
        return f"GrpHdr/NbOfTxs is {declared}, the file has {actual} transactions"
    total = sum(transfer.amount_minor for transfer in initiation.transfers)
    if initiation.control_sum_minor is not None and initiation.control_sum_minor != total:
        return "GrpHdr/CtrlSum does not equal the sum of the transaction amounts"
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: _BankState) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def close_connections(self) -> None:
        """Unblock handler threads parked on idle keep-alive connections."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "BankSandbox/1.0"
    timeout = 30  # idle keep-alive connections are closed after this many seconds

    @property
    def _server(self) -> _Server:
        return cast(_Server, self.server)

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes; without NODELAY, Nagle + delayed ACK add ~40 ms
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._server.connections_lock:
            self._server.connections.add(self.connection)

    def finish(self) -> None:
        with self._server.connections_lock:
            self._server.connections.discard(self.connection)
        with contextlib.suppress(OSError):  # the peer may be gone (reset faults, stop())
            super().finish()

    def log_message(self, format: str, *args: object) -> None:
        _log.debug("bank sandbox: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # ----------------------------------------------------------------------------- plumbing

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._send(_error(411, "length_required", "send a Content-Length, not chunked encoding"))
            self.close_connection = True
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self._send(_error(413, "body_too_large", f"bodies are limited to {MAX_BODY_BYTES} bytes"))
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, response: _Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def _abort(self) -> None:
        """Reset the connection (RST via SO_LINGER 0) without sending anything."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # drop the makefile reference so close() really closes the socket
        self.connection.close()

    def _redacted_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers[name.lower()] = "Bearer ***" if name.lower() == "authorization" else value
        return headers

    # ----------------------------------------------------------------------------- dispatch

    def _dispatch(self) -> None:
        state = self._server.state
        method = self.command
        path = urlsplit(self.path).path
        body = self._read_body()
        if body is None:
            return
        if path.startswith("/_sandbox/"):
            self._send(self._control(method, path, body))
            return

        key = self.headers.get("Idempotency-Key")
        headers = self._redacted_headers()
        received = datetime.now(UTC)
        fault = state.take_fault(method, path)

        def log(status: int | None, replayed: bool = False) -> None:
            state.record(
                RequestRecord(method, path, key, headers, status, replayed, fault.kind if fault else None, received)
            )

        if fault is not None and fault.kind in ("http_500", "http_429", "stall", "reset"):
            if fault.kind == "http_500":
                log(500)
                self._send(_error(500, "internal_error", "injected fault: internal server error"))
            elif fault.kind == "http_429":
                log(429)
                self._send(
                    _error(
                        429,
                        "rate_limited",
                        "injected fault: too many requests",
                        (("Retry-After", str(fault.retry_after)),),
                    )
                )
            elif fault.kind == "stall":
                log(None)
                state.stopping.wait(state.stall_seconds)
                self._abort()
            else:
                log(None)
                self._abort()
            return

        response = self._route(method, path, key, body)
        log(response.status, response.replayed)
        if fault is not None:  # drop_after_work: the work is done and stored, the answer is lost
            self._abort()
            return
        self._send(response)

    def _route(self, method: str, path: str, key: str | None, body: bytes) -> _Response:
        state = self._server.state
        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(
                401,
                "unauthorized",
                "send Authorization: Bearer <token>",
                (("WWW-Authenticate", 'Bearer realm="bank-sandbox"'),),
            )
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if parts == ["v1", "payment-files"]:
            if method != "POST":
                return _error(405, "method_not_allowed", "use POST", (("Allow", "POST"),))
            return state.submit(key, body)
        if len(parts) == 3 and parts[:2] == ["v1", "payment-status"]:
            if method != "GET":
                return _error(405, "method_not_allowed", "use GET", (("Allow", "GET"),))
            return state.transaction_report(parts[2])
        if len(parts) in (3, 4) and parts[:2] == ["v1", "payment-files"]:
            if method != "GET":
                return _error(405, "method_not_allowed", "use GET", (("Allow", "GET"),))
            if len(parts) == 3:
                return state.file_report(parts[2], as_json=True)
            if parts[3] == "status":
                return state.file_report(parts[2], as_json=False)
        return _error(404, "not_found", f"no route for {method} {path}")

    def _control(self, method: str, path: str, body: bytes) -> _Response:
        state = self._server.state
        try:
            payload = json.loads(body) if body.strip() else {}
            if not isinstance(payload, dict):
                raise TypeError("the body must be a JSON object")
            if (method, path) == ("GET", "/_sandbox/counters"):
                counters = state.counters()
                return _json_response(
                    200,
                    {
                        "total": counters.total,
                        "by_end_to_end_id": dict(counters.by_end_to_end_id),
                        "by_idempotency_key": dict(counters.by_idempotency_key),
                        "files_accepted": counters.files_accepted,
                        "duplicates_rejected": counters.duplicates_rejected,
                        "replays": counters.replays,
                    },
                )
            if (method, path) == ("GET", "/_sandbox/requests"):
                return _json_response(200, [_record_json(record) for record in state.requests()])
            if (method, path) == ("POST", "/_sandbox/reset"):
                state.reset()
            elif (method, path) == ("POST", "/_sandbox/faults"):
                state.inject(
                    payload["kind"],
                    int(payload.get("count", 1)),
                    payload.get("method"),
                    payload.get("path_prefix"),
                    int(payload.get("retry_after", 1)),
                )
            elif (method, path) == ("DELETE", "/_sandbox/faults"):
                state.clear_faults()
            elif (method, path) == ("POST", "/_sandbox/fault-rate"):
                state.set_fault_rate(
                    float(payload["rate"]),
                    payload.get("mix"),
                    payload.get("seed"),
                    payload.get("method"),
                    payload.get("path_prefix"),
                )
            elif (method, path) == ("POST", "/_sandbox/clock/advance"):
                state.advance_clock(float(payload["seconds"]))
            elif (method, path) == ("POST", "/_sandbox/step-delay"):
                state.set_step_delay(float(payload["seconds"]))
            else:
                return _error(404, "not_found", f"no control route for {method} {path}")
        except (KeyError, TypeError, ValueError) as exc:
            return _error(400, "invalid_request", f"{type(exc).__name__}: {exc}")
        return _json_response(200, {"ok": True})


def _record_json(record: RequestRecord) -> JsonValue:
    return {
        "method": record.method,
        "path": record.path,
        "idempotency_key": record.idempotency_key,
        "headers": dict(record.headers),
        "status": record.status,
        "replayed": record.replayed,
        "fault": record.fault,
        "received_at": record.received_at.isoformat(),
    }


class BankSandbox:
    """An offline bank gateway on loopback for tests and local runs (see the module docstring).

    Thread-safe; ``start()`` serves from a daemon thread, ``stop()`` closes the listener and every
    open connection and wakes stalled requests. Usable as a context manager.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        step_delay: float = DEFAULT_STEP_DELAY,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
    ) -> None:
        self._address = (host, port)
        self._state = _BankState(step_delay, stall_seconds)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> BankSandbox:
        """Bind and serve in a daemon thread; returns ``self`` for chaining."""
        if self._server is not None:
            raise RuntimeError("bank sandbox already started")
        self._state.stopping.clear()
        self._server = _Server(self._address, self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="bank-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close connections, wake stalled handlers. Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._state.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> BankSandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (only while started)."""
        if self._server is None:
            raise RuntimeError("bank sandbox not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def inject(
        self,
        kind: FaultKind,
        count: int = 1,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        retry_after: int = 1,
    ) -> None:
        """Make the next ``count`` matching ``/v1`` requests suffer ``kind`` (see FAULT_KINDS)."""
        self._state.inject(kind, count, method, path_prefix, retry_after)

    def set_fault_rate(
        self,
        rate: float,
        mix: Mapping[str, float] | None = None,
        seed: int | None = None,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
    ) -> None:
        """Fault a fraction ``rate`` of matching requests, kinds drawn from ``mix`` (weights; default
        equal parts http_500/http_429/reset), reproducibly with ``seed``. ``rate=0`` turns it off."""
        self._state.set_fault_rate(rate, mix, seed, method, path_prefix)

    def clear_faults(self) -> None:
        """Drop queued injections and the fault rate."""
        self._state.clear_faults()

    def set_step_delay(self, seconds: float) -> None:
        """Seconds per status step (ACTC → ACCP → ACSC ...); ``<= 0`` means final immediately."""
        self._state.set_step_delay(seconds)

    def set_stall_seconds(self, seconds: float) -> None:
        """How long a ``stall`` fault holds the connection before resetting it."""
        self._state.stall_seconds = seconds

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox clock forward, so statuses progress without sleeping."""
        self._state.advance_clock(seconds)

    def executions(self) -> int:
        """Total transfers accepted for execution (duplicates, replays and faults never count)."""
        return self._state.counters().total

    def executions_for(self, end_to_end_id: str) -> int:
        """How many times the transfer with this EndToEndId executed (0 or 1 unless something broke)."""
        return self._state.counters().by_end_to_end_id.get(end_to_end_id, 0)

    def executions_for_key(self, idempotency_key: str) -> int:
        """Transfers executed by requests carrying this Idempotency-Key."""
        return self._state.counters().by_idempotency_key.get(idempotency_key, 0)

    def counters(self) -> ExecutionCounters:
        """A snapshot of every counter."""
        return self._state.counters()

    def status_of(self, end_to_end_id: str) -> str | None:
        """The current status code of a transaction (as ``GET /v1/payment-status`` would report)."""
        return self._state.status_of(end_to_end_id)

    def requests(self) -> list[RequestRecord]:
        """The ``/v1`` request log, oldest first."""
        return self._state.requests()

    def reset(self) -> None:
        """Forget all files, keys, counters, faults and the log; restore the clock and step delay."""
        self._state.reset()


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8766,
    *,
    step_delay: float = DEFAULT_STEP_DELAY,
    stall_seconds: float = DEFAULT_STALL_SECONDS,
) -> None:
    """Run a bank sandbox in the foreground until interrupted (for ``payments sandbox``)."""
    sandbox = BankSandbox(host, port, step_delay=step_delay, stall_seconds=stall_seconds).start()
    print(f"bank sandbox listening on {sandbox.url}", flush=True)
    run_until_signalled(sandbox)


def main(argv: list[str] | None = None) -> None:
    """``python -m adapters.sandboxes.bank_sandbox [--host H] [--port P] [--step-delay S]``."""
    parser = argparse.ArgumentParser(description="Offline SEPA bank gateway sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--step-delay", type=float, default=DEFAULT_STEP_DELAY)
    parser.add_argument("--stall-seconds", type=float, default=DEFAULT_STALL_SECONDS)
    args = parser.parse_args(argv)
    serve_forever(args.host, args.port, step_delay=args.step_delay, stall_seconds=args.stall_seconds)


if __name__ == "__main__":
    main()
