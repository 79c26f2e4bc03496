"""``make chaos``: availability and event reconciliation of a replicated platform under faults."""
