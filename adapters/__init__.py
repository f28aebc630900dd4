"""Outbound PSP adapters behind server.app.psp.PaymentProvider, the retry policy, and the sandboxes."""
