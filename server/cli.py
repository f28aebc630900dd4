"""The `payments` command: run the service, migrate, and call it (printing resources as JSON)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api.client import PaymentStub, payment_stub
from server.config import ConfigError, Settings
from server.domain.ids import IdKind, MalformedId, kind_of
from server.security.tls import channel_credentials, is_loopback, listen_host


def _metadata_pairs(items: Sequence[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--metadata expects key=value, got {item!r}")
        pairs[key] = value
    return pairs


def _print_resource(message: Message) -> None:
    print(
        json.dumps(
            MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True),
            indent=2,
            sort_keys=True,
        )
    )


def _describe_error(error: grpc.RpcError) -> str:
    code = error.code().name if isinstance(error, grpc.Call) else "UNKNOWN"
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    message = error.details() if isinstance(error, grpc.Call) else str(error)
    lines: list[str] = []
    reason = ""
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                lines += [f"  - {v.field}: {v.description}" for v in bad.field_violations]
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                lines.append(f"  retry after {retry.retry_delay.ToTimedelta().total_seconds():.2f}s")
    head = f"error: {code}" + (f" {reason}" if reason else "") + f": {message}"
    return "\n".join([head, *lines])


def _target(args: argparse.Namespace) -> str:
    if args.target:
        return str(args.target)
    return os.environ.get("PAYMENTS_TARGET") or os.environ.get("PAYMENTS_LISTEN") or "127.0.0.1:50051"


def _option(args: argparse.Namespace, name: str, env: str) -> str | None:
    value = getattr(args, name, None)
    return str(value) if value else (os.environ.get(env) or None)


def _path_option(args: argparse.Namespace, name: str, env: str) -> Path | None:
    value = _option(args, name, env)
    return Path(value) if value else None


def _secure(args: argparse.Namespace) -> bool:
    return bool(args.tls) or any(
        _option(args, name, env)
        for name, env in (("ca", "PAYMENTS_TLS_CA"), ("cert", "PAYMENTS_CLIENT_CERT"), ("key", "PAYMENTS_CLIENT_KEY"))
    )


def _channel(args: argparse.Namespace) -> grpc.Channel:
    """TLS when a CA, a client certificate or --tls is given (mutual TLS with --cert/--key), else plaintext."""
    target = _target(args)
    if not _secure(args):
        return grpc.insecure_channel(target)
    ca = _path_option(args, "ca", "PAYMENTS_TLS_CA")
    cert = _path_option(args, "cert", "PAYMENTS_CLIENT_CERT")
    key = _path_option(args, "key", "PAYMENTS_CLIENT_KEY")
    credentials = channel_credentials(ca, cert, key)
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    return grpc.secure_channel(target, credentials, options=options)


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        try:
            return Path(args.token_file).read_text().strip() or None
        except OSError as exc:
            raise ConfigError(f"--token-file {args.token_file!r} cannot be read: {exc.strerror}") from None
    return _option(args, "token", "PAYMENTS_TOKEN")


def _call_metadata(args: argparse.Namespace, secure: bool) -> tuple[tuple[str, str], ...]:
    token = _token(args)
    if token is None:
        return ()
    if not secure and not is_loopback(listen_host(_target(args))):
        print("warning: sending the bearer token without TLS (use --ca or --tls)", file=sys.stderr)
    return (("authorization", f"Bearer {token}"),)


_Stub = TypeVar("_Stub")
_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp", bound=Message)


def _invoke(
    args: argparse.Namespace,
    stub: Callable[[grpc.Channel], _Stub],
    rpc: Callable[[_Stub], grpc.UnaryUnaryMultiCallable[_Req, _Resp]],
    request: _Req,
) -> _Resp | None:
    """Calls `rpc` of the stub with the connection options of `args` (e.g. `payment_stub, lambda s: s.Charge`,
    typed by the generated stubs); prints the error and returns None on failure."""
    try:
        metadata = _call_metadata(args, secure=_secure(args))
        channel = _channel(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    with channel:
        try:
            response = rpc(stub(channel))(request, timeout=args.timeout, metadata=metadata)
        except grpc.RpcError as error:
            print(_describe_error(error), file=sys.stderr)
            return None
    return response


def _call(
    args: argparse.Namespace,
    rpc: Callable[[PaymentStub], grpc.UnaryUnaryMultiCallable[_Req, _Resp]],
    request: _Req,
    field: str,
) -> int:
    response = _invoke(args, payment_stub, rpc, request)
    if response is None:
        return 1
    _print_resource(getattr(response, field))
    return 0


def _money(args: argparse.Namespace) -> res.Money:
    return res.Money(amount_minor=args.amount, currency=args.currency.upper())


def cmd_charge(args: argparse.Namespace) -> int:
    request = svc.ChargeRequest(
        idempotency_key=args.idempotency_key, amount=_money(args), payment_method=args.payment_method,
        customer_id=args.customer_id, description=args.description, metadata=_metadata_pairs(args.metadata),
        return_url=args.return_url,
        capture_method=res.CAPTURE_METHOD_MANUAL if args.capture_method == "manual" else res.CAPTURE_METHOD_UNSPECIFIED,
    )  # fmt: skip
    return _call(args, lambda stub: stub.Charge, request, "payment")


def cmd_capture(args: argparse.Namespace) -> int:
    request = svc.CapturePaymentRequest(idempotency_key=args.idempotency_key, payment_id=args.payment_id)
    if args.amount is not None:
        request.amount.CopyFrom(_money(args))
    if args.not_final:
        request.final_capture = False
    return _call(args, lambda stub: stub.CapturePayment, request, "payment")


def cmd_cancel(args: argparse.Namespace) -> int:
    request = svc.CancelPaymentRequest(idempotency_key=args.idempotency_key, payment_id=args.payment_id,
                                       reason=args.reason)  # fmt: skip
    return _call(args, lambda stub: stub.CancelPayment, request, "payment")


def cmd_refund(args: argparse.Namespace) -> int:
    request = svc.RefundRequest(idempotency_key=args.idempotency_key, payment_id=args.payment_id, reason=args.reason)
    if args.amount is not None:
        request.amount.CopyFrom(_money(args))
    return _call(args, lambda stub: stub.Refund, request, "refund")


def cmd_payout(args: argparse.Namespace) -> int:
    request = svc.PayoutRequest(
        idempotency_key=args.idempotency_key,
        amount=_money(args),
        instant=args.instant,
        reference=args.reference,
    )
    if args.stripe_account:
        request.stripe_account_id = args.stripe_account
    else:
        request.sepa_account.CopyFrom(res.SepaAccount(
            iban=args.iban or "", bic=args.bic, name=args.name,
            address=res.PostalAddress(country=args.country, town=args.town, street=args.street,
                                      postcode=args.postcode),
        ))  # fmt: skip
    return _call(args, lambda stub: stub.Payout, request, "payout")


def cmd_get(args: argparse.Namespace) -> int:
    try:
        kind = kind_of(args.id)
    except MalformedId as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if kind is IdKind.PAYMENT:
        return _call(args, lambda stub: stub.GetPayment, svc.GetPaymentRequest(id=args.id), "payment")
    if kind is IdKind.REFUND:
        return _call(args, lambda stub: stub.GetRefund, svc.GetRefundRequest(id=args.id), "refund")
    return _call(args, lambda stub: stub.GetPayout, svc.GetPayoutRequest(id=args.id), "payout")


def cmd_list(args: argparse.Namespace) -> int:
    status = res.PaymentStatus.Value(f"PAYMENT_STATUS_{args.status.upper() or 'UNSPECIFIED'}")  # argparse checked
    request = svc.ListPaymentsRequest(
        page_size=args.page_size, page_token=args.page_token, status=status, customer_id=args.customer_id
    )
    response = _invoke(args, payment_stub, lambda stub: stub.ListPayments, request)
    if response is None:
        return 1
    _print_resource(response)
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    """The caller's events as JSON lines: those visible now (after --after), or with --follow a stream
    that goes on until interrupted, resuming from the last printed id if the connection drops."""
    try:
        metadata = _call_metadata(args, secure=_secure(args))
        channel = _channel(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    last = args.after
    with channel:
        stub = payment_stub(channel)
        try:
            if not args.follow:
                token = ""
                while True:
                    page = stub.ListEvents(svc.ListEventsRequest(page_token=token, types=args.type, page_size=500),
                                           timeout=args.timeout, metadata=metadata)  # fmt: skip
                    for event in page.events:
                        if not last or last == "0" or _after(event.id, last):
                            _print_line(event)
                    token = page.next_page_token
                    if not token:
                        return 0
            request = svc.WatchEventsRequest(after_event_id=last or "", types=args.type)
            for message in stub.WatchEvents(request, metadata=metadata):
                if message.WhichOneof("kind") == "event":
                    _print_line(message.event)
        except grpc.RpcError as error:
            print(_describe_error(error), file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0
    return 0


def _after(event_id: str, last: str) -> bool:
    from server.app.events import EventCursor

    return EventCursor.decode(event_id) > EventCursor.decode(last)


def _print_line(message: Message) -> None:
    print(json.dumps(MessageToDict(message, preserving_proto_field_name=True), sort_keys=True), flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    from server.bootstrap import psp_settings_problem, serve
    from server.logs import configure_logging
    from server.security.setup import check_startup

    configure_logging()
    env = dict(os.environ)
    if args.listen:
        env["PAYMENTS_LISTEN"] = args.listen
    if args.insecure_listen:  # also in os.environ: server processes started from this one inherit it
        env["PAYMENTS_ALLOW_INSECURE_LISTEN"] = os.environ["PAYMENTS_ALLOW_INSECURE_LISTEN"] = "1"
    try:
        settings = Settings.from_env(env)
        check_startup(settings)  # refuses plaintext off loopback, unreadable TLS or token files: exit 2
        problem = psp_settings_problem(settings)
        if problem:
            raise ConfigError(problem)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.workers > 1:
        from server.bootstrap import serve_processes

        try:
            return serve_processes(settings, args.workers)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return asyncio.run(serve(settings))


def cmd_bench(args: argparse.Namespace) -> int:
    from server.bench.run import main as bench_main

    return bench_main(args.bench_args)


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Runs the offline PSP sandboxes on their own, for integration tests or a manual session."""
    from adapters.sandboxes import run_until_signalled
    from adapters.sandboxes.bank_sandbox import BankSandbox
    from adapters.sandboxes.stripe_sandbox import StripeSandbox

    stripe_sandbox = StripeSandbox(args.host, args.stripe_port).start()
    bank_sandbox = BankSandbox(args.host, args.bank_port).start()
    print(f"Stripe sandbox: {stripe_sandbox.url}  (PAYMENTS_STRIPE_API_BASE, any sk_test_ key)", flush=True)
    print(f"bank sandbox:   {bank_sandbox.url}  (PAYMENTS_BANK_API_BASE)", flush=True)
    run_until_signalled(stripe_sandbox, bank_sandbox)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from server.bootstrap import psp_settings_problem, run_worker
    from server.logs import configure_logging

    configure_logging()
    try:
        settings = Settings.from_env()
        problem = psp_settings_problem(settings)
        if problem:
            raise ConfigError(problem)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_worker(settings))


def cmd_hash_token(args: argparse.Namespace) -> int:
    """Prints the stored form of a bearer token for PAYMENTS_AUTH_TOKENS_FILE; the token itself is read
    from stdin (never from the command line) or generated, and is printed only when generated."""
    import getpass

    from server.security.auth import CLIENT_ID, generate_token, hash_token, token_problem

    if args.client_id is not None and not CLIENT_ID.match(args.client_id):
        print(f"error: --client-id must match {CLIENT_ID.pattern}", file=sys.stderr)
        return 2
    if args.generate:
        token = generate_token()
    elif sys.stdin.isatty():
        token = getpass.getpass("token (not echoed): ").strip()
    else:
        token = sys.stdin.readline().strip()
    problem = token_problem(token)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    hashed = hash_token(token)
    if args.generate:
        print(token)  # shown once: give it to the client; the tokens file keeps only the hash
    print(json.dumps({args.client_id: hashed}) if args.client_id is not None else hashed, flush=True)
    return 0


def cmd_dev_certs(args: argparse.Namespace) -> int:
    """Writes a development CA, a server certificate and client certificates (never for production)."""
    from server.security.devcerts import DEFAULT_CLIENTS, DEFAULT_HOSTS, DevCertError, generate_dev_certs

    directory = Path(args.directory)
    try:
        made = generate_dev_certs(
            directory, client_ids=args.client_id or DEFAULT_CLIENTS, hosts=args.host or DEFAULT_HOSTS,
            days=args.days, overwrite=args.force,
        )  # fmt: skip
    except DevCertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"development certificates in {directory} (valid {args.days} days; the keys are mode 0600)")
    print("serve with mutual TLS:")
    print(f"  PAYMENTS_TLS_CERT={made.server.cert} PAYMENTS_TLS_KEY={made.server.key} \\")
    print(f"  PAYMENTS_TLS_CLIENT_CA={made.ca.cert} payments serve")
    for client_id, pair in made.clients.items():
        print(f"call as {client_id}:")
        print(f"  payments list --ca {made.ca.cert} --cert {pair.cert} --key {pair.key}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from server.bootstrap import open_database_url
    from storage.migrator import migrate_dsn

    settings = Settings.from_env()
    dsn, embedded = open_database_url(settings)
    applied = asyncio.run(migrate_dsn(dsn))
    print("applied: " + (", ".join(applied) if applied else "nothing, the schema is current"))
    if embedded is not None:
        embedded.close()
    return 0


def _client_parser(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    parser.add_argument("--target", help="host:port of the service (default: $PAYMENTS_TARGET or 127.0.0.1:50051)")
    parser.add_argument("--timeout", type=float, default=30.0, help="RPC deadline in seconds")
    tls = parser.add_argument_group("transport security and authentication")
    tls.add_argument("--tls", action="store_true", help="use TLS, trusting the public roots unless --ca is given")
    tls.add_argument("--ca", help="CA certificate (PEM) to trust; implies TLS (default: $PAYMENTS_TLS_CA)")
    tls.add_argument("--cert", help="client certificate (PEM) for mutual TLS (default: $PAYMENTS_CLIENT_CERT)")
    tls.add_argument("--key", help="its private key (PEM) (default: $PAYMENTS_CLIENT_KEY)")
    tls.add_argument("--server-name", help="expected server name when it differs from the target host")
    tls.add_argument("--token-file", help="file holding the bearer token")
    tls.add_argument(
        "--token", help="bearer token (visible in the process list: prefer $PAYMENTS_TOKEN or --token-file)"
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="payments", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC service")
    serve.add_argument("--listen", help="host:port (default: $PAYMENTS_LISTEN or 127.0.0.1:50051)")
    serve.add_argument(
        "--insecure-listen", action="store_true",
        help="allow plaintext or unauthenticated listening on a non-loopback address (trusted networks only; "
        "same as PAYMENTS_ALLOW_INSECURE_LISTEN=1)",
    )  # fmt: skip
    serve.add_argument(
        "--workers", type=int, default=1,
        help="server processes sharing the port (SO_REUSEPORT); one of them runs the background worker",
    )  # fmt: skip
    serve.set_defaults(func=cmd_serve)
    bench = sub.add_parser("bench", help="benchmark the service next to its floors (see `make bench`)")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="options of server.bench.run")
    bench.set_defaults(func=cmd_bench)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("worker", help="run only the recovery worker and status poller").set_defaults(func=cmd_worker)
    sandbox = sub.add_parser("sandbox", help="run the offline Stripe and bank sandboxes")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--stripe-port", type=int, default=12111)
    sandbox.add_argument("--bank-port", type=int, default=12112)
    sandbox.set_defaults(func=cmd_sandbox)

    charge = _client_parser(sub, "charge", "charge a payment method")
    charge.add_argument("--amount", type=int, required=True, help="amount in minor units (1250 = 12.50 EUR)")
    charge.add_argument("--currency", required=True)
    charge.add_argument("--payment-method", required=True, help="PSP token, e.g. pm_card_visa")
    charge.add_argument("--idempotency-key", required=True)
    charge.add_argument("--customer-id", default="")
    charge.add_argument("--description", default="")
    charge.add_argument("--metadata", action="append", default=[], help="key=value (repeatable)")
    charge.add_argument("--capture-method", choices=("automatic", "manual"), default="automatic",
                        help="manual: authorize only, capture later with `payments capture`")  # fmt: skip
    charge.add_argument("--return-url", default="", help="where 3-D Secure sends the customer back")
    charge.set_defaults(func=cmd_charge)

    capture = _client_parser(sub, "capture", "capture an authorized payment (all that is capturable unless --amount)")
    capture.add_argument("--payment-id", required=True)
    capture.add_argument("--amount", type=int, help="amount in minor units")
    capture.add_argument("--currency", default="EUR")
    capture.add_argument("--not-final", action="store_true", help="keep the rest capturable")
    capture.add_argument("--idempotency-key", required=True)
    capture.set_defaults(func=cmd_capture)

    events = _client_parser(sub, "events", "print your events as JSON lines (--follow: as they happen)")
    events.add_argument("--follow", action="store_true", help="keep streaming new events (WatchEvents)")
    events.add_argument("--after", default="", help="only events after this id (0: from the oldest retained)")
    events.add_argument("--type", action="append", default=[], help="only this event type (repeatable)")
    events.set_defaults(func=cmd_events)

    cancel = _client_parser(sub, "cancel", "void an authorized payment, or one waiting for the customer")
    cancel.add_argument("--payment-id", required=True)
    cancel.add_argument("--reason", default="", choices=("", "duplicate", "fraudulent", "requested_by_customer",
                                                            "abandoned"))  # fmt: skip
    cancel.add_argument("--idempotency-key", required=True)
    cancel.set_defaults(func=cmd_cancel)

    refund = _client_parser(sub, "refund", "refund a payment (all that remains unless --amount)")
    refund.add_argument("--payment-id", required=True)
    refund.add_argument("--amount", type=int, help="amount in minor units")
    refund.add_argument("--currency", default="EUR")
    refund.add_argument("--idempotency-key", required=True)
    refund.add_argument("--reason", default="")
    refund.set_defaults(func=cmd_refund)

    payout = _client_parser(sub, "payout", "pay a seller by SEPA credit transfer or to a Stripe account")
    payout.add_argument("--amount", type=int, required=True, help="amount in minor units")
    payout.add_argument("--currency", default="EUR")
    payout.add_argument("--idempotency-key", required=True)
    payout.add_argument("--iban")
    payout.add_argument("--bic", default="")
    payout.add_argument("--name", default="")
    payout.add_argument("--country", default="")
    payout.add_argument("--town", default="")
    payout.add_argument("--street", default="")
    payout.add_argument("--postcode", default="")
    payout.add_argument("--stripe-account", help="acct_… instead of a SEPA account")
    payout.add_argument("--instant", action="store_true", help="SEPA Instant")
    payout.add_argument("--reference", default="", help="remittance information")
    payout.set_defaults(func=cmd_payout)

    hashing = sub.add_parser(
        "hash-token", help="print the PAYMENTS_AUTH_TOKENS_FILE entry of a bearer token (read from stdin)"
    )
    hashing.add_argument("--client-id", help='print a JSON entry {"<client id>": "sha256:…"}')
    hashing.add_argument("--generate", action="store_true", help="generate a new token and print it first")
    hashing.set_defaults(func=cmd_hash_token)

    certs = sub.add_parser("dev-certs", help="write a development CA, server and client certificates")
    certs.add_argument("directory")
    certs.add_argument("--client-id", action="append", help="client id of a client certificate (repeatable; "
                       "default: client-a)")  # fmt: skip
    certs.add_argument("--host", action="append", help="server name or IP (repeatable; default: localhost, "
                       "127.0.0.1, ::1)")  # fmt: skip
    certs.add_argument("--days", type=int, default=30)
    certs.add_argument("--force", action="store_true", help="replace existing certificates")
    certs.set_defaults(func=cmd_dev_certs)

    get = _client_parser(sub, "get", "show a payment, refund or payout by id")
    get.add_argument("id")
    get.set_defaults(func=cmd_get)

    listing = _client_parser(sub, "list", "list payments, newest first")
    statuses = [name.removeprefix("PAYMENT_STATUS_").lower() for name in res.PaymentStatus.keys()[1:]]
    listing.add_argument("--status", default="", choices=["", *statuses], help="only payments in this status")
    listing.add_argument("--customer-id", default="")
    listing.add_argument("--page-size", type=int, default=0)
    listing.add_argument("--page-token", default="")
    listing.set_defaults(func=cmd_list)

    from server.admin_cli import add_admin_commands  # here, not at the top: it uses this module's helpers

    add_admin_commands(sub)
    from server.bank_cli import add_bank_commands

    add_bank_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
