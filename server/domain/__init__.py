"""Pure payment rules: money, states, refunds, idempotency. Imports nothing of the project."""
