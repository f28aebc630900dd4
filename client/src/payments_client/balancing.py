"""Channel options for several replicas behind one name.

The service is stateless: any number of replicas share one PostgreSQL (deploy/, a headless Service), so
a client should spread its calls over all of them and stop sending to one that is going away. gRPC does
both when told to in the channel's service config: round_robin over every address the name resolves to,
and client-side health checking, which takes a replica out of the rotation the moment its
grpc.health.v1 status turns NOT_SERVING. The server turns it so when it begins to shut down, and keeps
serving for PAYMENTS_SHUTDOWN_DRAIN_SECONDS before it stops listening, so calls move to the other
replicas before any reaches a closing one.
"""

from __future__ import annotations

import json

SERVICE = "payments.v1.PaymentService"


def balanced(service: str = SERVICE) -> list[tuple[str, str | int]]:
    """Options for PaymentsClient(target, options=...) when the target names several replicas."""
    config = {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": service}}
    return [("grpc.service_config", json.dumps(config))]
