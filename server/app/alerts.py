"""The conditions an SRE must act on, each logged with an `alert` field and counted in a metric.

Kept together so the names alert rules match on are defined once: REQUIRES_RECONCILIATION (an operation
the PSP could not confirm either way for its whole look-up window) and PSP_CREDENTIALS (the PSP refuses
our API key or token; every operation waits until the configuration is fixed) and CAPTURE_EXPIRING (an
authorized payment nobody captured; the PSP releases it soon).
"""

from __future__ import annotations

import logging

from server.app import telemetry

log = logging.getLogger(__name__)

REQUIRES_RECONCILIATION = "REQUIRES_RECONCILIATION"
PSP_CREDENTIALS = "PSP_CREDENTIALS"
CAPTURE_EXPIRING = "CAPTURE_EXPIRING"


def reconciliation_required(resource_id: str, psp: str, resource: str) -> None:
    log.error(
        "operation requires reconciliation: the PSP could not confirm it either way",
        extra={"alert": REQUIRES_RECONCILIATION, "resource_id": resource_id, "psp": psp},
    )
    telemetry.reconciliation_required.add(1, {"psp": psp, "resource": resource})


def credentials_refused(psp: str, code: str, resource_id: str) -> None:
    log.error(
        "the PSP refused this service's credentials; operations wait until they are fixed",
        extra={"alert": PSP_CREDENTIALS, "psp": psp, "psp_code": code, "resource_id": resource_id},
    )
    telemetry.psp_credentials_refused.add(1, {"psp": psp})


def capture_expiring(resource_id: str, psp: str, capturable_until: str, *, canceling: bool) -> None:
    """Raised once per payment (the store remembers), a configurable time before the PSP's deadline."""
    log.error(
        "an authorized payment was not captured and the PSP releases it soon"
        + ("; cancelling it (PAYMENTS_AUTO_CANCEL_UNCAPTURED)" if canceling else ""),
        extra={"alert": CAPTURE_EXPIRING, "resource_id": resource_id, "psp": psp,
               "capturable_until": capturable_until},
    )  # fmt: skip
    telemetry.captures_expiring.add(1, {"psp": psp})
