"""payments.v1.PaymentService over grpc.aio.

The service is registered with a generic handler whose response serializer passes bytes through: the
use cases return the exact bytes they stored, so a replay is byte-identical, and undecodable request
bytes become INVALID_ARGUMENT instead of grpc's INTERNAL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2

from payments.v1 import payment_service_pb2 as svc
from server.api import convert, validation
from server.api.errors import error_status, grpc_code, internal_status
from server.app import telemetry
from server.app.context import CallContext
from server.app.deadline import Deadline
from server.app.events import EventFeed, Heartbeat, StoredEvent, event_types
from server.app.operations import Operations
from server.app.queries import Queries
from server.app.replies import Reply
from server.domain.errors import FieldViolation, InvalidRequest, ServiceError
from server.domain.ids import IdKind

log = logging.getLogger(__name__)

SERVICE_NAME = "payments.v1.PaymentService"
REPLAYED_HEADER = "idempotent-replayed"
_NO_DEADLINE_THRESHOLD = 86_400.0  # grpc reports "no deadline" as a huge time_remaining()


class MalformedRequest:
    """Stands in for a request whose bytes did not decode."""

    def __init__(self, rpc: str) -> None:
        self.rpc = rpc


class ClientIdentifier(Protocol):
    """Who is calling; authentication plugs in here (docs/contract.md, Security)."""

    def client_id(self, context: grpc.aio.ServicerContext[Any, Any]) -> str: ...


class SingleClient:
    """Every caller is the same client: the local default until authentication is configured."""

    def __init__(self, client_id: str = "default") -> None:
        self._client_id = client_id

    def client_id(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        return self._client_id


def call_context(context: grpc.aio.ServicerContext[Any, Any], client_id: str) -> CallContext:
    remaining = context.time_remaining()
    deadline = Deadline.after(remaining if remaining is not None and remaining < _NO_DEADLINE_THRESHOLD else None)
    # The server span's context when tracing is on (it continues the caller's trace), else the caller's.
    traceparent = telemetry.current_traceparent()
    if traceparent is None:
        for key, value in context.invocation_metadata() or ():
            if key == "traceparent" and isinstance(value, str):
                traceparent = value[:128]
    return CallContext(client_id=client_id, deadline=deadline, trace_context=traceparent)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], status: status_pb2.Status) -> None:
    await context.abort(
        grpc_code(status.code),
        status.message,
        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
    )


class PaymentServicer:
    def __init__(
        self, operations: Operations, queries: Queries, identifier: ClientIdentifier, events: EventFeed
    ) -> None:
        self._ops = operations
        self._queries = queries
        self._identifier = identifier
        self._events = events

    async def _run(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        request: object,
        work: Callable[[CallContext], Awaitable[Reply | Message]],
    ) -> bytes | Message:
        status: status_pb2.Status
        rpc = request.rpc if isinstance(request, MalformedRequest) else type(request).__name__.removesuffix("Request")
        started = time.monotonic()
        try:
            ctx = call_context(context, self._identifier.client_id(context))  # authentication comes first
            if isinstance(request, MalformedRequest):
                raise InvalidRequest([FieldViolation("request", "is not a valid protobuf message", "MALFORMED")])
            result = await work(ctx)
        except ServiceError as exc:
            status = error_status(exc)
        except Exception:
            log.exception("unexpected error in %s", type(request).__name__)
            status = internal_status("internal error; the operation may be retried with the same key")
        else:
            if not isinstance(result, Reply):
                record_rpc(rpc, 0, started)
                return result
            if result.replayed:
                await context.send_initial_metadata(((REPLAYED_HEADER, "true"),))
            if result.code == 0:
                record_rpc(rpc, 0, started)
                return result.body
            status = status_pb2.Status.FromString(result.body)
        record_rpc(rpc, status.code, started)
        await _abort(context, status)
        raise AssertionError("abort returned")  # pragma: no cover - abort always raises

    async def Charge(self, request: svc.ChargeRequest, context: grpc.aio.ServicerContext[Any, Any]) -> bytes | Message:
        return await self._run(context, request, lambda ctx: self._ops.charge(validation.charge_command(request), ctx))

    async def Refund(self, request: svc.RefundRequest, context: grpc.aio.ServicerContext[Any, Any]) -> bytes | Message:
        return await self._run(context, request, lambda ctx: self._ops.refund(validation.refund_command(request), ctx))

    async def Payout(self, request: svc.PayoutRequest, context: grpc.aio.ServicerContext[Any, Any]) -> bytes | Message:
        return await self._run(context, request, lambda ctx: self._ops.payout(validation.payout_command(request), ctx))

    async def CapturePayment(
        self, request: svc.CapturePaymentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes | Message:
        return await self._run(
            context, request, lambda ctx: self._ops.capture(validation.capture_command(request), ctx)
        )

    async def CancelPayment(
        self, request: svc.CancelPaymentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes | Message:
        return await self._run(context, request, lambda ctx: self._ops.cancel(validation.cancel_command(request), ctx))

    async def ListEvents(
        self, request: svc.ListEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes | Message:
        async def work(ctx: CallContext) -> Message:
            types, resource_id = validation.list_events_filters(request)
            page = await self._events.page(
                ctx.client_id, page_size=request.page_size, page_token=request.page_token, types=types,
                resource_id=resource_id,
            )  # fmt: skip
            return svc.ListEventsResponse(
                events=[convert.event_pb(e) for e in page.events], next_page_token=page.next_page_token
            )

        return await self._run(context, request, work)

    async def WatchEvents(
        self, request: svc.WatchEventsRequest | MalformedRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[svc.WatchEventsResponse]:
        """The stream: each event, and a heartbeat while idle. Errors before the first message are the
        usual status with ErrorInfo; a stream cut later is resumed by the caller from its last id."""
        try:
            client_id = self._identifier.client_id(context)
            if isinstance(request, MalformedRequest):
                raise InvalidRequest([FieldViolation("request", "is not a valid protobuf message", "MALFORMED")])
            types = event_types(list(request.types))
            feed = self._events.watch(client_id, request.after_event_id, types)
            first = await anext(feed)
        except ServiceError as exc:
            await _abort(context, error_status(exc))
            return
        item: StoredEvent | Heartbeat = first
        while True:
            if isinstance(item, Heartbeat):
                yield svc.WatchEventsResponse(heartbeat_time=convert.timestamp_pb(item.at))
            else:
                yield svc.WatchEventsResponse(event=convert.event_pb(item))
            item = await anext(feed)

    async def GetPayment(
        self, request: svc.GetPaymentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes | Message:
        async def work(ctx: CallContext) -> Message:
            payment = await self._queries.get_payment(validation.resource_id(request.id, IdKind.PAYMENT), ctx)
            return svc.GetPaymentResponse(payment=convert.payment_pb(payment))

        return await self._run(context, request, work)

    async def GetRefund(
        self, request: svc.GetRefundRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes | Message:
        async def work(ctx: CallContext) -> Message:
            refund = await self._queries.get_refund(validation.resource_id(request.id, IdKind.REFUND), ctx)
            return svc.GetRefundResponse(refund=convert.refund_pb(refund))

        return await self._run(context, request, work)

    async def GetPayout(
        self, request: svc.GetPayoutRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes | Message:
        async def work(ctx: CallContext) -> Message:
            payout = await self._queries.get_payout(validation.resource_id(request.id, IdKind.PAYOUT), ctx)
            return svc.GetPayoutResponse(payout=convert.payout_pb(payout))

        return await self._run(context, request, work)

    async def ListPayments(
        self, request: svc.ListPaymentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes | Message:
        async def work(ctx: CallContext) -> Message:
            page = await self._queries.list_payments(validation.list_query(request), ctx)
            return svc.ListPaymentsResponse(
                payments=[convert.payment_pb(p) for p in page.items], next_page_token=page.next_page_token
            )

        return await self._run(context, request, work)

    async def ListRefunds(
        self, request: svc.ListRefundsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes | Message:
        async def work(ctx: CallContext) -> Message:
            page = await self._queries.list_refunds(validation.list_refunds_query(request), ctx)
            return svc.ListRefundsResponse(
                refunds=[convert.refund_pb(r) for r in page.items], next_page_token=page.next_page_token
            )

        return await self._run(context, request, work)

    async def ListPayouts(
        self, request: svc.ListPayoutsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes | Message:
        async def work(ctx: CallContext) -> Message:
            page = await self._queries.list_payouts(validation.list_payouts_query(request), ctx)
            return svc.ListPayoutsResponse(
                payouts=[convert.payout_pb(p) for p in page.items], next_page_token=page.next_page_token
            )

        return await self._run(context, request, work)


def record_rpc(rpc: str, code: int, started: float, service: str = SERVICE_NAME) -> None:
    """The RPC latency metric by service, method and status code (one definition for every servicer).

    A slow RPC, or one that failed for a reason other than the caller's input, is also logged, with its
    trace id: with head sampling most traces are not kept, and this line says which trace to look up
    (the trace id is in every log line, sampled or not)."""
    elapsed = time.monotonic() - started
    code_name = grpc_code(code).name
    attributes = {"rpc.service": service, "rpc.method": rpc, "rpc.grpc.status_code": code_name}
    telemetry.rpc_duration.record(elapsed * 1000, attributes)
    if elapsed >= SLOW_RPC_SECONDS or code_name in _NOTEWORTHY_CODES:
        extra = {"rpc_method": rpc, "grpc_code": code_name, "duration_ms": round(elapsed * 1000)}
        log.warning("rpc %s answered %s in %.3f s", rpc, code_name, elapsed, extra=extra)


SLOW_RPC_SECONDS = 2.0
# Codes that are the service's or the PSP's trouble, not the caller's input.
_NOTEWORTHY_CODES = frozenset({"UNAVAILABLE", "INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED"})


_REQUESTS: dict[str, type[Message]] = {
    "Charge": svc.ChargeRequest,
    "Refund": svc.RefundRequest,
    "Payout": svc.PayoutRequest,
    "GetPayment": svc.GetPaymentRequest,
    "GetRefund": svc.GetRefundRequest,
    "GetPayout": svc.GetPayoutRequest,
    "ListPayments": svc.ListPaymentsRequest,
    "ListRefunds": svc.ListRefundsRequest,
    "ListPayouts": svc.ListPayoutsRequest,
    "CapturePayment": svc.CapturePaymentRequest,
    "CancelPayment": svc.CancelPaymentRequest,
    "ListEvents": svc.ListEventsRequest,
}


def request_deserializer(rpc: str, message_type: type[Message]) -> Callable[[bytes], object]:
    """Undecodable bytes become a MalformedRequest, answered INVALID_ARGUMENT, not grpc's INTERNAL."""

    def parse(data: bytes) -> object:
        try:
            return message_type.FromString(data)
        except (DecodeError, RuntimeError, ValueError):
            return MalformedRequest(rpc)

    return parse


def _serialize(response: bytes | Message) -> bytes:
    if isinstance(response, bytes):
        return response
    return convert.serialize(response)


def generic_handler(servicer: PaymentServicer) -> grpc.GenericRpcHandler[Any, Any]:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name),
            request_deserializer=request_deserializer(name, message),
            response_serializer=_serialize,
        )
        for name, message in _REQUESTS.items()
    }
    handlers["WatchEvents"] = grpc.unary_stream_rpc_method_handler(
        servicer.WatchEvents,
        request_deserializer=request_deserializer("WatchEvents", svc.WatchEventsRequest),
        response_serializer=_serialize,
    )
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)
