"""What the chaos run concludes from what it saw: availability per minute and reconciliation.

Pure functions over plain values, so they are tested without a platform:

* :func:`per_minute` buckets flow outcomes by the UTC minute they started in;
* :func:`sla_rows` turns those minutes into the prober's CSV shape that ``signet-sla`` reads
  (a minute is good only when every flow started in it succeeded within its deadline);
* :func:`reconcile` compares the signatures the signer recorded (by event id) with the
  evidence log's entries and the webhook deliveries received: missing = lost, more than
  one = duplicated.

Webhooks are delivered at least once: a notify replica killed after the receiver accepted
a POST but before it recorded the success sends the same delivery again (same
``Signet-Delivery-Id``) once its claim lease runs out; receivers deduplicate on that id,
as the webhook documentation asks. Such a *redelivery* is counted and reported on its
own; a *duplicate* is a second, distinct delivery (another delivery id) for one event,
which a receiver cannot tell apart and would process twice.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from bench.chaos.flows import FlowOutcome

SLA_SERVICE = "signing-flow"
"""The service name the chaos minutes carry in the SLA report."""


@dataclass(frozen=True)
class Minute:
    """Flows started in one UTC minute."""

    start: datetime
    attempted: int
    succeeded: int

    @property
    def ok(self) -> bool:
        """Good when every flow of the minute succeeded within its deadline."""
        return self.attempted > 0 and self.succeeded == self.attempted


def per_minute(outcomes: Iterable[FlowOutcome]) -> list[Minute]:
    """Attempted and succeeded flows per minute of their start, oldest first."""
    attempted: Counter[datetime] = Counter()
    succeeded: Counter[datetime] = Counter()
    for outcome in outcomes:
        minute = outcome.started.replace(second=0, microsecond=0)
        attempted[minute] += 1
        if outcome.ok:
            succeeded[minute] += 1
    return [Minute(m, attempted[m], succeeded[m]) for m in sorted(attempted)]


def availability_percent(attempted: int, succeeded: int) -> float:
    """Succeeded / attempted in percent (100 when nothing was attempted)."""
    return 100.0 if attempted == 0 else 100.0 * succeeded / attempted


def sla_rows(minutes: Iterable[Minute]) -> str:
    """The minutes as ``minute,service,ok,latency_ms,detail,tenant`` CSV for ``signet-sla``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["minute", "service", "ok", "latency_ms", "detail", "tenant"])
    for m in minutes:
        detail = f"{m.succeeded}/{m.attempted} flows succeeded"
        stamp = m.start.isoformat().replace("+00:00", "Z")
        writer.writerow([stamp, SLA_SERVICE, "1" if m.ok else "0", "", detail, ""])
    return out.getvalue()


@dataclass(frozen=True)
class Reconciliation:
    """Signatures against evidence entries and webhook deliveries, by event id."""

    signatures: int
    evidence_entries: int
    webhook_deliveries: int
    evidence_missing: tuple[str, ...] = ()
    evidence_duplicated: tuple[str, ...] = ()
    webhook_missing: tuple[str, ...] = ()
    webhook_duplicated: tuple[str, ...] = ()
    webhook_redelivered: tuple[str, ...] = ()
    webhook_receptions: int = 0
    unknown: tuple[str, ...] = ()
    flows_without_record: tuple[str, ...] = field(default=())

    @property
    def lost(self) -> int:
        """Events missing from the evidence log or from the webhook receiver."""
        return len(self.evidence_missing) + len(self.webhook_missing)

    @property
    def duplicated(self) -> int:
        """Events the evidence log or the receiver holds more than once."""
        return len(self.evidence_duplicated) + len(self.webhook_duplicated)

    @property
    def clean(self) -> bool:
        """Nothing lost, nothing duplicated, nothing unexplained."""
        return (
            self.lost == 0
            and self.duplicated == 0
            and not self.unknown
            and not self.flows_without_record
        )

    def as_dict(self) -> dict[str, object]:
        """The figures and the offending ids (for the JSON report)."""
        return {
            "signatures": self.signatures,
            "evidence_entries": self.evidence_entries,
            "webhook_deliveries": self.webhook_deliveries,
            "webhook_receptions": self.webhook_receptions,
            "webhook_redelivered_same_delivery_id": list(self.webhook_redelivered),
            "lost": self.lost,
            "duplicated": self.duplicated,
            "evidence_missing": list(self.evidence_missing),
            "evidence_duplicated": list(self.evidence_duplicated),
            "webhook_missing": list(self.webhook_missing),
            "webhook_duplicated": list(self.webhook_duplicated),
            "unknown_event_ids": list(self.unknown),
            "succeeded_flows_without_signer_record": list(self.flows_without_record),
        }


def reconcile(
    signatures: Mapping[str, str],
    evidence_event_ids: Iterable[str],
    webhook_deliveries: Iterable[tuple[str, str]],
    succeeded_signature_ids: Iterable[str] = (),
) -> Reconciliation:
    """Compare the signer's SignatureCreated events with evidence entries and deliveries.

    ``signatures`` maps each event id the signer recorded to its signature id;
    ``evidence_event_ids`` holds one event id per evidence entry (repeats are duplicates);
    ``webhook_deliveries`` one ``(event id, delivery id)`` per accepted POST.
    ``succeeded_signature_ids`` are the signatures flows reported OK: each must be in the
    signer's records. Ids seen downstream but never recorded are ``unknown``.
    """
    evidence = Counter(evidence_event_ids)
    receptions = Counter(webhook_deliveries)
    distinct = Counter(event for event, _ in receptions)
    expected = set(signatures)
    recorded_signatures = set(signatures.values())
    return Reconciliation(
        signatures=len(expected),
        evidence_entries=sum(evidence.values()),
        webhook_deliveries=sum(distinct.values()),
        evidence_missing=tuple(sorted(expected - set(evidence))),
        evidence_duplicated=tuple(sorted(e for e, n in evidence.items() if n > 1)),
        webhook_missing=tuple(sorted(expected - set(distinct))),
        webhook_duplicated=tuple(sorted(e for e, n in distinct.items() if n > 1)),
        webhook_redelivered=tuple(sorted({e for (e, _), n in receptions.items() if n > 1})),
        webhook_receptions=sum(receptions.values()),
        unknown=tuple(sorted((set(evidence) | set(distinct)) - expected)),
        flows_without_record=tuple(
            sorted(s for s in set(succeeded_signature_ids) if s not in recorded_signatures)
        ),
    )
