"""Structured JSON logs on stderr (one object per line), safe by construction: callers log ids and
codes, never card data, IBANs or secrets; trace ids are added when tracing is on."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from opentelemetry import trace

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


# Last line of defence: whatever slips into a message, these never leave the process.
_SECRETS = [
    (re.compile(r"\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]{6,}"), r"\1_\2_[REDACTED]"),
    # Stripe webhook signing secrets, and PaymentIntent client secrets (whoever holds one can complete the
    # payment in a browser; the intent id before it stays). Also after an underscore, as in `old_whsec_…`.
    (re.compile(r"(?<![A-Za-z0-9])whsec_[A-Za-z0-9_+/=-]+"), "whsec_[REDACTED]"),
    (re.compile(r"(?<![A-Za-z0-9])(pi_[A-Za-z0-9]+_secret_)[A-Za-z0-9]+"), r"\1[REDACTED]"),
    (re.compile(r"\b(Bearer\s+)[A-Za-z0-9._~+/=-]{6,}", re.IGNORECASE), r"\1[REDACTED]"),
    (re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}\s?[A-Z0-9]{1,4}\b"), "[IBAN]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[CARD]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                shown = value if isinstance(value, (int, float, bool)) or value is None else redact(str(value))
                entry[key] = shown
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry)


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Chatty libraries: pgserver about every pg_ctl call, stripe and httpx about every request (with URLs).
    for chatty in ("pgserver", "stripe", "httpx"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
