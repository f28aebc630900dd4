"""The `payments` command: run the service, migrate, and call it (printing resources as JSON)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from payments_client import Credentials, CredentialsError, PaymentsClient, PaymentsError
from payments_client.credentials import sync_channel
from payments_client.errors import error_from_rpc
from server.config import ConfigError, Settings
from server.domain.ids import IdKind, MalformedId, kind_of
from server.security.tls import is_loopback, listen_host


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


def _describe_error(error: PaymentsError) -> str:
    """`error: CODE REASON: message`, then the field violations and the server's retry delay."""
    lines = [f"error: {error}"]
    if error.retry_delay is not None:
        lines.append(f"  retry after {error.retry_delay:.2f}s")
    return "\n".join(lines)


def _target(args: argparse.Namespace) -> str:
    if args.target:
        return str(args.target)
    return os.environ.get("PAYMENTS_TARGET") or os.environ.get("PAYMENTS_LISTEN") or "127.0.0.1:50051"


def _option(args: argparse.Namespace, name: str, env: str) -> str | None:
    value = getattr(args, name, None)
    return str(value) if value else (os.environ.get(env) or None)


def _credentials(args: argparse.Namespace) -> Credentials:
    """TLS when a CA, a client certificate or --tls is given (mutual TLS with --cert/--key), else plaintext;
    the bearer token from --token-file, --token or $PAYMENTS_TOKEN. Warns before a token leaves in plaintext."""
    credentials = Credentials.from_files(
        ca=_option(args, "ca", "PAYMENTS_TLS_CA"), cert=_option(args, "cert", "PAYMENTS_CLIENT_CERT"),
        key=_option(args, "key", "PAYMENTS_CLIENT_KEY"), token=_option(args, "token", "PAYMENTS_TOKEN"),
        token_file=args.token_file or None, tls=bool(args.tls), server_name=args.server_name or None,
    )  # fmt: skip
    if credentials.token and not credentials.secure and not is_loopback(listen_host(_target(args))):
        print("warning: sending the bearer token without TLS (use --ca or --tls)", file=sys.stderr)
    return credentials


def _client(args: argparse.Namespace) -> PaymentsClient:
    """The payments-client library, with the connection options of `args`; exits 2 on unusable ones. It
    retries UNAVAILABLE and ABORTED with the same idempotency key within --timeout."""
    try:
        credentials = _credentials(args)
    except CredentialsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return PaymentsClient(_target(args), credentials=credentials, timeout=args.timeout)


_Stub = TypeVar("_Stub")
_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp", bound=Message)


def _invoke(
    args: argparse.Namespace,
    stub: Callable[[grpc.Channel], _Stub],
    rpc: Callable[[_Stub], grpc.UnaryUnaryMultiCallable[_Req, _Resp]],
    request: _Req,
) -> _Resp | None:
    """One call of a service the client library does not cover (the operators' AdminService), over a channel
    built by the library from the options of `args`; prints the error and returns None on failure."""
    try:
        credentials = _credentials(args)
    except CredentialsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    with sync_channel(_target(args), credentials, []) as channel:
        try:
            response = rpc(stub(channel))(request, timeout=args.timeout, metadata=credentials.call_metadata())
        except grpc.RpcError as error:
            print(_describe_error(error_from_rpc(error)), file=sys.stderr)
            return None
    return response


def _run(args: argparse.Namespace, call: Callable[[PaymentsClient], Message]) -> int:
    """Runs `call` with the library client of `args` and prints what it returns as JSON; 1 on an error."""
    with _client(args) as client:
        try:
            _print_resource(call(client))
        except PaymentsError as error:
            print(_describe_error(error), file=sys.stderr)
            return 1
    return 0


def _money(args: argparse.Namespace) -> res.Money:
    return res.Money(amount_minor=args.amount, currency=args.currency.upper())


def _optional_money(args: argparse.Namespace) -> res.Money | None:
    return _money(args) if args.amount is not None else None


def cmd_charge(args: argparse.Namespace) -> int:
    method = res.CAPTURE_METHOD_MANUAL if args.capture_method == "manual" else res.CAPTURE_METHOD_UNSPECIFIED
    return _run(args, lambda client: client.charge(
        _money(args), args.payment_method, customer_id=args.customer_id, description=args.description,
        metadata=_metadata_pairs(args.metadata), capture_method=method, return_url=args.return_url,
        idempotency_key=args.idempotency_key,
    ).resource)  # fmt: skip


def cmd_capture(args: argparse.Namespace) -> int:
    return _run(args, lambda client: client.capture_payment(
        args.payment_id, _optional_money(args), final_capture=False if args.not_final else None,
        idempotency_key=args.idempotency_key,
    ).resource)  # fmt: skip


def cmd_cancel(args: argparse.Namespace) -> int:
    return _run(args, lambda client: client.cancel_payment(
        args.payment_id, reason=args.reason, idempotency_key=args.idempotency_key
    ).resource)  # fmt: skip


def cmd_refund(args: argparse.Namespace) -> int:
    return _run(args, lambda client: client.refund(
        args.payment_id, _optional_money(args), reason=args.reason, idempotency_key=args.idempotency_key
    ).resource)  # fmt: skip


def cmd_payout(args: argparse.Namespace) -> int:
    sepa = None if args.stripe_account else res.SepaAccount(
        iban=args.iban or "", bic=args.bic, name=args.name,
        address=res.PostalAddress(country=args.country, town=args.town, street=args.street, postcode=args.postcode),
    )  # fmt: skip
    return _run(args, lambda client: client.payout(
        _money(args), sepa_account=sepa, stripe_account_id=args.stripe_account or None, instant=args.instant,
        reference=args.reference, idempotency_key=args.idempotency_key,
        accept_payee_verification_risk=args.accept_payee_verification_risk,
    ).resource)  # fmt: skip


def cmd_get(args: argparse.Namespace) -> int:
    try:
        kind = kind_of(args.id)
    except MalformedId as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if kind is IdKind.PAYMENT:
        return _run(args, lambda client: client.get_payment(args.id))
    if kind is IdKind.REFUND:
        return _run(args, lambda client: client.get_refund(args.id))
    return _run(args, lambda client: client.get_payout(args.id))


def _list_payments(args: argparse.Namespace, status: str) -> int:
    return _run(args, lambda client: client.list_payments(
        page_size=args.page_size, page_token=args.page_token, status=res.PaymentStatus.Value(status),
        customer_id=args.customer_id,
    ))  # fmt: skip


def _list_refunds(args: argparse.Namespace, status: str) -> int:
    return _run(args, lambda client: client.list_refunds(
        page_size=args.page_size, page_token=args.page_token, status=res.RefundStatus.Value(status),
        payment_id=args.payment,
    ))  # fmt: skip


def _list_payouts(args: argparse.Namespace, status: str) -> int:
    return _run(args, lambda client: client.list_payouts(
        page_size=args.page_size, page_token=args.page_token, status=res.PayoutStatus.Value(status),
        destination_type=svc.PayoutDestinationType.Value(_DESTINATIONS[args.destination]),
    ))  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Listing:
    call: Callable[[argparse.Namespace, str], int]  # with the status filter's proto name; the exit code
    status_prefix: str
    status_names: list[str]  # the proto names, UNSPECIFIED first
    only_flag: str  # the argument only this listing takes

    def statuses(self) -> list[str]:
        return [name.removeprefix(self.status_prefix).lower() for name in self.status_names[1:]]


_LISTINGS = {
    "payments": _Listing(_list_payments, "PAYMENT_STATUS_", res.PaymentStatus.keys(), "customer_id"),
    "refunds": _Listing(_list_refunds, "REFUND_STATUS_", res.RefundStatus.keys(), "payment"),
    "payouts": _Listing(_list_payouts, "PAYOUT_STATUS_", res.PayoutStatus.keys(), "destination"),
}
_DESTINATIONS = {
    "": "PAYOUT_DESTINATION_TYPE_UNSPECIFIED",
    "sepa": "PAYOUT_DESTINATION_TYPE_SEPA_ACCOUNT",
    "stripe": "PAYOUT_DESTINATION_TYPE_STRIPE_ACCOUNT",
}


def cmd_list(args: argparse.Namespace) -> int:
    """One page of payments (the default, as before refunds and payouts had listings), refunds or payouts."""
    listing = _LISTINGS[args.resource]
    for name, other in _LISTINGS.items():
        if other is not listing and getattr(args, other.only_flag):
            flag = "--" + other.only_flag.replace("_", "-")
            print(f"error: {flag} applies to `payments list {name}` only", file=sys.stderr)
            return 2
    status = listing.status_prefix + (args.status.upper() or "UNSPECIFIED")
    if status not in listing.status_names:
        print(f"error: --status of {args.resource} is one of {', '.join(listing.statuses())}", file=sys.stderr)
        return 2
    return listing.call(args, status)


def cmd_events(args: argparse.Namespace) -> int:
    """The caller's events as JSON lines: those visible now (after --after), or with --follow a stream
    that goes on until interrupted, resuming from the last printed id if the connection drops (the
    library reopens it)."""
    last = args.after
    with _client(args) as client:
        try:
            if not args.follow:
                token = ""
                while True:
                    page = client.list_events(page_token=token, types=args.type, page_size=500)
                    for event in page.events:
                        if not last or last == "0" or _after(event.id, last):
                            _print_line(event)
                    token = page.next_page_token
                    if not token:
                        return 0
            for event in client.watch_events(after_event_id=last or "", types=args.type):
                _print_line(event)
        except PaymentsError as error:
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
    payout.add_argument(
        "--accept-payee-verification-risk", action="store_true",
        help="SEPA: pay even if Verification of Payee answers CLOSE_MATCH or NOT_POSSIBLE",
    )  # fmt: skip
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

    listing = _client_parser(sub, "list", "list payments (the default), refunds or payouts, newest first")
    listing.add_argument("resource", nargs="?", default="payments", choices=list(_LISTINGS),
                         help="what to list (default: payments)")  # fmt: skip
    statuses = sorted({status for kind in _LISTINGS.values() for status in kind.statuses()})
    listing.add_argument("--status", default="", choices=["", *statuses], metavar="STATUS",
                         help="only those in this status (e.g. succeeded, paid; each listing has its own)")  # fmt: skip
    listing.add_argument("--customer-id", default="", help="payments: only this customer's")
    listing.add_argument("--payment", "--payment-id", default="", help="refunds: only this payment's (pay_…)")
    listing.add_argument("--destination", default="", choices=list(_DESTINATIONS), metavar="{sepa,stripe}",
                         help="payouts: only to a SEPA account or a Stripe account")  # fmt: skip
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
