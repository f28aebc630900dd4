"""Use cases (charge, refund, payout, queries) and the ports they need."""
