"""The JSON log formatter (server/logs.py) redacts Stripe's webhook signing secrets and PaymentIntent
client secrets wherever a record carries them: message, arguments, extra fields and exception text."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from server.logs import JsonFormatter

INTENT = "pi_3MtwBwLkdIwHu7ix28a3tqPa"
CLIENT_SECRET = f"{INTENT}_secret_YrKJUKribcBjcG8HVhfZluoGH"
RETURN_URL = "https://shop.example/return?payment_intent={}&payment_intent_client_secret={}&redirect_status=succeeded"

# (text holding a secret, the text as the log shows it, the secret part that must not appear)
FORMS = [
    pytest.param("whsec_Qm9vYmFyQmF6UXV4MTIzNDU2Nzg5MGFi", "whsec_[REDACTED]", "Qm9vYmFy", id="webhook secret"),
    pytest.param("whsec_old_0123456789abcdef", "whsec_[REDACTED]", "0123456789", id="webhook secret with _"),
    pytest.param(CLIENT_SECRET, f"{INTENT}_secret_[REDACTED]", "YrKJUKribc", id="client secret"),
    pytest.param(
        RETURN_URL.format(INTENT, CLIENT_SECRET),
        RETURN_URL.format(INTENT, f"{INTENT}_secret_[REDACTED]"),
        "YrKJUKribc",
        id="client secret in a return URL",
    ),
]


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    return logging.getLogger("tests.redaction").makeRecord(
        "tests.redaction", logging.WARNING, __file__, 1, msg, args, None, extra=extra
    )


def formatted(entry: logging.LogRecord) -> tuple[str, dict[str, object]]:
    line = JsonFormatter().format(entry)
    return line, json.loads(line)


@pytest.mark.parametrize(("text", "shown", "hidden"), FORMS)
def test_a_secret_in_the_message_is_redacted(text: str, shown: str, hidden: str) -> None:
    line, entry = formatted(record(f"stripe said: {text}"))
    assert entry["message"] == f"stripe said: {shown}"
    assert hidden not in line


@pytest.mark.parametrize(("text", "shown", "hidden"), FORMS)
def test_a_secret_in_the_arguments_is_redacted(text: str, shown: str, hidden: str) -> None:
    line, entry = formatted(record("event %s carried %s and %r", "evt_1", text, {"client_secret": text}))
    assert entry["message"] == f"event evt_1 carried {shown} and {{'client_secret': '{shown}'}}"
    assert hidden not in line


@pytest.mark.parametrize(("text", "shown", "hidden"), FORMS)
def test_a_secret_in_an_extra_field_is_redacted(text: str, shown: str, hidden: str) -> None:
    line, entry = formatted(record("stripe webhook refused", secret=text, secrets=[text, "whsec_b"]))
    assert entry["secret"] == shown
    assert entry["secrets"] == str([shown, "whsec_[REDACTED]"])
    assert hidden not in line
    assert "whsec_b" not in line


@pytest.mark.parametrize(("text", "shown", "hidden"), FORMS)
def test_a_secret_in_an_exception_is_redacted(text: str, shown: str, hidden: str) -> None:
    entry = record("verification failed")
    try:
        raise ValueError(f"cannot verify with {text}")
    except ValueError:
        entry.exc_info = sys.exc_info()
    line, body = formatted(entry)
    assert f"ValueError: cannot verify with {shown}" in str(body["exception"])
    assert hidden not in line


def test_what_is_not_a_secret_stays_readable() -> None:
    """The bare prefix (a configuration error names it), intent ids and other Stripe ids are kept."""
    text = f"each must start with whsec_; intent {INTENT}, refund re_3MtwBw, event evt_1NqJ"
    _, entry = formatted(record(text))
    assert entry["message"] == text
