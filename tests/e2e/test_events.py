"""The event feed through `payments serve`: ListEvents and WatchEvents (docs/outbox.md).

The ground truth is the event log PostgreSQL keeps of every transition (resource_events, written by the
transition trigger): the feed must carry each of those transitions, per resource in the same order,
with nothing missing, across server crashes, and each client only its own.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest

from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api.client import PaymentStub, payment_stub
from server.security.auth import hash_token
from tests.support.chaos import ServeProcess, client_channel, wait_for
from tests.support.requests import charge, error_reason, refund, sepa_payout

TOKENS = {"client-a": "token-a-3f9c2b7e51d04a6b", "client-b": "token-b-8e1d6c0a4f2b9753"}


def bearer(client: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {TOKENS[client]}"),)


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServeProcess]:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({client: hash_token(token) for client, token in TOKENS.items()}))
    served = ServeProcess(database_url, tmp_path / "serve.log", PAYMENTS_PSP="inprocess",
                          PAYMENTS_AUTH_TOKENS_FILE=str(tokens))  # fmt: skip
    served.start()
    yield served
    served.close()


def resource_of(event: res.Event) -> str:
    kind = event.WhichOneof("resource")
    assert kind is not None
    return str(getattr(event, kind).id)


def test_list_events_pages_filters_and_shows_each_client_its_own(server: ServeProcess) -> None:
    with client_channel(server.target) as channel:
        stub = payment_stub(channel)
        paid = stub.Charge(charge("ev-1", amount=1000), metadata=bearer("client-a"), timeout=30).payment
        refunded = stub.Refund(refund("ev-1-r", paid.id, 400), metadata=bearer("client-a"), timeout=30).refund
        other = stub.Charge(charge("ev-1", amount=2000), metadata=bearer("client-b"), timeout=30).payment

        def listing(client: str, **filters: object) -> list[res.Event]:
            events: list[res.Event] = []
            token = ""
            while True:
                request = svc.ListEventsRequest(page_size=2, page_token=token, **filters)  # type: ignore[arg-type]
                page = stub.ListEvents(request, metadata=bearer(client), timeout=30)
                events.extend(page.events)
                token = page.next_page_token
                if not token:
                    return events

        mine = listing("client-a")
        assert [e.type for e in mine] == ["payment.pending", "payment.succeeded", "refund.pending", "refund.succeeded"]
        assert mine[1].payment.status == res.PAYMENT_STATUS_SUCCEEDED
        assert mine[1].payment.id == paid.id
        assert mine[3].refund.amount.amount_minor == 400
        assert resource_of(mine[3]) == refunded.id
        assert [resource_of(e) for e in listing("client-b")] == [other.id, other.id], "only its own"
        assert [e.type for e in listing("client-a", types=["refund.succeeded"])] == ["refund.succeeded"]
        assert {resource_of(e) for e in listing("client-a", resource_id=paid.id)} == {paid.id}
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListEvents(svc.ListEventsRequest(types=["charge.done"]), metadata=bearer("client-a"), timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListEvents(svc.ListEventsRequest(page_token="bm90LWEtdG9rZW4="), metadata=bearer("client-a"),
                            timeout=30)  # fmt: skip
        assert error_reason(caught.value) == "INVALID_PAGE_TOKEN"


@dataclass
class Consumer:
    """A WatchEvents consumer that reconnects with the last id it handled, as a real one would."""

    target: str
    client: str
    seen: list[res.Event] = field(default_factory=list)
    reconnects: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        last = "0"
        while not self.stop.is_set():
            try:
                with client_channel(self.target) as channel:
                    stream = payment_stub(channel).WatchEvents(
                        svc.WatchEventsRequest(after_event_id=last), metadata=bearer(self.client), timeout=120
                    )
                    for message in stream:
                        if message.WhichOneof("kind") == "event":
                            self.seen.append(message.event)
                            last = message.event.id
                        if self.stop.is_set():
                            stream.cancel()  # type: ignore[no-untyped-call] # grpc's stubs leave it untyped
                            return
            except grpc.RpcError:
                self.reconnects += 1
                time.sleep(0.2)


def _with_retries(call: Any, request: Any, client: str) -> Any:
    """The caller's side of exactly-once: the same request and key until it is answered."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return call(request, metadata=bearer(client), timeout=10)
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _transitions(database_url: str, client: str) -> dict[str, list[str]]:
    """resource public id -> its statuses in order, from PostgreSQL's own event log."""

    async def read() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            rows: list[asyncpg.Record] = await conn.fetch(
                "SELECT resource_type, resource_id, to_status FROM resource_events WHERE client_id = $1 ORDER BY id",
                client,
            )
            return rows
        finally:
            await conn.close()

    prefixes = {"payment": "pay_", "refund": "re_", "payout": "po_"}
    statuses: dict[str, list[str]] = defaultdict(list)
    for row in asyncio.run(read()):
        statuses[prefixes[row["resource_type"]] + row["resource_id"].hex].append(row["to_status"])
    return statuses


def test_a_consumer_that_reconnects_misses_nothing_across_two_sigkills(server: ServeProcess, database_url: str) -> None:
    consumer, other = Consumer(server.target, "client-a"), Consumer(server.target, "client-b")
    threads = [threading.Thread(target=c.run, daemon=True) for c in (consumer, other)]
    for thread in threads:
        thread.start()
    try:
        with client_channel(server.target) as channel:
            stub: PaymentStub = payment_stub(channel)
            payments: list[str] = []

            def one(n: int) -> None:
                if n % 25 == 7:  # another client's charges, in the same stream of work
                    _with_retries(stub.Charge, charge(f"w-b-{n}", amount=500 + n), "client-b")
                elif n % 5 == 4 and payments:
                    _with_retries(stub.Refund, refund(f"w-r-{n}", payments[n // 2 % len(payments)], 10), "client-a")
                elif n % 5 == 3:
                    _with_retries(stub.Payout, sepa_payout(f"w-p-{n}", amount=1000 + n), "client-a")
                else:
                    paid = _with_retries(stub.Charge, charge(f"w-c-{n}", amount=1000 + n), "client-a")
                    payments.append(paid.payment.id)

            with ThreadPoolExecutor(16) as pool:
                work = [pool.submit(one, n) for n in range(500)]
                for kill_after in (150, 320):  # two SIGKILLs mid-stream, each followed by a restart

                    def reached(count: int = kill_after) -> bool:
                        return sum(f.done() for f in work) >= count

                    assert wait_for(reached, timeout=60)
                    server.kill()
                    server.start()
                for future in work:
                    future.result()
        truth = _transitions(database_url, "client-a")

        def delivered(to: Consumer = consumer) -> dict[str, list[str]]:
            per_resource: dict[str, list[str]] = defaultdict(list)
            for event in list(to.seen):
                status = event.type.split(".", 1)[1].upper()
                statuses = per_resource[resource_of(event)]
                if not statuses or statuses[-1] != status:  # a redelivery repeats the last one
                    statuses.append(status)
            return per_resource

        def complete() -> bool:
            nonlocal truth
            truth = _transitions(database_url, "client-a")
            return delivered() == truth

        assert wait_for(complete, timeout=60, interval=0.5), _difference(truth, delivered())
        assert len(truth) >= 480
        theirs = _transitions(database_url, "client-b")
        assert len(theirs) == 20
        assert wait_for(lambda: delivered(other) == theirs, timeout=30, interval=0.5), "each client its own, all of it"
        duplicates = Counter(event.id for event in consumer.seen)
        redelivered = sum(count - 1 for count in duplicates.values())
        assert all(count <= 2 for count in duplicates.values())
        assert consumer.reconnects >= 2, "the stream was cut by each kill"
        print(f"events: {len(consumer.seen)} delivered to client-a, {redelivered} of them twice;"
              f" {len(other.seen)} to client-b; reconnects {consumer.reconnects}")  # fmt: skip
    finally:
        for c in (consumer, other):
            c.stop.set()
        for thread in threads:
            thread.join(timeout=10)


def _difference(truth: dict[str, list[str]], seen: dict[str, list[str]]) -> str:
    missing = {rid: statuses for rid, statuses in truth.items() if seen.get(rid) != statuses}
    sample = list(missing)[:3]
    return f"{len(missing)} resources differ, e.g. {[missing[r] for r in sample]} vs {[seen.get(r) for r in sample]}"
