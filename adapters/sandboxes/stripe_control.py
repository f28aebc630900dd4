"""The offline Stripe sandbox's control API, ``/_sandbox/…``: its test methods over HTTP.

Why over HTTP too: a test can drive a sandbox that runs in another process (``payments sandbox``),
as ``StripeSandbox``'s Python methods drive one in the same process. Control requests need no API
key and are never faulted nor logged. Bad input is a 400 with a plain message, not Stripe's shape:
this is the sandbox speaking, not Stripe.
"""

from __future__ import annotations

import json
import re

from adapters.sandboxes.faults import FaultKind
from adapters.sandboxes.json_types import JsonDict, JsonValue
from adapters.sandboxes.stripe_api import ApiRequest, Reply, StripeState
from adapters.sandboxes.stripe_faults import make_fault
from adapters.sandboxes.stripe_webhooks import WebhookEndpoint, generate_secret
from adapters.sandboxes.stripe_wire import json_bytes

CONTROL_PREFIX = "/_sandbox/"


class Control:
    """``/_sandbox/…``: the HTTP twin of ``StripeSandbox``'s test methods, for other processes."""

    def __init__(self, state: StripeState) -> None:
        self._state = state

    def handle(self, request: ApiRequest) -> Reply:
        """Answer a control request; bad input is a 400 with a plain message."""
        try:
            status, body = self._route(request)
        except ValueError as error:
            status, body = 400, {"error": {"message": str(error)}}
        return Reply(status, json_bytes(body), [("Content-Type", "application/json")])

    def _route(self, request: ApiRequest) -> tuple[int, JsonDict]:
        state = self._state
        action = (request.method, request.path.removeprefix(CONTROL_PREFIX).rstrip("/"))
        status_match = re.fullmatch(r"objects/([^/]+)/status", action[1])
        if action == ("GET", "health"):
            return 200, {"ok": True}
        if action == ("GET", "counters"):
            return 200, state.counters_json()
        if action == ("GET", "requests"):
            records: list[JsonValue] = [r.to_json() for r in state.requests.entries()]
            return 200, {"requests": records}
        if action == ("GET", "webhooks"):
            deliveries: list[JsonValue] = [d.to_json() for d in state.webhooks.deliveries()]
            return 200, {"deliveries": deliveries}
        if action == ("POST", "webhook"):
            return 200, self._set_webhook(_json_object(request.body))
        if action == ("POST", "reset"):
            state.reset()
        elif action == ("POST", "latency"):
            seconds = _json_number(_json_object(request.body), "seconds")
            if seconds is None:
                raise ValueError("seconds is required")
            state.latency.set(seconds)
        elif action == ("POST", "idempotency/forget"):
            state.idempotency.forget_completed()
        elif action == ("POST", "api_keys/revoke"):
            state.revoke(_json_str(_json_object(request.body), "key") or "")
        elif action == ("GET", "faults"):
            return 200, state.faults.describe()
        elif action == ("DELETE", "faults"):
            state.faults.clear()
        elif action == ("POST", "faults"):
            self._set_faults(_json_object(request.body))
        elif action == ("POST", "webhooks/duplicate_next"):
            state.webhooks.duplicate_next()
        elif action == ("POST", "webhooks/hold_next"):
            state.webhooks.hold_next()
        elif action == ("POST", "webhooks/rates"):
            rates = _json_object(request.body)
            duplicate_rate = _json_number(rates, "duplicate_rate") or 0.0
            reorder_rate = _json_number(rates, "reorder_rate") or 0.0
            state.webhooks.set_rates(duplicate_rate, reorder_rate, _json_int(rates, "seed"))
        elif action == ("POST", "balance"):
            settings = _json_object(request.body)
            currency = _json_str(settings, "currency") or ""
            state.ledger.set_available_balance(currency, _json_int(settings, "amount"))
        elif request.method == "POST" and status_match is not None:
            new_status = _json_str(_json_object(request.body), "status") or ""
            state.ledger.set_status(status_match.group(1), new_status)
        else:
            return 404, {"error": {"message": f"no control endpoint {request.method} {request.path}"}}
        return 200, {"ok": True}

    def _set_webhook(self, settings: dict[str, object]) -> JsonDict:
        """Register the endpoint (a null url: none); without a secret one is made, and answered."""
        url = _json_str(settings, "url")
        if url is None:
            self._state.webhooks.configure(None)
            return {"url": None, "secret": None}
        endpoint = WebhookEndpoint(url, _json_str(settings, "secret") or generate_secret())
        self._state.webhooks.configure(endpoint)
        return {"url": endpoint.url, "secret": endpoint.secret}

    def _set_faults(self, settings: dict[str, object]) -> None:
        if settings.get("clear") is True:
            self._state.faults.clear()
            return
        retry_after = _json_int(settings, "retry_after")
        stall_seconds = _json_number(settings, "stall_seconds")
        if "rate" in settings:
            kinds = settings.get("kinds", [])
            if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
                raise ValueError("kinds must be a list of fault kinds")
            template = make_fault(FaultKind.HTTP_500, retry_after=retry_after, stall_seconds=stall_seconds)
            fault_kinds = [FaultKind(str(k)) for k in kinds]
            rate = _json_number(settings, "rate") or 0.0
            self._state.faults.set_rate(rate, fault_kinds, _json_int(settings, "seed"), template)
            return
        fault = make_fault(_json_str(settings, "kind") or "", retry_after=retry_after, stall_seconds=stall_seconds)
        method, prefix = _json_str(settings, "method"), _json_str(settings, "path_prefix")
        count = _json_int(settings, "count")
        self._state.faults.inject(fault, 1 if count is None else count, method=method, path_prefix=prefix)


def _json_object(text: str) -> dict[str, object]:
    try:
        value: object = json.loads(text or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(f"body is not JSON: {error}") from error
    if not isinstance(value, dict):
        raise ValueError("body must be a JSON object")
    return {str(k): v for k, v in value.items()}


def _json_str(values: dict[str, object], name: str) -> str | None:
    value = values.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


def _json_int(values: dict[str, object], name: str) -> int | None:
    value = values.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name} must be an integer")
    return value


def _json_number(values: dict[str, object], name: str) -> float | None:
    """Durations and rates (never money) may be fractional."""
    value = values.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)
