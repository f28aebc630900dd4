from payments_client import Money, PaymentsClient

with PaymentsClient() as client:  # $PAYMENTS_TARGET, else 127.0.0.1:50051 (`make serve`)
    charged = client.charge(Money(amount_minor=1250, currency="EUR"), "pm_card_visa")
    replay = client.charge(charged.resource.amount, "pm_card_visa", idempotency_key=charged.idempotency_key)
    refund = client.refund(charged.resource.id)
    print(charged.idempotency_key, charged.resource.id, replay.replayed, refund.resource.status)
