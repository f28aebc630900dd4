"""Offline bank gateway sandbox: pain.001 in, pain.002, camt.053 and camt.054 out, over real HTTP on loopback.

Why: the bank adapter must be proven against the failure modes of a real payment gateway —
duplicates, lost responses, throttling, rejections and returns — without a network or a bank. This
server speaks the same wire formats as production (:mod:`adapters.bank`) and counts how often each
transfer really executed, so tests can assert exactly-once. This module is the HTTP surface (routes,
faults, the control API, :class:`BankSandbox`); the bank's rules live in :mod:`.bank_gateway`, the
server (HTTP/1.1 keep-alive, daemon threads, RST aborts) in :mod:`.http_server`, and the fault plan,
shared with the Stripe sandbox, in :mod:`.faults`.

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

``POST /v1/payee-verifications``
    Verification of Payee (EPC VOP): ``{"party": {"name"}, "partyAccount": {"iban"}}`` →
    ``200 {"partyNameMatch": "MTCH"|"CMTC"|"NMTC"|"NOAP", "matchedName"?}``; the test accounts and the
    matching rule are in :mod:`.bank_payees` (README: "Verification of Payee").

``GET /v1/payment-files/{file_id}/status``
    A pain.002.001.10 report for every transaction of the file, duplicates included.
``GET /v1/payment-files/{file_id}``
    The same as JSON (the 202 shape with current statuses).

``GET /v1/statements?after=N`` / ``GET /v1/notifications?after=N``
    ``{"documents": [{"seq", "message", "report_id"}]}``: the camt.053 end-of-day statements (cut by
    ``POST /_sandbox/close-day``) or camt.054 notifications (one per batch of returns, written when the
    return is booked) numbered above ``N`` — how a gateway offers the documents a client has not
    fetched yet (EBICS C53/C54 downloads work alike). Bookings follow the sandbox clock like statuses:
    a transfer is booked (a debit, one entry per payment file) when it reaches ACSC.
``GET /v1/statements/{seq}`` / ``GET /v1/notifications/{seq}``
    The document itself (``application/xml``), valid against its official XSD; 404 if unknown.

Status progression (lazy, by the sandbox clock; one step = ``step_delay`` seconds, default 0.5;
``step_delay <= 0`` jumps straight to the final state; a return is no status: it is booked, one step
after ACSC, as a credit with ``RtrInf`` in a camt.054 and the next camt.053)::

    any other IBAN          ACTC → ACCP → ACSC
    any other IBAN, INST    ACTC → ACSC
    TEST_IBAN_AC01          ACTC → RJCT AC01 (incorrect account number)
    TEST_IBAN_AC04          ACTC → RJCT AC04 (closed account number)
    TEST_IBAN_AM04          ACTC → ACCP → RJCT AM04 (insufficient funds)
    TEST_IBAN_RETURNED      ACTC → ACCP → ACSC, then returned AC04 (account closed) in camt.054

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
    POST   /_sandbox/reset          forget everything (state, counters, faults, log, clock, delay,
                                     latency back to the starting one)
    POST   /_sandbox/faults         {"kind", "count"=1, "method"?, "path_prefix"?, "retry_after"=1}
    POST   /_sandbox/fault-rate     {"rate", "mix"?: {kind: weight}, "seed"?, "method"?, "path_prefix"?}
    DELETE /_sandbox/faults         clear queued faults and the rate
    POST   /_sandbox/clock/advance  {"seconds"}  move the sandbox clock forward
    POST   /_sandbox/step-delay     {"seconds"}  set the status step delay
    POST   /_sandbox/latency        {"seconds"}  hold every ``/v1`` request this long before handling it
    POST   /_sandbox/close-day      cut today's camt.053; answers {"seq"}
    POST   /_sandbox/lose           {"end_to_end_id"}  the bank settles it but never books it
    POST   /_sandbox/foreign-booking {"end_to_end_id", "amount_minor", "currency"="EUR"}  a debit we never sent
    POST   /_sandbox/message-versions {"statement"?, "notification"?}  e.g. camt.053.001.02

Python API: :class:`BankSandbox` (start/stop/context manager, ``url``, ``inject``,
``set_fault_rate``, ``clear_faults``, ``set_step_delay``, ``set_stall_seconds``, ``set_latency``, ``advance_clock``,
``executions``, ``executions_for``, ``executions_for_key``, ``counters``, ``status_of``,
``requests``, ``reset``) and :func:`serve_forever` for the CLI (``python -m
adapters.sandboxes.bank_sandbox --port 8766``). Nothing here ever logs a full IBAN: the request log
holds no bodies, and schema errors quoting an IBAN are masked to country code + last 4.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from adapters.sandboxes import listen_arguments, run_until_signalled
from adapters.sandboxes.bank_gateway import (
    DEFAULT_STEP_DELAY,
    DUPLICATE_REASON_CODE,
    RETURN_REASON_CODE,
    TEST_IBAN_AC01,
    TEST_IBAN_AC04,
    TEST_IBAN_ACCEPT,
    TEST_IBAN_AM04,
    TEST_IBAN_RETURNED,
    BankGateway,
    ExecutionCounters,
    Response,
    error_response,
    json_response,
)
from adapters.sandboxes.bank_payees import verify_payee_request
from adapters.sandboxes.faults import DEFAULT_STALL_SECONDS, Fault, FaultKind, FaultPlan
from adapters.sandboxes.http_server import HostedSandbox, Latency, SandboxHandler
from adapters.sandboxes.json_types import JsonValue
from adapters.sandboxes.observations import RequestLog

__all__ = [
    "DEFAULT_STALL_SECONDS",
    "DEFAULT_STEP_DELAY",
    "DUPLICATE_REASON_CODE",
    "FAULT_KINDS",
    "RETURN_REASON_CODE",
    "TEST_IBAN_AC01",
    "TEST_IBAN_AC04",
    "TEST_IBAN_ACCEPT",
    "TEST_IBAN_AM04",
    "TEST_IBAN_RETURNED",
    "BankFaultKind",
    "BankSandbox",
    "ExecutionCounters",
    "RequestRecord",
    "main",
    "serve_forever",
]

_log = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024

BankFaultKind = Literal["http_500", "http_429", "stall", "reset", "drop_after_work"]
"""The fault kinds the gateway plays (the shared ``FaultKind`` less Stripe's own)."""
FAULT_KINDS: tuple[FaultKind, ...] = (
    FaultKind.HTTP_500,
    FaultKind.HTTP_429,
    FaultKind.STALL,
    FaultKind.RESET,
    FaultKind.DROP_AFTER_WORK,
)
_NOTHING_EXECUTES = frozenset({FaultKind.HTTP_500, FaultKind.HTTP_429, FaultKind.STALL, FaultKind.RESET})
_DOCUMENT_KINDS = {"statements": "camt.053", "notifications": "camt.054"}
_DEFAULT_MIX: Mapping[str, float] = {"http_500": 1.0, "http_429": 1.0, "reset": 1.0}


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

    def to_json(self) -> JsonValue:
        """The record as JSON, for ``GET /_sandbox/requests``."""
        return {
            "method": self.method,
            "path": self.path,
            "idempotency_key": self.idempotency_key,
            "headers": dict(self.headers),
            "status": self.status,
            "replayed": self.replayed,
            "fault": self.fault,
            "received_at": self.received_at.isoformat(),
        }


class _SandboxState:
    """What the server threads share: the gateway, the fault plan, the request log, the stall length,
    the latency."""

    def __init__(self, step_delay: float, stall_seconds: float, latency_seconds: float = 0.0) -> None:
        self.gateway = BankGateway(step_delay)
        self.faults = FaultPlan()
        self.requests: RequestLog[RequestRecord] = RequestLog()
        self.stall_seconds = stall_seconds
        self.stopping = threading.Event()
        self.latency = Latency(latency_seconds, self.stopping)

    def inject(
        self, kind: FaultKind | str, count: int, method: str | None, path_prefix: str | None, retry_after: int
    ) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        self.faults.inject(Fault(FaultKind(kind), retry_after), count, method=method, path_prefix=path_prefix)

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
        weights = dict(mix) if mix else dict(_DEFAULT_MIX)
        unknown = [kind for kind in weights if kind not in FAULT_KINDS]
        if unknown or any(weight < 0 for weight in weights.values()) or sum(weights.values()) <= 0:
            names = tuple(str(known) for known in FAULT_KINDS)
            raise ValueError(f"mix must map fault kinds {names} to non-negative weights")
        kinds = [FaultKind(kind) for kind in weights]
        template = Fault(FaultKind.HTTP_500)
        self.faults.set_rate(
            rate, kinds, seed, template, weights=weights.values(), method=method, path_prefix=path_prefix
        )

    def reset(self) -> None:
        self.gateway.reset()
        self.faults.clear()
        self.requests.clear()
        self.latency.reset()


class _Handler(SandboxHandler[_SandboxState]):
    """Reads a request, lets the fault plan and the gateway decide, writes (or withholds) the answer."""

    server_version = "BankSandbox/1.0"
    timeout = 30  # idle keep-alive connections are closed after this many seconds

    def log_message(self, format: str, *args: object) -> None:
        _log.debug("bank sandbox: " + format, *args)

    def do_PUT(self) -> None:  # noqa: N802 - http.server looks handlers up as do_<METHOD>
        """Serve a PUT (a 404 or 405 from the gateway; it has no PUT route)."""
        self.dispatch()

    # ----------------------------------------------------------------------------- plumbing

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._send(error_response(411, "length_required", "send a Content-Length, not chunked encoding"))
            self.close_connection = True
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self._send(error_response(413, "body_too_large", f"bodies are limited to {MAX_BODY_BYTES} bytes"))
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def _redacted_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers[name.lower()] = "Bearer ***" if name.lower() == "authorization" else value
        return headers

    # ----------------------------------------------------------------------------- dispatch

    def dispatch(self) -> None:
        state = self.state
        method = self.command
        path = urlsplit(self.path).path
        body = self._read_body()
        if body is None:
            return
        if path.startswith("/_sandbox/"):
            self._send(self._control(method, path, body))
            return
        if not state.latency.hold():  # stopping while the latency held it: nothing done, nothing answered
            self.close_connection = True
            return

        key = self.headers.get("Idempotency-Key")
        headers = self._redacted_headers()
        received = datetime.now(UTC)
        fault = state.faults.next_fault(method, path)

        def log(status: int | None, replayed: bool = False) -> None:
            fault_kind = fault.kind.value if fault else None
            state.requests.append(RequestRecord(method, path, key, headers, status, replayed, fault_kind, received))

        if fault is not None and fault.kind in _NOTHING_EXECUTES:
            if fault.kind is FaultKind.HTTP_500:
                log(500)
                self._send(error_response(500, "internal_error", "injected fault: internal server error"))
            elif fault.kind is FaultKind.HTTP_429:
                log(429)
                self._send(
                    error_response(
                        429,
                        "rate_limited",
                        "injected fault: too many requests",
                        (("Retry-After", str(fault.retry_after)),),
                    )
                )
            elif fault.kind is FaultKind.STALL:
                log(None)
                state.stopping.wait(state.stall_seconds)
                self.abort()
            else:
                log(None)
                self.abort()
            return

        response = self._route(method, path, key, body)
        log(response.status, response.replayed)
        if fault is not None:  # drop_after_work: the work is done and stored, the answer is lost
            self.abort()
            return
        self._send(response)

    def _route(self, method: str, path: str, key: str | None, body: bytes) -> Response:
        gateway = self.state.gateway
        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return error_response(
                401,
                "unauthorized",
                "send Authorization: Bearer <token>",
                (("WWW-Authenticate", 'Bearer realm="bank-sandbox"'),),
            )
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if parts == ["v1", "payment-files"]:
            if method != "POST":
                return error_response(405, "method_not_allowed", "use POST", (("Allow", "POST"),))
            return gateway.submit(key, body)
        if parts == ["v1", "payee-verifications"]:
            if method != "POST":
                return error_response(405, "method_not_allowed", "use POST", (("Allow", "POST"),))
            return verify_payee_request(body)
        if len(parts) == 3 and parts[:2] == ["v1", "payment-status"]:
            if method != "GET":
                return error_response(405, "method_not_allowed", "use GET", (("Allow", "GET"),))
            return gateway.transaction_report(parts[2])
        if len(parts) in (2, 3) and parts[0] == "v1" and parts[1] in _DOCUMENT_KINDS:
            if method != "GET":
                return error_response(405, "method_not_allowed", "use GET", (("Allow", "GET"),))
            kind = _DOCUMENT_KINDS[parts[1]]
            if len(parts) == 2:
                after = parse_qs(urlsplit(self.path).query).get("after", ["0"])[0]
                if not after.isdigit():
                    return error_response(400, "invalid_request", "after must be a document number")
                return gateway.documents(kind, int(after))
            if not parts[2].isdigit():
                return error_response(404, "not_found", f"no {kind} document {parts[2]}")
            return gateway.document(kind, int(parts[2]))
        if len(parts) in (3, 4) and parts[:2] == ["v1", "payment-files"]:
            if method != "GET":
                return error_response(405, "method_not_allowed", "use GET", (("Allow", "GET"),))
            if len(parts) == 3:
                return gateway.file_report(parts[2], as_json=True)
            if parts[3] == "status":
                return gateway.file_report(parts[2], as_json=False)
        return error_response(404, "not_found", f"no route for {method} {path}")

    def _control(self, method: str, path: str, body: bytes) -> Response:
        state = self.state
        try:
            payload = json.loads(body) if body.strip() else {}
            if not isinstance(payload, dict):
                raise TypeError("the body must be a JSON object")
            if (method, path) == ("GET", "/_sandbox/counters"):
                counters = state.gateway.counters()
                return json_response(
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
                return json_response(200, [record.to_json() for record in state.requests.entries()])
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
                state.faults.clear()
            elif (method, path) == ("POST", "/_sandbox/fault-rate"):
                state.set_fault_rate(
                    float(payload["rate"]),
                    payload.get("mix"),
                    payload.get("seed"),
                    payload.get("method"),
                    payload.get("path_prefix"),
                )
            elif (method, path) == ("POST", "/_sandbox/clock/advance"):
                state.gateway.advance_clock(float(payload["seconds"]))
            elif (method, path) == ("POST", "/_sandbox/step-delay"):
                state.gateway.set_step_delay(float(payload["seconds"]))
            elif (method, path) == ("POST", "/_sandbox/latency"):
                state.latency.set(float(payload["seconds"]))
            elif (method, path) == ("POST", "/_sandbox/close-day"):
                return json_response(200, {"seq": state.gateway.close_day()})
            elif (method, path) == ("POST", "/_sandbox/lose"):
                state.gateway.lose(str(payload["end_to_end_id"]))
            elif (method, path) == ("POST", "/_sandbox/foreign-booking"):
                state.gateway.book_foreign(
                    str(payload["end_to_end_id"]), int(payload["amount_minor"]), str(payload.get("currency", "EUR"))
                )
            elif (method, path) == ("POST", "/_sandbox/message-versions"):
                state.gateway.set_message_versions(payload.get("statement"), payload.get("notification"))
            else:
                return error_response(404, "not_found", f"no control route for {method} {path}")
        except (KeyError, TypeError, ValueError) as exc:
            return error_response(400, "invalid_request", f"{type(exc).__name__}: {exc}")
        return json_response(200, {"ok": True})


class BankSandbox(HostedSandbox[_SandboxState]):
    """An offline bank gateway on loopback for tests and local runs (see the module docstring).

    Thread-safe; ``start()`` serves from a daemon thread, ``stop()`` closes the listener and every
    open connection, wakes stalled requests and waits for the requests still being handled, so the
    counters are final once it returns. Usable as a context manager. ``latency_seconds``: every ``/v1``
    request (submission or status report) is held that long before it is handled (a sleeping thread,
    no CPU), like a real gateway's response time; 0 answers at once.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        step_delay: float = DEFAULT_STEP_DELAY,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
        latency_seconds: float = 0.0,
    ) -> None:
        state = _SandboxState(step_delay, stall_seconds, latency_seconds)
        super().__init__(
            (host, port), state, _Handler, label="bank sandbox", stopping=state.stopping, wait_for_handlers=True
        )

    def inject(
        self,
        kind: FaultKind | BankFaultKind,
        count: int = 1,
        *,
        retry_after: int = 1,
        method: str | None = None,
        path_prefix: str | None = None,
    ) -> None:
        """Make the next ``count`` matching ``/v1`` requests suffer ``kind`` (see FAULT_KINDS).

        ``retry_after`` is the 429's ``Retry-After``; ``method`` / ``path_prefix`` pick the requests.
        """
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
        self._state.faults.clear()

    def set_step_delay(self, seconds: float) -> None:
        """Seconds per status step (ACTC → ACCP → ACSC ...); ``<= 0`` means final immediately."""
        self._state.gateway.set_step_delay(seconds)

    def set_stall_seconds(self, seconds: float) -> None:
        """How long a ``stall`` fault holds the connection before resetting it."""
        self._state.stall_seconds = seconds

    def set_latency(self, seconds: float) -> None:
        """Hold every ``/v1`` request ``seconds`` before handling it from now on (0: answer at once)."""
        self._state.latency.set(seconds)

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox clock forward, so statuses progress without sleeping."""
        self._state.gateway.advance_clock(seconds)

    def executions(self) -> int:
        """Total transfers accepted for execution (duplicates, replays and faults never count)."""
        return self._state.gateway.counters().total

    def executions_for(self, end_to_end_id: str) -> int:
        """How many times the transfer with this EndToEndId executed (0 or 1 unless something broke)."""
        return self._state.gateway.counters().by_end_to_end_id.get(end_to_end_id, 0)

    def executions_for_key(self, idempotency_key: str) -> int:
        """Transfers executed by requests carrying this Idempotency-Key."""
        return self._state.gateway.counters().by_idempotency_key.get(idempotency_key, 0)

    def counters(self) -> ExecutionCounters:
        """A snapshot of every counter."""
        return self._state.gateway.counters()

    def status_of(self, end_to_end_id: str) -> str | None:
        """The current status code of a transaction (as ``GET /v1/payment-status`` would report)."""
        return self._state.gateway.status_of(end_to_end_id)

    def close_day(self) -> int:
        """Cut today's camt.053 statement (everything booked since the last one); its number."""
        return self._state.gateway.close_day()

    def lose(self, end_to_end_id: str) -> None:
        """The bank settles this transfer but never books it: it is missing from every statement."""
        self._state.gateway.lose(end_to_end_id)

    def book_foreign(self, end_to_end_id: str, amount_minor: int, currency: str = "EUR") -> None:
        """Book a debit of our account that we never initiated."""
        self._state.gateway.book_foreign(end_to_end_id, amount_minor, currency)

    def set_message_versions(self, statement: str | None = None, notification: str | None = None) -> None:
        """The camt versions the bank writes from now on (e.g. ``camt.053.001.02``)."""
        self._state.gateway.set_message_versions(statement, notification)

    def requests(self) -> list[RequestRecord]:
        """The ``/v1`` request log, oldest first."""
        return self._state.requests.entries()

    def reset(self) -> None:
        """Forget all files, keys, counters, faults and the log; restore the clock, step delay and latency."""
        self._state.reset()


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8766,
    *,
    step_delay: float = DEFAULT_STEP_DELAY,
    stall_seconds: float = DEFAULT_STALL_SECONDS,
    latency_seconds: float = 0.0,
) -> None:
    """Run a bank sandbox in the foreground until interrupted (for ``payments sandbox``)."""
    sandbox = BankSandbox(
        host, port, step_delay=step_delay, stall_seconds=stall_seconds, latency_seconds=latency_seconds
    ).start()
    print(f"bank sandbox listening on {sandbox.url}", flush=True)
    run_until_signalled(sandbox)


def main(argv: list[str] | None = None) -> None:
    """``python -m adapters.sandboxes.bank_sandbox [--host H] [--port P] [--step-delay S] [--latency-seconds L]``."""
    parser = listen_arguments("Offline SEPA bank gateway sandbox", 8766)
    parser.add_argument("--step-delay", type=float, default=DEFAULT_STEP_DELAY)
    parser.add_argument("--stall-seconds", type=float, default=DEFAULT_STALL_SECONDS)
    parser.add_argument("--latency-seconds", type=float, default=0.0, help="hold every /v1 request this long")
    args = parser.parse_args(argv)
    serve_forever(
        args.host,
        args.port,
        step_delay=args.step_delay,
        stall_seconds=args.stall_seconds,
        latency_seconds=args.latency_seconds,
    )


if __name__ == "__main__":
    main()
