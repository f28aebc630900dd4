"""The 3-D Secure page of the offline Stripe sandbox: where ``next_action`` sends the customer.

Stripe shows the issuer's challenge on hooks.stripe.com; the sandbox serves its own at
``<sandbox url>/_sandbox/3ds/<source>``: a small page with two plain links, so that a test follows
them as a browser would. ``…/complete`` authenticates (the intent succeeds, or awaits capture);
``…/fail`` does not (the intent needs a new payment method, ``payment_intent_authentication_failure``).
Either answers with a 302 to the ``return_url`` with ``payment_intent``,
``payment_intent_client_secret`` and ``redirect_status`` added, as Stripe redirects; without a
return_url (Stripe.js flows) a short page says how it ended. Only the first answer counts. No API
key is needed and faults never apply: this is the customer's browser talking, not the API.
"""

from __future__ import annotations

import html

from adapters.sandboxes.stripe_api import ApiRequest, Reply
from adapters.sandboxes.stripe_intents import CHALLENGE_PATH, Authentication
from adapters.sandboxes.stripe_objects import StripeLedger

_ANSWERS = {"complete": True, "fail": False}
_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>3D Secure 2 Test Page</title></head>
<body>
<h1>3D Secure 2 Test Page</h1>
<p>This is the Stripe sandbox's authentication page for {source}.</p>
<p><a id="complete" href="{base}/complete">Complete authentication</a></p>
<p><a id="fail" href="{base}/fail">Fail authentication</a></p>
</body>
</html>
"""
_DONE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Authentication {status}</title></head>
<body><p>Authentication {status}. You may close this window.</p></body>
</html>
"""


class ChallengePage:
    """``GET /_sandbox/3ds/<source>[/complete|/fail]``: the page, and the customer's answer."""

    def __init__(self, ledger: StripeLedger) -> None:
        self._ledger = ledger

    def handle(self, request: ApiRequest) -> Reply:
        source, _, answer = request.path.removeprefix(CHALLENGE_PATH).partition("/")
        if request.method != "GET":
            return _html(405, "<p>Method not allowed.</p>", [("Allow", "GET")])
        if not answer and self._ledger.knows_challenge(source):
            base = html.escape(CHALLENGE_PATH + source)
            return _html(200, _PAGE.format(source=html.escape(source), base=base))
        if answer not in _ANSWERS:
            return _html(404, "<p>No such authentication page.</p>")
        try:
            outcome = self._ledger.authenticate(source, _ANSWERS[answer])
        except KeyError:
            return _html(404, "<p>No such authentication page.</p>")
        return _after(outcome)


def _after(outcome: Authentication) -> Reply:
    location = outcome.redirect_url
    if location is None:
        return _html(200, _DONE.format(status=html.escape(outcome.redirect_status)))
    return Reply(302, b"", [("Location", location), ("Cache-Control", "no-store")])


def _html(status: int, text: str, headers: list[tuple[str, str]] | None = None) -> Reply:
    extra = headers or []
    return Reply(status, text.encode(), [("Content-Type", "text/html; charset=utf-8"), *extra])
