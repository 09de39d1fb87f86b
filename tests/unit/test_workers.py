"""Worker Node objects: what KWOK selects and when a node counts as Ready (pure logic).

Registration and readiness against a real cluster are covered by every integration test that
waits for `workers: N/N Ready` (tests/integration/test_lifecycle.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.providers.workers import KWOK_ANNOTATION, SIMULATED_LABEL, node_is_ready, node_manifest, worker_names


def test_worker_manifest_carries_what_kwok_and_the_harness_select_on() -> None:
    body = node_manifest("worker2")
    meta = body["metadata"]
    assert (body["apiVersion"], body["kind"], meta["name"]) == ("v1", "Node", "worker2")
    # KWOK runs with --manage-nodes-with-annotation-selector=<annotation>=fake: without it the
    # node would never become Ready.
    assert meta["annotations"] == {KWOK_ANNOTATION: "fake"}
    assert meta["labels"][SIMULATED_LABEL] == "true"
    assert meta["labels"]["kubernetes.io/hostname"] == "worker2"


def test_worker_names_are_numbered_from_one() -> None:
    assert worker_names(3) == ["worker1", "worker2", "worker3"]
    assert worker_names(0) == []


def _node(*conditions: tuple[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "w"}, "status": {"conditions": [{"type": t, "status": s} for t, s in conditions]}}


@pytest.mark.parametrize(
    ("node", "ready"),
    [
        ({"metadata": {"name": "w"}}, False),  # just registered: no status yet
        ({"metadata": {"name": "w"}, "status": {"conditions": None}}, False),
        (_node(("Ready", "False")), False),
        (_node(("Ready", "Unknown")), False),
        (_node(("MemoryPressure", "True")), False),  # another condition being True is not Ready
        (_node(("MemoryPressure", "False"), ("Ready", "True")), True),
    ],
    ids=["no-status", "null-conditions", "ready-false", "ready-unknown", "other-true", "ready-true"],
)
def test_a_node_is_ready_only_with_a_true_ready_condition(node: dict[str, Any], ready: bool) -> None:
    assert node_is_ready(node) is ready
