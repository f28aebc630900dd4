"""What the ISO 20022 reason codes a SEPA credit transfer meets mean, in one table.

A bank says why it rejected a transfer (pain.002, ExternalStatusReason1Code) or why it came back
(camt.054, ExternalReturnReason1Code); both code sets give these codes the same meaning. The payout's
failure message is our text for the code rather than the bank's AddtlInf, which is free text and may
quote account data.
"""

from __future__ import annotations

from typing import Final

REASON_TEXT: Final[dict[str, str]] = {
    "AC01": "Incorrect account number",
    "AC04": "Closed account number",
    "AC06": "Blocked account",
    "AC13": "Invalid debtor account type",
    "AG01": "Transaction forbidden on this type of account",
    "AG02": "Invalid bank operation code",
    "AM01": "Zero amount",
    "AM02": "Amount not allowed",
    "AM03": "Currency not allowed",
    "AM04": "Insufficient funds",
    "AM05": "Duplication",
    "AM09": "Wrong amount",
    "BE04": "Missing creditor address",
    "CNOR": "Creditor bank is not registered",
    "CUST": "Requested by customer",
    "DUPL": "Duplicate payment",
    "FF01": "Invalid file format",
    "FOCR": "Following cancellation request",
    "FRAD": "Fraudulent origin",
    "MD07": "End customer deceased",
    "MS02": "Not specified reason, customer generated",
    "MS03": "Not specified reason, agent generated",
    "RC01": "Bank identifier incorrect",
    "RR01": "Missing debtor account or identification",
    "RR02": "Missing debtor name or address",
    "RR03": "Missing creditor name or address",
    "RR04": "Regulatory reason",
    "TECH": "Technical problem",
    "TM01": "Received after the cut-off time",
}
