"""Offline PSP sandboxes that speak each PSP's wire protocol, so integration tests need no network."""
