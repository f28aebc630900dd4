"""payments.admin.v1.AdminService over grpc.aio: the operator's tools (server/app/admin.py).

It is a separate service, not more RPCs on payments.v1, so callers of the payment API never see it and
a deployment can route or firewall it on its own. Identity comes from the same ClientIdentifier as the
payment service (mTLS certificate or bearer token); the use case admits only PAYMENTS_ADMIN_CLIENTS.
Errors use the same rich error model as payments.v1, with this service as the ErrorInfo domain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from payments.admin.v1 import admin_service_pb2 as admin_pb
from server.api import admin_convert, admin_validation
from server.api.convert import serialize
from server.api.errors import error_status, grpc_code, internal_status
from server.api.servicer import ClientIdentifier, MalformedRequest, call_context, record_rpc, request_deserializer
from server.app.admin import Admin
from server.app.context import CallContext
from server.domain.errors import FieldViolation, InvalidRequest, ServiceError

log = logging.getLogger(__name__)

ADMIN_SERVICE_NAME = "payments.admin.v1.AdminService"


class AdminServicer:
    def __init__(self, admin: Admin, identifier: ClientIdentifier) -> None:
        self._admin = admin
        self._identifier = identifier

    async def _run(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        request: object,
        work: Callable[[CallContext], Awaitable[Message]],
    ) -> Message:
        rpc = request.rpc if isinstance(request, MalformedRequest) else type(request).__name__.removesuffix("Request")
        started = time.monotonic()
        try:
            ctx = call_context(context, self._identifier.client_id(context))  # authentication comes first
            self._admin.authorize(ctx)  # then authorization: nothing of the request is looked at before
            if isinstance(request, MalformedRequest):
                raise InvalidRequest([FieldViolation("request", "is not a valid protobuf message", "MALFORMED")])
            result = await work(ctx)
        except ServiceError as exc:
            status = error_status(exc, ADMIN_SERVICE_NAME)
        except Exception:
            log.exception("unexpected error in admin %s", rpc)
            status = internal_status("internal error; look at the operation before retrying", ADMIN_SERVICE_NAME)
        else:
            record_rpc(rpc, 0, started, ADMIN_SERVICE_NAME)
            return result
        record_rpc(rpc, status.code, started, ADMIN_SERVICE_NAME)
        await context.abort(
            grpc_code(status.code),
            status.message,
            trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
        )
        raise AssertionError("abort returned")  # pragma: no cover - abort always raises

    async def ListStuckOperations(
        self, request: admin_pb.ListStuckOperationsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Message:
        async def work(ctx: CallContext) -> Message:
            page = await self._admin.list_stuck(admin_validation.stuck_listing(request), ctx)
            return admin_pb.ListStuckOperationsResponse(
                operations=[admin_convert.operation_pb(r) for r in page.records], next_page_token=page.next_page_token
            )

        return await self._run(context, request, work)

    async def GetOperation(
        self, request: admin_pb.GetOperationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Message:
        async def work(ctx: CallContext) -> Message:
            record = await self._admin.get(admin_validation.resource_ref(request.id), ctx)
            return admin_pb.GetOperationResponse(operation=admin_convert.operation_pb(record))

        return await self._run(context, request, work)

    async def RecheckOperation(
        self, request: admin_pb.RecheckOperationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Message:
        async def work(ctx: CallContext) -> Message:
            report = await self._admin.recheck(admin_validation.resource_ref(request.id), ctx)
            return admin_pb.RecheckOperationResponse(
                result=admin_convert.recheck_result_pb(report.result),
                operation=admin_convert.operation_pb(report.record),
            )

        return await self._run(context, request, work)

    async def ResolveOperation(
        self, request: admin_pb.ResolveOperationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Message:
        async def work(ctx: CallContext) -> Message:
            record = await self._admin.resolve(admin_validation.resolve_command(request), ctx)
            return admin_pb.ResolveOperationResponse(operation=admin_convert.operation_pb(record))

        return await self._run(context, request, work)


_REQUESTS: dict[str, type[Message]] = {
    "ListStuckOperations": admin_pb.ListStuckOperationsRequest,
    "GetOperation": admin_pb.GetOperationRequest,
    "RecheckOperation": admin_pb.RecheckOperationRequest,
    "ResolveOperation": admin_pb.ResolveOperationRequest,
}


def admin_handler(servicer: AdminServicer) -> grpc.GenericRpcHandler[Any, Any]:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name),
            request_deserializer=request_deserializer(name, message),
            response_serializer=serialize,
        )
        for name, message in _REQUESTS.items()
    }
    return grpc.method_handlers_generic_handler(ADMIN_SERVICE_NAME, handlers)
