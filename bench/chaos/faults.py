"""Faults on a schedule: SIGKILL one replica of a random service every period, restart it,
and stop the Kafka broker once for a while.

Kills keep their cadence: each killed replica is restarted in its own thread (a restart
takes seconds to tens of seconds on a loaded machine). A victim is drawn only among
services whose replicas are all up, so the platform is never left without any process of
a service (that would be an outage by construction, not a fault a replicated deployment
must absorb); a service whose replica did not come back is never drawn again. Every
action is recorded with its time.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from signet.common.local import platform


@dataclass(frozen=True)
class FaultEvent:
    """One thing the injector did."""

    at: datetime
    action: str
    target: str
    seconds: float = 0.0
    ok: bool = True

    def as_dict(self) -> dict[str, object]:
        """For the JSON report."""
        return {
            "at": self.at.isoformat(),
            "action": self.action,
            "target": self.target,
            "seconds": round(self.seconds, 2),
            "ok": self.ok,
        }


@dataclass
class FaultPlan:
    """When and how often: kill period, broker outage start and length (seconds)."""

    duration: float = 120.0
    kill_every: float = 15.0
    broker_down_at: float = 50.0
    broker_down_for: float = 20.0
    seed: int | None = None


@dataclass
class _Log:
    events: list[FaultEvent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, event: FaultEvent) -> None:
        with self.lock:
            self.events.append(event)


class FaultInjector:
    """Runs a :class:`FaultPlan` against the local platform from two background threads."""

    def __init__(
        self,
        plan: FaultPlan,
        *,
        kill: Callable[[platform.ServiceProcess], bool] = platform.kill_replica,
        restart: Callable[[platform.ServiceProcess], bool] = platform.start_replica,
        stop_broker: Callable[[], None] = platform.stop_broker,
        start_broker: Callable[[], object] = platform.start_broker,
    ) -> None:
        self._plan = plan
        self._kill = kill
        self._restart = restart
        self._stop_broker = stop_broker
        self._start_broker = start_broker
        self._random = random.Random(plan.seed)
        self._log = _Log()
        self._stopping = threading.Event()
        # Services with a replica that did not come back: never a victim again.
        self._crippled: set[str] = set()
        # Services with a replica being restarted right now.
        self._restarting: set[str] = set()
        self._state = threading.Lock()
        self._threads: list[threading.Thread] = []

    @property
    def events(self) -> list[FaultEvent]:
        """What happened so far, in order."""
        with self._log.lock:
            return sorted(self._log.events, key=lambda e: e.at)

    def start(self) -> None:
        """Begin the schedule now."""
        t0 = time.monotonic()
        self._threads = [
            threading.Thread(target=self._kills, args=(t0,), name="chaos-kills", daemon=True),
            threading.Thread(target=self._broker, args=(t0,), name="chaos-broker", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        """Wait for the schedule to end (the last restart included)."""
        for thread in self._threads:
            thread.join()

    def stop(self) -> None:
        """End early (no new faults; a restart in progress completes)."""
        self._stopping.set()
        self.join()

    def choose(self, candidates: list[platform.ServiceProcess]) -> platform.ServiceProcess:
        """A random replica of a random service among ``candidates``."""
        name = self._random.choice(sorted({c.name for c in candidates}))
        return self._random.choice([c for c in candidates if c.name == name])

    def _kills(self, t0: float) -> None:
        restarts: list[threading.Thread] = []
        n = 1
        while True:
            at = t0 + n * self._plan.kill_every
            if at - t0 >= self._plan.duration or self._stopping.wait(max(at - time.monotonic(), 0)):
                break
            n += 1
            with self._state:
                excluded = self._crippled | self._restarting
                candidates = [s for s in platform.services() if s.name not in excluded]
                if not candidates:
                    self._log.add(FaultEvent(datetime.now(UTC), "skip", "-", ok=False))
                    continue
                victim = self.choose(candidates)
                self._restarting.add(victim.name)
            killed = self._kill(victim)
            self._log.add(FaultEvent(datetime.now(UTC), "sigkill", victim.instance, ok=killed))
            thread = threading.Thread(
                target=self._restart_one, args=(victim,), name="chaos-restart", daemon=True
            )
            thread.start()
            restarts.append(thread)
        for thread in restarts:
            thread.join()

    def _restart_one(self, victim: platform.ServiceProcess) -> None:
        began = time.monotonic()
        up = self._restart(victim)
        self._log.add(
            FaultEvent(datetime.now(UTC), "restart", victim.instance, time.monotonic() - began, up)
        )
        with self._state:
            self._restarting.discard(victim.name)
            if not up:
                self._crippled.add(victim.name)

    def _broker(self, t0: float) -> None:
        plan = self._plan
        if plan.broker_down_at >= plan.duration or self._stopping.wait(plan.broker_down_at):
            return
        began = time.monotonic()
        self._stop_broker()
        self._log.add(
            FaultEvent(datetime.now(UTC), "broker-stop", "kafka", time.monotonic() - began)
        )
        self._stopping.wait(max(began + plan.broker_down_for - time.monotonic(), 0))
        began = time.monotonic()
        try:
            self._start_broker()
            ok = True
        except Exception:  # noqa: BLE001  (reported, and the run's reconciliation shows the cost)
            ok = False
        self._log.add(
            FaultEvent(datetime.now(UTC), "broker-start", "kafka", time.monotonic() - began, ok)
        )
