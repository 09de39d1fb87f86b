"""Rollout, history and undo, the seed talk's kubectl workflow; then the same with the control plane
under fire: an apiserver and the controller-manager leader killed mid-rollout."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from harness.checks.budgets import check, within
from harness.checks.http import wait_until
from harness.checks.rollout import DeploymentWorkflow, Kubectl
from harness.faults.catalog import KillComponent
from harness.providers.base import Cluster, Component
from harness.scenario import ScenarioRun
from harness.status import lease_leaders

pytestmark = [pytest.mark.rollout]

IMAGES = ["registry.invalid/web:1.0", "registry.invalid/web:1.1", "registry.invalid/web:1.2"]


def revisions_summary(wf: DeploymentWorkflow) -> list[tuple[int, str]]:
    return [(r.number, r.image) for r in wf.api_revisions()]


def test_rollout_history_and_undo(
    scenario: ScenarioRun, kubectl: Kubectl, kube: client.ApiClient, scratch_namespace: str
) -> None:
    run = scenario
    run.steady_state_before()
    wf = DeploymentWorkflow(kubectl, kube, scratch_namespace)
    with run.phase("create and roll out v1.0"):
        wf.create(IMAGES[0], replicas=3)
        took = wf.rollout_status(run.budgets.rollout_completion_s)
        run.verdict(within("initial rollout", took, run.budgets.rollout_completion_s))
    with run.phase("set image v1.1, then v1.2"):
        for image in IMAGES[1:]:
            wf.set_image(image)
            run.verdict(
                within(
                    f"rollout to {image}",
                    wf.rollout_status(run.budgets.rollout_completion_s),
                    run.budgets.rollout_completion_s,
                )
            )
    with run.phase("history"):
        hist = wf.history()
        run.measure("history", [(r.number, r.change_cause) for r in hist])
        run.verdict(
            check(
                "history lists 3 revisions",
                [r.number for r in hist] == [1, 2, 3],
                f"kubectl rollout history: {[(r.number, r.change_cause) for r in hist]}",
            )
        )
        run.verdict(
            check(
                "history agrees with the API",
                revisions_summary(wf) == list(enumerate(IMAGES, start=1)),
                f"ReplicaSet revisions: {revisions_summary(wf)}",
            )
        )
    with run.phase("undo"):
        wf.undo()
        wf.rollout_status(run.budgets.rollout_completion_s)
        run.verdict(
            check(
                "undo returns to the previous image",
                wf.api_image() == IMAGES[1],
                f"image after undo: {wf.api_image()} (expected {IMAGES[1]}), revision {wf.api_revision()}",
            )
        )
    with run.phase("undo --to-revision=1"):
        wf.undo(to_revision=1)
        wf.rollout_status(run.budgets.rollout_completion_s)
        run.verdict(
            check(
                "undo --to-revision=1 returns to the first image",
                wf.api_image() == IMAGES[0],
                f"image after undo --to-revision=1: {wf.api_image()} (expected {IMAGES[0]})",
            )
        )
        ok, state = wf.api_ready()
        run.verdict(check("all replicas updated and ready", ok, state))
        # Undo re-uses the old ReplicaSet under a new revision number: history keeps growing.
        run.verdict(
            check(
                "revision advanced by undo",
                wf.api_revision() == 5,
                f"deployment revision {wf.api_revision()} after two undos (expected 5)",
            )
        )
    run.finish()


@pytest.mark.slo("apiserver-kill")
@pytest.mark.disruptive
@pytest.mark.control_plane
def test_rollout_survives_apiserver_and_controller_leader_kill(
    scenario: ScenarioRun, cluster: Cluster, kubectl: Kubectl, kube: client.ApiClient, scratch_namespace: str
) -> None:
    run = scenario
    run.steady_state_before()
    wf = DeploymentWorkflow(kubectl, kube, scratch_namespace)
    with run.phase("create and roll out v1.0"):
        wf.create(IMAGES[0], replicas=6)
        wf.rollout_status(run.budgets.rollout_completion_s)
    leader = lease_leaders(cluster)["kube-controller-manager"]
    assert leader and "," not in leader, "no single kube-controller-manager leader"
    other = next(n.name for n in cluster.control_planes() if n.name != leader)
    with run.phase("set image v1.1 and break the control plane mid-rollout"):
        wf.set_image(IMAGES[1])
        started = time.time()
        run.inject(KillComponent(cluster, other, Component.APISERVER))
        run.inject(KillComponent(cluster, leader, Component.CONTROLLER_MANAGER))
    with run.phase("observe: the rollout completes without the killed leader"):
        try:
            wait_until(
                "rollout completes",
                wf.api_ready,
                timeout=run.budgets.lease_handover_s + run.budgets.rollout_completion_s,
                interval=0.5,
            )
            completed: float | None = time.time() - started
        except Exception:
            completed = None
    with run.phase("heal"):
        run.heal()
    run.verdict(
        within(
            "rollout completion under failover",
            completed,
            run.budgets.lease_handover_s + run.budgets.rollout_completion_s,
            what="rollout to v1.1 with an apiserver and the controller-manager leader killed",
        )
    )
    with run.phase("verify through kubectl and the API"):
        took = wf.rollout_status(run.budgets.rollout_completion_s)
        run.verdict(within("kubectl rollout status after recovery", took, run.budgets.rollout_completion_s))
        run.verdict(check("image is v1.1", wf.api_image() == IMAGES[1], f"image {wf.api_image()}"))
        hist = wf.history()
        run.verdict(
            check(
                "revision history intact",
                [r.number for r in hist] == [1, 2] and revisions_summary(wf) == [(1, IMAGES[0]), (2, IMAGES[1])],
                f"history {[(r.number, r.change_cause) for r in hist]}; API {revisions_summary(wf)}",
            )
        )
    run.steady_state_after()
    run.finish()
