"""End to end: complete contract signings per second across the five services.

The whole local platform (SoftHSM token, Kafka broker, the five services and the
third-party sandbox) starts as processes in a temporary state dir on its own ports, as
``make run`` starts it. Each worker owns two onboarded people (verified, certified) and
loops over contracts: party A signs a fresh PDF after a willingness check (SMS code read
from the sandbox gateway, as the person would), party B signs the PDF A signed, and the
flow is complete when the evidence log holds both signatures and both willingness
confirmations. Figures: complete flows per second, flow latency p50/p99, and how that
time splits into the signing calls and the wait for evidence (Kafka -> evidence log).

The anti-abuse limits (identity: willingness checks per account and codes per phone or
address in ten minutes; notify: messages per recipient and channel an hour) would stop a
handful of benchmark people signing back to back at once, where real traffic spreads over
many signers, so this platform runs with those limits raised. The figure is the
platform's throughput, not those policies'.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import REGISTRY, Figures, Target, rate, summarize_latencies
from signet.common.local import platform
from signet.common.local.sandbox import SandboxInbox
from signet.sdk.client import Endpoints, Signet, local_token
from signet.sdk.flows import Flows, Person
from signet.sdk.samples import contract_pdf, sample_id_number, sample_phone

WORKERS = 8
"""Flows in flight at once, each worker with its own two signatories."""
DURATION = 30.0
"""Seconds of measured load after onboarding."""
PORT_OFFSET = 4000
"""Shift of every local port, so a running ``make run`` is not disturbed."""
FLOW_TIMEOUT = 60.0


@contextlib.contextmanager
def _platform(state: Path) -> Iterator[None]:
    """The local platform, started in ``state`` on shifted ports, stopped afterwards."""
    env = {
        "SIGNET_STATE_DIR": str(state),
        "SIGNET_LOCAL_PORT_OFFSET": str(PORT_OFFSET),
        "SIGNET_IDENTITY_MAX_CHECKS_PER_ACCOUNT": "1000000",
        "SIGNET_IDENTITY_MAX_CODES_PER_DESTINATION": "1000000",
        "SIGNET_NOTIFY_RECIPIENT_RATE_LIMIT": "1000000",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        if platform.start(timeout=240.0) != 0:
            raise RuntimeError("the local platform did not start; see the logs above")
        yield
    finally:
        platform.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class _Samples:
    """What the workers measured; appended under a lock."""

    flows: list[float] = field(default_factory=list)
    signing: list[float] = field(default_factory=list)
    evidence_wait: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _person(flows: Flows, tenant_id: str, label: str) -> Person:
    phone = sample_phone()
    return flows.onboard_person(
        tenant_id,
        name=f"Bench {label}",
        id_number=sample_id_number(),
        phone=phone,
        email=f"{label}@bench.example",
    )


def _one_flow(flows: Flows, a: Person, b: Person, samples: _Samples) -> None:
    """One contract signed by both parties in order and sealed into the log."""
    transaction = "bench-" + uuid.uuid4().hex
    pdf = contract_pdf(f"Contract {transaction}", ["Party A and party B agree."])
    start = time.perf_counter()
    first = flows.sign_pdf(a.signatory, pdf, transaction_id=transaction, field_name="PartyA")
    flows.sign_pdf(b.signatory, first.pdf, transaction_id=transaction, field_name="PartyB")
    signed = time.perf_counter()
    flows.wait_for_evidence(
        transaction,
        signatures=2,
        timeout=FLOW_TIMEOUT,
        poll_seconds=0.05,
        tenant_id=a.account.tenant_id,
    )
    done = time.perf_counter()
    with samples.lock:
        samples.flows.append(done - start)
        samples.signing.append(signed - start)
        samples.evidence_wait.append(done - signed)


def _worker(flows: Flows, pair: tuple[Person, Person], stop_at: float, samples: _Samples) -> None:
    while time.perf_counter() < stop_at:
        try:
            _one_flow(flows, *pair, samples)
        except Exception as err:  # noqa: BLE001  (counted and reported, the load goes on)
            with samples.lock:
                samples.errors.append(f"{type(err).__name__}: {err}")
            time.sleep(0.1)  # a persistent fault is counted, not spun on


@REGISTRY.register("signing_flows", targets=(Target("flows_failed", 0.0, at_least=False),))
def signing_flows() -> Figures:
    """Complete two-party contract signings per second, end to end, and their latency."""
    with tempfile.TemporaryDirectory(prefix="signet-bench-flows-") as tmp:
        state = Path(tmp) / "state"
        with _platform(state):
            endpoints = Endpoints.local()
            client = Signet(endpoints, local_token(state_dir=state), timeout=30.0)
            flows = Flows(client, SandboxInbox.for_state_dir(state), code_timeout=30.0)
            try:
                tenant = flows.create_tenant("Bench Tenant").tenant_id
                with ThreadPoolExecutor(WORKERS) as pool:
                    people = list(
                        pool.map(lambda i: _person(flows, tenant, f"p{i}"), range(2 * WORKERS))
                    )
                pairs = [(people[2 * i], people[2 * i + 1]) for i in range(WORKERS)]
                _one_flow(flows, *pairs[0], _Samples())  # warm every path once
                samples = _Samples()
                start = time.perf_counter()
                stop_at = start + DURATION
                threads = [
                    threading.Thread(target=_worker, args=(flows, pair, stop_at, samples))
                    for pair in pairs
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                elapsed = time.perf_counter() - start
            finally:
                client.close()
    if samples.errors:
        print(f"   {len(samples.errors)} flows failed, first: {samples.errors[0]}")
    figures: Figures = {
        "flows_in_flight": float(WORKERS),
        "flows_completed": float(len(samples.flows)),
        "flows_failed": float(len(samples.errors)),
        "flows_per_s": rate(len(samples.flows), elapsed),
        "signatures_per_s": rate(2 * len(samples.flows), elapsed),
    }
    figures.update(summarize_latencies("flow", samples.flows))
    figures.update(summarize_latencies("signing_calls", samples.signing))
    figures.update(summarize_latencies("evidence_wait", samples.evidence_wait))
    return figures
