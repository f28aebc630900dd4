"""The HTTP edge of Stripe webhooks in: `POST /v1/webhooks/stripe` (docs/contract.md, Webhooks).

Verify, parse, hand off: the signature is checked with the official SDK (`stripe.Webhook.construct_event`,
300 s tolerance) against each configured signing secret in turn, so a secret can be rotated; a verified
event goes to the WebhookIntake. Answers: 200 for every verified event (also duplicates and types we
ignore), 400 for anything else a caller can send (no or bad signature, a stale timestamp, not JSON,
not an event), 413 past 1 MiB, 503 when the database is away (Stripe delivers again later). Nothing a
caller sends yields a 500. Logged: the event's id and type, never the payload, the signature or a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import stripe
from aiohttp import web

from server.app import telemetry
from server.app.webhook_events import MalformedEvent, parse_event
from server.app.webhook_intake import WebhookIntake
from server.domain.errors import StorageUnavailable

log = logging.getLogger(__name__)

STRIPE_WEBHOOK_PATH = "/v1/webhooks/stripe"
MAX_BODY_BYTES = 1 << 20  # Stripe's events are a few KiB; a larger body is refused (413) before it is read
SIGNATURE_TOLERANCE_SECONDS = 300  # Stripe's own default: an older signature is a replay


def verified_event(payload: bytes, signature: str | None, secrets: Sequence[str]) -> Mapping[str, Any] | None:
    """The event as JSON if one of `secrets` signed `payload` within the tolerance, else None.

    Raises ValueError when the payload is not UTF-8, or a signed payload is not a JSON object."""
    if signature is not None and not signature.isascii():
        return None  # the SDK's constant-time comparison raises TypeError on non-ASCII text
    for secret in secrets:
        try:
            event = stripe.Webhook.construct_event(payload, signature, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS)
        except stripe.SignatureVerificationError:
            continue  # its message and attributes hold the header and the payload: never logged
        except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as exc:
            # Not UTF-8, not JSON, nested too deep, or JSON but not an object (the SDK then fails to build it).
            raise ValueError(f"not a JSON object: {type(exc).__name__}") from None
        body = event.to_dict()
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        return body
    return None


class StripeWebhookEndpoint:
    def __init__(self, secrets: Sequence[str], intake: WebhookIntake) -> None:
        if not secrets:
            raise ValueError("a webhook endpoint needs at least one signing secret")
        self._secrets = tuple(secrets)
        self._intake = intake

    async def receive(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return _refused(400, "expected Content-Type application/json", "content_type")
        payload = await request.read()  # aiohttp answers 413 past the application's client_max_size
        try:
            body = verified_event(payload, request.headers.get("Stripe-Signature"), self._secrets)
        except ValueError:
            return _refused(400, "the event is not a JSON object", "malformed")
        if body is None:
            # A rise means a rotated secret missing here, or someone posting forged events: alert on it.
            log.info("stripe webhook refused: no valid signature of a configured secret within the tolerance")
            return _refused(400, "no valid Stripe-Signature", "signature")
        try:
            event = parse_event(body)
        except MalformedEvent as exc:
            return _refused(400, str(exc), "malformed")
        try:
            outcome = await self._intake.accept(event)
        except StorageUnavailable:
            log.warning("stripe webhook event not recorded: the database is unavailable",
                        extra={"event_id": event.id, "event_type": event.type})  # fmt: skip
            return web.json_response({"error": "unavailable, deliver again later"}, status=503)
        return web.json_response({"received": str(outcome)})


def _refused(status: int, reason: str, metric_reason: str) -> web.Response:
    telemetry.webhooks_refused.add(1, {"psp": "stripe", "reason": metric_reason})
    return web.json_response({"error": reason}, status=status)


def webhook_application(endpoint: StripeWebhookEndpoint) -> web.Application:
    """The aiohttp application of the webhook listener: one route, bodies capped at MAX_BODY_BYTES."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post(STRIPE_WEBHOOK_PATH, endpoint.receive)
    return app
