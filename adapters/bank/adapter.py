"""The bank-transfer PSP: SEPA credit transfers (pain.001 out, pain.002 in) over a bank gateway's HTTP API.

Why this shape: a payout is one pain.001.001.09 file with one transaction. Its identifiers
(``MsgId``/``PmtInfId``/``EndToEndId``) and its ``CreDtTm`` are fixed by :meth:`prepare_payout` and
stored with the payout *before* the first submission, so every attempt — a retry seconds later or a
recovery re-drive days later — rebuilds the same bytes and sends them under the same
``Idempotency-Key``. The gateway then either replays its stored answer or, if the file arrives under a
different key, rejects the transaction as a duplicate (AM05/DUPL) because it already holds that
``EndToEndId``; we answer a duplicate by *reading* the existing transfer's status, never by resending.

Like every adapter this one makes single attempts and only translates (retries live in
:mod:`adapters.retry`). Wire API (see :mod:`adapters.sandboxes.bank_sandbox` for the full contract):

* ``POST {api_base}/v1/payment-files`` — the pain.001 body; ``202`` with JSON
  ``{"file_id", "msg_id", "transactions": [{"end_to_end_id", "status", "reason_code"}]}``.
* ``GET {api_base}/v1/payment-status/{end_to_end_id}`` — a pain.002.001.10 report; ``404`` if unknown.

Outcome mapping (design §5): ACTC/ACCP/ACSP/PDNG/RCVD/ACWC → PENDING, ACSC/ACCC → SUCCEEDED, RJCT/CANC →
FAILED with the ISO reason code. A status we do not recognise is reported as PENDING and logged: never
FAILED without evidence. Returns are not statuses: they come as booked credits with return information
in camt.054/camt.053, fetched by :mod:`adapters.bank.statements` and reconciled from there. ``psp_reference`` is
the ``EndToEndId`` (see :meth:`BankTransferAdapter.payout` for why).

Nothing here puts a full IBAN into an exception or a log line: only :func:`~adapters.bank.accounts.mask_iban`
forms, and any free text from the bank passes through :func:`~adapters.bank.xmltools.mask_ibans_in_text`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import httpx

from adapters.aiohttp_transport import AiohttpTransport
from adapters.bank import payee_check
from adapters.bank.errors import BankValidationError, DocumentError, Pain002ParseError
from adapters.bank.pain001 import CreditTransfer, DebtorAccount, build_pain001, derive_message_ids
from adapters.bank.pain002 import PAIN002_VERSIONS, TransactionStatus, classify_status, parse_pain002
from adapters.bank.xmltools import format_datetime, mask_ibans_in_text, parse_datetime
from server.app.deadline import Deadline
from server.app.psp import (
    CancelOrder,
    CaptureOrder,
    ChargeOrder,
    Order,
    OutcomeKind,
    PayeeAnswer,
    PayeeCheckOrder,
    PayoutOrder,
    PspOutcome,
    PspRejectedError,
    PspUnavailableError,
    RefundOrder,
)
from server.domain.finality import Rejection
from server.domain.idempotency import Operation
from server.domain.iso_reasons import REASON_TEXT
from server.domain.model import Failure, PayoutDestination, SepaDestination
from server.domain.money import Money
from server.domain.sepa_scheme import SEPA_CURRENCY, SEPA_MAX_AMOUNT_MINOR
from server.domain.sepa_text import SepaTextError

__all__ = [
    "MAX_REQUEST_SECONDS",
    "PSP_DATA_KEYS",
    "BankTransferAdapter",
    "SepaTransferInvalidError",
]

_log = logging.getLogger(__name__)

MAX_REQUEST_SECONDS: Final = 30.0
"""Upper bound of one HTTP request when the caller's deadline is further away (or absent): a bank
gateway that has not answered in 30 s will not; the retry policy and the recovery worker take over."""

PSP_DATA_KEYS: Final = ("msg_id", "pmt_inf_id", "end_to_end_id", "created_at")
"""What :meth:`BankTransferAdapter.prepare_payout` returns and :meth:`~BankTransferAdapter.payout` needs."""

_ERROR_TEXT_LIMIT = 300
_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-correlation-id")

_DEFAULT_CONNECTIONS = 100  # an adapter's own client (tests, tools); the service passes PAYMENTS_PSP_MAX_CONNECTIONS


def bank_http_client(max_connections: int) -> httpx.AsyncClient:
    """The HTTP client for a bank gateway: httpx's interface on aiohttp's connection pool
    (adapters/aiohttp_transport.py says why), with no hidden cap on concurrent requests."""
    return httpx.AsyncClient(transport=AiohttpTransport(max_connections), timeout=MAX_REQUEST_SECONDS)


# The gateway keeps idempotency keys and EndToEndIds (its duplicate check) for 30 days in our contract
# with it, and answers status look-ups by EndToEndId for 90 days. Another bank: pass its figures.
BANK_KEY_TTL_SECONDS: Final = 30 * 86400.0
BANK_LOOKUP_WINDOW_SECONDS: Final = 90 * 86400.0


class SepaTransferInvalidError(PspRejectedError):
    """The payout cannot become a valid SEPA credit transfer; raised before any HTTP request.

    Why a :class:`PspRejectedError`: the use case already turns a rejection into a final FAILED payout
    with a logged alert, and nothing was sent, so nothing can have executed. ``field`` and ``reason``
    come from :class:`~adapters.bank.errors.BankValidationError` so the cause stays precise (e.g.
    ``currency``, ``amount_minor`` for SEPA Instant over EUR 100,000, ``creditor_name`` for text outside
    the SEPA character set). The API edge is meant to catch these first; this is the last line.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(
            f"bank payout is not a valid SEPA credit transfer: {field}: {reason}", code="invalid_sepa_transfer"
        )
        self.field = field
        self.reason = reason


class BankTransferAdapter:
    """Single-attempt SEPA payout adapter (wrap it in :class:`adapters.retry.RetryingProvider`).

    ``api_base`` is the gateway root (``https://bank.example/api`` or the sandbox URL), ``api_token``
    the bearer token (non-empty, else ``ValueError``), ``debtor`` our own paying account. Pass ``http``
    to share a client (connection pool, instrumentation); otherwise the adapter owns one and
    :meth:`aclose` closes it.
    """

    def __init__(
        self,
        api_base: str,
        api_token: str,
        debtor: DebtorAccount,
        *,
        name: str = "bank",
        http: httpx.AsyncClient | None = None,
        key_ttl_seconds: float = BANK_KEY_TTL_SECONDS,
        lookup_window_seconds: float = BANK_LOOKUP_WINDOW_SECONDS,
        status_versions: tuple[str, ...] = PAIN002_VERSIONS,
    ) -> None:
        if not api_token.strip() or any(char in api_token for char in "\r\n\x00"):
            # A bad token is configuration, found at startup rather than as 401s on live payouts.
            raise ValueError("api_token must be a non-empty single-line string")
        self._base = api_base.rstrip("/")
        self._token = api_token.strip()
        self._debtor = debtor
        self._name = name
        self._key_ttl_seconds = key_ttl_seconds
        self._lookup_window_seconds = lookup_window_seconds
        self._status_versions = status_versions  # the pain.002 versions this bank sends (its configuration)
        self._owns_http = http is None
        # The client default is only a backstop: every request passes its own deadline-derived timeout.
        self._http = http if http is not None else bank_http_client(_DEFAULT_CONNECTIONS)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_ttl_seconds(self) -> float:
        return self._key_ttl_seconds

    @property
    def lookup_window_seconds(self) -> float:
        return self._lookup_window_seconds

    @property
    def payouts_can_return(self) -> bool:
        # A SEPA credit transfer can come back after it was booked, but a status report never says so:
        # returns arrive as camt.054/camt.053 entries and are reconciled from statements, so polling a
        # PAID payout's pain.002 for one would only cost requests.
        return False

    async def aclose(self) -> None:
        """Close the HTTP client if this adapter created it (a shared one belongs to its owner)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> BankTransferAdapter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- the port -----------------------------------------------------------------------------

    def prepare_payout(self, order: PayoutOrder) -> dict[str, str]:
        """The ids and creation time to store with the payout before its first submission.

        Why: the bank detects duplicates by ``EndToEndId`` and the gateway's idempotency key only
        replays a byte-identical body, so every attempt must rebuild the very same file. The ids are
        derived from the payout id (:func:`derive_message_ids`); ``created_at`` (UTC, ISO 8601, second
        precision) becomes ``CreDtTm`` and its date the requested execution date. Raises
        :class:`SepaTransferInvalidError` if the payout id is not ours (a programming error).
        """
        try:
            ids = derive_message_ids(order.payout_id)
        except (BankValidationError, SepaTextError) as exc:
            raise SepaTransferInvalidError(exc.field, exc.reason) from exc
        return {
            "msg_id": ids.msg_id,
            "pmt_inf_id": ids.pmt_inf_id,
            "end_to_end_id": ids.end_to_end_id,
            "created_at": format_datetime(datetime.now(UTC)),
        }

    def amount_problem(self, amount: Money, operation: Operation) -> str | None:
        """The SEPA scheme's amount rules (server/domain/sepa_scheme.py); Instant is checked at the edge,
        where the request says whether it is one."""
        if amount.currency != SEPA_CURRENCY:
            return "SEPA credit transfers are in EUR"
        if amount.amount_minor > SEPA_MAX_AMOUNT_MINOR:
            return f"a SEPA credit transfer carries at most {Money(SEPA_MAX_AMOUNT_MINOR, SEPA_CURRENCY).format()}"
        return None

    def destination_problem(self, destination: PayoutDestination) -> str | None:
        # The account itself is checked at the edge by the SEPA scheme's rules (sepa_scheme.py).
        return None if isinstance(destination, SepaDestination) else "the bank pays SEPA accounts only"

    async def charge(self, order: ChargeOrder, deadline: Deadline) -> PspOutcome:
        """A bank gateway only pushes money out; card charges go to a card PSP."""
        raise PspRejectedError("the bank transfer PSP cannot charge", code="unsupported_operation")

    async def refund(self, order: RefundOrder, deadline: Deadline) -> PspOutcome:
        """There is no charge at the bank to refund."""
        raise PspRejectedError("the bank transfer PSP cannot refund", code="unsupported_operation")

    async def capture(self, order: CaptureOrder, deadline: Deadline) -> PspOutcome:
        """A credit transfer has no authorization to capture."""
        raise PspRejectedError("the bank transfer PSP cannot capture", code="unsupported_operation")

    async def cancel(self, order: CancelOrder, deadline: Deadline) -> PspOutcome:
        """Nothing the bank holds can be voided here."""
        raise PspRejectedError("the bank transfer PSP cannot cancel a charge", code="unsupported_operation")

    async def payout(self, order: PayoutOrder, deadline: Deadline) -> PspOutcome:
        """Submit the payout's pain.001 once and translate the gateway's answer.

        ``psp_reference`` is the ``EndToEndId``: it is ours, known before submission, unique per payout,
        the key of the gateway's status endpoint and of its duplicate check, and it travels with the
        money to the creditor's statement. The gateway's file id changes if a file is resubmitted under
        another key and names a file, not a transfer, so it goes to ``data["bank_file_id"]`` instead.

        Raises :class:`SepaTransferInvalidError` / :class:`PspRejectedError` before or instead of a
        request that cannot succeed, :class:`PspUnavailableError` when the answer is missing.
        """
        if not isinstance(order.destination, SepaDestination):
            raise PspRejectedError("the bank transfer PSP pays SEPA accounts only", code="unsupported_destination")
        ids = _stored_ids(order)
        body = self._pain001(order, order.destination, ids)
        headers = {
            "Idempotency-Key": order.psp_key,
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/xml",
        }
        response = await self._send("POST", f"{self._base}/v1/payment-files", deadline, headers, body)
        request_id = _request_id(response)
        if response.status_code not in (200, 201, 202):
            raise _http_error("payout", response, request_id)

        e2e = ids["end_to_end_id"]
        entry, file_id = _submission_entry(response, e2e, ids["pmt_inf_id"])
        data = {"end_to_end_id": e2e}
        if file_id:
            data["bank_file_id"] = file_id
        data["psp_request_id"] = request_id or file_id or e2e
        if entry is None:
            # The bank took the file (2xx) but its answer does not tell us about our transfer: treat it
            # like a lost answer — possibly executed, resolved by a lookup, never a failure.
            _log.warning("bank %s: submission of %s answered without a status for it", self._name, e2e)
            return PspOutcome(OutcomeKind.UNKNOWN, psp_reference=e2e, data=data)
        if entry.is_duplicate_rejection:
            _log.info(
                "bank %s: %s already holds %s (%s); reading its status instead of resending",
                self._name, file_id or "gateway", e2e, entry.reason_code,
            )  # fmt: skip
            return await self._duplicate_status(e2e, deadline)
        return _outcome(entry, data, self._name)

    async def verify_payee(self, order: PayeeCheckOrder, deadline: Deadline) -> PayeeAnswer:
        """Verification of Payee at the creditor's bank (wire format: :mod:`adapters.bank.payee_check`).

        A question, not a transfer: nothing executes, so every error is "no answer yet" or a refusal of
        the request, and the caller asks again; it is sent without an idempotency key.
        """
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
        body = payee_check.request_body(order)
        try:
            response = await self._send("POST", f"{self._base}{payee_check.PATH}", deadline, headers, body)
        except PspUnavailableError as exc:
            raise _nothing_executed(exc) from exc
        request_id = _request_id(response)
        if response.status_code != 200:
            error = _http_error("payee verification", response, request_id, keyed=False)
            raise _nothing_executed(error) if isinstance(error, PspUnavailableError) else error
        return payee_check.parse_answer(response, self._name, request_id)

    async def lookup(self, order: Order, psp_reference: str | None, deadline: Deadline) -> PspOutcome:
        """The bank's current status of a payout, from ``GET /v1/payment-status/{EndToEndId}``.

        The ``EndToEndId`` comes from the stored ``psp_data`` (else ``psp_reference``, else it is
        derived again from the payout id — the derivation is deterministic). 404 → UNKNOWN.
        """
        if not isinstance(order, PayoutOrder):
            raise PspRejectedError("the bank transfer PSP only knows payouts", code="unsupported_operation")
        e2e = order.psp_data.get("end_to_end_id") or psp_reference or _derived_e2e(order)
        return await self._status(e2e, deadline, operation="lookup")

    # -- building -----------------------------------------------------------------------------

    def _pain001(self, order: PayoutOrder, destination: SepaDestination, ids: dict[str, str]) -> bytes:
        try:
            created_at = parse_datetime(ids["created_at"])
        except DocumentError as exc:
            raise PspRejectedError(
                "stored psp_data.created_at is not an ISO 8601 timestamp", code="invalid_psp_data"
            ) from exc
        transfer = CreditTransfer(
            payout_id=order.payout_id,
            amount_minor=order.amount.amount_minor,
            currency=order.amount.currency,
            creditor_name=destination.name,
            creditor_iban=destination.iban,
            creditor_bic=destination.bic or None,
            creditor_country=destination.country,
            creditor_town=destination.town,
            creditor_street=destination.street or None,
            creditor_postcode=destination.postcode or None,
            # Ustrd is mandatory in the file; an empty reference falls back to our EndToEndId, which
            # the creditor can quote back to us.
            remittance=order.reference if order.reference.strip() else ids["end_to_end_id"],
            instant=order.instant,
            msg_id=ids["msg_id"],
            pmt_inf_id=ids["pmt_inf_id"],
            end_to_end_id=ids["end_to_end_id"],
            requested_execution_date=created_at.astimezone(UTC).date(),
        )
        try:
            return build_pain001(transfer, self._debtor, created_at=created_at)
        except (BankValidationError, SepaTextError) as exc:
            raise SepaTransferInvalidError(exc.field, exc.reason) from exc
        except DocumentError as exc:  # our own file violates the XSD: a bug, never the caller's fault
            raise PspRejectedError(f"generated pain.001 is invalid: {exc}", code="pain001_invalid") from exc

    # -- status -------------------------------------------------------------------------------

    async def _duplicate_status(self, e2e: str, deadline: Deadline) -> PspOutcome:
        """The existing transfer's status; the bank holds it, so a lost answer here is 'possibly executed'."""
        try:
            return await self._status(e2e, deadline, operation="payout")
        except PspUnavailableError as exc:
            raise PspUnavailableError(
                f"{exc} (after the bank reported {e2e} as a duplicate)",
                possibly_executed=True,
                retry_after=exc.retry_after,
                request_id=exc.request_id,
            ) from exc

    async def _status(self, e2e: str, deadline: Deadline, *, operation: str) -> PspOutcome:
        url = f"{self._base}/v1/payment-status/{quote(e2e, safe='')}"
        headers = {"Authorization": f"Bearer {self._token}"}
        response = await self._send("GET", url, deadline, headers, None)
        request_id = _request_id(response)
        data = {"end_to_end_id": e2e}
        if response.status_code == 404:
            if request_id:
                data["psp_request_id"] = request_id
            return PspOutcome(OutcomeKind.UNKNOWN, data=data)
        if response.status_code != 200:
            raise _http_error(operation, response, request_id)
        try:
            report = parse_pain002(response.content, self._status_versions)
        except Pain002ParseError as exc:
            # Unreadable evidence is no evidence: UNKNOWN keeps the payout open for reconciliation.
            _log.error("bank %s: unreadable status report for %s: %s", self._name, e2e, mask_ibans_in_text(str(exc)))
            return PspOutcome(OutcomeKind.UNKNOWN, psp_reference=e2e, data=data)
        data["psp_request_id"] = request_id or report.msg_id
        entry = report.status_for(e2e)
        if entry is None:
            return PspOutcome(OutcomeKind.UNKNOWN, psp_reference=e2e, data=data)
        if entry.account_servicer_reference:
            data["bank_reference"] = entry.account_servicer_reference
        if entry.is_duplicate_rejection:
            # Only a duplicate's rejection on record, no accepted original: no evidence either way.
            data["bank_status"] = entry.status
            return PspOutcome(OutcomeKind.UNKNOWN, psp_reference=e2e, data=data)
        return _outcome(entry, data, self._name)

    # -- HTTP ---------------------------------------------------------------------------------

    async def _send(
        self, method: str, url: str, deadline: Deadline, headers: dict[str, str], body: bytes | None
    ) -> httpx.Response:
        """One HTTP request bounded by the deadline; transport failures become PspUnavailableError."""
        budget = deadline.clamp(MAX_REQUEST_SECONDS)
        if budget <= 0:
            raise PspUnavailableError(f"{self._name}: no time left to call the bank", possibly_executed=False)
        try:
            return await self._http.request(method, url, content=body, headers=headers, timeout=httpx.Timeout(budget))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Never reached the bank: nothing can have executed.
            raise PspUnavailableError(
                f"{self._name}: cannot reach the bank gateway ({type(exc).__name__})", possibly_executed=False
            ) from exc
        except httpx.LocalProtocolError as exc:
            # We could not even form the request (e.g. an illegal header value): a bug, nothing sent.
            raise PspRejectedError(
                f"{self._name}: cannot send the request ({type(exc).__name__})", code="local_protocol_error"
            ) from exc
        except httpx.TransportError as exc:
            # ReadTimeout, ReadError, RemoteProtocolError, WriteError, ...: the request may have been
            # processed and only the answer lost.
            raise PspUnavailableError(
                f"{self._name}: no answer from the bank gateway ({type(exc).__name__})", possibly_executed=True
            ) from exc


# -- translation helpers (pure) ---------------------------------------------------------------


def _nothing_executed(error: PspUnavailableError) -> PspUnavailableError:
    """The same lack of an answer, for a question: whatever became of the request, nothing executed."""
    return PspUnavailableError(
        str(error), possibly_executed=False, retry_after=error.retry_after, request_id=error.request_id
    )


def _stored_ids(order: PayoutOrder) -> dict[str, str]:
    missing = [key for key in PSP_DATA_KEYS if not order.psp_data.get(key)]
    if missing:
        raise PspRejectedError(
            f"payout {order.payout_id} lacks stored SEPA facts {missing}: prepare_payout() must run "
            "and be stored before the first submission",
            code="missing_psp_data",
        )
    return {key: order.psp_data[key] for key in PSP_DATA_KEYS}


def _derived_e2e(order: PayoutOrder) -> str:
    try:
        return derive_message_ids(order.payout_id).end_to_end_id
    except (BankValidationError, SepaTextError) as exc:
        raise SepaTransferInvalidError(exc.field, exc.reason) from exc


def _submission_entry(
    response: httpx.Response, e2e: str, pmt_inf_id: str
) -> tuple[TransactionStatus | None, str | None]:
    """(our transaction's status, the gateway's file id) from a 2xx submission answer, if readable."""
    try:
        payload: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, None
    if not isinstance(payload, dict):
        return None, None
    file_id = payload.get("file_id")
    file_id = file_id if isinstance(file_id, str) and file_id else None
    transactions = payload.get("transactions")
    if not isinstance(transactions, list):
        return None, file_id
    for item in transactions:
        if not isinstance(item, dict) or item.get("end_to_end_id") != e2e:
            continue
        status = item.get("status")
        reason = item.get("reason_code")
        if not isinstance(status, str) or not status:
            return None, file_id
        return (
            TransactionStatus(
                end_to_end_id=e2e,
                original_pmt_inf_id=pmt_inf_id,
                status=status,
                reason_code=reason if isinstance(reason, str) and reason else None,
            ),
            file_id,
        )
    return None, file_id


def _outcome(entry: TransactionStatus, data: dict[str, str], psp: str) -> PspOutcome:
    """Translate one transaction status (pain.002 or submission JSON) to an outcome."""
    e2e = entry.end_to_end_id
    data = {**data, "bank_status": entry.status}
    reason = entry.reason_code or entry.reason_proprietary
    if reason:
        data["bank_reason_code"] = reason
    family = classify_status(entry.status)
    if family == "succeeded":
        return PspOutcome(OutcomeKind.SUCCEEDED, psp_reference=e2e, data=data)
    if family == "failed":
        return PspOutcome(OutcomeKind.FAILED, psp_reference=e2e, failure=_failure(entry, "bank_rejected"), data=data)
    if family == "unknown":
        _log.warning("bank %s: unrecognised status %r for %s; treating it as pending", psp, entry.status[:8], e2e)
    return PspOutcome(OutcomeKind.PENDING, psp_reference=e2e, data=data)


def _failure(entry: TransactionStatus, fallback_code: str) -> Failure:
    """Failure(code=ISO reason, message=its meaning, decline_code=ISO reason)."""
    code = entry.reason_code or ""
    if code in REASON_TEXT:
        message = REASON_TEXT[code]
    elif entry.additional_info:
        message = _clean(" ".join(entry.additional_info))
    elif entry.reason_proprietary:
        message = f"bank reason {_clean(entry.reason_proprietary)}"
    else:
        message = "rejected by the bank" if fallback_code == "bank_rejected" else "returned by the bank"
    return Failure(code=code or fallback_code, message=message, decline_code=code)


def _request_id(response: httpx.Response) -> str | None:
    for header in _REQUEST_ID_HEADERS:
        value: str | None = response.headers.get(header)
        if value:
            return value[:200]
    return None


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), or None."""
    value: str | None = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _error_body(response: httpx.Response) -> tuple[str | None, str]:
    """(the gateway's error code, its message) from a JSON error body, both IBAN-masked."""
    try:
        payload: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, ""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None, ""
    code, message = error.get("code"), error.get("message")
    return (
        _clean(code)[:64] if isinstance(code, str) and code else None,
        _clean(message) if isinstance(message, str) else "",
    )


def _clean(text: str) -> str:
    return mask_ibans_in_text(" ".join(text.split()))[:_ERROR_TEXT_LIMIT]


_REJECTION_CODES: Final[dict[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    422: "idempotency_key_reused",
}


# 401/403 refuse our token (configuration, never the payout's failure); 422 says the key was used before.
_REJECTIONS: Final[dict[int, Rejection]] = {
    401: Rejection.CREDENTIALS,
    403: Rejection.CREDENTIALS,
    422: Rejection.KEY_USED,
}


def _http_error(operation: str, response: httpx.Response, request_id: str | None, *, keyed: bool = True) -> Exception:
    """The error for a non-success HTTP status (raised by the caller). `keyed`: the request carried an
    idempotency key; only then can a 422 mean that the key was used before."""
    status = response.status_code
    code, message = _error_body(response)
    what = f"bank gateway answered {operation} with HTTP {status}" + (f" {code}" if code else "")
    if message:
        what += f": {message}"
    if status in (429, 503):  # throttled / unavailable: refused before doing any work
        return PspUnavailableError(
            what, possibly_executed=False, retry_after=_retry_after(response), request_id=request_id
        )
    if status == 408:  # the gateway gave up waiting for our request: nothing was processed
        return PspUnavailableError(what, possibly_executed=False, request_id=request_id)
    if status == 409 or status >= 500:  # in use, or failed somewhere inside the bank: may have executed
        return PspUnavailableError(
            what, possibly_executed=True, retry_after=_retry_after(response), request_id=request_id
        )
    if status == 422 and not keyed:  # a question without a key: the request itself was refused
        return PspRejectedError(what, code=code or "unprocessable", request_id=request_id, rejection=Rejection.REQUEST)
    if status == 422 and code is None:
        code = "idempotency_key_reused"
    code = code or _REJECTION_CODES.get(status, f"http_{status}")
    rejection = _REJECTIONS.get(status, Rejection.REQUEST)
    return PspRejectedError(what, code=code, request_id=request_id, rejection=rejection)
