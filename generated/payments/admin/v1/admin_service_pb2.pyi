import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from payments.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResourceType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOURCE_TYPE_UNSPECIFIED: _ClassVar[ResourceType]
    RESOURCE_TYPE_PAYMENT: _ClassVar[ResourceType]
    RESOURCE_TYPE_REFUND: _ClassVar[ResourceType]
    RESOURCE_TYPE_PAYOUT: _ClassVar[ResourceType]

class OperationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATION_STATUS_UNSPECIFIED: _ClassVar[OperationStatus]
    OPERATION_STATUS_PENDING: _ClassVar[OperationStatus]
    OPERATION_STATUS_PROCESSING: _ClassVar[OperationStatus]
    OPERATION_STATUS_SUCCEEDED: _ClassVar[OperationStatus]
    OPERATION_STATUS_FAILED: _ClassVar[OperationStatus]
    OPERATION_STATUS_REQUIRES_ACTION: _ClassVar[OperationStatus]
    OPERATION_STATUS_CANCELED: _ClassVar[OperationStatus]
    OPERATION_STATUS_REQUIRES_RECONCILIATION: _ClassVar[OperationStatus]
    OPERATION_STATUS_PAID: _ClassVar[OperationStatus]
    OPERATION_STATUS_RETURNED: _ClassVar[OperationStatus]

class RecoveryPoint(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECOVERY_POINT_UNSPECIFIED: _ClassVar[RecoveryPoint]
    RECOVERY_POINT_STARTED: _ClassVar[RecoveryPoint]
    RECOVERY_POINT_FINISHED: _ClassVar[RecoveryPoint]

class RecheckResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECHECK_RESULT_UNSPECIFIED: _ClassVar[RecheckResult]
    RECHECK_RESULT_TRANSITIONED: _ClassVar[RecheckResult]
    RECHECK_RESULT_UNCHANGED: _ClassVar[RecheckResult]
    RECHECK_RESULT_NO_EVIDENCE: _ClassVar[RecheckResult]
    RECHECK_RESULT_RECOVERY_SCHEDULED: _ClassVar[RecheckResult]
    RECHECK_RESULT_EXECUTION_IN_FLIGHT: _ClassVar[RecheckResult]
    RECHECK_RESULT_CHANGED_MEANWHILE: _ClassVar[RecheckResult]

class ResolveOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOLVE_OUTCOME_UNSPECIFIED: _ClassVar[ResolveOutcome]
    RESOLVE_OUTCOME_SUCCEEDED: _ClassVar[ResolveOutcome]
    RESOLVE_OUTCOME_FAILED: _ClassVar[ResolveOutcome]
    RESOLVE_OUTCOME_RETURNED: _ClassVar[ResolveOutcome]
RESOURCE_TYPE_UNSPECIFIED: ResourceType
RESOURCE_TYPE_PAYMENT: ResourceType
RESOURCE_TYPE_REFUND: ResourceType
RESOURCE_TYPE_PAYOUT: ResourceType
OPERATION_STATUS_UNSPECIFIED: OperationStatus
OPERATION_STATUS_PENDING: OperationStatus
OPERATION_STATUS_PROCESSING: OperationStatus
OPERATION_STATUS_SUCCEEDED: OperationStatus
OPERATION_STATUS_FAILED: OperationStatus
OPERATION_STATUS_REQUIRES_ACTION: OperationStatus
OPERATION_STATUS_CANCELED: OperationStatus
OPERATION_STATUS_REQUIRES_RECONCILIATION: OperationStatus
OPERATION_STATUS_PAID: OperationStatus
OPERATION_STATUS_RETURNED: OperationStatus
RECOVERY_POINT_UNSPECIFIED: RecoveryPoint
RECOVERY_POINT_STARTED: RecoveryPoint
RECOVERY_POINT_FINISHED: RecoveryPoint
RECHECK_RESULT_UNSPECIFIED: RecheckResult
RECHECK_RESULT_TRANSITIONED: RecheckResult
RECHECK_RESULT_UNCHANGED: RecheckResult
RECHECK_RESULT_NO_EVIDENCE: RecheckResult
RECHECK_RESULT_RECOVERY_SCHEDULED: RecheckResult
RECHECK_RESULT_EXECUTION_IN_FLIGHT: RecheckResult
RECHECK_RESULT_CHANGED_MEANWHILE: RecheckResult
RESOLVE_OUTCOME_UNSPECIFIED: ResolveOutcome
RESOLVE_OUTCOME_SUCCEEDED: ResolveOutcome
RESOLVE_OUTCOME_FAILED: ResolveOutcome
RESOLVE_OUTCOME_RETURNED: ResolveOutcome

class IdempotencyKeyState(_message.Message):
    __slots__ = ("idempotency_key", "executions", "recovery_point", "recover_after_time", "lease_expire_time")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_POINT_FIELD_NUMBER: _ClassVar[int]
    RECOVER_AFTER_TIME_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    executions: int
    recovery_point: RecoveryPoint
    recover_after_time: _timestamp_pb2.Timestamp
    lease_expire_time: _timestamp_pb2.Timestamp
    def __init__(self, idempotency_key: _Optional[str] = ..., executions: _Optional[int] = ..., recovery_point: _Optional[_Union[RecoveryPoint, str]] = ..., recover_after_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lease_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StatusEvent(_message.Message):
    __slots__ = ("from_status", "to_status", "actor", "reason", "occur_time")
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OCCUR_TIME_FIELD_NUMBER: _ClassVar[int]
    from_status: OperationStatus
    to_status: OperationStatus
    actor: str
    reason: str
    occur_time: _timestamp_pb2.Timestamp
    def __init__(self, from_status: _Optional[_Union[OperationStatus, str]] = ..., to_status: _Optional[_Union[OperationStatus, str]] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., occur_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ("resource_type", "id", "client_id", "status", "amount", "psp", "psp_reference", "failure", "create_time", "update_time", "last_actor", "last_reason", "key", "recent_events", "payment_id")
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PSP_FIELD_NUMBER: _ClassVar[int]
    PSP_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTOR_FIELD_NUMBER: _ClassVar[int]
    LAST_REASON_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    RECENT_EVENTS_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    resource_type: ResourceType
    id: str
    client_id: str
    status: OperationStatus
    amount: _resources_pb2.Money
    psp: str
    psp_reference: str
    failure: _resources_pb2.Failure
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    last_actor: str
    last_reason: str
    key: IdempotencyKeyState
    recent_events: _containers.RepeatedCompositeFieldContainer[StatusEvent]
    payment_id: str
    def __init__(self, resource_type: _Optional[_Union[ResourceType, str]] = ..., id: _Optional[str] = ..., client_id: _Optional[str] = ..., status: _Optional[_Union[OperationStatus, str]] = ..., amount: _Optional[_Union[_resources_pb2.Money, _Mapping]] = ..., psp: _Optional[str] = ..., psp_reference: _Optional[str] = ..., failure: _Optional[_Union[_resources_pb2.Failure, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_actor: _Optional[str] = ..., last_reason: _Optional[str] = ..., key: _Optional[_Union[IdempotencyKeyState, _Mapping]] = ..., recent_events: _Optional[_Iterable[_Union[StatusEvent, _Mapping]]] = ..., payment_id: _Optional[str] = ...) -> None: ...

class ListStuckOperationsRequest(_message.Message):
    __slots__ = ("older_than", "page_size", "page_token", "client_id")
    OLDER_THAN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    older_than: _duration_pb2.Duration
    page_size: int
    page_token: str
    client_id: str
    def __init__(self, older_than: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., client_id: _Optional[str] = ...) -> None: ...

class ListStuckOperationsResponse(_message.Message):
    __slots__ = ("operations", "next_page_token")
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    operations: _containers.RepeatedCompositeFieldContainer[Operation]
    next_page_token: str
    def __init__(self, operations: _Optional[_Iterable[_Union[Operation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetOperationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetOperationResponse(_message.Message):
    __slots__ = ("operation",)
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    operation: Operation
    def __init__(self, operation: _Optional[_Union[Operation, _Mapping]] = ...) -> None: ...

class RecheckOperationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RecheckOperationResponse(_message.Message):
    __slots__ = ("result", "operation")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    result: RecheckResult
    operation: Operation
    def __init__(self, result: _Optional[_Union[RecheckResult, str]] = ..., operation: _Optional[_Union[Operation, _Mapping]] = ...) -> None: ...

class ResolveOperationRequest(_message.Message):
    __slots__ = ("id", "outcome", "psp_reference", "reason", "expected_update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    PSP_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    outcome: ResolveOutcome
    psp_reference: str
    reason: str
    expected_update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., outcome: _Optional[_Union[ResolveOutcome, str]] = ..., psp_reference: _Optional[str] = ..., reason: _Optional[str] = ..., expected_update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ResolveOperationResponse(_message.Message):
    __slots__ = ("operation",)
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    operation: Operation
    def __init__(self, operation: _Optional[_Union[Operation, _Mapping]] = ...) -> None: ...
