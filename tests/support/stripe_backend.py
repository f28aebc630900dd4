"""Where the Stripe tests send their requests: the built-in sandbox, or Stripe's own test mode.

`make test-stripe-live` sets PAYMENTS_STRIPE_LIVE=1 with PAYMENTS_STRIPE_API_KEY=sk_test_… (and
optionally PAYMENTS_STRIPE_API_BASE for any Stripe-compatible server); tests that need fault injection
run only against the sandbox.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from adapters.sandboxes.stripe_sandbox import StripeSandbox

LIVE = os.environ.get("PAYMENTS_STRIPE_LIVE") == "1"


@dataclass
class StripeBackend:
    api_key: str
    api_base: str | None
    sandbox: StripeSandbox | None

    def require_sandbox(self) -> StripeSandbox:
        if self.sandbox is None:
            pytest.skip("needs the sandbox's fault injection and counters")
        return self.sandbox


def live_credentials() -> tuple[str, str | None]:
    key = os.environ.get("PAYMENTS_STRIPE_API_KEY", "")
    if not key.startswith("sk_test_"):
        pytest.skip("PAYMENTS_STRIPE_LIVE=1 needs PAYMENTS_STRIPE_API_KEY=sk_test_… (test mode only)")
    return key, os.environ.get("PAYMENTS_STRIPE_API_BASE") or None
