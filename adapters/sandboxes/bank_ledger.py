"""The offline bank's books: what it booked on our account, as camt.053 statements and camt.054 notifications.

Why apart from :mod:`.bank_gateway`: payment files and statuses are one concern (pain.001 in, pain.002
out), bookings another — and the one finance reconciles. A transfer the gateway settled (its script
reached ACSC) is booked as a debit of our account, one entry per payment file (banks book a file as one
batch entry with a ``TxDtls`` per transaction); a transfer scripted to come back (``TEST_IBAN_RETURNED``)
is booked one status step later as a credit with return information (``RtrInf/Rsn/Cd``, e.g. AC04), and
reported at once in a camt.054, as banks report returns intraday. ``close_day`` cuts the day's camt.053
statement from everything booked since the previous one. Tests can also make the bank "lose" a transfer
(it settles but is never booked) and book a debit we never initiated.

The gateway calls :meth:`Ledger.book_due` under its lock before anything reads the books, so bookings
follow the same lazy sandbox clock as statuses. Documents are numbered from 1 per kind.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from adapters.bank.camt import BookingLine, build_camt
from server.domain.bank_statements import Direction

DEFAULT_STATEMENT_VERSION = "camt.053.001.08"
DEFAULT_NOTIFICATION_VERSION = "camt.054.001.08"


@dataclass(frozen=True)
class DueBooking:
    """What the gateway knows of a transfer when the books are brought up to date."""

    file_id: str
    end_to_end_id: str
    amount_minor: int
    currency: str
    settled: bool  # its status reached ACSC
    returned: bool  # its script's return is due
    return_reason: str | None = None
    return_info: str | None = None


@dataclass(frozen=True)
class Document:
    seq: int
    message: str
    report_id: str
    body: bytes


@dataclass
class Ledger:
    """Our account at the sandbox bank. Not thread-safe: the gateway's lock guards it."""

    account_iban: str
    statement_version: str = DEFAULT_STATEMENT_VERSION
    notification_version: str = DEFAULT_NOTIFICATION_VERSION
    _booked: set[str] = field(default_factory=set)
    _returned: set[str] = field(default_factory=set)
    _lost: set[str] = field(default_factory=set)
    _open_day: list[BookingLine] = field(default_factory=list)
    _statements: list[Document] = field(default_factory=list)
    _notifications: list[Document] = field(default_factory=list)
    _balance_minor: int = 0

    def lose(self, end_to_end_id: str) -> None:
        """The bank settles this transfer but never books it (a payout finance must find missing)."""
        self._lost.add(end_to_end_id)

    def book_foreign(self, end_to_end_id: str, amount_minor: int, currency: str, today: date) -> None:
        """Book a debit we never initiated (someone else's transfer taken from our account)."""
        reference = f"FX{uuid.uuid4().hex[:16]}"
        self._open_day.append(
            BookingLine(reference, end_to_end_id, amount_minor, currency, Direction.DEBIT, today, reference)
        )

    def book_due(self, transfers: list[DueBooking], today: date, now: datetime) -> None:
        """Book every settled transfer not booked yet, and every due return (one camt.054 for them)."""
        returns: list[BookingLine] = []
        for transfer in transfers:
            e2e = transfer.end_to_end_id
            if e2e in self._lost:
                continue
            if transfer.settled and e2e not in self._booked:
                self._booked.add(e2e)
                self._open_day.append(
                    BookingLine(transfer.file_id, e2e, transfer.amount_minor, transfer.currency, Direction.DEBIT,
                                today, f"BK{uuid.uuid4().hex[:16]}")
                )  # fmt: skip
            if transfer.returned and e2e in self._booked and e2e not in self._returned:
                self._returned.add(e2e)
                returns.append(
                    BookingLine(f"RT{today:%Y%m%d}", e2e, transfer.amount_minor, transfer.currency, Direction.CREDIT,
                                today, f"RT{uuid.uuid4().hex[:16]}", transfer.return_reason or "MS03",
                                transfer.return_info)
                )  # fmt: skip
        if returns:
            self._open_day.extend(returns)
            seq = len(self._notifications) + 1
            report_id = f"NTF-{today:%Y%m%d}-{seq:06d}"
            body = build_camt(
                self.notification_version, msg_id=f"C54-{uuid.uuid4().hex[:20]}", report_id=report_id,
                account_iban=self.account_iban, created_at=now, lines=returns, sequence_number=seq,
            )  # fmt: skip
            self._notifications.append(Document(seq, self.notification_version, report_id, body))

    def close_day(self, now: datetime) -> Document:
        """Cut the statement of everything booked since the previous one (an empty day has one too)."""
        seq = len(self._statements) + 1
        day = now.astimezone(UTC).date()
        report_id = f"STMT-{day:%Y%m%d}-{seq:06d}"
        lines, self._open_day = self._open_day, []
        body = build_camt(
            self.statement_version, msg_id=f"C53-{uuid.uuid4().hex[:20]}", report_id=report_id,
            account_iban=self.account_iban, created_at=now, lines=lines, sequence_number=seq,
            opening_balance_minor=self._balance_minor,
        )  # fmt: skip
        self._balance_minor += sum(
            line.amount_minor if line.direction is Direction.CREDIT else -line.amount_minor for line in lines
        )
        document = Document(seq, self.statement_version, report_id, body)
        self._statements.append(document)
        return document

    def documents(self, kind: str, after: int) -> list[Document]:
        """Statements (``camt.053``) or notifications (``camt.054``) numbered above ``after``."""
        source = self._statements if kind == "camt.053" else self._notifications
        return [document for document in source if document.seq > after]

    def document(self, kind: str, seq: int) -> Document | None:
        source = self._statements if kind == "camt.053" else self._notifications
        return source[seq - 1] if 0 < seq <= len(source) else None
