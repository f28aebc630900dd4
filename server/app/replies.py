"""How the use cases turn resources and business errors into the bytes a caller receives.

The gRPC edge implements this; the use cases store exactly these bytes so a replay is byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from server.app.store import StoredReply
from server.domain.errors import ServiceError
from server.domain.model import Payment, Payout, Refund


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    body: bytes
    replayed: bool

    @classmethod
    def of(cls, stored: StoredReply, *, replayed: bool) -> Reply:
        return cls(stored.code, stored.body, replayed)


class ReplyEncoder(Protocol):
    def charge(self, payment: Payment) -> bytes: ...

    def refund(self, refund: Refund) -> bytes: ...

    def payout(self, payout: Payout) -> bytes: ...

    def error(self, error: ServiceError) -> StoredReply: ...
