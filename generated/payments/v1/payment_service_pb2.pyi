from payments.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChargeRequest(_message.Message):
    __slots__ = ("idempotency_key", "amount", "payment_method", "customer_id", "description", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_METHOD_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    amount: _resources_pb2.Money
    payment_method: str
    customer_id: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, idempotency_key: _Optional[str] = ..., amount: _Optional[_Union[_resources_pb2.Money, _Mapping]] = ..., payment_method: _Optional[str] = ..., customer_id: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ChargeResponse(_message.Message):
    __slots__ = ("payment",)
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    payment: _resources_pb2.Payment
    def __init__(self, payment: _Optional[_Union[_resources_pb2.Payment, _Mapping]] = ...) -> None: ...

class RefundRequest(_message.Message):
    __slots__ = ("idempotency_key", "payment_id", "amount", "reason")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    payment_id: str
    amount: _resources_pb2.Money
    reason: str
    def __init__(self, idempotency_key: _Optional[str] = ..., payment_id: _Optional[str] = ..., amount: _Optional[_Union[_resources_pb2.Money, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class RefundResponse(_message.Message):
    __slots__ = ("refund",)
    REFUND_FIELD_NUMBER: _ClassVar[int]
    refund: _resources_pb2.Refund
    def __init__(self, refund: _Optional[_Union[_resources_pb2.Refund, _Mapping]] = ...) -> None: ...

class PayoutRequest(_message.Message):
    __slots__ = ("idempotency_key", "amount", "sepa_account", "stripe_account_id", "instant", "reference")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    SEPA_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    STRIPE_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    amount: _resources_pb2.Money
    sepa_account: _resources_pb2.SepaAccount
    stripe_account_id: str
    instant: bool
    reference: str
    def __init__(self, idempotency_key: _Optional[str] = ..., amount: _Optional[_Union[_resources_pb2.Money, _Mapping]] = ..., sepa_account: _Optional[_Union[_resources_pb2.SepaAccount, _Mapping]] = ..., stripe_account_id: _Optional[str] = ..., instant: _Optional[bool] = ..., reference: _Optional[str] = ...) -> None: ...

class PayoutResponse(_message.Message):
    __slots__ = ("payout",)
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    payout: _resources_pb2.Payout
    def __init__(self, payout: _Optional[_Union[_resources_pb2.Payout, _Mapping]] = ...) -> None: ...

class GetPaymentRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetPaymentResponse(_message.Message):
    __slots__ = ("payment",)
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    payment: _resources_pb2.Payment
    def __init__(self, payment: _Optional[_Union[_resources_pb2.Payment, _Mapping]] = ...) -> None: ...

class GetRefundRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetRefundResponse(_message.Message):
    __slots__ = ("refund",)
    REFUND_FIELD_NUMBER: _ClassVar[int]
    refund: _resources_pb2.Refund
    def __init__(self, refund: _Optional[_Union[_resources_pb2.Refund, _Mapping]] = ...) -> None: ...

class GetPayoutRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetPayoutResponse(_message.Message):
    __slots__ = ("payout",)
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    payout: _resources_pb2.Payout
    def __init__(self, payout: _Optional[_Union[_resources_pb2.Payout, _Mapping]] = ...) -> None: ...

class ListPaymentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "status", "customer_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    status: _resources_pb2.PaymentStatus
    customer_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., status: _Optional[_Union[_resources_pb2.PaymentStatus, str]] = ..., customer_id: _Optional[str] = ...) -> None: ...

class ListPaymentsResponse(_message.Message):
    __slots__ = ("payments", "next_page_token")
    PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    payments: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Payment]
    next_page_token: str
    def __init__(self, payments: _Optional[_Iterable[_Union[_resources_pb2.Payment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
