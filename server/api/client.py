"""Typed access to the generated client stubs.

The types come from the `*_pb2_grpc.pyi` stubs that mypy-protobuf writes beside the generated code
(`make proto`): each RPC is a multi-callable typed with its request and response messages. Over a
`grpc.Channel` the stub is the synchronous `PaymentServiceStub`; over a `grpc.aio.Channel` it is
`PaymentServiceAsyncStub`, whose calls are awaitable. The async classes exist only in the stubs
(`@type_check_only`), so they are named here as string aliases, for annotations only.
"""

from __future__ import annotations

from typing import TypeAlias, overload

import grpc

from payments.admin.v1 import admin_service_pb2_grpc as admin_grpc
from payments.v1 import payment_service_pb2_grpc as svc_grpc

PaymentStub: TypeAlias = svc_grpc.PaymentServiceStub
PaymentAsyncStub: TypeAlias = "svc_grpc.PaymentServiceAsyncStub"
AdminStub: TypeAlias = admin_grpc.AdminServiceStub
AdminAsyncStub: TypeAlias = "admin_grpc.AdminServiceAsyncStub"


@overload
def payment_stub(channel: grpc.aio.Channel) -> PaymentAsyncStub: ...
@overload
def payment_stub(channel: grpc.Channel) -> PaymentStub: ...
def payment_stub(channel: grpc.Channel | grpc.aio.Channel) -> PaymentStub | PaymentAsyncStub:
    """The payments.v1.PaymentService stub."""
    return svc_grpc.PaymentServiceStub(channel)


@overload
def admin_stub(channel: grpc.aio.Channel) -> AdminAsyncStub: ...
@overload
def admin_stub(channel: grpc.Channel) -> AdminStub: ...
def admin_stub(channel: grpc.Channel | grpc.aio.Channel) -> AdminStub | AdminAsyncStub:
    """The payments.admin.v1.AdminService stub (operators; see server/api/admin_servicer.py)."""
    return admin_grpc.AdminServiceStub(channel)
