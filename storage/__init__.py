"""PostgreSQL persistence through asyncpg: migrations, the idempotency store, repositories."""
