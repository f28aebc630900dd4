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

    @property
    def actor(self) -> str:
        return f"client:{self.client_id}"
