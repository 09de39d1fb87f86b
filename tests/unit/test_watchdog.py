"""The local kubelet's decisions, driven tick by tick against a stand-in cluster (pure logic).

Restarts of real components by the watchdog are covered in tests/integration/test_lifecycle.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from harness.providers import watchdog as wd
from harness.providers.process import ComponentState


@dataclass
class _Node:
    name: str
    states: dict[str, ComponentState]

    def components(self) -> list[str]:
        return list(self.states)

    def state(self, component: str) -> ComponentState:
        return self.states[component]


@dataclass
class _Supervisor:
    started: list[str] = field(default_factory=list)

    def start(self, spec: str) -> None:
        self.started.append(spec)


@dataclass
class _Cluster:
    run_dir: Path
    node: _Node
    supervisor: _Supervisor = field(default_factory=_Supervisor)

    def nodes(self) -> list[_Node]:
        return [self.node]

    def process_spec(self, node: str, component: str) -> str:
        return f"{node}/{component}"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(wd.time, "monotonic", lambda: now[0])
    return now


def _watchdog(tmp_path: Path) -> tuple[wd.Watchdog, _Cluster]:
    cluster = _Cluster(tmp_path, _Node("cp1", {"etcd": ComponentState.RUNNING}))
    return wd.Watchdog(cast(Any, cluster)), cluster


def test_an_exit_is_restarted_after_the_backoff(tmp_path: Path, clock: list[float]) -> None:
    dog, cluster = _watchdog(tmp_path)
    cluster.node.states["etcd"] = ComponentState.EXITED
    dog.tick()  # noticed: restart planned in 1 s
    assert cluster.supervisor.started == []
    clock[0] += wd.BACKOFF_INITIAL_S
    dog.tick()
    assert cluster.supervisor.started == ["cp1/etcd"]


def test_a_held_component_stays_down(tmp_path: Path, clock: list[float]) -> None:
    dog, cluster = _watchdog(tmp_path)
    wd.hold(tmp_path, "cp1", "etcd")
    cluster.node.states["etcd"] = ComponentState.EXITED
    for _ in range(5):
        dog.tick()
        clock[0] += 5
    assert cluster.supervisor.started == []


def test_a_restart_planned_for_an_exit_is_dropped_when_someone_else_starts_it(
    tmp_path: Path, clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    dog, cluster = _watchdog(tmp_path)
    cluster.node.states["etcd"] = ComponentState.EXITED
    dog.tick()  # planned for now + 1 s
    cluster.node.states["etcd"] = ComponentState.RUNNING  # a heal started it meanwhile
    clock[0] += 0.5
    dog.tick()
    # It exits again much later: that exit is noticed and gets its own backoff, not the stale plan.
    clock[0] += 30
    cluster.node.states["etcd"] = ComponentState.EXITED
    caplog.clear()
    dog.tick()
    assert cluster.supervisor.started == []
    assert "exited by itself" in caplog.text
    clock[0] += wd.BACKOFF_INITIAL_S * 2
    dog.tick()
    assert cluster.supervisor.started == ["cp1/etcd"]
