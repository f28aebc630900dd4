import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PaymentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_STATUS_UNSPECIFIED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_PENDING: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_PROCESSING: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_SUCCEEDED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_FAILED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_REQUIRES_ACTION: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_CANCELED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_REQUIRES_RECONCILIATION: _ClassVar[PaymentStatus]

class RefundStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REFUND_STATUS_UNSPECIFIED: _ClassVar[RefundStatus]
    REFUND_STATUS_PENDING: _ClassVar[RefundStatus]
    REFUND_STATUS_SUCCEEDED: _ClassVar[RefundStatus]
    REFUND_STATUS_FAILED: _ClassVar[RefundStatus]
    REFUND_STATUS_REQUIRES_RECONCILIATION: _ClassVar[RefundStatus]

class PayoutStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYOUT_STATUS_UNSPECIFIED: _ClassVar[PayoutStatus]
    PAYOUT_STATUS_PENDING: _ClassVar[PayoutStatus]
    PAYOUT_STATUS_PROCESSING: _ClassVar[PayoutStatus]
    PAYOUT_STATUS_PAID: _ClassVar[PayoutStatus]
    PAYOUT_STATUS_FAILED: _ClassVar[PayoutStatus]
    PAYOUT_STATUS_RETURNED: _ClassVar[PayoutStatus]
    PAYOUT_STATUS_REQUIRES_RECONCILIATION: _ClassVar[PayoutStatus]
PAYMENT_STATUS_UNSPECIFIED: PaymentStatus
PAYMENT_STATUS_PENDING: PaymentStatus
PAYMENT_STATUS_PROCESSING: PaymentStatus
PAYMENT_STATUS_SUCCEEDED: PaymentStatus
PAYMENT_STATUS_FAILED: PaymentStatus
PAYMENT_STATUS_REQUIRES_ACTION: PaymentStatus
PAYMENT_STATUS_CANCELED: PaymentStatus
PAYMENT_STATUS_REQUIRES_RECONCILIATION: PaymentStatus
REFUND_STATUS_UNSPECIFIED: RefundStatus
REFUND_STATUS_PENDING: RefundStatus
REFUND_STATUS_SUCCEEDED: RefundStatus
REFUND_STATUS_FAILED: RefundStatus
REFUND_STATUS_REQUIRES_RECONCILIATION: RefundStatus
PAYOUT_STATUS_UNSPECIFIED: PayoutStatus
PAYOUT_STATUS_PENDING: PayoutStatus
PAYOUT_STATUS_PROCESSING: PayoutStatus
PAYOUT_STATUS_PAID: PayoutStatus
PAYOUT_STATUS_FAILED: PayoutStatus
PAYOUT_STATUS_RETURNED: PayoutStatus
PAYOUT_STATUS_REQUIRES_RECONCILIATION: PayoutStatus

class Money(_message.Message):
    __slots__ = ("amount_minor", "currency")
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    amount_minor: int
    currency: str
    def __init__(self, amount_minor: _Optional[int] = ..., currency: _Optional[str] = ...) -> None: ...

class Failure(_message.Message):
    __slots__ = ("code", "message", "decline_code")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DECLINE_CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    decline_code: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., decline_code: _Optional[str] = ...) -> None: ...

class PostalAddress(_message.Message):
    __slots__ = ("country", "town", "street", "postcode")
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    TOWN_FIELD_NUMBER: _ClassVar[int]
    STREET_FIELD_NUMBER: _ClassVar[int]
    POSTCODE_FIELD_NUMBER: _ClassVar[int]
    country: str
    town: str
    street: str
    postcode: str
    def __init__(self, country: _Optional[str] = ..., town: _Optional[str] = ..., street: _Optional[str] = ..., postcode: _Optional[str] = ...) -> None: ...

class SepaAccount(_message.Message):
    __slots__ = ("iban", "bic", "name", "address")
    IBAN_FIELD_NUMBER: _ClassVar[int]
    BIC_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    iban: str
    bic: str
    name: str
    address: PostalAddress
    def __init__(self, iban: _Optional[str] = ..., bic: _Optional[str] = ..., name: _Optional[str] = ..., address: _Optional[_Union[PostalAddress, _Mapping]] = ...) -> None: ...

class Payment(_message.Message):
    __slots__ = ("id", "status", "amount", "amount_refunded", "customer_id", "description", "metadata", "psp", "psp_reference", "failure", "create_time", "update_time")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_REFUNDED_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PSP_FIELD_NUMBER: _ClassVar[int]
    PSP_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: PaymentStatus
    amount: Money
    amount_refunded: Money
    customer_id: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    psp: str
    psp_reference: str
    failure: Failure
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[PaymentStatus, str]] = ..., amount: _Optional[_Union[Money, _Mapping]] = ..., amount_refunded: _Optional[_Union[Money, _Mapping]] = ..., customer_id: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., psp: _Optional[str] = ..., psp_reference: _Optional[str] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Refund(_message.Message):
    __slots__ = ("id", "payment_id", "status", "amount", "reason", "psp", "psp_reference", "failure", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PSP_FIELD_NUMBER: _ClassVar[int]
    PSP_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    payment_id: str
    status: RefundStatus
    amount: Money
    reason: str
    psp: str
    psp_reference: str
    failure: Failure
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., payment_id: _Optional[str] = ..., status: _Optional[_Union[RefundStatus, str]] = ..., amount: _Optional[_Union[Money, _Mapping]] = ..., reason: _Optional[str] = ..., psp: _Optional[str] = ..., psp_reference: _Optional[str] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Payout(_message.Message):
    __slots__ = ("id", "status", "amount", "sepa_account", "stripe_account_id", "instant", "reference", "psp", "psp_reference", "failure", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    SEPA_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    STRIPE_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    PSP_FIELD_NUMBER: _ClassVar[int]
    PSP_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: PayoutStatus
    amount: Money
    sepa_account: SepaAccount
    stripe_account_id: str
    instant: bool
    reference: str
    psp: str
    psp_reference: str
    failure: Failure
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[PayoutStatus, str]] = ..., amount: _Optional[_Union[Money, _Mapping]] = ..., sepa_account: _Optional[_Union[SepaAccount, _Mapping]] = ..., stripe_account_id: _Optional[str] = ..., instant: _Optional[bool] = ..., reference: _Optional[str] = ..., psp: _Optional[str] = ..., psp_reference: _Optional[str] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
