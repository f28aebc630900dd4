"""camt.053/camt.054 reading against files shaped as banks publish them (tests/unit/bank_samples), the
refusals, and the sandbox's writer checked by the same official XSDs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from adapters.bank.camt import SUPPORTED_MESSAGES, BookingLine, build_camt, message_of, parse_camt
from adapters.bank.errors import DocumentError, SchemaValidationError
from adapters.bank.pain001 import derive_message_ids, payout_id_of
from adapters.bank.pain002 import parse_pain002
from server.domain.bank_statements import Direction, EntryKind, ReportKind, classify_entry

SAMPLES = Path(__file__).parent / "bank_samples"
OUR_IBAN = "DE89370400440532013000"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def flat(name: str) -> list[tuple[str, int, str, str | None, str | None, EntryKind]]:
    (report,) = parse_camt(sample(name)).reports
    return [
        (e.key, e.amount_minor, str(e.direction), e.end_to_end_id, e.return_reason, classify_entry(e))
        for e in report.entries
    ]


def test_camt053_v02_batch_booking_is_one_entry_per_transaction() -> None:
    document = parse_camt(sample("camt.053.001.02.xml"))
    assert document.message == "camt.053.001.02"
    (report,) = document.reports
    assert (report.kind, report.report_id, report.account_iban) == (
        ReportKind.STATEMENT,
        "0352C5320261130201503",
        OUR_IBAN,
    )
    assert flat("camt.053.001.02.xml") == [
        ("1/1", 100_000, "DBIT", "E2E-BATCH-A", None, EntryKind.BOOKING),  # AmtDtls/TxAmt of a batch
        ("1/2", 50_000, "DBIT", "E2E-BATCH-B", None, EntryKind.BOOKING),
        ("2/1", 2_450, "DBIT", "E2E-SINGLE", None, EntryKind.BOOKING),  # a lone TxDtls takes the entry's amount
        ("3/1", 20_000, "CRDT", None, None, EntryKind.OTHER),  # NOTPROVIDED names no payout
        ("4/0", 7_500, "DBIT", None, None, EntryKind.OTHER),  # PDNG: not yet evidence
    ]
    assert report.entries[0].booking_date == date(2026, 11, 30)
    assert report.entries[0].bank_reference == "2026113000012345"  # the entry's, when TxDtls has none


def test_camt053_v08_return_reversal_and_datetime_booking() -> None:
    assert flat("camt.053.001.08.xml") == [
        ("1/1", 10_000, "DBIT", "E2E-08-ONE", None, EntryKind.BOOKING),
        ("1/2", 25_000, "DBIT", "E2E-08-TWO", None, EntryKind.BOOKING),
        ("1/3", 35_000, "DBIT", "E2E-08-THREE", None, EntryKind.BOOKING),
        ("2/1", 12_500, "CRDT", "E2E-08-RETURNED", "MD07", EntryKind.RETURN),
        ("3/1", 4_000, "CRDT", "E2E-08-REVERSED", None, EntryKind.RETURN),  # CRDT + RvslInd reverses a debit
    ]
    (report,) = parse_camt(sample("camt.053.001.08.xml")).reports
    assert report.entries[0].booking_date == date(2026, 11, 30)  # from BookgDt/DtTm, in the bank's offset
    assert report.entries[1].bank_reference == "TX-77-2"
    assert report.entries[4].reversal


def test_camt054_v02_batched_returns_with_reasons() -> None:
    (report,) = parse_camt(sample("camt.054.001.02.xml")).reports
    assert report.kind is ReportKind.NOTIFICATION
    assert flat("camt.054.001.02.xml") == [
        ("1/1", 11_000, "CRDT", "E2E-RET-AC04", "AC04", EntryKind.RETURN),
        ("1/2", 20_000, "CRDT", "E2E-RET-AM09", "AM09", EntryKind.RETURN),
    ]


def test_camt054_v08_return_and_debit_notification() -> None:
    assert flat("camt.054.001.08.xml") == [
        ("1/1", 6_499, "CRDT", "E2E-RET-AC06", "AC06", EntryKind.RETURN),
        ("2/1", 1_200, "DBIT", "E2E-DEBIT-NOTE", None, EntryKind.BOOKING),
    ]


def test_pain002_v03_sample_is_read() -> None:
    report = parse_pain002(sample("pain.002.001.03.xml"))
    assert (report.version, report.group_status, report.original_msg_name_id) == (
        "pain.002.001.03", "PART", "pain.001.001.03",
    )  # fmt: skip
    settled, rejected = report.transactions
    assert (settled.status, settled.outcome, settled.amount_minor) == ("ACSC", "succeeded", 100_000)
    assert settled.requested_execution_date == date(2026, 11, 30)  # a plain ISODate in .03
    assert (rejected.status, rejected.reason_code, rejected.outcome) == ("RJCT", "AC04", "failed")


def test_a_bank_configured_for_one_version_refuses_another() -> None:
    with pytest.raises(DocumentError, match=r"camt\.053\.001\.02 is not accepted"):
        parse_camt(sample("camt.053.001.02.xml"), accepted=("camt.053.001.08", "camt.054.001.08"))
    with pytest.raises(DocumentError, match=r"expected a pain\.002\.001\.10 Document"):
        parse_pain002(sample("pain.002.001.03.xml"), accepted=("pain.002.001.10",))


@pytest.mark.parametrize(
    ("mutation", "error", "message"),
    [
        ((b"<Sts>BOOK</Sts>", b"<Sts>BOOKED</Sts>"), SchemaValidationError, "camt.053.001.02 schema validation"),
        ((b"<CdtDbtInd>DBIT</CdtDbtInd>", b""), SchemaValidationError, "CdtDbtInd"),
        ((b"1500.00", b"1500.001"), DocumentError, "more than 2 decimals"),  # XSD-valid, not cents
        ((b"</BkToCstmrStmt>", b""), DocumentError, "malformed XML"),
        ((b"camt.053.001.02", b"camt.053.001.04"), DocumentError, "camt.053.001.04 is not accepted"),
        ((b"<?xml", b'<!DOCTYPE x [<!ENTITY a "b">]><?xml'), DocumentError, "malformed XML"),
    ],
)
def test_untrustworthy_files_are_refused(mutation: tuple[bytes, bytes], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_camt(sample("camt.053.001.02.xml").replace(*mutation))


def test_errors_never_quote_a_full_iban() -> None:
    broken = sample("camt.054.001.08.xml").replace(
        b"<IBAN>DE89370400440532013000</IBAN>", b"<IBAN>de89370400440532013000</IBAN>"
    )
    with pytest.raises(SchemaValidationError) as caught:
        parse_camt(broken)
    assert "370400440532013000" not in str(caught.value)


def test_not_an_iso_document() -> None:
    with pytest.raises(DocumentError, match="not an ISO 20022 document"):
        message_of(b"<Document><x/></Document>")


@pytest.mark.parametrize("message", SUPPORTED_MESSAGES)
def test_the_sandbox_writes_what_the_reader_reads_in_every_version(message: str) -> None:
    booked = date(2026, 11, 30)
    lines = [
        BookingLine("file-1", "E2E-A", 1_000, "EUR", Direction.DEBIT, booked, "REF-A"),
        BookingLine("file-1", "E2E-B", 2_500, "EUR", Direction.DEBIT, booked, "REF-B"),
        BookingLine("RT1", "E2E-C", 700, "EUR", Direction.CREDIT, booked, "REF-C", "AC04", "closed"),
    ]
    data = build_camt(
        message, msg_id="M-1", report_id="R-1", account_iban=OUR_IBAN,
        created_at=datetime(2026, 11, 30, 18, tzinfo=UTC), lines=lines, sequence_number=1,
    )  # fmt: skip
    (report,) = parse_camt(data).reports
    got = [
        (e.key, e.end_to_end_id, e.amount_minor, e.direction, e.return_reason, e.bank_reference) for e in report.entries
    ]
    assert got == [
        ("1/1", "E2E-A", 1_000, Direction.DEBIT, None, "REF-A"),  # one file, one batch entry
        ("1/2", "E2E-B", 2_500, Direction.DEBIT, None, "REF-B"),
        ("2/1", "E2E-C", 700, Direction.CREDIT, "AC04", "REF-C"),
    ]


def test_our_end_to_end_ids_lead_back_to_their_payout() -> None:
    payout_id = "po_" + "0123456789abcdef" * 2
    e2e = derive_message_ids(payout_id).end_to_end_id
    assert payout_id_of(e2e) == payout_id
    assert [payout_id_of(other) for other in ("E2E-BATCH-A", "NOTPROVIDED", e2e.upper(), e2e + "0")] == [None] * 4
    data = build_camt(
        "camt.054.001.08", msg_id="M-2", report_id="R-2", account_iban=OUR_IBAN,
        created_at=datetime(2026, 11, 30, 18, tzinfo=UTC), sequence_number=2,
        lines=[BookingLine("RT", e2e, 100, "EUR", Direction.CREDIT, date(2026, 11, 30), "REF", "MD07")],
    )  # fmt: skip
    assert parse_camt(data).reports[0].entries[0].payout_id == payout_id


def test_the_versions_a_bank_sends_are_configuration() -> None:
    from server.bootstrap import bank_message_versions, psp_settings_problem
    from server.config import Settings

    every = bank_message_versions(Settings())
    assert every == (("pain.002.001.03", "pain.002.001.10"), SUPPORTED_MESSAGES)
    legacy = Settings.from_env({"PAYMENTS_BANK_MESSAGES": "pain.002.001.03, camt.053.001.02,camt.054.001.02"})
    assert bank_message_versions(legacy) == (("pain.002.001.03",), ("camt.053.001.02", "camt.054.001.02"))
    assert psp_settings_problem(legacy) is None
    problem = psp_settings_problem(Settings.from_env({"PAYMENTS_BANK_MESSAGES": "camt.053.001.04"}))
    assert problem is not None
    assert "camt.053.001.04" in problem
