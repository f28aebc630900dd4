"""Tracing across calls, proven on the server `payments serve` builds (no hand-built wiring): the caller's
trace continues through the server into both PSPs' HTTP requests, whose client spans sit under
`psp.attempt`.

The server prints its spans (OTEL_TRACES_EXPORTER=console) into its log; both sandboxes live in this
test process and record the headers they received.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.sandboxes.bank_sandbox import BankSandbox
from adapters.sandboxes.stripe_sandbox import StripeSandbox
from payments.v1 import resources_pb2 as res
from server.api.client import payment_stub
from tests.support.chaos import ServeProcess, client_channel, wait_for
from tests.support.requests import charge, sepa_payout

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


def printed_spans(log: Path) -> list[dict[str, Any]]:
    """The spans the console exporter printed (pretty JSON objects), among the JSON log lines."""
    text = log.read_text(errors="replace")
    decoder = json.JSONDecoder()
    spans: list[dict[str, Any]] = []
    position = text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except ValueError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict) and "context" in value and "name" in value:
            spans.append(value)
        position = text.find("{", end)
    return spans


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[tuple[ServeProcess, StripeSandbox, BankSandbox]]:
    with StripeSandbox() as stripe_sandbox, BankSandbox() as bank_sandbox:
        env = {
            "PAYMENTS_STRIPE_API_KEY": "sk_test_traced", "PAYMENTS_STRIPE_API_BASE": stripe_sandbox.url,
            "PAYMENTS_BANK_API_BASE": bank_sandbox.url, "PAYMENTS_BANK_API_TOKEN": "sandbox-token",
            "OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none",
        }  # fmt: skip
        server = ServeProcess(database_url, tmp_path / "serve.log", env=env)
        server.start()
        try:
            yield server, stripe_sandbox, bank_sandbox
        finally:
            server.close()


def test_the_callers_trace_reaches_both_psps_with_an_http_client_span_under_the_attempt(
    served: tuple[ServeProcess, StripeSandbox, BankSandbox],
) -> None:
    server, stripe_sandbox, bank_sandbox = served
    metadata = (("traceparent", CALLER_TRACEPARENT),)
    with client_channel(server.target) as channel:
        stub = payment_stub(channel)
        paid = stub.Charge(charge("traced-served"), metadata=metadata, timeout=30).payment
        assert paid.status == res.PAYMENT_STATUS_SUCCEEDED
        payout = stub.Payout(sepa_payout("traced-payout"), metadata=metadata, timeout=30).payout
        assert payout.status in (res.PAYOUT_STATUS_PROCESSING, res.PAYOUT_STATUS_PAID)

    stripe_posts = [r for r in stripe_sandbox.requests() if r.method == "POST" and r.path == "/v1/payment_intents"]
    bank_posts = [r for r in bank_sandbox.requests() if r.method == "POST" and r.path == "/v1/payment-files"]
    assert stripe_posts
    assert bank_posts
    for headers in [stripe_posts[0].headers, bank_posts[0].headers]:
        traceparent = headers.get("traceparent", "")
        assert traceparent.split("-")[1:2] == [CALLER_TRACE], headers

    def http_spans_under_attempts() -> list[dict[str, Any]]:
        spans = printed_spans(server.log_path)
        attempts = {s["context"]["span_id"] for s in spans if s["name"] == "psp.attempt"}
        return [s for s in spans if s.get("kind") == "SpanKind.CLIENT" and s.get("parent_id") in attempts]

    assert wait_for(lambda: len(http_spans_under_attempts()) >= 2, timeout=15, interval=0.2)
    http_spans = http_spans_under_attempts()
    assert {s["context"]["trace_id"] for s in http_spans} == {f"0x{CALLER_TRACE}"}
    assert {s["name"] for s in http_spans} == {"POST"}


def test_with_head_sampling_a_failed_payment_is_still_findable_by_its_trace_id(
    database_url: str, tmp_path: Path
) -> None:
    """OTEL_TRACES_SAMPLER is the standard one; at a ratio of 0 no span of the charge is kept, yet the
    failed payment's log line carries its trace id (and so does every other log line of the call)."""
    with StripeSandbox() as stripe_sandbox:
        env = {
            "PAYMENTS_STRIPE_API_KEY": "sk_test_sampled", "PAYMENTS_STRIPE_API_BASE": stripe_sandbox.url,
            "OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0",
        }  # fmt: skip
        server = ServeProcess(database_url, tmp_path / "serve.log", env=env)
        server.start()
        try:
            with client_channel(server.target) as channel:
                declined = (
                    payment_stub(channel)
                    .Charge(charge("sampled-out", method="pm_card_visa_chargeDeclined"), timeout=30)
                    .payment
                )
            assert declined.status == res.PAYMENT_STATUS_FAILED

            def failure_lines() -> list[dict[str, Any]]:
                lines = server.log_path.read_text(errors="replace").splitlines()
                entries = [json.loads(line) for line in lines if line.startswith('{"time"')]
                return [e for e in entries if e.get("resource_id") == declined.id and "failure_code" in e]

            assert wait_for(lambda: bool(failure_lines()), timeout=10, interval=0.1)
            (line,) = failure_lines()
            assert line["decline_code"] == "generic_decline"
            assert len(line["trace_id"]) == 32
            assert int(line["trace_id"], 16) != 0
            assert not printed_spans(server.log_path), "sampled out: no span of the call, SQL spans included"
            # Unsampled, the trace still crosses into the PSP: same trace id, sampled flag off.
            (post,) = [r for r in stripe_sandbox.requests() if r.method == "POST" and r.path == "/v1/payment_intents"]
            version, trace_id, _parent, flags = post.headers.get("traceparent", "").split("-")
            assert (version, trace_id) == ("00", line["trace_id"])
            assert int(flags, 16) & 1 == 0, "the sampled flag is off"
        finally:
            server.close()
