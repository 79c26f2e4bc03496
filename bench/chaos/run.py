"""``make chaos``: two replicas of every service under faults, a steady signing load,
reconciliation, and the per-minute results fed to ``signet-sla``.

The run owns a platform of its own (state under ``<state>/chaos``, wiped first; ports
shifted by ``SIGNET_LOCAL_PORT_OFFSET``, default 700) so it never disturbs ``make run``.
The platform's third-party sandbox takes the identity checks and the SMS (the one-time
codes are read from it, as a person reads their phone); the webhook receiver runs in
this process.

Settings (environment): ``SIGNET_CHAOS_SECONDS`` (120), ``SIGNET_CHAOS_RATE`` flows per
second (8), ``SIGNET_CHAOS_WORKERS`` (16), ``SIGNET_CHAOS_DEADLINE_SECONDS`` per flow (5),
``SIGNET_CHAOS_KILL_EVERY`` (15), ``SIGNET_CHAOS_BROKER_DOWN_AT`` / ``_FOR`` (50 / 20),
``SIGNET_CHAOS_DRAIN_SECONDS`` (240), ``SIGNET_CHAOS_SEED``, ``SIGNET_LOCAL_REPLICAS`` (2),
``SIGNET_LOCAL_DATABASE`` (``postgres``; ``sqlite`` puts both replicas on one file).
Exit status 0 only when availability >= 99.9% and nothing was lost or duplicated.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from bench.chaos.faults import FaultInjector, FaultPlan
from bench.chaos.flows import SIGNATURE_CREATED, FlowClient, FlowOutcome, Subject, set_up
from bench.chaos.reconcile import (
    SLA_SERVICE,
    Reconciliation,
    availability_percent,
    per_minute,
    reconcile,
    sla_rows,
)
from signet.common.channels import create_channel
from signet.common.db import Database
from signet.common.events import decode_envelope, unpack_payload
from signet.common.local import platform
from signet.common.local.sandbox import SandboxInbox
from signet.common.outbox import OutboxMessage
from signet.common.testing.http import HttpReceiver
from signet.events.v1 import events_pb2
from signet.evidence import merkle
from signet.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from signet.notify import webhooks
from signet.sdk import Endpoints
from signet.sdk.client import SERVICES

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
TARGET_PERCENT = 99.9
WEBHOOK_PATH = "/hooks/signet"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw.strip() else default


@dataclass
class Settings:
    """The run's knobs, from the environment."""

    seconds: float = field(default_factory=lambda: _env_float("SIGNET_CHAOS_SECONDS", 120))
    rate: float = field(default_factory=lambda: _env_float("SIGNET_CHAOS_RATE", 8))
    workers: int = field(default_factory=lambda: int(_env_float("SIGNET_CHAOS_WORKERS", 16)))
    deadline: float = field(default_factory=lambda: _env_float("SIGNET_CHAOS_DEADLINE_SECONDS", 5))
    kill_every: float = field(default_factory=lambda: _env_float("SIGNET_CHAOS_KILL_EVERY", 15))
    broker_down_at: float = field(
        default_factory=lambda: _env_float("SIGNET_CHAOS_BROKER_DOWN_AT", 50)
    )
    broker_down_for: float = field(
        default_factory=lambda: _env_float("SIGNET_CHAOS_BROKER_DOWN_FOR", 20)
    )
    drain: float = field(default_factory=lambda: _env_float("SIGNET_CHAOS_DRAIN_SECONDS", 240))
    seed: int | None = field(
        default_factory=lambda: (
            int(os.environ["SIGNET_CHAOS_SEED"]) if os.environ.get("SIGNET_CHAOS_SEED") else None
        )
    )


class WebhookReceiver:
    """The tenant's webhook receiver: a local HTTP server recording every delivery."""

    def __init__(self) -> None:
        self.webhooks = HttpReceiver()

    def __enter__(self) -> WebhookReceiver:
        self.webhooks.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.webhooks.stop()

    def deliveries(self, secret: str) -> tuple[list[tuple[str, str]], int]:
        """``(event id, delivery id)`` of each accepted, correctly signed POST; and bad ones."""
        found: list[tuple[str, str]] = []
        bad = 0
        for got in self.webhooks.accepted(WEBHOOK_PATH):
            try:
                delivery = webhooks.verify(secret, got.body, got.headers, tolerance_seconds=86_400)
            except webhooks.WebhookVerificationError:
                bad += 1
                continue
            found.append((str(json.loads(got.body)["id"]), delivery))
        return found, bad


def _configure() -> None:
    """Own state dir, shifted ports, two replicas on PostgreSQL, one signer worker each."""
    base = Path(os.environ.get("SIGNET_STATE_DIR", ".state")).resolve()
    os.environ["SIGNET_STATE_DIR"] = str(base / "chaos")
    os.environ.setdefault("SIGNET_LOCAL_PORT_OFFSET", "700")
    os.environ.setdefault("SIGNET_LOCAL_REPLICAS", "2")
    # Replicas share their service's database as in production: on PostgreSQL.
    os.environ.setdefault("SIGNET_LOCAL_DATABASE", "postgres")
    # Two cores shared by ten service processes: one signing worker per signer replica.
    os.environ.setdefault("SIGNET_SIGNER_WORKERS", "1")
    # A delivery claimed by a killed notify replica is picked up again after this lease.
    os.environ.setdefault("SIGNET_NOTIFY_CLAIM_LEASE_SECONDS", "30")


def _targets(name: str) -> str:
    return ",".join(svc.address for svc in platform.replicas_of(name))


def _endpoints() -> Endpoints:
    return Endpoints.create({name: _targets(name) for name in SERVICES})


class Load:
    """Starts flows at a steady rate from a pool of worker threads."""

    def __init__(self, client: FlowClient, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._lock = threading.Lock()
        self._next = 0
        self.outcomes: list[FlowOutcome] = []

    def run(self) -> None:
        """Run for the configured seconds; every flow started is recorded."""
        t0 = time.monotonic()
        end = t0 + self._settings.seconds
        interval = 1.0 / self._settings.rate

        def worker() -> None:
            while True:
                with self._lock:
                    index = self._next
                    self._next += 1
                due = t0 + index * interval
                if due >= end:
                    return
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                outcome = self._client.run()
                with self._lock:
                    self.outcomes.append(outcome)

        threads = [
            threading.Thread(target=worker, name=f"chaos-load-{n}", daemon=True)
            for n in range(self._settings.workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def signer_signatures(key_id: str) -> dict[str, str]:
    """SignatureCreated events the signer recorded for ``key_id``: event id -> signature id."""
    db = Database.from_url(platform.database_url("signer"))
    found: dict[str, str] = {}
    try:
        with db.session() as session:
            rows = session.scalars(
                select(OutboxMessage.envelope).where(OutboxMessage.topic.like("%signature%"))
            ).all()
    finally:
        db.dispose()
    for raw in rows:
        envelope = decode_envelope(raw)
        if envelope.type != SIGNATURE_CREATED:
            continue
        payload = unpack_payload(envelope, events_pb2.SignatureCreated)
        if payload.key_id == key_id:
            found[envelope.id] = payload.signature_id
    return found


@dataclass(frozen=True)
class LogCheck:
    """The evidence log read back whole: one consistent tree?"""

    entries: int
    tree_size: int
    indexes_contiguous: bool
    root_matches: bool

    @property
    def consistent(self) -> bool:
        """Leaves 0..n-1 each once, and their Merkle root is the signed tree head's."""
        return self.indexes_contiguous and self.root_matches


class EvidenceReader:
    """Reads the evidence log over gRPC as the local admin."""

    def __init__(self, admin_token: str) -> None:
        self._channel = create_channel(
            _targets("evidence"), default_timeout=30, bearer_token=admin_token
        )
        self._stub = evidence_pb2_grpc.EvidenceServiceStub(self._channel)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def entries(self, tenant_id: str = "", event_type: str = "") -> list[evidence_pb2.Entry]:
        """Every integrated entry (of this tenant and type, when given), in leaf order."""
        found: list[evidence_pb2.Entry] = []
        token = ""
        while True:
            reply = self._stub.GetEntries(
                evidence_pb2.GetEntriesRequest(
                    tenant_id=tenant_id, event_type=event_type, page_size=1000, page_token=token
                )
            )
            found.extend(reply.entries)
            token = reply.next_page_token
            if not token:
                return found

    def check_log(self) -> LogCheck:
        """Every entry against the current signed tree head."""
        head = self._stub.GetSignedTreeHead(evidence_pb2.GetSignedTreeHeadRequest()).tree_head
        entries = [e for e in self.entries() if e.leaf_index < head.tree_size]
        indexes = [e.leaf_index for e in entries]
        contiguous = indexes == list(range(head.tree_size))
        root = merkle.root_from_leaves([e.leaf_hash for e in entries])
        return LogCheck(len(entries), head.tree_size, contiguous, root == head.root_hash)


def _drain(
    expected: set[str],
    evidence: EvidenceReader,
    sandbox: WebhookReceiver,
    subject: Subject,
    limit: float,
) -> float:
    """Wait until every expected event is in the log and delivered (bounded); seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        logged = {
            e.event_id
            for e in evidence.entries(tenant_id=subject.tenant_id, event_type=SIGNATURE_CREATED)
        }
        delivered = {event for event, _ in sandbox.deliveries(subject.webhook_secret)[0]}
        if expected <= logged and expected <= delivered:
            break
        time.sleep(2)
    return time.monotonic() - began


def feed_sla(csv_path: Path, month: str) -> tuple[int, str, list[dict[str, object]]]:
    """Run ``signet-sla`` on the minutes: exit code, text report, JSON rows."""
    command = [sys.executable, "-m", "signet.prober.slacli", "--month", month, "--csv"]
    text = subprocess.run(
        [*command, str(csv_path), "--service", SLA_SERVICE],
        capture_output=True,
        text=True,
        check=False,
    )
    as_json = subprocess.run(
        [*command, str(csv_path), "--service", SLA_SERVICE, "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    rows = json.loads(as_json.stdout) if as_json.returncode == 0 else []
    return text.returncode, text.stdout + text.stderr, rows


def _report(
    settings: Settings,
    outcomes: list[FlowOutcome],
    faults: FaultInjector,
    result: Reconciliation,
    log: LogCheck,
    bad_signatures: int,
    drained: float,
    sla_text: str,
) -> tuple[str, dict[str, object], bool]:
    attempted = len(outcomes)
    succeeded = sum(1 for o in outcomes if o.ok)
    percent = availability_percent(attempted, succeeded)
    minutes = per_minute(outcomes)
    errors: dict[str, int] = {}
    for o in outcomes:
        if not o.ok:
            errors[o.error[:120]] = errors.get(o.error[:120], 0) + 1
    latencies = sorted(o.seconds for o in outcomes if o.ok)

    def pct(q: float) -> float:
        return latencies[min(int(q * len(latencies)), len(latencies) - 1)] if latencies else 0.0

    passed = percent >= TARGET_PERCENT and result.clean and log.consistent and not bad_signatures
    lines = [
        f"chaos: {platform.replica_count()} replicas per service, "
        f"{settings.seconds:.0f} s of load at {settings.rate:g} flows/s, "
        f"deadline {settings.deadline:g} s per flow",
        "faults:",
        *(
            f"  {e.at:%H:%M:%S} {e.action:<12} {e.target:<13} "
            f"{e.seconds:6.1f}s {'ok' if e.ok else 'FAILED'}"
            for e in faults.events
        ),
        f"requests attempted:            {attempted}",
        f"succeeded within deadline:     {succeeded}",
        f"availability:                  {percent:.3f}% (target {TARGET_PERCENT}%)",
        f"flow latency p50/p99/max:      {pct(0.5):.3f} / {pct(0.99):.3f} / "
        f"{latencies[-1] if latencies else 0:.3f} s",
        *(f"  failed: {n} x {text}" for text, n in sorted(errors.items())),
        "per minute (attempted / succeeded):",
        *(f"  {m.start:%H:%M} {m.attempted:5d} / {m.succeeded:5d}" for m in minutes),
        f"reconciliation (drained in {drained:.0f} s):",
        f"  signatures recorded by the signer:  {result.signatures}",
        f"  evidence entries:                   {result.evidence_entries} "
        f"(missing {len(result.evidence_missing)}, duplicated {len(result.evidence_duplicated)})",
        f"  webhook deliveries (distinct ids):  {result.webhook_deliveries} "
        f"(missing {len(result.webhook_missing)}, duplicated {len(result.webhook_duplicated)}, "
        f"bad signature {bad_signatures})",
        f"  webhook POSTs received:             {result.webhook_receptions} "
        f"(same delivery id again, at-least-once after a kill: "
        f"{len(result.webhook_redelivered)})",
        f"  unknown event ids downstream:       {len(result.unknown)}",
        f"  OK flows without a signer record:   {len(result.flows_without_record)}",
        f"  lost: {result.lost}   duplicated: {result.duplicated}",
        f"evidence log: {log.entries} entries, tree size {log.tree_size}, "
        f"leaves contiguous {log.indexes_contiguous}, root matches the signed head "
        f"{log.root_matches}",
        "signet-sla:",
        *(f"  {line}" for line in sla_text.rstrip().splitlines()),
        f"RESULT: {'PASS' if passed else 'FAIL'}",
    ]
    document: dict[str, object] = {
        "replicas": platform.replica_count(),
        "settings": settings.__dict__,
        "faults": [e.as_dict() for e in faults.events],
        "attempted": attempted,
        "succeeded": succeeded,
        "availability_percent": percent,
        "latency_seconds": {"p50": pct(0.5), "p99": pct(0.99)},
        "errors": errors,
        "minutes": [
            {"minute": m.start.isoformat(), "attempted": m.attempted, "succeeded": m.succeeded}
            for m in minutes
        ],
        "reconciliation": result.as_dict(),
        "webhook_bad_signatures": bad_signatures,
        "evidence_log": log.__dict__,
        "drain_seconds": drained,
        "passed": passed,
    }
    return "\n".join(lines), document, passed


def main() -> int:
    """Run it all; print the report; write JSON (and the SLA CSV) under bench/results/."""
    _configure()
    # A SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, so the platform is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    settings = Settings()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    platform.stop()
    shutil.rmtree(platform.state_dir(), ignore_errors=True)
    with WebhookReceiver() as sandbox:
        try:
            if platform.start(timeout=300) != 0:
                print("chaos: the platform did not start", file=sys.stderr)
                return 1
            admin = platform.service_tokens()[platform.LOCAL_ADMIN]
            endpoints = _endpoints()
            max_uses = int(settings.rate * settings.seconds * 2) + 100
            subject = set_up(
                endpoints,
                admin,
                SandboxInbox.for_state_dir(platform.state_dir()),
                sandbox.webhooks.url + WEBHOOK_PATH,
                max_uses,
            )
            print(f"set-up done: tenant {subject.tenant_id}, key {subject.key_id}", flush=True)
            client = FlowClient(endpoints, subject, settings.deadline)
            load = Load(client, settings)
            faults = FaultInjector(
                FaultPlan(
                    settings.seconds,
                    settings.kill_every,
                    settings.broker_down_at,
                    settings.broker_down_for,
                    settings.seed,
                )
            )
            faults.start()
            load.run()
            faults.join()
            client.close()
            print("load done; waiting for events to drain ...", flush=True)
            expected = set(signer_signatures(subject.key_id))
            evidence = EvidenceReader(admin)
            drained = _drain(expected, evidence, sandbox, subject, settings.drain)
            signatures = signer_signatures(subject.key_id)
            logged = [
                e.event_id
                for e in evidence.entries(tenant_id=subject.tenant_id, event_type=SIGNATURE_CREATED)
            ]
            delivered, bad = sandbox.deliveries(subject.webhook_secret)
            result = reconcile(
                signatures, logged, delivered, [o.signature_id for o in load.outcomes if o.ok]
            )
            log = evidence.check_log()
            evidence.close()
        finally:
            platform.stop()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    csv_path = RESULTS_DIR / f"chaos-{stamp}-minutes.csv"
    minutes = per_minute(load.outcomes)
    csv_path.write_text(sla_rows(minutes))
    month = (minutes[0].start if minutes else datetime.now(UTC)).strftime("%Y-%m")
    _, sla_text, sla_json = feed_sla(csv_path, month)
    text, document, passed = _report(
        settings, load.outcomes, faults, result, log, bad, drained, sla_text
    )
    document["sla"] = sla_json
    document["sla_csv"] = csv_path.name
    out = RESULTS_DIR / f"chaos-{stamp}.json"
    out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(text)
    print(f"written: {out}")
    return 0 if passed else 1
