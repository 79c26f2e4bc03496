"""The Kafka consumer that appends every Signet event to the log.

One consumer group reads every topic. Appending is idempotent on the event id (a unique
column), so a redelivered record appends nothing. The evidence service's own events
(EvidenceAppended, TreeHeadSigned, ...) are not appended: appending must not feed itself.
"""

from __future__ import annotations

import logging

from signet.common.bus import Message
from signet.common.events import EVIDENCE_TOPIC, EventEnvelope
from signet.evidence.service import SOURCE, EvidenceLog

GROUP = "evidence"
_log = logging.getLogger("signet.evidence.consumer")


class EvidenceConsumer:
    """The record handler: one envelope in, one log entry (at most) out."""

    def __init__(self, log: EvidenceLog) -> None:
        self._log = log
        self.appended = 0
        self.duplicates = 0

    def __call__(self, envelope: EventEnvelope, message: Message) -> None:
        """Append ``envelope`` unless it is one of our own events."""
        if message.topic == EVIDENCE_TOPIC and envelope.source == SOURCE:
            return
        result = self._log.append(envelope)
        if result.duplicate:
            self.duplicates += 1
        else:
            self.appended += 1
