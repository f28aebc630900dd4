"""SEPA credit-transfer wire formats for bank payouts.

Why a package of its own: the bank adapter (HTTP to the gateway) and the offline bank sandbox both
need the same pure, well-tested pieces, and none of them does I/O:

* :mod:`adapters.bank.sepa_text` — conversion of names and remittance text to the EPC character set.
* :mod:`adapters.bank.accounts` — IBAN/BIC validation (schwifty) and IBAN masking for logs.
* :mod:`adapters.bank.pain001` — identifiers derived from the payout id, pain.001.001.09 building
  (sepaxml) and XSD validation, and a reader for the receiving side.
* :mod:`adapters.bank.pain002` — pain.002 status reports (.10 written, .03 and .10 read): generator,
  subset XSD, parser, and the status → outcome mapping.
* :mod:`adapters.bank.camt` — camt.053 statements and camt.054 notifications (.02, .08): official XSDs,
  parser, and the writer the sandbox uses; :mod:`adapters.bank.statements` fetches them over HTTP.
* :mod:`adapters.bank.errors` — the typed errors; :mod:`adapters.bank.xmltools` — lxml plumbing.
"""

from adapters.bank.accounts import mask_iban, validate_bic, validate_iban
from adapters.bank.errors import (
    BankError,
    BankValidationError,
    DocumentError,
    InvalidAccountError,
    Pain002ParseError,
    SchemaValidationError,
)
from adapters.bank.pain001 import (
    CreditTransfer,
    DebtorAccount,
    MessageIds,
    build_pain001,
    derive_message_ids,
    parse_pain001,
    validate_pain001,
)
from adapters.bank.pain002 import (
    PaymentStatusReport,
    TransactionStatus,
    build_pain002,
    classify_status,
    parse_pain002,
    validate_pain002,
)
from server.domain.sepa_text import SepaTextError, sepa_name, sepa_remittance, to_sepa_text, transliterate

__all__ = [
    "BankError",
    "BankValidationError",
    "CreditTransfer",
    "DebtorAccount",
    "DocumentError",
    "InvalidAccountError",
    "MessageIds",
    "Pain002ParseError",
    "PaymentStatusReport",
    "SchemaValidationError",
    "SepaTextError",
    "TransactionStatus",
    "build_pain001",
    "build_pain002",
    "classify_status",
    "derive_message_ids",
    "mask_iban",
    "parse_pain001",
    "parse_pain002",
    "sepa_name",
    "sepa_remittance",
    "to_sepa_text",
    "transliterate",
    "validate_bic",
    "validate_iban",
    "validate_pain001",
    "validate_pain002",
]
