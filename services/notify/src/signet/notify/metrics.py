"""Notify's Prometheus metrics; labels are the channel and bounded outcome words only."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from signet.common.metrics import counter, histogram

# From a second (a code over SMS) to hours (a webhook receiver down for an afternoon).
DELIVERY_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class NotifyMetrics:
    """The collectors; build once per registry with :meth:`create`."""

    sends: Counter
    failures: Counter
    retries: Counter
    dead_letters: Counter
    suppressed: Counter
    rate_limited: Counter
    delivery_latency: Histogram
    attempt_duration: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> NotifyMetrics:
        """Get or create every collector in ``registry``."""
        return cls(
            sends=counter(
                "signet_notify_sends_total",
                "Notifications delivered (accepted by the SMTP server, provider or receiver).",
                ["channel"],
                registry,
            ),
            failures=counter(
                "signet_notify_failures_total",
                "Failed delivery attempts, by kind (transient or permanent).",
                ["channel", "kind"],
                registry,
            ),
            retries=counter(
                "signet_notify_retries_total",
                "Delivery attempts scheduled again after a transient failure.",
                ["channel"],
                registry,
            ),
            dead_letters=counter(
                "signet_notify_dead_letters_total",
                "Notifications moved to the dead-letter queue.",
                ["channel"],
                registry,
            ),
            suppressed=counter(
                "signet_notify_suppressed_total",
                "Notifications not sent because the recipient turned the category off.",
                ["channel"],
                registry,
            ),
            rate_limited=counter(
                "signet_notify_rate_limited_total",
                "Attempts postponed by the per-recipient rate limit.",
                ["channel"],
                registry,
            ),
            delivery_latency=histogram(
                "signet_notify_delivery_latency_seconds",
                "From queuing a notification to its delivery.",
                ["channel"],
                registry,
                DELIVERY_BUCKETS,
            ),
            attempt_duration=histogram(
                "signet_notify_attempt_duration_seconds",
                "Duration of one delivery attempt (the SMTP, provider or webhook call).",
                ["channel"],
                registry,
                ATTEMPT_BUCKETS,
            ),
        )
