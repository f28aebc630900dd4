"""Who is calling and until when: what every use case needs to know about the request."""

from __future__ import annotations

from dataclasses import dataclass

from server.app.deadline import Deadline


@dataclass(frozen=True, slots=True)
class CallContext:
    client_id: str
    deadline: Deadline
    # W3C traceparent of the request, stored with the key so later work can link to this trace.
    trace_context: str | None = None
    # Who acts, for the event log: the calling client, or a background worker acting for it.
    acting: str | None = None

    @property
    def actor(self) -> str:
        return self.acting or f"client:{self.client_id}"
