"""Hostile input on the wire (docs/contract.md, Interface and Security): thousands of generated requests
across every RPC through a mutual-TLS + token server, fuzzed credentials, undecodable and oversized
messages, oversized metadata and raw garbage on the socket. Nothing a caller sends may yield INTERNAL or
UNKNOWN or take the server down; after each test the server still answers its health check and serves a
charge."""

from __future__ import annotations

import functools
import random
import socket
import ssl
import struct
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api.client import PaymentStub
from server.config import Settings
from server.runtime import MAX_MESSAGE_BYTES, MAX_METADATA_BYTES
from tests.support.harness import ServerHarness
from tests.support.postgres import PostgresForTests
from tests.support.protofuzz import METADATA, RPC_NAMES, STREAMING_RPC_NAMES, any_request, page_tokens
from tests.support.requests import charge, error_reason
from tests.support.secure import Pki, SecureServer, bearer, client_credentials, make_pki

ANY_REQUEST = any_request()
ANSWERS = {  # what a caller may get for anything it sends with valid credentials
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
}
BATCH = 25
GENERATED_REQUESTS = 2_000
SERVING = health_pb2.HealthCheckResponse.SERVING


def fuzz(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure(postgres: PostgresForTests, pki: Pki) -> Iterator[SecureServer]:
    server = SecureServer(
        postgres.new_database(),
        Settings(
            listen="127.0.0.1:0",
            tls_cert=pki.trusted.server.cert,
            tls_key=pki.trusted.server.key,
            tls_client_ca=pki.trusted.ca.cert,
            auth_tokens_file=pki.tokens_file,
            worker=False,
        ),
    )
    yield server
    server.close()


@pytest.fixture(scope="module")
def channel(secure: SecureServer, pki: Pki) -> grpc.Channel:
    return secure.channel(client_credentials(pki.trusted, pki.trusted.clients["client-a"]))


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> PaymentStub:
    from server.api.client import payment_stub

    return payment_stub(channel)


@pytest.fixture(autouse=True)
def still_serving(secure: SecureServer, pki: Pki, stub: PaymentStub) -> Iterator[None]:
    """After every test: the secure server answers its health check and serves a real charge."""
    yield
    assert secure.health(client_credentials(pki.trusted, pki.trusted.clients["client-a"])) == SERVING
    payment = stub.Charge(charge(f"alive-{uuid.uuid4()}"), metadata=bearer(pki.tokens["client-a"]), timeout=10)
    assert payment.payment.status == res.PAYMENT_STATUS_SUCCEEDED


def outcome(future: Any) -> tuple[grpc.StatusCode, grpc.RpcError | None]:
    try:
        future.result()
    except grpc.RpcError as error:
        return error.code(), error
    return grpc.StatusCode.OK, None


def assert_answer(rpc: str, code: grpc.StatusCode, error: grpc.RpcError | None, allowed: set[grpc.StatusCode]) -> None:
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), f"{rpc}: {code}"
    assert code in allowed, f"{rpc} answered {code}: {error.details() if error else ''}"
    # RESOURCE_EXHAUSTED comes from gRPC's own limits; DEADLINE_EXCEEDED is the caller's deadline.
    if error is not None and code not in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED):
        assert error_reason(error), f"{rpc}: every error carries ErrorInfo"


# ------------------------------------------------------------------------------------ generated requests


def test_thousands_of_generated_requests_across_every_rpc(stub: PaymentStub, pki: Pki) -> None:
    metadata = bearer(pki.tokens["client-a"])
    sent: dict[str, int] = dict.fromkeys(RPC_NAMES, 0)

    @fuzz(GENERATED_REQUESTS // BATCH + 10)
    @given(batch=st.lists(ANY_REQUEST, min_size=BATCH, max_size=BATCH))
    def fire(batch: list[tuple[str, Message]]) -> None:
        futures = [(rpc, getattr(stub, rpc).future(request, metadata=metadata, timeout=30)) for rpc, request in batch]
        for rpc, future in futures:
            code, error = outcome(future)
            sent[rpc] += 1
            assert_answer(rpc, code, error, ANSWERS)

    fire()
    assert sum(sent.values()) >= GENERATED_REQUESTS
    assert all(count > 0 for count in sent.values()), sent


# A stream the server accepted runs until the caller's deadline: DEADLINE_EXCEEDED is how a valid watch
# ends here. Anything the server refuses, it refuses at once, like a unary RPC.
STREAM_ANSWERS = ANSWERS | {grpc.StatusCode.DEADLINE_EXCEEDED}
STREAM_SECONDS = 0.5


def stream_outcome(open_stream: Callable[[], Iterable[Any]]) -> tuple[grpc.StatusCode, grpc.RpcError | None]:
    try:
        for _ in open_stream():
            pass
    except grpc.RpcError as error:
        return error.code(), error
    return grpc.StatusCode.OK, None


def test_generated_requests_on_the_streaming_rpcs(stub: PaymentStub, pki: Pki) -> None:
    metadata = bearer(pki.tokens["client-a"])
    seen: Counter[grpc.StatusCode] = Counter()

    @fuzz(8)
    @given(batch=st.lists(any_request(streaming=True), min_size=BATCH, max_size=BATCH))
    def fire(batch: list[tuple[str, Message]]) -> None:
        def one(rpc: str, request: Message) -> None:
            code, error = stream_outcome(lambda: getattr(stub, rpc)(request, metadata=metadata, timeout=STREAM_SECONDS))
            seen[code] += 1
            assert_answer(rpc, code, error, STREAM_ANSWERS)

        with ThreadPoolExecutor(BATCH) as pool:
            for future in [pool.submit(one, rpc, request) for rpc, request in batch]:
                future.result()

    assert STREAMING_RPC_NAMES == ["WatchEvents"]
    fire()
    assert seen[grpc.StatusCode.INVALID_ARGUMENT] > 0, seen  # the generator does reach the refusals


_PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)
AUTHORIZATION = st.one_of(
    _PRINTABLE,
    _PRINTABLE.map(lambda s: f"Bearer {s}"),
    st.sampled_from(["", "Bearer", "Bearer ", "bearer pst_", "Basic dXNlcjpwYXNz", "Bearer " + "a" * 600]),
)
FUZZ_KEY = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_."), min_size=1, max_size=20).filter(
    lambda key: not key.endswith("-bin")  # binary metadata takes bytes
)


def test_fuzzed_credentials_are_unauthenticated(stub: PaymentStub, pki: Pki) -> None:
    @fuzz(25)
    @given(
        batch=st.lists(
            st.tuples(
                st.sampled_from(["Charge", "ListPayments", "GetPayment"]),
                st.lists(AUTHORIZATION, min_size=1, max_size=2),
                st.dictionaries(FUZZ_KEY.map(lambda k: f"x-{k}"), _PRINTABLE, max_size=4),
            ),
            min_size=20,
            max_size=20,
        )
    )
    def fire(batch: list[tuple[str, list[str], dict[str, str]]]) -> None:
        requests = {
            "Charge": charge(f"c-{uuid.uuid4()}"),
            "ListPayments": svc.ListPaymentsRequest(),
            "GetPayment": svc.GetPaymentRequest(id="pay_" + "0" * 32),
        }
        futures = []
        for rpc, authorizations, extra in batch:
            metadata = [("authorization", value) for value in authorizations] + list(extra.items())
            futures.append((rpc, getattr(stub, rpc).future(requests[rpc], metadata=metadata, timeout=30)))
        for rpc, future in futures:
            code, error = outcome(future)
            assert_answer(rpc, code, error, {grpc.StatusCode.UNAUTHENTICATED})

    fire()


# ------------------------------------------------------------------------------------ undecodable bytes

CRAFTED = [
    b"",
    b"\x00",
    b"\xff" * 16,
    b"\x0a\xff\xff\xff\xff\x0f",  # field 1, length 2^32-1
    b"\x12\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # an 11-byte varint length
    b"\x0b" * 20_000,  # 20,000 nested unknown groups: the parser's recursion limit
    b"\x13" * 5000 + b"\x14" * 5000,
    b"\x0c",  # an end-group without a start
    b"\x1a\x03\x08\x96\x01" * 1000,  # a repeated sub-message where a singular one is expected
    b"\x12\x08\x08\xff\xff\xff\xff\xff\xff\xff\xff\x7f",  # amount with an overlong varint
    bytes(range(256)) * 4,
]


def test_undecodable_bytes_on_every_rpc(channel: grpc.Channel, pki: Pki) -> None:
    metadata = bearer(pki.tokens["client-a"])
    raw = {
        name: channel.unary_unary(
            f"/payments.v1.PaymentService/{name}", request_serializer=None, response_deserializer=None
        )
        for name in RPC_NAMES
    }
    for name, call in raw.items():
        for payload in CRAFTED:
            code, error = outcome(call.future(payload, metadata=metadata, timeout=30))
            assert_answer(name, code, error, ANSWERS)
    for name in STREAMING_RPC_NAMES:
        stream = channel.unary_stream(
            f"/payments.v1.PaymentService/{name}", request_serializer=None, response_deserializer=None
        )
        for payload in CRAFTED:
            code, error = stream_outcome(functools.partial(stream, payload, metadata=metadata, timeout=STREAM_SECONDS))
            assert_answer(name, code, error, STREAM_ANSWERS)

    @fuzz(20)
    @given(batch=st.lists(st.tuples(st.sampled_from(sorted(raw)), st.binary(max_size=2048)), min_size=25, max_size=25))
    def fire(batch: list[tuple[str, bytes]]) -> None:
        futures = [(name, raw[name].future(payload, metadata=metadata, timeout=30)) for name, payload in batch]
        for name, future in futures:
            code, error = outcome(future)
            assert_answer(name, code, error, ANSWERS)

    fire()


# ------------------------------------------------------------------------------------------ size limits


def test_messages_over_one_mebibyte_are_resource_exhausted(channel: grpc.Channel, pki: Pki) -> None:
    metadata = bearer(pki.tokens["client-a"])
    big = "x" * (MAX_MESSAGE_BYTES + 16)
    oversized: list[tuple[str, Message]] = [
        ("Charge", charge("big", description=big)),
        ("Refund", svc.RefundRequest(idempotency_key="big", payment_id="pay_" + "0" * 32, reason=big)),
        ("Payout", svc.PayoutRequest(idempotency_key="big", reference=big)),
        ("GetPayment", svc.GetPaymentRequest(id=big)),
        ("GetRefund", svc.GetRefundRequest(id=big)),
        ("GetPayout", svc.GetPayoutRequest(id=big)),
        ("ListPayments", svc.ListPaymentsRequest(page_token=big)),
    ]
    for name, request in oversized:
        raw = channel.unary_unary(
            f"/payments.v1.PaymentService/{name}", request_serializer=None, response_deserializer=None
        )
        payload = request.SerializeToString()
        assert len(payload) > MAX_MESSAGE_BYTES
        code, error = outcome(raw.future(payload, metadata=metadata, timeout=30))
        assert_answer(name, code, error, {grpc.StatusCode.RESOURCE_EXHAUSTED})
        garbage = random.Random(name).randbytes(MAX_MESSAGE_BYTES + 1)
        code, error = outcome(raw.future(garbage, metadata=metadata, timeout=30))
        assert_answer(name, code, error, {grpc.StatusCode.RESOURCE_EXHAUSTED})
    just_under = charge("almost", description="x" * (MAX_MESSAGE_BYTES - 1024))
    raw_charge = channel.unary_unary(
        "/payments.v1.PaymentService/Charge", request_serializer=None, response_deserializer=None
    )
    code, error = outcome(raw_charge.future(just_under.SerializeToString(), metadata=metadata, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, "under the cap, validation bounds the field"
    assert error is not None
    assert error_reason(error) == "FIELD_TOO_LONG"


@pytest.mark.parametrize(
    "extra",
    [
        [("x-big", "v" * (MAX_METADATA_BYTES + 1))],
        [("x-big", "v" * (4 * MAX_METADATA_BYTES))],
        [(f"x-k{i}", "value") for i in range(2_000)],
        [("authorization", "Bearer " + "t" * (2 * MAX_METADATA_BYTES))],
    ],
    ids=["one value over the cap", "one value 4x the cap", "2000 entries", "huge authorization"],
)
def test_metadata_over_the_cap_is_resource_exhausted(stub: PaymentStub, pki: Pki, extra: list[tuple[str, str]]) -> None:
    token = () if extra[0][0] == "authorization" else bearer(pki.tokens["client-a"])
    code, error = outcome(stub.ListPayments.future(svc.ListPaymentsRequest(), metadata=(*token, *extra), timeout=30))
    assert_answer("ListPayments", code, error, {grpc.StatusCode.RESOURCE_EXHAUSTED})
    under = (*bearer(pki.tokens["client-a"]), ("x-big", "v" * (MAX_METADATA_BYTES // 2)))
    assert stub.ListPayments(svc.ListPaymentsRequest(), metadata=under, timeout=30) is not None


# ----------------------------------------------------------------------------------------- raw sockets

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind: int, flags: int, stream: int, payload: bytes, length: int | None = None) -> bytes:
    size = len(payload) if length is None else length
    return struct.pack(">I", size)[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


SETTINGS = frame(4, 0, 0, b"")
HTTP2_GARBAGE = [
    PREFACE + SETTINGS + frame(1, 0x4 | 0x1, 1, b"\xff\xfe\xfd\xfc garbage hpack"),  # undecodable HEADERS
    PREFACE + SETTINGS + frame(0, 0, 0, b"data on stream zero"),
    PREFACE + SETTINGS + frame(8, 0, 0, b"\x00\x00\x00\x00"),  # WINDOW_UPDATE of 0
    PREFACE + SETTINGS + frame(0, 0, 1, b"", length=0xFFFFFF),  # a 16 MiB frame announced
    PREFACE + frame(4, 0, 0, b"\x00\x05\xff\xff\xff\xff"),  # SETTINGS_MAX_FRAME_SIZE out of range
    PREFACE + SETTINGS + b"\x00" * 5000,
    PREFACE + random.Random(7).randbytes(8192),
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a truncated TLS ClientHello
    random.Random(11).randbytes(65536),
    b"",
]


def spray(port: int, payloads: list[bytes], *, tls_context: ssl.SSLContext | None = None) -> None:
    for payload in payloads:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            sock: socket.socket = raw
            if tls_context is not None:
                try:
                    sock = tls_context.wrap_socket(raw, server_hostname="localhost")
                except (ssl.SSLError, OSError):
                    continue  # the server refused the handshake: fine
            try:
                sock.sendall(payload)
                sock.settimeout(0.5)
                sock.recv(65536)
            except (OSError, ssl.SSLError):
                pass  # reset or timed out: the server decides, it must just survive


def test_garbage_on_the_plaintext_socket(server: ServerHarness) -> None:
    spray(server.service.port, HTTP2_GARBAGE)
    assert server.stub.Charge(charge("still-alive"), timeout=10).payment.status == res.PAYMENT_STATUS_SUCCEEDED


def test_garbage_on_the_tls_socket(secure: SecureServer, pki: Pki) -> None:
    spray(secure.port, HTTP2_GARBAGE)  # not even TLS
    anonymous = ssl.create_default_context(cafile=str(pki.trusted.ca.cert))
    anonymous.set_alpn_protocols(["h2"])
    spray(secure.port, HTTP2_GARBAGE[:3], tls_context=anonymous)  # TLS without a client certificate
    authenticated = ssl.create_default_context(cafile=str(pki.trusted.ca.cert))
    authenticated.load_cert_chain(str(pki.trusted.clients["client-a"].cert), str(pki.trusted.clients["client-a"].key))
    authenticated.set_alpn_protocols(["h2"])
    spray(secure.port, HTTP2_GARBAGE, tls_context=authenticated)  # garbage inside a good TLS session


# -------------------------------------------------------------------- metadata and page tokens, 5,000 more

FIELD_REQUESTS = 5_000


def test_fuzzed_metadata_and_page_tokens_never_crash(stub: PaymentStub, pki: Pki) -> None:
    """Half charges with hostile metadata, half listings with forged or mutated page tokens: every
    answer is OK or INVALID_ARGUMENT with ErrorInfo, never INTERNAL/UNKNOWN. The figures are printed."""
    metadata = bearer(pki.tokens["client-a"])
    for n in range(3):  # enough payments for a real token
        stub.Charge(charge(f"page-{n}"), metadata=metadata, timeout=10)
    real = stub.ListPayments(svc.ListPaymentsRequest(page_size=1), metadata=metadata, timeout=10).next_page_token
    assert real
    codes: Counter[str] = Counter()
    tokens = page_tokens(real)

    @fuzz(FIELD_REQUESTS // (2 * BATCH) + 10)
    @given(
        charges=st.lists(METADATA, min_size=BATCH, max_size=BATCH),
        listings=st.lists(tokens, min_size=BATCH, max_size=BATCH),
    )
    def fire(charges: list[dict[str, str]], listings: list[str]) -> None:
        futures = [
            ("Charge", stub.Charge.future(charge(f"fz-{uuid.uuid4()}", metadata=m), metadata=metadata, timeout=30))
            for m in charges
        ] + [
            ("ListPayments", stub.ListPayments.future(svc.ListPaymentsRequest(page_size=1, page_token=t),
                                                      metadata=metadata, timeout=30))
            for t in listings
        ]  # fmt: skip
        for rpc, future in futures:
            code, error = outcome(future)
            codes[f"{rpc} {code.name}"] += 1
            assert_answer(rpc, code, error, {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT})

    fire()
    print(f"\nfuzzed metadata and page tokens: {sum(codes.values())} requests: {dict(sorted(codes.items()))}")
    assert sum(codes.values()) >= FIELD_REQUESTS
    assert codes["Charge INVALID_ARGUMENT"] > 0
    assert codes["ListPayments INVALID_ARGUMENT"] > 0
