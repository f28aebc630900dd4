"""Prometheus scraping of `payments serve`, and the SRE artefacts that rely on it (deploy/observability/).

One server process, as `payments serve` builds it, with PAYMENTS_METRICS_LISTEN and PAYMENTS_HEALTH_LISTEN
on free loopback ports and a Stripe sandbox in this process. The fixture drives every event an alert or a
panel is about (a charge, a replay, a reused key, a PSP 500 and its retry, an uncaptured authorization,
a forged webhook, a revoked API key) and then scrapes /metrics over HTTP. The alert rules and the
dashboard are checked against that scrape, not against a list in a test: a renamed instrument, a changed
unit or a label typo in a rule fails here.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from adapters.sandboxes.stripe_sandbox import StripeSandbox
from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api.client import payment_stub
from tests.support.chaos import ServeProcess, client_channel, wait_for
from tests.support.postgres import PostgresForTests
from tests.support.processes import REPO, free_port
from tests.support.requests import charge
from tests.support.webhooks import event, sign

API_KEY = "sk_test_metrics"
WEBHOOK_SECRET = "whsec_metrics_0123456789"
OBSERVABILITY = REPO / "deploy" / "observability"


@dataclass
class Scrape:
    """The samples of one /metrics answer, by sample name (payments_rpc_duration_milliseconds_bucket, …)."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Scrape:
        scrape = cls()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                scrape.samples.setdefault(sample.name, []).append(sample)
        return scrape

    def value(self, name: str, **labels: str) -> float:
        """The sum over the samples of `name` whose labels include `labels` (0 if there is none)."""
        return sum(s.value for s in self.samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))

    def service_labels(self) -> set[str]:
        return {label for name, samples in self.samples.items() if name.startswith("payments_")
                for sample in samples for label in sample.labels}  # fmt: skip


@dataclass
class Served:
    server: ServeProcess
    metrics_url: str
    health_target: str
    scrape: Scrape


def _get(url: str) -> Scrape:
    answer = httpx.get(url, timeout=5)
    assert answer.status_code == 200, answer.text
    return Scrape.parse(answer.text)


# Every event an alert or a panel is about, and the sample that shows it.
EXPECTED: tuple[tuple[str, dict[str, str]], ...] = (
    ("payments_rpc_duration_milliseconds_count", {"rpc_method": "Charge", "rpc_grpc_status_code": "OK"}),
    ("payments_rpc_duration_milliseconds_bucket", {"rpc_method": "Charge", "rpc_grpc_status_code": "UNAVAILABLE"}),
    ("payments_psp_calls_total", {"psp": "stripe", "psp_outcome": "succeeded"}),
    ("payments_psp_call_duration_milliseconds_bucket", {"psp": "stripe"}),
    ("payments_psp_retries_total", {"psp": "stripe"}),
    ("payments_idempotency_replays_total", {}),
    ("payments_idempotency_conflicts_total", {"reason": "IDEMPOTENCY_KEY_REUSED"}),
    ("payments_psp_credentials_refused_total", {"psp": "stripe"}),
    ("payments_webhooks_refused_total", {"psp": "stripe", "reason": "signature"}),
    ("payments_captures_expiring_total", {"psp": "stripe"}),
)


@pytest.fixture(scope="module")
def served(postgres: PostgresForTests, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    metrics_port, health_port, webhook_port = free_port(), free_port(), free_port()
    with StripeSandbox() as sandbox:
        server = ServeProcess(
            postgres.new_database(), tmp_path_factory.mktemp("metrics") / "serve.log",
            PAYMENTS_STRIPE_API_KEY=API_KEY, PAYMENTS_STRIPE_API_BASE=sandbox.url,
            PAYMENTS_STRIPE_WEBHOOK_SECRETS=WEBHOOK_SECRET, PAYMENTS_WEBHOOK_LISTEN=f"127.0.0.1:{webhook_port}",
            PAYMENTS_METRICS_LISTEN=f"127.0.0.1:{metrics_port}", PAYMENTS_HEALTH_LISTEN=f"127.0.0.1:{health_port}",
            # Stripe holds an authorization 7 days: warning 10 days ahead raises CAPTURE_EXPIRING at the first poll.
            PAYMENTS_CAPTURE_WARNING_SECONDS="864000",
        )  # fmt: skip
        server.start()
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        try:
            with client_channel(server.target) as channel:
                stub = payment_stub(channel)
                assert stub.Charge(charge("m-ok"), timeout=30).payment.status == res.PAYMENT_STATUS_SUCCEEDED
                stub.Charge(charge("m-ok"), timeout=30)  # replayed
                with pytest.raises(grpc.RpcError) as reused:
                    stub.Charge(charge("m-ok", amount=999), timeout=30)
                assert reused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                sandbox.inject("http_500", 1, method="POST", path_prefix="/v1/payment_intents")
                assert stub.Charge(charge("m-retried"), timeout=30).payment.status == res.PAYMENT_STATUS_SUCCEEDED
                manual = stub.Charge(charge("m-manual", manual=True), timeout=30).payment
                assert manual.status == res.PAYMENT_STATUS_REQUIRES_CAPTURE
                forged = event("evt_forged", "payment_intent.succeeded", manual.psp_reference)
                answer = httpx.post(
                    f"http://127.0.0.1:{webhook_port}/v1/webhooks/stripe", content=forged, timeout=10,
                    headers={"Content-Type": "application/json", "Stripe-Signature": sign(forged, "whsec_forger")},
                )  # fmt: skip
                assert answer.status_code == 400
                # The worker's first poll of the authorization raises CAPTURE_EXPIRING; then the key is revoked.
                assert wait_for(lambda: _get(metrics_url).value("payments_captures_expiring_total") > 0, 20)
                sandbox.revoke_api_key(API_KEY)
                with pytest.raises(grpc.RpcError) as refused:
                    stub.Charge(charge("m-revoked"), timeout=30)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

            def complete() -> bool:
                scrape = _get(metrics_url)
                return "payments_reconciliation_open" in scrape.samples and all(
                    scrape.value(name, **labels) > 0 for name, labels in EXPECTED
                )

            wait_for(complete, 20, interval=0.2)
            yield Served(server, metrics_url, f"127.0.0.1:{health_port}", _get(metrics_url))
        finally:
            server.close()


def test_the_service_metrics_are_scraped_with_their_prometheus_names(served: Served) -> None:
    scrape = served.scrape
    missing = [(name, labels) for name, labels in EXPECTED if scrape.value(name, **labels) <= 0]
    assert not missing, (
        f"not in /metrics: {missing}; service metrics: {sorted(n for n in scrape.samples if 'payments' in n)}"
    )
    assert scrape.value("payments_webhooks_refused_total", reason="signature") == 1
    assert scrape.value("payments_idempotency_replays_total", operation="charge") >= 1
    # The gauges the worker measures in PostgreSQL: nothing needs reconciliation, and the revoked key's
    # charge is an execution without a final answer.
    assert scrape.value("payments_reconciliation_open", resource="payment") == 0
    assert {s.labels["resource"] for s in scrape.samples["payments_reconciliation_open"]} == {
        "payment", "refund", "payout"
    }  # fmt: skip
    assert "payments_recovery_backlog_age_seconds" in scrape.samples
    # A histogram in milliseconds, with buckets: what histogram_quantile needs.
    buckets = [s for s in scrape.samples["payments_rpc_duration_milliseconds_bucket"] if s.labels["le"] == "+Inf"]
    assert buckets
    assert sum(s.value for s in buckets) == scrape.value("payments_rpc_duration_milliseconds_count")


def test_the_health_listener_answers_health_and_nothing_else_in_plaintext(served: Served) -> None:
    with grpc.insecure_channel(served.health_target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        service = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="payments.v1.PaymentService"), timeout=5
        )
        assert service.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as denied:
            payment_stub(channel).GetPayment(svc.GetPaymentRequest(id="pay_x"), timeout=5)
        assert denied.value.code() == grpc.StatusCode.UNIMPLEMENTED


# ----------------------------------------------------------------------------- PromQL in the artefacts

# Words of PromQL that are not metric names: aggregation modifiers, set and comparison keywords, literals.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
             "unless", "inf", "nan", "atan2"}  # fmt: skip
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_MATCHERS = re.compile(r"\{([^}]*)\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENTIFIER = re.compile(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?")


@dataclass(frozen=True)
class PromQL:
    metrics: frozenset[str]
    labels: frozenset[str]  # every label name used: in matchers and in grouping clauses
    grouped: frozenset[str]  # those of by (...) / on (...) clauses


def parse_promql(expr: str) -> PromQL:
    """The metric names and label names an expression uses.

    Strings are blanked first (label values such as "WatchEvents" are not names), then label matchers,
    grouping clauses and range selectors are taken out (their label names kept); what is left are
    identifiers that are either functions and aggregations (followed by a parenthesis) or metric names.
    Grafana's `$__rate_interval` lives in a range selector; `$var` in a matcher value, a string.
    """
    labels: set[str] = set()
    grouped: set[str] = set()
    text = _STRING.sub('""', expr)
    for matchers in _MATCHERS.findall(text):
        labels |= {m.group(1) for m in re.finditer(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers)}
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    for grouping in _GROUPING.finditer(text):
        grouped |= {name.strip() for name in grouping.group(2).split(",") if name.strip()}
    labels |= grouped
    text = _GROUPING.sub(" ", text)
    metrics = {
        m.group(1) for m in _IDENTIFIER.finditer(text) if m.group(2) is None and m.group(1).lower() not in _KEYWORDS
    }
    return PromQL(frozenset(metrics), frozenset(labels), frozenset(grouped))


def test_the_promql_reader_finds_metrics_and_labels_and_skips_functions() -> None:
    read = parse_promql(
        'histogram_quantile(0.99, sum by (le, rpc_method) (rate(a_bucket{rpc_method!="Watch by (x)"}[5m])))'
        " / on (psp) group_left sum without (z) (b_total offset 1h) > 2 and max(c) or vector(0)"
    )
    assert read.metrics == {"a_bucket", "b_total", "c"}
    assert read.labels == {"le", "rpc_method", "psp", "z"}
    assert read.grouped == {"le", "rpc_method", "psp", "z"}
    assert parse_promql('max(x{resource="a"}) > 0').grouped == set()


def _rule_expressions() -> dict[str, str]:
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yaml").read_text())
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def _panel_expressions() -> dict[str, str]:
    dashboard = json.loads((OBSERVABILITY / "dashboard.json").read_text())

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))  # rows hold their panels

    return {f"{panel['title']} {target['refId']}": target["expr"]
            for panel in panels(dashboard["panels"]) for target in panel.get("targets", [])}  # fmt: skip


def test_the_rules_cover_what_an_sre_must_be_told() -> None:
    used = {name: parse_promql(expr).metrics for name, expr in _rule_expressions().items()}
    for metric in ("payments_reconciliation_open", "payments_psp_credentials_refused_total",
                   "payments_psp_calls_total", "payments_recovery_backlog_age_seconds",
                   "payments_rpc_duration_milliseconds_bucket", "payments_webhooks_refused_total"):  # fmt: skip
        assert any(metric in metrics for metrics in used.values()), f"no alert rule uses {metric}"
    panels = {name: parse_promql(expr).metrics for name, expr in _panel_expressions().items()}
    assert any("payments_rpc_duration_milliseconds_count" in metrics for metrics in panels.values())
    for metric in set().union(*used.values()):
        assert any(metric in metrics for metrics in panels.values()), f"no dashboard panel shows {metric}"


@pytest.mark.parametrize("source", ["alerts.yaml", "dashboard.json"])
def test_the_rules_and_the_dashboard_use_only_exported_metrics_and_labels(served: Served, source: str) -> None:
    expressions = _rule_expressions() if source == "alerts.yaml" else _panel_expressions()
    assert len(expressions) >= 6
    known_labels = served.scrape.service_labels() | {"le"}
    for name, expr in expressions.items():
        read = parse_promql(expr)
        assert read.metrics, f"{source} {name}: no metric in {expr!r}"
        unknown = read.metrics - served.scrape.samples.keys()
        assert not unknown, f"{source} {name} uses {sorted(unknown)}, which payments serve does not export"
        assert not read.labels - known_labels, f"{source} {name} uses labels {sorted(read.labels - known_labels)}"


def test_alert_annotations_name_only_labels_their_expression_keeps() -> None:
    """`{{ $labels.x }}` in a summary is empty unless the expression's result carries x."""
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            kept = parse_promql(rule["expr"]).grouped
            for text in rule["annotations"].values():
                for label in re.findall(r"\$labels\.(\w+)", text):
                    assert label in kept, f"{rule['alert']} shows {label}, which its expression drops"


def _serve(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PAYMENTS_DATABASE_URL": database_url, "PAYMENTS_LISTEN": f"127.0.0.1:{free_port()}",
                   **env}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", *args], cwd=REPO, env=environment,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_metrics_address_in_use_is_one_line_and_exit_code_2(database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = _serve(database_url, PAYMENTS_METRICS_LISTEN=address)
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on {address} (PAYMENTS_METRICS_LISTEN)" in result.stderr
    assert "Traceback" not in result.stderr


def test_workers_refuse_a_metrics_address_one_scrape_could_not_cover() -> None:
    unreachable = "postgresql://nobody@127.0.0.1:1/none"  # refused before any database is opened
    result = _serve(unreachable, "--workers", "2", PAYMENTS_METRICS_LISTEN=f"127.0.0.1:{free_port()}")
    assert result.returncode == 2, result.stderr
    assert "PAYMENTS_METRICS_LISTEN" in result.stderr
