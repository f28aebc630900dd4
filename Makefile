# Two commands on a fresh machine with Python 3.11+ and make: `make serve` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: serve test test-stripe-live bench bench-growth lint typecheck buflint proto sandbox clean

$(STAMP): pyproject.toml client/pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ./client -e '.[dev]'
	@touch $(STAMP)

serve: $(STAMP)
	$(BIN)/payments serve

# Three pytest processes, a test file each at a time (--dist loadfile: module fixtures such as a served
# process stay in one process); each starts its own PostgreSQL. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 3
test: lint typecheck buflint
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 -n $(TEST_WORKERS) --dist loadfile

# The Stripe adapter's integration suite against Stripe's test mode (or any Stripe-compatible server
# at PAYMENTS_STRIPE_API_BASE). Needs PAYMENTS_STRIPE_API_KEY=sk_test_…; skipped without it.
test-stripe-live: $(STAMP)
	@if [ -z "$$PAYMENTS_STRIPE_API_KEY" ]; then \
		echo "test-stripe-live skipped: set PAYMENTS_STRIPE_API_KEY=sk_test_... (and PAYMENTS_STRIPE_API_BASE for a Stripe-compatible server)"; \
	else PAYMENTS_STRIPE_LIVE=1 $(BIN)/python -m pytest -q -p no:cacheprovider -rs tests/integration/test_stripe_adapter.py; fi

BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

# Throughput and latency next to floors measured in the same run (docs/contract.md, Performance); results in bench-results/.
bench: $(BENCH_STAMP)
	$(BIN)/python -m server.bench.run

# The same, plus Charge with 5 million existing payments and keys (takes several minutes more).
bench-growth: $(BENCH_STAMP)
	$(BIN)/python -m server.bench.run --growth-rows 5000000

sandbox: $(STAMP)
	$(BIN)/payments sandbox

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# buf lint needs Node's npx (it fetches buf from the npm registry); skipped with a message without it.
buflint:
	@if command -v npx >/dev/null 2>&1; then \
		echo "buf lint"; npx --yes @bufbuild/buf lint; \
	else echo "npx not found: skipping buf lint"; fi

proto: $(STAMP)
	$(BIN)/python proto/generate.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
