"""The local nodes' kubelet: restart a component that exits by itself, with backoff.

On a kubeadm node the control plane runs as static pods, and kubelet restarts a container that
exits. That matters for chaos: kube-controller-manager and kube-scheduler exit on purpose when
they lose their lease (e.g. while etcd has no quorum) and rely on that restart to come back.
Without it the local cluster would never return to its steady state after such a fault, and
a scenario would blame the cluster for what is a missing kubelet.

A component the harness stopped on purpose (a fault, a powered-off node) is *held*: a marker
file in the run directory, visible to every process working on the cluster, tells the
watchdog to leave it down until the fault is healed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.config import ClusterConfig
from harness.errors import HarnessError
from harness.providers.base import Component
from harness.providers.process import ComponentState, ProcessSpec, Supervisor

log = logging.getLogger(__name__)

BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 16.0
# A component that stayed up this long is healthy again: its backoff starts over.
BACKOFF_RESET_S = 60.0


class WatchedNode(Protocol):
    """What the watchdog reads of a node: its components and the state of each."""

    @property
    def name(self) -> str: ...
    def components(self) -> list[Component]: ...
    def state(self, component: Component) -> ComponentState: ...


class WatchedCluster(Protocol):
    """What the watchdog needs of a cluster: where its markers live, its nodes, and how to start a component.

    A Protocol rather than LocalCluster itself, so the provider can own a watchdog without the
    two modules importing each other.
    """

    @property
    def cfg(self) -> ClusterConfig: ...
    @property
    def run_dir(self) -> Path: ...
    @property
    def supervisor(self) -> Supervisor: ...
    def nodes(self) -> Sequence[WatchedNode]: ...
    def process_spec(self, node: str, component: Component) -> ProcessSpec: ...


def held_dir(run_dir: Path) -> Path:
    return run_dir / "held"


def hold(run_dir: Path, node: str, component: str) -> None:
    d = held_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{node}__{component}").touch()


def release(run_dir: Path, node: str, component: str) -> None:
    (held_dir(run_dir) / f"{node}__{component}").unlink(missing_ok=True)


def is_held(run_dir: Path, node: str, component: str) -> bool:
    return (held_dir(run_dir) / f"{node}__{component}").exists()


@dataclass
class RestartRecord:
    node: str
    component: str
    at: float
    attempt: int


@dataclass
class _Backoff:
    delay: float = BACKOFF_INITIAL_S
    next_at: float = 0.0
    attempts: int = 0
    started_at: float = 0.0


@dataclass
class Watchdog:
    cluster: WatchedCluster
    interval_s: float = 0.5
    restarts: list[RestartRecord] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _backoff: dict[str, _Backoff] = field(default_factory=dict)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"watchdog-{self.cluster.cfg.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
        self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception as exc:
                log.warning("watchdog tick failed: %s", exc)

    def tick(self) -> None:
        run_dir = self.cluster.run_dir
        if not run_dir.exists():
            return
        now = time.monotonic()
        for node in self.cluster.nodes():
            for component in node.components():
                key = f"{node.name}/{component}"
                if is_held(run_dir, node.name, component):
                    self._backoff.pop(key, None)
                    continue
                state = node.state(component)
                b = self._backoff.setdefault(key, _Backoff(started_at=now))
                if state is not ComponentState.EXITED:
                    # Started by someone else meanwhile: a restart planned for the exit is void.
                    b.next_at = 0.0
                    if state is ComponentState.RUNNING and now - b.started_at > BACKOFF_RESET_S:
                        b.delay, b.attempts = BACKOFF_INITIAL_S, 0
                    continue
                if b.next_at == 0.0:
                    b.next_at = now + b.delay
                    log.warning("%s exited by itself; restarting in %.0fs (as kubelet would)", key, b.delay)
                    continue
                if now < b.next_at or self._stop.is_set():
                    continue
                b.attempts += 1
                try:
                    self.cluster.supervisor.start(self.cluster.process_spec(node.name, component))
                    self.restarts.append(RestartRecord(node.name, str(component), time.time(), b.attempts))
                except HarnessError as exc:
                    log.warning("restart of %s failed: %s", key, exc)
                b.started_at = now
                b.delay = min(b.delay * 2, BACKOFF_MAX_S)
                b.next_at = 0.0
