"""Request validation at the edge: a payments.v1 request becomes a command, or INVALID_ARGUMENT with
every field violation at once. Nothing is stored for a request refused here.
"""

from __future__ import annotations

import re
import urllib.parse
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from google.protobuf.message import Message

from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.app.commands import CancelCommand, CaptureCommand, ChargeCommand, PayoutCommand, RefundCommand
from server.app.events import event_types
from server.app.queries import ListPaymentsQuery, ListPayoutsQuery, ListRefundsQuery
from server.domain import metadata as caller_metadata
from server.domain.captures import CANCELLATION_REASONS
from server.domain.errors import FieldViolation, InvalidRequest, Violations
from server.domain.idempotency import fingerprint, key_problem
from server.domain.ids import IdKind, MalformedId, parse_id
from server.domain.model import (
    CaptureMethod,
    DestinationType,
    PayoutDestination,
    SepaDestination,
    StripeAccountDestination,
)
from server.domain.money import Currency, Money, UnknownCurrency
from server.domain.refunds import REFUND_REASONS
from server.domain.sepa_scheme import (
    INSTANT_MAX_AMOUNT_MINOR,
    SEPA_CURRENCY,
    InvalidAccountError,
    validate_bic,
    validate_iban,
)
from server.domain.sepa_text import (
    NAME_MAX_LENGTH,
    POSTCODE_MAX_LENGTH,
    REMITTANCE_MAX_LENGTH,
    STREET_MAX_LENGTH,
    TOWN_MAX_LENGTH,
    SepaTextError,
    to_sepa_text,
)
from server.domain.states import PaymentStatus, PayoutStatus, RefundStatus

MAX_TOKEN = 255
MAX_TEXT = 1000
MAX_REFERENCE = 140

E = TypeVar("E", bound=StrEnum)

_CARD_NUMBER = re.compile(r"(?:\d[ -]?){12,19}")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _printable(text: str) -> bool:
    """Printable ASCII (0x20-0x7E); for ASCII text that is exactly str.isprintable, which runs in C."""
    return text.isascii() and text.isprintable()


def _key(v: Violations, key: str) -> None:
    problem = key_problem(key)
    if problem:
        reason = "MISSING_IDEMPOTENCY_KEY" if not key else "INVALID_IDEMPOTENCY_KEY"
        v.add("idempotency_key", problem, reason)


def _text(v: Violations, field: str, value: str, limit: int, *, required: bool = False) -> None:
    if required and not value.strip():
        v.add(field, "is required", "MISSING_FIELD")
    elif len(value) > limit:
        v.add(field, f"must be at most {limit} characters", "FIELD_TOO_LONG")
    elif _CONTROL.search(value):
        v.add(field, "must not contain control characters", "INVALID_CHARACTERS")


def _money(v: Violations, field: str, amount: res.Money) -> Money | None:
    code = amount.currency
    try:
        currency = Currency.of(code)
    except UnknownCurrency:
        v.add(f"{field}.currency", "must be an ISO 4217 currency code such as EUR", "UNKNOWN_CURRENCY")
        currency = None
    if amount.amount_minor <= 0:
        v.add(f"{field}.amount_minor", "must be positive", "AMOUNT_NOT_POSITIVE")
        return None
    if currency is not None and amount.amount_minor > currency.max_amount_minor:
        limit = Money(currency.max_amount_minor, currency.code).format()
        v.add(f"{field}.amount_minor", f"must be at most {limit}", "AMOUNT_OVER_LIMIT")
        return None
    return Money(amount.amount_minor, code) if currency is not None else None


def _metadata(v: Violations, metadata: dict[str, str]) -> None:
    """The limits of server/domain/metadata.py: what the PSP accepts once the service's keys are added."""
    if len(metadata) > caller_metadata.MAX_ENTRIES:
        v.add("metadata", f"must have at most {caller_metadata.MAX_ENTRIES} entries", "TOO_MANY_ENTRIES")
        return
    for key, value in metadata.items():
        problem = caller_metadata.key_problem(key)
        if problem:
            v.add("metadata", problem, "INVALID_KEY")
            return
        problem = caller_metadata.value_problem(value)
        if problem:
            # The key is printable ASCII without brackets here, so it is safe to echo.
            v.add(f"metadata[{key}]", problem, "INVALID_VALUE")


def canonical_without_key(request: Message) -> bytes:
    """Deterministic bytes of the request with its idempotency key cleared: the fingerprint input."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("idempotency_key")
    data: bytes = copy.SerializeToString(deterministic=True)
    return data


def charge_command(req: svc.ChargeRequest) -> ChargeCommand:
    v = Violations()
    _key(v, req.idempotency_key)
    amount = _money(v, "amount", req.amount) if req.HasField("amount") else None
    if not req.HasField("amount"):
        v.add("amount", "is required", "MISSING_FIELD")
    method = req.payment_method
    if not method:
        v.add("payment_method", "is required", "MISSING_FIELD")
    elif _CARD_NUMBER.search(method):
        v.add("payment_method", "must be a PSP payment-method token, never card data", "CARD_DATA_REFUSED")
    elif len(method) > MAX_TOKEN or not _printable(method):
        v.add("payment_method", f"must be at most {MAX_TOKEN} printable ASCII characters", "INVALID_TOKEN")
    _text(v, "customer_id", req.customer_id, MAX_TOKEN)
    _text(v, "description", req.description, MAX_TEXT)
    metadata = dict(req.metadata)
    _metadata(v, metadata)
    capture_method = _CAPTURE_METHODS.get(req.capture_method)
    if capture_method is None:
        v.add("capture_method", "must be UNSPECIFIED (automatic) or MANUAL", "INVALID_ENUM")
    if req.return_url:
        _return_url(v, req.return_url)
    v.raise_if_any()
    assert amount is not None
    assert capture_method is not None
    return ChargeCommand(
        idempotency_key=req.idempotency_key,
        fingerprint=fingerprint("Charge", canonical_without_key(req)),
        amount=amount, payment_method=method, customer_id=req.customer_id,
        description=req.description, metadata=metadata, capture_method=capture_method, return_url=req.return_url,
    )  # fmt: skip


_CAPTURE_METHODS = {
    res.CAPTURE_METHOD_UNSPECIFIED: CaptureMethod.AUTOMATIC,
    res.CAPTURE_METHOD_MANUAL: CaptureMethod.MANUAL,
}
MAX_URL = 2048
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _return_url(v: Violations, url: str) -> None:
    """An absolute https URL (http on the caller's own machine only, for development) that a browser
    can be sent to: printable ASCII, no credentials in it."""
    if len(url) > MAX_URL or not _printable(url):
        v.add("return_url", f"must be at most {MAX_URL} printable ASCII characters", "INVALID_URL")
        return
    parts = urllib.parse.urlsplit(url)
    local = (parts.hostname or "") in _LOCAL_HOSTS
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        v.add("return_url", "must be an https URL (http only for localhost)", "INVALID_URL")
    elif not parts.hostname or parts.username or parts.password:
        v.add("return_url", "must name a host and carry no credentials", "INVALID_URL")


def _payment_id(v: Violations, text: str) -> None:
    if not text:
        v.add("payment_id", "is required", "MISSING_FIELD")
        return
    try:
        parse_id(IdKind.PAYMENT, text)
    except MalformedId as exc:
        v.add("payment_id", str(exc), "MALFORMED_ID")


def capture_command(req: svc.CapturePaymentRequest) -> CaptureCommand:
    v = Violations()
    _key(v, req.idempotency_key)
    _payment_id(v, req.payment_id)
    amount = _money(v, "amount", req.amount) if req.HasField("amount") else None
    v.raise_if_any()
    return CaptureCommand(
        idempotency_key=req.idempotency_key,
        fingerprint=fingerprint("CapturePayment", canonical_without_key(req)),
        payment_id_text=req.payment_id, amount=amount,
        final=req.final_capture if req.HasField("final_capture") else True,
    )  # fmt: skip


def cancel_command(req: svc.CancelPaymentRequest) -> CancelCommand:
    v = Violations()
    _key(v, req.idempotency_key)
    _payment_id(v, req.payment_id)
    if req.reason and req.reason not in CANCELLATION_REASONS:
        v.add("reason", f"must be empty or one of {', '.join(sorted(CANCELLATION_REASONS))}", "INVALID_REASON")
    v.raise_if_any()
    return CancelCommand(
        idempotency_key=req.idempotency_key,
        fingerprint=fingerprint("CancelPayment", canonical_without_key(req)),
        payment_id_text=req.payment_id, reason=req.reason,
    )  # fmt: skip


def refund_command(req: svc.RefundRequest) -> RefundCommand:
    v = Violations()
    _key(v, req.idempotency_key)
    _payment_id(v, req.payment_id)
    amount = _money(v, "amount", req.amount) if req.HasField("amount") else None
    if req.reason and req.reason not in REFUND_REASONS:
        v.add("reason", f"must be empty or one of {', '.join(sorted(REFUND_REASONS))}", "INVALID_REASON")
    v.raise_if_any()
    return RefundCommand(
        idempotency_key=req.idempotency_key,
        fingerprint=fingerprint("Refund", canonical_without_key(req)),
        payment_id_text=req.payment_id, amount=amount, reason=req.reason,
    )  # fmt: skip


def _sepa_destination(v: Violations, account: res.SepaAccount) -> SepaDestination | None:
    """The SEPA scheme's own rules (server/domain/sepa_scheme.py), the ones the pain.001 builder applies."""
    iban_text = ""
    try:
        iban_text = validate_iban(account.iban, field="sepa_account.iban")
    except InvalidAccountError as exc:
        v.add(exc.field, exc.reason, exc.code)
    bic_text = ""
    if account.bic:
        try:
            bic_text = validate_bic(account.bic, field="sepa_account.bic")
        except InvalidAccountError as exc:
            v.add(exc.field, exc.reason, exc.code)
    address = account.address
    if not _COUNTRY.match(address.country):
        v.add("sepa_account.address.country", "must be an ISO 3166 alpha-2 code such as DE", "INVALID_COUNTRY")
    _sepa_text(v, "sepa_account.name", account.name, NAME_MAX_LENGTH, required=True)
    _sepa_text(v, "sepa_account.address.town", address.town, TOWN_MAX_LENGTH, required=True)
    _sepa_text(v, "sepa_account.address.street", address.street, STREET_MAX_LENGTH)
    _sepa_text(v, "sepa_account.address.postcode", address.postcode, POSTCODE_MAX_LENGTH)
    if not iban_text:
        return None
    return SepaDestination(
        iban=iban_text, bic=bic_text, name=account.name, country=address.country, town=address.town,
        street=address.street, postcode=address.postcode,
    )  # fmt: skip


def _sepa_text(v: Violations, field: str, value: str, limit: int, *, required: bool = False) -> None:
    """The text must survive transliteration to the SEPA character set within the length limit."""
    if not value.strip():
        if required:
            v.add(field, "is required", "MISSING_FIELD")
        return
    try:
        to_sepa_text(value, field=field, max_length=limit)
    except SepaTextError as exc:
        v.add(field, exc.reason, "SEPA_CHARACTER_SET")


def payout_command(req: svc.PayoutRequest) -> PayoutCommand:
    v = Violations()
    _key(v, req.idempotency_key)
    if not req.HasField("amount"):
        v.add("amount", "is required", "MISSING_FIELD")
    amount = _money(v, "amount", req.amount) if req.HasField("amount") else None
    destination: PayoutDestination | None = None
    which = req.WhichOneof("destination")
    if which == "sepa_account":
        destination = _sepa_destination(v, req.sepa_account)
        if amount is not None and amount.currency != SEPA_CURRENCY:
            v.add("amount.currency", "SEPA credit transfers are in EUR", "CURRENCY_NOT_SUPPORTED")
        elif amount is not None and req.instant and amount.amount_minor > INSTANT_MAX_AMOUNT_MINOR:
            limit = Money(INSTANT_MAX_AMOUNT_MINOR, SEPA_CURRENCY).format()
            v.add("amount.amount_minor", f"SEPA Instant allows at most {limit}", "AMOUNT_OVER_LIMIT")
    elif which == "stripe_account_id":
        account = req.stripe_account_id  # the PSP checks its own id format (destination_problem)
        if not account or len(account) > MAX_TOKEN or not _printable(account):
            v.add("stripe_account_id", f"must be 1-{MAX_TOKEN} printable ASCII characters", "INVALID_ACCOUNT")
        elif req.instant:
            v.add("instant", "applies to SEPA payouts only", "INVALID_FIELD")
        else:
            destination = StripeAccountDestination(req.stripe_account_id)
    else:
        v.add("destination", "one of sepa_account or stripe_account_id is required", "MISSING_FIELD")
    if which == "sepa_account":
        _sepa_text(v, "reference", req.reference, REMITTANCE_MAX_LENGTH)
    else:
        _text(v, "reference", req.reference, MAX_REFERENCE)
    v.raise_if_any()
    assert amount is not None
    assert destination is not None
    return PayoutCommand(
        idempotency_key=req.idempotency_key,
        fingerprint=fingerprint("Payout", canonical_without_key(req)),
        amount=amount, destination=destination, instant=req.instant, reference=req.reference,
        accept_payee_verification_risk=req.accept_payee_verification_risk,
    )  # fmt: skip


def _list_paging(v: Violations, page_size: int, page_token: str) -> None:
    """What every listing checks alike; the token's content is checked against its filters later."""
    if page_size < 0:
        v.add("page_size", "must not be negative", "INVALID_FIELD")
    if len(page_token) > 1024:
        v.add("page_token", "is not a token this listing issued", "INVALID_PAGE_TOKEN")


class _ProtoEnum(Protocol):
    def values(self) -> list[Any]: ...

    def Name(self, number: Any) -> str: ...  # noqa: N802 - protobuf's name


def _by_number(proto_enum: _ProtoEnum, domain_enum: type[E], prefix: str) -> dict[int, E]:
    """The domain member of each proto value but UNSPECIFIED, by name (PAYOUT_STATUS_PAID is PAID). Built
    at import: a proto value the domain lacks stops the service at start, not a request at run time."""
    return {n: domain_enum[proto_enum.Name(n).removeprefix(prefix)] for n in proto_enum.values() if n}


_PAYMENT_STATUSES = _by_number(res.PaymentStatus, PaymentStatus, "PAYMENT_STATUS_")
_REFUND_STATUSES = _by_number(res.RefundStatus, RefundStatus, "REFUND_STATUS_")
_PAYOUT_STATUSES = _by_number(res.PayoutStatus, PayoutStatus, "PAYOUT_STATUS_")
_DESTINATION_TYPES = _by_number(svc.PayoutDestinationType, DestinationType, "PAYOUT_DESTINATION_TYPE_")


def _enum(v: Violations, field: str, value: int, known: dict[int, E], what: str) -> E | None:
    """A filter on an enum: UNSPECIFIED is no filter, a number this version does not know is refused."""
    found = known.get(value)
    if value and found is None:
        v.add(field, f"is not a {what}", "INVALID_ENUM")
    return found


def list_query(req: svc.ListPaymentsRequest) -> ListPaymentsQuery:
    v = Violations()
    _list_paging(v, req.page_size, req.page_token)
    status = _enum(v, "status", req.status, _PAYMENT_STATUSES, "payment status")
    _text(v, "customer_id", req.customer_id, MAX_TOKEN)
    v.raise_if_any()
    return ListPaymentsQuery(req.page_size, req.page_token, status, req.customer_id or None)


def list_refunds_query(req: svc.ListRefundsRequest) -> ListRefundsQuery:
    v = Violations()
    _list_paging(v, req.page_size, req.page_token)
    status = _enum(v, "status", req.status, _REFUND_STATUSES, "refund status")
    payment_id = None
    if req.payment_id:
        try:
            payment_id = parse_id(IdKind.PAYMENT, req.payment_id)
        except MalformedId as exc:
            v.add("payment_id", str(exc), "MALFORMED_ID")
    v.raise_if_any()
    return ListRefundsQuery(req.page_size, req.page_token, status, payment_id)


def list_payouts_query(req: svc.ListPayoutsRequest) -> ListPayoutsQuery:
    v = Violations()
    _list_paging(v, req.page_size, req.page_token)
    status = _enum(v, "status", req.status, _PAYOUT_STATUSES, "payout status")
    destination = _enum(v, "destination_type", req.destination_type, _DESTINATION_TYPES, "payout destination type")
    v.raise_if_any()
    return ListPayoutsQuery(req.page_size, req.page_token, status, destination)


def list_events_filters(req: svc.ListEventsRequest) -> tuple[frozenset[str], str | None]:
    """ListEvents' page size and token checked as every listing's; its filters by the feed's rules."""
    v = Violations()
    _list_paging(v, req.page_size, req.page_token)
    v.raise_if_any()
    resource = any_resource_id(req.resource_id) if req.resource_id else None
    return event_types(list(req.types)), resource


def resource_id(field_value: str, kind: IdKind) -> str:
    """Validates a Get…Request.id: INVALID_ARGUMENT when malformed (unknown ids are NOT_FOUND later)."""
    try:
        parse_id(kind, field_value)
    except MalformedId as exc:
        raise InvalidRequest([FieldViolation("id", str(exc), "MALFORMED_ID")]) from None
    return field_value


def any_resource_id(field_value: str, field: str = "resource_id") -> str:
    """A payment, refund or payout id (pay_…, re_…, po_…), or INVALID_ARGUMENT."""
    for kind in IdKind:
        try:
            parse_id(kind, field_value)
        except MalformedId:
            continue
        return field_value
    raise InvalidRequest([FieldViolation(field, "must be a payment, refund or payout id", "MALFORMED_ID")])
