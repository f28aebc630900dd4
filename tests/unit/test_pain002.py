"""pain.002.001.10: generator and parser tested against each other, plus real-bank-shaped input."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.bank.errors import Pain002ParseError, SchemaValidationError
from adapters.bank.pain002 import (
    PAIN002_NAMESPACE,
    PaymentStatusReport,
    TransactionStatus,
    build_pain002,
    classify_status,
    parse_pain002,
    validate_pain002,
)

CREATED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STATUSES = ["RCVD", "PDNG", "ACTC", "ACCP", "ACSP", "ACWC", "ACSC", "ACCC", "RJCT", "CANC"]
REASONS = [None, "AC01", "AC04", "AC06", "AG01", "AM02", "AM03", "AM04", "AM05", "DUPL", "MD07", "MS03"]


def report_of(*transactions: TransactionStatus, **fields: object) -> PaymentStatusReport:
    return PaymentStatusReport(
        msg_id="STS-1",
        created_at=CREATED_AT,
        original_msg_id="M-0123456789abcdef0123456789abcdef",
        transactions=transactions,
        **fields,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("reason", REASONS)
def test_round_trip_for_every_status_and_reason(status: str, reason: str | None) -> None:
    entry = TransactionStatus(
        end_to_end_id="E-0123456789abcdef0123456789abcdef",
        original_pmt_inf_id="P-0123456789abcdef0123456789abcdef",
        status=status,
        reason_code=reason,
        additional_info=("Reason text",) if reason else (),
        amount_minor=1,
        currency="EUR",
        requested_execution_date=date(2026, 3, 2),
        acceptance_time=CREATED_AT,
        account_servicer_reference="bf_1",
    )
    report = report_of(entry, original_number_of_transactions=1)
    xml = build_pain002(report)
    validate_pain002(xml)
    assert parse_pain002(xml) == report


def test_minimal_entry_round_trips() -> None:
    report = report_of(TransactionStatus("E-1", "P-1", "ACSC"))
    assert parse_pain002(build_pain002(report)) == report


def test_transactions_are_grouped_by_payment_information_in_order() -> None:
    report = report_of(
        TransactionStatus("E-1", "P-1", "ACSC"),
        TransactionStatus("E-2", "P-2", "RJCT", "AM04"),
        TransactionStatus("E-3", "P-1", "ACCP"),
    )
    xml = build_pain002(report)
    assert xml.count(b"<OrgnlPmtInfAndSts>") == 2
    parsed = parse_pain002(xml)
    assert {entry.end_to_end_id: entry for entry in parsed.transactions} == {
        entry.end_to_end_id: entry for entry in report.transactions
    }
    assert [entry.end_to_end_id for entry in parsed.transactions] == ["E-1", "E-3", "E-2"]


def test_amounts_are_exact_minor_units() -> None:
    for amount in (1, 99, 100, 99_999_999, 10_000_000):
        entry = TransactionStatus("E-1", "P-1", "ACSC", amount_minor=amount, currency="EUR")
        parsed = parse_pain002(build_pain002(report_of(entry)))
        assert parsed.transactions[0].amount_minor == amount


def test_group_status_and_reason_round_trip() -> None:
    report = report_of(group_status="RJCT", group_reason_code="FF01", original_number_of_transactions=3)
    parsed = parse_pain002(build_pain002(report))
    assert parsed == report
    synthesised = parsed.status_for("E-9", "P-9")
    assert synthesised is not None
    assert synthesised.status == "RJCT"
    assert synthesised.reason_code == "FF01"
    assert synthesised.outcome == "failed"


def test_status_for_finds_entries_and_says_nothing_otherwise() -> None:
    report = report_of(TransactionStatus("E-1", "P-1", "ACSC"))
    entry = report.status_for("E-1")
    assert entry is not None
    assert entry.status == "ACSC"
    assert report.status_for("E-2") is None


def test_proprietary_reason_round_trips() -> None:
    entry = TransactionStatus("E-1", "P-1", "RJCT", reason_proprietary="BANK-42")
    parsed = parse_pain002(build_pain002(report_of(entry)))
    assert parsed.transactions[0].reason_proprietary == "BANK-42"
    assert parsed.transactions[0].reason_code is None


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("ACTC", "pending"),
        ("ACCP", "pending"),
        ("ACSP", "pending"),
        ("PDNG", "pending"),
        ("ACSC", "succeeded"),
        ("ACCC", "succeeded"),
        ("RJCT", "failed"),
        ("CANC", "failed"),
        ("RTND", "unknown"),  # our former return convention: no bank sends it, so it proves nothing
        ("XXXX", "unknown"),
    ],
)
def test_classify_status(status: str, outcome: str) -> None:
    assert classify_status(status) == outcome


@pytest.mark.parametrize(("reason", "duplicate"), [("AM05", True), ("DUPL", True), ("AC01", False), (None, False)])
def test_duplicate_rejection(reason: str | None, duplicate: bool) -> None:
    assert TransactionStatus("E", "P", "RJCT", reason).is_duplicate_rejection is duplicate
    assert not TransactionStatus("E", "P", "ACSC", reason).is_duplicate_rejection


def test_generator_refuses_schema_violations() -> None:
    with pytest.raises(SchemaValidationError):
        build_pain002(report_of(TransactionStatus("E-1", "P-1", "ACSC", additional_info=("x" * 106,))))
    with pytest.raises(SchemaValidationError):
        build_pain002(report_of(TransactionStatus("E-1", "P-1", "TOOLONG")))
    with pytest.raises(SchemaValidationError):
        build_pain002(report_of(TransactionStatus("E" * 36, "P-1", "ACSC")))


_CODE = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=4, max_size=4)
_ID = st.text(alphabet="abcdefABCDEF0123456789-", min_size=1, max_size=35)
_INFO = st.text(alphabet="abcdefghij ABC0123456789.,-", min_size=1, max_size=105).map(str.strip).filter(bool)


@st.composite
def entries(draw: st.DrawFn) -> TransactionStatus:
    amount = draw(st.none() | st.integers(min_value=0, max_value=10**15))
    return TransactionStatus(
        end_to_end_id=draw(_ID),
        original_pmt_inf_id=draw(st.sampled_from(["P-1", "P-2", "P-3"])),
        status=draw(st.sampled_from(STATUSES)),
        reason_code=draw(st.none() | _CODE),
        additional_info=tuple(draw(st.lists(_INFO, max_size=3))),
        amount_minor=amount,
        currency="EUR" if amount is not None else None,
        requested_execution_date=draw(st.none() | st.dates(min_value=date(2000, 1, 1))),
        account_servicer_reference=draw(st.none() | _ID),
    )


@settings(max_examples=50, deadline=None)
@given(st.lists(entries(), max_size=6))
def test_generated_reports_round_trip(transactions: list[TransactionStatus]) -> None:
    report = report_of(*transactions)
    parsed = parse_pain002(build_pain002(report))
    assert sorted(parsed.transactions, key=repr) == sorted(report.transactions, key=repr)


# -------------------------------------------------------------------------- input from a real bank

BANK_REPORT = f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="{PAIN002_NAMESPACE}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <CstmrPmtStsRpt>
    <GrpHdr>
      <MsgId>BANK-STS-77</MsgId>
      <CreDtTm>2026-03-01T13:14:15.123+01:00</CreDtTm>
      <InitgPty><Id><OrgId><AnyBIC>COBADEFFXXX</AnyBIC></OrgId></Id></InitgPty>
    </GrpHdr>
    <OrgnlGrpInfAndSts>
      <OrgnlMsgId>M-1</OrgnlMsgId>
      <OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId>
      <OrgnlNbOfTxs>2</OrgnlNbOfTxs>
      <GrpSts>PART</GrpSts>
    </OrgnlGrpInfAndSts>
    <OrgnlPmtInfAndSts>
      <OrgnlPmtInfId>P-1</OrgnlPmtInfId>
      <PmtInfSts>PART</PmtInfSts>
      <TxInfAndSts>
        <StsId>S1</StsId>
        <OrgnlInstrId>I-1</OrgnlInstrId>
        <OrgnlEndToEndId> E-1 </OrgnlEndToEndId>
        <TxSts>RJCT</TxSts>
        <StsRsnInf>
          <Orgtr><Nm>Bank</Nm></Orgtr>
          <Rsn><Cd>AC04</Cd></Rsn>
          <AddtlInf>Account closed</AddtlInf>
          <AddtlInf>second line</AddtlInf>
        </StsRsnInf>
        <OrgnlTxRef>
          <Amt><InstdAmt Ccy="EUR">1234.50</InstdAmt></Amt>
          <ReqdExctnDt><Dt>2026-03-02</Dt></ReqdExctnDt>
          <Cdtr><Pty><Nm>X</Nm></Pty></Cdtr>
        </OrgnlTxRef>
      </TxInfAndSts>
      <TxInfAndSts>
        <OrgnlEndToEndId>E-2</OrgnlEndToEndId>
        <TxSts>ACSC</TxSts>
      </TxInfAndSts>
    </OrgnlPmtInfAndSts>
  </CstmrPmtStsRpt>
</Document>
""".encode()


def test_parser_tolerates_elements_outside_our_subset() -> None:
    report = parse_pain002(BANK_REPORT)
    assert report.msg_id == "BANK-STS-77"
    assert report.created_at == datetime(2026, 3, 1, 12, 14, 15, 123000, tzinfo=UTC)
    assert report.group_status == "PART"
    first, second = report.transactions
    assert first.end_to_end_id == "E-1"
    assert first.status == "RJCT"
    assert first.reason_code == "AC04"
    assert first.additional_info == ("Account closed", "second line")
    assert first.amount_minor == 123_450
    assert first.requested_execution_date == date(2026, 3, 2)
    assert second.status == "ACSC"
    assert second.outcome == "succeeded"
    with pytest.raises(SchemaValidationError):
        validate_pain002(BANK_REPORT)  # the subset XSD is for our own output only


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        ((b"pain.002.001.10", b"pain.002.001.05"), "expected a pain.002.001.03 or pain.002.001.10 Document"),
        ((b"<TxSts>ACSC</TxSts>", b""), "TxSts"),
        ((b"<OrgnlEndToEndId>E-2</OrgnlEndToEndId>", b""), "OrgnlEndToEndId"),
        ((b"<MsgId>BANK-STS-77</MsgId>", b""), "MsgId"),
        ((b"1234.50", b"12.345"), "more than 2 decimals"),
        ((b"<CstmrPmtStsRpt>", b"<Other>"), "malformed|CstmrPmtStsRpt"),
    ],
)
def test_parser_rejects_what_it_cannot_rely_on(mutation: tuple[bytes, bytes], message: str) -> None:
    with pytest.raises(Pain002ParseError, match=message):
        parse_pain002(BANK_REPORT.replace(*mutation))


def test_parser_rejects_malformed_xml() -> None:
    with pytest.raises(Pain002ParseError, match="malformed"):
        parse_pain002(b"<Document")
