"""`make bench` / `payments bench`: the service's throughput and latency next to floors measured in
the same run on the same machine (docs/contract.md, Performance)."""
