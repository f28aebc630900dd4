"""pain.001.001.09 (SEPA credit transfer initiation) for one payout: identifiers, building, XSD check,
and a reader for the bank side.

Why this shape: one payout is one file with one transaction, so every identifier can be derived from
the payout id and stored before submission (design §5), and a resubmission after an ambiguous timeout
carries the same ``MsgId``/``PmtInfId``/``EndToEndId`` — which the bank uses to detect the duplicate.
Given the same inputs and ``created_at`` the builder returns the same bytes, so a retry with the same
HTTP idempotency key sends an identical body.

The file is produced by ``sepaxml`` (``SepaTransfer``, schema ``pain.001.001.09``, its own text
cleaning off: :mod:`adapters.bank.sepa_text` does that and raises instead of dropping characters).
sepaxml cannot express everything we need, so the lxml tree is post-processed minimally:

* ``GrpHdr/MsgId`` and ``PmtInf/PmtInfId``: sepaxml always generates random ones; ours are derived.
* ``GrpHdr/CreDtTm``: sepaxml writes the local wall clock; we write the given instant in UTC, which
  keeps the bytes reproducible.
* ``PmtInf/PmtTpInf/LclInstrm/Cd = INST`` for SEPA Instant: sepaxml has no local-instrument option.

Everything else (``SvcLvl/Cd=SEPA``, ``ChrgBr=SLEV``, ``BtchBookg=false``, the structured creditor
``PstlAdr``, optional creditor ``BICFI``, amounts) is sepaxml's output. Amounts are integer minor
units end to end: sepaxml takes integer cents and renders them by string slicing, never floats.
The result is validated against the pain.001.001.09 XSD bundled with sepaxml before it is returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from typing import NamedTuple

from sepaxml import SepaTransfer

from adapters.bank.accounts import validate_bic, validate_iban
from adapters.bank.errors import BankValidationError, DocumentError
from adapters.bank.xmltools import (
    Element,
    XmlSchema,
    etree,
    format_datetime,
    parse_datetime,
    parse_minor,
    serialize,
)
from server.domain.sepa_scheme import INSTANT_MAX_AMOUNT_MINOR, SEPA_CURRENCY
from server.domain.sepa_text import (
    POSTCODE_MAX_LENGTH,
    SEPA_ALLOWED_CHARACTERS,
    STREET_MAX_LENGTH,
    TOWN_MAX_LENGTH,
    sepa_name,
    sepa_remittance,
    to_sepa_text,
)

PAIN001_SCHEMA = "pain.001.001.09"
PAIN001_NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
"""SEPA Instant scheme maximum: EUR 100,000.00."""
ID_MAX_LENGTH = 35
INSTANT_LOCAL_INSTRUMENT = "INST"

_NS = {"p": PAIN001_NAMESPACE}
_PAYOUT_ID = re.compile(r"po_([0-9a-f]{32})")
_COUNTRY = re.compile(r"[A-Z]{2}")

PAIN001_XSD = XmlSchema(PAIN001_SCHEMA, (resources.files("sepaxml") / "schemas" / f"{PAIN001_SCHEMA}.xsd").read_bytes())
"""The official pain.001.001.09 XSD as shipped by sepaxml, compiled once on first use."""


class MessageIds(NamedTuple):
    """The three pain.001 identifiers of one payout (each ≤ 35 SEPA characters)."""

    msg_id: str
    pmt_inf_id: str
    end_to_end_id: str


@dataclass(frozen=True)
class DebtorAccount:
    """Our own account that pays out: it becomes ``Dbtr``, ``DbtrAcct`` and ``DbtrAgt``.

    ``name`` is transliterated like any other name; ``bic`` is required because we always know our
    own bank's BIC and some banks still insist on ``DbtrAgt/BICFI``.
    """

    name: str
    iban: str
    bic: str


@dataclass(frozen=True)
class CreditTransfer:
    """One SEPA credit transfer (one payout) to be rendered as a pain.001 file.

    Text fields may contain any Unicode: they are converted to the SEPA set when the file is built
    (see :mod:`adapters.bank.sepa_text`). ``amount_minor`` is integer euro cents. ``creditor_country``
    and ``creditor_town`` are mandatory because SEPA requires a structured creditor address with at
    least town and country; street and postcode are optional (``None`` or blank means absent).
    ``creditor_bic`` is optional (IBAN-only is the SEPA norm); when given it is sent as ``BICFI``.
    """

    payout_id: str
    amount_minor: int
    currency: str
    creditor_name: str
    creditor_iban: str
    creditor_bic: str | None
    creditor_country: str
    creditor_town: str
    creditor_street: str | None
    creditor_postcode: str | None
    remittance: str
    instant: bool
    msg_id: str
    pmt_inf_id: str
    end_to_end_id: str
    requested_execution_date: date


def derive_message_ids(payout_id: str) -> MessageIds:
    """Derive ``(msg_id, pmt_inf_id, end_to_end_id)`` from a payout id ``po_<32 lowercase hex>``.

    The ids are ``M-<hex>``, ``P-<hex>`` and ``E-<hex>`` (34 characters): deterministic, so a retry
    re-sends the same ids; injective, so two payouts never share one; readable, so an operator can go
    from a bank statement line back to ``po_<hex>``. Raises :class:`BankValidationError` (field
    ``payout_id``) for any other format rather than guessing a lossy mapping.
    """
    match = _PAYOUT_ID.fullmatch(payout_id)
    if match is None:
        raise BankValidationError("payout_id", "expected 'po_' followed by 32 lowercase hex digits")
    digest = match.group(1)
    return MessageIds(f"M-{digest}", f"P-{digest}", f"E-{digest}")


_END_TO_END_ID = re.compile(r"E-([0-9a-f]{32})")


def payout_id_of(end_to_end_id: str) -> str | None:
    """The payout id an EndToEndId of ours encodes (``E-<hex>`` → ``po_<hex>``), else None.

    The inverse of :func:`derive_message_ids`: how a statement line leads back to its payout without a
    search. A match is only a candidate: the store checks the payout really holds this EndToEndId.
    """
    match = _END_TO_END_ID.fullmatch(end_to_end_id)
    return f"po_{match.group(1)}" if match else None


def _check_identifier(value: str, field: str) -> None:
    """EPC rules for references: 1-35 SEPA characters, no leading/trailing '/', no '//'."""
    if not 1 <= len(value) <= ID_MAX_LENGTH:
        raise BankValidationError(field, f"must be 1 to {ID_MAX_LENGTH} characters")
    if any(char not in SEPA_ALLOWED_CHARACTERS or char == " " for char in value):
        raise BankValidationError(field, "must use SEPA characters without spaces")
    if value.startswith("/") or value.endswith("/") or "//" in value:
        raise BankValidationError(field, "must not start or end with '/' or contain '//'")


def _check_amount(transfer: CreditTransfer) -> None:
    amount = transfer.amount_minor
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise BankValidationError("amount_minor", "must be an integer number of cents")
    if amount < 1:
        raise BankValidationError("amount_minor", "must be at least 1 cent")
    if transfer.currency != SEPA_CURRENCY:
        scheme = "SEPA Instant" if transfer.instant else "SEPA credit transfers"
        raise BankValidationError("currency", f"{scheme} are EUR only")
    if len(str(amount)) > 18:  # XSD amount: totalDigits 18, the two decimals included
        raise BankValidationError("amount_minor", "exceeds the pain.001 amount range")
    if transfer.instant and amount > INSTANT_MAX_AMOUNT_MINOR:
        raise BankValidationError("amount_minor", "SEPA Instant is limited to EUR 100,000.00")


def _optional_text(value: str | None, field: str, max_length: int) -> str | None:
    if value is None or not value.strip():
        return None
    return to_sepa_text(value, field=field, max_length=max_length)


def build_pain001(transfer: CreditTransfer, debtor: DebtorAccount, *, created_at: datetime | None = None) -> bytes:
    """Validate ``transfer``, render it as a pain.001.001.09 file and check it against the XSD.

    ``created_at`` (timezone-aware; default now) becomes ``GrpHdr/CreDtTm``; pass the payout's stored
    creation time to get byte-identical files on every retry. Raises :class:`BankValidationError`
    (naming the field) for bad input, and :class:`~adapters.bank.errors.SchemaValidationError` if
    the generated file violates the XSD — a bug, never the caller's fault.
    """
    _check_amount(transfer)
    for field in ("msg_id", "pmt_inf_id", "end_to_end_id"):
        _check_identifier(getattr(transfer, field), field)
    if not _COUNTRY.fullmatch(transfer.creditor_country):
        raise BankValidationError("creditor_country", "must be an ISO 3166 alpha-2 code such as 'DE'")
    if type(transfer.requested_execution_date) is not date:
        raise BankValidationError("requested_execution_date", "must be a date (not a datetime)")
    creditor_iban = validate_iban(transfer.creditor_iban, field="creditor_iban")
    creditor_bic = validate_bic(transfer.creditor_bic, field="creditor_bic") if transfer.creditor_bic else None
    debtor_iban = validate_iban(debtor.iban, field="debtor.iban")
    debtor_bic = validate_bic(debtor.bic, field="debtor.bic")

    address = {
        "street_name": _optional_text(transfer.creditor_street, "creditor_street", STREET_MAX_LENGTH),
        "postcode": _optional_text(transfer.creditor_postcode, "creditor_postcode", POSTCODE_MAX_LENGTH),
        "town": to_sepa_text(transfer.creditor_town, field="creditor_town", max_length=TOWN_MAX_LENGTH),
        "country": transfer.creditor_country,
    }
    config = {
        "name": sepa_name(debtor.name, field="debtor.name"),
        "IBAN": debtor_iban,
        "BIC": debtor_bic,
        "batch": False,
        "currency": SEPA_CURRENCY,
        "address": {},  # sepaxml reads it in non-batch mode; our own address is not transmitted
    }
    payment: dict[str, object] = {
        "name": sepa_name(transfer.creditor_name, field="creditor_name"),
        "IBAN": creditor_iban,
        "amount": transfer.amount_minor,
        "currency": transfer.currency,
        "execution_date": transfer.requested_execution_date,
        "description": sepa_remittance(transfer.remittance, field="remittance"),
        "endtoend_id": transfer.end_to_end_id,
        "address": {key: value for key, value in address.items() if value is not None},
    }
    if creditor_bic is not None:
        payment["BIC"] = creditor_bic

    sepa = SepaTransfer(config, schema=PAIN001_SCHEMA, clean=False)
    sepa.add_payment(payment)
    raw: bytes = sepa.export(validate=False)

    root = PAIN001_XSD.validate(raw)  # cheap guard: sepaxml's own output must already be valid
    _post_process(root, transfer, created_at or datetime.now(UTC))
    data = serialize(root)
    PAIN001_XSD.validate(data)
    return data


def _post_process(root: Element, transfer: CreditTransfer, created_at: datetime) -> None:
    """Apply the minimal edits sepaxml cannot make (see the module docstring for why)."""
    header = root.find("p:CstmrCdtTrfInitn/p:GrpHdr", _NS)
    header.find("p:MsgId", _NS).text = transfer.msg_id
    header.find("p:CreDtTm", _NS).text = format_datetime(created_at)
    pmt_inf = root.find("p:CstmrCdtTrfInitn/p:PmtInf", _NS)
    pmt_inf.find("p:PmtInfId", _NS).text = transfer.pmt_inf_id
    if transfer.instant:
        pmt_tp_inf = pmt_inf.find("p:PmtTpInf", _NS)
        local_instrument = etree.Element(f"{{{PAIN001_NAMESPACE}}}LclInstrm")
        etree.SubElement(local_instrument, f"{{{PAIN001_NAMESPACE}}}Cd").text = INSTANT_LOCAL_INSTRUMENT
        service_level = pmt_tp_inf.find("p:SvcLvl", _NS)
        service_level.addnext(local_instrument)  # XSD order: InstrPrty, SvcLvl, LclInstrm, CtgyPurp


def validate_pain001(data: bytes) -> Element:
    """Validate ``data`` against the pain.001.001.09 XSD and return the parsed root element.

    Raises :class:`DocumentError` (malformed) or :class:`~adapters.bank.errors.SchemaValidationError`
    with one line per violation, IBANs masked — the bank sandbox returns that text in its 400.
    """
    return PAIN001_XSD.validate(data)


@dataclass(frozen=True)
class InitiatedTransfer:
    """One ``CdtTrfTxInf`` as a bank reads it; ``creditor_iban`` is the full IBAN (never log it)."""

    end_to_end_id: str
    pmt_inf_id: str
    amount_minor: int
    currency: str
    creditor_name: str
    creditor_iban: str
    creditor_bic: str | None
    remittance: str | None
    instant: bool
    requested_execution_date: date | None


@dataclass(frozen=True)
class PaymentInitiation:
    """A parsed pain.001 file: group header totals and every transaction of every ``PmtInf``."""

    msg_id: str
    created_at: datetime
    number_of_transactions: int
    control_sum_minor: int | None
    transfers: tuple[InitiatedTransfer, ...]


def _text(element: Element, path: str) -> str | None:
    found = element.find(path, _NS)
    if found is None or found.text is None:
        return None
    text: str = found.text.strip()
    return text


def _required(element: Element, path: str) -> str:
    value = _text(element, path)
    if value is None:
        raise DocumentError(f"pain.001: missing {path.replace('p:', '')}")
    return value


def _is_instant(pmt_tp_inf: Element | None) -> bool:
    if pmt_tp_inf is None:
        return False
    return _text(pmt_tp_inf, "p:LclInstrm/p:Cd") == INSTANT_LOCAL_INSTRUMENT


def parse_pain001(data: bytes) -> PaymentInitiation:
    """Validate ``data`` against the XSD and read it into a :class:`PaymentInitiation`.

    Used by the bank sandbox (the receiving side) and by tests; the instant flag is honoured at
    payment-information and at transaction level. Raises like :func:`validate_pain001`.
    """
    root = validate_pain001(data)
    initiation = root.find("p:CstmrCdtTrfInitn", _NS)
    header = initiation.find("p:GrpHdr", _NS)
    control_sum = _text(header, "p:CtrlSum")
    transfers: list[InitiatedTransfer] = []
    for pmt_inf in initiation.findall("p:PmtInf", _NS):
        pmt_inf_id = _required(pmt_inf, "p:PmtInfId")
        block_instant = _is_instant(pmt_inf.find("p:PmtTpInf", _NS))
        execution_date = _text(pmt_inf, "p:ReqdExctnDt/p:Dt")
        for tx in pmt_inf.findall("p:CdtTrfTxInf", _NS):
            amount = tx.find("p:Amt/p:InstdAmt", _NS)
            if amount is None:
                raise DocumentError("pain.001: only InstdAmt amounts are supported")
            transfers.append(
                InitiatedTransfer(
                    end_to_end_id=_required(tx, "p:PmtId/p:EndToEndId"),
                    pmt_inf_id=pmt_inf_id,
                    amount_minor=parse_minor(amount.text or ""),
                    currency=str(amount.get("Ccy")),
                    creditor_name=_text(tx, "p:Cdtr/p:Nm") or "",
                    creditor_iban=_required(tx, "p:CdtrAcct/p:Id/p:IBAN"),
                    creditor_bic=_text(tx, "p:CdtrAgt/p:FinInstnId/p:BICFI"),
                    remittance=_text(tx, "p:RmtInf/p:Ustrd"),
                    instant=block_instant or _is_instant(tx.find("p:PmtTpInf", _NS)),
                    requested_execution_date=date.fromisoformat(execution_date) if execution_date else None,
                )
            )
    return PaymentInitiation(
        msg_id=_required(header, "p:MsgId"),
        created_at=parse_datetime(_required(header, "p:CreDtTm")),
        number_of_transactions=int(_required(header, "p:NbOfTxs")),
        control_sum_minor=parse_minor(control_sum) if control_sum is not None else None,
        transfers=tuple(transfers),
    )
