"""Typed access to the generated client stub (the generated module itself is untyped)."""

from __future__ import annotations

from typing import Any

import grpc

from payments.admin.v1 import admin_service_pb2_grpc as admin_grpc
from payments.v1 import payment_service_pb2_grpc as svc_grpc

# The generated stub has one attribute per RPC, each a multi-callable taking the request.
PaymentStub = Any
AdminStub = Any


def payment_stub(channel: grpc.Channel | grpc.aio.Channel) -> PaymentStub:
    return svc_grpc.PaymentServiceStub(channel)  # type: ignore[no-untyped-call]


def admin_stub(channel: grpc.Channel | grpc.aio.Channel) -> AdminStub:
    """The payments.admin.v1.AdminService stub (operators; see server/api/admin_servicer.py)."""
    return admin_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
