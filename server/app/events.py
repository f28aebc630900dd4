"""The event feed: every transition of a client's payments, refunds and payouts, from the outbox.

The outbox row is written by PostgreSQL in the transaction of the transition itself
(storage/migrations/0010_outbox.sql), so nothing here can lose or invent one. This module reads it
back for ListEvents and WatchEvents. A position in the feed is an `EventCursor` (the writing
transaction and the row's order in it); the store returns only rows no open transaction can still
precede (docs/outbox.md), so reading "after the last cursor" never skips an event committed late.
Delivery is at least once: a consumer that resumes from the last id it handled sees nothing twice,
one that resumes from an older id sees the events in between again.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from server.app import page_tokens
from server.domain.errors import FieldViolation, InvalidRequest

_CURSOR = re.compile(r"(0|[1-9][0-9]{0,18})-(0|[1-9][0-9]{0,18})")
_TYPE = re.compile(r"(payment|refund|payout)\.[a-z_]{1,40}")
MAX_TYPES = 32


@dataclass(frozen=True, slots=True, order=True)
class EventCursor:
    """A position in a client's feed: after the event of transaction `txid`, row `seq`."""

    txid: int
    seq: int

    def encode(self) -> str:
        return f"{self.txid}-{self.seq}"

    @staticmethod
    def decode(text: str) -> EventCursor:
        """The cursor of an event id; "0" is before everything. ValueError for anything else."""
        if text == "0":
            return BEFORE_EVERYTHING
        match = _CURSOR.fullmatch(text)
        if match is None:
            raise ValueError("not an event id")
        txid, seq = int(match.group(1)), int(match.group(2))
        if txid >= 2**63 or seq >= 2**63:
            raise ValueError("not an event id")
        return EventCursor(txid, seq)


BEFORE_EVERYTHING = EventCursor(0, 0)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An outbox row: the resource as of the transition, in protobuf's JSON form."""

    cursor: EventCursor
    event_id: uuid.UUID  # outbox_events.id, Debezium's event id
    type: str
    aggregatetype: str  # "payment" | "refund" | "payout"
    aggregateid: str  # the resource's public id
    payload: dict[str, Any]
    traceparent: str | None
    created_at: datetime


class EventSource(Protocol):
    async def read(
        self, client_id: str, after: EventCursor, *, types: frozenset[str] = frozenset(),
        resource_id: str | None = None, limit: int = 100,
    ) -> list[StoredEvent]:  # fmt: skip
        """Visible events of the client after the cursor, in feed order."""
        ...

    async def head(self, client_id: str) -> EventCursor:
        """The position after every event visible now."""
        ...


@dataclass(frozen=True, slots=True)
class FeedPolicy:
    poll_seconds: float = 0.2  # how often an idle watch looks for new events
    heartbeat_seconds: float = 10.0  # how long an idle watch stays silent at most
    batch: int = 200  # events read per round; the next round waits until these are sent (back-pressure)
    default_page: int = 100
    max_page: int = 500


@dataclass(frozen=True, slots=True)
class Heartbeat:
    at: datetime


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[StoredEvent]
    next_page_token: str


def event_types(values: list[str], field: str = "types") -> frozenset[str]:
    """The types filter, checked: known resource prefixes, lower-case status names."""
    if len(values) > MAX_TYPES:
        raise InvalidRequest([FieldViolation(field, f"at most {MAX_TYPES} types", "TOO_MANY_TYPES")])
    for value in values:
        if _TYPE.fullmatch(value) is None:
            raise InvalidRequest([FieldViolation(field, "must be like payment.succeeded", "INVALID_EVENT_TYPE")])
    return frozenset(values)


def event_cursor(text: str, field: str) -> EventCursor:
    try:
        return EventCursor.decode(text)
    except ValueError:
        raise InvalidRequest([FieldViolation(field, "is not an event id of this feed", "INVALID_EVENT_ID")]) from None


class EventFeed:
    """ListEvents and WatchEvents for one client at a time (each client sees only its own events)."""

    def __init__(self, source: EventSource, policy: FeedPolicy, now: Callable[[], datetime]) -> None:
        self._source = source
        self._policy = policy
        self._now = now

    async def page(
        self, client_id: str, *, page_size: int, page_token: str, types: frozenset[str], resource_id: str | None
    ) -> EventPage:
        digest = page_tokens.filter_digest(sorted(types), resource_id)
        position = page_tokens.decode_position(page_token, digest)
        after = event_cursor(position, "page_token") if position is not None else BEFORE_EVERYTHING
        size = min(page_size or self._policy.default_page, self._policy.max_page)
        events = await self._source.read(client_id, after, types=types, resource_id=resource_id, limit=size + 1)
        more = len(events) > size
        events = events[:size]
        token = page_tokens.encode_position(events[-1].cursor.encode(), digest) if more else ""
        return EventPage(events, token)

    async def watch(
        self, client_id: str, after_event_id: str, types: frozenset[str]
    ) -> AsyncIterator[StoredEvent | Heartbeat]:
        """Events after `after_event_id` (empty: from now; "0": from the oldest retained), then new ones
        as they become visible, with a heartbeat when idle. The caller's send awaits flow control
        between events, so at most one batch is held in memory per watch, however slow the consumer."""
        loop = asyncio.get_running_loop()
        if after_event_id:
            after = event_cursor(after_event_id, "after_event_id")
        else:
            after = await self._source.head(client_id)
        quiet_since = loop.time()
        while True:
            events = await self._source.read(client_id, after, types=types, limit=self._policy.batch)
            for event in events:
                yield event
                after = event.cursor
            if events:
                quiet_since = loop.time()
                if len(events) == self._policy.batch:
                    continue
            elif loop.time() - quiet_since >= self._policy.heartbeat_seconds:
                yield Heartbeat(self._now())
                quiet_since = loop.time()
            await asyncio.sleep(self._policy.poll_seconds)
