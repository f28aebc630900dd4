"""Statements and notifications from the bank gateway's HTTP API, and from files a bank delivered.

Why a separate adapter from :class:`~adapters.bank.adapter.BankTransferAdapter`: payouts are one request
per transfer with idempotency and retries on the payout's deadline; statements are documents the bank
offers by number and we fetch when we like, read in whichever camt version the bank is configured to
send. Same gateway, same token, different port (:class:`server.app.bank_statements.StatementFeed`).

Wire API (see :mod:`adapters.sandboxes.bank_sandbox`): ``GET {api_base}/v1/statements?after=N`` and
``/v1/notifications?after=N`` list ``{"documents": [{"seq", ...}]}``; ``GET .../{seq}`` is the document.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

import httpx

from adapters.bank.camt import SUPPORTED_MESSAGES, parse_camt
from adapters.bank.errors import BankError
from server.domain.bank_statements import BankDocument, ReportKind

__all__ = ["BankStatementFeed", "StatementFeedError"]

_PATHS: Final = {ReportKind.STATEMENT: "statements", ReportKind.NOTIFICATION: "notifications"}
_TIMEOUT_SECONDS: Final = 30.0


class StatementFeedError(BankError):
    """The gateway could not be asked or answered nonsense; the next round asks again."""


class BankStatementFeed:
    """Implements server.app.bank_statements.StatementFeed over the gateway's HTTP API."""

    def __init__(
        self, api_base: str, api_token: str, *, name: str = "bank", accepted: Iterable[str] = SUPPORTED_MESSAGES,
        http: httpx.AsyncClient | None = None,
    ) -> None:  # fmt: skip
        self._base = api_base.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_token.strip()}"}
        self.name = name
        self._accepted = tuple(accepted)
        self._http = http or httpx.AsyncClient(timeout=_TIMEOUT_SECONDS)

    def read(self, data: bytes) -> BankDocument:
        """Validate and read one document in a version this bank is configured to send."""
        return parse_camt(data, self._accepted)

    async def documents_after(self, kind: ReportKind, after: int) -> list[tuple[int, bytes]]:
        """(number, bytes) of every ``kind`` document the gateway numbered above ``after``, in order."""
        listing = await self._get(f"{self._base}/v1/{_PATHS[kind]}", {"after": str(after)})
        try:
            payload: Any = json.loads(listing)
            numbers = sorted(int(item["seq"]) for item in payload["documents"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StatementFeedError(f"{self.name}: unreadable {kind} listing") from exc
        return [(seq, await self._get(f"{self._base}/v1/{_PATHS[kind]}/{seq}", None)) for seq in numbers if seq > after]

    async def _get(self, url: str, params: dict[str, str] | None) -> bytes:
        try:
            response = await self._http.get(url, params=params, headers=self._headers, timeout=_TIMEOUT_SECONDS)
        except httpx.TransportError as exc:
            raise StatementFeedError(f"{self.name}: cannot reach the bank gateway ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise StatementFeedError(f"{self.name}: the bank gateway answered HTTP {response.status_code}")
        return response.content

    async def aclose(self) -> None:
        await self._http.aclose()
