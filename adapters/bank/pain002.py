"""pain.002 customer payment status reports (.10 written, .03 and .10 read): model, generator, subset XSD, parser.

Why pain.002.001.10: it is the status report that pairs with pain.001.001.09 in the ISO 20022 2019
message set (EPC SCT 2023+ implementation guidelines, German DK 3.7+). The bank sandbox emits it and
the bank adapter reads it, so both sides are tested against each other here.

Statuses are ISO ``ExternalPaymentTransactionStatus1Code`` values: RCVD, PDNG, ACTC (technically
valid), ACCP (customer profile accepted), ACSP (settlement in process), ACWC, ACSC (settled on the
debtor's account), RJCT (rejected), CANC, ... Reasons are ``ExternalStatusReason1Code`` values such as
AC01 (incorrect account number), AC04 (closed account), AM04 (insufficient funds), AM05
(duplication), DUPL (duplicate payment).

**Returns** are not statuses: a credit transfer that settled and later came back (account closed,
creditor deceased, ...) is reported the way banks report it, as a booked credit with return
information in camt.054 / camt.053 (:mod:`adapters.bank.camt`), and reconciled from there. A status
report keeps saying ACSC for it. (An earlier ``RTND`` pseudo-status convention between our adapter and
our sandbox is gone: no bank sends it, and reading it as a return would invent evidence.)

**Validation.** The official pain.002.001.10 XSD is not bundled anywhere we can use, so
:data:`PAIN002_SUBSET_XSD` is an authored subset: the elements we generate, in the official order
and with the official simple types (every document valid against it is valid against the ISO schema;
the converse does not hold). The generator validates its output against it. The parser does *not*
require it — a real bank sends elements outside our subset — and instead checks the structure it
relies on, raising :class:`Pain002ParseError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from adapters.bank.errors import DocumentError, Pain002ParseError
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

PAIN002_SCHEMA = "pain.002.001.10"
PAIN002_NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"
PAIN002_VERSIONS = ("pain.002.001.03", "pain.002.001.10")
"""The versions :func:`parse_pain002` reads: .03 (2009, still what many banks send with pain.001.001.03
files) and .10 (2019). The elements we read have the same names and places in both; only
``ReqdExctnDt`` changed from a date to a date-or-time choice."""
_ISO_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"
_NS = {"p": PAIN002_NAMESPACE}

RECEIVED = "RCVD"
PENDING = "PDNG"
ACCEPTED_TECHNICAL_VALIDATION = "ACTC"
ACCEPTED_CUSTOMER_PROFILE = "ACCP"
ACCEPTED_SETTLEMENT_IN_PROCESS = "ACSP"
ACCEPTED_WITH_CHANGE = "ACWC"
ACCEPTED_SETTLEMENT_COMPLETED = "ACSC"
ACCEPTED_CREDIT_SETTLEMENT_COMPLETED = "ACCC"
REJECTED = "RJCT"
CANCELLED = "CANC"

PENDING_STATUSES = frozenset(
    {
        RECEIVED,
        PENDING,
        ACCEPTED_TECHNICAL_VALIDATION,
        ACCEPTED_CUSTOMER_PROFILE,
        ACCEPTED_SETTLEMENT_IN_PROCESS,
        ACCEPTED_WITH_CHANGE,
    }
)
SETTLED_STATUSES = frozenset({ACCEPTED_SETTLEMENT_COMPLETED, ACCEPTED_CREDIT_SETTLEMENT_COMPLETED})
FAILED_STATUSES = frozenset({REJECTED, CANCELLED})
DUPLICATE_REASON_CODES = frozenset({"AM05", "DUPL"})
"""Reasons meaning "the bank already has this transfer": look its status up, never resend blindly."""

StatusClass = Literal["pending", "succeeded", "failed", "unknown"]


def classify_status(status: str) -> StatusClass:
    """Map a transaction status to the outcome family of design §5.

    ACTC/ACCP/ACSP/... → pending (PROCESSING), ACSC/ACCC → succeeded (PAID), RJCT/CANC → failed;
    anything unrecognised → unknown (treat as pending and alert, never as failed).
    """
    if status in PENDING_STATUSES:
        return "pending"
    if status in SETTLED_STATUSES:
        return "succeeded"
    if status in FAILED_STATUSES:
        return "failed"
    return "unknown"


@dataclass(frozen=True)
class TransactionStatus:
    """The status of one transaction (``TxInfAndSts``), keyed by our ``EndToEndId``.

    ``reason_code`` is the ISO code from ``StsRsnInf/Rsn/Cd``; ``reason_proprietary`` a bank-specific
    ``Rsn/Prtry``; ``additional_info`` the ``AddtlInf`` lines (≤ 105 characters each). Amount, date,
    acceptance time and the bank's reference are optional echoes of the original transaction.
    """

    end_to_end_id: str
    original_pmt_inf_id: str
    status: str
    reason_code: str | None = None
    reason_proprietary: str | None = None
    additional_info: tuple[str, ...] = ()
    amount_minor: int | None = None
    currency: str | None = None
    requested_execution_date: date | None = None
    acceptance_time: datetime | None = None
    account_servicer_reference: str | None = None

    @property
    def outcome(self) -> StatusClass:
        """The outcome family of :attr:`status` (see :func:`classify_status`)."""
        return classify_status(self.status)

    @property
    def is_duplicate_rejection(self) -> bool:
        """True when the bank rejected this because it already holds the transfer (AM05/DUPL)."""
        return self.status == REJECTED and self.reason_code in DUPLICATE_REASON_CODES


@dataclass(frozen=True)
class PaymentStatusReport:
    """A whole pain.002 document.

    ``group_status``/``group_reason_code`` come from ``OrgnlGrpInfAndSts``; banks that reject a file
    outright may send only those and no transaction entries (see :meth:`status_for`).
    """

    msg_id: str
    created_at: datetime
    original_msg_id: str
    original_msg_name_id: str = "pain.001.001.09"
    original_number_of_transactions: int | None = None
    group_status: str | None = None
    group_reason_code: str | None = None
    transactions: tuple[TransactionStatus, ...] = field(default=())
    version: str = PAIN002_SCHEMA  # the pain.002 version the report was read from (or is written as)

    def status_for(self, end_to_end_id: str, pmt_inf_id: str = "") -> TransactionStatus | None:
        """The entry for ``end_to_end_id``; if absent and the whole file was rejected, a synthesised
        RJCT entry carrying the group reason; otherwise ``None`` (the report says nothing about it).
        """
        for entry in self.transactions:
            if entry.end_to_end_id == end_to_end_id:
                return entry
        if self.group_status == REJECTED:
            return TransactionStatus(
                end_to_end_id=end_to_end_id,
                original_pmt_inf_id=pmt_inf_id,
                status=REJECTED,
                reason_code=self.group_reason_code,
                additional_info=("whole file rejected",),
            )
        return None


PAIN002_SUBSET_XSD = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Authored subset of ISO 20022 pain.002.001.10: only what our generator emits, in the official
     element order, with the official simple types. Type names follow the ISO schema. -->
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
           xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"
           targetNamespace="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"
           elementFormDefault="qualified">
  <xs:element name="Document" type="Document"/>
  <xs:complexType name="Document">
    <xs:sequence><xs:element name="CstmrPmtStsRpt" type="CustomerPaymentStatusReportV10"/></xs:sequence>
  </xs:complexType>
  <xs:complexType name="CustomerPaymentStatusReportV10">
    <xs:sequence>
      <xs:element name="GrpHdr" type="GroupHeader86"/>
      <xs:element name="OrgnlGrpInfAndSts" type="OriginalGroupHeader17"/>
      <xs:element name="OrgnlPmtInfAndSts" type="OriginalPaymentInstruction32"
                  minOccurs="0" maxOccurs="unbounded"/>
    </xs:sequence>
  </xs:complexType>
  <xs:complexType name="GroupHeader86">
    <xs:sequence>
      <xs:element name="MsgId" type="Max35Text"/>
      <xs:element name="CreDtTm" type="ISODateTime"/>
    </xs:sequence>
  </xs:complexType>
  <xs:complexType name="OriginalGroupHeader17">
    <xs:sequence>
      <xs:element name="OrgnlMsgId" type="Max35Text"/>
      <xs:element name="OrgnlMsgNmId" type="Max35Text"/>
      <xs:element name="OrgnlNbOfTxs" type="Max15NumericText" minOccurs="0"/>
      <xs:element name="GrpSts" type="ExternalPaymentGroupStatus1Code" minOccurs="0"/>
      <xs:element name="StsRsnInf" type="StatusReasonInformation12" minOccurs="0" maxOccurs="unbounded"/>
    </xs:sequence>
  </xs:complexType>
  <xs:complexType name="OriginalPaymentInstruction32">
    <xs:sequence>
      <xs:element name="OrgnlPmtInfId" type="Max35Text"/>
      <xs:element name="TxInfAndSts" type="PaymentTransaction105" minOccurs="0" maxOccurs="unbounded"/>
    </xs:sequence>
  </xs:complexType>
  <xs:complexType name="PaymentTransaction105">
    <xs:sequence>
      <xs:element name="OrgnlEndToEndId" type="Max35Text"/>
      <xs:element name="TxSts" type="ExternalPaymentTransactionStatus1Code"/>
      <xs:element name="StsRsnInf" type="StatusReasonInformation12" minOccurs="0" maxOccurs="unbounded"/>
      <xs:element name="AccptncDtTm" type="ISODateTime" minOccurs="0"/>
      <xs:element name="AcctSvcrRef" type="Max35Text" minOccurs="0"/>
      <xs:element name="OrgnlTxRef" type="OriginalTransactionReference29" minOccurs="0"/>
    </xs:sequence>
  </xs:complexType>
  <xs:complexType name="StatusReasonInformation12">
    <xs:sequence>
      <xs:element name="Rsn" type="StatusReason6Choice" minOccurs="0"/>
      <xs:element name="AddtlInf" type="Max105Text" minOccurs="0" maxOccurs="unbounded"/>
    </xs:sequence>
  </xs:complexType>
  <xs:complexType name="StatusReason6Choice">
    <xs:choice>
      <xs:element name="Cd" type="ExternalStatusReason1Code"/>
      <xs:element name="Prtry" type="Max35Text"/>
    </xs:choice>
  </xs:complexType>
  <xs:complexType name="OriginalTransactionReference29">
    <xs:sequence>
      <xs:element name="Amt" type="AmountType4Choice" minOccurs="0"/>
      <xs:element name="ReqdExctnDt" type="DateAndDateTime2Choice" minOccurs="0"/>
    </xs:sequence>
  </xs:complexType>
  <xs:complexType name="AmountType4Choice">
    <xs:choice><xs:element name="InstdAmt" type="ActiveOrHistoricCurrencyAndAmount"/></xs:choice>
  </xs:complexType>
  <xs:complexType name="DateAndDateTime2Choice">
    <xs:choice>
      <xs:element name="Dt" type="ISODate"/>
      <xs:element name="DtTm" type="ISODateTime"/>
    </xs:choice>
  </xs:complexType>
  <xs:complexType name="ActiveOrHistoricCurrencyAndAmount">
    <xs:simpleContent>
      <xs:extension base="ActiveOrHistoricCurrencyAndAmount_SimpleType">
        <xs:attribute name="Ccy" type="ActiveOrHistoricCurrencyCode" use="required"/>
      </xs:extension>
    </xs:simpleContent>
  </xs:complexType>
  <xs:simpleType name="ActiveOrHistoricCurrencyAndAmount_SimpleType">
    <xs:restriction base="xs:decimal">
      <xs:fractionDigits value="5"/><xs:totalDigits value="18"/><xs:minInclusive value="0"/>
    </xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="ActiveOrHistoricCurrencyCode">
    <xs:restriction base="xs:string"><xs:pattern value="[A-Z]{3,3}"/></xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="ExternalPaymentGroupStatus1Code">
    <xs:restriction base="xs:string"><xs:minLength value="1"/><xs:maxLength value="4"/></xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="ExternalPaymentTransactionStatus1Code">
    <xs:restriction base="xs:string"><xs:minLength value="1"/><xs:maxLength value="4"/></xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="ExternalStatusReason1Code">
    <xs:restriction base="xs:string"><xs:minLength value="1"/><xs:maxLength value="4"/></xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="ISODate"><xs:restriction base="xs:date"/></xs:simpleType>
  <xs:simpleType name="ISODateTime"><xs:restriction base="xs:dateTime"/></xs:simpleType>
  <xs:simpleType name="Max15NumericText">
    <xs:restriction base="xs:string"><xs:pattern value="[0-9]{1,15}"/></xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="Max35Text">
    <xs:restriction base="xs:string"><xs:minLength value="1"/><xs:maxLength value="35"/></xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="Max105Text">
    <xs:restriction base="xs:string"><xs:minLength value="1"/><xs:maxLength value="105"/></xs:restriction>
  </xs:simpleType>
</xs:schema>
"""

PAIN002_XSD = XmlSchema(f"{PAIN002_SCHEMA} (subset)", PAIN002_SUBSET_XSD)


def validate_pain002(data: bytes) -> Element:
    """Validate ``data`` against :data:`PAIN002_SUBSET_XSD`; return the root or raise
    :class:`~adapters.bank.errors.SchemaValidationError` / :class:`DocumentError`."""
    return PAIN002_XSD.validate(data)


def _sub(parent: Element, tag: str, text: str | None = None) -> Element:
    child = etree.SubElement(parent, f"{{{PAIN002_NAMESPACE}}}{tag}")
    if text is not None:
        child.text = text
    return child


def _add_reason(parent: Element, code: str | None, proprietary: str | None, info: tuple[str, ...]) -> None:
    if code is None and proprietary is None and not info:
        return
    reason_info = _sub(parent, "StsRsnInf")
    if code is not None or proprietary is not None:
        reason = _sub(reason_info, "Rsn")
        if code is not None:
            _sub(reason, "Cd", code)
        else:
            _sub(reason, "Prtry", proprietary)
    for line in info:
        _sub(reason_info, "AddtlInf", line)


def build_pain002(report: PaymentStatusReport) -> bytes:
    """Render ``report`` as pain.002.001.10 and validate it against the subset XSD.

    Transactions are grouped into one ``OrgnlPmtInfAndSts`` per original ``PmtInfId`` (first-seen
    order). Raises :class:`~adapters.bank.errors.SchemaValidationError` for values the schema forbids
    (e.g. an ``AddtlInf`` line over 105 characters or a status code over 4 characters).
    """
    root = etree.Element(f"{{{PAIN002_NAMESPACE}}}Document", nsmap={None: PAIN002_NAMESPACE})
    body = _sub(root, "CstmrPmtStsRpt")
    header = _sub(body, "GrpHdr")
    _sub(header, "MsgId", report.msg_id)
    _sub(header, "CreDtTm", format_datetime(report.created_at))
    group = _sub(body, "OrgnlGrpInfAndSts")
    _sub(group, "OrgnlMsgId", report.original_msg_id)
    _sub(group, "OrgnlMsgNmId", report.original_msg_name_id)
    if report.original_number_of_transactions is not None:
        _sub(group, "OrgnlNbOfTxs", str(report.original_number_of_transactions))
    if report.group_status is not None:
        _sub(group, "GrpSts", report.group_status)
    _add_reason(group, report.group_reason_code, None, ())

    blocks: dict[str, Element] = {}
    for entry in report.transactions:
        block = blocks.get(entry.original_pmt_inf_id)
        if block is None:
            block = _sub(body, "OrgnlPmtInfAndSts")
            _sub(block, "OrgnlPmtInfId", entry.original_pmt_inf_id)
            blocks[entry.original_pmt_inf_id] = block
        tx = _sub(block, "TxInfAndSts")
        _sub(tx, "OrgnlEndToEndId", entry.end_to_end_id)
        _sub(tx, "TxSts", entry.status)
        _add_reason(tx, entry.reason_code, entry.reason_proprietary, entry.additional_info)
        if entry.acceptance_time is not None:
            _sub(tx, "AccptncDtTm", format_datetime(entry.acceptance_time))
        if entry.account_servicer_reference is not None:
            _sub(tx, "AcctSvcrRef", entry.account_servicer_reference)
        has_amount = entry.amount_minor is not None and entry.currency is not None
        if has_amount or entry.requested_execution_date is not None:
            reference = _sub(tx, "OrgnlTxRef")
            if entry.amount_minor is not None and entry.currency is not None:
                amount = _sub(_sub(reference, "Amt"), "InstdAmt", format_minor(entry.amount_minor))
                amount.set("Ccy", entry.currency)
            if entry.requested_execution_date is not None:
                _sub(_sub(reference, "ReqdExctnDt"), "Dt", entry.requested_execution_date.isoformat())
    data = serialize(root)
    validate_pain002(data)
    return data


def _text(element: Element, path: str, ns: dict[str, str] = _NS) -> str | None:
    values = element.xpath(f"{path}/text()", namespaces=ns)
    if not values:
        return None
    text = str(values[0]).strip()
    return text or None


def _required(element: Element, path: str, what: str, ns: dict[str, str] = _NS) -> str:
    value = _text(element, path, ns)
    if value is None:
        raise Pain002ParseError(f"pain.002: {what} lacks {path.replace('p:', '')}")
    return value


def _reason(element: Element, ns: dict[str, str] = _NS) -> tuple[str | None, str | None, tuple[str, ...]]:
    """(first ISO reason code, first proprietary reason, all AddtlInf lines) of ``StsRsnInf``."""
    codes = element.xpath("p:StsRsnInf/p:Rsn/p:Cd/text()", namespaces=ns)
    proprietary = element.xpath("p:StsRsnInf/p:Rsn/p:Prtry/text()", namespaces=ns)
    info = element.xpath("p:StsRsnInf/p:AddtlInf/text()", namespaces=ns)
    return (
        str(codes[0]).strip() if codes else None,
        str(proprietary[0]).strip() if proprietary else None,
        tuple(str(line).strip() for line in info),
    )


def _parse_transaction(tx: Element, pmt_inf_id: str, ns: dict[str, str]) -> TransactionStatus:
    end_to_end_id = _required(tx, "p:OrgnlEndToEndId", "TxInfAndSts", ns)
    status = _required(tx, "p:TxSts", f"transaction {end_to_end_id}", ns)
    code, proprietary, info = _reason(tx, ns)
    amount_nodes = tx.xpath("p:OrgnlTxRef/p:Amt/p:InstdAmt", namespaces=ns)
    amount_minor: int | None = None
    currency: str | None = None
    if amount_nodes:
        amount_minor = parse_minor(amount_nodes[0].text or "")
        currency = amount_nodes[0].get("Ccy")
    # .10: a choice of Dt/DtTm; .03: the ISODate itself
    execution_date = _text(tx, "p:OrgnlTxRef/p:ReqdExctnDt/p:Dt", ns) or _text(tx, "p:OrgnlTxRef/p:ReqdExctnDt", ns)
    acceptance = _text(tx, "p:AccptncDtTm", ns)
    return TransactionStatus(
        end_to_end_id=end_to_end_id,
        original_pmt_inf_id=pmt_inf_id,
        status=status,
        reason_code=code,
        reason_proprietary=proprietary,
        additional_info=info,
        amount_minor=amount_minor,
        currency=currency,
        requested_execution_date=date.fromisoformat(execution_date) if execution_date else None,
        acceptance_time=parse_datetime(acceptance) if acceptance else None,
        account_servicer_reference=_text(tx, "p:AcctSvcrRef", ns),
    )


def pain002_version(root: Element) -> str | None:
    """``pain.002.001.NN`` of a parsed document's root, or None if it is no pain.002 Document."""
    namespace = str(etree.QName(root).namespace or "")
    message = namespace.removeprefix(_ISO_PREFIX)
    if etree.QName(root).localname != "Document" or not message.startswith("pain.002."):
        return None
    return message


def parse_pain002(data: bytes, accepted: tuple[str, ...] = PAIN002_VERSIONS) -> PaymentStatusReport:
    """Read a pain.002.001.03 or .10 document (namespace-aware XPath, no schema required); ``accepted``
    narrows the versions to those the bank is configured to send.

    Raises :class:`Pain002ParseError` for malformed XML, another message type or version, or missing
    elements we rely on (``GrpHdr/MsgId``, ``OrgnlMsgId``, each transaction's ``OrgnlEndToEndId`` and
    ``TxSts``).
    """
    try:
        root = parse_xml(data)
        version = pain002_version(root)
        if version is None or version not in accepted or version not in PAIN002_VERSIONS:
            wanted = " or ".join(v for v in accepted if v in PAIN002_VERSIONS) or "no pain.002"
            raise Pain002ParseError(f"pain.002: expected a {wanted} Document, got {version or root.tag}")
        ns = {"p": f"{_ISO_PREFIX}{version}"}
        reports = root.xpath("p:CstmrPmtStsRpt", namespaces=ns)
        if len(reports) != 1:
            raise Pain002ParseError("pain.002: expected exactly one CstmrPmtStsRpt")
        report = reports[0]
        group = report.xpath("p:OrgnlGrpInfAndSts", namespaces=ns)
        if len(group) != 1:
            raise Pain002ParseError("pain.002: expected exactly one OrgnlGrpInfAndSts")
        group_code, _, _ = _reason(group[0], ns)
        transactions: list[TransactionStatus] = []
        for block in report.xpath("p:OrgnlPmtInfAndSts", namespaces=ns):
            pmt_inf_id = _required(block, "p:OrgnlPmtInfId", "OrgnlPmtInfAndSts", ns)
            transactions.extend(
                _parse_transaction(tx, pmt_inf_id, ns) for tx in block.xpath("p:TxInfAndSts", namespaces=ns)
            )
        number = _text(group[0], "p:OrgnlNbOfTxs", ns)
        return PaymentStatusReport(
            msg_id=_required(report, "p:GrpHdr/p:MsgId", "GrpHdr", ns),
            created_at=parse_datetime(_required(report, "p:GrpHdr/p:CreDtTm", "GrpHdr", ns)),
            original_msg_id=_required(group[0], "p:OrgnlMsgId", "OrgnlGrpInfAndSts", ns),
            original_msg_name_id=_required(group[0], "p:OrgnlMsgNmId", "OrgnlGrpInfAndSts", ns),
            original_number_of_transactions=int(number) if number is not None and number.isdigit() else None,
            group_status=_text(group[0], "p:GrpSts", ns),
            group_reason_code=group_code,
            transactions=tuple(transactions),
            version=version,
        )
    except Pain002ParseError:
        raise
    except (DocumentError, ValueError) as exc:
        raise Pain002ParseError(f"pain.002: {exc}") from exc
