"""Admin records (server/app/admin_port.py) to payments.admin.v1 messages."""

from __future__ import annotations

from payments.admin.v1 import admin_service_pb2 as admin_pb
from server.api.convert import failure_pb, money_pb, timestamp_pb
from server.app.admin import RecheckResult
from server.app.admin_port import EventRecord, KeyState, OperationRecord
from server.domain.ids import IdKind, format_id
from server.domain.model import Refund

_RECHECK: dict[RecheckResult, admin_pb.RecheckResult.ValueType] = {
    RecheckResult.TRANSITIONED: admin_pb.RECHECK_RESULT_TRANSITIONED,
    RecheckResult.UNCHANGED: admin_pb.RECHECK_RESULT_UNCHANGED,
    RecheckResult.NO_EVIDENCE: admin_pb.RECHECK_RESULT_NO_EVIDENCE,
    RecheckResult.RECOVERY_SCHEDULED: admin_pb.RECHECK_RESULT_RECOVERY_SCHEDULED,
    RecheckResult.EXECUTION_IN_FLIGHT: admin_pb.RECHECK_RESULT_EXECUTION_IN_FLIGHT,
    RecheckResult.CHANGED_MEANWHILE: admin_pb.RECHECK_RESULT_CHANGED_MEANWHILE,
}


def status_pb(status: str | None) -> admin_pb.OperationStatus.ValueType:
    """A stored status ("REQUIRES_RECONCILIATION") as its OperationStatus; None is UNSPECIFIED."""
    return admin_pb.OperationStatus.Value(f"OPERATION_STATUS_{status or 'UNSPECIFIED'}")


def recheck_result_pb(result: RecheckResult) -> admin_pb.RecheckResult.ValueType:
    return _RECHECK[result]


def _key_pb(key: KeyState) -> admin_pb.IdempotencyKeyState:
    message = admin_pb.IdempotencyKeyState(
        executions=key.executions,
        recovery_point=admin_pb.RECOVERY_POINT_FINISHED if key.finished else admin_pb.RECOVERY_POINT_STARTED,
    )
    if key.recover_after is not None:
        message.recover_after_time.CopyFrom(timestamp_pb(key.recover_after))
    if key.locked_until is not None:
        message.lease_expire_time.CopyFrom(timestamp_pb(key.locked_until))
    return message


def _event_pb(event: EventRecord) -> admin_pb.StatusEvent:
    return admin_pb.StatusEvent(
        from_status=status_pb(event.from_status), to_status=status_pb(event.to_status), actor=event.actor,
        reason=event.reason, occur_time=timestamp_pb(event.occurred_at),
    )  # fmt: skip


def operation_pb(record: OperationRecord) -> admin_pb.Operation:
    resource = record.resource
    message = admin_pb.Operation(
        resource_type=admin_pb.ResourceType.Value(f"RESOURCE_TYPE_{record.resource_type.upper()}"),
        id=record.ref.public_id,
        client_id=resource.client_id, status=status_pb(str(resource.status)), amount=money_pb(resource.amount),
        psp=resource.psp, psp_reference=resource.psp_reference or "", failure=failure_pb(resource.failure),
        create_time=timestamp_pb(resource.created_at), update_time=timestamp_pb(resource.updated_at),
        last_actor=record.last_actor, last_reason=record.last_reason,
        recent_events=[_event_pb(e) for e in record.events],
    )  # fmt: skip
    if record.key is not None:  # a missing key row (never deleted, so never seen) leaves only the key's name
        message.key.CopyFrom(_key_pb(record.key))
    message.key.idempotency_key = record.idempotency_key
    if isinstance(resource, Refund):
        message.payment_id = format_id(IdKind.PAYMENT, resource.payment_id)
    return message
