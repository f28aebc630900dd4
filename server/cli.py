"""The `payments` command: run the service, migrate, and call it (printing resources as JSON)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

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


def _call(args: argparse.Namespace, invoke: Callable[[PaymentStub], Message], field: str) -> int:
    with grpc.insecure_channel(_target(args)) as channel:
        stub = payment_stub(channel)
        try:
            response = invoke(stub)
        except grpc.RpcError as error:
            print(_describe_error(error), file=sys.stderr)
            return 1
    _print_resource(getattr(response, field))
    return 0


def _money(args: argparse.Namespace) -> res.Money:
    return res.Money(amount_minor=args.amount, currency=args.currency.upper())


def cmd_charge(args: argparse.Namespace) -> int:
    request = svc.ChargeRequest(
        idempotency_key=args.idempotency_key, amount=_money(args), payment_method=args.payment_method,
        customer_id=args.customer_id, description=args.description, metadata=_metadata_pairs(args.metadata),
    )  # fmt: skip
    return _call(args, lambda stub: stub.Charge(request, timeout=args.timeout), "payment")


def cmd_refund(args: argparse.Namespace) -> int:
    request = svc.RefundRequest(idempotency_key=args.idempotency_key, payment_id=args.payment_id, reason=args.reason)
    if args.amount is not None:
        request.amount.CopyFrom(_money(args))
    return _call(args, lambda stub: stub.Refund(request, timeout=args.timeout), "refund")


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
    return _call(args, lambda stub: stub.Payout(request, timeout=args.timeout), "payout")


def cmd_get(args: argparse.Namespace) -> int:
    try:
        kind = kind_of(args.id)
    except MalformedId as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if kind is IdKind.PAYMENT:
        return _call(args, lambda s: s.GetPayment(svc.GetPaymentRequest(id=args.id), timeout=args.timeout), "payment")
    if kind is IdKind.REFUND:
        return _call(args, lambda s: s.GetRefund(svc.GetRefundRequest(id=args.id), timeout=args.timeout), "refund")
    return _call(args, lambda s: s.GetPayout(svc.GetPayoutRequest(id=args.id), timeout=args.timeout), "payout")


def cmd_list(args: argparse.Namespace) -> int:
    status = f"PAYMENT_STATUS_{args.status.upper()}" if args.status else "PAYMENT_STATUS_UNSPECIFIED"
    request = svc.ListPaymentsRequest(
        page_size=args.page_size, page_token=args.page_token, status=status, customer_id=args.customer_id
    )
    with grpc.insecure_channel(_target(args)) as channel:
        try:
            response = payment_stub(channel).ListPayments(request, timeout=args.timeout)
        except grpc.RpcError as error:
            print(_describe_error(error), file=sys.stderr)
            return 1
    _print_resource(response)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from server.bootstrap import serve
    from server.logs import configure_logging

    configure_logging()
    env = dict(os.environ)
    if args.listen:
        env["PAYMENTS_LISTEN"] = args.listen
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve(settings))


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Runs the offline PSP sandboxes on their own, for integration tests or a manual session."""
    import signal
    import threading

    from adapters.sandboxes.bank_sandbox import BankSandbox
    from adapters.sandboxes.stripe_sandbox import StripeSandbox

    stripe_sandbox = StripeSandbox(args.host, args.stripe_port).start()
    bank_sandbox = BankSandbox(args.host, args.bank_port).start()
    print(f"Stripe sandbox: {stripe_sandbox.url}  (PAYMENTS_STRIPE_API_BASE, any sk_test_ key)", flush=True)
    print(f"bank sandbox:   {bank_sandbox.url}  (PAYMENTS_BANK_API_BASE)", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    stripe_sandbox.stop()
    bank_sandbox.stop()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from server.bootstrap import run_worker
    from server.logs import configure_logging

    configure_logging()
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_worker(settings))


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
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="payments", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC service")
    serve.add_argument("--listen", help="host:port (default: $PAYMENTS_LISTEN or 127.0.0.1:50051)")
    serve.set_defaults(func=cmd_serve)
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
    charge.set_defaults(func=cmd_charge)

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

    get = _client_parser(sub, "get", "show a payment, refund or payout by id")
    get.add_argument("id")
    get.set_defaults(func=cmd_get)

    listing = _client_parser(sub, "list", "list payments, newest first")
    listing.add_argument("--status", default="")
    listing.add_argument("--customer-id", default="")
    listing.add_argument("--page-size", type=int, default=0)
    listing.add_argument("--page-token", default="")
    listing.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
