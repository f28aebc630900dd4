"""`payments admin stuck|recheck|resolve`: the operator's commands, calling payments.admin.v1.AdminService
with the same connection options as every other client subcommand (only PAYMENTS_ADMIN_CLIENTS may)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from payments.admin.v1 import admin_service_pb2 as admin_pb
from server import cli
from server.api.client import AdminStub, admin_stub

_OUTCOMES = {
    "SUCCEEDED": admin_pb.RESOLVE_OUTCOME_SUCCEEDED,
    "PAID": admin_pb.RESOLVE_OUTCOME_SUCCEEDED,  # a payout's success
    "FAILED": admin_pb.RESOLVE_OUTCOME_FAILED,
    "RETURNED": admin_pb.RESOLVE_OUTCOME_RETURNED,
}


_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp", bound=Message)


def _call(
    args: argparse.Namespace, rpc: Callable[[AdminStub], grpc.UnaryUnaryMultiCallable[_Req, _Resp]], request: _Req
) -> _Resp | None:
    return cli._invoke(args, admin_stub, rpc, request)


def _table(response: admin_pb.ListStuckOperationsResponse) -> None:
    """One line per operation: what an operator scans first; --json has every field."""
    print(f"{'id':<36}  {'client':<16}  {'status':<23}  {'updated (UTC)':<19}  {'runs':>4}  {'key':<8}  last reason")
    for op in response.operations:
        status = admin_pb.OperationStatus.Name(op.status).removeprefix("OPERATION_STATUS_")
        updated = op.update_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
        point = admin_pb.RecoveryPoint.Name(op.key.recovery_point).removeprefix("RECOVERY_POINT_").lower()
        print(f"{op.id:<36}  {op.client_id[:16]:<16}  {status:<23}  {updated:<19}  {op.key.executions:>4}  "
              f"{point:<8}  {op.last_reason}")  # fmt: skip
    if response.next_page_token:
        print(f"more: --page-token {response.next_page_token}")


def cmd_stuck(args: argparse.Namespace) -> int:
    request = admin_pb.ListStuckOperationsRequest(
        page_size=args.page_size, page_token=args.page_token, client_id=args.client_id
    )
    if args.older_than is not None:
        request.older_than.FromNanoseconds(int(args.older_than * 1e9))
    response = _call(args, lambda stub: stub.ListStuckOperations, request)
    if response is None:
        return 1
    if args.json:
        cli._print_resource(response)
    else:
        _table(response)
    return 0


def cmd_recheck(args: argparse.Namespace) -> int:
    response = _call(args, lambda stub: stub.RecheckOperation, admin_pb.RecheckOperationRequest(id=args.id))
    if response is None:
        return 1
    cli._print_resource(response)
    return 0


def _expected_update_time(args: argparse.Namespace) -> timestamp_pb2.Timestamp | None:
    """--expected-update-time, or the operation's update time read now (the server still compares it)."""
    stamp = timestamp_pb2.Timestamp()
    if args.expected_update_time:
        try:
            stamp.FromJsonString(args.expected_update_time)
        except ValueError:
            print("error: --expected-update-time must be an RFC 3339 time such as 2024-05-01T12:00:00.123456Z",
                  file=sys.stderr)  # fmt: skip
            raise SystemExit(2) from None
        return stamp
    current = _call(args, lambda stub: stub.GetOperation, admin_pb.GetOperationRequest(id=args.id))
    if current is None:
        return None
    stamp.CopyFrom(current.operation.update_time)
    print(f"expected update time: {stamp.ToJsonString()} (read just now)", file=sys.stderr)
    return stamp


def cmd_resolve(args: argparse.Namespace) -> int:
    expected = _expected_update_time(args)
    if expected is None:
        return 1
    request = admin_pb.ResolveOperationRequest(
        id=args.id, outcome=_OUTCOMES[args.outcome.upper()], psp_reference=args.psp_reference, reason=args.reason,
        expected_update_time=expected,
    )  # fmt: skip
    response = _call(args, lambda stub: stub.ResolveOperation, request)
    if response is None:
        return 1
    cli._print_resource(response.operation)
    return 0


def add_admin_commands(sub: Any) -> None:
    admin = sub.add_parser("admin", help="operator tools: stuck operations, re-check, resolve (admin clients only)")
    commands = admin.add_subparsers(dest="admin_command", required=True)

    stuck = cli._client_parser(commands, "stuck", "operations in REQUIRES_RECONCILIATION, or in progress too long")
    stuck.add_argument("--older-than", type=float, metavar="SECONDS",
                       help="in progress without an update for this long counts as stuck (default 900)")  # fmt: skip
    stuck.add_argument("--client-id", default="", help="only this client's operations")
    stuck.add_argument("--page-size", type=int, default=0)
    stuck.add_argument("--page-token", default="")
    stuck.add_argument("--json", action="store_true", help="print the whole response as JSON instead of a table")
    stuck.set_defaults(func=cmd_stuck)

    recheck = cli._client_parser(commands, "recheck", "ask the PSP about an operation now (or resume it)")
    recheck.add_argument("id", help="pay_…, re_… or po_… of any client")
    recheck.set_defaults(func=cmd_recheck)

    resolve = cli._client_parser(commands, "resolve", "resolve an operation in REQUIRES_RECONCILIATION")
    resolve.add_argument("id", help="pay_…, re_… or po_… of any client")
    resolve.add_argument("--outcome", required=True, type=str.upper, choices=sorted(_OUTCOMES),
                         help="what the PSP did (payouts: PAID or SUCCEEDED, FAILED, RETURNED)")  # fmt: skip
    resolve.add_argument("--reason", required=True, help="why; recorded in the event log")
    resolve.add_argument("--psp-reference", default="", help="the PSP's id for it, if found")
    resolve.add_argument("--expected-update-time", default="",
                         help="the update_time you judged (RFC 3339); default: read it now")  # fmt: skip
    resolve.set_defaults(func=cmd_resolve)
