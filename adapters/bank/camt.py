"""camt.053 statements and camt.054 debit/credit notifications: official XSDs, parser and generator.

Why lxml and the official XSDs rather than a camt library (compared when this was written):

* ``pycamt`` reads camt.053 only — no camt.054, so no return notifications — and validates nothing.
* ``camt053`` ships every official camt XSD but pulls in a web stack (FastAPI, uvicorn, cryptography,
  pydantic, rich, ...) and is a 0.0.x release: too much for a payment service to depend on.
* ``pyiso20022`` has xsdata bindings for generating many messages, 29 MB of them; it does not validate,
  and reading several versions means one class tree per version.

What we need is small — validate against the official schema of the version at hand, read the few
elements matching relies on, write what the sandbox books — and lxml (already our XML library, with
the safe parser of :mod:`.xmltools`) does all of it. The four XSDs under ``schemas/`` are the ISO 20022
ones, unchanged (camt.053.001.02/.08, camt.054.001.02/.08: what German DK, EPC and most European banks
deliver today; .02 is the 2009 version many still send, .08 the 2019 one).

A document is refused whole (:class:`~.errors.DocumentError`) when it is not well-formed, is of a
message or version not accepted, or violates its XSD: nothing of it is applied. The parser reads by
local names under the document's own namespace, so .02 and .08 share one reader; where they differ
(``Sts`` a code in .02, a choice in .08; the transaction amount under ``TxDtls/Amt`` only since .08)
both forms are read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from importlib import resources
from typing import Final

from adapters.bank.errors import DocumentError
from adapters.bank.pain001 import payout_id_of
from adapters.bank.xmltools import (
    Element,
    XmlSchema,
    etree,
    format_datetime,
    format_minor,
    parse_datetime,
    parse_minor,
    parse_xml,
    serialize,
)
from server.domain.bank_statements import AccountReport, BankDocument, Direction, ReportKind, StatementEntry

__all__ = [
    "CAMT053_VERSIONS",
    "CAMT054_VERSIONS",
    "SUPPORTED_MESSAGES",
    "BookingLine",
    "build_camt",
    "message_of",
    "parse_camt",
]

CAMT053_VERSIONS: Final = ("camt.053.001.02", "camt.053.001.08")
CAMT054_VERSIONS: Final = ("camt.054.001.02", "camt.054.001.08")
SUPPORTED_MESSAGES: Final = CAMT053_VERSIONS + CAMT054_VERSIONS
_NS_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"
_ROOT = {ReportKind.STATEMENT: ("BkToCstmrStmt", "Stmt"), ReportKind.NOTIFICATION: ("BkToCstmrDbtCdtNtfctn", "Ntfctn")}


def _schema(message: str) -> XmlSchema:
    source = (resources.files("adapters.bank") / "schemas" / f"{message}.xsd").read_bytes()
    return XmlSchema(message, source)


_SCHEMAS: Final = {message: _schema(message) for message in SUPPORTED_MESSAGES}


def message_of(data: bytes) -> str:
    """The message name and version of a camt document (``camt.054.001.08``), from its namespace."""
    root = parse_xml(data)
    namespace = etree.QName(root).namespace or ""
    if etree.QName(root).localname != "Document" or not namespace.startswith(_NS_PREFIX):
        raise DocumentError("not an ISO 20022 document (expected a Document in an urn:iso:std:iso:20022 namespace)")
    return namespace.removeprefix(_NS_PREFIX)


def parse_camt(data: bytes, accepted: Iterable[str] = SUPPORTED_MESSAGES) -> BankDocument:
    """Validate ``data`` against its official XSD and read it; ``accepted`` are the versions the bank
    is configured to speak. Raises :class:`DocumentError` (IBANs masked) for anything it cannot trust."""
    message = message_of(data)
    allowed = set(accepted) & set(SUPPORTED_MESSAGES)
    if message not in allowed:
        raise DocumentError(f"{message} is not accepted (this bank speaks {', '.join(sorted(allowed)) or 'none'})")
    root = _SCHEMAS[message].validate(data)
    kind = ReportKind.STATEMENT if message.startswith("camt.053") else ReportKind.NOTIFICATION
    reader = _Reader(f"{_NS_PREFIX}{message}")
    body_tag, report_tag = _ROOT[kind]
    body = reader.one(root, body_tag)
    reports = tuple(reader.report(kind, element) for element in reader.all(body, report_tag))
    return BankDocument(
        message=message,
        msg_id=reader.required(body, "GrpHdr/MsgId"),
        created_at=parse_datetime(reader.required(body, "GrpHdr/CreDtTm")),
        reports=reports,
    )


class _Reader:
    """Namespace-bound XPath helpers: every path is written with local names."""

    def __init__(self, namespace: str) -> None:
        self._ns = {"c": namespace}

    def _path(self, path: str) -> str:
        return "/".join(f"c:{part}" for part in path.split("/"))

    def all(self, element: Element, path: str) -> list[Element]:
        found: list[Element] = element.xpath(self._path(path), namespaces=self._ns)
        return found

    def one(self, element: Element, path: str) -> Element:
        found = self.all(element, path)
        if len(found) != 1:
            raise DocumentError(f"expected one {path}")
        return found[0]

    def text(self, element: Element, path: str) -> str | None:
        found = self.all(element, path)
        if not found or found[0].text is None:
            return None
        return str(found[0].text).strip() or None

    def required(self, element: Element, path: str) -> str:
        value = self.text(element, path)
        if value is None:
            raise DocumentError(f"missing {path}")
        return value

    def date(self, element: Element, path: str) -> date | None:
        """An ISO ``DateAndDateTimeChoice`` (``Dt`` or ``DtTm``) as a date."""
        day = self.text(element, f"{path}/Dt")
        if day is not None:
            return date.fromisoformat(day)
        moment = self.text(element, f"{path}/DtTm")
        return parse_datetime(moment).date() if moment is not None else None

    def amount(self, element: Element, path: str) -> tuple[int, str] | None:
        found = self.all(element, path)
        if not found:
            return None
        return parse_minor(found[0].text or ""), str(found[0].get("Ccy"))

    def report(self, kind: ReportKind, element: Element) -> AccountReport:
        iban = self.text(element, "Acct/Id/IBAN")
        if iban is None:
            raise DocumentError("the account is not identified by an IBAN")
        created = self.text(element, "CreDtTm")
        entries: list[StatementEntry] = []
        for entry_seq, entry in enumerate(self.all(element, "Ntry"), start=1):
            entries.extend(self.transactions(entry, entry_seq))
        return AccountReport(
            kind=kind,
            report_id=self.required(element, "Id"),
            account_iban=iban,
            created_at=parse_datetime(created) if created else None,
            entries=tuple(entries),
        )

    def transactions(self, entry: Element, entry_seq: int) -> list[StatementEntry]:
        amount = self.amount(entry, "Amt")
        if amount is None:  # required by every XSD we accept
            raise DocumentError(f"entry {entry_seq} has no amount")
        status = self.text(entry, "Sts/Cd") or self.text(entry, "Sts") or ""
        base = StatementEntry(
            entry_seq=entry_seq,
            tx_seq=0,
            amount_minor=amount[0],
            currency=amount[1],
            direction=Direction(self.required(entry, "CdtDbtInd")),
            booked=status == "BOOK",
            booking_date=self.date(entry, "BookgDt"),
            value_date=self.date(entry, "ValDt"),
            reversal=(self.text(entry, "RvslInd") or "").lower() in ("true", "1"),
            entry_reference=self.text(entry, "NtryRef"),
            bank_reference=self.text(entry, "AcctSvcrRef"),
        )
        details = self.all(entry, "NtryDtls/TxDtls")
        result = []
        for tx_seq, tx in enumerate(details, start=1):
            own = self.amount(tx, "Amt") or self.amount(tx, "AmtDtls/TxAmt/Amt")
            if own is None:
                if len(details) > 1:
                    raise DocumentError(f"entry {entry_seq} batches {len(details)} transactions without their amounts")
                own = amount
            tx_direction = self.text(tx, "CdtDbtInd")
            end_to_end_id = _meaningful(self.text(tx, "Refs/EndToEndId"))
            result.append(
                replace(
                    base,
                    tx_seq=tx_seq,
                    amount_minor=own[0],
                    currency=own[1],
                    direction=Direction(tx_direction) if tx_direction else base.direction,
                    end_to_end_id=end_to_end_id,
                    payout_id=payout_id_of(end_to_end_id) if end_to_end_id else None,
                    return_reason=self.text(tx, "RtrInf/Rsn/Cd") or self.text(tx, "RtrInf/Rsn/Prtry"),
                    bank_reference=self.text(tx, "Refs/AcctSvcrRef") or base.bank_reference,
                )
            )
        return result or [base]


def _meaningful(end_to_end_id: str | None) -> str | None:
    """``NOTPROVIDED`` is the EPC's placeholder for "no EndToEndId": it names no payout."""
    return None if end_to_end_id in (None, "NOTPROVIDED") else end_to_end_id


# -- generation (the bank sandbox) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BookingLine:
    """One booked transaction as the sandbox writes it: a debit of a payout or the credit of its return.

    Lines with the same ``batch`` form one ``Ntry`` (a batch booking, as banks book a whole file).
    """

    batch: str
    end_to_end_id: str
    amount_minor: int
    currency: str
    direction: Direction
    booking_date: date
    bank_reference: str
    return_reason: str | None = None
    return_info: str | None = None


def build_camt(
    message: str,
    *,
    msg_id: str,
    report_id: str,
    account_iban: str,
    created_at: datetime,
    lines: Sequence[BookingLine],
    sequence_number: int,
    opening_balance_minor: int = 0,
) -> bytes:
    """Render ``lines`` as a camt.053 (one statement, with opening and closing balances) or camt.054 (one
    notification) of the given version, and validate it against the official XSD."""
    if message not in SUPPORTED_MESSAGES:
        raise ValueError(f"cannot write {message}")
    namespace = f"{_NS_PREFIX}{message}"
    legacy = message.endswith(".02")
    statement = message.startswith("camt.053")

    def sub(parent: Element, tag: str, text: str | None = None) -> Element:
        child = etree.SubElement(parent, f"{{{namespace}}}{tag}")
        if text is not None:
            child.text = text
        return child

    def amount(parent: Element, tag: str, minor: int, currency: str) -> None:
        sub(parent, tag, format_minor(minor)).set("Ccy", currency)

    root = etree.Element(f"{{{namespace}}}Document", nsmap={None: namespace})
    body = sub(root, "BkToCstmrStmt" if statement else "BkToCstmrDbtCdtNtfctn")
    header = sub(body, "GrpHdr")
    sub(header, "MsgId", msg_id)
    sub(header, "CreDtTm", format_datetime(created_at))
    report = sub(body, "Stmt" if statement else "Ntfctn")
    sub(report, "Id", report_id)
    sub(report, "ElctrncSeqNb", str(sequence_number))
    sub(report, "CreDtTm", format_datetime(created_at))
    account = sub(report, "Acct")
    sub(sub(account, "Id"), "IBAN", account_iban)
    currency = lines[0].currency if lines else "EUR"
    sub(account, "Ccy", currency)
    day = created_at.astimezone(UTC).date()
    if statement:
        net = sum(line.amount_minor if line.direction is Direction.CREDIT else -line.amount_minor for line in lines)
        for code, balance in (("OPBD", opening_balance_minor), ("CLBD", opening_balance_minor + net)):
            bal = sub(report, "Bal")
            sub(sub(sub(bal, "Tp"), "CdOrPrtry"), "Cd", code)
            amount(bal, "Amt", abs(balance), currency)
            sub(bal, "CdtDbtInd", "CRDT" if balance >= 0 else "DBIT")
            sub(sub(bal, "Dt"), "Dt", day.isoformat())
    batches: dict[str, list[BookingLine]] = {}
    for line in lines:
        batches.setdefault(f"{line.batch}/{line.direction}", []).append(line)
    for number, batch in enumerate(batches.values(), start=1):
        first = batch[0]
        entry = sub(report, "Ntry")
        sub(entry, "NtryRef", f"{report_id[:28]}-{number}")
        amount(entry, "Amt", sum(line.amount_minor for line in batch), first.currency)
        sub(entry, "CdtDbtInd", str(first.direction))
        if legacy:
            sub(entry, "Sts", "BOOK")
        else:
            sub(sub(entry, "Sts"), "Cd", "BOOK")
        sub(sub(entry, "BookgDt"), "Dt", first.booking_date.isoformat())
        sub(sub(entry, "ValDt"), "Dt", first.booking_date.isoformat())
        sub(entry, "AcctSvcrRef", first.batch[:35])
        returned = first.return_reason is not None
        domain = sub(sub(entry, "BkTxCd"), "Domn")
        sub(domain, "Cd", "PMNT")
        family = sub(domain, "Fmly")
        sub(family, "Cd", "ICDT" if first.direction is Direction.DEBIT else "RCDT")
        sub(family, "SubFmlyCd", "RRTN" if returned else "ESCT")
        details = sub(entry, "NtryDtls")
        if len(batch) > 1:
            btch = sub(details, "Btch")
            sub(btch, "NbOfTxs", str(len(batch)))
        for line in batch:
            tx = sub(details, "TxDtls")
            refs = sub(tx, "Refs")
            sub(refs, "AcctSvcrRef", line.bank_reference[:35])
            sub(refs, "EndToEndId", line.end_to_end_id)
            if legacy:
                amount(sub(sub(tx, "AmtDtls"), "TxAmt"), "Amt", line.amount_minor, line.currency)
            else:
                amount(tx, "Amt", line.amount_minor, line.currency)
                sub(tx, "CdtDbtInd", str(line.direction))
            if line.return_reason is not None:
                info = sub(tx, "RtrInf")
                sub(sub(info, "Rsn"), "Cd", line.return_reason)
                if line.return_info:
                    sub(info, "AddtlInf", line.return_info[:105])
    data = serialize(root)
    _SCHEMAS[message].validate(data)
    return data
